#!/usr/bin/env bash
# Three NIAH settings of one LLaDA-8B-shaped folder in one `longllada eval` process (--model_args three times):
# the imports are paid once, and each setting's own fixed seconds (loading, grid, requests, after its answers)
# show in the longllada-timing lines of $OUT/settings_one_process.log, listed in $OUT/settings_one_process.txt
# (each event's seconds from the launch, and its process id).
#
#   OUT=/tmp/out FOLDER=/tmp/llada8b-random bash benchmarks/settings_one_process.sh
#   GRID='{"context_lengths": [256], "depths": [0, 100], "num_repeats": 1}' OUT=/tmp/out \
#       FOLDER=longllada/models/tiny-llada-diffusion bash benchmarks/settings_one_process.sh   # CPU
set -u
OUT=${OUT:-/tmp/out}
FOLDER=${FOLDER:-/tmp/llada8b-random}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 LONGLLADA_LOG_LEVEL=DEBUG
if [ ! -f "$FOLDER/config.json" ]; then
    python3 -c "import sys; sys.path.insert(0, 'benchmarks'); from multi_gpu import make_folder; \
from pathlib import Path; print(make_folder(Path('$FOLDER'), 0))" >"$OUT/folder.log" 2>&1
fi
grid=${GRID:-'{"context_lengths": [2000, 4000], "depths": [0, 50, 100], "num_repeats": 2}'}
launched=$(python3 -c 'import time; print(f"{time.time():.3f}")')
python3 -m longllada eval --model longllada \
    --model_args "pretrained=$FOLDER,cache=prefix" \
    --model_args "pretrained=$FOLDER,cache=prefix,ntk_factor=4" \
    --model_args "pretrained=$FOLDER,cache=prefix,ntk_factor=13" \
    --tasks longllada_niah --metadata "$grid" --batch_size 16 --log_samples \
    --output_path /tmp/settings_one_process >"$OUT/settings_one_process.log" 2>&1
echo "exit $? launched $launched ended $(python3 -c 'import time; print(f"{time.time():.3f}")')" \
    | tee "$OUT/settings_one_process.txt"
grep -o 'longllada-timing.*' "$OUT/settings_one_process.log" | python3 -c "
import json, sys
for line in sys.stdin:
    record = json.loads(line.split(' ', 1)[1])
    if record['event'] != 'batch':
        print(f\"{record['event']:10} {record['t'] - $launched:8.2f} s  pid {record.get('pid')}\")" \
    | tee -a "$OUT/settings_one_process.txt"
