"""pytest fixtures shared by tests/ and benchmarks/ live in jpeg_fixtures.py."""

from jpeg_fixtures import photos, variants  # noqa: F401
