"""bitstream/rans.py: the C decoder gives CompressAI's symbols from CompressAI's strings, bounds-checked."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import GaussianConditional

from qvrf_bench.bitstream import rans

needs_c = pytest.mark.skipif(rans.backend() != "c", reason=f"C rANS decoder not built here: {rans.backend()}")


def tables():
    gc = GaussianConditional(None)
    gc.update_scale_table(torch.exp(torch.linspace(np.log(0.11), np.log(256), 64)))
    gc.update()
    return gc.quantized_cdf.numpy(), gc.cdf_length.numpy(), gc.offset.numpy(), gc.scale_table.numpy()


def encoded(seed=0, streams=3, groups=6, n=500):
    """Random symbols under random tables (one in 50 far outside its table: escape-coded)."""
    cdf, length, offset, scale = tables()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(length), size=(streams, groups * n)).astype(np.int32)
    sym = np.round(rng.standard_normal(idx.shape) * scale[idx] * 1.5).astype(np.int32)
    sym[:, ::50] = rng.integers(-(2**20), 2**20, size=sym[:, ::50].shape)
    strings = []
    for b in range(streams):
        enc = BufferedRansEncoder()
        enc.encode_with_indexes(sym[b].tolist(), idx[b].tolist(), cdf.tolist(), length.tolist(), offset.tolist())
        strings.append(enc.flush())
    return strings, idx, sym, (cdf, length, offset), n


@needs_c
def test_the_c_decoder_reads_compressais_strings_as_compressais_decoder_does():
    strings, idx, sym, (cdf, length, offset), n = encoded()
    dec = rans.StreamsDecoder(strings, cdf, length, offset)
    got = np.concatenate([dec.decode(idx[:, g : g + n]) for g in range(0, idx.shape[1], n)], axis=1)
    want = []
    for b, s in enumerate(strings):
        ref = RansDecoder()
        ref.set_stream(s)
        want.append(sum((ref.decode_stream(idx[b, g : g + n].tolist(), cdf.tolist(), length.tolist(),
                                           offset.tolist()) for g in range(0, idx.shape[1], n)), []))  # fmt: skip
    assert np.array_equal(got, np.array(want)) and np.array_equal(got, sym)


@needs_c
def test_past_a_strings_end_both_decoders_read_zeros_and_damage_never_crashes():
    """A cut string, or random bytes, decode to what CompressAI's decoder reads from them zero-padded
    (latent.padded); a table index outside the table is an error."""
    from qvrf_bench.models.latent import padded

    strings, idx, _, (cdf, length, offset), _ = encoded(seed=1, streams=2, groups=1, n=3000)
    cut = [strings[0], strings[1][: len(strings[1]) // 3], b"\1\2\3"]
    idx3 = np.concatenate([idx, idx[:1]])
    got = rans.StreamsDecoder(cut, cdf, length, offset).decode(idx3)
    for b, s in enumerate(cut):
        ref = RansDecoder()
        ref.set_stream(padded(s, idx3.shape[1]))
        assert got[b].tolist() == ref.decode_stream(idx3[b].tolist(), cdf.tolist(), length.tolist(), offset.tolist())
    bad = idx[:1].copy()
    bad[0, 5] = len(length)  # a table that does not exist
    with pytest.raises(rans.CorruptStreamError, match="y string 0: .*outside the table"):
        rans.StreamsDecoder(strings[:1], cdf, length, offset).decode(bad)
    rng = np.random.default_rng(2)
    for _ in range(50):  # random bytes: the symbols CompressAI's decoder reads from them zero-padded
        junk = rng.integers(0, 256, size=int(rng.integers(8, 400)), dtype=np.uint8).tobytes()
        got = rans.StreamsDecoder([junk], cdf, length, offset).decode(idx[:1])
        ref = RansDecoder()
        ref.set_stream(padded(junk, idx.shape[1]))
        assert got[0].tolist() == ref.decode_stream(idx[0].tolist(), cdf.tolist(), length.tolist(), offset.tolist())


def test_compressais_decoder_is_used_where_asked_and_says_so():
    code = "from qvrf_bench.bitstream import rans; print(rans.backend())"
    env = {"QVRF_BENCH_RANS": "compressai", "PATH": "", "HOME": "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "compressai (QVRF_BENCH_RANS=compressai)"


@needs_c
def test_the_library_builds_into_the_cache_folder_named_by_the_environment(tmp_path):
    code = "from qvrf_bench.bitstream import rans; print(rans.backend())"
    env = {"QVRF_BENCH_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "c"
    assert len(list(tmp_path.glob("rans-*.so"))) == 1


@needs_c
def test_the_c_encoder_writes_compressais_bytes():
    strings, idx, sym, (cdf, length, offset), _ = encoded(seed=3, streams=4, groups=2, n=2000)
    assert rans.encode(sym, idx, cdf, length, offset) == strings
    # every symbol escape-coded, the largest codable values (CompressAI's own encoder writes past its
    # buffer for fewer than ~3 symbols, so no shorter case is compared)
    for s in ([0] * 5, [2**27 - 1, -(2**27), 3], list(range(-40, 40))):
        s = np.array([s], dtype=np.int32).reshape(1, -1)
        i = np.zeros_like(s)
        enc = BufferedRansEncoder()
        enc.encode_with_indexes(s[0].tolist(), i[0].tolist(), cdf.tolist(), length.tolist(), offset.tolist())
        want = enc.flush()
        assert rans.encode(s, i, cdf, length, offset) == [want]
        assert np.array_equal(rans.StreamsDecoder([want], cdf, length, offset).decode(i), s)
    for s in ([], [7], [-(2**27)]):  # too short for CompressAI's encoder: a round trip of ours
        s = np.array([s], dtype=np.int32).reshape(1, -1)
        (string,) = rans.encode(s, np.zeros_like(s), cdf, length, offset)
        assert np.array_equal(rans.StreamsDecoder([string], cdf, length, offset).decode(np.zeros_like(s)), s)
    with pytest.raises(ValueError, match="string 0"):
        rans.encode(sym[:1], np.full_like(sym[:1], len(length)), cdf, length, offset)


def test_inside_compressai_coder_the_backend_says_compressai():
    with rans.compressai_coder("a test"):
        assert rans.backend() == "compressai (a test)"
    assert rans.backend() != "compressai (a test)"
