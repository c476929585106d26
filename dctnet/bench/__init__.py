"""Benchmark harness (`dctnet bench`)."""
