"""`longllada eval ...`: lm-evaluation-harness's own command line with ``--model longllada`` registered and this
project's tasks (``longllada_niah``, ``longllada_ruler``, ``longllada_longbench``) on the include path.

``--model longllada`` takes every family of the LongLLaDA paper: LLaDA and Dream-v0 (ours or official checkpoints,
run by this package's classes and diffusion sampler) and any transformers causal LM (run as lm-eval's ``hf`` model
does), each with the same RoPE arguments (``ntk_factor``, ``ntk_target``, ``rope_scaling``); see
``longllada.lm_eval_model``.

Everything after ``eval`` is lm-eval's (``run``, ``ls``, ``validate``, or the legacy form without a
sub-command); our task folder is put before any ``--include_path`` the user gives, so the user's tasks win on
a name clash. A path list in lm-eval's documented ``a:b`` form is split (lm-eval itself takes it as one path).

Data-parallel runs: ``accelerate launch -m longllada.eval_cli --model longllada ...``.

Several settings in one process: ``--model_args`` given more than once (``--model_args A --model_args B ...``)
runs lm-eval once per setting, in the order given, with everything else of the command line the same. Importing
torch, transformers and lm-eval costs 13-15 s of every process's start, paid here once for a whole sweep (the
LongLLaDA paper's needle grids: checkpoints x NTK factors x cache modes). Before any model loads, every setting is
checked (``--model longllada``: only keys it takes, a ``pretrained``, valid RoPE arguments; no setting twice). With ``--output_path``, each finished setting
is recorded in ``longllada_settings.json`` there, with the rest of the command line that determines its results;
a rerun of the same command skips the recorded ones, so an interrupted sweep resumes where it stopped. In a
data-parallel run every process runs the same settings, decided from the file as it was at the start; process 0
writes it. ``--use_cache PATH`` becomes one request cache per setting (``PATH_setting-<digest>``): lm-eval keys
cached answers by the request alone, so settings sharing one would read each other's answers. One
``--model_args`` (or none) runs exactly as lm-eval does.

Logging: the ``longllada`` loggers print at INFO, or at the level of ``LONGLLADA_LOG_LEVEL`` (``DEBUG`` adds
each batch's generated token ids). Bad input (a ``ValueError``, such as an unknown ``--model_args`` key) ends the
run with one ``longllada eval: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import gc
import hashlib
import inspect
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="lm-eval's CLI with --model longllada and the longllada_* tasks (longllada eval --help)",
        description=__doc__.splitlines()[0],
        add_help=False,
    )
    parser.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="arguments passed to lm-eval as they are")
    parser.set_defaults(func=lambda args: run_eval(args.lm_eval_args))


def include_paths(user_paths: str | Sequence[str | os.PathLike] | None, tasks_dir: str | os.PathLike) -> list[str]:
    """Our task folder first, then the user's paths (a str may list several, separated by ``os.pathsep``),
    without duplicates."""
    if user_paths is None:
        given: list[str] = []
    elif isinstance(user_paths, (str, os.PathLike)):
        given = [part for part in str(user_paths).split(os.pathsep) if part]
    else:
        given = [str(path) for path in user_paths]
    ordered = [str(Path(tasks_dir).resolve())] + [str(Path(path).expanduser().resolve()) for path in given]
    return list(dict.fromkeys(ordered))


def _yaml_include_path(config_path: str | None) -> str | list[str] | None:
    """``include_path`` of an lm-eval ``--config`` YAML file, which our merged list would otherwise replace."""
    if not config_path or not Path(config_path).is_file():
        return None
    import yaml

    data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    return data.get("include_path") if isinstance(data, dict) else None


def requested_task_names(tasks: str | Sequence[str] | None) -> list[str]:
    """``--tasks`` as names (lm-eval takes ``a,b`` and ``a b``)."""
    if tasks is None:
        return []
    given = [tasks] if isinstance(tasks, str) else list(tasks)
    return [name.strip() for entry in given for name in str(entry).split(",") if name.strip()]


@contextmanager
def _index_without_builtin_tasks(tasks: str | Sequence[str] | None, tasks_dir: str | os.PathLike) -> Iterator[bool]:
    """While lm-eval's CLI runs, its TaskManager skips lm-eval's built-in task folder when every requested task is
    one of ours: indexing the ~15,000 built-in task files costs 5-10 s of every run's start-up (each process of a
    data-parallel run), and none of them is needed. lm-eval's CLI has no switch for it (``TaskManager`` has:
    ``include_defaults``), so its class is swapped for the call. Anything else (a built-in task, a YAML file, a
    folder, a pattern that our folder does not match) indexes as lm-eval always does. Yields whether it skips."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    names = requested_task_names(tasks)
    skip = bool(names) and "include_defaults" in inspect.signature(TaskManager.__init__).parameters
    if skip:
        ours = TaskManager(include_path=str(tasks_dir), include_defaults=False)
        skip = all(not name.endswith(".yaml") and ours.match_tasks([name]) for name in names)
    if not skip:
        yield False
        return

    class IncludedTasksOnly(TaskManager):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("include_defaults", False)
            super().__init__(*args, **kwargs)

    lm_eval.tasks.TaskManager = IncludedTasksOnly
    try:
        yield True
    finally:
        lm_eval.tasks.TaskManager = TaskManager


