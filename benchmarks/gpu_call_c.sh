#!/usr/bin/env bash
# GPU call C of this release (one GPU command; results in three files under $OUT): DiffusionGemma-26B-A4B's shape
# through transformers' own classes: prompt encoding and one canvas at 32k, 128k and 256k, and a NIAH cell at 32k.
# From the repository root, carrying the same wheels as call B (transformers 5.25 among them):
#
#   run(command="OUT=$OUT bash benchmarks/gpu_call_c.sh", carry=[".whl-b"], timeout_s=600)
#
# Parts (caps in seconds; expected in brackets):
#   wheels, versions   as call B (skipped when /tmp/site-b is already there on a warm machine)             [5-40]
#   diffusion_gemma 200  benchmarks/diffusion_gemma_bench.py: the random model saved by transformers' class
#                      (about 50 GB) for the NIAH cell, then 32k and 128k, transformers' one-pass prefill and
#                      the chunked one (the report is rewritten after each length)                         [150]
#   niah_diffusion_gemma 180  benchmarks/diffusion_gemma_niah.sh on the saved folder: the NIAH cell at 32k
#                      through `longllada eval`                                                            [120]
#   diffusion_gemma_256k 150  the bench at 256k (what runs out of memory is recorded)                       [100]
# Caps sum to 530 s of the 570 s budget (BUDGET_S).
#
# TINY=1: the CPU forms. DRY_RUN=1: the parts and their caps only.
source "$(dirname "$0")/gpu_session_lib.sh"
session_start c
TINY=${TINY:-0}
GEMMA_DIR=${GEMMA_DIR:-/tmp/diffusion-gemma-26b-random}

if [ "$TINY" != 1 ]; then
    if [ -d /tmp/site-b/transformers ]; then
        export PYTHONPATH="/tmp/site-b${PYTHONPATH:+:$PYTHONPATH}"
        record wheels 0 0 0 "already in /tmp/site-b"
    else
        install_wheels .whl-b /tmp/site-b compile
    fi
fi
versions
if [ "$TINY" = 1 ]; then
    run_part diffusion_gemma 200 "$PY" benchmarks/diffusion_gemma_bench.py --tiny --out "$WORK/diffusion_gemma_bench.json"
    run_hook niah_diffusion_gemma 180 benchmarks/diffusion_gemma_niah.sh --tiny
else
    rm -rf "$GEMMA_DIR"
    run_part diffusion_gemma 200 "$PY" benchmarks/diffusion_gemma_bench.py --lengths 32k,128k \
        --save-model "$GEMMA_DIR" --out "$WORK/diffusion_gemma_bench.json"
    export REUSE_MODEL=1 MODEL_DIR="$GEMMA_DIR"
    run_hook niah_diffusion_gemma 180 benchmarks/diffusion_gemma_niah.sh
    unset REUSE_MODEL MODEL_DIR
    rm -rf "$GEMMA_DIR"
fi
run_part diffusion_gemma_256k 150 "$PY" benchmarks/diffusion_gemma_bench.py $([ "$TINY" = 1 ] && echo --tiny) \
    --lengths "$([ "$TINY" = 1 ] && echo 512 || echo 256k)" --out "$WORK/diffusion_gemma_256k.json"
session_end
