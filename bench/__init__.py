"""Benchmarks: scripts that measure quality and speed on real data and write bench/results/."""
