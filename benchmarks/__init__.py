"""Benchmarks of wsb_gpu against the engines a researcher would use instead.

Programs, not timed tests (house style 13): each ``benchmarks/<stage>.py`` exposes
``bench(backend, size, repeats=3) -> list[dict]`` for our implementation and its plain
pandas peers; :mod:`benchmarks.spark_peer` runs the seed's PySpark steps on the same data;
the harness (``python -m benchmarks``) runs them side by side, writes a CSV and appends a
dated, machine-described section to ``benchmarks/RESULTS.md``; :mod:`benchmarks.scaling`
measures growth with input size and with worker count and draws ``benchmarks/scaling.png``.
"""
