"""Helpers of ``scripts/bench_scale.py`` (issue 12 part 6): data generation, process-tree memory
monitoring, the first-step timer callback, loader and format micro-benchmarks, the report."""
