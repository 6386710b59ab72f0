"""CompressAI's pretrained models by name: ``compressai:ARCH-METRIC-QUALITY`` -> the file that
``compressai.zoo`` downloaded into the torch hub cache, loaded as the fixed-rate model it is.

``compressai:bmshj2018-hyperprior-mse-3`` is ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``)
plus the file name of CompressAI's own URL for that model (``compressai.zoo.image.model_urls``), so a
user who ran ``compressai.zoo.bmshj2018_hyperprior(3, pretrained=True)`` once can name it here.
Nothing is downloaded: a file not in the cache is one line saying which file, where, and how to
fetch it. The architectures are those of the suite's table with a CompressAI zoo name
(models/archs.py); the lambda is CompressAI's documented training lambda of the quality (MSE:
0.0018 ... 0.18, the suite's LAMBDAS_8; MS-SSIM: 2.40 ... 220).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qvrf_bench.errors import CheckpointError

PREFIX = "compressai:"
# CompressAI's training lambdas per quality 1..8 (its documentation's model zoo page)
LAMBDAS = {
    "mse": (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800),
    "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.0),
}


@dataclass(frozen=True)
class Pretrained:
    spec: str
    zoo_name: str  # CompressAI's architecture name, e.g. bmshj2018-hyperprior
    arch: str  # the suite's, e.g. balle
    metric: str  # mse | ms-ssim
    quality: int
    lmbda: float
    path: Path


def is_pretrained(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def _archs() -> dict[str, str]:
    from qvrf_bench.models.archs import ARCH_SPECS
    from qvrf_bench.models.registry import ARCHS  # noqa: F401  (importing it fills the table)

    return {s.zoo_name: s.name for s in ARCH_SPECS.values() if s.zoo_name}


def resolve(spec: str) -> Pretrained:
    """``compressai:NAME-METRIC-QUALITY`` -> its cached file and identity; CheckpointError otherwise."""
    import torch.hub
    from compressai.zoo.image import model_urls

    archs = _archs()
    m = re.fullmatch(r"compressai:(.+)-(mse|ms-ssim)-([1-8])", spec)
    if not m or m.group(1) not in archs:
        raise CheckpointError(f"{spec}: expected compressai:ARCH-METRIC-QUALITY with ARCH one of "
                              f"{', '.join(archs)}, METRIC mse or ms-ssim, QUALITY 1-8 "
                              "(e.g. compressai:bmshj2018-hyperprior-mse-3)")  # fmt: skip
    zoo_name, metric, quality = m.group(1), m.group(2), int(m.group(3))
    url = model_urls.get(zoo_name, {}).get(metric, {}).get(quality)
    if url is None:
        raise CheckpointError(f"{spec}: CompressAI publishes no such pretrained model")
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not path.is_file():
        fn = zoo_name.replace("-", "_")
        raise CheckpointError(f"{spec}: {path} is not in the torch hub cache; fetch it where there is network with "
                              f"python -c \"import compressai.zoo as z; z.{fn}({quality}, metric='{metric}', "
                              "pretrained=True)\" (TORCH_HOME chooses the cache)")  # fmt: skip
    return Pretrained(spec, zoo_name, archs[zoo_name], metric, quality, LAMBDAS[metric][quality - 1], path)
