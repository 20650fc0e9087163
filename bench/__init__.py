"""Benchmarks for the relay: latency, throughput and memory against real daphne processes.

Speed and memory targets live here rather than in the timed test suite: a shared CI machine is too
noisy for hard timing asserts. Run `python -m bench.run` (or `make bench`); see `bench/README.md`.
"""
