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

Logging: the ``longllada`` loggers print at INFO, or at the level of ``LONGLLADA_LOG_LEVEL`` (``DEBUG`` adds
each batch's generated token ids). Bad input (a ``ValueError``, such as an unknown ``--model_args`` key) ends the
run with one ``longllada eval: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="lm-eval's CLI with --model longllada and the longllada_* tasks (arguments as lm-eval's)",
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


def run_eval(argv: list[str]) -> int:
    """Run lm-eval's CLI on ``argv`` with our model and tasks; returns the exit code."""
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
        try:
            args = cli.parse_args()
        except SystemExit as stop:  # --help, or a usage error already printed by argparse
            return int(stop.code or 0) if not isinstance(stop.code, str) else 2
    finally:
        sys.argv = saved_argv
    if hasattr(args, "include_path"):
        user_paths = args.include_path
        from_config = _yaml_include_path(getattr(args, "config", None)) if user_paths is None else None
        args.include_path = include_paths(user_paths if user_paths is not None else from_config, TASKS_DIR)
    try:
        with _index_without_builtin_tasks(getattr(args, "tasks", None), TASKS_DIR):
            cli.execute(args)
    except ValueError as err:
        logging.getLogger("longllada").debug("bad input", exc_info=True)
        print(f"longllada eval: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_eval(sys.argv[1:]))
