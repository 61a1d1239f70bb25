"""Benchmarks of the Layercode integration: `script/bench` runs them and writes RESULTS.md.

Each section is its own module, run in its own process (see `bench/__main__.py`), so that
one section's memory, threads and CPU pinning never leak into the next one's figures.
"""
