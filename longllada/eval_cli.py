"""`longllada eval ...`: lm-evaluation-harness's own command line with ``--model longllada`` registered and this
project's tasks (``longllada_niah``, ``longllada_ruler``, ``longllada_longbench``) on the include path.

``--model longllada`` takes every family of the registry (``modeling_longllada.families``; ours or official
checkpoints, run by this package's classes and diffusion sampler) and any transformers causal LM (run as lm-eval's
``hf`` model does), each with the same RoPE arguments (``ntk_factor``, ``ntk_target``, ``rope_scaling``); see
``longllada.lm_eval_model``.

Everything after ``eval`` is lm-eval's (``run``, ``ls``, ``validate``, or the legacy form without a
sub-command); our task folder is put before any ``--include_path`` the user gives, so the user's tasks win on
a name clash. A path list in lm-eval's documented ``a:b`` form is split (lm-eval itself takes it as one path).

Data-parallel runs: ``accelerate launch -m longllada.eval_cli --model longllada ...``.

Several settings in one process: ``--model_args`` given more than once (``--model_args A --model_args B ...``)
runs lm-eval once per setting, in the order given, with everything else of the command line the same. Importing
torch, transformers and lm-eval costs 13-15 s of every process's start, paid here once for a whole sweep (the
LongLLaDA paper's needle grids: checkpoints x NTK factors x cache modes). Before any model loads, every setting is
checked as its model would check it (``--model longllada``: only keys it takes, a ``pretrained``, valid RoPE and
sampler arguments, through the sampler's own validation; no setting twice), and our tasks' grids against what this
machine and the model can hold. With ``--output_path``, each finished setting is recorded in
``longllada_settings.json`` there, with the rest of the command line that determines its results and a fingerprint
of its model files; a rerun of the same command skips the recorded ones whose files are unchanged (a setting whose
weights changed runs again), so an interrupted sweep resumes where it stopped. One command at a time writes the
file (a lock beside it). In a data-parallel run every process runs the same settings, decided from the file as it
was at the start; process 0 writes it. ``--use_cache PATH`` becomes one request cache per setting
(``PATH_setting-<digest>``): lm-eval keys cached answers by the request alone, so settings sharing one would read
each other's answers. One ``--model_args`` (or none) runs as lm-eval does, after the same checks.

Secrets: a credential among the model arguments (``token=hf_...``, ``use_auth_token=...``) never reaches lm-eval's
records: it is taken out of the arguments (the progress file, the ``setting i/n`` lines and errors show
``<redacted>``), and the Hub client gets the token through ``HF_TOKEN`` while its setting runs
(``longllada.redaction``).

Logging: the ``longllada`` loggers print at INFO, or at the level of ``LONGLLADA_LOG_LEVEL`` (``DEBUG`` adds
each batch's generated token ids). Bad input (a ``ValueError``, such as an unknown ``--model_args`` key, or an
``OSError``, such as a missing model) ends the run with one ``longllada eval: error: ...`` line and exit code 2;
an ``--output_path`` where lm-eval could not save results is refused before any work.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import hashlib
import inspect
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from longllada.redaction import (
    REDACTED,
    hub_token,
    hub_token_environment,
    is_secret_key,
    redact,
    scrub,
    scrubbed_logs,
    secret_values,
    split_secrets,
)


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
    for handler in logger.handlers:  # a run in the same process as an earlier one writes to today's stderr
        if getattr(handler, "_longllada", False) and isinstance(handler, logging.StreamHandler):
            with handler.lock:  # not setStream: it flushes the old stream, which may be closed
                handler.stream = sys.stderr
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
# Model arguments naming files whose content determines the results (the weights, the tokenizer, an adapter): a
# finished setting records their fingerprint, and a rerun over changed files runs the setting again.
MODEL_PATH_KEYS = ("pretrained", "tokenizer", "peft", "delta")
# Our task folder as the progress file records it: where the package is installed (a checkout, a virtual environment)
# does not change a setting's results, and a machine's folders do not belong in a file that may be shared.
OWN_TASKS_LABEL = "<longllada lm_eval_tasks>"


class Setting(NamedTuple):
    """One ``--model_args`` of the command line: its text as shown in logs, errors and the progress file (secret
    values redacted), its arguments without the secret keys (what lm-eval gets and records), and those keys."""

    text: str
    model_args: dict[str, Any]
    secrets: dict[str, Any]


def as_setting(text: str, parsed: dict[str, Any]) -> Setting:
    """Split one ``--model_args`` into what may be recorded and its secrets (``token=hf_...``)."""
    public, secrets = split_secrets(parsed)
    if secrets:  # shown from the parsed form: the text as given holds the secret
        text = ",".join(f"{key}={REDACTED if is_secret_key(key) else value}" for key, value in parsed.items())
    return Setting(text, public, secrets)


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


class UsageError(Exception):
    """An argument lm-eval's own parser refused (its message), raised instead of argparse's usage and exit."""


def _errors_raise(cli: Any) -> None:
    """Make lm-eval's parsers (the main one and each sub-command's) raise :class:`UsageError` on a bad argument
    instead of printing their usage and exiting, so that the failure is one ``longllada eval: error:`` line."""

    def refuse(message: str) -> None:
        raise UsageError(message)

    parsers = [cli._parser, *getattr(cli._subparsers, "choices", {}).values()]
    for parser in parsers:
        parser.error = refuse


# lm-eval's --gen_kwargs that are numbers (with the samplers' own, checked again by the sampler as it starts)
NUMERIC_GEN_KWARGS = ("max_gen_toks", "max_new_tokens", "max_length", "temperature", "top_p", "top_k", "min_p",
                      "repetition_penalty")  # fmt: skip


def check_lm_eval_options(args: argparse.Namespace) -> None:
    """lm-eval's own numeric options, refused (``ValueError`` naming the option) before anything loads, as lm-eval
    would take them (a NaN ``--limit`` after the model loaded, a negative ``--num_fewshot`` silently): ``--limit``
    (a fraction of the documents below 1, a whole number of them from 1), ``--num_fewshot``, ``--batch_size``
    (a count, or lm-eval's ``auto`` / ``auto:N``), ``--max_batch_size``, ``--seed`` and the numbers of
    ``--gen_kwargs``."""
    from longllada.model_args import SAMPLER_ARGS
    from modeling_longllada.rope_longllada import MAX_COUNT, MAX_SCALE, MAX_SEED, check_number

    limit = getattr(args, "limit", None)
    if limit is not None:
        check_number("--limit", limit, minimum=0, maximum=MAX_COUNT, inclusive=False)
        if limit >= 1 and limit != int(limit):
            raise ValueError(
                f"--limit={limit!r} is not allowed; allowed: a fraction of the documents below 1, or a whole number "
                "of documents from 1"
            )
    check_number("--num_fewshot", getattr(args, "num_fewshot", None), minimum=0, maximum=MAX_COUNT, integer=True,
                 optional=True)  # fmt: skip
    check_number("--max_batch_size", getattr(args, "max_batch_size", None), minimum=1, maximum=MAX_COUNT,
                 integer=True, optional=True)  # fmt: skip
    batch_size = getattr(args, "batch_size", None)
    if batch_size is not None:
        text = str(batch_size).strip()
        count = text[len("auto:") :] if text.startswith("auto:") else text
        if text != "auto" and not (count.isdigit() and 1 <= int(count) <= MAX_COUNT):
            raise ValueError(
                f"--batch_size={batch_size!r} is not allowed; allowed: an integer >= 1 and <= {MAX_COUNT}, or auto "
                "or auto:N (lm-eval's search for the largest batch, N times)"
            )
    seeds = getattr(args, "seed", None)
    for seed in seeds if isinstance(seeds, (list, tuple)) else [seeds]:
        check_number("--seed", seed, minimum=0, maximum=MAX_SEED, integer=True, optional=True)
    gen_kwargs = getattr(args, "gen_kwargs", None)
    numeric = {*NUMERIC_GEN_KWARGS, *SAMPLER_ARGS} - {"remasking", "alg", "cache", "eos_early_stop"}
    for key, value in (gen_kwargs or {}).items() if isinstance(gen_kwargs, dict) else ():
        if key in numeric or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            check_number(f"--gen_kwargs {key}", value, minimum=0, maximum=max(MAX_COUNT, MAX_SCALE))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def check_settings(
    settings: Sequence[tuple[str, dict]], model: str | None, tasks: Any = None, metadata: dict | None = None
) -> None:
    """Refuse (``ValueError``) a setting without ``pretrained`` (or ``model``), a setting given twice, for
    ``--model longllada`` any argument it would refuse once loaded (an unknown key, a bad RoPE or sampler
    argument: :func:`longllada.lm_eval_model.check_model_args`), and for our tasks a grid that cannot be built or
    run (its options and size, with each setting's model arguments merged into ``metadata`` as lm-eval merges
    them). The message names the setting by position and text. Nothing is loaded: at most config.json files are
    read."""
    total = len(settings)
    for position, (text, parsed, *_) in enumerate(settings if total > 1 else (), 1):
        # lm-eval merges repeated --model_args into one; here each is a whole setting, so a partial one is refused
        if not (parsed.get("pretrained") or parsed.get("model")):
            raise ValueError(
                f"setting {position}/{total} (--model_args {text}): no pretrained=; allowed: a model name or folder "
                "in every setting (each --model_args is one whole setting)"
            )
    first_seen: dict[str, int] = {}
    for position, (text, parsed, *_) in enumerate(settings, 1):
        earlier = first_seen.setdefault(_canonical(parsed), position)
        if earlier != position:
            raise ValueError(
                f"setting {position}/{total} (--model_args {text}) is the same as setting {earlier}/{total} "
                f"(--model_args {settings[earlier - 1][0]}); allowed: each setting once"
            )
    from lm_eval_tasks.grid_bounds import check_task_options

    if not settings:
        check_task_options(requested_task_names(tasks), dict(metadata or {}))
    for position, (text, parsed, *secrets) in enumerate(settings, 1):
        try:
            with hub_token_environment(hub_token(secrets[0]) if secrets else None):  # a private model's config
                _check_setting(model, tasks, metadata, parsed)
        except ValueError as err:
            if total == 1:
                raise
            raise ValueError(f"setting {position}/{total} (--model_args {text}): {err}") from None


def _check_setting(model: str | None, tasks: Any, metadata: dict | None, parsed: dict) -> None:
    from lm_eval_tasks.grid_bounds import check_task_options

    if model == "longllada":
        from longllada.lm_eval_model import check_model_args

        check_model_args(parsed)
    # lm-eval hands every task the model arguments merged with --metadata (which wins)
    check_task_options(requested_task_names(tasks), {**parsed, **(metadata or {})})


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
    digest of a ``--config`` file's text), and its digest ``key``, which a rerun compares. Secrets (a token in
    ``--hf_hub_log_args``, say) are neither recorded nor part of the key."""
    run = {key: value for key, value in vars(args).items() if key not in _NOT_RESULTS and not callable(value)}
    run = redact(run)
    if isinstance(run.get("include_path"), list):
        run["include_path"] = [_own_tasks_label(path) for path in run["include_path"]]
    run["model_args"] = split_secrets(parsed)[0]
    config = getattr(args, "config", None)
    if config and Path(config).is_file():
        run["config_sha256"] = hashlib.sha256(Path(config).read_bytes()).hexdigest()
    canonical = _canonical(run)
    return {"setting": text, "key": hashlib.sha256(canonical.encode("utf-8")).hexdigest(), "run": json.loads(canonical)}


def _own_tasks_label(path: Any) -> Any:
    from lm_eval_tasks import TASKS_DIR

    same = isinstance(path, str) and Path(path).expanduser().resolve() == Path(TASKS_DIR).resolve()
    return OWN_TASKS_LABEL if same else path


def setting_fingerprint(parsed: dict) -> dict[str, Any]:
    """The fingerprint (:func:`longllada.perplexity.fingerprint.model_fingerprint`) of every file a setting's
    model arguments name (``pretrained``, ``tokenizer``, ``peft``, ``delta``): a local folder, or a Hub id's
    folder in the Hugging Face cache at its ``revision``; None for one that is not here (not downloaded yet)."""
    from longllada.perplexity.fingerprint import model_fingerprint, model_folder

    location = {key: parsed.get(key) for key in ("revision", "subfolder") if isinstance(parsed.get(key), str)}
    fingerprints: dict[str, Any] = {}
    for key in MODEL_PATH_KEYS:
        name = parsed.get(key)
        if not isinstance(name, str) or not name:
            continue
        try:
            folder = model_folder(name, **location)
            fingerprints[key] = None if folder is None else model_fingerprint(folder, weights=key != "tokenizer")
        except (OSError, ValueError):
            fingerprints[key] = None
    return fingerprints


def fingerprint_differences(recorded: Any, current: dict[str, Any]) -> list[str]:
    """Why a finished setting's files cannot be taken for the same as now (empty when they are): changed files,
    or a fingerprint missing on either side (an older progress file, a model not here)."""
    from longllada.perplexity.fingerprint import fingerprint_changes

    if not isinstance(recorded, dict):
        return ["the progress file records no fingerprint of its model files"]
    reasons = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key), current.get(key)
        if old is None or new is None:  # not here then or now (a Hub id not downloaded), or a new argument
            reasons.append(
                f"{key}: its files cannot be compared (not fingerprinted {'then' if old is None else 'now'})"
            )
        else:
            reasons += [f"{key}: {change}" for change in fingerprint_changes(old, new)]
    return reasons


