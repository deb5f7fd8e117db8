"""`longllada niah-plot`: the paper-style needle-in-a-haystack heatmap from an lm-eval run of `longllada_niah`.

x = context length, y = needle depth (%), colour = score 0–100 (red–yellow–green), with a vertical line after
the columns within the model's trained length and, when the run used NTK scaling, after those within the length
the scaled base covers. Reads lm-eval's
output: the samples log (``samples_longllada_niah_*.jsonl``, written with ``--log_samples``) and/or the results
file (``results_*.json``, whose ``score_len{L}_depth{D}`` metrics hold the cells); an output folder is searched
for both (newest run first).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longllada.cli import int_arg
from longllada.figure_files import check_figure_out, figure_metadata

TASK = "longllada_niah"
TRAINED_MARKER_GID = "trained-length"
TARGET_MARKER_GID = "ntk-target"
_CELL_METRIC = re.compile(r"^score_len(\d+)_depth(\d+(?:p\d+)?),")


@dataclass
class NiahGrid:
    """Scores of one run: ``scores[i][j]`` is the mean score at ``depths[i]`` and ``lengths[j]`` (None: no
    document in that cell); ``counts`` likewise (None when read from the results file, which has no counts)."""

    lengths: list[int]
    depths: list[float]
    scores: list[list[float | None]]
    counts: list[list[int]] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def score(self, length: int, depth: float) -> float | None:
        return self.scores[self.depths.index(float(depth))][self.lengths.index(int(length))]


def find_outputs(paths: Sequence[str | Path], task: str = TASK) -> tuple[Path | None, Path | None]:
    """(results JSON, samples JSONL) among ``paths`` (files, or folders searched recursively; the newest file of
    each kind wins, lm-eval's names carry the date)."""
    results: list[Path] = []
    samples: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            results += [p for p in path.rglob("results_*.json") if _has_task(p, task)]
            samples += list(path.rglob(f"samples_{task}_*.jsonl"))
        elif path.is_file() and path.suffix == ".jsonl":
            samples.append(path)
        elif path.is_file() and path.suffix == ".json":
            results.append(path)
        else:
            raise FileNotFoundError(f"{path}: not an lm-eval results file (.json), samples log (.jsonl) or folder")
    newest = lambda found: max(found, key=lambda p: (p.name, str(p))) if found else None  # noqa: E731
    return newest(results), newest(samples)


def _has_task(path: Path, task: str) -> bool:
    try:
        return task in json.loads(path.read_text(encoding="utf-8")).get("results", {})
    except (OSError, ValueError, AttributeError):
        return False


def _parse_model_args(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):  # older lm-eval: "key=value,key2=value2"
        return dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    return {}


def _grid(cells: dict[tuple[int, float], list[float]], with_counts: bool) -> tuple[list, list, list, list | None]:
    lengths = sorted({length for length, _ in cells})
    depths = sorted({depth for _, depth in cells})
    scores = [[None] * len(lengths) for _ in depths]
    counts = [[0] * len(lengths) for _ in depths] if with_counts else None
    for (length, depth), values in cells.items():
        i, j = depths.index(depth), lengths.index(length)
        scores[i][j] = sum(values) / len(values)
        if counts is not None:
            counts[i][j] = len(values)
    return lengths, depths, scores, counts


def load_grid(paths: Sequence[str | Path], task: str = TASK) -> NiahGrid:
    """The score grid of a run (see :class:`NiahGrid`): from the samples log when there is one, else from the
    per-cell metrics of the results file; the model arguments come from the results file."""
    results_path, samples_path = find_outputs(paths, task)
    if results_path is None and samples_path is None:
        raise FileNotFoundError(f"no lm-eval output of task {task!r} found in {[str(p) for p in paths]}")
    model_args: dict[str, Any] = {}
    results_cells: dict[tuple[int, float], list[float]] = {}
    if results_path is not None:
        data = json.loads(results_path.read_text(encoding="utf-8"))
        model_args = _parse_model_args(data.get("config", {}).get("model_args"))
        for key, value in data.get("results", {}).get(task, {}).items():
            match = _CELL_METRIC.match(key)
            if match and isinstance(value, (int, float)) and not isinstance(value, bool):
                depth = float(match.group(2).replace("p", "."))
                results_cells[(int(match.group(1)), depth)] = [float(value)]
    if samples_path is not None:
        cells: dict[tuple[int, float], list[float]] = defaultdict(list)
        for number, line in enumerate(samples_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            sample = json.loads(line)
            doc = sample.get("doc", {})
            if "context_length" not in doc or "depth_percent" not in doc or "score" not in sample:
                raise ValueError(
                    f"{samples_path}:{number}: not a {task} sample (needs doc.context_length, doc.depth_percent "
                    "and score)"
                )
            cells[(int(doc["context_length"]), float(doc["depth_percent"]))].append(float(sample["score"]))
        lengths, depths, scores, counts = _grid(cells, with_counts=True)
        source = str(samples_path)
    else:
        if not results_cells:
            raise ValueError(f"{results_path}: task {task!r} has no score_len*_depth* metrics to plot")
        lengths, depths, scores, counts = _grid(results_cells, with_counts=False)
        source = str(results_path)
    return NiahGrid(lengths, depths, scores, counts, model_args, source)


def model_lengths(model_args: dict[str, Any]) -> tuple[int | None, int | None]:
    """(trained length, NTK target) of the run's model, when its ``pretrained`` is a local folder with a
    config.json; the run's ``ntk_factor`` / ``ntk_target`` / ``rope_scaling`` model arguments take precedence
    over the scaling stored in the config. ``dynamic`` scaling has no single target (None)."""
    pretrained = model_args.get("pretrained")
    config_file = Path(str(pretrained)).expanduser() / "config.json" if pretrained else None
    if config_file is None or not config_file.is_file():
        return None, None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    trained = config.get("max_sequence_length") or config.get("max_position_embeddings")
    trained = int(trained) if isinstance(trained, (int, float)) else None
    scaling = config.get("rope_scaling")
    if model_args.get("rope_scaling") in ("none", "dynamic"):
        scaling = None if model_args["rope_scaling"] == "none" else {"type": "dynamic"}
    if model_args.get("ntk_factor") is not None or model_args.get("ntk_target") is not None:
        scaling = {"type": "ntk", "factor": model_args.get("ntk_factor"), "target_length": model_args.get("ntk_target")}
    if not isinstance(scaling, dict) or (scaling.get("type") or scaling.get("rope_type")) != "ntk":
        return trained, None
    if scaling.get("target_length"):
        return trained, int(scaling["target_length"])
    factor, theta = scaling.get("factor"), config.get("rope_theta")
    d_model, n_heads = config.get("d_model"), config.get("n_heads")
    if not (factor and theta and d_model and n_heads and trained):
        return trained, None
    from modeling_longllada.configuration_longllada import ntk_supported_length

    return trained, ntk_supported_length(int(d_model) // int(n_heads), float(theta), trained, float(factor))


def _length_label(length: int) -> str:
    return f"{length / 1000:g}k" if length >= 1000 and length % 1000 == 0 else str(length)


def _marker_position(length: int, lengths: Sequence[int]) -> float:
    """x of a length marker on the categorical length axis: the right edge of the last column not longer than
    it, so the columns left of the line are the lengths it covers (the left edge when none is)."""
    return sum(1 for column in lengths if column <= length) - 0.5


def plot_heatmap(
    grid: NiahGrid,
    out: str | Path | None = None,
    *,
    title: str | None = None,
    trained_length: int | None = None,
    target_length: int | None = None,
    dpi: int = 150,
) -> Any:
    """Draw the heatmap and return the matplotlib ``Figure`` (saved to ``out`` when given). Empty cells are grey.
    A length marker stands at the right edge of the last column it covers (its value is in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    data = np.array([[math.nan if s is None else s for s in row] for row in grid.scores], dtype=float)
    cmap = colormaps["RdYlGn"].with_extremes(bad="#d9d9d9")
    width = max(4.5, 1.0 + 0.65 * len(grid.lengths))
    height = max(3.5, 1.2 + 0.32 * len(grid.depths))
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(data, cmap=cmap, vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    axes.set_xticks(range(len(grid.lengths)), [_length_label(length) for length in grid.lengths])
    axes.set_yticks(range(len(grid.depths)), [f"{depth:g}" for depth in grid.depths])
    axes.set_xlabel("context length (tokens)")
    axes.set_ylabel("needle depth (%)")
    if data.size <= 150:
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                if not math.isnan(data[i, j]):
                    axes.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center", fontsize=7, color="black")
    legend = []
    for length, label, style, colour, gid in (
        (trained_length, "trained length", "--", "black", TRAINED_MARKER_GID),
        (target_length, "NTK target", ":", "navy", TARGET_MARKER_GID),
    ):
        if not length:
            continue
        axes.axvline(_marker_position(int(length), grid.lengths), color=colour, linestyle=style, linewidth=2, gid=gid)
        text = f"{label} {_length_label(int(length))}"
        legend.append(Line2D([], [], color=colour, linestyle=style, linewidth=2, label=text))
    if legend:
        axes.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize="small")
    figure.colorbar(image, ax=axes, label="score")
    name = Path(str(grid.model_args.get("pretrained", ""))).name
    axes.set_title(title or (f"Needle in a haystack: {name}" if name else "Needle in a haystack"))
    if out is not None:
        out = check_figure_out(out, "niah-plot")
        figure.savefig(out, dpi=dpi, metadata=figure_metadata(out, "niah-plot"))
    return figure


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``niah-plot`` sub-command."""
    parser = subparsers.add_parser(
        "niah-plot",
        help="heatmap (length × depth) of an lm-eval longllada_niah run",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS", help="lm-eval output: folder, results_*.json and/or samples_*.jsonl"
    )
    parser.add_argument("--out", required=True, metavar="HEATMAP.png", help="image file to write")
    parser.add_argument("--title", help="figure title")
    parser.add_argument("--task", default=TASK, help=f"task name in the results (default {TASK})")
    parser.add_argument("--trained-length", type=int_arg(1), help="mark this trained length (default: from the model)")
    parser.add_argument(
        "--target-length", type=int_arg(1), help="mark this NTK target length (default: from the model)"
    )
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``longllada niah-plot``."""
    for flag in ("trained_length", "target_length"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ValueError(f"--{flag.replace('_', '-')}={value} is not allowed; allowed: a positive integer")
    check_figure_out(args.out, "niah-plot")  # before reading the run
    grid = load_grid(args.results, task=args.task)
    trained, target = model_lengths(grid.model_args)
    trained = args.trained_length or trained
    target = args.target_length or target
    plot_heatmap(grid, args.out, title=args.title, trained_length=trained, target_length=target)
    print(
        f"{len(grid.depths)} depths × {len(grid.lengths)} lengths from {grid.source} -> {args.out}"
        f" (trained length {trained or 'unknown'}, NTK target {target or 'none'})"
    )
    return 0
