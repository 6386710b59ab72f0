"""cheng2020's latent width: M = N is CompressAI's Cheng2020Attention key for key; M != N widens only
the layers that touch the latent, and the model codes real bitstreams as any other."""

from __future__ import annotations

import torch
from compressai.models import Cheng2020Attention

from qvrf_bench.models.checkpoints import infer_arch
from qvrf_bench.models.registry import create, from_state_dict, make_config, prepare_for_coding


def test_one_width_is_compressais_module_key_for_key():
    ours = create("cheng2020", "fixed", N=16, lmbda=0.0483).state_dict()
    theirs = Cheng2020Attention(16).state_dict()
    assert {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items() if k in theirs}
    assert set(ours) - set(theirs) == {"gain"}
    assert make_config("cheng2020", "fixed", N=16, lmbda=0.0483).label == "cheng2020-fixed-16-l0.0483"


def test_a_wider_latent_changes_only_the_layers_that_touch_it():
    one = create("cheng2020", "qvrf", N=16).state_dict()
    wide = create("cheng2020", "qvrf", N=16, M=24).state_dict()

    def module(key):  # "g_a.7.weight" -> "g_a.7"; the context model and entropy parameters as a whole
        parts = key.split(".")
        return parts[0] if parts[0] in ("context_prediction", "entropy_parameters") else ".".join(parts[:2])

    changed = {module(k) for k in one if k in wide and one[k].shape != wide[k].shape}
    assert changed <= {"g_a.7", "g_a.8", "g_s.0", "g_s.1", "h_a.0", "h_s.8", "context_prediction", "entropy_parameters"}
    assert {"g_a.7", "g_s.1", "h_a.0", "h_s.8"} <= changed
    assert set(wide) - set(one) == {"g_s.1.skip.weight", "g_s.1.skip.bias"}  # ResidualBlock(M, N)'s 1x1 skip
    assert wide["g_a.7.weight"].shape[0] == 24 and wide["context_prediction.weight"].shape[:2] == (48, 24)
    assert make_config("cheng2020", "qvrf", N=16, M=24).label == "cheng2020-qvrf8-16x24"


def test_a_wider_latent_is_recognised_reloaded_and_codes_real_bitstreams():
    torch.manual_seed(0)
    model = prepare_for_coding(create("cheng2020", "qvrf", N=16, M=24))
    sd = model.state_dict()
    assert infer_arch(sd) == ("cheng2020", 16, 24)
    again = prepare_for_coding(from_state_dict("cheng2020", sd))
    assert (again.N, again.M) == (16, 24)
    x = torch.rand(1, 3, 64, 128)  # a multiple of 64, as the engine pads
    with torch.no_grad():
        sizes = []
        for gain in (0.5, 4.0):
            out = model.compress(x, torch.tensor(gain))
            assert out["strings"] == again.compress(x, torch.tensor(gain))["strings"]
            dec = model.decompress(out["strings"], out["shape"], torch.tensor(gain))
            assert torch.equal(dec["y_hat"], out["y_hat"]) and dec["y_hat"].shape[1] == 24
            sizes.append(len(out["strings"][0][0]))
    assert sizes[1] > sizes[0]  # a larger gain: finer steps, more bytes
