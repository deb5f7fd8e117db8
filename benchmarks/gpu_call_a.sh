#!/usr/bin/env bash
# GPU call A of this release (one command, at most 10 minutes; results in three files under $OUT). From the
# repository root, carrying the FlashAttention-3 wheel and Fast-dLLM's files (benchmarks/split_wheels.sh makes both):
#
#   run(command="OUT=$OUT bash benchmarks/gpu_call_a.sh", carry=[".whl-a", ".fastdllm"], timeout_s=600)
#
# Parts, each under its own cap, run in the order fa3, fastdllm, llada2, moe, profile (the order of priority) (seconds; expected in brackets, from the earlier H200 runs in
# benchmarks/NOTES.md and benchmarks/results):
#   wheels, versions   fa3-fwd into /tmp/site-a; GPU, torch, transformers, triton, FlashAttention-3       [15]
#   fa3        120     benchmarks/fa3_check.py: FA3 against sdpa (exactness, TFLOP/s at 4k-128k, 32-query
#                      calls), the exact-mode step at the NIAH grid's lengths with each, the rule's
#                      thresholds, the grid projected, the official code's step at 32k and 4k               [100]
#   profile     80     benchmarks/cached_step_profile.py at 4k and 32k: the cached step before / after this
#                      release's changes / after with FA3 split-KV, inside generate, its kernels, the parts  [70]
#   fastdllm   150     benchmarks/fastdllm_compare.py: Fast-dLLM's prefix and dual caches (threshold off and
#                      0.9) beside ours at 4k, 16k, 32k, one timed run each (32k: out of memory on 80 GB?)  [130]
#   moe         60     benchmarks/moe_bench.py: LLaDA-MoE-7B-A1B shape at 4k, 16k and 32k, exact and prefix    [55]
#   llada2      80     benchmarks/llada2_block_cache.py: LLaDA2.0-mini shape, 32-token answer at 4k/32k/128k with
#                      the block cache, the official-style recompute at 4k/32k                            [70]
# Caps sum to 490 s of the 570 s budget (BUDGET_S); a part past what is left is cut to it or skipped.
#
# TINY=1: every part's --tiny form on the CPU (a check of this script's logic; no GPU, no wheels needed).
# DRY_RUN=1: print the parts and their caps only.
source "$(dirname "$0")/gpu_session_lib.sh"
session_start a
TINY=${TINY:-0}
tiny() { [ "$TINY" = 1 ] && echo "$@"; }
FASTDLLM=${FASTDLLM:-.fastdllm}

if [ "$TINY" != 1 ]; then install_wheels .whl-a /tmp/site-a; fi
versions
run_part fa3 120 "$PY" benchmarks/fa3_check.py $(tiny --tiny) --out "$WORK/fa3_check.json"
if [ -f "$FASTDLLM/llada/generate.py" ]; then
    run_part fastdllm 150 "$PY" benchmarks/fastdllm_compare.py --fastdllm "$FASTDLLM" $(tiny --tiny) \
        --lengths "$([ "$TINY" = 1 ] && echo 96 || echo 4096,16384,32768)" --repeats 1 --warmup 1 --deadline-s 110 \
        --out "$WORK/fastdllm_compare.json"
else
    echo "=== fastdllm: no Fast-dLLM files in $FASTDLLM (benchmarks/split_wheels.sh --fastdllm-from CHECKOUT)"
    record fastdllm - 0 160 "absent: $FASTDLLM"
fi
run_part llada2 80 "$PY" benchmarks/llada2_block_cache.py "$WORK/llada2_block_cache.json" $(tiny --tiny)
run_part moe 60 "$PY" benchmarks/moe_bench.py "$WORK/moe_bench.json" $(tiny --tiny) \
    --lengths "$([ "$TINY" = 1 ] && echo 64,256 || echo 4096,16384,32768)" --repeats 2
run_part profile 80 "$PY" benchmarks/cached_step_profile.py $(tiny --tiny) --lengths 4096,32768 \
    --out "$WORK/cached_step_profile.json"
session_end
