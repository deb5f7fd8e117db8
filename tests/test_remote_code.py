"""A model's own code runs only when the user allows it: ``longllada ppl``, lm-eval's ``--model hf`` with the
longllada tasks, ``longllada eval --model longllada``, ``longllada rope-sweep`` and ``longllada upload``.

Each test builds a folder whose remote code (an ``auto_map`` pointing at Python files, for the config, the model
and the tokenizer) appends a line to a marker file when it is imported, and shows that no command runs it without
the opt-in (``--trust-remote-code``, ``trust_remote_code=True`` in ``--model_args``) and that each runs it with the
opt-in. Two folders: the shipped causal twin under transformers' own ``llama`` type (transformers has the classes,
so without the opt-in everything loads with them and the command runs), and the same weights under a model type
and tokenizer class that only the folder's code defines (without the opt-in the command stops with one line saying
what to pass, before anything loads). ``upload`` never runs a source's code: it publishes this project's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from longllada.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_LLAMA = REPO / "longllada" / "models" / "tiny-llama-ar"
GRID = json.dumps({"context_lengths": [128], "depths": [50], "num_repeats": 1})

# Each file appends its part's name to MARKER when imported: the proof that the folder's code ran.
CONFIG_CODE = """
import pathlib
with open({marker!r}, "a") as handle:
    handle.write("config\\n")
from transformers import LlamaConfig


class MarkerConfig(LlamaConfig):
    model_type = {model_type!r}
"""
MODEL_CODE = """
import pathlib
with open({marker!r}, "a") as handle:
    handle.write("model\\n")
from transformers import LlamaForCausalLM

from .configuration_marker import MarkerConfig


class MarkerForCausalLM(LlamaForCausalLM):
    config_class = MarkerConfig
"""
TOKENIZER_CODE = """
import pathlib
with open({marker!r}, "a") as handle:
    handle.write("tokenizer\\n")
from transformers import PreTrainedTokenizerFast


class MarkerTokenizer(PreTrainedTokenizerFast):
    pass
