"""Outputs: one writer at a time for each output of every command that writes (a second is refused at once, naming
the first, before it loads anything), and an output path that exists and is not ours refused before any work (ours
only by a marker we can verify)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_eval_settings import FIRST, SECOND, TWIN, eval_args, run_in_process

from longllada import cli
from longllada.eval_cli import SETTINGS_FILE
from longllada.output_lock import OutputBusy, OutputLock
from longllada.perplexity import read_run

pytestmark = pytest.mark.version_independent

REPO = Path(__file__).resolve().parents[1]


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"longllada {command}: error: "), err
    return lines[0]


def environment() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))  # fmt: skip


# -- the lock itself ------------------------------------------------------------------------------------------------


def test_a_lock_is_refused_while_held_and_free_after(tmp_path):
    out = tmp_path / "run.jsonl"
    first = OutputLock(out, "longllada ppl").acquire()
    with pytest.raises(OutputBusy, match=rf"--out {out} is being written by another `longllada ppl` \(process "):
        OutputLock(out, "longllada ppl").acquire()
    first.release()
    assert not (tmp_path / ".run.jsonl.lock").exists()
    with OutputLock(out, "longllada ppl"):
        pass


def test_a_killed_holder_leaves_no_lock(tmp_path):
    """The kernel drops the lock of a process however it ends: a SIGKILLed run leaves its output free."""
    out = tmp_path / "run.jsonl"
    code = (
        "import time\nfrom longllada.output_lock import OutputLock\n"
        f"lock = OutputLock({str(out)!r}, 'longllada ppl').acquire()\nprint('held', flush=True)\ntime.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], env=environment(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusy, match=f"process {holder.pid}"):
            OutputLock(out, "longllada ppl").acquire()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with OutputLock(out, "longllada ppl"):  # the stale lock file is taken over
        pass


# -- ppl --------------------------------------------------------------------------------------------------------------


def test_two_ppl_runs_on_one_out_refuse_the_second(tiny_model_dir, tmp_path, capsys):
    """Two `longllada ppl` on the same --out both exited 0 and the file got duplicate rows; now the second is
    refused while the first runs, and the first's file is whole."""
    out = tmp_path / "run.jsonl"
    args = ["ppl", "--model", str(tiny_model_dir), "--out", str(out), "--device", "cpu", "--no-progress",
            "--max-length", "320", "--chunk", "16", "--mc", "4", "--batch-size", "2"]  # fmt: skip
    first = subprocess.Popen([sys.executable, "-m", "longllada", *args], cwd=tmp_path, env=environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".run.jsonl.lock").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        assert cli.main(args) == 2
        line = one_error_line(capsys, "ppl")
        assert f"is being written by another `longllada ppl` (process {first.pid})" in line and "another --out" in line
        stdout, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    rows = read_run(out).rows
    assert [row["index"] for row in rows] == list(range(20))  # every chunk once
    assert not (tmp_path / ".run.jsonl.lock").exists()
    assert cli.main(args) == 0  # the finished run: resumed, nothing to add
    assert len(read_run(out).rows) == 20


# -- eval -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "under-a-file", "model-folder-is-a-file"])
def test_eval_output_path_that_is_not_a_folder_is_refused_before_any_work(tmp_path, where):
    """An existing plain file as --output_path: the first setting ran, its results were lost ("Could not save
    results aggregated"), then a FileExistsError traceback. Now: one line, before any model loads."""
    notes = tmp_path / "notes"
    notes.write_text("my notes")
    out = {"file": notes, "under-a-file": notes / "results", "model-folder-is-a-file": tmp_path / "results"}[where]
    if where == "model-folder-is-a-file":
        out.mkdir()
        (out / str(TWIN).replace("/", "__")).write_text("not a folder")
    for settings in ([FIRST], [FIRST, SECOND]):
        code, errors, timing = run_in_process(eval_args(settings, out)[2:])
        assert code == 2 and len(errors) == 1, errors
        assert errors[0].startswith(f"longllada eval: error: --output_path {out}") and "allowed: a folder" in errors[0]
        assert timing == []  # no model was built
    assert notes.read_text() == "my notes"


