"""Sweeps: what to measure (``run``: rate points x images x methods -> rows), rate control
(``ratecontrol``: a target bpp / bytes / PSNR) and the second decoder (``crossdecode``).

``from qvrf_bench.sweep import run_sweep`` (the 0.2 path) still works, with a DeprecationWarning:
import from ``qvrf_bench.sweep.run``.
"""


def __getattr__(name: str):
    import importlib
    import warnings

    if name.startswith("__") or name in ("run", "ratecontrol", "crossdecode"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    run = importlib.import_module("qvrf_bench.sweep.run")
    if not hasattr(run, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"qvrf_bench.sweep.{name} moved to qvrf_bench.sweep.run.{name}; the old path goes in 0.4",
                  DeprecationWarning, stacklevel=2)  # fmt: skip
    return getattr(run, name)
