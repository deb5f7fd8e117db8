"""`longllada niah-plot`: paper-style needle-in-a-haystack heatmaps of lm-eval runs of `longllada_niah`, one
panel per run, side by side on one colour scale.

x = context length, y = needle depth (%), colour = score 0–100 (red–yellow–green). In each panel a dashed line
follows the columns within the model's trained length and a dotted one those within the context its NTK scaling
covers (the target length T, or what the factor λ covers); a line at the grid's edge stands clear of the frame.
Each panel is titled with its setting (model, λ and T, needles per cell), read from what the run recorded
(:mod:`longllada.run_info`), so a plot made in any folder shows the same.

Runs are read from lm-eval's output: results files (``results_*.json``, whose ``score_len{L}_depth{D}`` metrics
hold the cells) and samples logs (``samples_longllada_niah_*.jsonl``, written with ``--log_samples``; they also
give the needles per cell). A folder is searched for both; a results file and the samples log of the same time
stamp in one folder are one run. Every run found is drawn (a folder of a settings sweep holds one per setting).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from longllada.cli import int_arg
from longllada.figure_files import check_figure_out, figure_metadata
from longllada.run_info import (
    FREQUENCY_METHODS,
    RunSetting,
    parse_model_args,
    read_results,
    run_setting,
    scaling_method,
)

TASK = "longllada_niah"
TRAINED_MARKER_GID = "trained-length"
TARGET_MARKER_GID = "ntk-target"
MAX_PANELS = 16  # more runs than this are refused: the panels would be too small to read
PANEL_COLUMNS = 4  # panels per row
EDGE_MARGIN = 0.22  # of a column: room between a marker at the grid's edge and the frame
_CELL_METRIC = re.compile(r"^score_len(\d+)_depth(\d+(?:p\d+)?),")
_STAMP = re.compile(r"_(\d{4}-\d{2}-\d{2}T[\d.-]+)\.jsonl?$")


@dataclass
class NiahGrid:
    """Scores of one run: ``scores[i][j]`` is the mean score at ``depths[i]`` and ``lengths[j]`` (None: no
    document in that cell); ``counts`` likewise (None when read from the results file, which has no counts);
    ``setting``: what the run evaluated; ``title``: a panel title in place of the setting."""

    lengths: list[int]
    depths: list[float]
    scores: list[list[float | None]]
    counts: list[list[int]] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    setting: RunSetting = field(default_factory=RunSetting)
    title: str | None = None  # the panel's title in place of the setting

    def score(self, length: int, depth: float) -> float | None:
        return self.scores[self.depths.index(float(depth))][self.lengths.index(int(length))]

    def per_cell(self) -> int | str | None:
        """Documents per cell: one number, or ``"min–max"`` when cells differ (None without counts)."""
        if self.counts is None:
            return None
        filled = [count for row in self.counts for count in row if count]
        if not filled:
            return None
        low, high = min(filled), max(filled)
        return low if low == high else f"{low}–{high}"


def _stamp(path: Path) -> str | None:
    match = _STAMP.search(path.name)
    return match.group(1) if match else None


def _has_task(path: Path, task: str) -> bool:
    try:
        return task in json.loads(path.read_text(encoding="utf-8")).get("results", {})
    except (OSError, ValueError, AttributeError):
        return False


def find_runs(paths: Sequence[str | Path], task: str = TASK) -> list[tuple[Path | None, Path | None]]:
    """Every run of ``task`` among ``paths`` (files, or folders searched recursively) as ``(results JSON, samples
    JSONL)``: a results file and a samples log of the same time stamp in the same folder are one run; either may
    be missing. In the order given, a folder's runs oldest first (lm-eval's names carry the date)."""
    results: list[Path] = []
    samples: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            results += sorted((p for p in path.rglob("results_*.json") if _has_task(p, task)), key=str)
            samples += sorted(path.rglob(f"samples_{task}_*.jsonl"), key=str)
        elif path.is_file() and path.suffix == ".jsonl":
            samples.append(path)
        elif path.is_file() and path.suffix == ".json":
            results.append(path)
        else:
            raise FileNotFoundError(f"{path}: not an lm-eval results file (.json), samples log (.jsonl) or folder")
    runs: list[tuple[Path | None, Path | None]] = []
    paired: set[Path] = set()
    for result in dict.fromkeys(results):
        partner = next(
            (s for s in samples if s.parent == result.parent and _stamp(s) and _stamp(s) == _stamp(result)), None
        )
        if partner is not None:
            paired.add(partner)
        runs.append((result, partner))
    runs += [(None, sample) for sample in dict.fromkeys(samples) if sample not in paired]
    return runs


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


def _samples_cells(samples_path: Path, task: str) -> dict[tuple[int, float], list[float]]:
    cells: dict[tuple[int, float], list[float]] = defaultdict(list)
    for number, line in enumerate(samples_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        sample = json.loads(line)
        doc = sample.get("doc", {})
        if "context_length" not in doc or "depth_percent" not in doc or "score" not in sample:
            raise ValueError(
                f"{samples_path}:{number}: not a {task} sample (needs doc.context_length, doc.depth_percent and score)"
            )
        cells[(int(doc["context_length"]), float(doc["depth_percent"]))].append(float(sample["score"]))
    return cells


def read_run(results_path: Path | None, samples_path: Path | None, task: str = TASK) -> NiahGrid:
    """The grid of one run: from the samples log when there is one, else from the per-cell metrics of the results
    file; the setting from the results file."""
    data = read_results(results_path) if results_path is not None else {}
    if samples_path is not None:
        lengths, depths, scores, counts = _grid(_samples_cells(samples_path, task), with_counts=True)
        source = str(samples_path)
    else:
        cells: dict[tuple[int, float], list[float]] = {}
        for key, value in data.get("results", {}).get(task, {}).items():
            match = _CELL_METRIC.match(key)
            if match and isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
                cells[(int(match.group(1)), float(match.group(2).replace("p", ".")))] = [float(value)]
        if not cells:
            raise ValueError(f"{results_path}: task {task!r} has no score_len*_depth* metrics to plot")
        lengths, depths, scores, counts = _grid(cells, with_counts=False)
        source = str(results_path)
    grid = NiahGrid(lengths, depths, scores, counts, parse_model_args(data.get("config", {}).get("model_args")), source)
    grid.setting = run_setting(data, task, per_cell=grid.per_cell()) if data else RunSetting(per_cell=grid.per_cell())
    return grid


def load_grids(paths: Sequence[str | Path], task: str = TASK) -> list[NiahGrid]:
    """Every run of ``task`` among ``paths`` (see :func:`find_runs`), each as a :class:`NiahGrid`."""
    runs = find_runs(paths, task)
    if not runs:
        raise FileNotFoundError(f"no lm-eval output of task {task!r} found in {[str(p) for p in paths]}")
    return [read_run(results, samples, task) for results, samples in runs]


def load_grid(paths: Sequence[str | Path], task: str = TASK) -> NiahGrid:
    """The one run of ``task`` among ``paths``; ValueError naming them when there are several."""
    grids = load_grids(paths, task)
    if len(grids) > 1:
        raise ValueError(f"{len(grids)} runs of {task} found ({', '.join(g.source for g in grids)}); give one")
    return grids[0]


def model_lengths(model_args: dict[str, Any]) -> tuple[int | None, int | None]:
    """(trained length, context its NTK scaling covers) of a run's model from its ``model_args`` alone: its
    ``pretrained`` folder's config with the run's RoPE arguments (None when unknown, or without NTK)."""
    from longllada.run_info import model_facts

    pretrained = model_args.get("pretrained")
    facts = model_facts(str(pretrained), model_args) if pretrained else {}
    scaled = facts.get("target") or facts.get("factor") not in (None, 1, 1.0, "per length")
    return facts.get("trained_length"), facts.get("context_window") if scaled else None


def _length_label(length: int) -> str:
    return f"{length / 1000:g}k" if length >= 1000 and length % 1000 == 0 else str(length)


def _marker_position(length: int, lengths: Sequence[int]) -> float:
    """x of a length marker on the categorical length axis: the right edge of the last column not longer than
    it, so the columns left of the line are the lengths it covers (the left edge when none is)."""
    return sum(1 for column in lengths if column <= length) - 0.5


def _markers(grid: NiahGrid, trained_length: int | None, target_length: int | None) -> list[tuple]:
    """(length, label, style, colour, gid) of the lines a panel draws: the given lengths, else its setting's."""
    setting = grid.setting
    trained = trained_length or setting.trained_length
    scaled = setting.target or setting.factor not in (None, 1, 1.0, "per length")
    target = target_length or (setting.context_window if scaled else None)
    method = scaling_method(setting.scaling)
    if method in FREQUENCY_METHODS and not target_length:
        target_label = f"{setting.scaling_text()} covers"
    elif target_length or setting.target:
        target_label = "NTK target"
    else:
        target_label = f"NTK λ={setting.factor:g} covers" if isinstance(setting.factor, (int, float)) else "NTK"
    found = [(trained, "trained length", "--", "black", TRAINED_MARKER_GID)]
    found.append((target, target_label, ":", "navy", TARGET_MARKER_GID))
    return [marker for marker in found if marker[0]]


