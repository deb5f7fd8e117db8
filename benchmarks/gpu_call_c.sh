#!/usr/bin/env bash
# GPU call C of this release (one GPU command; results in three files under $OUT): DiffusionGemma's NIAH cell and
# its longest prompt. From the repository root, carrying the same wheels as call B (transformers 5.25 among them):
#
#   run(command="OUT=$OUT bash benchmarks/gpu_call_c.sh", carry=[".whl-b"], timeout_s=480)
#
# Parts (caps in seconds; expected in brackets):
#   wheels, versions   as call B (skipped when /tmp/site-b is already there on a warm machine)             [5-40]
#   niah_diffusion_gemma 260  benchmarks/diffusion_gemma_niah.sh: the 26B-A4B-shaped random model saved by
#                      transformers' class (about 50 GB), its NIAH cell at 32k through `longllada eval`      [200]
#   diffusion_gemma_256k 150  benchmarks/diffusion_gemma_bench.py at 256k (transformers' one-pass prefill and
#                      the chunked one; what runs out of memory is recorded)                                 [100]
#
# TINY=1: the CPU forms. DRY_RUN=1: the parts and their caps only.
BUDGET_S=${BUDGET_S:-450}
source "$(dirname "$0")/gpu_session_lib.sh"
session_start c
TINY=${TINY:-0}
tiny() { [ "$TINY" = 1 ] && echo "$@"; }

if [ "$TINY" != 1 ]; then
    if [ -d /tmp/site-b/transformers ]; then
        export PYTHONPATH="/tmp/site-b${PYTHONPATH:+:$PYTHONPATH}"
        record wheels 0 0 0 "already in /tmp/site-b"
    else
        install_wheels .whl-b /tmp/site-b compile
    fi
fi
versions
run_hook niah_diffusion_gemma 260 benchmarks/diffusion_gemma_niah.sh $(tiny --tiny)
run_part diffusion_gemma_256k 150 "$PY" benchmarks/diffusion_gemma_bench.py $(tiny --tiny) \
    --lengths "$([ "$TINY" = 1 ] && echo 512 || echo 256k)" --out "$WORK/diffusion_gemma_256k.json"
session_end
