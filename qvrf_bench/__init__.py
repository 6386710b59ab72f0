"""qvrf-bench: benchmark and RD-analysis suite for variable-rate learned image compression."""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.2.0"

# 0.3 grouped the modules by question (README "Architecture"). The 0.2 paths that scripts import keep
# working for one release, as aliases of the new modules, with a DeprecationWarning.
_MOVED = {
    "qvrf_bench.rd": "qvrf_bench.analysis.rd",
    "qvrf_bench.matched": "qvrf_bench.analysis.matched",
    "qvrf_bench.anchors": "qvrf_bench.analysis.anchors",
    "qvrf_bench.store": "qvrf_bench.results.store",
    "qvrf_bench.crops": "qvrf_bench.results.crops",
    "qvrf_bench.ratecontrol": "qvrf_bench.sweep.ratecontrol",
    "qvrf_bench.crossdecode": "qvrf_bench.sweep.crossdecode",
    "qvrf_bench.codec": "qvrf_bench.methods.codec",
    "qvrf_bench.container": "qvrf_bench.bitstream.container",
    "qvrf_bench.gains": "qvrf_bench.bitstream.gains",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import qvrf_bench.rd`` -> the module ``qvrf_bench.analysis.rd`` itself (one module object)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in _MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {_MOVED[spec.name]}; the old path goes in 0.4", DeprecationWarning,
                      stacklevel=2)  # fmt: skip
        return importlib.import_module(_MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())  # before path finders: a stale 0.2 file must not win
