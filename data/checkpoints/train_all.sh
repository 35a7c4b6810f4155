#!/usr/bin/env bash
# The commands that made the shipped checkpoints (also in README.md). Resumable: re-run to continue.
set -euo pipefail
cd "$(dirname "$0")/../.."
VITLAB=${VITLAB:-.venv/bin/vitlab}
$VITLAB train --preset fmnist-vit --epochs 50 --batch-size 128 --lr 1e-3 --warmup-epochs 3 --seed 0 --out data/checkpoints/fmnist-vit --quiet
$VITLAB train --preset fmnist-resnet --epochs 6 --batch-size 128 --lr 2e-3 --seed 0 --out data/checkpoints/fmnist-resnet --quiet
