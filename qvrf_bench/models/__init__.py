"""QVRF models on CompressAI: registry, gain mechanism, architectures, checkpoints."""

from qvrf_bench.models.qvrf import LAMBDAS_8, LAMBDAS_11, PAPER_FACTORS, initial_gains
from qvrf_bench.models.registry import (
    ARCHS,
    KINDS,
    ModelConfig,
    build_model,
    create,
    make_config,
    prepare_for_coding,
)

__all__ = [
    "ARCHS", "KINDS", "LAMBDAS_8", "LAMBDAS_11", "PAPER_FACTORS", "ModelConfig", "build_model", "create",
    "initial_gains", "make_config", "prepare_for_coding",
]  # fmt: skip
