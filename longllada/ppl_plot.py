"""`longllada ppl-plot`: Figure-1-style perplexity curves from `longllada ppl` results files, several runs on one
axis.

x = context length (tokens), y = perplexity; one line per run, labelled from its metadata (model, scaling,
estimator; the file's name too when two runs would share a label), and a dashed vertical line at each trained
length (black when the runs share it, else in the colour of the first curve with it). A diffusion model's curve is a Monte-Carlo estimate of an upper bound (its
likelihood is known only through the ELBO), which the figure says under the axes. The log scale (``--log``)
labels 1, 1.5, 2, 3, 5 and 7 of every decade, so a curve below 2 still has ticks.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any, Sequence

from longllada.figure_files import check_figure_out, figure_metadata
from longllada.perplexity import PerplexityCurve, read_run
from longllada.run_info import ppl_setting

TRAINED_LENGTH_GID = "trained-length"  # gid of the vertical marker lines, to tell them from the curves
LOG_TICKS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)  # labelled ticks of each decade on the log scale


def log_axis(axes: Any) -> None:
    """Put ``axes``' perplexity (y) axis on a log scale labelled with plain numbers at 1, 1.5, 2, 3, 5 and 7 of each
    decade: a curve often spans less than a decade, where powers of ten label nothing, and a perplexity under 2
    needs ticks of its own."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=LOG_TICKS))
    axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    axes.yaxis.set_minor_formatter(NullFormatter())


def monte_carlo_note(metas: Sequence[dict[str, Any]]) -> str | None:
    """What a figure says of its diffusion curves (None when it has none): Monte-Carlo estimates of an upper
    bound, with the samples per chunk and the estimator."""
    diffusion = [meta for meta in metas if meta.get("kind") == "diffusion"]
    if not diffusion:
        return None
    samples = sorted({int(meta["mc"]) for meta in diffusion if isinstance(meta.get("mc"), int)})
    counts = f"{'/'.join(map(str, samples))} masked sample{'s' if samples != [1] else ''} per chunk" if samples else ""
    estimators = {meta.get("estimator") for meta in diffusion}
    how = " (LongLLaDA's estimator: the mean cross-entropy of the masked tokens)" if "longllada" in estimators else ""
    return (
        "Diffusion curves are Monte-Carlo bounds, not exact perplexities: a masked diffusion model's likelihood is "
        f"known only through its ELBO, an upper bound on perplexity, estimated here{' from ' + counts if counts else ''}"
        f"{how}."
    )


def run_label(meta: dict[str, Any]) -> str:
    """Legend label of a run: its setting (model, RoPE scaling, as plots and tables name it), then a diffusion
    estimator other than LongLLaDA's, or a causal LM's sliding window."""
    details = [ppl_setting(meta).label(per_cell=False)]
    if meta.get("kind") == "diffusion" and meta.get("estimator") not in (None, "longllada"):
        details.append(str(meta["estimator"]))
    if meta.get("kind") == "autoregressive" and meta.get("window"):
        details.append(f"window {meta['window']}")
    return ", ".join(details)


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

    if not runs:
        raise ValueError("ppl-plot needs at least one results file")
    if out is not None:
        out = check_figure_out(out, "ppl-plot")
    curves = [run if isinstance(run, PerplexityCurve) else read_run(run) for run in runs]
    for run, curve in zip(runs, curves):
        if not curve.rows:
            raise ValueError(f"{run}: the run has no finished chunk yet; nothing to plot")
    settings = [run_label(curve.meta) for curve in curves]
    labels = list(settings)
    for index, (run, label) in enumerate(zip(runs, settings)):
        if settings.count(label) > 1:  # two runs of one setting: tell them apart by their files
            labels[index] = f"{label} [{Path(str(run)).name if not isinstance(run, PerplexityCurve) else index + 1}]"

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    note = draw_curves(figure.add_subplot(), curves, labels, log=log, title=title)
    if note:  # below the axes, in the space the layout keeps for it
        figure.supxlabel(textwrap.fill(note, width=110), x=0.01, ha="left", fontsize="small")
    if out is not None:
        figure.savefig(out, dpi=150, metadata=figure_metadata(out, "ppl-plot"))
    return figure


def draw_curves(
    axes: Any,
    curves: Sequence[PerplexityCurve],
    labels: Sequence[str],
    *,
    log: bool = False,
    title: str | None = None,
    styles: Sequence[dict[str, Any]] | None = None,
) -> str | None:
    """Draw ``curves`` (one line each, labelled ``labels``; ``styles``: matplotlib line keywords per curve) on
    ``axes`` with a dashed line at each trained length (black when the curves share it, else in the colour of the
    first curve with it); returns what the figure should say of its diffusion curves (:func:`monte_carlo_note`),
    None when it has none."""
    trained_lengths: dict[int, str] = {}  # trained length -> colour of the first curve with it
    for index, (curve, label) in enumerate(zip(curves, labels)):
        style = {"marker": "o", "markersize": 2.5, **(styles[index] if styles else {})}
        (line,) = axes.plot(curve.lengths, curve.ppl, label=label, **style)
        trained = curve.meta.get("trained_length")
        if isinstance(trained, int) and trained > 0:
            trained_lengths.setdefault(trained, line.get_color())
    for trained, colour in trained_lengths.items():  # one line per length; black when all runs share it
        shared = len(trained_lengths) == 1
        axes.axvline(trained, color="black" if shared else colour, linestyle="--", linewidth=1, alpha=0.7,
                     gid=TRAINED_LENGTH_GID, label=f"trained length {trained}" if shared else None)  # fmt: skip
    if log:
        log_axis(axes)
    axes.set_xlabel("context length (tokens)")
    axes.set_ylabel("perplexity" + (" (log scale)" if log else ""))
    axes.set_title(title or "Perplexity versus context length (dashed: trained length)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")
    return monte_carlo_note([curve.meta for curve in curves])


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
