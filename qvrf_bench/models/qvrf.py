"""The QVRF gain mechanism shared by every architecture (Tong et al., ICIP 2023, arXiv 2303.05744).

One scalar "quantization regulator" a_s per rate level s (a vector ``gain`` of L scalars, the
official code's ``Gain``). The latent is quantized on the integer grid after scaling,
``symbols = round(a * (y - mu))``, and rebuilt as ``symbols / a + mu``: the bin size is 1/a. The
Gaussian entropy model is reparameterised to that grid (scale sigma*a, mean mu*a). The hyperprior
z and its path never see a. A continuous rate is any a > 0, passed directly (the official
``factor``): no interpolation between the learned gains.

Decisions this implementation takes where the official code is ambiguous (README "Decisions"):
- Gain selection in training follows [QRAF] exactly: stage 1 uses a = gain[0] detached; from stage
  2, s = 0 uses gain[0] detached (it never trains and pins the scale of y), s > 0 uses
  max(gain[s], 1e-4) + 1e-9, differentiable. 1/a is always taken from a detached copy, so the
  gradient reaches a only through "a*y before quantization" and through the likelihood.
- Inference uses |gain[s]|, with s checked against [0, L) (the official ``0 <= s <= L`` test is an
  off-by-one, [QRAF] issue #5).
- Noise: the reconstruction and the rate term draw *independent* uniform noise, as the official
  code does (the rate's draw happens inside CompressAI's GaussianConditional). In training each
  sample's noise comes from its own seeded generator (:class:`per_sample_noise`), so that a batch
  split over processes trains exactly as one process would.

Supported gains: GAIN_MIN = 0.11/256 ~ 0.00043 <= a <= GAIN_MAX = 64 (qvrf_bench/bitstream/gains.py says where
the bounds come from); :func:`scale_table` refuses to build a table beyond, and
:class:`SearchGaussianConditional` checks every symbol before CompressAI's coder sees it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

from qvrf_bench.bitstream.gains import (  # noqa: F401  (re-exported: the gain range belongs to the mechanism)
    ESCAPE_LIMIT,
    GAIN_MAX,
    GAIN_MIN,
    MAX_LEVELS,
    SCALES_MAX,
    SCALES_MIN,
    check_gain,
    gain_problem,
    gain_range_text,
    gains_problem,
)
from qvrf_bench.errors import CoderRangeError, GainError
from qvrf_bench.models.latent import CodingMixin

# The CompressAI MSE lambdas of qualities 1..8 (x 255^2 MSE convention), the QVRF level set.
LAMBDAS_8: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18)
# "Improvement of QVRF" in the official README: three more lambdas for higher rates.
LAMBDAS_11: tuple[float, ...] = LAMBDAS_8 + (0.36, 0.72, 1.44)

# The 27 continuous factors of the official Inference.py (``--factormode 1 --factor 0.1``).
PAPER_FACTORS: tuple[float, ...] = (
    0.5, 0.7, 0.9, 1.1, 1.25, 1.45, 1.7, 2.0, 2.4, 2.8, 3.3, 3.8, 4.0, 4.6,
    5.4, 5.8, 6.5, 6.8, 7.5, 7.9, 8.3, 9.1, 9.4, 9.7, 10.5, 11.0, 12.0,
)  # fmt: skip

QUANT_MODES = ("noise", "ste", "round")

# CompressAI's Gaussian scale table: 64 log-spaced scales in [0.11, 256] (the bounds live in gains.py).
SCALES_LEVELS = 64


def lambdas_for_levels(levels: int) -> tuple[float, ...]:
    if levels == 8:
        return LAMBDAS_8
    if levels == 11:
        return LAMBDAS_11
    raise ValueError(f"levels must be 8 or 11 (got {levels}); pass explicit lambdas for another set")


def initial_gains(lmbdas: Sequence[float], ref_lmbda: float | None = None) -> list[float]:
    """a_s = sqrt(lambda_s / lambda_ref). With lambda_ref = lambda_0 (the default, as [QRAF]) this
    gives 1, 1.3944, ... 10 for the 8-level set. When fine-tuning from a fixed-rate model trained at
    lambda_ref, passing that lambda keeps the loaded operating point at a = 1 (decision 1)."""
    ref = lmbdas[0] if ref_lmbda is None else ref_lmbda
    return [math.sqrt(lm / ref) for lm in lmbdas]


def check_coder_input(symbols: Tensor, indexes: Tensor, cdf_length: Tensor, offset: Tensor) -> None:
    """Refuse (CoderRangeError) symbols CompressAI's rANS encoder would hang on (gains.py).

    ``symbols`` [B, ...] are the rounded values (float) it turns into int32, ``indexes`` their CDF
    rows: every value must be finite, and every escape value (2|v| - 1 below the table, 2(v - top)
    above it) below 2 * ``ESCAPE_LIMIT`` = 2^28, where the encoder's chunk count loop ends.
    """
    q = symbols.detach().reshape(symbols.shape[0], -1).to("cpu", torch.float64)
    if not bool(torch.isfinite(q).all()):
        raise CoderRangeError("the quantized latent holds non-finite values (NaN or inf): nothing to code")
    idx = indexes.detach().reshape(q.shape).to("cpu", torch.int64)
    v = q - offset.detach().reshape(-1).to("cpu", torch.float64)[idx]
    top = (cdf_length.detach().reshape(-1).to("cpu", torch.float64) - 2)[idx]
    raw = torch.where(v < 0, -2 * v - 1, torch.where(v >= top, 2 * (v - top), torch.zeros_like(v)))
    worst = float(raw.max()) if raw.numel() else 0.0
    if worst >= 2 * ESCAPE_LIMIT:
        raise CoderRangeError(
            f"a latent symbol lies {worst / 2:.3g} outside its probability table, beyond the entropy coder's "
            f"escape limit of {ESCAPE_LIMIT}: the gain is too high for this model and image"
        )


def scale_table(max_gain: float) -> Tensor:
    """The Gaussian scale table for a model whose gains reach ``max_gain``.

    sigma*a is what gets coded, so a large gain pushes scales past CompressAI's top entry (256),
    where they are coded with a too-narrow table at a rate penalty ([QRAF] pitfall 11). Up to a=12
    (the official factor range) the default table is kept, bit-compatible with the official
    code; above, the same log spacing is extended until 256 * max_gain / 12.
    """
    if not (math.isfinite(max_gain) and max_gain <= GAIN_MAX):
        # beyond, the table outgrows the 16-bit coder (module docstring); never build it
        raise GainError(f"gain {max_gain:g} is outside the supported range {gain_range_text()}")
    step = (math.log(SCALES_MAX) - math.log(SCALES_MIN)) / (SCALES_LEVELS - 1)
    top = SCALES_MAX * max(1.0, max_gain / 12.0)
    extra = math.ceil((math.log(top) - math.log(SCALES_MAX)) / step - 1e-9) if top > SCALES_MAX else 0
    levels = SCALES_LEVELS + extra
    return torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MIN) + step * (levels - 1), levels))


class _NoiseStream:
    """Where training noise comes from inside :class:`per_sample_noise`."""

    def __init__(self, seed: int, step: int, first: int, batch: int | None, total: int | None):
        self.seed, self.step, self.first, self.batch, self.draws = seed, step, first, batch, 0
        self.total = total

    def noise(self, x: Tensor) -> Tensor:
        """Noise for a batch-first tensor: rows first .. first+B of one draw for the whole global batch,
        from a generator seeded by (seed, step, draw)."""
        import hashlib

        draw, self.draws = self.draws, self.draws + 1
        key = f"qvrf-noise:{self.seed}:{self.step}:{draw}".encode()
        g = torch.Generator(device=x.device)
        g.manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1)
        total = max(self.total or 0, self.first + x.shape[0])
        full = torch.rand((total, *x.shape[1:]), generator=g, device=x.device, dtype=x.dtype)
        return full[self.first : self.first + x.shape[0]] - 0.5

    def bottleneck_noise(self, values: Tensor) -> Tensor:
        """Noise for CompressAI's EntropyBottleneck, which quantizes its input laid out as
        (C, 1, N*H*W), the batch index the slowest of the last axis: drawn per sample as (N, C, H*W)."""
        c, _, length = values.shape
        n = self.batch or 1
        if length % n:
            raise RuntimeError(f"entropy bottleneck input {tuple(values.shape)} does not split into {n} samples")
        per_sample = self.noise(values.new_empty((n, c, length // n)))
        return per_sample.permute(1, 0, 2).reshape(c, 1, length)


_STREAM: _NoiseStream | None = None


class per_sample_noise:  # noqa: N801 (a context manager, used as a function)
    """Training noise of sample ``first`` + j of a step's global batch of ``total``: row first + j of
    one draw for the whole global batch from a generator seeded by (seed, step, draw number), for the
    reconstruction noise here and the rate-term noise inside CompressAI's entropy models
    (``EntropyModel.quantize``, patched for the duration; ``batch``, the local batch size, reads the
    entropy bottleneck's layout). So a step's noise does not depend on how its batch is split over
    processes (train/distributed.py), nor on any RNG state."""

    def __init__(self, seed: int, step: int, first: int = 0, batch: int | None = None, total: int | None = None):
        self.stream = _NoiseStream(seed, step, first, batch, total)

    def __enter__(self):
        global _STREAM
        from compressai.entropy_models import EntropyBottleneck, EntropyModel

        self._saved = (_STREAM, EntropyModel.quantize)
        original, stream = EntropyModel.quantize, self.stream

        def quantize(model, inputs, mode, means=None):
            if mode != "noise":
                return original(model, inputs, mode, means)
            if isinstance(model, EntropyBottleneck):
                return inputs + stream.bottleneck_noise(inputs)
            return inputs + stream.noise(inputs)

        _STREAM = stream
        EntropyModel.quantize = quantize
        return stream

    def __exit__(self, *exc):
        global _STREAM
        from compressai.entropy_models import EntropyModel

        _STREAM, EntropyModel.quantize = self._saved
        return False


def noise_like(x: Tensor) -> Tensor:
    """Uniform noise in [-0.5, 0.5) shaped like ``x``: per sample inside :class:`per_sample_noise`,
    else from torch's global generator."""
    if _STREAM is not None:
        return _STREAM.noise(x)
    return torch.empty_like(x).uniform_(-0.5, 0.5)


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return (torch.round(x) - x).detach() + x


class SearchGaussianConditional(GaussianConditional):
    """CompressAI's GaussianConditional with ``build_indexes`` as one ``torch.searchsorted``.

    CompressAI's loop ``indexes = L-1 - sum_s (scale <= table[s])`` over the table's first L-1
    entries costs three passes over the whole latent per entry (the QVRF table has 64+): at 35
    rate points of a Kodak image that is seconds. The index is the number of those entries strictly
    below the (lower-bounded) scale, which ``searchsorted(..., right=False)`` counts exactly: the
    same float32 comparisons, the same integers (tested against CompressAI's loop)."""

    def build_indexes(self, scales: Tensor) -> Tensor:
        scales = self.lower_bound_scale(scales)
        table = self.scale_table[:-1].to(device=scales.device, dtype=scales.dtype).contiguous()
        return torch.searchsorted(table, scales.contiguous(), right=False).int()

    def compress(self, inputs: Tensor, indexes: Tensor, means: Tensor | None = None):
        """CompressAI's compress, after :func:`check_coder_input` on the symbols it would code."""
        symbols = torch.round(inputs if means is None else inputs - means)
        check_coder_input(symbols, indexes, self._cdf_length, self._offset)
        return super().compress(inputs, indexes, means)


class GainMixin(CodingMixin):
    """Adds the QVRF gain vector and its selection rules to a CompressAI model.

    Attributes set by :meth:`init_gains`: ``gain`` (nn.Parameter [L]), ``lmbdas`` (tuple),
    ``learn_gains`` (bool). ``kind="fixed"`` models are the same class with L = 1 and a frozen
    gain of 1, which is mathematically the plain CompressAI model (round(1*y)/1 = round(y)).
    """

    gain: nn.Parameter
    lmbdas: tuple[float, ...]

    def init_gains(self, lmbdas: Sequence[float], gains: Sequence[float] | None, learn_gains: bool) -> None:
        if gains is None:
            gains = initial_gains(lmbdas)
        if len(gains) != len(lmbdas):
            raise ValueError(f"{len(gains)} gains for {len(lmbdas)} lambdas")
        if len(lmbdas) > MAX_LEVELS:  # what the bitstream's level byte can name (gains.py)
            raise ValueError(f"{len(lmbdas)} levels; a model has at most {MAX_LEVELS}")
        self.lmbdas = tuple(float(v) for v in lmbdas)
        self.learn_gains = bool(learn_gains)
        self.gain = nn.Parameter(torch.tensor(list(gains), dtype=torch.float32), requires_grad=learn_gains)
        # CompressAI builds GaussianConditional(None) in every one of these models; ours differs only
        # in how it finds the scale indexes (same integers, one binary search instead of a pass per
        # table entry): no parameters or buffers change, so state dicts load as before.
        self.gaussian_conditional = SearchGaussianConditional(None)

    @property
    def num_levels(self) -> int:
        return int(self.gain.numel())

    def check_level(self, level: int) -> int:
        if not 0 <= int(level) < self.num_levels:
            raise ValueError(f"level must be in [0, {self.num_levels}) (got {level})")
        return int(level)

    def level_gain(self, level: int) -> Tensor:
        """The inference gain of a discrete level: |gain[s]| (no gradient)."""
        return self.gain.detach()[self.check_level(level)].abs()

    def train_gain(self, level: int, stage: int = 2, pinned: int = 0) -> Tensor:
        """The training gain, with the official freezing and clamping rules; ``pinned`` is the level
        whose gain never trains ([QRAF]: 0)."""
        level = self.check_level(level)
        if stage <= 1:
            return self.gain[0].detach()
        if level == pinned:
            return self.gain[level].detach()
        return torch.clamp(self.gain[level], min=1e-4) + 1e-9

    def resolve_gain(self, level: int | None, gain: float | Tensor | None) -> Tensor:
        """The gain as a 0-d float32 tensor on the model's device. ``gain`` wins over ``level``."""
        device = self.gain.device
        if gain is not None:
            if isinstance(gain, Tensor):
                return gain.to(device=device, dtype=torch.float32)
            if not (math.isfinite(gain) and gain > 0):
                raise GainError(f"gain must be a finite number > 0 (got {gain})")
            return torch.tensor(float(gain), dtype=torch.float32, device=device)
        if level is None:
            raise ValueError("give a level or a gain")
        if self.training:
            return self.train_gain(level)
        return self.level_gain(level)

    def hyper_input(self, y: Tensor) -> Tensor:
        """What h_a sees: y itself (mbt2018, cheng2020); Balle overrides it with |y|."""
        return y

    def begin_forward(self, x: Tensor, level: int | None, gain, quant: str | None):
        """The start every forward shares: quant mode, gain a (and a detached copy for 1/a), y, and
        the hyper path (h_a on the unscaled y, the EB, h_s). Returns (quant, a, a_det, y, h_s output,
        z likelihoods)."""
        quant = self.resolve_quant(quant, self.training)
        a = self.resolve_gain(level, gain)
        y = self.g_a(x)
        z = self.h_a(self.hyper_input(y))
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        return quant, a, a.detach(), y, self.h_s(self.z_for_synthesis(z, z_hat, quant)), z_likelihoods

    def z_for_synthesis(self, z: Tensor, z_hat_noisy: Tensor, quant: str) -> Tensor:
        """z_hat fed to h_s: the EB's own (noisy in training, rounded in eval), or STE-rounded
        around the EB medians in the STE stage ([QRAF] stage 3)."""
        if quant != "ste":
            return z_hat_noisy
        medians = self.entropy_bottleneck._get_medians()
        return ste_round(z - medians) + medians

    @staticmethod
    def resolve_quant(quant: str | None, training: bool) -> str:
        if quant is None:
            return "noise" if training else "round"
        if quant not in QUANT_MODES:
            raise ValueError(f"quant must be one of {QUANT_MODES} (got {quant!r})")
        return quant


def trained_gains(model) -> tuple[float, float]:
    """The gains of the model's lowest and highest level (a fixed-rate model: 1, 1): the range that
    rate control searches inside before it extrapolates."""
    n = int(model.num_levels)
    return float(model.level_gain(0)), float(model.level_gain(n - 1))


def flat_strings(strings: list[list[bytes]]) -> list[bytes]:
    """[[y_0], [z_0]] for a batch of one -> [y, z]."""
    return [s[0] for s in strings]
