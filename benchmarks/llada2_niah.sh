#!/usr/bin/env bash
# NIAH cells of a LLaDA2.0-mini-shaped random bf16 model through `longllada eval` (a hook of gpu_call_b.sh; run from
# the repository root): the model is written once as a LongLLaDA folder (benchmarks/llada2_block_cache.py
# --save-model: config, 32.5 GB of shards, remote code, a small tokenizer with LLaDA2's special tokens), then one
# process of `longllada eval --model longllada` scores the cells at 32k and 64k (depth 50%, one needle each) with the
# family's block-diffusion sampler and its exact key/value cache. Random weights: the score says nothing; the run
# shows the path works at these lengths, its time and its peak memory (the results JSON and the log).
#
#   OUT=/tmp/out TIME_CAP_S=200 bash benchmarks/llada2_niah.sh          # GPU
#   OUT=/tmp/out bash benchmarks/llada2_niah.sh --tiny                  # CPU check: tiny model, a 256-token cell
#
# REUSE_MODEL=1 evaluates the folder already at MODEL_DIR (saved by llada2_block_cache.py --save-model in the same call)
# instead of building and saving it again; the folder is removed at the end either way.
set -u
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
MODEL_DIR=${MODEL_DIR:-/tmp/llada2-mini-random}
mkdir -p "$OUT"
if [ "${1:-}" = --tiny ]; then
    MODEL_DIR=$(mktemp -d)/llada2-tiny
    save=(--tiny)
    grid='{"context_lengths": [256], "depths": [50], "num_repeats": 1}'
    model_args="pretrained=$MODEL_DIR,dtype=float32"
    device=cpu
else
    save=()
    grid='{"context_lengths": [32768, 65536], "depths": [50], "num_repeats": 1}'
    model_args="pretrained=$MODEL_DIR,dtype=bfloat16"
    device=cuda
fi
started=$(date +%s)
if [ "${REUSE_MODEL:-0}" = 1 ] && [ -f "$MODEL_DIR/config.json" ]; then
    echo "reusing the folder $MODEL_DIR (REUSE_MODEL=1)"
else
    rm -rf "$MODEL_DIR"
    "$PY" benchmarks/llada2_block_cache.py "${save[@]}" --save-model "$MODEL_DIR" --lengths --recompute-lengths \
        || exit $?
    echo "saved in $(($(date +%s) - started)) s: $(du -sh "$MODEL_DIR" | cut -f1)"
fi
LONGLLADA_LOG_LEVEL=DEBUG "$PY" -m longllada eval --model longllada --model_args "$model_args" \
    --tasks longllada_niah --metadata "$grid" --device "$device" --batch_size 1 --log_samples \
    --output_path "$OUT/llada2_niah" 2>&1 | grep -v "it/s\]" | tee "$OUT/llada2_niah.log"
status=${PIPESTATUS[0]}
rm -rf "$MODEL_DIR"
exit "$status"
