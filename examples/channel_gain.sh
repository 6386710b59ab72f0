#!/usr/bin/env bash
# The example method end to end: fine-tune channel-wise gains from the shipped Balle QVRF model,
# sweep them beside that QVRF model, its 8 fixed-rate anchors and JPEG on the shipped Kodak images
# (real bitstreams), and print the BD-rate tables.
#
#   bash examples/channel_gain.sh TRAIN_DIR [OUT] [STEPS]
#
# TRAIN_DIR: a folder of training photos; OUT: default runs/example-channel-gain; STEPS: default 1000.
# qvrf-bench must be on PATH (e.g. PATH=.venv/bin:$PATH); TEST_SET=DIR measures another test folder.
# The run resumes where it stopped when rerun with the same arguments.
set -euo pipefail
train=${1:?usage: bash examples/channel_gain.sh TRAIN_DIR [OUT] [STEPS]}
out=${2:-runs/example-channel-gain}
steps=${3:-1000}
method="$(cd "$(dirname "$0")" && pwd)/channel_gain.py:make"
test_set=${TEST_SET:-$(python -c "from qvrf_bench.zoo import KODAK_DIR; print(KODAK_DIR)")}
anchors=()
for lm in 0.0018 0.0035 0.0067 0.013 0.025 0.0483 0.0932 0.18; do anchors+=("zoo:balle-fixed-l$lm"); done

qvrf-bench train --method "$method=zoo:balle-qvrf8" --dataset "$train" --out "$out/train" --steps "$steps" \
  --batch-size 8 --patch-size 128 --lr 1e-4 --val-every 250 --save-every 100 --threads 1
qvrf-bench sweep --dataset "$test_set" --out "$out/sweep" --method "$method=$out/train/final.pt" \
  -c zoo:balle-qvrf8 "${anchors[@]}" --factors none --peers jpeg
qvrf-bench compare "$out/sweep"
