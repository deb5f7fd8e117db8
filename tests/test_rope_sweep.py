"""`longllada rope-sweep`: settings (methods × factors, specs) over the NIAH grid and the perplexity curve in one
process, one figure and one table; its refusals before any model loads; a rerun resumes; and `--model_args` carrying
every method to lm-eval (the string forms, a whole JSON --model_args, one clear error for a dict or a list cut by
lm-eval's key=value form)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from longllada.cli import main  # noqa: E402
from longllada.figure_files import figure_creator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_LLAMA = REPO / "longllada" / "models" / "tiny-llama-ar"
# Two lengths around the tiny model's trained 256, two depths, one needle: 4 prompts a setting.
GRID = ["--lengths", "128,512", "--depths", "0,100", "--needles", "1", "--gen-tokens", "4", "--ppl-max-length", "320",
        "--chunk", "64", "--mc", "1", "--device", "cpu", "--no-progress"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sweep(model: Path, out: Path, *extra: str) -> list[str]:
    return ["rope-sweep", "--model", str(model), "--out", str(out), *GRID, *extra]


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("longllada rope-sweep: error: "), lines[0]
    return lines[0]


class Messages(logging.Handler):
    """The messages of the ``longllada`` loggers (which do not propagate to the root) during a run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_two_settings_one_figure_one_table_and_a_rerun_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "sweep"
    assert main(sweep(tiny_model_dir, out, "--rope-scaling", "none")) == 0
    # a second setting: the first is recorded as finished and skipped, its perplexity curve is complete
    heard = Messages()
    logging.getLogger("longllada").addHandler(heard)
    try:
        assert main(sweep(tiny_model_dir, out, "--rope-scaling", "none", "--rope-scaling", "yarn:2")) == 0
    finally:
        logging.getLogger("longllada").removeHandler(heard)
    assert "setting 1/2: finished in an earlier run, skipped" in heard.messages
    assert any(message.startswith("setting 2/2: finished in") for message in heard.messages)

    record = json.loads((out / "rope_sweep.json").read_text())
    assert record["written_by"] == "longllada rope-sweep"
    assert [s["name"] for s in record["settings"]] == ["none", "yarn:2"]
    assert record["command"][:2] == ["longllada", "rope-sweep"] and "yarn:2" in record["command"]
    assert figure_creator(out / "rope_comparison.png") == "longllada rope-sweep"
    markdown = (out / "rope_comparison.md").read_text()
    assert "| none | 256 |" in markdown and "| yarn:2 | 256 |" in markdown
    header, *rows = (out / "rope_comparison.csv").read_text().splitlines()
    assert {"niah_inside", "niah_past", "ppl_inside", "ppl_past", "rope_factor"} <= set(header.split(","))
    assert len(rows) == 2
    table = {row["setting"]: row for row in record["table"]}
    assert table["yarn:2"]["rope_factor"] == 2.0 and table["yarn:2"]["context_window"] == 512
    for row in table.values():
        assert 0 <= row["niah_inside"] <= 100 and 0 <= row["niah_past"] <= 100
        assert row["ppl_inside"] > 0 and row["ppl_past"] > 0 and row["ppl_last_length"] == 320
    assert set(record["files"]) == {"rope_comparison.png", "rope_comparison.md", "rope_comparison.csv"}

    # niah-plot and ppl-plot read the sweep's runs as they are: one panel / one curve per setting
    assert main(["niah-plot", str(out / "niah"), "--out", str(tmp_path / "niah.png")]) == 0
    curves = sorted(str(path) for path in (out / "ppl").glob("*.jsonl"))
    assert len(curves) == 2
    assert main(["ppl-plot", *curves, "--out", str(tmp_path / "ppl.png")]) == 0

    # a table changed by hand is no longer ours: refused, left as it is
    (out / "rope_comparison.md").write_text("my notes\n")
    assert main(sweep(tiny_model_dir, out, "--rope-scaling", "none")) == 2
    assert (out / "rope_comparison.md").read_text() == "my notes\n"


