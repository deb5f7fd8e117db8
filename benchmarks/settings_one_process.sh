#!/usr/bin/env bash
# N NIAH settings of one folder in one `longllada eval` process (--model_args N times, N = 10 by default: cache=prefix
# at the NTK factors of NTK_FACTORS, "none" = no override): the imports are paid once, and each setting's own fixed
# seconds (everything but loading its weights and its sampler calls) are read from the longllada-timing lines of
# $OUT/settings_one_process.log. Printed and kept in $OUT/settings_one_process.txt: each event's seconds from the
# launch, then per setting its span, loading, generation (the sum of its batches) and fixed part, the process's
# start-up (launch to the first setting) and exit, and the fixed part per setting of the whole sweep;
# $OUT/settings_one_process.json holds the same numbers.
#
#   OUT=/tmp/out FOLDER=/tmp/llada8b-random bash benchmarks/settings_one_process.sh
#   GRID=paper LAYERS=1 FOLDER=/tmp/llada8b-1layer OUT=/tmp/out bash benchmarks/settings_one_process.sh
#       (the paper's grid, 660 prompts of 2k-32k tokens, on a one-block model of the 8B's width, embedding and head:
#        the grid's own per-setting work at full size, with little generation)
#   GRID='{"context_lengths": [256], "depths": [0, 50, 100], "num_repeats": 1}' OMP_NUM_THREADS=1 OUT=/tmp/out \
#       FOLDER=longllada/models/tiny-llada-diffusion bash benchmarks/settings_one_process.sh   # CPU
#
# PY (default python3) runs it; EXTRA is appended to the command line (e.g. EXTRA="--limit 12"). The fixed part per
# setting is (whole command - loading - generation) / N: start-up and exit included, shared by the N settings.
set -u
OUT=${OUT:-/tmp/out}
FOLDER=${FOLDER:-/tmp/llada8b-random}
PY=${PY:-python3}
NTK_FACTORS=${NTK_FACTORS:-"none 2 3 4 6 8 10 13 16 20"}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 LONGLLADA_LOG_LEVEL=DEBUG
if [ ! -f "$FOLDER/config.json" ]; then
    "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from multi_gpu import make_folder; \
from pathlib import Path; print(make_folder(Path('$FOLDER'), 0, ${LAYERS:-None}))" >"$OUT/folder.log" 2>&1
fi
grid=${GRID:-'{"context_lengths": [2000, 4000], "depths": [0, 50, 100], "num_repeats": 2}'}
if [ "$grid" = paper ]; then
    grid='{"context_lengths": [2000, 4000, 8000, 16000, 24000, 32000], "depths": [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100], "num_repeats": 10}'
fi
# The grid built (or read) once before the timed command, as a sweep's later runs find it in the cache.
"$PY" -c "import json, sys; from lm_eval_tasks.longllada_niah.utils import niah_dataset; \
niah_dataset(pretrained=sys.argv[1], **json.loads(sys.argv[2]))" "$FOLDER" "$grid" >"$OUT/grid.log" 2>&1
settings=()
for factor in $NTK_FACTORS; do
    if [ "$factor" = none ]; then
        settings+=(--model_args "pretrained=$FOLDER,cache=prefix")
    else
        settings+=(--model_args "pretrained=$FOLDER,cache=prefix,ntk_factor=$factor")
    fi
done
results=${RESULTS:-/tmp/settings_one_process}  # lm-eval's output (not under $OUT: 97 MB of samples a setting at the paper's grid)
rm -rf "$results"  # a fresh output folder: no setting is skipped as finished
launched=$("$PY" -c 'import time; print(f"{time.time():.3f}")')
# shellcheck disable=SC2086  # EXTRA is split into arguments on purpose
"$PY" -m longllada eval --model longllada "${settings[@]}" \
    --tasks longllada_niah --metadata "$grid" --batch_size 16 --log_samples \
    --output_path "$results" ${EXTRA:-} >"$OUT/settings_one_process.log" 2>&1
