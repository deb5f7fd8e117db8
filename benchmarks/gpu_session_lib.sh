#!/usr/bin/env bash
# Shared by benchmarks/gpu_call_a.sh and gpu_call_b.sh (sourced, not run): one command of at most 10 minutes,
# split into parts that each run under their own time cap, so that one part's failure or overrun loses nothing else.
#
# Results: every part writes under $WORK (a scratch folder, /tmp/gpu_call_$CALL); after each part the whole of $WORK
# is packed again into $OUT/call_$CALL.tar.gz and the summary rewritten to $OUT/call_$CALL_summary.txt, and the
# console goes to $OUT/call_$CALL_console.log: three files come back (the device returns at most 8, 2 folders
# down), even when the command is killed at its limit.
#
# Variables: GIT_COMMIT (the commit measured: its hash written into the command from the checkout, since the copy
# of the tree on the device may carry stale git metadata), OUT (required on the device), BUDGET_S (seconds the whole
# script may take, default 570: the command limit is 600), DRY_RUN=1 (print each part's command and cap instead of
# running it: a check on any machine).

set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GIT_COMMIT=${GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export GIT_DIRTY=${GIT_DIRTY:-$(if git diff --quiet HEAD 2>/dev/null; then echo 0; else echo 1; fi)}
export PY=${PY:-python3}  # hook scripts run as their own processes use the same interpreter
BUDGET_S=${BUDGET_S:-570}
RESERVE_S=15  # kept back for packing and the summary
MIN_PART_S=20  # a part given less than this is skipped
SESSION_START=$(date +%s)

session_start() {  # session_start CALL: scratch folder, console log, the parts' table
    CALL=$1
    OUT=${OUT:-/tmp/out}
    WORK=/tmp/gpu_call_$CALL
    mkdir -p "$OUT"
    rm -rf "$WORK" && mkdir -p "$WORK"
    exec > >(tee -a "$OUT/call_${CALL}_console.log") 2>&1
    printf 'part\texit\tseconds\tcap\tnote\n' >"$WORK/parts.tsv"
    echo "=== call $CALL at $(date -u +%FT%TZ), commit $GIT_COMMIT (dirty $GIT_DIRTY), budget ${BUDGET_S} s"
}

seconds_left() { echo $((BUDGET_S - ($(date +%s) - SESSION_START))); }

record() {  # record PART EXIT SECONDS CAP NOTE
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$WORK/parts.tsv"
}

pack() {  # everything under $WORK into one archive, and the summary beside it
    if [ "${DRY_RUN:-0}" = 1 ]; then return; fi
    "$PY" benchmarks/gpu_session_summary.py "$WORK" >"$WORK/summary.txt" 2>&1 || true
    cp "$WORK/summary.txt" "$OUT/call_${CALL}_summary.txt"
    tar -czf "$OUT/call_${CALL}.tar.gz.part" -C "$WORK" . && mv "$OUT/call_${CALL}.tar.gz.part" "$OUT/call_${CALL}.tar.gz"
}

run_part() {  # run_part NAME CAP_S COMMAND...: COMMAND under min(CAP_S, what is left), its output in $WORK/NAME.log
    local name=$1 cap=$2
    shift 2
    local left=$(($(seconds_left) - RESERVE_S))
    [ "$cap" -gt "$left" ] && cap=$left
    if [ "$cap" -lt "$MIN_PART_S" ]; then
        echo "=== $name: skipped, ${left} s left"
        record "$name" - 0 "$cap" "skipped: no time left"
        pack
        return
    fi
    echo "=== $name (cap ${cap} s) $(date +%T): $*"
    if [ "${DRY_RUN:-0}" = 1 ]; then
        record "$name" dry 0 "$cap" "dry run"
        return
    fi
    local started=$(date +%s)
    timeout --signal=TERM --kill-after=10 "$cap" "$@" >"$WORK/$name.log" 2>&1
    local status=$?
    local took=$(($(date +%s) - started))
    local note=""
    [ "$status" = 124 ] || [ "$status" = 137 ] && note="stopped at its cap"
    record "$name" "$status" "$took" "$cap" "$note"
    echo "=== $name: exit $status after ${took} s ${note}"
    tail -n 8 "$WORK/$name.log"
    pack
}

run_hook() {  # run_hook NAME CAP_S SCRIPT [ARGS...]: a part whose script may be absent, run only when it exists
    local name=$1 cap=$2 script=$3
    shift 3
    if [ ! -f "$script" ]; then
        echo "=== $name: $script is not in this checkout (a hook for when it lands)"
        record "$name" - 0 "$cap" "absent: $script"
        return
    fi
    case $script in
    *.py) run_part "$name" "$cap" "$PY" "$script" --out "$WORK/$name.json" "$@" ;;
    *) run_part "$name" "$cap" env OUT="$WORK/$name" TIME_CAP_S="$cap" bash "$script" "$@" ;;
    esac
}

install_wheels() {  # install_wheels DIR TARGET [compile]: the carried wheels into TARGET, first on PYTHONPATH
    local dir=$1 target=$2
    if [ "${DRY_RUN:-0}" = 1 ]; then
        echo "=== wheels: would install $(ls "$dir"/*.whl 2>/dev/null | wc -l) wheels from $dir into $target"
        return 0
    fi
    if ! ls "$dir"/*.whl >/dev/null 2>&1; then
        echo "=== no wheels in $dir (carry it: benchmarks/split_wheels.sh makes it)"
        record wheels 1 0 0 "no wheels in $dir"
        return 1
    fi
    local started=$(date +%s)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$target" "$dir"/*.whl
    local status=$?
    # The host sets PYTHONDONTWRITEBYTECODE: without this, every process compiles the installed packages again.
    if [ "${3:-}" = compile ]; then "$PY" -m compileall -q -j 0 "$target" >/dev/null 2>&1; fi
    "$PY" -m compileall -q -j 0 modeling_longllada longllada lm_eval_tasks benchmarks >/dev/null 2>&1
    export PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}"
    record wheels "$status" $(($(date +%s) - started)) 0 "$(ls "$dir" | wc -l) wheels from $dir"
    return "$status"
}

versions() {  # the environment, printed and kept
    {
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1
        "$PY" - <<'EOF'
import importlib, platform, sys
print("python", platform.python_version())
for name in ("torch", "transformers", "triton", "lm_eval", "datasets", "huggingface_hub", "accelerate", "einops"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), module.__file__)
    except Exception as error:  # noqa: BLE001 - a report of what is there
        print(name, "missing:", type(error).__name__, str(error)[:200])
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability())
import modeling_longllada.modeling_longllada as m
print("flash_attention_3:", "importable from " + m.fa3_func.__module__ if m.fa3_func else "not importable",
      "build", m._FA3_FLAGS or "-")
EOF
    } 2>&1 | tee "$WORK/environment.txt"
}

session_end() {
    echo "=== call $CALL done after $(($(date +%s) - SESSION_START)) s"
    pack
    if [ "${DRY_RUN:-0}" != 1 ]; then cat "$WORK/summary.txt"; fi
}
