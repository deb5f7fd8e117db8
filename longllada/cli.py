"""The `longllada` command line: one sub-command per module, each module owning its own arguments.

Each module named in `COMMANDS` defines `register(subparsers)`, which adds its parser and sets `func` (called
with the parsed arguments; its return value is the exit code). Heavy imports (torch, transformers, lm-eval)
stay inside the command functions so that `longllada --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module (under longllada/) -> registers these sub-commands
COMMANDS = [
    "tiny_model",  # tiny-model
    "perplexity",  # ppl
    "ppl_plot",  # ppl-plot
    "niah_plot",  # niah-plot
    "eval_cli",  # eval
    "upload_cli",  # upload
    "twins.cli",  # train-tiny
    "demo",  # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longllada", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"longllada.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `longllada eval` hands everything after it to lm-eval's own parser untouched.
    if argv[:1] == ["eval"]:
        from longllada.eval_cli import run_eval

        return run_eval(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"longllada {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
