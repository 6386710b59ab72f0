"""The architecture table, filled by a decorator on each model class (as CompressAI's
``register_model``): ``@register_arch("balle", zoo_name=..., zoo_widths=..., qvrf_widths=...)``.

No model imports here, so a class (ours, or one in a user's or a test's file) registers itself when
its module is imported; models/registry.py imports the built-in ones and builds from this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

# (N, M) of a CompressAI-style state dict when it is this architecture, else None
Matcher = Callable[[Mapping], "tuple[int, int] | None"]


@dataclass(frozen=True)
class ArchSpec:
    """One row of the architecture table: everything the suite knows about an architecture. The model
    registry, ``infer_arch`` (foreign state dicts), the analysis' families and the figures' titles are
    derived from it; the bitstream's frozen arch id lives in bitstream/container.py ``ARCH_IDS``."""

    name: str
    cls: type  # our QVRF subclass of the CompressAI model (its base class is CompressAI's)
    zoo_name: str  # CompressAI's zoo name of the architecture ("" when it has none)
    zoo_widths: tuple[tuple[int, int], ...]  # (N, M) of the fixed-rate model of each of the 8 lambdas
    qvrf_widths: tuple[int, int]  # (N, M) of a QVRF model
    one_width: bool = False  # CompressAI's class has one width: M defaults to N (cheng2020; README Decisions)
    title: str = ""  # for figures and tables, e.g. "Balle (bmshj2018-hyperprior)"
    aliases: tuple[str, ...] = ()  # other names of it: the official QVRF code's ("hyper"), CompressAI variants
    matcher: Matcher | None = None  # recognises its state dicts (checkpoints.infer_arch)

    def names(self) -> tuple[str, ...]:
        """Every name that means this architecture's family: its own, its aliases, its CompressAI zoo
        name and that name's VBR variant (``-vbr``)."""
        zoo = (self.zoo_name, f"{self.zoo_name}-vbr") if self.zoo_name else ()
        return (self.name, *self.aliases, *zoo)


ARCH_SPECS: dict[str, ArchSpec] = {}


def register_arch(name: str, *, zoo_name: str = "", zoo_widths=(), qvrf_widths=(192, 320), one_width=False,
                  title: str = "", aliases=(), matcher: Matcher | None = None):  # fmt: skip
    """Class decorator: registers ``cls`` as architecture ``name``; ``cls.arch_name`` is set."""

    def deco(cls):
        widths = tuple(tuple(w) for w in zoo_widths) or (tuple(qvrf_widths),) * 8
        ARCH_SPECS[name] = ArchSpec(name, cls, zoo_name, widths, tuple(qvrf_widths), one_width, title or name,
                                    tuple(aliases), matcher)  # fmt: skip
        cls.arch_name = name
        return cls

    return deco


def g_a_widths(sd: Mapping) -> tuple[int, int] | None:
    """(N, M) of a state dict whose analysis transform is CompressAI's 4-conv g_a (bmshj2018, mbt2018)."""
    if "g_a.0.weight" not in sd or "g_a.6.weight" not in sd:
        return None
    return int(sd["g_a.0.weight"].shape[0]), int(sd["g_a.6.weight"].shape[0])


def families() -> dict[str, str]:
    """Every name of every registered architecture (ArchSpec.names) -> the architecture."""
    return {n: spec.name for spec in ARCH_SPECS.values() for n in spec.names()}


def infer_arch(sd: Mapping) -> tuple[str, int, int]:
    """(arch, N, M) of a CompressAI-style state dict: the one architecture whose matcher takes it."""
    found = [(spec.name, *wm) for spec in ARCH_SPECS.values() if spec.matcher and (wm := spec.matcher(sd))]
    if len(found) != 1:
        what = "several architectures" if found else "no architecture"
        raise ValueError(f"{what} of the table ({', '.join(ARCH_SPECS)}) recognise this state dict"
                         + (f" ({', '.join(f[0] for f in found)})" if found else " (no g_a.0 weights of theirs)"))  # fmt: skip
    return found[0]
