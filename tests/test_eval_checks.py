"""`longllada eval` before any model loads: every setting of a sweep fully checked (sampler options included), task
grids bounded by what this machine and the model can hold (the numbers in the error), and a rerun that never
skips a finished setting whose model files changed since."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_eval_settings import FIRST, TWIN, eval_args, run_in_process

from lm_eval_tasks.grid_bounds import ACTIVATION_COPIES, GRID_BYTES_PER_TOKEN, SMALLEST_ELEMENT_BYTES, physical_memory
from longllada.eval_cli import SETTINGS_FILE, fingerprint_differences, run_eval, setting_fingerprint
from longllada.lm_eval_model import check_model_args

pytestmark = pytest.mark.version_independent

TWIN_WIDTH = json.loads((TWIN / "config.json").read_text())["d_model"]


def refused(argv: list[str], out: Path) -> str:
    """The one error line of a run refused before any model was built and anything written."""
    code, errors, timing = run_in_process(argv)
    assert code == 2 and len(errors) == 1, errors
    assert timing == [] and not out.exists()  # no model built, nothing written
    return errors[0]


# -- every setting checked up front ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("steps=0", "steps=0 is not allowed; allowed: an integer >= 1"),
        ("threshold=1.5", "threshold=1.5 is not allowed; allowed: a finite number >= 0 and <= 1"),
        ("cache=bogus", "cache='bogus' is not allowed; allowed: ['none', 'prefix', 'dual']"),
        ("block_length=2.5", "block_length=2.5 is not allowed"),
        ("temperature=nan", "temperature=nan is not allowed"),
        ("remasking=random,threshold=0.5", "threshold=0.5 needs a confidence in [0, 1]"),
        ("top_p=0.9", "top_p=0.9 does not apply to LLaDA's sampler"),
        ("alg=maskgit_plus,remasking=random", "alg='maskgit_plus' does not apply to LLaDA's sampler"),
        ("mc_num=0", "mc_num=0 is not allowed"),
        ("greedy_check=maybe", "greedy_check='maybe' is not allowed"),
        ("use_kernels=maybe", "use_kernels='maybe' is not allowed; allowed: True or False"),
    ],
)
def test_a_bad_sampler_option_in_the_second_setting_is_refused_before_the_first_runs(tmp_path, bad, message):
    out = tmp_path / "out"
    line = refused(eval_args([FIRST, f"pretrained={TWIN},{bad}"], out)[2:], out)
    assert line.startswith("longllada eval: error: setting 2/2 (--model_args ") and message in line, line


def test_one_setting_is_checked_as_fully(tmp_path):
    out = tmp_path / "out"
    line = refused(eval_args([f"pretrained={TWIN},steps=0"], out)[2:], out)
    assert line.startswith("longllada eval: error: steps=0 is not allowed"), line


def test_use_kernels_is_refused_where_transformers_has_no_hub_kernels(monkeypatch):
    from modeling_longllada import families

    if families.transformers_has_hub_kernels():  # taken as a loading argument
        check_model_args({"pretrained": str(TWIN), "use_kernels": False})
    monkeypatch.setattr(families, "transformers_has_hub_kernels", lambda: False)
    with pytest.raises(ValueError, match="use_kernels=True is not allowed with transformers .*, which has no Hub"):
        check_model_args({"pretrained": str(TWIN), "use_kernels": True})


def test_sampler_options_are_checked_with_the_family_defaults(tiny_dream_dir):
    """Dream's defaults (one block, alg "origin") are the base: top_p is Dream's, a threshold needs a confidence
    that "origin" does not give."""
    check_model_args({"pretrained": str(tiny_dream_dir), "top_p": 0.9, "alg_temp": 0.1, "steps": 8})
    with pytest.raises(ValueError, match="threshold=0.9 needs a confidence in \\[0, 1\\], which remasking='origin'"):
        check_model_args({"pretrained": str(tiny_dream_dir), "threshold": 0.9})
    check_model_args({"pretrained": str(tiny_dream_dir), "threshold": 0.9, "alg": "maskgit_plus"})
    with pytest.raises(ValueError, match="alg='maskgit_plus' and remasking='random' disagree"):
        check_model_args({"pretrained": str(tiny_dream_dir), "alg": "maskgit_plus", "remasking": "random"})
    with pytest.raises(ValueError, match="pretrained='/no/such/model': its config.json could not be read"):
        check_model_args({"pretrained": "/no/such/model"})


# -- grid bounds -------------------------------------------------------------------------------------------------------


def test_the_issue_grid_is_refused_at_once_with_its_size(tmp_path):
    """`--metadata '{"context_lengths": [1000000000]}'` built a grid for 90+ s at 11.6 GB."""
    out = tmp_path / "out"
    argv = ["--model", "longllada", "--model_args", f"pretrained={TWIN}", "--tasks", "longllada_niah",
            "--metadata", json.dumps({"context_lengths": [10**9]}), "--device", "cpu", "--output_path", str(out)]  # fmt: skip
    line = refused(argv, out)
    assert "longllada_niah: the grid of 1 length(s) up to 1000000000 tokens with 110 prompt(s) each" in line
    assert f"allowed: at most {physical_memory() // GRID_BYTES_PER_TOKEN} prompt tokens in all" in line


def test_a_length_the_model_cannot_hold_is_refused_with_the_limit(tmp_path):
    per_token = ACTIVATION_COPIES * TWIN_WIDTH * SMALLEST_ELEMENT_BYTES
    limit = physical_memory() // per_token
    grid = {"context_lengths": [limit + 1], "depths": [0], "num_repeats": 1}
    out = tmp_path / "out"
    line = refused(eval_args([FIRST, f"pretrained={TWIN},ntk_factor=4"], out)[2:-4]
                   + ["--metadata", json.dumps(grid), "--output_path", str(out)], out)  # fmt: skip
    assert line.startswith("longllada eval: error: setting 1/2 (--model_args ")
    assert f"context_lengths holds {limit + 1}" in line and f"(hidden size {TWIN_WIDTH})" in line
    assert f"allowed: lengths up to {limit}" in line


@pytest.mark.parametrize(
    ("tasks", "metadata", "message"),
    [
        ("longllada_niah", {"context_lengths": [1000], "num_repeats": 10**9}, "longllada_niah: the grid of"),
        ("longllada_niah", {"context_lengths": [1000], "depths": [0] * 10**6, "num_repeats": 1000},
         "longllada_niah: the grid of"),
        ("longllada_ruler_niah_single_1", {"max_seq_lengths": [2**32]}, "longllada_ruler: the grid of"),
        ("longllada_ruler_niah_single_1", {"max_seq_lengths": [4096], "num_samples": 10**9},
         "longllada_ruler: the grid of"),
    ],
    ids=["niah-repeats", "niah-depths", "ruler-length", "ruler-samples"],
)  # fmt: skip
def test_other_grid_sizes_are_bounded_too(tmp_path, tasks, metadata, message):
    out = tmp_path / "out"
    argv = ["--model", "longllada", "--model_args", f"pretrained={TWIN}", "--tasks", tasks,
            "--metadata", json.dumps(metadata), "--device", "cpu", "--output_path", str(out)]  # fmt: skip
    line = refused(argv, out)
    assert message in line and "allowed: at most" in line, line


def test_the_task_itself_refuses_an_oversized_grid_for_plain_lm_eval():
    from lm_eval_tasks.longllada_niah.utils import niah_dataset

    with pytest.raises(ValueError, match=r"up to 1000000000 tokens"):
        niah_dataset(pretrained=str(TWIN), context_lengths=[10**9])


# -- resume -------------------------------------------------------------------------------------------------------------


def test_fingerprints_of_a_setting_and_their_differences(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(TWIN, model)
    before = setting_fingerprint({"pretrained": str(model), "tokenizer": str(model), "cache": "prefix"})
    assert set(before) == {"pretrained", "tokenizer"} and "model.safetensors" in before["pretrained"]["files"]
    assert fingerprint_differences(before, before) == []
    config = (model / "config.json").read_text()
    (model / "config.json").write_text(config.replace('"rope_theta": 10000.0', '"rope_theta": 20000.0'))  # same size
    after = setting_fingerprint({"pretrained": str(model), "tokenizer": str(model)})
    assert fingerprint_differences(before, after) == ["pretrained: config.json: sha256 changed",
                                                      "tokenizer: config.json: sha256 changed"]  # fmt: skip
    assert fingerprint_differences(None, after) == ["the progress file records no fingerprint of its model files"]
    assert setting_fingerprint({"pretrained": "longllada-tests/not-downloaded"}) == {"pretrained": None}
    assert fingerprint_differences({"pretrained": None}, {"pretrained": None}) != []  # cannot tell: rerun


@pytest.mark.e2e
def test_a_rerun_after_the_weights_changed_reruns_that_setting(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("LONGLLADA_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    shutil.copytree(TWIN, model)
    out = tmp_path / "out"
    changing, fixed = f"pretrained={model},cache=prefix", f"pretrained={TWIN},cache=prefix"
    grid = json.dumps({"context_lengths": [128], "depths": [0], "num_repeats": 1})
    argv = ["--model", "longllada", "--model_args", changing, "--model_args", fixed, "--tasks", "longllada_niah",
            "--metadata", grid, "--gen_kwargs", "max_gen_toks=4", "--device", "cpu", "--output_path", str(out)]  # fmt: skip
    assert run_eval(argv) == 0
    capfd.readouterr()
    from modeling_longllada import LongLLaDAModelLM

    changed = LongLLaDAModelLM.from_pretrained(model)
    with torch.no_grad():
        changed.model.transformer.wte.weight.mul_(1.5)
    changed.save_pretrained(model)  # the same path, other weights

    assert run_eval(argv) == 0
    log = capfd.readouterr().err
    assert "setting 1/2: finished in an earlier run, but its model files are not the same now" in log
    assert "pretrained: model.safetensors: mtime_ns, sha256_sampled" in log and "it runs again" in log
    assert f"setting 1/2: {changing}" in log  # it ran
    assert "setting 2/2: finished in an earlier run, skipped" in log
    progress = json.loads((out / SETTINGS_FILE).read_text())
    assert [entry["setting"] for entry in progress["finished"]] == [fixed, changing]  # one entry a setting
    assert progress["finished"][1]["fingerprint"] == setting_fingerprint({"pretrained": str(model)})
    assert len(list(out.rglob("results_*.json"))) == 3

    assert run_eval(argv) == 0  # now both match
    log = capfd.readouterr().err
    assert "setting 1/2: finished in an earlier run, skipped" in log and "setting 2/2: finished" in log


# -- other commands -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--repeats", "1000000000", "--scaled-repeats", "1"], "longllada demo: the grid of 4 length(s) up to 2048"),
        (["--check", "{tmp}/notes.json"], "--check {tmp}/notes.json is not a summary of `longllada demo`"),
    ],
    ids=["grid", "check-file"],
)
def test_demo_refuses_a_grid_too_large_and_a_bad_check_file_before_any_work(tmp_path, capsys, extra, message):
    from longllada import cli

    (tmp_path / "notes.json").write_text('{"my": "notes"}')
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), *[arg.format(tmp=tmp_path) for arg in extra]]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("longllada demo: error: "), lines
    assert message.format(tmp=tmp_path) in lines[0]
    assert not any(out.rglob("*.jsonl"))  # no curve was computed


def test_request_caches_follow_the_model_files(tmp_path):
    """lm-eval's --use_cache hands back answers by request text alone: after the weights changed, a rerun must not
    read the old model's answers. Several settings: each setting's cache is named by its files' fingerprint too;
    one setting: a cache of other files is refused before any model loads."""
    import argparse

    from longllada.eval_cli import check_request_cache, setting_args

    model = tmp_path / "model"
    shutil.copytree(TWIN, model)
    args = argparse.Namespace(model="longllada", model_args={}, use_cache=str(tmp_path / "answers"))
    before = setting_args(args, {"pretrained": str(model)}).use_cache
    assert setting_args(args, {"pretrained": str(model)}).use_cache == before  # a killed run resumes from it
    cache = tmp_path / "single"
    check_request_cache(str(cache), {"pretrained": str(model)}, writer=True)  # the first run records its files
    check_request_cache(str(cache), {"pretrained": str(model)}, writer=True)  # a rerun over the same files: fine

    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # other weights, same size
    weights.write_bytes(bytes(data))
    assert setting_args(args, {"pretrained": str(model)}).use_cache != before
    out = tmp_path / "out"
    argv = ["--model", "longllada", "--model_args", f"pretrained={model}", "--tasks", "longllada_niah", "--metadata",
            json.dumps({"context_lengths": [128], "depths": [0], "num_repeats": 1}), "--device", "cpu",
            "--use_cache", str(cache), "--output_path", str(out)]  # fmt: skip
    line = refused(argv, out)
    assert line.startswith(f"longllada eval: error: --use_cache {cache} holds answers of other model files")
    assert "pretrained: model.safetensors: " in line
