"""Nothing lost, nothing silently wrong: `ppl` never writes over a file it did not write, refuses to resume over
other weights, and every bad input of `ppl`, `ppl-plot` and `niah-plot` is one `longllada CMD: error:` line
with exit code 2, found before any model is loaded."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from longllada import cli
from longllada.perplexity import read_run

pytestmark = pytest.mark.version_independent

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def unloadable_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with its weights cut in half: loading it fails, so an error about anything else proves
    that the check ran before loading."""
    folder = tmp_path_factory.mktemp("unloadable") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return folder


def ppl_args(model: Path | str, out: Path, *extra: str) -> list[str]:
    return ["ppl", "--model", str(model), "--out", str(out), "--device", "cpu", "--no-progress", *extra]


SMALL_RUN = ["--max-length", "40", "--chunk", "20", "--mc", "2", "--batch-size", "2"]


def one_error_line(capsys, command: str) -> str:
    """The one stderr line of a failed command (asserts there is exactly one, in the expected form)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"longllada {command}: error: "), err
    return lines[0]


# -- files that are not ours -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"A report without a newline, as the shipped gov_report text given as --out by mistake",
        b"first line of someone's notes\nsecond line\n",
        b'{"record": "meta", "format": 2, "model": "cut while being writ',
    ],
    ids=["no-newline", "text", "partial-metadata"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_ppl_never_writes_over_a_file_it_did_not_write(unloadable_model, tmp_path, capsys, content, overwrite):
    out = tmp_path / "report.txt"
    out.write_bytes(content)
    extra = ["--overwrite"] if overwrite else []
    assert cli.main(ppl_args(unloadable_model, out, *SMALL_RUN, *extra)) == 2
    assert "was not written by `longllada ppl`" in one_error_line(capsys, "ppl")
    assert out.read_bytes() == content


def test_ppl_out_that_cannot_be_written_is_refused_before_loading(unloadable_model, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "plain").write_text("x")
    cases = {
        tmp_path / "folder": "is a folder",
        tmp_path / "plain" / "run.jsonl": "is a file, not a folder",
        Path("/proc/longllada-run.jsonl"): "cannot write in /proc",
    }
    for out, message in cases.items():
        assert cli.main(ppl_args(unloadable_model, out, *SMALL_RUN)) == 2
        assert message in one_error_line(capsys, "ppl"), out
    assert (tmp_path / "plain").read_text() == "x"


def test_ppl_resume_refuses_other_weights(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "run.jsonl"
    assert cli.main(ppl_args(model, out, *SMALL_RUN)) == 0
    meta = read_run(out).meta
    assert meta["fingerprint"]["revision"] is None and "model.safetensors" in meta["fingerprint"]["files"]
    # The run is cut after its first chunk; then the weights at the same path change.
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2]))
    from modeling_longllada import LongLLaDAModelLM

    changed = LongLLaDAModelLM.from_pretrained(model)
    with torch.no_grad():
        changed.model.transformer.wte.weight.mul_(1.5)
    changed.save_pretrained(model)
    capsys.readouterr()
    assert cli.main(ppl_args(model, out, *SMALL_RUN)) == 2
    line = one_error_line(capsys, "ppl")
    assert "holds a run of other weights (" in line and "model.safetensors: mtime_ns, sha256_sampled changed" in line
    assert "--overwrite" in line
    assert out.read_bytes() == b"".join(lines[:2])  # nothing appended
    assert cli.main(ppl_args(model, out, *SMALL_RUN, "--overwrite")) == 0
    assert len(read_run(out).rows) == 2


def test_ppl_resume_of_a_hand_edited_file_is_refused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    assert cli.main(ppl_args(tiny_model_dir, out, *SMALL_RUN)) == 0
    lines = out.read_text().splitlines(keepends=True)
    row = json.loads(lines[1])
    del row["ppl"]
    out.write_text(lines[0] + json.dumps(row) + "\n" + lines[2])
    capsys.readouterr()
    assert cli.main(ppl_args(tiny_model_dir, out, *SMALL_RUN)) == 2
    assert "line 2 (chunk 0) has no number 'ppl'" in one_error_line(capsys, "ppl")


# -- bad arguments ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--chunk", "nan"], "--chunk must be an integer >= 1 and <= 4294967296, got nan"),
        (["--chunk", "-3"], "--chunk must be an integer >= 1 and <= 4294967296, got -3"),
        (["--mc", "inf"], "--mc must be an integer >= 1 and <= 4294967296, got inf"),
        (["--max-length", "1e3"], "--max-length must be an integer >= 1 and <= 4294967296, got 1e3"),
        (["--seed", "-1"], "--seed must be an integer >= 0 and <= 4294967295, got -1"),
        (["--window", "1"], "--window must be an integer >= 2 and <= 4294967296, got 1"),
        (["--device", "banana"], "--device 'banana' is not a device"),
        (["--device", "cuda:7"], "--device 'cuda:7'"),
        (["--rope-scaling", "ntk:inf"], "--rope-scaling ntk:FACTOR=inf is not allowed; allowed: a finite number >= 1"),
        (
            ["--rope-scaling", "ntk:1e305"],
            "--rope-scaling ntk:FACTOR=1e+305 is not allowed; allowed: a finite number >= 1 and <= 1e+12",
        ),
        (
            ["--rope-scaling", '{"type": "ntk", "factor": 2, "rope_theta": 1e6}'],
            "rope_theta=1000000.0 is not allowed: it is the model's own `rope_theta`",
        ),
    ],
)
def test_ppl_bad_arguments_before_loading(unloadable_model, tmp_path, capsys, extra, message):
    assert cli.main(ppl_args(unloadable_model, tmp_path / "run.jsonl", *extra)) == 2
    assert message in one_error_line(capsys, "ppl")
    assert not (tmp_path / "run.jsonl").exists()


@pytest.mark.parametrize(
    "model, message",
    [
        ("{tmp}/no/such/model", "no such folder, and not a Hub model id"),
        ("./missing-model", "no such folder, and not a Hub model id"),
        ("{tmp}", "the folder has no config.json"),
    ],
)
def test_ppl_missing_model_is_one_line(tmp_path, capsys, model, message):
    assert cli.main(ppl_args(model.format(tmp=tmp_path), tmp_path / "run.jsonl")) == 2
    assert message in one_error_line(capsys, "ppl")


def test_ppl_plot_row_without_ppl(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run.jsonl"
    assert cli.main(ppl_args(tiny_model_dir, run, *SMALL_RUN)) == 0
    lines = run.read_text().splitlines(keepends=True)
    row = json.loads(lines[2])
    del row["ppl"]
    run.write_text("".join(lines[:2]) + json.dumps(row) + "\n")
    capsys.readouterr()
    assert cli.main(["ppl-plot", str(run), "--out", str(tmp_path / "curve.png")]) == 2
    assert "line 3 (chunk 1) has no number 'ppl'" in one_error_line(capsys, "ppl-plot")
    assert cli.main(["ppl-plot", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "c.png")]) == 2
    assert "no such results file" in one_error_line(capsys, "ppl-plot")


@pytest.mark.parametrize("value", ["nan", "-5", "0", "inf", "3.5"])
def test_niah_plot_lengths_are_positive_integers(tmp_path, capsys, value):
    assert cli.main(["niah-plot", str(tmp_path), "--out", str(tmp_path / "h.png"), "--trained-length", value]) == 2
    message = f"--trained-length must be an integer >= 1 and <= 4294967296, got {value}"
    assert message in one_error_line(capsys, "niah-plot")


def test_missing_required_argument_is_one_line(capsys):
    assert cli.main(["ppl", "--out", "x.jsonl"]) == 2
    assert "--model" in one_error_line(capsys, "ppl")


# -- fault injection -------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("family", ["llada", "dream"])
def test_ppl_killed_at_random_points_resumes_to_the_same_file(family, request, tmp_path):
    """SIGKILL at seeded random points (while loading, between chunks, in the middle of a write), four times
    over, then one resume: the file equals an uninterrupted run's, byte for byte. Dream's shifted logits too."""
    tiny_model_dir = request.getfixturevalue("tiny_model_dir" if family == "llada" else "tiny_dream_dir")
    args = ["--max-length", "320", "--chunk", "16", "--mc", "2", "--batch-size", "2", "--seed", "5"]
    whole, killed = tmp_path / "whole.jsonl", tmp_path / "killed.jsonl"
    assert cli.main(ppl_args(tiny_model_dir, whole, *args)) == 0
    n_lines = whole.read_bytes().count(b"\n")
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    rng = random.Random(15)
    kills = []
    for _ in range(4):
        lines_before = killed.read_bytes().count(b"\n") if killed.exists() else 0
        target = rng.randint(lines_before, n_lines - 1)  # kill once the file holds this many lines ...
        jitter = rng.uniform(0.0, 0.05)  # ... and a little later, to land inside a step or a write
        process = subprocess.Popen(
            [sys.executable, "-m", "longllada", *ppl_args(tiny_model_dir, killed, *args)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        try:
            while (killed.read_bytes().count(b"\n") if killed.exists() else 0) < target:
                if process.poll() is not None:
                    break
                assert time.monotonic() < deadline, "the ppl subprocess made no progress in time"
                time.sleep(0.002)
            time.sleep(jitter)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
            stderr = process.stderr.read().decode()
            process.stderr.close()
        assert process.returncode in (0, -signal.SIGKILL), stderr[-2000:]
        kills.append(killed.read_bytes().count(b"\n") if killed.exists() else 0)
    assert cli.main(ppl_args(tiny_model_dir, killed, *args)) == 0
    assert killed.read_bytes() == whole.read_bytes(), kills
    assert len(read_run(killed).rows) == 20


# -- figures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tiny_model_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("small_run") / "run.jsonl"
    assert cli.main(ppl_args(tiny_model_dir, run, *SMALL_RUN)) == 0
    return run


def test_ppl_plot_writes_only_its_own_figures(small_run, tmp_path, capsys):
    figure = tmp_path / "curve.png"
    assert cli.main(["ppl-plot", str(small_run), "--out", str(figure)]) == 0
    assert cli.main(["ppl-plot", str(small_run), "--out", str(figure), "--log"]) == 0  # ours: replaced
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n someone else's picture")
    (tmp_path / "folder.png").mkdir()
    cases = {
        photo: "exists and was not written by `longllada ppl-plot`",
        tmp_path / "folder.png": "is a folder",
        tmp_path / "curve.jpg": "format 'jpg' is not supported; allowed: png, pdf, svg, ps, eps",
        Path("/proc/curve.png"): "cannot write in /proc",
    }
    capsys.readouterr()
    for out, message in cases.items():
        assert cli.main(["ppl-plot", str(small_run), "--out", str(out)]) == 2
        assert message in one_error_line(capsys, "ppl-plot"), out
    assert photo.read_bytes() == b"\x89PNG\r\n\x1a\n someone else's picture"


@pytest.mark.parametrize("suffix", ["pdf", "svg"])
def test_ppl_plot_other_formats_are_recognised_as_ours(small_run, tmp_path, suffix):
    figure = tmp_path / f"curve.{suffix}"
    for _ in range(2):
        assert cli.main(["ppl-plot", str(small_run), "--out", str(figure)]) == 0


def test_niah_plot_checks_out_before_reading_the_run(tmp_path, capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("not a figure")
    # the results folder is empty: the --out error comes first
    assert cli.main(["niah-plot", str(tmp_path), "--out", str(notes)]) == 2
    assert "was not written by `longllada niah-plot`" in one_error_line(capsys, "niah-plot")
    assert notes.read_text() == "not a figure"


def test_ppl_records_and_checks_the_hub_revision(tiny_model_dir, tmp_path):
    """A Hub id resolved from the Hugging Face cache records the snapshot's commit; after the id moves to another
    commit (same weights), a resume is refused, naming both revisions."""
    cache = tmp_path / "hub"
    repo = cache / "models--longllada-tests--tiny"
    first, second = "a" * 40, "b" * 40
    for commit in (first, second):
        shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    env = dict(
        os.environ,
        HF_HUB_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    out = tmp_path / "run.jsonl"

    def ppl(commit: str) -> subprocess.CompletedProcess:
        (repo / "refs" / "main").write_text(commit)
        return subprocess.run(
            [sys.executable, "-m", "longllada", *ppl_args("longllada-tests/tiny", out, *SMALL_RUN)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    result = ppl(first)
    assert result.returncode == 0, result.stderr
    assert read_run(out).meta["fingerprint"]["revision"] == first
    out.write_bytes(b"".join(out.read_bytes().splitlines(keepends=True)[:2]))  # cut after the first chunk
    result = ppl(second)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert line.startswith("longllada ppl: error: ") and f"revision: file has '{first}', this model '{second}'" in line


def test_a_process_group_left_open_is_closed_when_the_command_ends(tmp_path, capsys):
    """A data-parallel run leaves accelerate's process group open; the command closes it before the interpreter
    exits, where its threads could otherwise abort the process after the results are written."""
    import torch.distributed as dist

    from longllada.cli import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    assert main(["tiny-model", "--no-such-option"]) == 2
    assert not dist.is_initialized()
    assert "error: unrecognized arguments: --no-such-option" in capsys.readouterr().err
