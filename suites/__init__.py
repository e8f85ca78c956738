"""Labelled networks shared by the tests and the benchmarks: the diagnosis suite, the conversion matrix, baselines.

Neither tests/ nor bench/ imports the other; both import from here. Nothing the service runs imports it.
"""
