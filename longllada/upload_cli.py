"""`longllada upload`: build a LongLLaDA model repo from a checkpoint of a model family and push it (see hub_upload)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``upload`` sub-command (the same arguments as `python -m hub_upload`)."""
    from hub_upload.cli import DESCRIPTION, EPILOG, add_arguments

    parser = subparsers.add_parser(
        "upload", help="publish a LongLLaDA model repo to the Hugging Face Hub", description=DESCRIPTION, epilog=EPILOG
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``longllada upload``: 0 on success, 1 when the push is refused (the repo's code differs, no --force)."""
    from hub_upload.cli import run
    from hub_upload.push import RemoteCodeMismatch

    try:
        if args.out is None:
            return run(args)
        from longllada.output_lock import OutputLock

        with OutputLock(args.out, "longllada upload"):  # one build at a time into --out (run checks it is empty)
            return run(args)
    except RemoteCodeMismatch as err:
        print(f"longllada upload: refused: {err}", file=sys.stderr)
        return 1
