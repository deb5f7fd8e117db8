#!/usr/bin/env bash
# Split the wheels of .whl/ for the two GPU calls of this release (the working tree that travels with a GPU command
# is limited to 64 MiB, and the tracked tree takes about 28 MB of it), and gather Fast-dLLM's files:
#   .whl-a/  FlashAttention-3's fa3-fwd wheel                          -> carried by benchmarks/gpu_call_a.sh
#   .whl-b/  every other wheel (lm-eval and its needs, transformers, huggingface_hub, ...) -> gpu_call_b.sh
#   .fastdllm/  the files of a Fast-dLLM checkout that benchmarks/fastdllm_compare.py imports (--fastdllm-from DIR)
# All three are git-ignored. Prints each call's size: the tracked tree + what it carries, against the 64 MiB limit.
#
#   bash benchmarks/split_wheels.sh [--wheels .whl] [--fastdllm-from /path/to/Fast-dLLM]
set -eu
wheels=.whl
fastdllm_from=
while [ $# -gt 0 ]; do
    case $1 in
    --wheels) wheels=$2; shift 2 ;;
    --fastdllm-from) fastdllm_from=$2; shift 2 ;;
    *) echo "split_wheels.sh: error: unknown argument $1; allowed: --wheels DIR, --fastdllm-from DIR" >&2; exit 2 ;;
    esac
done
if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "split_wheels.sh: error: no wheels in $wheels" >&2
    exit 2
fi
rm -rf .whl-a .whl-b
mkdir -p .whl-a .whl-b
for wheel in "$wheels"/*.whl; do
    case $(basename "$wheel") in
    fa3_fwd-*) cp "$wheel" .whl-a/ ;;
    *) cp "$wheel" .whl-b/ ;;
    esac
done
if [ -n "$fastdllm_from" ]; then
    files=$(python3 - <<'EOF'
import ast, pathlib
tree = ast.parse(pathlib.Path("benchmarks/fastdllm_compare.py").read_text())
for node in tree.body:
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FASTDLLM_FILES":
        print(" ".join(ast.literal_eval(node.value)))
EOF
)
    rm -rf .fastdllm
    for file in $files; do
        mkdir -p ".fastdllm/$(dirname "$file")"
        cp "$fastdllm_from/$file" ".fastdllm/$file"
    done
fi
bytes() { du -sb "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -n 1 | cut -f1)
untracked=${untracked:-0}
limit=$((64 * 1024 * 1024))
report() {  # report NAME CARRIED...
    local name=$1
    shift
    local carried
    carried=$(bytes "$@")
    awk -v name="$name" -v what="$*" -v carried="$carried" -v tracked="$tracked" -v untracked="$untracked" \
        -v limit="$limit" 'BEGIN {
            total = tracked + untracked + carried
            printf "%s: carries %s (%.1f MB); with the tracked tree (%.1f MB) and untracked files (%.1f MB): " \
                "%.1f MB of %.1f MB: %s\n", name, what, carried / 1e6, tracked / 1e6, untracked / 1e6, total / 1e6,
                limit / 1e6, (total <= limit ? "fits" : "TOO LARGE")
        }'
}
ls -l .whl-a .whl-b
[ -d .fastdllm ] && find .fastdllm -type f | sort
report "call A (gpu_call_a.sh)" .whl-a $([ -d .fastdllm ] && echo .fastdllm)
report "call B (gpu_call_b.sh)" .whl-b
