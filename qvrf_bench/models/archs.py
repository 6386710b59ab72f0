"""The architecture table, filled by a decorator on each model class (as CompressAI's
``register_model``): ``@register_arch("balle", zoo_name=..., zoo_widths=..., qvrf_widths=...)``.

No model imports here, so a class (ours, or one in a user's or a test's file) registers itself when
its module is imported; models/registry.py imports the built-in ones and builds from this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchSpec:
    name: str
    cls: type
    zoo_name: str  # CompressAI's zoo name of the architecture ("" when it has none)
    zoo_widths: tuple[tuple[int, int], ...]  # (N, M) of the fixed-rate model of each of the 8 lambdas
    qvrf_widths: tuple[int, int]  # (N, M) of a QVRF model
    one_width: bool = False  # the class takes N only (M = N: cheng2020)


ARCH_SPECS: dict[str, ArchSpec] = {}


def register_arch(name: str, *, zoo_name: str = "", zoo_widths=(), qvrf_widths=(192, 320), one_width=False):
    """Class decorator: registers ``cls`` as architecture ``name``; ``cls.arch_name`` is set."""

    def deco(cls):
        widths = tuple(tuple(w) for w in zoo_widths) or (tuple(qvrf_widths),) * 8
        ARCH_SPECS[name] = ArchSpec(name, cls, zoo_name, widths, tuple(qvrf_widths), one_width)
        cls.arch_name = name
        return cls

    return deco
