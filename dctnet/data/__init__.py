"""Data: RGB preprocessing, datasets, re-encoding."""
