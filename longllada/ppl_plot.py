"""`longllada ppl-plot`: Figure-1-style perplexity curves from `longllada ppl` results files.

x = context length (tokens), y = perplexity; one line per run, labelled from its metadata (model, scaling,
estimator), and a dashed vertical line in the same colour at that model's trained length.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from longllada.figure_files import check_figure_out, figure_metadata
from longllada.perplexity import PerplexityCurve, read_run

TRAINED_LENGTH_GID = "trained-length"  # gid of the vertical marker lines, to tell them from the curves


def run_label(meta: dict[str, Any]) -> str:
    """Legend label of a run: model folder or id, then its RoPE scaling and estimator."""
    name = Path(str(meta.get("model", "?"))).name or str(meta.get("model"))
    details = [meta.get("rope_scaling") or "no scaling"]
    if meta.get("kind") == "diffusion" and meta.get("estimator") not in (None, "longllada"):
        details.append(str(meta["estimator"]))
    if meta.get("kind") == "autoregressive" and meta.get("window"):
        details.append(f"window {meta['window']}")
    return f"{name} ({', '.join(details)})"


def plot_curves(
    runs: Sequence[str | Path | PerplexityCurve],
    *,
    log: bool = False,
    title: str | None = None,
    out: str | Path | None = None,
) -> Any:
    """Draw one perplexity curve per run and return the matplotlib ``Figure`` (saved to ``out`` when given).

    ``runs`` are results files or :class:`~longllada.perplexity.PerplexityCurve` objects; partly finished runs
    are drawn as far as they go. ``log`` puts the perplexity axis on a log scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    if not runs:
        raise ValueError("ppl-plot needs at least one results file")
    if out is not None:
        out = check_figure_out(out, "ppl-plot")
    curves = [run if isinstance(run, PerplexityCurve) else read_run(run) for run in runs]
    for run, curve in zip(runs, curves):
        if not curve.rows:
            raise ValueError(f"{run}: the run has no finished chunk yet; nothing to plot")

    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for curve in curves:
        (line,) = axes.plot(curve.lengths, curve.ppl, marker="o", markersize=2.5, label=run_label(curve.meta))
        trained = curve.meta.get("trained_length")
        if isinstance(trained, int) and trained > 0:
            axes.axvline(
                trained, color=line.get_color(), linestyle="--", linewidth=1, alpha=0.7, gid=TRAINED_LENGTH_GID
            )
    if log:
        axes.set_yscale("log")
        # Plain numbers: a curve often spans less than a decade, where powers of ten label nothing useful.
        axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axes.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axes.set_xlabel("context length (tokens)")
    axes.set_ylabel("perplexity")
    axes.set_title(title or "Perplexity versus context length (dashed: trained length)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    if out is not None:
        figure.savefig(out, dpi=150, metadata=figure_metadata(out, "ppl-plot"))
    return figure


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ppl-plot`` sub-command."""
    parser = subparsers.add_parser(
        "ppl-plot",
        help="plot perplexity-versus-length curves from `longllada ppl` results",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("runs", nargs="+", metavar="RESULT.jsonl", help="results files of `longllada ppl`")
    parser.add_argument(
        "--out", required=True, metavar="FIGURE.png", help="image file (PNG, or any format matplotlib writes)"
    )
    parser.add_argument("--log", action="store_true", help="log-scale perplexity axis")
    parser.add_argument("--title", help="figure title")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``longllada ppl-plot``."""
    plot_curves(args.runs, log=args.log, title=args.title, out=args.out)
    print(f"{len(args.runs)} curve(s) -> {args.out}")
    return 0
