"""Benchmarks at biobank scale: data set builder, bench-only settings and the runner."""
