"""RULER and LongBench under data parallelism (two CPU processes through torchrun, as `accelerate launch` starts
them) give a one-process run's samples and metrics; a misspelt `--metadata` key is an error naming the known
keys."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lm_eval_tasks.metadata_keys import check_metadata_keys

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "lm_eval_tasks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CLI_TIMEOUT_S = 600
RULER_TASK, LONGBENCH_TASK = "longllada_ruler_niah_single_1", "longllada_longbench_hotpotqa"
LENGTHS = [512, 1024]

pytestmark = pytest.mark.e2e


def load_by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ruler():
    return load_by_path("longllada_ruler_utils_dp", TASKS_DIR / "longllada_ruler" / "utils.py")


@pytest.fixture(scope="module")
def longbench():
    return load_by_path("longllada_longbench_utils_dp", TASKS_DIR / "longllada_longbench" / "utils.py")


# -- metadata keys ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, meant",
    [("max_seq_lenghts", "max_seq_lengths"), ("num_sample", "num_samples"), ("context_lenghts", "context_lengths")],
)
def test_ruler_misspelt_metadata_key_is_named(ruler, key, meant):
    with pytest.raises(ValueError, match=rf"--metadata key '{key}' is unknown \(did you mean '{meant}'\?\)") as info:
        ruler.parse_options({key: [512]})
    assert "max_seq_lengths, num_samples, seed, essays_path, squad_path, hotpotqa_path" in str(info.value)


@pytest.mark.parametrize("key, meant", [("data_dirs", "data_dir"), ("max_lenght", "max_length")])
def test_longbench_misspelt_metadata_key_is_named(longbench, key, meant):
    with pytest.raises(ValueError, match=rf"--metadata key '{key}' is unknown \(did you mean '{meant}'\?\)") as info:
        longbench.load_longbench(**{key: 1, "pretrained": "x"})
    assert "max_length, data_dir" in str(info.value)


def test_model_args_and_other_folders_keys_pass(ruler, longbench):
    # lm-eval merges --model_args into the metadata, and one --metadata goes to every task of a run.
    merged = {
        "pretrained": "x", "trust_remote_code": True, "device": "cpu", "dtype": "bfloat16", "ntk_target": 512,
        "steps": 32, "block_length": 32, "max_length": 4096, "tokenizer_mode": "auto", "version": 1.0,
        "data_dir": "d", "context_lengths": [512], "depths": [0], "max_seq_lengths": [512], "num_samples": 1,
    }  # fmt: skip
    assert ruler.parse_options(merged).seq_lengths == (512,)
    for folder in ("longllada_longbench", "longllada_niah"):
        check_metadata_keys(merged, folder)


def test_niah_misspelt_metadata_key_is_named():
    from lm_eval_tasks.longllada_niah.utils import niah_dataset

    with pytest.raises(ValueError, match=r"'context_lenghts' is unknown \(did you mean 'context_lengths'\?\)"):
        niah_dataset(context_lenghts=[512], pretrained="x")


def test_mean_of_scored_skips_other_cells(ruler):
    assert ruler.mean_of_scored([1.0, None, 0.0, None]) == 0.5
    assert math.isnan(ruler.mean_of_scored([None, None]))


# -- two processes --------------------------------------------------------------------------------------------------


def run_cli(args: list[str], cwd: Path, data_parallel: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME",)}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    if data_parallel:
        env["ACCELERATE_USE_CPU"] = "1"
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    else:
        launcher = []
    result = subprocess.run(
        [sys.executable, *launcher, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return result


def read_run(out: Path) -> tuple[dict, dict[str, list[dict]]]:
    (results_file,) = out.rglob("results_*.json")
    samples = {}
    for file in out.rglob("samples_*.jsonl"):
        task = file.name[len("samples_") :].rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
    return json.loads(results_file.read_text(encoding="utf-8")), samples


def by_id(samples: list[dict]) -> dict:
    return {s["doc_id"]: s["filtered_resps"] for s in samples}


def metrics(results: dict, task: str) -> dict:
    return {k: v for k, v in results["results"][task].items() if "," in k}


def test_ruler_and_longbench_data_parallel_give_the_single_process_outputs(tiny_model_dir, tmp_path):
    """The reproduction: two processes, RULER at two lengths with one sample each, so each process holds the
    documents of one length only (before, lm-eval's gathering failed with KeyError: ('512', 'none'))."""
    metadata = {
        "max_seq_lengths": LENGTHS,
        "num_samples": 1,
        "data_dir": str(FIXTURES / "longbench"),
        "max_length": 320,
    }
    args = ["longllada", "eval", "--model", "longllada", "--model_args", f"pretrained={tiny_model_dir}",
            "--tasks", f"{RULER_TASK},{LONGBENCH_TASK}", "--metadata", json.dumps(metadata),
            "--gen_kwargs", "max_gen_toks=8", "--log_samples", "--batch_size", "1"]  # fmt: skip
    single, split = tmp_path / "one", tmp_path / "two"
    run_cli([*args, "--device", "cpu", "--output_path", str(single)], tmp_path, data_parallel=False)
    result = run_cli([*args, "--output_path", str(split)], tmp_path, data_parallel=True)
    assert f"Building contexts for {RULER_TASK} on rank 1" in result.stdout + result.stderr
    (one_results, one_samples), (two_results, two_samples) = read_run(single), read_run(split)
    for task in (RULER_TASK, LONGBENCH_TASK):
        assert len(two_samples[task]) == len(one_samples[task]) == 2
        assert by_id(two_samples[task]) == by_id(one_samples[task])
        assert metrics(two_results, task) == pytest.approx(metrics(one_results, task), nan_ok=True)
    ruler_metrics = two_results["results"][RULER_TASK]
    assert {f"{length},none" for length in LENGTHS} <= ruler_metrics.keys()
    for length in LENGTHS:
        (sample,) = [s for s in two_samples[RULER_TASK] if s["doc"]["max_length"] == length]
        assert ruler_metrics[f"{length},none"] == pytest.approx(sample[str(length)])
        assert [sample[str(other)] for other in LENGTHS if other != length] == [None]
    assert 0.0 <= two_results["results"][LONGBENCH_TASK]["score,none"] <= 1.0
