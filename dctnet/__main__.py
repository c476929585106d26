"""`python -m dctnet` is `dctnet`."""

import sys

from .cli import main

sys.exit(main())
