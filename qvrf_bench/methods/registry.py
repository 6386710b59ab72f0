"""Method names to factories: the built-in methods, the ``qvrf_bench.methods`` entry-point group,
and ``module:factory`` / ``path/to/file.py:factory`` specs.

A spec is ``WHAT[=CHECKPOINT]``: ``WHAT`` is a registered name (:func:`register`, e.g. ``qvrf``), an
entry point's name, ``my_pkg.my_module:make`` (imported with the working folder on the path, as
``python -m`` would) or ``some/file.py:make``; the factory is called as ``make(CHECKPOINT,
device=...)`` (``make(device=...)`` without one) and returns a methods.base.Method. A package
announces its methods to the CLI with, in its pyproject.toml::

    [project.entry-points."qvrf_bench.methods"]
    my-method = "my_pkg.my_module:make"
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from qvrf_bench.errors import QVRFError
from qvrf_bench.methods.base import Method

ENTRY_POINT_GROUP = "qvrf_bench.methods"
_FACTORIES: dict[str, Callable[..., Method]] = {}


def register(name: str):
    """Decorator: ``@register("my-method")`` on a factory makes ``--method my-method=...`` work."""

    def deco(factory):
        _FACTORIES[name] = factory
        return factory

    return deco


def _builtin() -> None:
    if "qvrf" not in _FACTORIES:
        from qvrf_bench.methods import fixed, qvrf, vbr

        register("qvrf")(qvrf.make)
        register("qvrf-v2")(qvrf.make_v2)
        register("compressai-fixed")(fixed.make)
        register("compressai-vbr")(vbr.make)


def names() -> list[str]:
    _builtin()
    return sorted(set(_FACTORIES) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _from_file(path: Path, attr: str):
    if not path.is_file():
        raise QVRFError(f"--method {path}:{attr}: no such file")
    name = f"qvrf_bench_user_method_{abs(hash(str(path.resolve())))}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return getattr(sys.modules[name], attr)


def factory(what: str) -> Callable[..., Method]:
    """The factory of ``what`` (module docstring); a one-line QVRFError when there is none."""
    _builtin()
    if what in _FACTORIES:
        return _FACTORIES[what]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == what:
            return ep.load()
    module, sep, attr = what.rpartition(":")
    if not sep or not module or not attr:
        raise QVRFError(
            f"--method {what}: not a known method ({', '.join(names())}) nor MODULE:FACTORY or FILE.py:FACTORY"
        )
    try:
        if module.endswith(".py"):
            return _from_file(Path(module), attr)
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return getattr(importlib.import_module(module), attr)
    except QVRFError:
        raise
    except (ImportError, AttributeError) as exc:
        raise QVRFError(f"--method {what}: cannot load it ({type(exc).__name__}: {exc})") from None


def split_spec(spec: str) -> tuple[str, str | None]:
    what, sep, arg = spec.partition("=")
    return what.strip(), (arg.strip() or None) if sep else None


def make(spec: str, device: str = "cpu") -> Method:
    """Build the method of ``spec`` (``WHAT[=CHECKPOINT]``)."""
    what, arg = split_spec(spec)
    f = factory(what)
    method = f(arg, device=device) if arg is not None else f(device=device)
    if not isinstance(method, Method):
        raise QVRFError(f"--method {spec}: the factory returned a {type(method).__name__}, not a qvrf_bench Method")
    for attr in ("method_id", "name"):
        if not getattr(method, attr, ""):
            raise QVRFError(f"--method {spec}: the method has no {attr}")
    if method.decode_check not in ("latent", "image", "decodes"):
        raise QVRFError(f"--method {spec}: decode_check {method.decode_check!r} is not latent, image or decodes")
    return method
