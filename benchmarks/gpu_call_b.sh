#!/usr/bin/env bash
# GPU call B of this release (one command, at most 10 minutes; results in three files under $OUT): LLaDA2.0-mini's
# block-cache answer and NIAH cells, and the fixed part of a 10-setting sweep. From the repository root, carrying
# lm-eval's and transformers 5.25's wheels (benchmarks/split_wheels.sh makes .whl-b) and, for the before/after row,
# the code this release started from (BEFORE=.before: `git archive 5d6bba9 modeling_longllada | tar -x -C .before`,
# with this release's benchmarks/llada2_block_cache.py copied into .before/benchmarks):
#
#   run(command="OUT=$OUT bash benchmarks/gpu_call_b.sh", carry=[".whl-b", ".before"], timeout_s=600)
#
# Parts, in order of priority, each under its own cap (seconds; expected in brackets):
#   wheels, versions   lm-eval 0.4.13, transformers 5.25, huggingface_hub 2.4 and their needs into /tmp/site-b,
#                      byte-compiled once (the host sets PYTHONDONTWRITEBYTECODE); the versions            [40]
#   llada2     190     benchmarks/llada2_block_cache.py: the random model saved for the NIAH cells (32.5 GB), then a
#                      32-token answer at 4k/32k/128k with the block cache, the official-style recompute at
#                      4k/32k (the report is rewritten after each run: a cut keeps what finished)          [130]
#   niah_llada2  140   benchmarks/llada2_niah.sh on the saved folder: NIAH cells at 32k and 64k through
#                      `longllada eval`                                                                     [100]
#   settings   190     benchmarks/settings_one_process.sh: 10 NIAH settings in one `longllada eval` process on
#                      the LLaDA-8B-shaped random folder (written first, ~15 GB), each setting's fixed part  [180]
#   llada2_before 45   the 4k answer with the cache on the code before this release's LLaDA2 changes, same card [35]
# A hook script is run as `OUT=<its folder> TIME_CAP_S=<its cap> bash SCRIPT`: it writes its files under $OUT and
# ends within TIME_CAP_S (it is stopped there). Caps sum to 565 s of the 585 s budget (BUDGET_S); the parts' expected
# times to 485 s.
#
# TINY=1: the CPU forms (--tiny, the shipped twin and a 256-token grid for the settings). DRY_RUN=1: the parts and
# their caps only.
BUDGET_S=${BUDGET_S:-585}
source "$(dirname "$0")/gpu_session_lib.sh"
session_start b
TINY=${TINY:-0}
BEFORE=${BEFORE:-.before}
LLADA2_DIR=${LLADA2_DIR:-/tmp/llada2-mini-random}

if [ "$TINY" != 1 ]; then install_wheels .whl-b /tmp/site-b compile; fi
versions
if [ "$TINY" = 1 ]; then
    run_part llada2 190 "$PY" benchmarks/llada2_block_cache.py --tiny "$WORK/llada2_block_cache.json"
    run_hook niah_llada2 140 benchmarks/llada2_niah.sh --tiny
    run_part settings 210 env OUT="$WORK/settings" FOLDER=longllada/models/tiny-llada-diffusion OMP_NUM_THREADS=1 \
        NTK_FACTORS="none 2 3" GRID='{"context_lengths": [256], "depths": [0, 50, 100], "num_repeats": 1}' \
        RESULTS=/tmp/gpu_call_b_settings PY="$PY" bash benchmarks/settings_one_process.sh
else
    rm -rf "$LLADA2_DIR"
    run_part llada2 190 "$PY" benchmarks/llada2_block_cache.py "$WORK/llada2_block_cache.json" \
        --save-model "$LLADA2_DIR" --lengths 4096 32768 131072 --recompute-lengths 4096 32768
    export REUSE_MODEL=1 MODEL_DIR="$LLADA2_DIR"
    run_hook niah_llada2 140 benchmarks/llada2_niah.sh
    unset REUSE_MODEL MODEL_DIR
    rm -rf "$LLADA2_DIR"  # the disk (64 GB on one-GPU machines) for what follows
    run_part settings 190 env OUT="$WORK/settings" FOLDER=/tmp/llada8b-random RESULTS=/tmp/gpu_call_b_settings \
        PY="$PY" bash benchmarks/settings_one_process.sh
    rm -rf /tmp/llada8b-random /tmp/gpu_call_b_settings
fi
if [ -f "$BEFORE/benchmarks/llada2_block_cache.py" ]; then
    run_part llada2_before 45 "$PY" "$BEFORE/benchmarks/llada2_block_cache.py" "$WORK/llada2_block_cache_before.json" \
        $([ "$TINY" = 1 ] && echo "--tiny --lengths 256" || echo "--lengths 4096") --recompute-lengths
else
    echo "=== llada2_before: no $BEFORE/benchmarks/llada2_block_cache.py (see this script's header)"
    record llada2_before - 0 45 "absent: $BEFORE"
fi
session_end
