"""The `longllada` command line: one sub-command per module, each module owning its own arguments.

Each module named in `COMMANDS` defines `register(subparsers)`, which adds its parser and sets `func` (called
with the parsed arguments; its return value is the exit code). Heavy imports (torch, transformers, lm-eval)
stay inside the command functions so that `longllada --help` is instant.

Every failure of a command — a bad argument (argparse's or ours), a refused file, a model that cannot be found —
ends in exactly one line ``longllada CMD: error: ...`` on stderr and exit code 2. The ``int_arg``/``float_arg``
factories give argparse ``type=`` functions that refuse non-numbers, NaN, infinities and values out of range (every
numeric option has both bounds).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable

# module (under longllada/) -> registers these sub-commands
COMMANDS = [
    "tiny_model",  # tiny-model
    "perplexity.cli",  # ppl
    "ppl_plot",  # ppl-plot
    "niah_plot",  # niah-plot
    "tables",  # table
    "rope_sweep",  # rope-sweep
    "eval_cli",  # eval
    "upload_cli",  # upload
    "twins.cli",  # train-tiny
    "demo",  # demo
]
# Errors of a command that are the user's input or environment, reported as one line (not a traceback).
USER_ERRORS = (ValueError, OSError)
# The largest count (tokens, steps, samples, rows), seed and RoPE base a numeric option takes: the values of
# MAX_COUNT, MAX_SEED and MAX_ROPE_BASE in modeling_longllada/rope_longllada.py, the models' own bounds (a test
# holds them equal; that package imports torch, which `longllada --help` should not wait for).
MAX_COUNT = 2**32
MAX_SEED = 2**32 - 1
MAX_ROPE_BASE = 1e30


class CommandLineError(Exception):
    """An argument argparse refused: the parser's ``prog`` (``longllada ppl``) and argparse's message."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, but an error raises (``main`` prints one line) instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise CommandLineError(self.prog, _as_field_message(message))


def _as_field_message(message: str) -> str:
    # "argument --chunk: must be an integer >= 1, got 0" -> "--chunk must be an integer >= 1, got 0"
    prefix = "argument "
    if message.startswith(prefix) and ": must be " in message:
        flag, _, rest = message[len(prefix) :].partition(": ")
        return f"{flag.split('/')[0]} {rest}"
    return message


def int_arg(minimum: int, maximum: int = MAX_COUNT) -> Callable[[str], int]:
    """argparse ``type=``: an integer (digits only) within [minimum, maximum]."""

    def parse(text: str) -> int:
        allowed = _range("an integer", minimum, maximum)
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = "integer"
    parse.bounds = (minimum, maximum)  # type: ignore[attr-defined]  (read by the tests of every option)
    return parse


def float_arg(minimum: float, maximum: float, above: bool = False) -> Callable[[str], float]:
    """argparse ``type=``: a finite number within [minimum, maximum] (``above``: strictly greater than minimum)."""

    def parse(text: str) -> float:
        allowed = _range("a finite number", minimum, maximum, above)
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum) or value > maximum:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = "number"
    parse.bounds = (minimum, maximum)  # type: ignore[attr-defined]
    return parse


def _range(kind: str, minimum: float, maximum: float, above: bool = False) -> str:
    """What is allowed, in the words of ``modeling_longllada.rope_longllada.check_number``."""

    def bound(value: float) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    return f"{kind} {'>' if above else '>='} {bound(minimum)} and <= {bound(maximum)}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="longllada", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"longllada.{name}").register(subparsers)
    return parser


def _one_line(err: BaseException) -> str:
    """The error's message on one line (some libraries' messages span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    finally:
        close_process_group()


def close_process_group() -> None:
    """Close the process group a data-parallel run opened (accelerate, through lm-eval), if any, before the
    interpreter exits: left open, its gloo threads can abort the process at exit ("terminate called without an
    active exception", SIGABRT) after the results are written, and the launcher then reports the run failed."""
    distributed = sys.modules.get("torch.distributed")  # never imported: nothing to close
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _run(argv: list[str]) -> int:
    # `longllada eval` hands everything after it to lm-eval's own parser untouched.
    if argv[:1] == ["eval"]:
        from longllada.eval_cli import run_eval

        return run_eval(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CommandLineError as err:
        print(f"{err.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"longllada {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