def check_output_path(output_path: str | os.PathLike | None, settings: Sequence[tuple[str, dict]]) -> None:
    """Refuse, before any model loads, an ``--output_path`` where lm-eval could not save a setting's results
    (it would log "Could not save results aggregated" and lose them): lm-eval writes into a folder there, or,
    for a path ending in ``.json``, beside it; a plain file where that folder (or the model's sub-folder, or a
    folder above) would be, or a place that cannot be written, is refused."""
    if not output_path:
        return
    from lm_eval.utils import sanitize_model_name

    path = Path(output_path).expanduser()
    flag = f"--output_path {output_path}"
    allowed = "allowed: a folder (new or one of earlier runs), or a path ending in .json (results written beside it)"
    folder = path.parent if path.suffix == ".json" else path
    existing = next(above for above in (folder, *folder.parents) if above.exists() or above == above.parent)
    if not existing.is_dir():
        what = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise ValueError(f"{flag} {what}; lm-eval writes its results into a folder there; {allowed}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: cannot write in {existing} (permission denied); {allowed}")
    if path.suffix != ".json":
        for _, parsed, *_ in settings:
            name = _lm_eval_model_name(parsed)
            sub = path / sanitize_model_name(name) if name else None
            if sub is not None and sub.exists() and not sub.is_dir():
                raise ValueError(f"{flag}: {sub} is a file where lm-eval writes this model's results; {allowed}")


