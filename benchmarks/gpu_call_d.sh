#!/usr/bin/env bash
# GPU call D of this release (one command; results in three files under $OUT): DiffusionGemma's NIAH cell at 32k
# (after call C found transformers' Hub kernels refusing to load offline), and LLaDA2's steps taken apart beside
# LLaDA-MoE's, before and after this release's LLaDA2 changes on the same card. From the repository root, carrying
# the wheels of call B and the code before (as in gpu_call_b.sh, with benchmarks/llada2_step_profile.py and
# moe_bench.py also copied into .before/benchmarks):
#
#   run(command="OUT=$OUT bash benchmarks/gpu_call_d.sh", carry=[".whl-b", ".before"], timeout_s=600)
#
# Parts (caps in seconds; expected in brackets):
#   wheels, versions   as call B                                                                           [40]
#   niah_diffusion_gemma 220  benchmarks/diffusion_gemma_niah.sh: the 26B-A4B-shaped random model saved by
#                      transformers' class (about 50 GB), its NIAH cell at 32k through `longllada eval`      [150]
#   profile_after 150  benchmarks/llada2_step_profile.py at 4k and 32k, both families, the full shapes         [100]
#   profile_before 120 the same script on the code before, LLaDA2 at 4k                                      [60]
# Caps sum to 490 s of the 570 s budget (BUDGET_S).
#
# TINY=1: the CPU forms. DRY_RUN=1: the parts and their caps only.
source "$(dirname "$0")/gpu_session_lib.sh"
session_start d
TINY=${TINY:-0}
BEFORE=${BEFORE:-.before}

if [ "$TINY" != 1 ]; then install_wheels .whl-b /tmp/site-b compile; fi
versions
run_hook niah_diffusion_gemma 220 benchmarks/diffusion_gemma_niah.sh $([ "$TINY" = 1 ] && echo --tiny)
if [ "$TINY" = 1 ]; then profile=(--tiny); lengths=96; before_lengths=96; else profile=(); lengths=4096,32768; before_lengths=4096; fi
run_part profile_after 150 "$PY" benchmarks/llada2_step_profile.py "${profile[@]}" --label after --lengths "$lengths" \
    "$WORK/llada2_step_profile.json"
if [ -f "$BEFORE/benchmarks/llada2_step_profile.py" ]; then
    run_part profile_before 120 "$PY" "$BEFORE/benchmarks/llada2_step_profile.py" "${profile[@]}" --label before \
        --families llada2 --lengths "$before_lengths" "$WORK/llada2_step_profile.json"
else
    record profile_before - 0 120 "absent: $BEFORE/benchmarks/llada2_step_profile.py"
fi
session_end