def test_methods_times_factors_and_the_law_factor_files(tiny_model_dir, tmp_path):
    """Methods × factors expand to the parser's specs, each reaching factor × the trained length; LongRoPE's factors
    from the law are a file of the sweep; nothing loads before the settings are built."""
    from longllada.rope_sweep import build_settings, law_factor_tables
    from modeling_longllada import longrope_law_factors

    out = tmp_path / "sweep"
    settings = build_settings([str(tiny_model_dir)], ["none", "ntk", "linear", "longrope-law", "ntk-per-length"],
                              [2, 4], ["yarn:3"], out)  # fmt: skip
    assert [(s.name, s.spec) for s in settings if s.method != "longrope-law"] == [
        ("none", "none"), ("ntk ×2", "ntk-target:512"), ("ntk ×4", "ntk-target:1024"), ("linear ×2", "linear:2"),
        ("linear ×4", "linear:4"), ("ntk-per-length", "ntk-per-length"), ("yarn:3", "yarn:3"),
    ]  # fmt: skip
    law = [s for s in settings if s.method == "longrope-law"]
    assert [s.spec for s in law] == [f"longrope:{s.factors_file}:{n}" for s, n in zip(law, (512, 1024))]
    assert all(s.factors_file.parent == out / "factors" for s in law)
    tables = law_factor_tables(law)
    assert tables[law[0].slug] == longrope_law_factors(16, 10000.0, 256, 512)
    assert tables[law[0].slug][0] == 1.0 and tables[law[0].slug] == sorted(tables[law[0].slug])


def test_a_relative_out_keeps_the_factor_files_relative(tiny_model_dir, tmp_path, monkeypatch):
    """The specs name the law's factor files as ``--out`` is given: a relative folder puts no path of the machine
    into the records and results files (which are committed), and the settings stay the same wherever it runs."""
    from longllada.rope_sweep import build_settings

    monkeypatch.chdir(tmp_path)
    (setting,) = build_settings([str(tiny_model_dir)], ["longrope-law"], [2], [], Path("docs/sweep"))
    assert setting.spec == "longrope:docs/sweep/factors/tiny-llada_512.json:512"
    assert setting.record()["spec"] == setting.spec


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "ntk,bogus"], r"--methods 'ntk,bogus': \['bogus'\]; allowed: none, ntk"),
        (["--methods", "ntk", "--factors", "2,0.5"], r"--factors '2,0.5': '0.5' is not allowed"),
        (
            ["--methods", "linear,yarn,dynamic,llama3,ntk,longrope-law", "--factors", "2,3,4"],
            r"at most 16 in one figure",
        ),
        (["--rope-scaling", "longrope:GSAI-ML/LLaDA-8B-Instruct"], r"long_factor has 64 numbers; allowed: 8"),
        (["--rope-scaling", "yarn:2", "--rope-scaling", "yarn:2"], r"asked for twice"),
        (["--rope-scaling", "bogus:2"], r"--rope-scaling='bogus:2' is not allowed"),
        (["--rope-scaling", "none", "--ppl-max-length", "10000000"], r"--ppl-max-length 10000000 is beyond the text"),
        (["--rope-scaling", "none", "--depths", "0,150"], r"'150' is not allowed.* <= 100"),
    ],
)
def test_bad_input_is_one_error_line_before_any_model_loads(tiny_model_dir, tmp_path, capsys, extra, message):
    import re

    out = tmp_path / "sweep"
    assert main(sweep(tiny_model_dir, out, *extra)) == 2
    line = error_line(capsys)
    assert re.search(message, line), line
    assert not (out / "niah").exists() and not (out / "ppl").exists()


def test_per_length_ntk_on_a_causal_lm_is_refused_naming_the_setting(tmp_path, capsys):
    assert main(sweep(TINY_LLAMA, tmp_path / "sweep", "--methods", "none,ntk-per-length")) == 2
    line = error_line(capsys)
    assert "setting 'ntk-per-length'" in line and "for a causal LM use transformers' per-length rule" in line