"""


def marker_folder(source: Path, folder: Path, marker: Path, model_type: str | None, tokenizer_class: str) -> Path:
    """``source`` copied to ``folder`` with the marker code beside it and ``auto_map`` entries naming it (in
    ``config.json`` for AutoConfig, AutoModel and AutoModelForCausalLM; in ``tokenizer_config.json`` for
    AutoTokenizer). ``model_type``: the config's (None keeps the source's); ``tokenizer_class``: the tokenizer
    config's."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    declared = model_type or config["model_type"]
    for name, code in (("configuration_marker", CONFIG_CODE), ("modeling_marker", MODEL_CODE),
                       ("tokenization_marker", TOKENIZER_CODE)):  # fmt: skip
        (folder / f"{name}.py").write_text(code.format(marker=str(marker), model_type=declared))
    config.update(
        model_type=declared,
        auto_map={"AutoConfig": "configuration_marker.MarkerConfig", "AutoModel": "modeling_marker.MarkerForCausalLM",
                  "AutoModelForCausalLM": "modeling_marker.MarkerForCausalLM"},
    )  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config.update(
        tokenizer_class=tokenizer_class, auto_map={"AutoTokenizer": [None, "tokenization_marker.MarkerTokenizer"]}
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return folder


@pytest.fixture()
def marker(tmp_path) -> Path:
    return tmp_path / "ran.txt"


@pytest.fixture()
def llama_folder(tmp_path, marker) -> Path:
    """transformers' own model type and tokenizer class, with the folder's code named beside them."""
    return marker_folder(TINY_LLAMA, tmp_path / "marker_llama", marker, None, "PreTrainedTokenizerFast")


@pytest.fixture()
def custom_folder(tmp_path, marker) -> Path:
    """A model type and a tokenizer class that only the folder's code defines."""
    return marker_folder(TINY_LLAMA, tmp_path / "marker_custom", marker, "marker_lm", "MarkerTokenizer")


def ran(marker: Path) -> set[str]:
    return set(marker.read_text().split()) if marker.exists() else set()


def one_error_line(capsys, command: str) -> str:
    """The command's error: one line, the last of stderr (lm-eval logs its own lines before)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith(f"longllada {command}: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    return errors[0]


# -- longllada ppl ---------------------------------------------------------------------------------------------

PPL_ARGS = ["--max-length", "64", "--chunk", "32", "--device", "cpu", "--no-progress"]


def test_ppl_runs_no_code_without_the_opt_in(llama_folder, marker, tmp_path):
    assert main(["ppl", "--model", str(llama_folder), *PPL_ARGS, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert ran(marker) == set()  # transformers' own Llama classes and fast tokenizer


def test_ppl_runs_the_code_with_the_opt_in(llama_folder, marker, tmp_path):
    out = tmp_path / "b.jsonl"
    assert main(["ppl", "--model", str(llama_folder), *PPL_ARGS, "--out", str(out), "--trust-remote-code"]) == 0
    assert ran(marker) == {"config", "model", "tokenizer"}
    assert len(out.read_text().splitlines()) == 3  # metadata and two chunks


def test_ppl_refuses_code_it_needs_in_one_line(custom_folder, marker, tmp_path, capsys):
    code = main(["ppl", "--model", str(custom_folder), *PPL_ARGS, "--out", str(tmp_path / "c.jsonl")])
    err = one_error_line(capsys, "ppl")
    assert code == 2 and "pass --trust-remote-code" in err and "configuration_marker.MarkerConfig" in err
    assert "tokenization_marker.MarkerTokenizer" in err and ran(marker) == set()
    assert not (tmp_path / "c.jsonl").exists()
    out = tmp_path / "d.jsonl"
    assert main(["ppl", "--model", str(custom_folder), *PPL_ARGS, "--out", str(out), "--trust-remote-code"]) == 0
    assert ran(marker) == {"config", "model", "tokenizer"}


# -- the lm-eval tasks' tokenizers -----------------------------------------------------------------------------


def test_task_tokenizers_take_the_callers_choice(custom_folder, marker):
    """The tasks learn the model from the metadata lm-eval merges --model_args into, and trust_remote_code with it."""
    from lm_eval_tasks.longllada_longbench import utils as longbench
    from lm_eval_tasks.longllada_niah import utils as niah
    from lm_eval_tasks.longllada_ruler import utils as ruler

    for load in (niah.resolve_tokenizer, ruler.load_tokenizer, longbench.load_tokenizer):
        with pytest.raises(ValueError, match=r"pass trust_remote_code=True in --model_args") as refused:
            load({"pretrained": str(custom_folder)})
        assert "\n" not in str(refused.value) and ran(marker) == set()
    tokenizer = niah.resolve_tokenizer({"pretrained": str(custom_folder), "trust_remote_code": True})
    # (transformers 5's AutoTokenizer reads the model's config first, with the same permission)
    assert type(tokenizer).__name__ == "MarkerTokenizer" and "tokenizer" in ran(marker)
    assert ruler.load_tokenizer({"pretrained": str(custom_folder), "trust_remote_code": "True"}) is not None
    with pytest.raises(ValueError, match=r"trust_remote_code='sure' is not allowed"):
        niah.resolve_tokenizer({"pretrained": str(custom_folder), "trust_remote_code": "sure"})


@pytest.mark.e2e
def test_lm_eval_model_hf_with_the_niah_task(llama_folder, marker, tmp_path):
    """The real lm_eval CLI: the model and the task's tokenizer load with transformers' classes unless
    trust_remote_code=True is in --model_args."""

    def lm_eval(model_args: str, out: Path) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args, "--tasks",
             "longllada_niah", "--include_path", str(REPO / "lm_eval_tasks"), "--metadata", GRID, "--limit", "1",
             "--device", "cpu", "--gen_kwargs", "max_gen_toks=4", "--output_path", str(out)],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]

    lm_eval(f"pretrained={llama_folder},max_length=512", tmp_path / "without")
    assert ran(marker) == set()
    lm_eval(f"pretrained={llama_folder},max_length=512,trust_remote_code=True", tmp_path / "with")
    assert ran(marker) == {"config", "model", "tokenizer"}


# -- longllada eval --model longllada --------------------------------------------------------------------------

EVAL_ARGS = ["--tasks", "longllada_niah", "--include_path", str(REPO / "lm_eval_tasks"), "--metadata", GRID,
             "--limit", "1", "--device", "cpu", "--gen_kwargs", "max_gen_toks=4"]  # fmt: skip


def test_eval_refuses_code_it_needs_in_one_line(custom_folder, marker, tmp_path, capsys):
    code = main(["eval", "--model", "longllada", "--model_args", f"pretrained={custom_folder}", *EVAL_ARGS,
                 "--output_path", str(tmp_path / "out")])  # fmt: skip
    err = one_error_line(capsys, "eval")
    assert code == 2 and "pass trust_remote_code=True in --model_args" in err and ran(marker) == set()


@pytest.mark.e2e
def test_eval_runs_the_code_only_with_the_opt_in(llama_folder, marker, tmp_path):
    args = ["eval", "--model", "longllada", *EVAL_ARGS]
    assert main([*args, "--model_args", f"pretrained={llama_folder}", "--output_path", str(tmp_path / "a")]) == 0
    assert ran(marker) == set()
    model_args = f"pretrained={llama_folder},trust_remote_code=True"
    assert main([*args, "--model_args", model_args, "--output_path", str(tmp_path / "b")]) == 0
    assert ran(marker) == {"config", "model", "tokenizer"}


# -- longllada upload ------------------------------------------------------------------------------------------


def test_upload_never_runs_the_source_code(tiny_model_dir, tmp_path, marker, run_isolated):
    """A source of our family naming code of its own: the build reads its files as data, publishes this project's
    code instead of the source's (its auto_map entries replaced or dropped), and the built repo loads, through
    trust_remote_code in a process without the project, with our code alone."""
    source = marker_folder(tiny_model_dir, tmp_path / "source", marker, None, "PreTrainedTokenizerFast")
    out = tmp_path / "built"
    assert main(["upload", str(source), "--repo-id", "me/tiny", "--dry-run", "--out", str(out)]) == 0
    assert ran(marker) == set() and not list(out.rglob("*marker*"))
    assert "auto_map" not in json.loads((out / "tokenizer_config.json").read_text())
    code = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=True)\n"
        f"print(type(AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True)).__name__)\n"
    )
    assert run_isolated(code).split()[-1] == "LongLLaDAModelLM" and ran(marker) == set()


def test_tokenizer_of_a_built_folder_loads_without_a_prompt_or_a_rope_warning(tiny_model_dir, tmp_path):
    """The tokenizer of a tiny-model or upload folder is a plain fast tokenizer (no auto_map of its own). transformers
    5's AutoTokenizer reads the model's config.json first, which names our remote code: with this package imported
    (the model types registered) or with trust_remote_code=True, nothing asks and nothing warns about the config's
    NTK rope_scaling; the tools load it through longllada.loading, which imports the package."""
    out = tmp_path / "built"
    assert main(["upload", str(tiny_model_dir), "--repo-id", "me/tiny", "--rope-scaling", "ntk:4", "--dry-run",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "auto_map" not in json.loads((out / "tokenizer_config.json").read_text())
    code = (
        "import modeling_longllada\n"
        "from transformers import AutoTokenizer\n"
        "from longllada.loading import load_tokenizer\n"
        f"for folder in ({str(out)!r}, {str(tiny_model_dir)!r}):\n"
        "    print(type(AutoTokenizer.from_pretrained(folder)).__name__, type(load_tokenizer(folder)).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    log = (result.stdout + result.stderr).lower()
    assert "custom code" not in log and "ntk" not in log and "rope" not in log, log


# -- longllada rope-sweep ----------------------------------------------------------------------------------------

SWEEP_ARGS = ["--rope-scaling", "none", "--lengths", "128", "--depths", "0", "--needles", "1", "--gen-tokens", "1",
              "--ppl-max-length", "64", "--chunk", "64", "--device", "cpu", "--no-progress"]  # fmt: skip


def test_rope_sweep_refuses_code_it_needs_in_one_line(custom_folder, marker, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["rope-sweep", "--model", str(custom_folder), "--out", str(out), *SWEEP_ARGS]) == 2
    err = one_error_line(capsys, "rope-sweep")
    assert "--trust-remote-code" in err and ran(marker) == set() and not out.exists()


@pytest.mark.e2e
def test_rope_sweep_runs_the_code_only_with_the_opt_in(llama_folder, marker, tmp_path):
    assert main(["rope-sweep", "--model", str(llama_folder), "--out", str(tmp_path / "a"), *SWEEP_ARGS]) == 0
    assert ran(marker) == set()  # transformers' own llama classes
    out = tmp_path / "b"
    argv = ["rope-sweep", "--model", str(llama_folder), "--out", str(out), *SWEEP_ARGS, "--trust-remote-code"]
    assert main(argv) == 0
    assert {"config", "model", "tokenizer"} <= ran(marker)
    assert json.loads((out / "rope_sweep.json").read_text())["command"][-1] == "--trust-remote-code"
