#!/usr/bin/env bash
# DiffusionGemma-26B-A4B-shaped random bf16 model on one H200 (run from the repository root on the device machine;
# results under $OUT). Needs transformers >= 5.25: `bash benchmarks/h200_session.sh env` first installs the carried
# wheels (.whl/, transformers 5.25 among them) into /tmp/site, which this script puts first on the path.
#   bench:    prompt encoding and one canvas (48 steps) at 32k and 128k, transformers' one-pass prefill and the
#             chunked one, time and peak memory (benchmarks/diffusion_gemma_bench.py).
#   bench256: the same at 256k (a call of its own: the one-pass prefill's dense mask may not fit; recorded).
#   save:     the random model as a checkpoint folder in $MODEL_DIR (about 50 GB of bf16 shards; never committed).
#   niah:     one NIAH cell at 32k (depth 50%) through `longllada eval --model longllada` on that folder.
# Usage: bash benchmarks/diffusion_gemma_session.sh bench bench256 save niah
set -u
OUT=${OUT:-/tmp/out}
MODEL_DIR=${MODEL_DIR:-/tmp/diffusion-gemma-26b-random}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
for part in "$@"; do
    echo "=== $part $(date +%T)"
    case $part in
    bench)
        python3 benchmarks/diffusion_gemma_bench.py --lengths 32k,128k --out "$OUT/diffusion_gemma_h200.json" \
            2>&1 | tee "$OUT/diffusion_gemma_h200.log"
        ;;
    bench256)
        python3 benchmarks/diffusion_gemma_bench.py --lengths 256k --out "$OUT/diffusion_gemma_h200_256k.json" \
            2>&1 | tee "$OUT/diffusion_gemma_h200_256k.log"
        ;;
    save)
        df -h "$(dirname "$MODEL_DIR")"
        # one short timing row, then the folder (the bench refuses a folder that is not new or empty)
        python3 benchmarks/diffusion_gemma_bench.py --lengths 1k --modes chunked --max-denoising-steps 1 \
            --save-model "$MODEL_DIR" --out "$OUT/diffusion_gemma_save.json" 2>&1 | tail -5
        du -sh "$MODEL_DIR"
        ;;
    niah)
        LONGLLADA_LOG_LEVEL=DEBUG python3 -m longllada eval --model longllada \
            --model_args "pretrained=$MODEL_DIR,dtype=bfloat16,max_denoising_steps=48" \
            --tasks longllada_niah --metadata '{"context_lengths": [32768], "depths": [50], "num_repeats": 1}' \
            --device cuda --batch_size 1 --log_samples --output_path "$OUT/diffusion_gemma_niah_32k" \
            2>&1 | tee "$OUT/diffusion_gemma_niah_32k.log" | grep -v "it/s\]"
        ;;
    *)
        echo "unknown part: $part" >&2
        exit 2
        ;;
    esac
done
