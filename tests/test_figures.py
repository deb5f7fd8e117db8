"""`niah-plot` and `ppl-plot` figures: several runs side by side, titled with their settings, markers clear of the
frame, and an existing file replaced only when its metadata field says we wrote it (PNG, SVG, PDF, PostScript)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longllada import cli
from longllada.figure_files import check_figure_out, figure_creator, figure_metadata, is_our_figure
from longllada.niah_plot import TARGET_MARKER_GID, TRAINED_MARKER_GID, load_grids, plot_heatmaps, plot_niah_runs

pytestmark = pytest.mark.version_independent

FORMATS = ["png", "svg", "pdf", "ps", "eps"]
LENGTHS, DEPTHS = [256, 512, 1024], [0, 50, 100]


def matplotlib_file(path: Path, metadata: dict[str, str]) -> Path:
    """A figure saved by matplotlib itself (someone else's tool) with ``metadata``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    figure.savefig(path, metadata=metadata)
    return path


@pytest.mark.parametrize("kind", FORMATS)
def test_our_figures_are_recognised_by_their_metadata_field(kind, tmp_path):
    ours = matplotlib_file(tmp_path / f"ours.{kind}", figure_metadata(f"x.{kind}", "niah-plot"))
    assert figure_creator(ours) == "longllada niah-plot" and is_our_figure(ours)
    assert check_figure_out(ours, "ppl-plot") == ours  # either plot command replaces the other's figures


@pytest.mark.parametrize("kind", FORMATS)
def test_a_file_that_only_mentions_longllada_is_not_ours(kind, tmp_path):
    """The mark in the wrong field, in a comment or in the text: a word in the bytes, not our metadata."""
    word = "longllada niah-plot"
    # matplotlib writes the file name as a PostScript title: those get handwritten files only
    other_field = {"png": {"Comment": word}, "pdf": {"Title": word}, "svg": {"Title": word}}.get(kind)
    files = [matplotlib_file(tmp_path / f"field.{kind}", other_field)] if other_field else []
    handwritten = {
        "png": None,
        "svg": f'<svg xmlns="http://www.w3.org/2000/svg"><!-- {word} --><text x="0" y="9">{word}</text></svg>',
        "pdf": f"%PDF-1.4\n% {word}\n1 0 obj\n<< /Creator (someone else) /Keywords ({word}) >>\nendobj\n"
        "trailer\n<< /Size 2 /Info 1 0 R >>\n%%EOF\n",
        "ps": f"%!PS-Adobe-3.0\n%%Creator: someone else\n%%EndComments\n%%Creator: {word}\n% {word}\nshowpage\n",
        "eps": f"%!PS-Adobe-3.0 EPSF-3.0\n%%Title: {word}\n%%EndComments\n%%Creator: {word}\nshowpage\n",
    }[kind]
    if handwritten:
        files.append(tmp_path / f"handwritten.{kind}")
        files[-1].write_text(handwritten)
    for path in files:
        before = path.read_bytes()
        assert word.encode() in before  # the old check (the word anywhere in the bytes) took these for ours
        assert not is_our_figure(path), path
        with pytest.raises(ValueError, match="exists and was not written by `longllada niah-plot`"):
            check_figure_out(path, "niah-plot")
        assert path.read_bytes() == before


def results_file(folder: Path, model_args: dict, cells: dict, stamp: str, metadata: dict | None = None) -> Path:
    """An lm-eval results file of longllada_niah (the form lm-eval writes) with the given cell scores."""
    folder.mkdir(parents=True, exist_ok=True)
    results = {f"score_len{n}_depth{d},none": score for (n, d), score in cells.items()}
    data = {
        "results": {"longllada_niah": {"score,none": 50.0, **results}},
        "configs": {"longllada_niah": {"metadata": {"version": 2.0, **(metadata or {})}}},
        "config": {"model": "longllada", "model_args": model_args},
        "n-samples": {"longllada_niah": {"original": 9, "effective": 9}},
    }
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def runs(tiny_model_dir, tmp_path) -> list[Path]:
    """Three runs of one model in two folders: no scaling, NTK to 1024 (the grid's last length), NTK by factor;
    the model named by a relative path (resolved nowhere but in the task's record)."""
    grid = {"context_lengths": LENGTHS, "depths": DEPTHS, "num_repeats": 1}
    record = {"longllada_model_path": str(tiny_model_dir), "longllada_grid": grid}
    cells = {(n, d): 100.0 - n / 20 - d / 10 for n in LENGTHS for d in DEPTHS}
    first = tmp_path / "sweep"
    return [
        results_file(first, {"pretrained": "../elsewhere/tiny"}, cells, "2026-01-01T00-00-00.1", record),
        results_file(
            first, {"pretrained": "../elsewhere/tiny", "ntk_target": 1024}, cells, "2026-01-01T00-00-01.1", record
        ),  # fmt: skip
        results_file(
            tmp_path / "other",
            {"pretrained": "../elsewhere/tiny", "ntk_factor": 4},
            cells,
            "2026-01-02T00-00-00.1",
            record,
        ),  # fmt: skip
    ]


def test_every_run_is_a_panel_on_one_colour_scale(runs, tmp_path, capsys):
    out = tmp_path / "panels.png"
    assert cli.main(["niah-plot", str(runs[0].parent), str(runs[2].parent), "--out", str(out)]) == 0
    assert "3 panels" in capsys.readouterr().out
    grids = load_grids([runs[0].parent, runs[2].parent])
    figure = plot_heatmaps(grids)
    panels = [axes for axes in figure.axes if axes.images]
    assert len(panels) == 3
    assert len({(axes.images[0].norm.vmin, axes.images[0].norm.vmax) for axes in panels}) == 1
    assert len(figure.axes) == 4  # three panels and one colour bar
    titles = [axes.get_title() for axes in panels]
    assert not any("sweep" in title or "other" in title for title in titles)  # settings, not folder names
    assert titles[0] == "no scaling, 1 needle/cell" and titles[1].startswith("NTK λ=") and "T=1024" in titles[1]
    assert titles[2].startswith("NTK λ=4,")
    assert figure._suptitle.get_text() == "Needle in a haystack: tiny-llada"  # what the panels share


def test_markers_come_from_the_run_and_stand_clear_of_the_frame(runs):
    figure = plot_niah_runs([runs[1]])
    (axes,) = [axes for axes in figure.axes if axes.images]
    markers = {line.get_gid(): line.get_xdata()[0] for line in axes.get_lines()}
    assert markers == {TRAINED_MARKER_GID: 0.5, TARGET_MARKER_GID: 2.5}  # after 256; after 1024, the last column
    left, right = axes.get_xlim()
    assert left == -0.5 and right > 2.5 + 0.1  # the frame moved out: the target line is not on it


def test_a_plot_labels_runs_as_asked_and_refuses_too_many(runs, tmp_path):
    figure = plot_niah_runs(runs[:2], labels=["plain", "scaled"])
    assert [axes.get_title() for axes in figure.axes if axes.images] == ["plain", "scaled"]
    with pytest.raises(ValueError, match="2 labels for 3 runs"):
        plot_niah_runs(runs, labels=["a", "b"])
    with pytest.raises(ValueError, match="at most 16"):
        plot_heatmaps(load_grids(runs) * 6)


@pytest.mark.parametrize("kind", ["png", "svg", "pdf", "ps"])
def test_niah_plot_replaces_its_figure_and_refuses_a_users(runs, tmp_path, kind, capsys):
    out = tmp_path / f"heatmap.{kind}"
    for _ in range(2):
        assert cli.main(["niah-plot", str(runs[0]), "--out", str(out)]) == 0
    assert figure_creator(out) == "longllada niah-plot"
    field = "Comment" if kind == "png" else "Title"
    users = matplotlib_file(tmp_path / f"mine.{kind}", {field: "longllada niah-plot"})
    before = users.read_bytes()
    capsys.readouterr()
    assert cli.main(["niah-plot", str(runs[0]), "--out", str(users)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("longllada niah-plot: error: --out") and "was not written by" in line
    assert users.read_bytes() == before


def curve(kind: str, values: list[float], **meta):
    from longllada.perplexity import PerplexityCurve

    rows = [{"record": "chunk", "index": i, "length": 64 * (i + 1), "tokens": 64, "value": 0.0, "ppl": v}
            for i, v in enumerate(values)]  # fmt: skip
    base = {"record": "meta", "model": "/models/tiny", "kind": kind, "trained_length": 128, "rope_scaling": None,
            "estimator": "longllada" if kind == "diffusion" else "ar", "mc": 8, "chunks": len(values)}  # fmt: skip
    return PerplexityCurve(meta=base | meta, rows=rows)


def test_ppl_log_axis_has_ticks_under_2_and_names_the_bound():
    from longllada.ppl_plot import plot_curves

    figure = plot_curves([curve("autoregressive", [1.9, 1.6, 1.3, 1.25]), curve("diffusion", [1.8, 1.5, 1.4, 1.7])],
                         log=True)  # fmt: skip
    (axes,) = figure.axes
    low, high = axes.get_ylim()
    labelled = [tick for tick in axes.get_yticks() if low <= tick <= high]
    assert any(tick < 2 for tick in labelled) and len(labelled) >= 2
    assert "Monte-Carlo bounds" in figure.get_supxlabel() and "8 masked samples per chunk" in figure.get_supxlabel()
    no_diffusion = plot_curves([curve("autoregressive", [3.0, 2.0])], log=True)
    assert no_diffusion.get_supxlabel() == ""


def test_ppl_runs_of_one_setting_are_told_apart():
    from longllada.ppl_plot import plot_curves

    figure = plot_curves([curve("diffusion", [3.0, 2.0]), curve("diffusion", [3.1, 2.1])])
    labels = [line.get_label() for line in figure.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert labels[:2] == ["tiny, no scaling [1]", "tiny, no scaling [2]"]
