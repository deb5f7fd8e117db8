#!/usr/bin/env bash
# Where a NIAH sweep's fixed seconds go on the GPU machine: imports (cold and warm page cache, with
# python -X importtime), CUDA's first context, and one small `longllada eval` on the shipped tiny twin under
# cProfile and plain, with its longllada-timing lines. Everything goes to $OUT.
#
#   OUT=/tmp/out bash benchmarks/startup_profile.sh
set -u
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 LONGLLADA_LOG_LEVEL=DEBUG
stamp() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
imports="import longllada.lm_eval_model, lm_eval.evaluator, lm_eval.models.huggingface, accelerate"
for pass in cold warm; do
    s=$(stamp)
    "$PY" -X importtime -c "$imports" 2>"$OUT/importtime_$pass.txt"
    echo "imports ($pass): $(python3 -c "print(round($(stamp) - $s, 2))") s"
done
"$PY" - <<'PY'
import time
t = time.time()
import torch
t1 = time.time()
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.zeros(1, device=device)
torch.cuda.synchronize() if device == "cuda" else None
print(f"import torch {t1 - t:.2f} s; first CUDA tensor {time.time() - t1:.2f} s")
PY
grid='{"context_lengths": [256, 512], "depths": [0, 50, 100], "num_repeats": 2}'
run_eval() {  # run_eval NAME PYTHON-PREFIX...: one small eval, its wall seconds and timing lines
    local name=$1
    shift
    local s
    s=$(stamp)
    "$@" -m longllada eval --model longllada \
        --model_args pretrained=longllada/models/tiny-llada-diffusion,cache=prefix --tasks longllada_niah \
        --metadata "$grid" --batch_size 4 --log_samples --output_path "/tmp/profile_$name" >"$OUT/eval_$name.log" 2>&1
    echo "eval $name: exit $?, wall $(python3 -c "print(round($(stamp) - $s, 2))") s (launched at $s)"
    grep -o 'longllada-timing.*' "$OUT/eval_$name.log" | python3 -c "
import json, sys
for line in sys.stdin:
    record = json.loads(line.split(' ', 1)[1])
    print('   ', record['event'], round(record['t'] - $s, 2))"
}
run_eval profiled "$PY" -m cProfile -o "$OUT/eval_tiny.prof"
run_eval plain "$PY"
run_eval plain_again "$PY"
python3 -c "
import pstats
stats = pstats.Stats('$OUT/eval_tiny.prof')
stats.sort_stats('cumulative').print_stats(60)
stats.sort_stats('tottime').print_stats(25)" >"$OUT/eval_tiny_profile.txt"
for pass in cold warm; do sort -t'|' -k2 -n -r "$OUT/importtime_$pass.txt" | head -25 >"$OUT/importtime_${pass}_top.txt"; done