def _lm_eval_model_name(model_args: dict) -> str | None:
    """The model name lm-eval files a run's results under (its first of these keys)."""
    for key in ("peft", "delta", "pretrained", "model", "path", "engine"):
        if key in model_args:
            return str(model_args[key])
    return None


def setting_args(args: argparse.Namespace, parsed: dict, fingerprint: dict | None = None) -> argparse.Namespace:
    """A copy of ``args`` with ``model_args`` = ``parsed`` (lm-eval changes the dicts it is given), and a request
    cache of its own: lm-eval's ``--use_cache`` keys requests by their text alone, so settings sharing one would
    read each other's answers, and so would the same setting over changed weights: the cache is named by the
    setting and the fingerprint of its model files (:func:`setting_fingerprint`, computed when not given)."""
    values = {key: value if callable(value) else copy.deepcopy(value) for key, value in vars(args).items()}
    values["model_args"] = copy.deepcopy(parsed)
    if values.get("use_cache"):
        files = setting_fingerprint(parsed) if fingerprint is None else fingerprint
        digest = hashlib.sha256(_canonical([parsed, files]).encode("utf-8")).hexdigest()[:12]
        values["use_cache"] = f"{values['use_cache']}_setting-{digest}"
    return argparse.Namespace(**values)


REQUEST_CACHE_RECORD = "_longllada.json"


