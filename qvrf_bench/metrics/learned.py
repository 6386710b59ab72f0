"""Learned full-reference metrics (piq's LPIPS and DISTS, both on torchvision's ImageNet VGG16), from
weights files the user already has: qvrf-bench downloads nothing, ever.

Where the files are looked for: the folder in ``$QVRF_BENCH_METRIC_WEIGHTS``, else the torch hub
cache (``$TORCH_HOME/hub/checkpoints``, where piq and torchvision put them when they download). The
files keep the names their publishers give them (:data:`FILES`). Before a network is built every
file it needs is checked to be there, and piq's own constructors then find them in a hub folder made
of links to them (so the values are piq's by construction, and no code path can reach the network).
An absent file is one line naming it and the folder, for ``sweep --metrics lpips``; ``--metrics
all`` leaves the metric out.

Conventions: both images / 255 in [0, 1] (piq's default ImageNet normalisation inside), one value
per image, lower is better (LPIPS distance; DISTS as piq returns it, 1 - similarity). DISTS resizes
the shorter side to 256 (piq). Cost: one VGG16 pass per image and point (several seconds on one CPU
core at Kodak size): on request only.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from qvrf_bench.errors import QVRFError

WEIGHTS_ENV = "QVRF_BENCH_METRIC_WEIGHTS"
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1
FILES = {
    "lpips": ("lpips_weights.pt", VGG16_FILE),  # piq 0.8's LPIPS release file
    "dists": ("dists_weights.pt", VGG16_FILE),  # piq 0.8's DISTS release file
}
_NETS: dict[tuple[str, str], object] = {}


def weights_dir() -> Path:
    """Where the learned metrics' files are looked for (module docstring)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def problem(name: str) -> str | None:
    """Why ``name`` cannot run here (a missing file), or None."""
    folder = weights_dir()
    missing = [f for f in FILES[name] if not (folder / f).is_file()]
    if not missing:
        return None
    return (
        f"metric {name!r} needs its weights as local files: {', '.join(missing)} not found in {folder} "
        f"(put them there or set {WEIGHTS_ENV}=DIR; qvrf-bench downloads nothing)"
    )


def network(name: str):
    """piq's LPIPS or DISTS module built from the local files (cached per folder)."""
    folder = weights_dir()
    key = (name, str(folder))
    if key in _NETS:
        return _NETS[key]
    why = problem(name)
    if why:
        raise QVRFError(why)
    import piq
    import torch

    # torch.hub keeps set_dir's folder in a module variable (None: follow $TORCH_HOME); put back
    # exactly what was there, so a later TORCH_HOME still counts
    previous = torch.hub._hub_dir
    with tempfile.TemporaryDirectory(prefix="qvrf-metric-weights-") as hub:
        (Path(hub) / "checkpoints").mkdir()
        for f in FILES[name]:
            (Path(hub) / "checkpoints" / f).symlink_to((folder / f).resolve())
        torch.hub.set_dir(hub)
        try:
            with warnings.catch_warnings():  # torchvision's notice about piq's `pretrained=True`
                warnings.simplefilter("ignore", UserWarning)
                net = {"lpips": piq.LPIPS, "dists": piq.DISTS}[name](reduction="none")
        except Exception as exc:  # a corrupt or foreign file: say which, in one line
            raise QVRFError(f"metric {name!r}: the weights in {folder} do not load: {exc}") from None
        finally:
            torch.hub._hub_dir = previous
    net.eval()
    _NETS[key] = net
    return net


def learned_metric(name: str):
    """The per-image function of ``name``: two (H, W, 3) uint8 images -> float (lower is better)."""

    def per_image(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
        import torch

        from qvrf_bench.metrics.functional import _check_pair

        _check_pair(ref_rgb8, test_rgb8)
        net = network(name)
        x, y = (torch.tensor(a, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0 for a in (test_rgb8, ref_rgb8))
        with torch.no_grad():
            return float(net(x, y).reshape(-1)[0])

    per_image.__name__ = f"{name}_rgb"
    return per_image