def _draw_panel(axes: Any, grid: NiahGrid, cmap: Any, markers: list[tuple], title: str) -> Any:
    import numpy as np
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    data = np.array([[math.nan if s is None else s for s in row] for row in grid.scores], dtype=float)
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
    left, right = -0.5, len(grid.lengths) - 0.5
    legend = []
    for length, label, style, colour, gid in markers:
        x = _marker_position(int(length), grid.lengths)
        # a line on the frame would be invisible: the frame moves out by a margin instead
        left = min(left, x - EDGE_MARGIN) if x <= -0.5 else left
        right = max(right, x + EDGE_MARGIN) if x >= len(grid.lengths) - 0.5 else right
        halo = [patheffects.Stroke(linewidth=4, foreground="white"), patheffects.Normal()]  # seen on any colour
        axes.axvline(x, color=colour, linestyle=style, linewidth=2, gid=gid, path_effects=halo)
        legend.append(
            Line2D([], [], color=colour, linestyle=style, linewidth=2, label=f"{label} {_length_label(int(length))}")
        )
    axes.set_xlim(left, right)
    axes.set_facecolor("white")
    if legend:
        axes.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small")
    axes.set_title(title, fontsize="medium")
    return image


def heatmaps_size(grids: Sequence[NiahGrid]) -> tuple[float, float]:
    """(width, height) in inches of the panels of ``grids`` (``PANEL_COLUMNS`` a row) with their colour bar."""
    columns = min(len(grids), PANEL_COLUMNS)
    rows = math.ceil(len(grids) / columns)
    panel_width, panel_height = _panel_size(grids)
    return panel_width * columns + 1.2, panel_height * rows + 0.5