@contextmanager
def _environment_report_once() -> Iterator[None]:
    """lm-eval adds torch's environment report (``torch.utils.collect_env``: pip, nvidia-smi and more in
    subprocesses, about a second) to every setting's results. It is the same for every setting of one process:
    while lm-eval runs, it is made once and reused."""
    import torch.utils.collect_env as collect_env

    made = collect_env.get_pretty_env_info
    collect_env.get_pretty_env_info = functools.cache(made)
    try:
        yield
    finally:
        collect_env.get_pretty_env_info = made


def setup_logging() -> None:
    """A stderr handler for the ``longllada`` loggers (lm-eval configures only its own)."""
    logger = logging.getLogger("longllada")
    level = logging.getLevelName(os.environ.get("LONGLLADA_LOG_LEVEL", "INFO").upper())
    logger.setLevel(level if isinstance(level, int) else logging.INFO)
    if not any(getattr(handler, "_longllada", False) for handler in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s [%(name)s] %(message)s", "%H:%M:%S"))
        handler._longllada = True
        logger.addHandler(handler)
        logger.propagate = False


# -- several settings in one process ------------------------------------------------------------------------
SETTINGS_FILE = "longllada_settings.json"
SETTINGS_MARKER = "longllada eval"
_SETTINGS_DEST = "longllada_settings"
# Namespace entries that change what is printed or where answers are cached, not what is evaluated: a rerun with
# other values still resumes (the request cache holds a setting's own answers, see setting_args).
_NOT_RESULTS = ("command", "func", "verbosity", "show_config", "use_cache")


def _collect_settings(cli: Any) -> None:
    """Make ``--model_args`` of lm-eval's ``run`` parser keep each occurrence apart (lm-eval merges them into one
    dict): the namespace gets ``longllada_settings``, a list of ``(text, dict)``, each dict parsed by lm-eval's own
    action exactly as a lone ``--model_args`` is, and ``model_args`` the first of them."""
    from lm_eval._cli.utils import MergeDictAction

    class KeepEachSetting(MergeDictAction):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:  # fmt: skip
            alone = argparse.Namespace()
            super().__call__(parser, alone, values, option_string)
            given = [values] if isinstance(values, str) else list(values or [])
            parsed = getattr(alone, self.dest, None) or {}
            settings = getattr(namespace, _SETTINGS_DEST, None) or []
            settings.append((" ".join(str(value) for value in given), parsed))
            setattr(namespace, _SETTINGS_DEST, settings)
            if len(settings) == 1:
                setattr(namespace, self.dest, parsed)

    run_parser = cli._subparsers.choices.get("run")
    actions = [action for action in getattr(run_parser, "_actions", []) if action.dest == "model_args"]
    if len(actions) != 1 or not isinstance(actions[0], MergeDictAction):
        raise RuntimeError("lm-eval's run parser has no --model_args of the form this wrapper knows")
    actions[0].__class__ = KeepEachSetting
    actions[0].help = f"{actions[0].help}; given more than once: one run per setting, in this process"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def check_settings(settings: Sequence[tuple[str, dict]], model: str | None) -> None:
    """Refuse (``ValueError``) a setting without ``pretrained`` (or ``model``), a setting given twice, and for
    ``--model longllada`` a key it does not take and bad RoPE arguments; the message names the setting by position
    and text."""
    total = len(settings)
    if model == "longllada":
        from longllada.lm_eval_model import known_model_args
        from modeling_longllada import rope_scaling_from_args

        allowed = known_model_args()
        for position, (text, parsed) in enumerate(settings, 1):
            where = f"setting {position}/{total} (--model_args {text})"
            unknown = sorted(set(parsed) - set(allowed))
            if unknown:
                hints = {key: difflib.get_close_matches(key, allowed, n=1) for key in unknown}
                meant = "".join(f" ({key!r}: did you mean {hint[0]!r}?)" for key, hint in hints.items() if hint)
                raise ValueError(f"{where}: unknown key(s) {unknown} for --model longllada{meant}; allowed: {allowed}")
            # The RoPE arguments are a sweep's usual axis: a bad one is found now, not after the settings before it.
            try:
                rope_scaling_from_args(parsed.get("ntk_factor"), parsed.get("ntk_target"), parsed.get("rope_scaling"))
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
    for position, (text, parsed) in enumerate(settings, 1):
        # lm-eval merges repeated --model_args into one; here each is a whole setting, so a partial one is refused
        if not (parsed.get("pretrained") or parsed.get("model")):
            raise ValueError(
                f"setting {position}/{total} (--model_args {text}): no pretrained=; allowed: a model name or folder "
                "in every setting (each --model_args is one whole setting)"
            )
    first_seen: dict[str, int] = {}
    for position, (text, parsed) in enumerate(settings, 1):
        earlier = first_seen.setdefault(_canonical(parsed), position)
        if earlier != position:
            raise ValueError(
                f"setting {position}/{total} (--model_args {text}) is the same as setting {earlier}/{total} "
                f"(--model_args {settings[earlier - 1][0]}); allowed: each setting once"
            )


def settings_path(output_path: str | os.PathLike) -> Path:
    """The progress file of a run with ``--output_path output_path`` (lm-eval writes results beside a path that
    ends in ``.json``, into the folder otherwise)."""
    path = Path(output_path).expanduser()
    return (path.parent if path.suffix == ".json" else path) / SETTINGS_FILE


def read_settings_file(path: Path) -> dict:
    """Our progress file at ``path`` (an empty one when there is none). A file we did not write is refused."""
    if not path.exists():
        about = "settings of `longllada eval --model_args A --model_args B ...` finished here; a rerun skips them"
        return {"written_by": SETTINGS_MARKER, "about": about, "finished": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} is not a progress file of longllada eval (not readable as JSON: {err}); it is left as it is: "
            "move it away or choose another --output_path"
        ) from None
    if not isinstance(data, dict) or data.get("written_by") != SETTINGS_MARKER:
        raise ValueError(
            f'{path} is not a progress file of longllada eval (no "written_by": "{SETTINGS_MARKER}"); it is '
            "left as it is: move it away or choose another --output_path"
        )
    finished = data.get("finished")
    if not isinstance(finished, list) or not all(isinstance(entry, dict) and "key" in entry for entry in finished):
        raise ValueError(f"{path}: 'finished' is not a list of finished settings; allowed: a file this command wrote")
    return data


