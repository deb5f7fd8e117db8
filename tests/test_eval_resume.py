"""An lm-eval needle run killed at random points resumes through lm-eval's request cache to the same answers.

`longllada eval ... --use_cache DB` stores every answer in an SQLite file as it is produced; a run killed with
SIGKILL (while loading, between answers, inside a write) and started again answers only what is missing. The
resumed run's per-sample answers and cells must equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"
GRID = {"context_lengths": [256, 512], "depths": [0, 50, 100], "num_repeats": 2}  # 12 answers


def eval_argv(out: Path, cache: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "longllada", "eval", "--model", "longllada",
            "--model_args", f"pretrained={TWIN},dtype=float32", "--tasks", "longllada_niah",
            "--include_path", str(REPO / "lm_eval_tasks"), "--metadata", json.dumps(GRID), "--batch_size", "1",
            "--log_samples", "--output_path", str(out)]  # fmt: skip
    return argv + (["--use_cache", str(cache)] if cache is not None else [])


def environment() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))  # fmt: skip


def cached_answers(cache: Path) -> int:
    """Answers in lm-eval's cache (it adds ``_rank0.db`` to the path given)."""
    files = list(cache.parent.glob(cache.name + "*.db"))
    if not files:
        return 0
    try:
        with sqlite3.connect(f"file:{files[0]}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM unnamed").fetchone()[0]
    except sqlite3.Error:  # the table is not created yet, or a write holds the lock
        return 0


def answers(out: Path) -> dict[int, list]:
    (samples,) = out.rglob("samples_longllada_niah_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return {row["doc_id"]: row["filtered_resps"] for row in rows}


def cells(out: Path) -> dict:
    (results,) = out.rglob("results_*.json")
    return json.loads(results.read_text())["results"]["longllada_niah"]


@pytest.mark.e2e
def test_niah_run_killed_at_random_points_resumes_to_the_same_answers(tmp_path):
    whole = tmp_path / "whole"
    done = subprocess.run(eval_argv(whole, None), cwd=tmp_path, env=environment(), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    expected = answers(whole)
    assert len(expected) == 12

    cache, resumed = tmp_path / "cache" / "niah", tmp_path / "resumed"
    cache.parent.mkdir()
    rng, kills = random.Random(3), []
    for _ in range(2):
        target = rng.randint(cached_answers(cache), 10)  # kill once this many answers are cached ...
        process = subprocess.Popen(eval_argv(resumed, cache), cwd=tmp_path, env=environment(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 300
        try:
            while cached_answers(cache) < target and process.poll() is None:
                assert time.monotonic() < deadline, "the eval subprocess made no progress in time"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))  # ... and a little later, inside an answer or a write
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
        kills.append(cached_answers(cache))
    assert kills[-1] < 12, f"the runs were not interrupted: {kills}"
    done = subprocess.run(eval_argv(resumed, cache), cwd=tmp_path, env=environment(), capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert answers(resumed) == expected, kills
    assert cells(resumed) == cells(whole)
