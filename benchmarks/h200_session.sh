#!/usr/bin/env bash
# Steps of a GPU run (from the repository root on the GPU machine; results under $OUT).
#   env:    install the carried lm-eval wheels (.whl/) into /tmp/site and print the versions that matter.
#   dream:  Dream-v0-7B-shaped random bf16 model, forward + 32-token answer at 4k/16k/32k, exact and prefix.
#   tinyeval: the real `longllada eval` NIAH run on the shipped tiny twin, on the GPU (a smoke test of the path).
#   fa4stash: keep the flash-attn 4 pieces carried in .fa4/c1..c3 (one per call: the tree travels 64 MiB at most)
#             in /tmp/fa4parts; fa4install: join the split wheel, check it, install everything into /tmp/fa4site.
#   fastpath: fast against plain path (tokens in four modes, logits, times): LLaDA-8B and Dream-7B shapes, twin.
#   bench:    generate_bench's length table (the README's H200 table), re-measured on this code.
#   flash:    sdpa against flash-attn 4 (logits, exact-mode tokens, times, a padded batch).
#   fused:    the fast path's fused Triton kernels on and off: each kernel, a forward pass, its profile, generate.
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
    fa4stash)
        mkdir -p /tmp/fa4parts && cp .fa4/c*/* /tmp/fa4parts/ && ls -la /tmp/fa4parts
        ;;
    fa4install)
        wheel=/tmp/fa4parts/nvidia_cutlass_dsl_libs_cu13-4.8.1-cp312-cp312-manylinux_2_28_x86_64.whl
        cat /tmp/fa4parts/cu13.part0[0-3] > "$wheel"
        echo "b45c1bac0786a433970dc75163c36011  $wheel" | md5sum -c - || exit 1
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/fa4site /tmp/fa4parts/*.whl
        ;;
    fastpath)
        [ -n "${DREAM_ONLY:-}" ] || python3 benchmarks/fast_path_check.py --arch llada --lengths 4096,16384 --repeats 3 \
            --out "$OUT/fast_path_h200_llada.json" 2>&1 | tail -n 4
        python3 benchmarks/fast_path_check.py --arch dream --lengths 4096 --repeats 3 \
            --out "$OUT/fast_path_h200_dream.json" 2>&1 | tail -n 3
        python3 benchmarks/fast_path_check.py --twin --lengths 512,2048 --out "$OUT/fast_path_twin.json" 2>&1 | tail -n 3
        ;;
    fused)
        python3 benchmarks/fused_kernels_check.py --out "$OUT/fused_kernels_h200.json" 2>&1 | tee "$OUT/fused_kernels_h200.log" | tail -n 20
        ;;
    bench)
        GIT_COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown) python3 benchmarks/generate_bench.py \
            --parts lengths --lengths 4096,8192,16384,32768 --full-up-to 8192 --probe-steps 2 --graph \
            --out "$OUT/h200_v4.json" 2>&1 | tail -n 8
        ;;
    flash)
        PYTHONPATH=/tmp/fa4site:/tmp/fa4site/nvidia_cutlass_dsl/dsl_packages:$PYTHONPATH \
            python3 benchmarks/attention_backends.py --lengths 4096,16384,32768 --generate-lengths 4096,16384 \
            --out "$OUT/attention_backends_h200.json" 2>&1 | tail -n 8
        ;;
    *) echo "unknown part $part"; exit 2 ;;
    esac
done
