"""`longllada table`: results as Markdown and CSV tables, one pair of files per benchmark, to paste into a paper.

Reads what the toolkit's runs write: lm-eval results folders or files of ``longllada_niah``, ``longllada_ruler_*``
and ``longllada_longbench_*`` (with the NIAH samples logs beside them, for the needles per cell), ``longllada
ppl`` results files, and the summary of ``longllada demo`` (``summary.json``). Each run is one setting, named as
the plots name it (model, λ and T, needles per cell; :mod:`longllada.run_info`).

Writes into ``--out`` the files of the benchmarks found:

- ``niah.md`` / ``niah.csv``: per setting, the mean score at each length (over depths) and the mean inside the
  trained length (lengths up to it) and past it; then each setting's depth × length grid. The CSV has one row
  per setting, length and depth.
- ``ruler.md`` / ``ruler.csv``: per setting, each task's score at each length, inside and past the trained
  length, and the mean over tasks.
- ``longbench.md`` / ``longbench.csv``: each task's score per setting, and the mean over tasks.
- ``ppl.md`` / ``ppl.csv``: per setting, the perplexity at the trained length's multiples, at the trained length
  (inside) and of the tokens past it (past), and their ratio. The CSV has the whole curve.

A file of ``--out`` is replaced only when this command wrote it and it is unchanged since: the record
``longllada_tables.json`` there lists each file it wrote with its SHA-256, and a file missing from it or
changed since is refused, before anything is written.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longllada.cli import int_arg
from longllada.owned_files import OwnedFolder

RECORD_FILE = "longllada_tables.json"
WRITTEN_BY = "longllada table"
NIAH_TASK = "longllada_niah"
RULER_PREFIX = "longllada_ruler_"
LONGBENCH_PREFIX = "longllada_longbench_"
DEMO_GENERATOR = "longllada demo"
_RULER_LENGTH = re.compile(r"^(\d+),")


@dataclass
class Setting:
    """One run: its name (as the plots name it), trained length, where it was read, and its numbers."""

    label: str
    trained_length: int | None
    source: str
    columns: dict[str, Any] = field(default_factory=dict)  # CSV columns that describe the setting
    niah: dict[tuple[int, float], float] | None = None  # (length, depth) -> mean score
    ruler: dict[str, dict[int, float]] | None = None  # task -> length -> score (0-100)
    longbench: dict[str, float] | None = None  # task -> score
    ppl: tuple[list[int], list[float]] | None = None  # curve: lengths, perplexities


# -- reading ------------------------------------------------------------------------------------------------------
def _setting_columns(setting: Any) -> dict[str, Any]:
    return {
        "model": setting.model,
        "scaling": setting.scaling_text(),
        "factor": setting.factor,
        "target": setting.target,
        "trained_length": setting.trained_length,
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _leaf_tasks(data: dict[str, Any]) -> list[str]:
    groups = {name for name, members in (data.get("group_subtasks") or {}).items() if members}
    return [task for task in data.get("results", {}) if task not in groups]


def _from_results(results_path: Path, samples: dict[Path, Path]) -> list[Setting]:
    """The settings of one lm-eval results file: one per benchmark it holds."""
    from longllada.niah_plot import read_run
    from longllada.run_info import read_results, run_setting

    data = read_results(results_path)
    tasks = _leaf_tasks(data)
    found: list[Setting] = []
    if NIAH_TASK in tasks:
        grid = read_run(results_path, samples.get(results_path), NIAH_TASK)
        cells = {(n, d): grid.score(n, d) for n in grid.lengths for d in grid.depths if grid.score(n, d) is not None}
        found.append(Setting(grid.setting.label(), grid.setting.trained_length, grid.source,
                             _setting_columns(grid.setting) | {"needles_per_cell": grid.setting.per_cell},
                             niah=cells))  # fmt: skip
    ruler = {}
    for task in (t for t in tasks if t.startswith(RULER_PREFIX)):
        scores = {}
        for key, value in data["results"][task].items():
            match = _RULER_LENGTH.match(key)
            if match and _number(value) is not None:
                scores[int(match.group(1))] = 100 * float(value)  # lm-eval's RULER metrics are fractions
        if scores:
            ruler[task.removeprefix(RULER_PREFIX)] = scores
    if ruler:
        setting = run_setting(data, next(t for t in tasks if t.startswith(RULER_PREFIX)))
        found.append(Setting(setting.label(per_cell=False), setting.trained_length, str(results_path),
                             _setting_columns(setting), ruler=ruler))  # fmt: skip
    longbench = {}
    for task in (t for t in tasks if t.startswith(LONGBENCH_PREFIX)):
        score = _number(data["results"][task].get("score,none"))
        if score is not None:
            longbench[task.removeprefix(LONGBENCH_PREFIX)] = score
    if longbench:
        setting = run_setting(data, next(t for t in tasks if t.startswith(LONGBENCH_PREFIX)))
        found.append(Setting(setting.label(per_cell=False), setting.trained_length, str(results_path),
                             _setting_columns(setting), longbench=longbench))  # fmt: skip
    return found


def _from_ppl(path: Path) -> Setting:
    from longllada.perplexity import read_run
    from longllada.ppl_plot import run_label

    curve = read_run(path)
    if not curve.rows:
        raise ValueError(f"{path}: the run has no finished chunk yet; nothing to tabulate")
    meta = curve.meta
    trained = meta.get("trained_length") if isinstance(meta.get("trained_length"), int) else None
    columns = {"model": Path(str(meta.get("model"))).name, "scaling": meta.get("rope_scaling") or "none",
               "factor": (meta.get("rope") or {}).get("factor"), "kind": meta.get("kind"),
               "estimator": meta.get("estimator"), "trained_length": trained}  # fmt: skip
    return Setting(run_label(meta), trained, str(path), columns, ppl=(curve.lengths, curve.ppl))


def _from_demo(path: Path, summary: dict[str, Any]) -> list[Setting]:
    from longllada.demo_report import summary_grids, summary_settings

    settings, grids = summary_settings(summary), summary_grids(summary)
    found = []
    for name, setting in settings.items():
        grid = grids.get(name)
        cells = None
        if grid is not None:
            cells = {
                (n, d): grid.score(n, d) for n in grid.lengths for d in grid.depths if grid.score(n, d) is not None
            }
        source = f"{path}#{name}"
        if cells:
            columns = _setting_columns(setting) | {"needles_per_cell": setting.per_cell}
            found.append(Setting(setting.label(), setting.trained_length, source, columns, niah=cells))
        curve = summary.get("ppl", {}).get(name)
        if curve:
            kind = "diffusion" if summary["runs"][name]["twin"] == "diffusion" else "autoregressive"
            columns = _setting_columns(setting) | {"kind": kind}
            found.append(Setting(setting.label(per_cell=False), setting.trained_length, source, columns,
                                 ppl=(curve["lengths"], curve["ppl"])))  # fmt: skip
    return found


def _is_ppl_results(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            first = json.loads(handle.readline() or b"null")
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and first.get("record") == "meta"


def collect(paths: Sequence[str | Path]) -> list[Setting]:
    """Every setting among ``paths`` (files, or folders searched recursively), in the order given."""
    from longllada.niah_plot import find_runs

    found: list[Setting] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_file() and path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("generator") == DEMO_GENERATOR:
                found += _from_demo(path, data)
                continue
        if path.is_file() and path.suffix == ".jsonl" and _is_ppl_results(path):
            found.append(_from_ppl(path))
            continue
        if path.is_dir():
            demos = []
            for summary in sorted(path.rglob("summary.json")):
                data = json.loads(summary.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("generator") == DEMO_GENERATOR:
                    found += _from_demo(summary, data)
                    demos.append(summary.parent)
            # a demo's own perplexity files are the curves its summary holds
            ppl_files = [p for p in sorted(path.rglob("*.jsonl")) if not any(d in p.parents for d in demos)]
            found += [_from_ppl(p) for p in ppl_files if _is_ppl_results(p)]
        runs = find_runs([path], NIAH_TASK) if path.is_dir() or path.suffix in (".json", ".jsonl") else []
        samples = {results: sample for results, sample in runs if results is not None and sample is not None}
        results_files = sorted(path.rglob("results_*.json")) if path.is_dir() else []
        if path.is_file() and path.suffix == ".json":
            results_files = [path]
        for results_path in results_files:
            found += _from_results(results_path, samples)
        found += [_niah_samples_only(sample) for results, sample in runs if results is None and sample is not None]
    if not found:
        raise FileNotFoundError(
            f"no results found in {[str(p) for p in paths]}; allowed: lm-eval output of the longllada tasks, "
            "`longllada ppl` results files, a `longllada demo` summary.json"
        )
    return _distinct_labels(found)


def _niah_samples_only(sample: Path) -> Setting:
    from longllada.niah_plot import read_run

    grid = read_run(None, sample, NIAH_TASK)
    cells = {(n, d): grid.score(n, d) for n in grid.lengths for d in grid.depths if grid.score(n, d) is not None}
    return Setting(grid.setting.label(), None, str(sample), {"needles_per_cell": grid.setting.per_cell}, niah=cells)


def _distinct_labels(settings: list[Setting]) -> list[Setting]:
    """Two settings of the same benchmark with the same label (a rerun) are told apart by their source."""
    for kind in ("niah", "ruler", "longbench", "ppl"):
        members = [s for s in settings if getattr(s, kind) is not None]
        labels = [s.label for s in members]
        for setting in members:
            if labels.count(setting.label) > 1:
                setting.label = f"{setting.label} [{Path(setting.source.split('#')[0]).name}]"
    return settings


# -- tables -------------------------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _split(by_length: dict[int, float], trained: int | None) -> tuple[float | None, float | None]:
    """Means of the values at lengths up to ``trained`` and past it (None when unknown or empty)."""
    if trained is None:
        return None, None
    inside = [value for length, value in by_length.items() if length <= trained]
    past = [value for length, value in by_length.items() if length > trained]
    return _mean(inside), _mean(past)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _trained_text(trained: int | None) -> str:
    return str(trained) if trained else "?"


def niah_tables(settings: Sequence[Setting]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown and CSV rows of the needle grids."""
    lengths = sorted({n for s in settings for n, _ in s.niah})
    lines = ["# Needle in a haystack (`longllada_niah`)", "",
             "Mean score (0–100) at each context length over the depths; *inside*: lengths up to the setting's "
             "trained length, *past*: longer ones.", ""]  # fmt: skip
    header = ["setting", "trained", *map(str, lengths), "inside", "past"]
    rows, csv_rows = [], []
    for s in settings:
        by_length = {n: _mean([v for (m, _), v in s.niah.items() if m == n]) for n in {n for n, _ in s.niah}}
        inside, past = _split(by_length, s.trained_length)
        rows.append([s.label, _trained_text(s.trained_length), *(_fmt(by_length.get(n)) for n in lengths),
                     _fmt(inside), _fmt(past)])  # fmt: skip
        for (length, depth), score in sorted(s.niah.items()):
            csv_rows.append({"setting": s.label, **s.columns, "context_length": length, "depth": depth,
                             "score": round(score, 4), "source": s.source})  # fmt: skip
    lines += _markdown_table(header, rows)
    for s in settings:
        own_lengths = sorted({n for n, _ in s.niah})
        depths = sorted({d for _, d in s.niah})
        grid_rows = [[f"{d:g}%", *(_fmt(s.niah.get((n, d)), 0) for n in own_lengths)] for d in depths]
        lines += ["", f"## {s.label}", "", *_markdown_table(["depth \\ length", *map(str, own_lengths)], grid_rows)]
    return "\n".join(lines) + "\n", csv_rows


