"""`longllada_niah`: prompts sized with the model's tokenizer, the needle at its depth, the score, the
real lm-eval CLI with `--model hf` and `longllada eval --model longllada`, and `niah-plot` on a real run."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "lm_eval_tasks" / "longllada_niah"
LENGTHS = [256, 512]
DEPTHS = [0, 50, 100]
CLI_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def niah():
    """The task's utils.py, loaded by path as lm-eval loads it."""
    spec = importlib.util.spec_from_file_location("longllada_niah_utils_under_test", TASK_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(tokenizer, doc: dict) -> tuple[int, int, int]:
    """(prompt tokens as the model gets them, haystack tokens before the needle, haystack tokens without the
    needle), measured from the prompt text alone."""
    prompt, needle = doc["input"], doc["needle"]
    assert prompt.count(needle) == 1
    context = prompt[: prompt.index("\n\nQuestion: ")]
    start = context.index(needle)
    before, after = context[:start].rstrip(), context[start + len(needle) :].lstrip()
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    haystack = count(before + (" " if before and after else "") + after)
    return len(tokenizer(prompt)["input_ids"]), count(before), haystack


# -- data -------------------------------------------------------------------------------------------------------
def test_needles_have_the_fixed_form(niah):
    needles = niah.load_needles()
    assert len(needles) >= 20
    assert len({n["subject"] for n in needles}) == len(needles)
    report = niah.default_haystack_path().read_text(encoding="utf-8").lower()
    for needle in needles:
        assert re.fullmatch(r"\S+", needle["keyword"])
        assert needle["needle"] == f"The {needle['subject']} is {needle['keyword']}."
        assert needle["question"] == f"What is the {needle['subject']}?"
        assert not re.search(rf"\b{re.escape(needle['keyword'].lower())}\b", report), needle["keyword"]


@pytest.mark.parametrize("haystack", [None, "noise"])
def test_prompts_measure_the_requested_length_and_depth(niah, tiny_tokenizer, haystack):
    depths = list(range(0, 101, 10))
    docs = niah.build_docs(tiny_tokenizer, context_lengths=LENGTHS, depths=depths, num_repeats=2, haystack=haystack)
    assert len(docs) == len(LENGTHS) * len(depths) * 2
    assert [(d["repeat"], d["context_length"], d["depth_percent"]) for d in docs[: len(LENGTHS) * len(depths)]] == [
        (0, length, depth) for length in LENGTHS for depth in depths
    ]
    for doc in docs:
        length, depth = doc["context_length"], doc["depth_percent"]
        prompt_tokens, position, haystack_tokens = measure(tiny_tokenizer, doc)
        assert 0.99 * length <= prompt_tokens <= length, (length, prompt_tokens)
        assert abs(position - depth / 100 * haystack_tokens) <= 0.01 * length, (length, depth, position)
        assert (doc["prompt_tokens"], doc["needle_token_position"]) == (prompt_tokens, position)
        assert doc["input"].endswith(f"\n\nQuestion: {doc['question']}\nAnswer:")
    if haystack == "noise":
        assert "The grass is green. The sky is blue." in docs[0]["input"]
    # Each repeat of a length has its own needle and haystack; the depths of one repeat share both.
    first, second = docs[0], docs[len(LENGTHS) * len(depths)]
    assert (first["context_length"], first["repeat"], second["repeat"]) == (256, 0, 1)
    assert first["needle"] != second["needle"]


def test_dataset_from_metadata_is_seeded(niah, tiny_model_dir):
    metadata = {"pretrained": str(tiny_model_dir), "trust_remote_code": True, "version": 1.0}
    grid = {"context_lengths": [300], "depths": "0,100", "num_repeats": 1}
    first = niah.niah_dataset(**metadata, **grid)["test"]
    again = niah.niah_dataset(**metadata, **grid)["test"]
    other = niah.niah_dataset(**metadata, **grid, seed=7)["test"]
    assert len(first) == 2 and first["input"] == again["input"] and first["input"] != other["input"]
    assert first["depth_percent"] == [0.0, 100.0]
    assert first["input"][0].startswith(first["needle"][0])  # depth 0: the needle opens the haystack


def test_user_haystack_folder(niah, tiny_tokenizer, tmp_path):
    (tmp_path / "a.txt").write_text("Marmalade ripens in the quiet valley. " * 40, encoding="utf-8")
    (tmp_path / "b.txt").write_text("Copper kettles sing at noon. " * 40, encoding="utf-8")
    docs = niah.build_docs(tiny_tokenizer, context_lengths=[256], depths=[50], num_repeats=1, haystack=tmp_path)
    assert "Marmalade" in docs[0]["input"] or "Copper" in docs[0]["input"]
    assert "aircraft" not in docs[0]["input"]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"context_lengths": [0]}, "context_lengths"),
        ({"context_lengths": "abc"}, "context_lengths"),
        ({"depths": [120]}, "depths"),
        ({"num_repeats": 0}, "num_repeats"),
        ({"haystack": "/no/such/haystack"}, "haystack"),
        ({"context_lengths": [20]}, "shorter than the needle"),
    ],
)
def test_bad_metadata_is_named(niah, tiny_model_dir, metadata, message):
    with pytest.raises(ValueError, match=message):
        niah.niah_dataset(pretrained=str(tiny_model_dir), **metadata)


