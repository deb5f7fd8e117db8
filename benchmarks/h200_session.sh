#!/usr/bin/env bash
# GPU session steps (run from the repository root on the device machine; results under $OUT).
#   env:    install the carried lm-eval wheels (.whl/) into /tmp/site and print the versions that matter.
#   dream:  Dream-v0-7B-shaped random bf16 model, forward + 32-token answer at 4k/16k/32k, exact and prefix.
#   tinyeval: the real `longllada eval` NIAH run on the shipped tiny twin, on the GPU (a smoke test of the path).
# Usage: bash benchmarks/h200_session.sh env dream tinyeval
set -u
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
for part in "$@"; do
    echo "=== $part $(date +%T)"
    case $part in
    env)
        if [ ! -d /tmp/site/lm_eval ]; then
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
        fi
        nvidia-smi -L
        python3 -c "import torch, transformers, accelerate, lm_eval, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'lm_eval', lm_eval.__version__, 'datasets', datasets.__version__, 'gpus', torch.cuda.device_count())"
        ;;
    dream)
        python3 benchmarks/dream_bench.py --lengths 4096,16384,32768 --out "$OUT/h200_dream.json" 2>&1 | tee "$OUT/h200_dream.log"
        ;;
    tinyeval)
        python3 -m longllada eval --model longllada \
            --model_args pretrained=longllada/models/tiny-llada-diffusion,cache=prefix,dtype=float32 \
            --tasks longllada_niah --include_path lm_eval_tasks --batch_size 4 \
            --metadata '{"context_lengths":[256,512],"depths":[0,50,100],"num_repeats":2}' \
            --output_path /tmp/tinyeval --log_samples 2>&1 | tail -n 25
        ;;
    *) echo "unknown part $part"; exit 2 ;;
    esac
done
