"""`longllada table`: NIAH, RULER, LongBench and perplexity results as Markdown and CSV, the mean inside and past
the trained length, and no file written over that the command did not write (or that changed since)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from longllada import cli
from longllada.tables import RECORD_FILE, collect, past_perplexity

pytestmark = pytest.mark.version_independent

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "docs" / "demo"


def lm_eval_results(folder: Path, results: dict, model_args: dict, metadata: dict | None = None,
                    groups: dict | None = None, stamp: str = "2026-01-01T00-00-00.1") -> Path:  # fmt: skip
    """An lm-eval results file (the form lm-eval writes) holding ``results``."""
    folder.mkdir(parents=True, exist_ok=True)
    configs = {task: {"metadata": {"version": 1.0, **(metadata or {})}} for task in results}
    data = {"results": results, "group_subtasks": groups or {}, "configs": configs,
            "config": {"model": "longllada", "model_args": model_args}}  # fmt: skip
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(data))
    return path


def ppl_file(path: Path, values: list[float], trained: int = 128, chunk: int = 64) -> Path:
    """A `longllada ppl` results file: the metadata line, then one line per chunk (the curve's running value)."""
    meta = {"record": "meta", "format": 2, "model": "/models/tiny-llada", "kind": "diffusion", "trained_length": trained,
            "rope_scaling": None, "rope": {"scaling": None}, "estimator": "longllada", "chunk": chunk, "mc": 4,
            "chunks": len(values)}  # fmt: skip
    lines, total = [meta], 0.0
    for index, value in enumerate(values):
        total += value
        lines.append({"record": "chunk", "index": index, "length": chunk * (index + 1), "tokens": chunk,
                      "value": value, "ppl": math.exp(total / (index + 1))})  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def results(tiny_model_dir, tmp_path) -> Path:
    """One folder of runs: NIAH (trained length 256 from the recorded model), RULER and LongBench, and a ppl run."""
    root = tmp_path / "results"
    record = {"longllada_model_path": str(tiny_model_dir)}
    niah = {f"score_len{n}_depth{d},none": float(n // 64 + d) for n in (256, 512) for d in (0, 100)}
    lm_eval_results(root / "niah", {"longllada_niah": {"score,none": 1.0, **niah}}, {"pretrained": "x"}, record)
    ruler = {"longllada_ruler": {"256,none": 0.5, "512,none": 0.25},
             "longllada_ruler_vt": {"256,none": 0.75, "512,none": 0.5},
             "longllada_ruler_cwe": {"256,none": 0.25, "512,none": 0.0}}  # fmt: skip
    groups = {"longllada_ruler": ["longllada_ruler_vt", "longllada_ruler_cwe"]}
    lm_eval_results(root / "ruler", ruler, {"pretrained": "x", "ntk_target": 512}, record, groups)
    longbench = {
        "longllada_longbench_hotpotqa": {"score,none": 31.25},
        "longllada_longbench_trec": {"score,none": 60.0},
    }
    lm_eval_results(root / "longbench", longbench, {"pretrained": "x"}, record)
    ppl_file(root / "ppl.jsonl", [1.0, 1.0, 2.0, 2.0])
    return root


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_every_benchmark_is_tabulated_with_inside_and_past(results, tmp_path, capsys):
    out = tmp_path / "tables"
    assert cli.main(["table", str(results), "--out", str(out)]) == 0
    assert "niah: 1 setting" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert names == {RECORD_FILE, *(f"{kind}.{ext}" for kind in ("niah", "ruler", "longbench", "ppl")
                                    for ext in ("md", "csv"))}  # fmt: skip
    niah = (out / "niah.md").read_text()
    # cells: 256 -> 4 and 104 (mean 54), 512 -> 8 and 108 (mean 58); trained 256: inside 54, past 58
    assert "| tiny-llada, no scaling | 256 | 54.0 | 58.0 | 54.0 | 58.0 |" in niah
    rows = read_csv((out / "niah.csv").read_text())
    assert len(rows) == 4 and {row["context_length"] for row in rows} == {"256", "512"}
    ruler = (out / "ruler.md").read_text()
    assert "| vt | 75.0 | 50.0 | 75.0 | 50.0 |" in ruler and "| **mean** | 50.0 | 25.0 | 50.0 | 25.0 |" in ruler
    assert "longllada_ruler |" not in ruler  # the group is not a task of its own
    longbench = (out / "longbench.md").read_text()
    assert "| hotpotqa | 31.2 |" in longbench and "| **mean** | 45.6 |" in longbench
    ppl = (out / "ppl.md").read_text()
    # values 1, 1, 2, 2 a chunk of 64: at 128 (trained) e^1; past it e^2; ratio e
    assert f"| {math.e:.2f} | {math.e**2:.2f} | {math.e:.2f} |" in ppl
    assert "Monte-Carlo bounds" in ppl


def test_past_perplexity_is_the_mean_of_the_later_chunks():
    lengths, values = [64, 128, 192, 256], [0.5, 1.5, 2.0, 4.0]
    curve = [math.exp(sum(values[: i + 1]) / (i + 1)) for i in range(4)]
    assert past_perplexity(lengths, curve, 128) == pytest.approx(math.exp(3.0))
    assert past_perplexity(lengths, curve, 256) is None  # nothing past it
    assert past_perplexity([64, 192], curve[:2], 64) is None  # not equal chunks


def test_the_demo_tables_are_the_committed_ones(tmp_path):
    """`longllada table docs/demo/summary.json` gives the tables committed beside it, and their numbers are the
    summary's."""
    out = tmp_path / "tables"
    assert cli.main(["table", str(DEMO / "summary.json"), "--out", str(out)]) == 0  # the command the README gives
    committed = DEMO / "tables"
    for name in ("niah.md", "niah.csv", "ppl.md", "ppl.csv"):
        assert (out / name).read_text().replace(str(DEMO), "docs/demo") == (committed / name).read_text(), name
    summary = json.loads((DEMO / "summary.json").read_text())
    plain = summary["niah"]["diffusion"]
    past = [v for cell, v in plain.items() if int(cell.split("@")[0]) > 256]
    assert f"| {sum(past) / len(past):.1f} |" in (out / "niah.md").read_text()
    # finding (a): the diffusion twin's perplexity at 8x over its trained-length value
    curve = summary["ppl"]["diffusion"]
    ratio = curve["ppl"][-1] / curve["ppl"][curve["lengths"].index(256)]
    assert round(ratio, 1) == 27.4


def test_only_files_it_wrote_and_left_unchanged_are_replaced(results, tmp_path, capsys):
    out = tmp_path / "tables"
    assert cli.main(["table", str(results), "--out", str(out)]) == 0
    assert cli.main(["table", str(results), "--out", str(out)]) == 0  # ours, unchanged: replaced
    (out / "ppl.md").write_text((out / "ppl.md").read_text() + "my note\n")
    capsys.readouterr()
    assert cli.main(["table", str(results), "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("longllada table: error: --out") and "ppl.md exists and was not written by" in line
    assert (out / "ppl.md").read_text().endswith("my note\n")

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "niah.md").write_text("my own table\n")
    assert cli.main(["table", str(results), "--out", str(foreign)]) == 2
    assert "niah.md exists" in capsys.readouterr().err
    assert not (foreign / "ppl.md").exists()  # refused before anything was written
    (foreign / "niah.md").unlink()
    (foreign / RECORD_FILE).write_text('{"files": {}}')
    assert cli.main(["table", str(results), "--out", str(foreign)]) == 2
    assert f"{RECORD_FILE} there was not written by" in capsys.readouterr().err


def test_nothing_to_tabulate_is_one_error_line(tmp_path, capsys):
    assert cli.main(["table", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("longllada table: error: no results found")
    (tmp_path / "notes.json").write_text("[1, 2]")
    assert cli.main(["table", str(tmp_path / "notes.json"), "--out", str(tmp_path / "t")]) == 2
    assert "not an lm-eval results file" in capsys.readouterr().err


def test_reruns_of_one_setting_are_told_apart(results, tiny_model_dir, tmp_path):
    again = tmp_path / "again"
    niah = {f"score_len{n}_depth0,none": 1.0 for n in (256, 512)}
    lm_eval_results(again, {"longllada_niah": {"score,none": 1.0, **niah}}, {"pretrained": "x"},
                    {"longllada_model_path": str(tiny_model_dir)}, stamp="2026-02-02T00-00-00.1")  # fmt: skip
    labels = [s.label for s in collect([results / "niah", again]) if s.niah is not None]
    assert labels == ["tiny-llada, no scaling [results_2026-01-01T00-00-00.1.json]",
                      "tiny-llada, no scaling [results_2026-02-02T00-00-00.1.json]"]  # fmt: skip