def test_missing_tokenizer_is_explained(niah):
    with pytest.raises(ValueError, match="pretrained"):
        niah.niah_dataset(context_lengths=[256])


# -- scoring ----------------------------------------------------------------------------------------------------
def test_levenshtein(niah):
    assert niah.levenshtein("kitten", "sitting") == 3
    assert niah.levenshtein("", "abc") == niah.levenshtein("abc", "") == 3
    assert niah.levenshtein("needle", "needle") == 0
    assert niah.levenshtein("flaw", "lawn") == 2


def _edit_distance_table(a: str, b: str) -> int:
    """The textbook dynamic program (Wagner-Fischer), row by row."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def test_levenshtein_matches_the_dynamic_program(niah):
    rng = random.Random(0)
    for alphabet in ("ab", "abcdefgh ", "the quick brown fox"):
        for _ in range(400):
            a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 70)))
            b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 70)))
            assert niah.levenshtein(a, b) == _edit_distance_table(a, b), (a, b)
    answer, needle = "xyz " * 60 + "vermilion", "The colour of the dragon kite is vermilion." * 3  # > 64 bits
    assert niah.levenshtein(answer, needle) == _edit_distance_table(answer, needle)


def test_score_keyword_or_edit_similarity(niah):
    needle, keyword = "The colour of the dragon kite is vermilion.", "vermilion"
    assert niah.needle_score(" VERMILION.", needle, keyword) == 100.0
    assert niah.needle_score("", needle, keyword) == 0.0
    prediction = "The colour of the dragon kite is red."
    expected = 0.2 * 100 * (1 - niah.levenshtein(prediction, needle) / len(needle))
    assert niah.needle_score(f"  {prediction}\n", needle, keyword) == pytest.approx(expected)
    assert 0 < expected < 20


def test_process_results_reports_overall_and_cell(niah):
    doc = {"needle": "The x is y.", "keyword": "y", "context_length": 4000, "depth_percent": 12.5}
    assert niah.process_results(doc, [" y"]) == {"score": 100.0, "score_len4000_depth12p5": 100.0}
    assert niah.cell_metric_name(2000, 30.0) == "score_len2000_depth30"
    # a cell averages the scores of its own documents; the others report None; no document at all reads NaN
    assert niah.mean_of_scored([None, 100.0, None, 50.0]) == 75.0
    assert math.isnan(niah.mean_of_scored([None, None]))


# -- the real lm-eval CLI ---------------------------------------------------------------------------------------
def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME",)}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    assert result.returncode == 0, f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return result


GRID_METADATA = json.dumps({"context_lengths": LENGTHS, "depths": DEPTHS, "num_repeats": 2})
COMMON_ARGS = ["--tasks", "longllada_niah", "--metadata", GRID_METADATA, "--limit", "6", "--log_samples"]
COMMON_ARGS += ["--device", "cpu", "--batch_size", "2"]


@pytest.fixture(scope="module")
def longllada_run(tiny_model_dir, tmp_path_factory) -> Path:
    """`longllada eval --model longllada` on the grid (one pass of 6 cells), with NTK scaling to 512; the model
    named by a path relative to the run's folder, as a user in the folder above it would give it."""
    out = tmp_path_factory.mktemp("niah_longllada")
    model_args = f"pretrained={os.path.relpath(tiny_model_dir, out)},ntk_target=512"
    run_cli(["-m", "longllada", "eval", "--model", "longllada", "--model_args", model_args, *COMMON_ARGS,
             "--output_path", str(out)], cwd=out)  # fmt: skip
    return out


