"""`longllada eval` with `--model_args` given more than once: every setting runs in one process (imports paid
once), a bad setting is refused before any model loads, and a rerun of the same command resumes from the progress
file in `--output_path` (a file there that we did not write is refused and left alone)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest
from test_eval_families import Records
from test_task_data_parallel import run_cli

from longllada.eval_cli import SETTINGS_FILE, run_eval, setting_args, setting_record

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"
GRID = json.dumps({"context_lengths": [256], "depths": [0, 100], "num_repeats": 1})
FIRST, SECOND, THIRD = (f"pretrained={TWIN},cache=prefix", f"pretrained={TWIN},cache=prefix,ntk_factor=4",
                        f"pretrained={TWIN},ntk_factor=4")  # fmt: skip


def eval_args(settings: list[str], out: Path, *extra: str) -> list[str]:
    """`longllada eval` on a 2-needle grid of the shipped twin, one `--model_args` per setting (both forms)."""
    given = [arg for i, s in enumerate(settings) for arg in (["--model_args", s] if i % 2 else [f"--model_args={s}"])]
    return ["longllada", "eval", "--model", "longllada", *given, "--tasks", "longllada_niah", "--metadata", GRID,
            "--batch_size", "2", "--device", "cpu", "--output_path", str(out), *extra]  # fmt: skip


def timings(log: str, event: str) -> list[dict]:
    prefix = "longllada-timing "
    records = [json.loads(line.split(prefix, 1)[1]) for line in log.splitlines() if prefix in line]
    return [record for record in records if record["event"] == event]


def results_model_args(out: Path) -> list[dict]:
    """``config.model_args`` of every results file under ``out``, oldest first."""
    files = sorted(out.rglob("results_*.json"))
    return [json.loads(file.read_text(encoding="utf-8"))["config"]["model_args"] for file in files]


@pytest.fixture
def debug_log(tmp_path, monkeypatch):
    """The CLI's subprocesses log at DEBUG, with a grid cache of their own."""
    monkeypatch.setenv("LONGLLADA_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LONGLLADA_CACHE", str(tmp_path / "cache"))


