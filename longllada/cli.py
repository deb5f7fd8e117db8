"""The `longllada` command line: one sub-command per module, each module owning its own arguments.

Each module named in `COMMANDS` defines `register(subparsers)`, which adds its parser and sets `func` (called
with the parsed arguments; its return value is the exit code). Heavy imports (torch, transformers, lm-eval)
stay inside the command functions so that `longllada --help` is instant.

Every failure of a command — a bad argument (argparse's or ours), a refused file, a model that cannot be found —
ends in exactly one line ``longllada CMD: error: ...`` on stderr and exit code 2. The ``int_arg``/``float_arg``
factories give argparse ``type=`` functions that refuse non-numbers, NaN, infinities and values out of range.
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


def int_arg(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """argparse ``type=``: an integer (digits only) within [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {_range('an integer', minimum, maximum)}, got {text}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {_range('an integer', minimum, maximum)}, got {text}")
        return value

    parse.__name__ = "integer"
    return parse


def float_arg(
    minimum: float | None = None, maximum: float | None = None, above: bool = False
) -> Callable[[str], float]:
    """argparse ``type=``: a finite number within [minimum, maximum] (``above``: strictly greater than minimum)."""

    def parse(text: str) -> float:
        allowed = _range("a finite number", minimum, maximum, above)
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        if minimum is not None and (value < minimum or (above and value == minimum)):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _range(kind: str, minimum: float | None, maximum: float | None, above: bool = False) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"{kind} {'>' if above else '>='} {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind


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
    argv = sys.argv[1:] if argv is None else argv
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
