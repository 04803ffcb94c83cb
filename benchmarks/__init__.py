"""Benchmarks of asyncjobs against pgqueuer and procrastinate: `python -m benchmarks.run`."""
