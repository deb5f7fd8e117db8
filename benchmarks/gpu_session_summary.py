"""The short table printed at the end of a GPU call (benchmarks/gpu_call_a.sh, gpu_call_b.sh): per part its exit
status, seconds and cap, then the figures the release's targets are judged by, read from the parts' JSON files in the
call's scratch folder (whatever is there: a part that failed or was stopped shows what it wrote).

    python benchmarks/gpu_session_summary.py /tmp/gpu_call_a
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fa3_lines(data: dict) -> list[str]:
    lines = []
    for row in data.get("speed", {}).get("full", []):
        if row.get("keys") in (4096, 32768, 131072):
            lines.append(
                f"  attention {row['queries']}x{row['keys']}: sdpa {row.get('sdpa_default_tflops', 0):.0f} TFLOP/s, "
                f"FA3 {row.get('fa3_tflops', 0):.0f} ({row.get('fa3_speedup', 0):.2f}x)"
            )
    for row in data.get("speed", {}).get("few_queries", []):
        cells = ", ".join(f"{k.removesuffix('_ms_per_layer')} {v:.3f}" for k, v in row.items() if k.endswith("_layer"))
        lines.append(f"  32 queries x {row['keys']} keys, ms a layer: {cells}")
    for row in data.get("model", []):
        if "exact_step_speedup" in row:
            lines.append(
                f"  exact step at {row['prompt_length']}: sdpa {row['exact_step_s_sdpa'] * 1e3:.1f} ms, FA3 "
                f"{row['exact_step_s_fa3'] * 1e3:.1f} ms ({row['exact_step_speedup']:.3f}x); argmax agreement "
                f"{row['argmax_agreement']:.3f}"
            )
    rule, grid = data.get("rule", {}), data.get("projection", {})
    lines.append(f"  rule: FA3_MIN_KEYS={rule.get('FA3_MIN_KEYS')}, "
                 f"FA3_FEW_QUERIES_MIN_KEYS={rule.get('FA3_FEW_QUERIES_MIN_KEYS')}")  # fmt: skip
    if "grid_h_rule" in grid:
        lines.append(
            f"  exact-mode grid: sdpa {grid['grid_h_sdpa']:.2f} h, with the rule {grid['grid_h_rule']:.2f} h; from the "
            f"committed sweep, scaled: {grid.get('grid_h_measured_sweep_v3_scaled_by_rule', '-')} h (target 3.3 h)"
        )
    for row in data.get("official", []):
        if "speedup_vs_official" in row:
            lines.append(
                f"  vs the official code at {row['prompt_length']}: {row['speedup_vs_official']:.3f}x "
                f"({row['ours_kernel']}; sdpa alone {row['speedup_vs_official_sdpa_only']:.3f}x; target 1.3x at 32k)"
            )
    if data.get("errors"):
        lines.append(f"  errors: {data['errors']}")
    return lines


def profile_lines(data: dict) -> list[str]:
    lines = []
    for length, at in data.get("lengths", {}).items():
        for name, row in at.get("variants", {}).items():
            prefix = row.get("prefix", {})
            measured = prefix.get("graph_ms", prefix.get("eager_ms"))
            inside = row.get("sampler", {}).get("cached_step_ms")
            if measured is not None:
                lines.append(
                    f"  {length} {name}: cached step {measured:.2f} ms = {prefix['ratio_to_floor']:.2f}x the floor "
                    f"({at['floor_ms']:.2f} ms); inside generate {inside if inside is None else f'{inside:.2f}'} ms"
                )
        if "error" in at:
            lines.append(f"  {length}: {at['error']}")
    return lines


def fastdllm_lines(data: dict) -> list[str]:
    lines = []
    for length, at in (data.get("lengths") or {}).items():
        runs = at.get("runs", {}) if isinstance(at, dict) else {}
        cells = []
        for name, run in runs.items():
            if not name.startswith("fastdllm"):
                continue
            if "s" in run:
                cells.append(
                    f"{name.removeprefix('fastdllm_')}: ours {run.get('ours_speedup', 0):.2f}x faster, memory ratio "
                    f"{run.get('ours_memory_ratio', 0):.2f}, tokens agree {run.get('token_agreement_with_ours')}"
                )
            else:
                cells.append(f"{name.removeprefix('fastdllm_')}: {run.get('error', 'no time')[:60]}")
        lines.append(f"  {length}: " + "; ".join(cells))
    return lines


def settings_lines(data: dict) -> list[str]:
    summary = data.get("summary", {})
    if not summary:
        return []
    return [
        f"  {summary.get('settings')} settings: fixed part per setting {summary.get('fixed_per_setting_s')} s "
        f"(target < 10 s); a setting's own after the first {summary.get('fixed_of_settings_after_first_mean_s')} s; "
        f"start-up {summary.get('startup_s')} s, exit {summary.get('teardown_s')} s, whole {summary.get('whole_s')} s"
    ]


READERS = {  # part -> (its JSON under the scratch folder, the lines it gives)
    "fa3": ("fa3_check.json", fa3_lines),
    "profile": ("cached_step_profile.json", profile_lines),
    "fastdllm": ("fastdllm_compare.json", fastdllm_lines),
    "settings": ("settings/settings_one_process.json", settings_lines),
}


def main(argv: list[str]) -> int:
    work = Path(argv[1]) if len(argv) > 1 else Path(".")
    lines = ["part            exit  seconds  cap  note"]
    parts = work / "parts.tsv"
    rows = parts.read_text().splitlines()[1:] if parts.is_file() else []
    for row in rows:
        name, status, seconds, cap, note = (row.split("\t") + [""] * 5)[:5]
        lines.append(f"{name:15} {status:>4} {seconds:>8} {cap:>4}  {note}")
    for name, (file, reader) in READERS.items():
        data = load(work / file)
        if data:
            lines.append(f"{name}:")
            try:
                lines.extend(reader(data))
            except Exception as error:  # noqa: BLE001 - a summary never fails the call
                lines.append(f"  (unreadable: {type(error).__name__}: {error})")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
