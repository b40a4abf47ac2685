"""Benchmarks that print figures (speed, memory, tokens). Run all with ``python -m benchmarks``."""