def _read_run(out: Path) -> tuple[dict, list[dict]]:
    (results_file,) = out.rglob("results_*.json")
    (samples_file,) = out.rglob("samples_longllada_niah_*.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines() if line]
    return json.loads(results_file.read_text(encoding="utf-8")), samples


def _check_run(results: dict, samples: list[dict]) -> None:
    metrics = results["results"]["longllada_niah"]
    cells = {(s["doc"]["context_length"], s["doc"]["depth_percent"]) for s in samples}
    assert cells == {(length, float(depth)) for length in LENGTHS for depth in DEPTHS}
    assert 0 <= metrics["score,none"] <= 100
    for length in LENGTHS:
        for depth in DEPTHS:
            (sample,) = [
                s for s in samples if (s["doc"]["context_length"], s["doc"]["depth_percent"]) == (length, depth)
            ]
            assert metrics[f"score_len{length}_depth{depth},none"] == pytest.approx(sample["score"])
            assert sample["doc"]["prompt_tokens"] <= length
            assert "<|mdm_mask|>" not in sample["filtered_resps"][0]


@pytest.mark.e2e
def test_lm_eval_cli_with_model_hf(tiny_model_dir, tmp_path):
    # The tiny model's trained length is 256: hf would cut the 512-token prompts to it without max_length.
    model_args = f"pretrained={tiny_model_dir},trust_remote_code=True,max_length=1024"
    run_cli(["-m", "lm_eval", "--model", "hf", "--model_args", model_args, "--include_path",
             str(REPO / "lm_eval_tasks"), *COMMON_ARGS, "--output_path", str(tmp_path)], cwd=tmp_path)  # fmt: skip
    results, samples = _read_run(tmp_path)
    assert results["config"]["model"] == "hf"
    _check_run(results, samples)
    # the task records the model's folder for plots made elsewhere (lm-eval's hf model records nothing of ours)
    assert results["configs"]["longllada_niah"]["metadata"]["longllada_model_path"] == str(tiny_model_dir.resolve())


@pytest.mark.e2e
def test_longllada_eval_with_model_longllada(longllada_run):
    results, samples = _read_run(longllada_run)
    assert results["config"]["model"] == "longllada"
    assert results["configs"]["longllada_niah"]["generation_kwargs"]["max_gen_toks"] == 32
    _check_run(results, samples)


@pytest.mark.e2e
def test_data_parallel_run_gives_the_single_process_outputs(tiny_model_dir, tmp_path):
    """Two processes (torchrun, as accelerate launch starts them; on CPUs through ACCELERATE_USE_CPU) split the
    requests, and the gathered samples and cells equal a one-process run's."""
    args = ["longllada", "eval", "--model", "longllada", "--model_args", f"pretrained={tiny_model_dir}",
            "--tasks", "longllada_niah", "--metadata", GRID_METADATA, "--limit", "6", "--log_samples",
            "--batch_size", "1"]  # fmt: skip
    single, split = tmp_path / "one", tmp_path / "two"
    run_cli(["-m", *args, "--device", "cpu", "--output_path", str(single)], cwd=tmp_path)
    os.environ["ACCELERATE_USE_CPU"] = "1"  # read by run_cli's copy of the environment
    try:
        result = run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", *args,
                          "--output_path", str(split)], cwd=tmp_path)  # fmt: skip
    finally:
        del os.environ["ACCELERATE_USE_CPU"]
    log = result.stdout + result.stderr
    assert "Building contexts for longllada_niah on rank 1" in log  # the second process took a share
    (one_results, one_samples), (two_results, two_samples) = _read_run(single), _read_run(split)
    by_id = lambda samples: {s["doc_id"]: s["filtered_resps"] for s in samples}  # noqa: E731
    assert len(two_samples) == 6 and by_id(two_samples) == by_id(one_samples)
    cells = lambda results: {k: v for k, v in results["results"]["longllada_niah"].items() if k.startswith("score")}  # noqa: E731
    assert cells(two_results) == pytest.approx(cells(one_results))
    _check_run(two_results, two_samples)


