"""The cross-decode check: a second decoder in another process, its latent compared with the encoder's."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import small_model

from qvrf_bench import images
from qvrf_bench.methods import codec
from qvrf_bench.methods.qvrf import QVRFMethod
from qvrf_bench.models.checkpoints import save_checkpoint
from qvrf_bench.sweep.crossdecode import CrossDecoder


@pytest.mark.parametrize("arch", ["balle", "minnen"])
def test_worker_decodes_the_encoders_latent_and_catches_a_different_one(arch, tmp_path):
    model = small_model(arch)
    path = save_checkpoint(tmp_path / "m.pt", model)
    rgb = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    enc = codec.encode_tensor(model, images.rgb8_to_tensor(rgb), level=3)
    method = QVRFMethod(model, container=2)  # what -c is: its spec for the worker is qvrf-v2=PATH
    spec, point = f"qvrf-v2={path}", method.rate_points()[3]
    cross = CrossDecoder("cpu", threads=2)
    local = codec.decode(model, enc.data)
    try:
        good = cross.check(spec, method, point, enc.data, enc.y_hat, local)
        assert good["cross_decode_ok"] and good["cross_decode_psnr_db"] > 40
        # level 3's header with level 5's y string: it decodes, to other symbols than the encoder's
        import dataclasses

        other = codec.encode_tensor(model, images.rgb8_to_tensor(rgb), level=5)
        hdr, (_, z) = codec.unpack(enc.data)
        _, (y5, _) = codec.unpack(other.data)
        mixed = codec.pack(dataclasses.replace(hdr, lengths=(len(y5), len(z))), [y5, z])
        wrong = cross.check(spec, method, point, mixed, enc.y_hat, local)
        assert not wrong["cross_decode_ok"] and not wrong["cross_decode_exact"]
        bad = cross.check(spec, method, point, enc.data[:30], enc.y_hat, local)
        assert not bad["cross_decode_ok"] and "truncated" in bad["notice"]
        again = cross.check(spec, method, point, enc.data, enc.y_hat, local)  # the worker survives errors
        assert again == good
    finally:
        cross.close()


def test_sweep_records_cross_decode(tmp_path):
    from PIL import Image

    from qvrf_bench.results.store import ResultStore
    from qvrf_bench.sweep.run import SweepConfig, run_sweep

    path = save_checkpoint(tmp_path / "m.pt", small_model("balle"))
    ds = tmp_path / "ds"
    ds.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(ds / "a.png")
    run_sweep(SweepConfig(dataset=ds, out=tmp_path / "run", checkpoints=[path], factors="1.5", peers="jpeg",
                          peer_qualities={"jpeg": [50]}, device="cpu", threads=1, decode_threads=2, progress=False))  # fmt: skip
    df = ResultStore(tmp_path / "run").read()
    ours = df[df.kind == "qvrf"]
    assert len(ours) == 9 and ours["cross_decode_ok"].all() and (ours["cross_decode_device"] == "cpu, 2 threads").all()
    assert ours["cross_decode_exact"].notna().all() and (ours["cross_decode_psnr_db"] > 40).all()
    peer = df[df.kind == "classical"]
    assert peer["cross_decode_ok"].isna().all() and (peer["cross_decode_device"] == "").all()
