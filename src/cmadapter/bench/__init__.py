"""Benchmarks behind ``cmadapter bench``: figures measured as ratios within one run, never asserted in tests."""