@pytest.mark.parametrize("foreign", ["rope_comparison.png", "rope_sweep.json", "ppl/none.jsonl"])
def test_files_it_did_not_write_are_refused_and_left_alone(tiny_model_dir, tmp_path, capsys, foreign):
    out = tmp_path / "sweep"
    path = out / foreign
    path.parent.mkdir(parents=True)
    path.write_text("someone else's\n")
    assert main(sweep(tiny_model_dir, out, "--rope-scaling", "none")) == 2
    assert "not written by" in error_line(capsys)
    assert path.read_text() == "someone else's\n"
    assert not (out / "niah").exists()


# -- every method through lm-eval's --model_args ------------------------------------------------------------------


def eval_args(model_args: str, out: Path) -> list[str]:
    grid = json.dumps({"context_lengths": [128], "depths": [50], "num_repeats": 1})
    return ["eval", "--model", "longllada", "--model_args", model_args, "--tasks", "longllada_niah", "--metadata",
            grid, "--device", "cpu", "--output_path", str(out), "--gen_kwargs", "max_gen_toks=4"]  # fmt: skip


def test_model_args_take_a_spec_file_and_a_whole_json_model_args(tiny_model_dir, tmp_path):
    """``rope_scaling=longrope:FILE.json:T`` in key=value form, and a dict through a whole JSON ``--model_args``:
    lm-eval runs the model with the spec, and the results record it."""
    table = tmp_path / "factors.json"
    table.write_text(json.dumps([1.0 + i / 2 for i in range(8)]))
    as_json = json.dumps({"pretrained": str(tiny_model_dir), "steps": 4, "block_length": 4,
                          "rope_scaling": {"type": "yarn", "factor": 4, "beta_fast": 16}})  # fmt: skip
    for name, model_args in (("file", f"pretrained={tiny_model_dir},rope_scaling=longrope:{table}:1024,steps=4,"
                                      "block_length=4"), ("json", as_json)):  # fmt: skip
        assert main(eval_args(model_args, tmp_path / name)) == 0
        (results,) = (tmp_path / name).rglob("results_*.json")
        loaded = json.loads(results.read_text())["config"]["longllada_rope_loaded"]
        if name == "file":
            assert loaded["rope_type"] == "longrope" and loaded["factor"] == 4.0
        else:
            assert json.loads(loaded["scaling"].removeprefix("config:")) == {
                "type": "yarn",
                "factor": 4,
                "beta_fast": 16,
            }


@pytest.mark.parametrize(
    "value, message",
    [
        ('{"type":"yarn","factor":4}', r"--model_args: lm-eval reads a --model_args that holds '\{' as one JSON"),
        ("[1.0,2.0]", r"rope_scaling=\[1\.0, 2\.0\] is a list, which says no target length"),
    ],
)
def test_a_dict_or_a_list_in_key_value_model_args_is_one_clear_error(tiny_model_dir, tmp_path, capsys, value, message):
    import re

    assert main(eval_args(f"pretrained={tiny_model_dir},rope_scaling={value}", tmp_path)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("longllada eval: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert "one JSON object" in lines[0] and not list(tmp_path.rglob("results_*.json"))


def test_a_json_spec_cut_at_its_commas_is_named_as_such(tiny_model_dir):
    """lm-eval's plain key=value splitting (``simple_evaluate(model_args="...")``) leaves pieces of a JSON spec as
    keys: the error says what happened and how to give a dict."""
    from lm_eval.utils import simple_parse_args_string

    from longllada.lm_eval_model import check_model_args

    cut = simple_parse_args_string(f'pretrained={tiny_model_dir},rope_scaling={{"type":"yarn","factor":4}}')
    with pytest.raises(ValueError, match=r"is not a whole JSON object: key=value model arguments end a value at its"):
        check_model_args(cut)
    assert check_model_args(simple_parse_args_string(f"pretrained={tiny_model_dir},rope_scaling=yarn:4"))[0].name == (
        "llada"
    )