@pytest.mark.e2e
def test_settings_run_in_one_process_and_a_rerun_resumes(debug_log, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "answers"
    log = run_cli(eval_args([FIRST, SECOND], out, "--use_cache", str(cache)), cwd=tmp_path, data_parallel=False).stderr
    assert f"setting 1/2: {FIRST}" in log and f"setting 2/2: {SECOND}" in log
    inits = timings(log, "init")
    assert len(inits) == 2 and inits[0]["pid"] == inits[1]["pid"]  # one process loaded both
    # nothing of the first setting leaks into the second, nor keeps its model alive
    assert results_model_args(out) == [
        {"pretrained": str(TWIN), "cache": "prefix"},
        {"pretrained": str(TWIN), "cache": "prefix", "ntk_factor": 4},
    ]
    assert "setting 1/2: models alive after it: 0" in log and "setting 2/2: models alive after it: 0" in log
    requests = timings(log, "requests")  # the second setting's prompts: the first one's token ids, none tokenised
    assert [record["tokenised"] for record in requests] == [requests[0]["count"], 0] and requests[0]["count"] > 0
    assert [record["position"] for record in timings(log, "setting")] == [1, 2]
    progress = json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8"))
    assert progress["written_by"] == "longllada eval"
    assert [entry["setting"] for entry in progress["finished"]] == [FIRST, SECOND]
    assert len(list(tmp_path.glob("answers_setting-*_rank0.db"))) == 2  # a request cache per setting
    assert not list(out.glob(".*.tmp"))  # the progress file was written through a temporary file, renamed

    # the same command (where answers are cached does not count) skips both
    log = run_cli(eval_args([FIRST, SECOND], out), cwd=tmp_path, data_parallel=False).stderr
    assert "setting 1/2: finished in an earlier run, skipped" in log
    assert "setting 2/2: finished in an earlier run, skipped" in log
    assert timings(log, "init") == [] and len(results_model_args(out)) == 2

    log = run_cli(eval_args([FIRST, SECOND, THIRD], out), cwd=tmp_path, data_parallel=False).stderr
    assert "setting 1/3: finished in an earlier run, skipped" in log
    assert "setting 2/3: finished in an earlier run, skipped" in log
    assert f"setting 3/3: {THIRD}" in log and len(timings(log, "init")) == 1
    assert results_model_args(out)[2] == {"pretrained": str(TWIN), "ntk_factor": 4}
    progress = json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8"))
    assert [entry["setting"] for entry in progress["finished"]] == [FIRST, SECOND, THIRD]


def run_in_process(argv: list[str]) -> tuple[int, list[str], list[str]]:
    """`run_eval` (the CLI's own entry) on ``argv``: exit code, its error lines, and the timing lines logged."""
    import contextlib
    import io

    records, logger, err = Records(), logging.getLogger("longllada.lm_eval_model"), io.StringIO()
    logger.addHandler(records)
    try:
        with contextlib.redirect_stderr(err):
            code = run_eval(argv)
    finally:
        logger.removeHandler(records)
    errors = [line for line in err.getvalue().splitlines() if line.startswith("longllada eval: error:")]
    return code, errors, [line for line in records.messages if line.startswith("longllada-timing")]


def test_a_bad_second_setting_is_refused_before_any_model_loads(tmp_path):
    out = tmp_path / "out"
    code, errors, timing = run_in_process(eval_args([FIRST, f"pretrained={TWIN},nkt_factor=4"], out)[2:])
    assert code == 2 and len(errors) == 1
    assert "setting 2/2 (--model_args" in errors[0] and "['nkt_factor']" in errors[0]
    assert "did you mean 'ntk_factor'" in errors[0] and "allowed: [" in errors[0]
    assert timing == [] and not out.exists()  # no model built, nothing written

    code, errors, timing = run_in_process(eval_args([FIRST, SECOND, f"cache=prefix,pretrained={TWIN}"], out)[2:])
    assert code == 2 and len(errors) == 1 and "setting 3/3" in errors[0] and "same as setting 1/3" in errors[0]
    assert timing == [] and not out.exists()

    # the RoPE arguments (a sweep's usual axis) are checked now, not after the settings before them have run
    code, errors, timing = run_in_process(eval_args([FIRST, f"pretrained={TWIN},ntk_factor=nan"], out)[2:])
    assert code == 2 and len(errors) == 1 and "setting 2/2" in errors[0] and "ntk_factor" in errors[0]
    code, errors, timing = run_in_process(eval_args([FIRST, "cache=prefix"], out)[2:])
    assert code == 2 and len(errors) == 1 and "setting 2/2" in errors[0] and "no pretrained=" in errors[0]
    assert timing == [] and not out.exists()
    # lm-eval would merge these into one; for any model each --model_args is a whole setting
    hf = eval_args([f"pretrained={TWIN}", "dtype=float32"], out)[2:]
    code, errors, timing = run_in_process([*hf[:1], "hf", *hf[2:]])
    assert code == 2 and len(errors) == 1 and "setting 2/2" in errors[0] and "no pretrained=" in errors[0]
    assert not out.exists()


@pytest.mark.parametrize("foreign", [b'{"finished": []}\n', b"not json \xff\n"])
def test_a_foreign_file_at_the_progress_path_is_refused_and_left_alone(tmp_path, foreign):
    out = tmp_path / "out"
    out.mkdir()
    (out / SETTINGS_FILE).write_bytes(foreign)
    code, errors, timing = run_in_process(eval_args([FIRST, SECOND], out)[2:])
    assert code == 2 and len(errors) == 1 and "is not a progress file of longllada eval" in errors[0]
    assert str(out / SETTINGS_FILE) in errors[0]
    assert (out / SETTINGS_FILE).read_bytes() == foreign and timing == []
    assert sorted(path.name for path in out.iterdir()) == [SETTINGS_FILE]


def test_what_a_finished_setting_is_recorded_with():
    """A setting counts as finished only for the same rest of the command line (tasks, metadata, limit, ...),
    whatever the order of its keys, the verbosity or the request cache."""
    args = argparse.Namespace(model="longllada", tasks=["longllada_niah"], metadata={"depths": [0]}, limit=None,
                              gen_kwargs=None, verbosity="INFO", func=print, command="run")  # fmt: skip
    key = setting_record(args, FIRST, {"pretrained": "x", "cache": "prefix"})["key"]
    assert setting_record(args, "other text", {"cache": "prefix", "pretrained": "x"})["key"] == key
    assert setting_record(argparse.Namespace(**{**vars(args), "verbosity": "DEBUG"}), FIRST,
                          {"pretrained": "x", "cache": "prefix"})["key"] == key  # fmt: skip
    assert setting_record(argparse.Namespace(**{**vars(args), "use_cache": "db"}), FIRST,
                          {"pretrained": "x", "cache": "prefix"})["key"] == key  # fmt: skip
    for change in ({"limit": 4.0}, {"metadata": {"depths": [50]}}, {"tasks": ["longllada_ruler"]},
                   {"gen_kwargs": {"max_gen_toks": 8}}, {"model": "hf"}):  # fmt: skip
        changed = argparse.Namespace(**{**vars(args), **change})
        assert setting_record(changed, FIRST, {"pretrained": "x", "cache": "prefix"})["key"] != key, change
    assert setting_record(args, FIRST, {"pretrained": "x", "cache": "dual"})["key"] != key


def test_our_task_folder_is_recorded_by_name_not_by_where_it_is_installed(tmp_path, monkeypatch):
    """The same setting run from another checkout of the package (another folder of our tasks) resumes, and the
    progress file names no folder of the machine for our tasks; a user's own task folder still counts."""
    import lm_eval_tasks
    from lm_eval_tasks import TASKS_DIR
    from longllada.eval_cli import OWN_TASKS_LABEL, include_paths

    args = argparse.Namespace(model="longllada", tasks=["longllada_niah"], include_path=include_paths(None, TASKS_DIR))
    record = setting_record(args, FIRST, {"pretrained": "x"})
    assert record["run"]["include_path"] == [OWN_TASKS_LABEL] and str(Path(TASKS_DIR).resolve()) not in str(record)
    other_checkout = tmp_path / "checkout" / "lm_eval_tasks"
    other_checkout.mkdir(parents=True)
    with monkeypatch.context() as patch:
        patch.setattr(lm_eval_tasks, "TASKS_DIR", other_checkout)
        elsewhere = argparse.Namespace(**{**vars(args), "include_path": include_paths(None, other_checkout)})
        assert setting_record(elsewhere, FIRST, {"pretrained": "x"})["key"] == record["key"]
    mine = argparse.Namespace(**{**vars(args), "include_path": include_paths(str(tmp_path), TASKS_DIR)})
    assert setting_record(mine, FIRST, {"pretrained": "x"})["run"]["include_path"] == [OWN_TASKS_LABEL, str(tmp_path)]


def test_each_setting_has_a_request_cache_of_its_own(tmp_path):
    """lm-eval's --use_cache keys answers by the request text alone: settings sharing one database would read
    each other's answers. Each gets its own, the same on a rerun (so a killed setting resumes from it)."""
    args = argparse.Namespace(model="longllada", model_args={}, use_cache=str(tmp_path / "answers"), func=print)
    first, second = (setting_args(args, {"pretrained": "x", "ntk_factor": f}) for f in (1, 4))
    assert first.use_cache != second.use_cache and first.use_cache.startswith(args.use_cache + "_setting-")
    assert setting_args(args, {"ntk_factor": 1, "pretrained": "x"}).use_cache == first.use_cache
    assert second.model_args == {"pretrained": "x", "ntk_factor": 4} and args.model_args == {}
    assert first.func is print
    without = setting_args(argparse.Namespace(model_args={}, use_cache=None), {"pretrained": "x"})
    assert without.use_cache is None


@pytest.mark.e2e
def test_two_settings_on_two_processes(debug_log, tmp_path):
    """torchrun with 2 CPU processes (as `accelerate launch` starts them): both run both settings in the same
    order (each builds its model and Accelerator in turn), and both settings' results are written."""
    out = tmp_path / "out"
    result = run_cli(eval_args([FIRST, SECOND], out), cwd=tmp_path, data_parallel=True)
    log = result.stdout + result.stderr
    inits = timings(log, "init")
    assert sorted(record["rank"] for record in inits) == [0, 0, 1, 1]
    assert len({record["pid"] for record in inits}) == 2  # two processes, each loading twice
    assert results_model_args(out) == [
        {"pretrained": str(TWIN), "cache": "prefix"},
        {"pretrained": str(TWIN), "cache": "prefix", "ntk_factor": 4},
    ]
    assert log.count("models alive after it: 0") == 4  # each process freed each model before the next
    loads = timings(log, "load")
    assert sorted(record["rank"] for record in loads) == [0, 0, 1, 1] and {r["world_size"] for r in loads} == {2}
    progress = json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8"))
    assert [entry["setting"] for entry in progress["finished"]] == [FIRST, SECOND]