def check_request_cache(use_cache: str | None, parsed: dict, writer: bool) -> None:
    """One setting with ``--use_cache PATH``: lm-eval's cache holds answers by request text alone, so after the
    model's files changed it would hand back the old model's answers. The fingerprint of the model files is kept
    beside the cache (``PATH_longllada.json``); a cache of other files is refused (never silently reused)."""
    if not use_cache:
        return
    record_path = Path(f"{use_cache}{REQUEST_CACHE_RECORD}").expanduser()
    fingerprint = setting_fingerprint(parsed)
    if record_path.exists():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("written_by") != SETTINGS_MARKER:
            raise ValueError(f"--use_cache {use_cache}: {record_path} is not a record of longllada eval; it is left "
                             "as it is: move it away or choose another --use_cache")  # fmt: skip
        recorded = record.get("fingerprint") if isinstance(record.get("fingerprint"), dict) else {}
        # a Hub model first fingerprinted once downloaded (by the run that started the cache) is taken as it is
        known = {key: value for key, value in recorded.items() if value is not None}
        changed = fingerprint_differences(known, {key: fingerprint.get(key) for key in known})
        if changed:
            raise ValueError(
                f"--use_cache {use_cache} holds answers of other model files ({'; '.join(changed)}); they would be "
                "read back as this model's: give another --use_cache, or delete that cache and its record"
            )
        if known == fingerprint or not writer:
            return
    if writer:
        record = {"written_by": SETTINGS_MARKER, "about": "the model files the request cache's answers came from",
                  "fingerprint": fingerprint}  # fmt: skip
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


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