def _panel_size(grids: Sequence[NiahGrid]) -> tuple[float, float]:
    widest = max(len(grid.lengths) for grid in grids)
    tallest = max(len(grid.depths) for grid in grids)
    return max(3.6, 1.3 + 0.6 * widest), max(3.3, 1.7 + 0.3 * tallest)


def draw_heatmaps(
    figure: Any,
    grids: Sequence[NiahGrid],
    *,
    title: str | None = None,
    trained_length: int | None = None,
    target_length: int | None = None,
) -> None:
    """Draw one heatmap panel per grid into ``figure`` (a matplotlib ``Figure`` or ``SubFigure``), side by side
    (``PANEL_COLUMNS`` a row) on one colour scale with its colour bar (see :func:`plot_heatmaps`)."""
    from matplotlib import colormaps

    if not grids:
        raise ValueError("niah-plot needs at least one run")
    if len(grids) > MAX_PANELS:
        raise ValueError(f"{len(grids)} runs given; allowed: at most {MAX_PANELS} in one figure (give fewer)")
    cmap = colormaps["RdYlGn"].with_extremes(bad="#d9d9d9")
    models = {grid.setting.model for grid in grids}
    shared_model = models.pop() if len(models) == 1 else None
    columns = min(len(grids), PANEL_COLUMNS)
    rows = math.ceil(len(grids) / columns)
    panel_width, _ = _panel_size(grids)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    image = None
    fits = int(panel_width * 11)  # characters of a title line that fit above a panel
    for panel, grid in zip(axes, grids):
        with_model = len(grids) == 1 or shared_model is None
        panel_title = grid.title or grid.setting.label(model=with_model)
        if len(panel_title) > fits and with_model and not grid.title:  # the model on a line of its own
            panel_title = f"{grid.setting.model}\n{grid.setting.label(model=False)}"
        image = _draw_panel(panel, grid, cmap, _markers(grid, trained_length, target_length), panel_title)
    for panel in axes[len(grids) :]:
        panel.set_visible(False)
    figure.colorbar(image, ax=list(axes[: len(grids)]), label="score", shrink=0.9)
    shared = f": {shared_model}" if shared_model and len(grids) > 1 else ""
    figure.suptitle(title or f"Needle in a haystack{shared}")