def test_niah_plot_from_a_real_run(longllada_run, tiny_model_dir, tmp_path):
    from matplotlib.image import imread

    from longllada.cli import main
    from longllada.niah_plot import TARGET_MARKER_GID, TRAINED_MARKER_GID, load_grid, model_lengths, plot_heatmap
    from modeling_longllada import LongLLaDAConfig

    out = tmp_path / "heatmap.png"
    assert main(["niah-plot", str(longllada_run), "--out", str(out), "--title", "tiny"]) == 0
    image = imread(out)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400
    grid = load_grid([longllada_run])
    assert (grid.lengths, grid.depths) == (LENGTHS, [float(d) for d in DEPTHS])
    assert grid.counts == [[1, 1], [1, 1], [1, 1]]
    results, _ = _read_run(longllada_run)
    for length in LENGTHS:
        for depth in DEPTHS:
            expected = results["results"]["longllada_niah"][f"score_len{length}_depth{depth},none"]
            assert grid.score(length, depth) == pytest.approx(expected)
    # The results file alone gives the same grid. The run recorded what a plot made in any folder (here the
    # test's, not the run's) needs: the model's resolved path, its trained length and the NTK target.
    (results_file,) = longllada_run.rglob("results_*.json")
    flat = lambda rows: [value for row in rows for value in row]  # noqa: E731
    assert flat(load_grid([results_file]).scores) == pytest.approx(flat(grid.scores))
    config, metadata = results["config"], results["configs"]["longllada_niah"]["metadata"]
    assert not Path(config["model_args"]["pretrained"]).is_absolute()
    assert config["longllada_model_path"] == metadata["longllada_model_path"] == str(tiny_model_dir.resolve())
    assert (config["longllada_trained_length"], config["longllada_context_window"]) == (256, 512)
    assert config["longllada_rope_target"] == 512
    assert metadata["longllada_grid"] == {"context_lengths": LENGTHS, "depths": DEPTHS, "num_repeats": 2}  # built
    setting = grid.setting
    factor = LongLLaDAConfig.from_pretrained(tiny_model_dir, rope_scaling="ntk-target:512").rope_scaling_factor
    assert (setting.model, setting.trained_length, setting.target, setting.factor) == ("tiny-llada", 256, 512, factor)
    assert setting.label() == f"tiny-llada, NTK λ={factor:g} (T=512), 1 needle/cell"  # --limit: 1 of 2 repeats ran
    assert load_grid([results_file]).setting.per_cell == 1  # from lm-eval's count of the documents that ran
    assert model_lengths({"pretrained": str(tiny_model_dir), "ntk_target": 512}) == (256, 512)
    figure = plot_heatmap(grid)
    assert {line.get_gid() for line in figure.axes[0].get_lines()} == {TRAINED_MARKER_GID, TARGET_MARKER_GID}


def test_table_of_a_real_run(longllada_run, tmp_path):
    import csv

    from longllada.cli import main

    assert main(["table", str(longllada_run), "--out", str(tmp_path)]) == 0
    results, _ = _read_run(longllada_run)
    rows = list(csv.DictReader((tmp_path / "niah.csv").open(encoding="utf-8")))
    assert len(rows) == len(LENGTHS) * len(DEPTHS)
    for row in rows:
        metric = f"score_len{row['context_length']}_depth{float(row['depth']):g},none"
        assert float(row["score"]) == pytest.approx(results["results"]["longllada_niah"][metric], abs=1e-4)
        assert row["model"] == "tiny-llada" and row["trained_length"] == "256" and row["target"] == "512"
    assert "tiny-llada, NTK λ=" in (tmp_path / "niah.md").read_text()