status=$?
ended=$("$PY" -c 'import time; print(f"{time.time():.3f}")')
echo "exit $status launched $launched ended $ended, $((${#settings[@]} / 2)) settings" \
    | tee "$OUT/settings_one_process.txt"
grep -o 'longllada-timing.*' "$OUT/settings_one_process.log" | "$PY" -c "
import json, sys
launched, ended = $launched, $ended
events = [json.loads(line.split(' ', 1)[1]) for line in sys.stdin]
for record in events:
    if record['event'] != 'batch':
        print(f\"{record['event']:10} {record['t'] - launched:8.2f} s  pid {record.get('pid')}\")
# A setting spans from the end of the one before (the first: from its own start) to its own end ('setting' events of
# longllada eval; without them, from one model's constructor to the next, the last to the process's end). Its
# loading and its sampler calls (the batches) are not fixed cost; everything else in its span is.
ends = [i for i, record in enumerate(events) if record['event'] == 'setting']
if ends:
    bounds = [events[ends[0]]['t'] - events[ends[0]]['seconds']] + [events[i]['t'] for i in ends]
    members = [events[(ends[n - 1] + 1 if n else 0) : ends[n] + 1] for n in range(len(ends))]
else:
    inits = [i for i, record in enumerate(events) if record['event'] == 'init']
    bounds = [events[i]['t'] for i in inits] + [ended]
    members = [events[i : (inits[n + 1] if n + 1 < len(inits) else len(events))] for n, i in enumerate(inits)]
rows = []
for n, mine in enumerate(members):
    span = bounds[n + 1] - bounds[n]
    load = sum(r.get('seconds', 0) for r in mine if r['event'] == 'load')
    generation = sum(r.get('seconds', 0) for r in mine if r['event'] == 'batch')
    rows.append({'setting': n + 1, 'span_s': round(span, 2), 'load_s': round(load, 2),
                 'generation_s': round(generation, 2), 'fixed_s': round(span - load - generation, 2),
                 'answers': sum(len(r.get('prompt_tokens', [])) for r in mine if r['event'] == 'batch')})
    if ends and n:  # the process's CPU seconds over the setting (all of it: loading and generation too)
        rows[-1]['cpu_s'] = round(events[ends[n]]['process_cpu_s'] - events[ends[n - 1]]['process_cpu_s'], 2)
print('setting  span s  load s  generation s  fixed s  answers  CPU s')
for row in rows:
    print(f\"{row['setting']:7} {row['span_s']:7.2f} {row['load_s']:7.2f} {row['generation_s']:13.2f} \"
          f\"{row['fixed_s']:8.2f} {row['answers']:8} {row.get('cpu_s', '-'):>6}\")
summary = {'settings': len(rows), 'whole_s': round(ended - launched, 2)}
if rows:
    startup, teardown = bounds[0] - launched, ended - bounds[-1]
    fixed = [row['fixed_s'] for row in rows]
    loads, generation = sum(row['load_s'] for row in rows), sum(row['generation_s'] for row in rows)
    summary.update(startup_s=round(startup, 2), teardown_s=round(teardown, 2), load_s=round(loads, 2),
                   generation_s=round(generation, 2),
                   fixed_per_setting_s=round((ended - launched - loads - generation) / len(rows), 2),
                   fixed_of_a_setting_mean_s=round(sum(fixed) / len(fixed), 2),
                   fixed_of_settings_after_first_mean_s=round(sum(fixed[1:]) / max(1, len(fixed) - 1), 2))
    print(f\"start-up {startup:.2f} s, exit {teardown:.2f} s; fixed part per setting \"
          f\"{summary['fixed_per_setting_s']:.2f} s = (whole command - loading - generation) / {len(rows)}; \"
          f\"a setting's own: {summary['fixed_of_a_setting_mean_s']:.2f} s (after the first: \"
          f\"{summary['fixed_of_settings_after_first_mean_s']:.2f} s); whole command {summary['whole_s']:.1f} s\")
json.dump({'summary': summary, 'settings': rows, 'events': events}, open('$OUT/settings_one_process.json', 'w'),
          indent=1)
" | tee -a "$OUT/settings_one_process.txt"
