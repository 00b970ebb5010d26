#!/usr/bin/env bash
# The GPU figures of scripts/bench_eval.py (README, "On a GPU"): the quickstart's proxy and the
# funnel's largest stage (configs/quickstart.yaml), each under a time limit so that one call of a
# few minutes gives both. The outputs are written to OUT_DIR as Markdown.
#   scripts/gpu_bench.sh OUT_DIR
set -u
out=${1:?usage: scripts/gpu_bench.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
timeout 250 $py scripts/bench_eval.py --device gpu --task digits_vit --set width=32 --set depth=1 --set patch=4 \
    --set steps=200 --set batch=128 --set peak=3.0 --programs 32 --jit-programs 1 --optax-runs 10 \
    --k-seeds 1 4 16 --vmap-programs 8 32 128 2>"$out/gpu_proxy.err" | tee "$out/gpu_proxy.md"
timeout 230 $py scripts/bench_eval.py --device gpu --task digits_vit --set width=32 --set depth=2 --set patch=4 \
    --set steps=600 --set batch=256 --set peak=3.0 --programs 8 --jit-programs 1 --optax-runs 3 \
    --k-seeds 1 4 --vmap-programs 8 2>"$out/gpu_stage_c.err" | tee "$out/gpu_stage_c.md"