def test_eval_progress_file_has_one_writer(tmp_path):
    out = tmp_path / "out"
    with OutputLock(out / SETTINGS_FILE, "longllada eval", "--output_path"):  # a sweep writing it right now
        code, errors, timing = run_in_process(eval_args([FIRST, SECOND], out)[2:])
    assert code == 2 and len(errors) == 1 and "is being written by another `longllada eval`" in errors[0]
    assert timing == [] and not (out / SETTINGS_FILE).exists()


# -- tiny-model, upload, demo, train-tiny -----------------------------------------------------------------------------


def test_tiny_model_has_one_writer(tmp_path, capsys):
    out = tmp_path / "tiny"
    with OutputLock(out, "longllada tiny-model", "OUT_DIR"):
        assert cli.main(["tiny-model", str(out)]) == 2
        assert "is being written by another `longllada tiny-model`" in one_error_line(capsys, "tiny-model")
    assert not out.exists()


def test_demo_has_one_writer_and_leaves_foreign_files(tmp_path, capsys):
    out = tmp_path / "demo"
    with OutputLock(out, "longllada demo"):
        assert cli.main(["demo", "--out", str(out)]) == 2
        assert "is being written by another `longllada demo`" in one_error_line(capsys, "demo")
    out.mkdir()
    (out / "report.md").write_text("mine")
    assert cli.main(["demo", "--out", str(out)]) == 2
    assert "holds report.md, not written by `longllada demo`" in one_error_line(capsys, "demo")


TRAIN_ARGS = ["--d-model", "32", "--layers", "1", "--heads", "2", "--mlp", "64", "--vocab-size", "512",
              "--train-length", "96", "--steps", "1", "--batch-size", "2", "--warmup", "1", "--no-eval"]  # fmt: skip


@pytest.mark.parametrize(
    ("place", "content", "message"),
    [
        ("models/tiny-llada-diffusion/config.json", '{"mine": true}', "holds files that `longllada train-tiny` did "
                                                                     "not write (no .longllada_twin.json"),
        ("models/tiny-llada-diffusion", "a file", "holds files that `longllada train-tiny` did not write"),
        ("logs/diffusion.jsonl", "my lab notes\n", "is not a training log of the diffusion twin"),
        ("logs/diffusion_summary.json", '{"twin": "ar", "settings": {}}', "is not a summary of the diffusion twin"),
        ("models", "a file", "--out-dir {tmp}/models is a file"),
    ],
    ids=["foreign-twin-folder", "file-for-folder", "foreign-log", "other-twin-summary", "out-dir-file"],
)  # fmt: skip
def test_train_tiny_refuses_outputs_it_did_not_write_before_training(tmp_path, capsys, place, content, message):
    target = tmp_path / place
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    argv = ["train-tiny", "--twin", "diffusion", "--out-dir", str(tmp_path / "models"), "--log-dir",
            str(tmp_path / "logs"), *TRAIN_ARGS]  # fmt: skip
    assert cli.main(argv) == 2
    assert message.format(tmp=tmp_path) in one_error_line(capsys, "train-tiny")
    assert target.read_text() == content  # left untouched, nothing trained


def test_train_tiny_has_one_writer_and_rewrites_its_own_folders(tmp_path, capsys):
    argv = ["train-tiny", "--twin", "diffusion", "--out-dir", str(tmp_path / "models"), "--log-dir",
            str(tmp_path / "logs"), *TRAIN_ARGS]  # fmt: skip
    with OutputLock(tmp_path / "logs", "longllada train-tiny", "--log-dir"):
        assert cli.main(argv) == 2
        assert "is being written by another `longllada train-tiny`" in one_error_line(capsys, "train-tiny")
    assert cli.main(argv) == 0
    folder = tmp_path / "models" / "tiny-llada-diffusion"
    marker = json.loads((folder / ".longllada_twin.json").read_text())
    assert marker["written_by"] == "longllada train-tiny" and "model.safetensors" in marker["files"]
    assert cli.main(argv) == 0  # its own folder and logs: written again
    for shipped, twin in (("tiny-llada-diffusion", "diffusion"), ("tiny-llama-ar", "ar")):  # retraining allowed
        assert (
            json.loads((REPO / "longllada" / "models" / shipped / ".longllada_twin.json").read_text())["twin"] == twin
        )
