#!/usr/bin/env bash
# The NIAH sweep on one nvidia-h200-x2 lease: two commands of under 9 minutes each (10-minute limit per command).
# Run from the repository root with lm-eval importable; every JSON goes to $OUT (at most 8 files come back).
#
#   bash benchmarks/h200_sweep_session.sh prefix   # command 1, ~7 min
#       writes the LLaDA-8B-shaped random bf16 folder (~20 s), then the paper's whole grid (2k-32k × 11 depths ×
#       10 repeats = 660 answers) with cache=prefix on two GPUs (accelerate launch, batch 4):
#       $OUT/sweep_prefix_2gpu.json (+ its log). A copy stays in /tmp/sweep_results for command 2.
#   bash benchmarks/h200_sweep_session.sh rest     # command 2, ~8.5 min
#       (rewrites the folder if the machine was handed back in between), then, in this order, each run stopped
#       at the command's deadline if it would overrun it (its finished batches are still recorded):
#       exact mode on two GPUs, 1 repeat × depths 0/50/100 at every length (18 answers), projected to the
#         whole grid: $OUT/sweep_exact_subsample.json
#       cache=prefix on one GPU, batch 4, 1 repeat × 11 depths at every length (66 answers), projected, and its
#         answers compared with the two-GPU run of command 1: $OUT/sweep_prefix_1gpu.json
#       batch sizes 1, 4, 8, 16 at 4k and 32k (16 answers each), cache=prefix, one GPU per run, two runs side
#         by side: $OUT/sweep_batch_sizes.json
#   Each of the three also runs alone (`... exact`, `... prefix1`, `... batch`), e.g. to finish one that the
#   deadline of `rest` cut short, with what is left of the device time.
#
# SWEEP_EXTRA is appended to every invocation (a check on CPU: SWEEP_EXTRA="--cpu --lengths 256 --depths 0,100
# --repeats 1" FOLDER=longllada/models/tiny-llada-diffusion OUT=/tmp/o bash benchmarks/h200_sweep_session.sh rest).
#
# Batch 4 for the grids: the prefix cache of an 8B model holds ~0.55 MB per position and prompt (18 GB at 32k),
# so batch 8 does not fit 32k on a 141 GB card (the adapter would split it after an out-of-memory error).
set -u
# shellcheck disable=SC2086  # SWEEP_EXTRA is split into arguments on purpose
part=${1:?usage: h200_sweep_session.sh prefix|rest|exact|prefix1|batch}
OUT=${OUT:-/tmp/out}
FOLDER=${FOLDER:-/tmp/llada8b-random}
KEEP=/tmp/sweep_results
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export GIT_COMMIT=${GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
mkdir -p "$OUT" "$KEEP"
start=$(date +%s)
END=$((start + ${SESSION_SECONDS:-525}))  # this command's own deadline, under the 10-minute limit
left() { echo $((END - $(date +%s))); }
build=()
[ -f "$FOLDER/config.json" ] || build=(--build-folder)
sweep() {  # sweep NAME ARGS...: one benchmarks/niah_sweep.py invocation, JSON and log into $OUT
    local name=$1
    shift
    python3 benchmarks/niah_sweep.py --folder "$FOLDER" --work-dir "/tmp/sweep_$name" --deadline-s "$(left)" \
        --out "$OUT/$name.json" "$@" ${SWEEP_EXTRA:-} >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? at $(($(date +%s) - start)) s"
    tail -n 12 "$OUT/$name.log"
    cp "$OUT/$name.json" "$KEEP/" 2>/dev/null
    build=()
}
exact() {
    sweep sweep_exact_subsample ${build[@]+"${build[@]}"} --modes exact --processes 2 --batch-sizes 1 \
        --depths 0,50,100 --repeats 1 --note "exact mode, 1 repeat x 3 depths at every length, projected"
}
prefix1() {
    local compare=()
    [ -f "$KEEP/sweep_prefix_2gpu.json" ] && compare=(--compare-with "$KEEP/sweep_prefix_2gpu.json")
    sweep sweep_prefix_1gpu ${build[@]+"${build[@]}"} --modes prefix --processes 1 --batch-sizes 4 --repeats 1 \
        ${compare[@]+"${compare[@]}"} --note "cache=prefix, one GPU, 1 repeat x 11 depths at every length, projected"
}
batch() {
    sweep sweep_batch_sizes ${build[@]+"${build[@]}"} --modes prefix --processes 1 --batch-sizes 1,4,8,16 \
        --lengths 4000,32000 --depths 0,14,28,42,56,70,84,100 --repeats 2 --parallel-single \
        --note "throughput against batch size at 4k and 32k, cache=prefix, one GPU per run"
}
case "$part" in
    prefix)
        sweep sweep_prefix_2gpu ${build[@]+"${build[@]}"} --modes prefix --processes 2 --batch-sizes 4 \
            --note "the paper's whole grid, cache=prefix, two GPUs" ;;
    rest) exact; prefix1; batch ;;
    exact | prefix1 | batch) "$part" ;;
    *) echo "usage: h200_sweep_session.sh prefix|rest|exact|prefix1|batch" >&2; exit 2 ;;
esac
ls -la "$OUT"
