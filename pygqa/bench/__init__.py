"""Benchmarks of pygqa against Keras's GroupQueryAttention and MultiHeadAttention.

Run `pygqa bench --help` (or `python -m pygqa.bench`), or from Python / R:

>>> rows = pygqa.bench.run_suite(quick=True)  # doctest: +SKIP

The backend is the one in KERAS_BACKEND (set it before keras is imported).
"""

from pygqa.bench.shapes import SHAPES, Shape, layer_flops
from pygqa.bench.suite import run_suite
from pygqa.bench.timing import call_overhead, gemm_gflops

__all__ = ["SHAPES", "Shape", "call_overhead", "gemm_gflops", "layer_flops", "run_suite"]