def write_settings_file(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, then ``os.replace``), after
    checking again that whatever is there is ours."""
    read_settings_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as an ordinary file of this user (mkstemp makes it private)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def setting_record(args: argparse.Namespace, text: str, parsed: dict) -> dict:
    """What determines a setting's results: the parsed command line with this setting as ``model_args`` (and the
    digest of a ``--config`` file's text), and its digest ``key``, which a rerun compares."""
    run = {key: value for key, value in vars(args).items() if key not in _NOT_RESULTS and not callable(value)}
    run["model_args"] = parsed
    config = getattr(args, "config", None)
    if config and Path(config).is_file():
        run["config_sha256"] = hashlib.sha256(Path(config).read_bytes()).hexdigest()
    canonical = _canonical(run)
    return {"setting": text, "key": hashlib.sha256(canonical.encode("utf-8")).hexdigest(), "run": json.loads(canonical)}


def setting_args(args: argparse.Namespace, parsed: dict) -> argparse.Namespace:
    """A copy of ``args`` with ``model_args`` = ``parsed`` (lm-eval changes the dicts it is given), and a request
    cache of its own: lm-eval's ``--use_cache`` keys requests by their text alone, so settings sharing one would
    read each other's answers."""
    values = {key: value if callable(value) else copy.deepcopy(value) for key, value in vars(args).items()}
    values["model_args"] = copy.deepcopy(parsed)
    if values.get("use_cache"):
        digest = hashlib.sha256(_canonical(parsed).encode("utf-8")).hexdigest()[:12]
        values["use_cache"] = f"{values['use_cache']}_setting-{digest}"
    return argparse.Namespace(**values)


