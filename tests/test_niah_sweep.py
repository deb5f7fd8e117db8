"""benchmarks/niah_sweep.py end to end on CPU with the shipped tiny twin: two real `longllada eval` runs of
`longllada_niah` (batch 1 and batch 2), their timings read from the logs, and their answers compared token by
token (float32 on CPU: identical)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def test_sweep_script_on_a_tiny_grid(tmp_path):
    out = tmp_path / "sweep.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable, str(REPO / "benchmarks" / "niah_sweep.py"), "--tiny", "--cpu", "--lengths", "256",
        "--depths", "0,100", "--repeats", "8", "--modes", "prefix", "--batch-sizes", "1,2",
        "--model-args", "steps=8", "--gen-kwargs", "max_gen_toks=8", "--work-dir", str(tmp_path / "work"),
        "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["benchmark"] == "niah_sweep"
    assert [run["name"] for run in results["runs"]] == ["prefix_p1_b1", "prefix_p1_b2"]
    for run in results["runs"]:
        assert run["returncode"] == 0 and "cache=prefix" in run["command"] and "--batch_size" in run["command"]
        assert len(run["samples"]) == 16 and all(len(s["output_ids"]) == 8 for s in run["samples"])
        assert run["per_length"]["256"]["answers"] == 16
        for field in ("startup_s", "load_s", "grid_s", "request_tokenisation_s", "generation_s", "fixed_s"):
            assert run[field] >= 0, field
        assert run["wall_s"] >= run["load_s"] + run["generation_s"]
        assert run["projection"] is None  # 256 tokens is not a paper length
    batched = results["runs"][1]
    # Two prompts a batch: documents i and i + 8 (a batch holds documents whose ids agree modulo 8)
    assert batched["batches"] == 8 and {record[2] for record in batched["batch_records"]} == {2}
    (comparison,) = results["comparisons"]
    assert comparison == {
        "run": "prefix_p1_b2", "reference": "prefix_p1_b1", "answers": 16, "identical_text": 16,
        "identical_ids": 16, "compared_ids": 16, "token_agreement": 1.0,
    }  # fmt: skip
    # A file this script did not write is never overwritten.
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    refused = subprocess.run(command[:-1] + [str(foreign)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "was not written by this script" in refused.stderr
    assert foreign.read_text() == "{}"