# Called after each setting of a sweep: (its position from 1, the number of settings, "finished" or "skipped").
SettingProgress = Callable[[int, int, str], None]


def run_settings(
    cli: Any,
    args: argparse.Namespace,
    settings: Sequence[tuple[str, dict] | Setting],
    on_setting: SettingProgress | None = None,
) -> None:
    """lm-eval once per setting, in order, skipping those the progress file records as finished with the same
    model files (a setting whose weights, tokenizer or adapter changed since runs again). Bad settings and a
    progress file we did not write are refused (``ValueError``) before anything runs; so is a second command
    writing the same progress file (:class:`~longllada.output_lock.OutputLock`). ``on_setting`` hears of each
    setting as it is done (a command's progress bar)."""
    logger = logging.getLogger("longllada")
    settings = [setting if isinstance(setting, Setting) else as_setting(*setting) for setting in settings]
    check_settings(
        settings, getattr(args, "model", None), getattr(args, "tasks", None), getattr(args, "metadata", None)
    )
    records = [setting_record(args, setting.text, setting.model_args) for setting in settings]
    output_path = getattr(args, "output_path", None)
    path = settings_path(output_path) if output_path else None
    writer = int(os.environ.get("RANK", "0")) == 0
    from longllada.output_lock import OutputLock

    lock = OutputLock(path, "longllada eval", "--output_path") if path is not None and writer else None
    if lock is not None:
        lock.acquire()
    try:
        _run_settings(cli, args, settings, records, path, writer, logger, on_setting)
    finally:
        if lock is not None:
            lock.release()