def _free_memory() -> tuple[int, str]:
    """Collect what the finished setting left (its model): how many models are still alive, and the CUDA memory
    still allocated (for the log)."""
    import torch

    from longllada.lm_eval_model import live_models

    gc.collect()
    gc.freeze()  # what survives a full collection lives on: the next settings' collections skip it (see below)
    if not torch.cuda.is_available():
        return live_models(), ""
    torch.cuda.empty_cache()
    return live_models(), f"; CUDA memory allocated {torch.cuda.memory_allocated() / 2**30:.2f} GiB"


@contextmanager
def _collections_skip_survivors() -> Iterator[None]:
    """While settings run, Python's full garbage collections (one after each setting, to free its model; others when
    many objects are made) skip the objects made before the first setting and those that survived the collection
    after each one (modules, lm-eval's parsers, caches: about half a million objects, ~0.3-0.8 s a collection);
    the settings' own objects are collected as always (``gc.freeze``)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_settings(cli: Any, args: argparse.Namespace, settings: Sequence[tuple[str, dict]]) -> None:
    """lm-eval once per setting, in order, skipping those the progress file records as finished. Bad settings
    and a progress file we did not write are refused (``ValueError``) before anything runs."""
    logger = logging.getLogger("longllada")
    total = len(settings)
    check_settings(settings, getattr(args, "model", None))
    records = [setting_record(args, text, parsed) for text, parsed in settings]
    output_path = getattr(args, "output_path", None)
    path = settings_path(output_path) if output_path else None
    # Every process of a data-parallel run decides from the file as it is now, before any setting runs: process
    # 0 writes it only after its first setting finished, which needs every process (lm-eval gathers results).
    progress = read_settings_file(path) if path is not None else None
    done = {entry["key"] for entry in progress["finished"]} if progress is not None else set()
    writer = int(os.environ.get("RANK", "0")) == 0
    if path is None:
        logger.info("%d settings, no --output_path: every setting runs (none is recorded for a rerun to skip)", total)
    else:
        logger.info("%d settings; finished ones are recorded in %s (a rerun of this command skips them)", total, path)
    for position, ((text, parsed), record) in enumerate(zip(settings, records), 1):
        if record["key"] in done:
            logger.info("setting %d/%d: finished in an earlier run, skipped", position, total)
            continue
        logger.info("setting %d/%d: %s", position, total, text)
        one = setting_args(args, parsed)
        if getattr(one, "use_cache", None):
            logger.info("setting %d/%d: request cache %s (one per setting)", position, total, one.use_cache)
        start = time.perf_counter()
        try:
            cli.execute(one)
        except ValueError as err:
            raise ValueError(f"setting {position}/{total} (--model_args {text}): {err}") from err
        seconds = time.perf_counter() - start
        alive, memory = _free_memory()
        logger.debug("setting %d/%d: models alive after it: %d%s", position, total, alive, memory)
        if alive:
            logger.warning("setting %d/%d: its model is still referenced after it finished", position, total)
        if progress is not None and writer:
            finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            progress["finished"].append({**record, "seconds": round(seconds, 1), "finished_at": finished_at})
            write_settings_file(path, progress)
        logger.info("setting %d/%d: finished in %.1f s", position, total, seconds)
        # for benchmarks/settings_one_process.sh, beside the model adapter's timing lines (at DEBUG, as those)
        timing = {"event": "setting", "position": position, "total": total, "seconds": round(seconds, 3),
                  "t": round(time.time(), 3), "process_cpu_s": round(time.process_time(), 3), "pid": os.getpid()}  # fmt: skip
        logger.debug("longllada-timing %s", json.dumps(timing))


# lm-eval's sub-commands: their own --help is lm-eval's
LM_EVAL_COMMANDS = ("run", "ls", "validate")


def wants_our_help(argv: Sequence[str]) -> bool:
    """``longllada eval`` alone, or ``-h``/``--help`` outside one of lm-eval's sub-commands."""
    if not argv:
        return True
    return argv[0] not in LM_EVAL_COMMANDS and any(arg in ("-h", "--help") for arg in argv)


