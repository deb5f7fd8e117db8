#!/usr/bin/env bash
# LLaDA2.0-flash (103B-parameter MoE, 191.6 GiB in bf16) across two H200s: two GPU commands of at most 10 minutes
# each, from the repository root (results in three files under $OUT each). The model needs H200s: its weights exceed
# two H100s' 156 GiB, and the half-depth model (94 GiB) one H100's 78.
#
#   run(command="OUT=$OUT bash benchmarks/llada2_flash_session.sh half", kind="nvidia-h200-x2", needs_h200=true,
#       carry=[".whl-b"], timeout_s=600)
#   run(command="OUT=$OUT bash benchmarks/llada2_flash_session.sh full", kind="nvidia-h200-x2", needs_h200=true,
#       carry=[".whl-b"], timeout_s=600)
#
# The random folder ($ROOT, default /tmp/llada2-flash: benchmarks/llada2_flash_sharded.py's docstring) stays on the
# machine between the two while it is held; a fresh machine writes it again (the folder part), from where an
# interrupted write stopped.
#
# Both parts first install the carried wheels of .whl-b (transformers 5.25, lm-eval: benchmarks/split_wheels.sh) [≈ 40].
# half   versions; folder (the half-depth shards, 101 GB written: cap 280) [≈ 150 at 1 GB/s]; half (the 16-layer
#        model on GPU 0, then device_map="auto" over both GPUs: a 32-token answer at 4k and 32k each, token
#        agreement, seconds, per-GPU peaks: cap 240) [≈ 120]
# full   versions; folder (reused, else written: cap 280); full (the 32-layer
#        model over both GPUs, its later 16 layers created at load on their GPU: the same answers, compared with the
#        half part's report: cap 200) [≈ 150]; niah (the 32k NIAH cell through `longllada eval --model longllada` with
#        parallelize=True, max_memory_per_gpu: cap 250) [≈ 150]
#
# TINY=1: the script's --tiny form on the CPU (a check of this file's logic; no GPU, no wheels). DRY_RUN=1: the parts
# and their caps only.
source "$(dirname "$0")/gpu_session_lib.sh"
part=${1:?usage: llada2_flash_session.sh half|full}
case $part in
half | full) ;;
*) echo "llada2_flash_session.sh: error: part $part is not allowed; allowed: half, full" >&2; exit 2 ;;
esac
session_start "flash_$part"
# The first pass through each expert layer re-lays its 768 expert weights (loaded one allocation each) as one stack:
# growable segments let the freed pieces serve later allocations instead of staying cached beside them.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
TINY=${TINY:-0}
ROOT=${ROOT:-/tmp/llada2-flash}
MAX_MEMORY=${MAX_MEMORY:-120GiB}
HALF_REPORT=/tmp/gpu_call_flash_half/llada2_flash_half_depth.json
if [ "$TINY" = 1 ]; then
    ROOT=/tmp/llada2-flash-tiny
    size=(--tiny)
else
    size=(--max-memory-per-gpu "$MAX_MEMORY")
fi
bench=("$PY" benchmarks/llada2_flash_sharded.py --folder "$ROOT" "${size[@]}")

if [ "$TINY" != 1 ]; then install_wheels .whl-b /tmp/site-b compile; fi
versions
run_part folder 280 "${bench[@]}" --write-only
if [ "$part" = half ]; then
    run_part half 240 "${bench[@]}" --half-depth --out "$WORK/llada2_flash_half_depth.json"
else
    compare=()
    [ -f "$HALF_REPORT" ] && compare=(--compare-with "$HALF_REPORT")
    run_part full 200 "${bench[@]}" --out "$WORK/llada2_flash_sharded.json" "${compare[@]}"
    run_part niah 250 "${bench[@]}" --niah-only --out "$WORK/llada2_flash_niah.json"
fi
session_end
