#!/usr/bin/env bash
# A NIAH cell of a DiffusionGemma-26B-A4B-shaped random bf16 model through `longllada eval` (a hook of the GPU calls;
# run from the repository root, transformers >= 5.25 on the path): the model is written once as a checkpoint folder
# by transformers' own class (benchmarks/diffusion_gemma_bench.py --save-model, about 50 GB), then one process of
# `longllada eval --model longllada` scores the cell at 32k (depth 50%, one needle) with transformers' sampler, the
# prompt encoded in chunks. Random weights: the score says nothing; the run shows the path works at 32k, its time
# and its peak memory.
#
#   OUT=/tmp/out TIME_CAP_S=300 bash benchmarks/diffusion_gemma_niah.sh      # GPU
#   OUT=/tmp/out bash benchmarks/diffusion_gemma_niah.sh --tiny              # CPU check: tiny model, a 256-token cell
#
# REUSE_MODEL=1 evaluates the folder already at MODEL_DIR (saved by diffusion_gemma_bench.py --save-model in the
# same call) instead of building and saving it again; the folder is removed at the end either way.
set -u
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
MODEL_DIR=${MODEL_DIR:-/tmp/diffusion-gemma-26b-random}
mkdir -p "$OUT"
if [ "${1:-}" = --tiny ]; then
    MODEL_DIR=$(mktemp -d)/diffusion-gemma-tiny
    bench=(--tiny --lengths 64)
    grid='{"context_lengths": [256], "depths": [50], "num_repeats": 1}'
    model_args="pretrained=$MODEL_DIR,dtype=float32,max_denoising_steps=4"
    device=cpu
else
    bench=(--lengths 1k --max-denoising-steps 1)
    grid='{"context_lengths": [32768], "depths": [50], "num_repeats": 1}'
    model_args="pretrained=$MODEL_DIR,dtype=bfloat16,max_denoising_steps=48"
    device=cuda
fi
started=$(date +%s)
if [ "${REUSE_MODEL:-0}" = 1 ] && [ -f "$MODEL_DIR/config.json" ]; then
    echo "reusing the folder $MODEL_DIR (REUSE_MODEL=1)"
else
    rm -rf "$MODEL_DIR"
    # one short timing row, then the folder
    "$PY" benchmarks/diffusion_gemma_bench.py "${bench[@]}" --modes chunked --save-model "$MODEL_DIR" \
        --out "$OUT/diffusion_gemma_save.json" || exit $?
    echo "saved in $(($(date +%s) - started)) s: $(du -sh "$MODEL_DIR" | cut -f1)"
fi
LONGLLADA_LOG_LEVEL=DEBUG "$PY" -m longllada eval --model longllada --model_args "$model_args" \
    --tasks longllada_niah --metadata "$grid" --device "$device" --batch_size 1 --log_samples \
    --output_path "$OUT/diffusion_gemma_niah" 2>&1 | grep -v "it/s\]" | tee "$OUT/diffusion_gemma_niah.log"
status=${PIPESTATUS[0]}
rm -rf "$MODEL_DIR"
exit "$status"
