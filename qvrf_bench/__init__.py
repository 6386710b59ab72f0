"""qvrf-bench: benchmark and RD-analysis suite for variable-rate learned image compression."""

__version__ = "0.2.0"