def plot_heatmaps(
    grids: Sequence[NiahGrid],
    out: str | Path | None = None,
    *,
    title: str | None = None,
    trained_length: int | None = None,
    target_length: int | None = None,
    dpi: int = 150,
) -> Any:
    """Draw one heatmap panel per grid, side by side (``PANEL_COLUMNS`` a row) on one colour scale, and return the
    matplotlib ``Figure`` (saved to ``out`` when given). Empty cells are grey. Each panel is titled with its
    setting; what all panels share (the model) goes into the figure's title. ``trained_length`` /
    ``target_length`` replace every panel's own markers."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not grids:
        raise ValueError("niah-plot needs at least one run")
    if out is not None:
        out = check_figure_out(out, "niah-plot")
    figure = Figure(figsize=heatmaps_size(grids), dpi=100, layout="constrained")
    draw_heatmaps(figure, grids, title=title, trained_length=trained_length, target_length=target_length)
    if out is not None:
        figure.savefig(out, dpi=dpi, metadata=figure_metadata(out, "niah-plot"))
    return figure


def plot_heatmap(
    grid: NiahGrid,
    out: str | Path | None = None,
    *,
    title: str | None = None,
    trained_length: int | None = None,
    target_length: int | None = None,
    dpi: int = 150,
) -> Any:
    """One run's heatmap (see :func:`plot_heatmaps`)."""
    return plot_heatmaps([grid], out, title=title, trained_length=trained_length, target_length=target_length, dpi=dpi)


def plot_niah_runs(
    runs: Sequence[str | Path | NiahGrid],
    out: str | Path | None = None,
    *,
    title: str | None = None,
    task: str = TASK,
    labels: Sequence[str] | None = None,
) -> Any:
    """Runs in, figure out: every run among ``runs`` (lm-eval output folders or files, or :class:`NiahGrid`
    objects) as one panel, side by side on one colour scale, each titled with its setting or with ``labels``
    (one per panel). Returns the matplotlib ``Figure``, saved to ``out`` when given."""
    grids: list[NiahGrid] = []
    for run in runs:
        grids += [run] if isinstance(run, NiahGrid) else load_grids([run], task)
    if labels is not None:
        if len(labels) != len(grids):
            raise ValueError(f"{len(labels)} labels for {len(grids)} runs; allowed: one label per run")
        grids = [replace(grid, title=label) for grid, label in zip(grids, labels)]
    return plot_heatmaps(grids, out, title=title)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``niah-plot`` sub-command."""
    parser = subparsers.add_parser(
        "niah-plot",
        help="heatmaps (length × depth) of lm-eval longllada_niah runs, side by side",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="lm-eval output: folders, results_*.json and/or samples_*.jsonl; every run found is one panel",
    )
    parser.add_argument("--out", required=True, metavar="HEATMAP.png", help="image file to write (png, pdf, svg, ps)")
    parser.add_argument("--title", help="figure title (default: the setting, or the model the runs share)")
    parser.add_argument("--task", default=TASK, help=f"task name in the results (default {TASK})")
    parser.add_argument("--trained-length", type=int_arg(1), help="mark this trained length (default: from the run)")
    parser.add_argument("--target-length", type=int_arg(1), help="mark this NTK target length (default: from the run)")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``longllada niah-plot``."""
    check_figure_out(args.out, "niah-plot")  # before reading the runs
    grids = load_grids(args.results, task=args.task)
    plot_heatmaps(grids, args.out, title=args.title, trained_length=args.trained_length,
                  target_length=args.target_length)  # fmt: skip
    for grid in grids:
        setting = grid.setting
        print(
            f"{grid.setting.label()}: {len(grid.depths)} depths × {len(grid.lengths)} lengths from {grid.source}"
            f" (trained length {args.trained_length or setting.trained_length or 'unknown'})"
        )
    print(f"{len(grids)} panel{'s' if len(grids) > 1 else ''} -> {args.out}")
    return 0
