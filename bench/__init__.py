"""Benchmarks of the pipeline and the portal against references measured in the same run.

``python -m bench`` runs all of them and writes BENCHMARKS.md; ``python -m bench --smoke``
checks in seconds that they still run. Each benchmark is also a module of its own
(``python -m bench.derivatives --runs 3``). Timing never goes into the test suite.
"""
