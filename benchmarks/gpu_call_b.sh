#!/usr/bin/env bash
# GPU call B of this release (one command, at most 10 minutes; results in three files under $OUT). From the
# repository root, carrying lm-eval's and transformers 5.25's wheels (benchmarks/split_wheels.sh makes .whl-b):
#
#   run(command="OUT=$OUT bash benchmarks/gpu_call_b.sh", carry=[".whl-b"], timeout_s=600)
#
# Parts, in order of priority, each under its own cap (seconds; expected in brackets):
#   wheels, versions   lm-eval 0.4.13, transformers 5.25, huggingface_hub 2.4 and their needs into /tmp/site-b,
#                      byte-compiled once (the host sets PYTHONDONTWRITEBYTECODE); the versions            [40]
#   settings   190     benchmarks/settings_one_process.sh: 10 NIAH settings in one `longllada eval` process on
#                      the LLaDA-8B-shaped random folder (written first, ~15 GB), each setting's fixed part  [180]
#   diffusion_gemma 110  benchmarks/diffusion_gemma_bench.py at 32k and 128k (transformers' own model,
#                      26B-A4B shape, random bf16 on the GPU)                                              [90]
#   niah_llada2  180   benchmarks/llada2_niah.sh: the LLaDA2.0-mini-shaped random model saved (32.5 GB), its NIAH
#                      cells at 32k and 64k through `longllada eval`                                       [150]
# DiffusionGemma's NIAH cell (a 50 GB folder) and its 256k bench are call C (benchmarks/gpu_call_c.sh).
# A hook script is run as `OUT=<its folder> TIME_CAP_S=<its cap> bash SCRIPT`: it writes its files under $OUT and
# ends within TIME_CAP_S (it is stopped there). Caps sum to 480 s of the 570 s budget (BUDGET_S).
#
# TINY=1: the CPU forms (the shipped twin and a 256-token grid for the settings, --tiny elsewhere). DRY_RUN=1: the
# parts and their caps only.
source "$(dirname "$0")/gpu_session_lib.sh"
session_start b
TINY=${TINY:-0}
tiny() { [ "$TINY" = 1 ] && echo "$@"; }

if [ "$TINY" != 1 ]; then install_wheels .whl-b /tmp/site-b compile; fi
versions
if [ "$TINY" = 1 ]; then
    run_part settings 210 env OUT="$WORK/settings" FOLDER=longllada/models/tiny-llada-diffusion OMP_NUM_THREADS=1 \
        NTK_FACTORS="none 2 3" GRID='{"context_lengths": [256], "depths": [0, 50, 100], "num_repeats": 1}' \
        RESULTS=/tmp/gpu_call_b_settings PY="$PY" bash benchmarks/settings_one_process.sh
else
    run_part settings 190 env OUT="$WORK/settings" FOLDER=/tmp/llada8b-random RESULTS=/tmp/gpu_call_b_settings \
        PY="$PY" bash benchmarks/settings_one_process.sh
    rm -rf /tmp/llada8b-random /tmp/gpu_call_b_settings  # the disk (64 GB on one-GPU machines) for what follows
fi
run_part diffusion_gemma 110 "$PY" benchmarks/diffusion_gemma_bench.py $(tiny --tiny) \
    $([ "$TINY" = 1 ] || echo --lengths 32k,128k) --out "$WORK/diffusion_gemma_bench.json"
run_hook niah_llada2 180 benchmarks/llada2_niah.sh $(tiny --tiny)
session_end