def _run_settings(cli, args, settings: list[Setting], records: list[dict], path: Path | None, writer: bool,
                  logger: logging.Logger, on_setting: SettingProgress | None = None) -> None:  # fmt: skip
    total = len(settings)
    # Every process of a data-parallel run decides from the file as it is now, before any setting runs: process
    # 0 writes it only after its first setting finished, which needs every process (lm-eval gathers results).
    progress = read_settings_file(path) if path is not None else None
    done = {entry["key"]: entry for entry in progress["finished"]} if progress is not None else {}
    if path is None:
        logger.info("%d settings, no --output_path: every setting runs (none is recorded for a rerun to skip)", total)
    else:
        logger.info("%d settings; finished ones are recorded in %s (a rerun of this command skips them)", total, path)
    for position, (setting, record) in enumerate(zip(settings, records), 1):
        fingerprint = setting_fingerprint(setting.model_args)
        if record["key"] in done:
            changed = fingerprint_differences(done[record["key"]].get("fingerprint"), fingerprint)
            if not changed:
                logger.info("setting %d/%d: finished in an earlier run, skipped", position, total)
                if on_setting is not None:
                    on_setting(position, total, "skipped")
                continue
            logger.warning("setting %d/%d: finished in an earlier run, but its model files are not the same now "
                           "(%s): it runs again", position, total, "; ".join(changed))  # fmt: skip
        logger.info("setting %d/%d: %s", position, total, setting.text)
        one = setting_args(args, setting.model_args, fingerprint)
        if getattr(one, "use_cache", None):
            logger.info("setting %d/%d: request cache %s (one per setting)", position, total, one.use_cache)
        start = time.perf_counter()
        try:
            with hub_token_environment(hub_token(setting.secrets)):
                cli.execute(one)
        except ValueError as err:
            raise ValueError(f"setting {position}/{total} (--model_args {setting.text}): {err}") from err
        seconds = time.perf_counter() - start
        alive, memory = _free_memory()
        logger.debug("setting %d/%d: models alive after it: %d%s", position, total, alive, memory)
        if alive:
            logger.warning("setting %d/%d: its model is still referenced after it finished", position, total)
        if progress is not None and writer:
            if any(value is None for value in fingerprint.values()):  # downloaded by this setting: here now
                fingerprint = setting_fingerprint(setting.model_args)
            finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            progress["finished"] = [entry for entry in progress["finished"] if entry["key"] != record["key"]]
            progress["finished"].append({**record, "fingerprint": fingerprint, "seconds": round(seconds, 1),
                                         "finished_at": finished_at})  # fmt: skip
            write_settings_file(path, progress)
        logger.info("setting %d/%d: finished in %.1f s", position, total, seconds)
        if on_setting is not None:
            on_setting(position, total, "finished")
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


def _config_file_secrets(config_path: str | None) -> list[str]:
    """Secret keys in the ``model_args`` of an lm-eval ``--config`` file (lm-eval would record them)."""
    if not config_path or not Path(config_path).is_file():
        return []
    import yaml

    try:
        data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    model_args = data.get("model_args") if isinstance(data, dict) else None
    if isinstance(model_args, str):
        from lm_eval.utils import simple_parse_args_string

        model_args = simple_parse_args_string(model_args)
    return sorted(split_secrets(model_args)[1]) if isinstance(model_args, dict) else []


