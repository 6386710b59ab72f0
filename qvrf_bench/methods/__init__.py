"""Variable-rate methods behind one contract (base.py): QVRF (qvrf.py), any fixed-rate CompressAI
model (fixed.py), and a user's own through ``--method`` (registry.py); engine.py codes them."""

from qvrf_bench.methods.base import Analysis, Method, Point, read_method_file, save_method
from qvrf_bench.methods.registry import make, register

__all__ = ["Analysis", "Method", "Point", "make", "read_method_file", "register", "save_method"]
