#!/usr/bin/env bash
# GPU steps of the speed work (run from the repository root on the device machine; results under $OUT). Each part
# stays under the 10-minute limit of one command; give them one or two at a time.
#   env:            lm-eval's and fa3-fwd's wheels from .whl/ into /tmp/site, byte-compiled once (the host sets
#                   PYTHONDONTWRITEBYTECODE), and the versions that matter.
#   fastdllm:       Fast-dLLM (the checkout in .fastdllm/, or FASTDLLM) beside ours at 4k and 16k (~5 min).
#   fastdllm32k:    the same at 32k, two timed runs a configuration (~4 min).
#   profile:        one cached step at a 4k prompt taken apart (~1 min; FA3 measured when it imports).
#   settings:       10 settings in one `longllada eval` process, LLaDA-8B-shaped folder, 12 prompts each (~3 min).
#   settings_paper: 10 settings on the paper's grid (660 prompts each) with a one-block folder of the 8B's width,
#                   embedding and head (~6-8 min).
#   fixed:          the per-setting work that grows with the grid, on this host's CPU (~1-2 min).
# Usage: OUT=$OUT bash benchmarks/h200_speed_session.sh env profile
# (This release's GPU work runs in two calls instead: benchmarks/gpu_call_a.sh and gpu_call_b.sh.)
set -u
OUT=${OUT:-/tmp/out}
FASTDLLM=${FASTDLLM:-.fastdllm}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export GIT_COMMIT=${GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
mkdir -p "$OUT"
for part in "$@"; do
    echo "=== $part $(date +%T)"
    case $part in
    env)
        if [ ! -d /tmp/site/lm_eval ]; then
            python3 -m pip install -q --no-index --no-deps --no-cache-dir --target /tmp/site .whl/*.whl
            python3 -m compileall -q -j 0 /tmp/site >/dev/null 2>&1
        fi
        nvidia-smi -L
        python3 -c "import torch, transformers, lm_eval; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'lm_eval', lm_eval.__version__)"
        python3 -c "import sys, fa3_fwd_config; sys.modules.setdefault('flash_attn_config', fa3_fwd_config); \
import fa3_fwd_interface; print('fa3_fwd imports')"
        python3 -c "import einops; print('einops', einops.__version__)"
        ;;
    fastdllm)
        python3 benchmarks/fastdllm_compare.py --fastdllm "$FASTDLLM" --lengths 4096,16384 --deadline-s 480 \
            --out "$OUT/fastdllm_compare_h200.json" >"$OUT/fastdllm_compare_h200.log" 2>&1
        echo "exit $?"; tail -n 10 "$OUT/fastdllm_compare_h200.log"
        ;;
    fastdllm32k)
        python3 benchmarks/fastdllm_compare.py --fastdllm "$FASTDLLM" --lengths 32768 --repeats 2 \
            --out "$OUT/fastdllm_compare_h200_32k.json" >"$OUT/fastdllm_compare_h200_32k.log" 2>&1
        echo "exit $?"; tail -n 6 "$OUT/fastdllm_compare_h200_32k.log"
        ;;
    profile)
        python3 benchmarks/cached_step_profile.py --lengths 4096 --out "$OUT/cached_step_profile_h200.json" \
            >"$OUT/cached_step_profile_h200.log" 2>&1
        echo "exit $?"; tail -n 30 "$OUT/cached_step_profile_h200.log"
        ;;
    settings)
        OUT=$OUT/settings FOLDER=/tmp/llada8b-random bash benchmarks/settings_one_process.sh | tail -n 14
        ;;
    settings_paper)
        GRID=paper LAYERS=1 OUT=$OUT/settings_paper FOLDER=/tmp/llada8b-1layer bash benchmarks/settings_one_process.sh \
            | tail -n 14
        ;;
    fixed)
        python3 benchmarks/setting_fixed_part.py --label "$GIT_COMMIT" --out "$OUT/setting_fixed_part_gpu_host.json" \
            2>&1 | grep -v -i warn | tail -n 5
        ;;
    *) echo "unknown part $part"; exit 2 ;;
    esac
done