def run_eval(argv: list[str], *, on_setting: SettingProgress | None = None, command: str = "longllada eval") -> int:
    """Run lm-eval's CLI on ``argv`` with our model and tasks (once per ``--model_args`` setting); returns the exit
    code. A secret model argument (``token=hf_...``) is taken out of what lm-eval sees and records, and given to
    the Hub client through ``HF_TOKEN`` while its setting runs; it is scrubbed from every log line and error.

    For a command built on it (``longllada rope-sweep``): ``on_setting`` hears of each setting as it is done (and
    even a single setting is recorded in the progress file, so that it resumes), ``command`` names it in the one
    error line."""
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
        _errors_raise(cli)
        try:
            args = cli.parse_args()
        except SystemExit as stop:  # --help of an lm-eval sub-command
            return int(stop.code or 0) if not isinstance(stop.code, str) else 2
        except (UsageError, ValueError) as err:  # a usage error, or lm-eval's own reading of an argument
            print(f"{command}: error: {_parse_error(err, argv)}", file=sys.stderr)
            return 2
    finally:
        sys.argv = saved_argv
    settings = [as_setting(text, parsed) for text, parsed in vars(args).pop(_SETTINGS_DEST, None) or []]
    hidden = secret_values(value for setting in settings for value in setting.secrets.values())
    hidden += secret_values(_secret_leaves(vars(args)))
    resolve_device(args)
    if settings:
        args.model_args = dict(settings[0].model_args)
    if hasattr(args, "include_path"):
        user_paths = args.include_path
        from_config = _yaml_include_path(getattr(args, "config", None)) if user_paths is None else None
        args.include_path = include_paths(user_paths if user_paths is not None else from_config, TASKS_DIR)
    try:
        with scrubbed_logs(hidden):
            in_config = _config_file_secrets(getattr(args, "config", None))
            if in_config:
                raise ValueError(
                    f"--config {args.config} gives {in_config} in model_args, which lm-eval would write into its "
                    "results; allowed: the token in the HF_TOKEN environment variable or `hf auth login`, or in "
                    "--model_args (kept out of every file)"
                )
            check_lm_eval_options(args)
            check_output_path(getattr(args, "output_path", None), settings)
            # the tasks, and so whether lm-eval's built-in index is needed, are the same for every setting
            with _index_without_builtin_tasks(getattr(args, "tasks", None), TASKS_DIR), _environment_report_once():
                if len(settings) > 1 or (on_setting is not None and settings):
                    with _collections_skip_survivors():
                        run_settings(cli, args, settings, on_setting)
                else:
                    check_settings(settings, getattr(args, "model", None), getattr(args, "tasks", None),
                                   getattr(args, "metadata", None))  # fmt: skip
                    check_request_cache(getattr(args, "use_cache", None), dict(getattr(args, "model_args", None) or {}),
                                        int(os.environ.get("RANK", "0")) == 0)  # fmt: skip
                    with hub_token_environment(hub_token(settings[0].secrets) if settings else None):
                        cli.execute(args)
    except (ValueError, OSError) as err:  # the user's input or environment (a missing model, a full disk)
        logging.getLogger("longllada").debug("bad input", exc_info=True)
        print(f"{command}: error: {scrub(' '.join(str(err).split()), hidden)}", file=sys.stderr)
        return 2
    return 0


def _parse_error(err: Exception, argv: Sequence[str]) -> str:
    """One line for an argument lm-eval's parser refused. lm-eval reads a ``--model_args`` holding ``{`` as one JSON
    object: a dict value inside ``key=value`` pairs (``rope_scaling={...}``) is refused so, and the way to give it is
    named. The message never echoes a credential of the command line."""
    message = " ".join(str(err).split())
    invalid = re.fullmatch(r"argument (--?[\w-]+)(?:/\S+)?: invalid (.+) value: (.+)", message)
    if invalid:  # argparse's "invalid <type function> value": the option, the value and what it takes
        flag, kind, value = invalid.groups()
        allowed = {"int": "an integer", "float": "a finite number"}.get(kind, f"what `longllada eval run --help` "
                                                                             f"says of {flag}")  # fmt: skip
        message = f"{flag}={value} is not allowed; allowed: {allowed}"
    if message.startswith("Invalid JSON"):
        return (
            "--model_args: lm-eval reads a --model_args that holds '{' as one JSON object, and this one is not; a "
            "dict value (rope_scaling={...}) is given by making the whole --model_args one JSON object: "
            """'{"pretrained": "...", "rope_scaling": {"type": "yarn", "factor": 4}}', or rope_scaling as a string """
            "form: yarn:4, ntk-target:16k, longrope:FILE.json[:LENGTH], longrope:MODEL[:LENGTH]"
        )
    secrets = [
        value
        for arg in argv
        for key, sep, value in (pair.partition("=") for pair in str(arg).split(","))
        if sep and is_secret_key(key)
    ]
    return scrub(message, secret_values(secrets))


def _secret_leaves(values: Any) -> list[Any]:
    """The values of secret keys anywhere in ``values`` (nested dicts and lists)."""
    found: list[Any] = []
    if isinstance(values, dict):
        for key, value in values.items():
            found += [value] if is_secret_key(key) else _secret_leaves(value)
    elif isinstance(values, (list, tuple)):
        for value in values:
            found += _secret_leaves(value)
    return found


if __name__ == "__main__":  # `accelerate launch -m longllada.eval_cli ...`
    from longllada.cli import close_process_group

    try:
        code = run_eval(sys.argv[1:])
    finally:
        close_process_group()
    sys.exit(code)
