"""Subcommands of `dctnet` (see dctnet/cli.py)."""
