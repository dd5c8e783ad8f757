"""Helpers shared by the tests and the benchmarks (fixtures built from the bundled real data).

Nothing here is used by the pipeline itself.
"""