def resolve_device(args: argparse.Namespace) -> None:
    """Without ``--device``, the device the model will run on (lm-eval would record its default ``cuda:0`` in the
    results of a CPU run, where its model falls back to the CPU)."""
    if "device" in vars(args) and args.device is None:
        import torch

        args.device = "cuda:0" if torch.cuda.is_available() else "cpu"


def run_eval(argv: list[str]) -> int:
    """Run lm-eval's CLI on ``argv`` with our model and tasks (once per ``--model_args`` setting); returns the exit
    code."""
    if wants_our_help(argv):
        from longllada.eval_help import eval_help

        print(eval_help(), end="")
        return 0
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging as lm_eval_setup_logging

    import longllada.lm_eval_model  # noqa: F401  (registers --model longllada)
    from lm_eval_tasks import TASKS_DIR

    setup_logging()
    lm_eval_setup_logging()
    saved_argv = sys.argv
    # HarnessCLI reads sys.argv (it inserts the legacy "run" sub-command there).
    sys.argv = ["longllada eval", *argv]
    try:
        cli = HarnessCLI()
        _collect_settings(cli)
        try:
            args = cli.parse_args()
        except SystemExit as stop:  # --help, or a usage error already printed by argparse
            return int(stop.code or 0) if not isinstance(stop.code, str) else 2
    finally:
        sys.argv = saved_argv
    settings = vars(args).pop(_SETTINGS_DEST, None) or []
    resolve_device(args)
    if hasattr(args, "include_path"):
        user_paths = args.include_path
        from_config = _yaml_include_path(getattr(args, "config", None)) if user_paths is None else None
        args.include_path = include_paths(user_paths if user_paths is not None else from_config, TASKS_DIR)
    try:
        # the tasks, and so whether lm-eval's built-in index is needed, are the same for every setting
        with _index_without_builtin_tasks(getattr(args, "tasks", None), TASKS_DIR), _environment_report_once():
            if len(settings) > 1:
                with _collections_skip_survivors():
                    run_settings(cli, args, settings)
            else:
                cli.execute(args)
    except ValueError as err:
        logging.getLogger("longllada").debug("bad input", exc_info=True)
        print(f"longllada eval: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_eval(sys.argv[1:]))
