"""lm-eval's `--model hf` on an uploaded NTK repo keeps whole every prompt that fits the extended window.

A repo built by `longllada upload --rope-scaling ntk-target:T` advertises T in `max_position_embeddings`; lm-eval
cuts prompts to its window minus the answer's tokens, so without room for the answer a T-token prompt lost its
first tokens (and the needle at depth 0). The config's `n_positions`, which lm-eval reads first, is the window
plus the trained length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modeling_longllada import DreamConfig, LongLLaDAConfig

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"
TARGET = 512  # twice the twin's trained length (256)
GRID = {"context_lengths": [TARGET], "depths": [0, 100], "num_repeats": 1}
ANSWER = 32  # longllada_niah's max_gen_toks


def lm_eval_window(config) -> int:
    """The window lm-eval's HFLM gives a model without ``max_length`` (its own function)."""
    from lm_eval.models.utils import resolve_max_length

    return resolve_max_length(config, None)


@pytest.mark.parametrize("scaling", [None, "ntk-target:1024", "ntk:12", "ntk-per-length"])
def test_lm_eval_keeps_prompts_that_fit_the_llada_window(scaling):
    config = LongLLaDAConfig.from_pretrained(TWIN, rope_scaling=scaling)
    window = max(config.max_position_embeddings, config.rope_supported_length)
    assert lm_eval_window(config) - ANSWER >= window
    assert lm_eval_window(config) == window + config.trained_length
    assert "n_positions" not in config.to_dict()  # derived, never written to config.json


def test_lm_eval_keeps_prompts_that_fit_the_dream_window():
    # Dream's max_position_embeddings is Qwen's 131072; a target past it still gets its room
    for scaling, window in ((None, 131072), ("ntk-target:262144", 262144)):
        config = DreamConfig(trained_length=2048, rope_scaling=scaling)
        assert lm_eval_window(config) == window + 2048


def test_a_stored_n_positions_is_ignored():
    config = LongLLaDAConfig.from_pretrained(TWIN, n_positions=7)
    assert config.n_positions == 256 + 256


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))  # fmt: skip
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def read_samples(out: Path) -> dict[tuple[int, float], dict]:
    (samples_file,) = out.rglob("samples_longllada_niah_*.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines() if line]
    return {(s["doc"]["context_length"], s["doc"]["depth_percent"]): s for s in samples}


def read_cells(out: Path) -> dict[str, float]:
    (results_file,) = out.rglob("results_*.json")
    metrics = json.loads(results_file.read_text(encoding="utf-8"))["results"]["longllada_niah"]
    return {key: value for key, value in metrics.items() if key.startswith("score_len")}


@pytest.mark.e2e
def test_model_hf_scores_the_cells_of_model_longllada_at_the_target_length(tmp_path):
    """The shipped twin, uploaded with its NTK target at twice its trained length, through the real `lm_eval`
    CLI as the repo's users would run it (no max_length), and through `longllada eval --model longllada`."""
    build = tmp_path / "build"
    run(["-m", "longllada", "upload", str(TWIN), "--repo-id", "someone/tiny-ntk", "--rope-scaling",
         f"ntk-target:{TARGET}", "--dry-run", "--out", str(build)], cwd=tmp_path)  # fmt: skip
    assert json.loads((build / "config.json").read_text())["max_position_embeddings"] == TARGET
    grid = ["--tasks", "longllada_niah", "--metadata", json.dumps(GRID), "--device", "cpu", "--log_samples"]
    hf = run(["-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={build},trust_remote_code=True",
              "--include_path", str(REPO / "lm_eval_tasks"), *grid, "--output_path", str(tmp_path / "hf")],
             cwd=tmp_path)  # fmt: skip
    run(["-m", "longllada", "eval", "--model", "longllada", "--model_args", f"pretrained={build}", *grid,
         "--output_path", str(tmp_path / "longllada")], cwd=tmp_path)  # fmt: skip

    assert "Left truncation" not in hf.stdout + hf.stderr
    by_hf, by_longllada = read_samples(tmp_path / "hf"), read_samples(tmp_path / "longllada")
    assert set(by_hf) == set(by_longllada) == {(n, float(d)) for n in GRID["context_lengths"] for d in GRID["depths"]}
    for cell, sample in by_hf.items():
        assert sample["doc"]["prompt_tokens"] > 0.95 * cell[0]  # the prompts fill the cell's length
        assert sample["filtered_resps"] == by_longllada[cell]["filtered_resps"], cell
    assert read_cells(tmp_path / "hf") == read_cells(tmp_path / "longllada")
    # the needle at the very start of a target-length prompt is found: that is what a cut prompt loses
    assert read_cells(tmp_path / "hf")[f"score_len{TARGET}_depth0,none"] == 100
