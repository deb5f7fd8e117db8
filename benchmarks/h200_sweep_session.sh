#!/usr/bin/env bash
# The NIAH sweep on one nvidia-h200-x2 lease, in commands of under 10 minutes each (the per-command limit).
# Run from the repository root with lm-eval importable; every JSON and log goes to $OUT.
#
#   bash benchmarks/h200_sweep_session.sh prefix   # ~9 min
#       writes the LLaDA-8B-shaped random bf16 folder (~20 s), then
#       1. the paper's whole grid (2k-32k × 11 depths × 10 repeats = 660 answers), cache=prefix, on two GPUs
#          (accelerate launch), --batch_size 16 (each batch split to what fits in memory: 5 rows at 32k):
#          $OUT/sweep_prefix_2gpu.json; a copy stays in /tmp/sweep_results for `rest`;
#       2. side by side, one GPU each: throughput against --batch_size 1, 8, 16 at 4k and 32k with
#          cache=prefix (16 answers per length), and at 4k in exact mode (16 answers), batch_classes=1:
#          $OUT/sweep_batch_prefix.json, $OUT/sweep_batch_exact.json.
#   bash benchmarks/h200_sweep_session.sh rest     # ~10 min
#       side by side, one GPU each: the whole grid with cache=prefix on one GPU, its answers compared with the
#       two-GPU run's (this machine's copy, or the file COMPARE names): $OUT/sweep_prefix_1gpu.json; exact
#       mode on one GPU, 1 repeat × depths 0/50/100 at every length (18 answers), projected to the whole grid:
#       $OUT/sweep_exact_subsample.json.
#   bash benchmarks/h200_sweep_session.sh prefix2  # ~6 min
#       the grid built once (as a sweep's first run leaves it in the cache), then the two-GPU whole grid again:
#       $OUT/sweep_prefix_2gpu_cached_grid.json.
# Each run stops at the command's deadline (SESSION_SECONDS) if it would overrun it; finished batches are
# still recorded.
#
# SWEEP_EXTRA is appended to every invocation (a check on CPU: SWEEP_EXTRA="--cpu --lengths 256 --depths 0,100
# --repeats 1" FOLDER=longllada/models/tiny-llada-diffusion OUT=/tmp/o bash benchmarks/h200_sweep_session.sh rest).
set -u
# shellcheck disable=SC2086  # SWEEP_EXTRA is split into arguments on purpose
part=${1:?usage: h200_sweep_session.sh prefix|rest|prefix2}
OUT=${OUT:-/tmp/out}
FOLDER=${FOLDER:-/tmp/llada8b-random}
KEEP=/tmp/sweep_results
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export GIT_COMMIT=${GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
mkdir -p "$OUT" "$KEEP"
start=$(date +%s)
END=$((start + ${SESSION_SECONDS:-570}))  # this command's own deadline, under the 10-minute limit
left() { echo $((END - $(date +%s))); }
if [ ! -f "$FOLDER/config.json" ]; then
    python3 -c "import sys; sys.path.insert(0, 'benchmarks'); from multi_gpu import make_folder; \
from pathlib import Path; print(make_folder(Path('$FOLDER'), 0))" >"$OUT/folder.log" 2>&1
    echo "== folder written at $(($(date +%s) - start)) s"
fi
sweep() {  # sweep NAME GPUS ARGS...: one benchmarks/niah_sweep.py invocation on the GPUs GPUS (e.g. 0 or 0,1)
    local name=$1 gpus=$2
    shift 2
    CUDA_VISIBLE_DEVICES=$gpus python3 benchmarks/niah_sweep.py --folder "$FOLDER" --work-dir "/tmp/sweep_$name" \
        --deadline-s "$(left)" --out "$OUT/$name.json" "$@" ${SWEEP_EXTRA:-} >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? at $(($(date +%s) - start)) s"
    tail -n 8 "$OUT/$name.log"
    cp "$OUT/$name.json" "$KEEP/" 2>/dev/null
}
case "$part" in
    prefix)
        sweep sweep_prefix_2gpu 0,1 --modes prefix --processes 2 --batch-sizes 16 \
            --note "the paper's whole grid, cache=prefix, two GPUs"
        # batch_classes=1: the 16 prompts of a length may share one batch (with the default 8 classes a length
        # needs 8 x batch_size prompts to fill its batches)
        sweep sweep_batch_prefix 0 --modes prefix --processes 1 --batch-sizes 1,8,16 --lengths 4000,32000 \
            --depths 0,14,28,42,56,70,84,100 --repeats 2 --model-args batch_classes=1 \
            --note "throughput against batch size at 4k and 32k, cache=prefix, one GPU" &
        sweep sweep_batch_exact 1 --modes exact --processes 1 --batch-sizes 1,8,16 --lengths 4000 \
            --depths 0,7,14,21,28,35,42,49,56,63,70,77,84,91,98,100 --repeats 1 --model-args batch_classes=1 \
            --note "throughput against batch size at 4k, exact mode, one GPU" &
        wait ;;
    rest)
        compare=()  # the two-GPU grid of `prefix`: this machine's copy, or COMPARE (a committed result)
        two_gpus=${COMPARE:-$KEEP/sweep_prefix_2gpu.json}
        [ -f "$two_gpus" ] && compare=(--compare-with "$two_gpus")
        sweep sweep_prefix_1gpu 0 --modes prefix --processes 1 --batch-sizes 16 ${compare[@]+"${compare[@]}"} \
            --note "the paper's whole grid, cache=prefix, one GPU" &
        sweep sweep_exact_subsample 1 --modes exact --processes 1 --batch-sizes 1 --depths 0,50,100 --repeats 1 \
            --note "exact mode, one GPU, 1 repeat x 3 depths at every length, projected" &
        wait ;;
    prefix2)  # the two-GPU grid again as a sweep's later runs go: the grid read from the cache its first run left
        python3 -c "from lm_eval_tasks.longllada_niah.utils import niah_dataset; niah_dataset(pretrained='$FOLDER', \
context_lengths=[2000, 4000, 8000, 16000, 24000, 32000], depths=list(range(0, 101, 10)), num_repeats=10)" \
            >"$OUT/grid_cache.log" 2>&1
        echo "== grid cached at $(($(date +%s) - start)) s"
        sweep sweep_prefix_2gpu_cached_grid 0,1 --modes prefix --processes 2 --batch-sizes 16 \
            --note "the paper's whole grid, cache=prefix, two GPUs, the grid read from the cache of an earlier run" ;;
    *) echo "usage: h200_sweep_session.sh prefix|rest|prefix2" >&2; exit 2 ;;
esac
ls -la "$OUT"