def test_heatmap_colours_and_markers(tmp_path):
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.image import imread

    from longllada.niah_plot import TARGET_MARKER_GID, TRAINED_MARKER_GID, NiahGrid, plot_heatmap

    scores = [[100.0, 60.0, 0.0], [80.0, None, 20.0]]
    grid = NiahGrid(lengths=[2000, 4000, 8000], depths=[0.0, 100.0], scores=scores)
    out = tmp_path / "grid.png"
    figure = plot_heatmap(grid, out, trained_length=4000, target_length=9000, dpi=100)
    axes = figure.axes[0]
    assert axes.images[0].get_array().shape == (2, 3)
    markers = {line.get_gid(): line.get_xdata()[0] for line in axes.get_lines()}
    assert markers == {TRAINED_MARKER_GID: 1.5, TARGET_MARKER_GID: 2.5}  # after the columns they cover
    image = imread(out)
    height = image.shape[0]
    cmap = colormaps["RdYlGn"]
    for i, row in enumerate(scores):
        for j, score in enumerate(row):
            x, y = axes.transData.transform((j - 0.3, i + 0.3))  # off the centre, where the value is written
            pixel = image[int(round(height - y)), int(round(x)), :3]
            expected = np.array(cmap(score / 100)[:3]) if score is not None else np.array([0xD9 / 255] * 3)
            assert np.abs(pixel - expected).max() < 0.03, (i, j, pixel, expected)


def test_niah_plot_rejects_missing_results(tmp_path):
    from longllada.cli import main

    assert main(["niah-plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2


def test_tokenizer_fingerprint_names_what_decides_the_ids(niah, tiny_model_dir):
    from transformers import AutoTokenizer

    first, again = (AutoTokenizer.from_pretrained(tiny_model_dir) for _ in range(2))
    assert first is not again and niah.tokenizer_fingerprint(first) == niah.tokenizer_fingerprint(again)
    again.add_tokens(["<a token of its own>"])
    assert niah.tokenizer_fingerprint(first) != niah.tokenizer_fingerprint(again)
    assert niah.tokenizer_fingerprint(object()) is None  # no one-string form: no fingerprint


def test_grid_cache_reads_back_the_same_documents_and_leaves_foreign_files(niah, tiny_model_dir, tmp_path,
                                                                            monkeypatch):  # fmt: skip
    """A sweep's later runs read the grid its first run built; a file the task did not write is never used or
    overwritten; LONGLLADA_CACHE=off keeps nothing."""
    from transformers import AutoTokenizer

    monkeypatch.setenv("LONGLLADA_CACHE", str(tmp_path / "cache"))
    grid = {"context_lengths": [200, 300], "depths": [0, 50], "num_repeats": 2}
    built = niah.niah_dataset(pretrained=str(tiny_model_dir), **grid)["test"].to_list()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    settings = {**grid, "haystack": None, "seed": 42, "depths": [0.0, 50.0]}
    path = niah.grid_cache_file(tokenizer, settings)
    assert path is not None and path.is_file() and path.parent == tmp_path / "cache" / "niah"
    assert niah.read_cached_grid(path) == built
    assert niah.niah_dataset(pretrained=str(tiny_model_dir), **grid)["test"].to_list() == built
    assert niah.grid_cache_file(tokenizer, {**settings, "seed": 7}) != path  # every setting is in the name

    path.write_text('{"not": "ours"}')
    assert niah.read_cached_grid(path) is None
    assert niah.niah_dataset(pretrained=str(tiny_model_dir), **grid)["test"].to_list() == built  # rebuilt
    assert path.read_text() == '{"not": "ours"}'

    monkeypatch.setenv("LONGLLADA_CACHE", "off")
    assert niah.grid_cache_file(tokenizer, settings) is None
