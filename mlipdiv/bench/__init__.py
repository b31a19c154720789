"""Benchmarks (not tests): ``python -m mlipdiv.bench <name>``; see :mod:`mlipdiv.bench.train`."""
