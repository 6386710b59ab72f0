"""Entropy parameters that do not depend on the thread count: one CPU thread for the coder's side.

Encoder and decoder must compute the same Gaussian scales (and means) bit for bit: a scale that
lands on the other side of a scale-table boundary picks another CDF, and from there the decoder
reads garbage. Measured (bench/README.md, "Cross-decode"): a trained minnen model encoded with one
thread and decoded in another process with 2 or 4 threads decoded 4 of 32 Kodak bitstreams to
garbage (9 dB), because oneDNN's convolutions and MKL's matrix products sum in a thread-dependent
order. So the parts that produce entropy parameters -- h_s, and the autoregressive models'
context/entropy-parameter step loop -- run with one CPU thread whenever gradients are off
(coding, evaluation), on every path (CompressAI's compress/decompress, the fast engine, the
one-image coder). g_a and g_s keep every thread: their float noise changes the image by ~1e-10,
not the bitstream. What it costs: nothing measurable on a 2-core CPU, where one thread is faster
(bench/entropy_threads_cost.py; h_s runs at 1/16 resolution, the step loop on 8-row matrices).

This fixes thread counts on one machine. Another CPU family, another library version, or CUDA
against the CPU can still round differently; the cross-decode check (crossdecode.py) is how to
find out.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

# On unless QVRF_BENCH_THREADED_ENTROPY=1 (bench/cross_decode.py sets it to measure what this costs
# and what it prevents; a separate decoder process inherits it).
ENABLED = os.environ.get("QVRF_BENCH_THREADED_ENTROPY", "") != "1"


@contextmanager
def one_thread():
    """Run the block with one torch CPU thread (when gradients are off and ENABLED), then restore."""
    n = torch.get_num_threads()
    if not ENABLED or n == 1 or torch.is_grad_enabled():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _pre(module, args):
    n = torch.get_num_threads()
    if ENABLED and n != 1 and not torch.is_grad_enabled():
        module.__dict__["_threads_before"] = n
        torch.set_num_threads(1)


def _post(module, args, output):
    n = module.__dict__.pop("_threads_before", None)
    if n:
        torch.set_num_threads(n)


def install(model) -> None:
    """Make ``model.h_s`` run with one thread outside training (idempotent)."""
    hs = model.h_s
    if not getattr(hs, "_one_thread_hooks", False):
        hs.register_forward_pre_hook(_pre)
        hs.register_forward_hook(_post)
        hs._one_thread_hooks = True