def ruler_tables(settings: Sequence[Setting]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown and CSV rows of the RULER scores."""
    lines = ["# RULER (`longllada_ruler_*`)", "", "Score (0–100) per task and length; *inside*: lengths up to the "
             "setting's trained length, *past*: longer ones.", ""]  # fmt: skip
    csv_rows = []
    for s in settings:
        lengths = sorted({n for scores in s.ruler.values() for n in scores})
        rows = []
        for task, scores in sorted(s.ruler.items()):
            inside, past = _split(scores, s.trained_length)
            rows.append([task, *(_fmt(scores.get(n)) for n in lengths), _fmt(inside), _fmt(past)])
            csv_rows += [{"setting": s.label, **s.columns, "task": task, "length": n, "score": round(v, 4),
                          "source": s.source} for n, v in sorted(scores.items())]  # fmt: skip
        means = {n: _mean([scores[n] for scores in s.ruler.values() if n in scores]) for n in lengths}
        inside, past = _split({n: v for n, v in means.items() if v is not None}, s.trained_length)
        rows.append(["**mean**", *(_fmt(means[n]) for n in lengths), _fmt(inside), _fmt(past)])
        lines += [f"## {s.label} (trained length {_trained_text(s.trained_length)})", "",
                  *_markdown_table(["task", *map(str, lengths), "inside", "past"], rows), ""]  # fmt: skip
    return "\n".join(lines), csv_rows


def longbench_tables(settings: Sequence[Setting]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown and CSV rows of the LongBench scores (settings as columns)."""
    tasks = sorted({task for s in settings for task in s.longbench})
    rows = [[task, *(_fmt(s.longbench.get(task)) for s in settings)] for task in tasks]
    rows.append(["**mean**", *(_fmt(_mean(list(s.longbench.values()))) for s in settings)])
    lines = ["# LongBench (`longllada_longbench_*`)", "", "Score per task (LongBench's metric of each task).", "",
             *_markdown_table(["task", *(s.label for s in settings)], rows)]  # fmt: skip
    csv_rows = [{"setting": s.label, **s.columns, "task": task, "score": round(score, 4), "source": s.source}
                for s in settings for task, score in sorted(s.longbench.items())]  # fmt: skip
    return "\n".join(lines) + "\n", csv_rows


def past_perplexity(lengths: Sequence[int], ppl: Sequence[float], trained: int) -> float | None:
    """Perplexity of the tokens past ``trained`` alone, from the running curve (equal chunks: the value at chunk k
    is exp of the mean of the first k chunk values, so the last chunks' mean is a difference of sums)."""
    chunk = lengths[0]
    if any(n != (i + 1) * chunk for i, n in enumerate(lengths)) or trained not in lengths or trained == lengths[-1]:
        return None
    if any(not math.isfinite(p) or p <= 0 for p in ppl):
        return None
    k0, k = lengths.index(trained) + 1, len(lengths)
    return math.exp((k * math.log(ppl[-1]) - k0 * math.log(ppl[k0 - 1])) / (k - k0))


def ppl_tables(settings: Sequence[Setting]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown and CSV rows of the perplexity curves."""
    trained_values = {s.trained_length for s in settings if s.trained_length}
    lines = ["# Perplexity versus context length (`longllada ppl`)", "",
             "Perplexity of the first n tokens at n = multiples of the trained length; *inside*: at the trained "
             "length, *past*: of the tokens past it alone; *past / inside*: their ratio. Diffusion curves are "
             "Monte-Carlo bounds (the ELBO's), not exact perplexities.", ""]  # fmt: skip
    marks: set[int] = set()
    for s in settings:
        lengths = s.ppl[0]
        if s.trained_length:
            multiples = [s.trained_length * 2**k for k in range(12)] + [s.trained_length // 2, s.trained_length // 4]
            marks |= {n for n in multiples if n in lengths}
        marks.add(lengths[-1])
    columns = sorted(marks)
    rows, csv_rows = [], []
    for s in settings:
        curve = dict(zip(*s.ppl))
        inside = curve.get(s.trained_length) if s.trained_length else None
        past = past_perplexity(*s.ppl, s.trained_length) if s.trained_length else None
        ratio = past / inside if inside and past else None
        rows.append([s.label, _trained_text(s.trained_length), *(_fmt(curve.get(n), 2) for n in columns),
                     _fmt(inside, 2), _fmt(past, 2), _fmt(ratio, 2)])  # fmt: skip
        csv_rows += [{"setting": s.label, **s.columns, "context_length": n, "ppl": round(p, 6), "source": s.source}
                     for n, p in zip(*s.ppl)]  # fmt: skip
    header = ["setting", "trained", *map(str, columns), "inside", "past", "past / inside"]
    lines += _markdown_table(header, rows)
    if len(trained_values) > 1:
        lines += ["", "The settings' trained lengths differ: compare the inside and past columns."]
    return "\n".join(lines) + "\n", csv_rows


def comparison_tables(settings: Sequence[Setting], title: str) -> tuple[str, list[dict[str, Any]]]:
    """Markdown and CSV rows of settings that each hold a needle grid and a perplexity curve (a sweep's settings,
    ``longllada rope-sweep``): one row per setting with the mean NIAH score at each length (over depths), inside the
    trained length (lengths up to it) and past it, and the perplexity at the trained length (inside), of the tokens
    past it (past) and at the longest length."""
    lengths = sorted({n for s in settings for n, _ in (s.niah or {})})
    longest = max((s.ppl[0][-1] for s in settings if s.ppl), default=None)
    lines = [f"# {title}", "",
             "NIAH: mean score (0–100) at each context length over the depths; *inside*: lengths up to the trained "
             "length, *past*: longer ones. Perplexity: at the trained length (*inside*), of the tokens past it alone "
             "(*past*), and over the whole text; diffusion curves are Monte-Carlo bounds (the ELBO's).", ""]  # fmt: skip
    header = ["setting", "trained", *(f"NIAH {n}" for n in lengths), "NIAH inside", "NIAH past", "ppl inside",
              "ppl past", f"ppl {longest}" if longest else "ppl"]  # fmt: skip
    rows, csv_rows = [], []
    for s in settings:
        cells = s.niah or {}
        by_length = {n: _mean([v for (m, _), v in cells.items() if m == n]) for n in {n for n, _ in cells}}
        niah_inside, niah_past = _split(by_length, s.trained_length)
        curve = dict(zip(*s.ppl)) if s.ppl else {}
        ppl_inside = curve.get(s.trained_length) if s.trained_length else None
        ppl_past = past_perplexity(*s.ppl, s.trained_length) if s.ppl and s.trained_length else None
        ppl_last = s.ppl[1][-1] if s.ppl else None
        rows.append([s.label, _trained_text(s.trained_length), *(_fmt(by_length.get(n)) for n in lengths),
                     _fmt(niah_inside), _fmt(niah_past), _fmt(ppl_inside, 2), _fmt(ppl_past, 2),
                     _fmt(ppl_last, 2)])  # fmt: skip
        row = {"setting": s.label, **s.columns, "trained_length": s.trained_length}
        row.update({f"niah_{n}": _round(by_length.get(n)) for n in lengths})
        row.update(niah_inside=_round(niah_inside), niah_past=_round(niah_past), ppl_inside=_round(ppl_inside),
                   ppl_past=_round(ppl_past), ppl_last=_round(ppl_last), ppl_last_length=s.ppl[0][-1] if s.ppl else None,
                   source=s.source)  # fmt: skip
        csv_rows.append(row)
    lines += _markdown_table(header, rows)
    return "\n".join(lines) + "\n", csv_rows


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV of ``rows``: every key that occurs, in the order first seen; a missing or None value is empty."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if row.get(key) is None else row.get(key) for key in fields} for row in rows)
    return buffer.getvalue()


def render(settings: Sequence[Setting], trained_length: int | None = None) -> dict[str, str]:
    """File name -> text of every table of ``settings`` (``trained_length`` replaces every setting's own)."""
    if trained_length is not None:
        for setting in settings:
            setting.trained_length = trained_length
    files: dict[str, str] = {}
    sections = (("niah", niah_tables), ("ruler", ruler_tables), ("longbench", longbench_tables), ("ppl", ppl_tables))
    for kind, make in sections:
        members = [s for s in settings if getattr(s, kind) is not None]
        if members:
            markdown, csv_rows = make(members)
            sources = sorted({s.source.split("#")[0] for s in members})  # a demo summary once, not per run
            files[f"{kind}.md"] = markdown + "\nFrom: " + ", ".join(f"`{source}`" for source in sources) + "\n"
            files[f"{kind}.csv"] = csv_text(csv_rows)
    return files


# -- files --------------------------------------------------------------------------------------------------------
def write_tables(
    paths: Sequence[str | Path], out: str | Path, trained_length: int | None = None
) -> dict[str, list[Setting]]:
    """Read every setting among ``paths`` and write their tables into ``out`` (see the module); returns the
    settings of each benchmark written."""
    folder = OwnedFolder(out, RECORD_FILE, WRITTEN_BY)  # a file at --out, or a foreign record: before reading
    settings = collect(paths)
    files = render(settings, trained_length)
    folder.check(files)
    for name, text in files.items():
        folder.write(name, text.encode("utf-8"))
    folder.save()
    kinds = {name.split(".")[0] for name in files}
    return {kind: [s for s in settings if getattr(s, kind) is not None] for kind in sorted(kinds)}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``table`` sub-command."""
    parser = subparsers.add_parser(
        "table",
        help="Markdown and CSV tables of NIAH, RULER, LongBench and perplexity results",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS",
        help="lm-eval output folders or files, `longllada ppl` results, a `longllada demo` summary.json",
    )  # fmt: skip
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the tables (created if absent)")
    parser.add_argument(
        "--trained-length", type=int_arg(1), help="split inside / past at this length (default: each run's own)"
    )
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``longllada table``."""
    written = write_tables(args.results, args.out, args.trained_length)
    for kind, settings in written.items():
        print(f"{kind}: {len(settings)} setting{'s' if len(settings) > 1 else ''} -> {Path(args.out) / kind}.md, .csv")
    return 0
