"""Arguments and driver shared by `python -m hub_upload` and `longllada upload`.

Importing this module is cheap (argparse only): `longllada --help` builds its parser.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub_upload.options import (
    KEEP_SOURCE,
    ROPE_SCALING_FORMS,
    RopeScalingChoice,
    check_repo_id,
    human_size,
    parse_rope_scaling,
    parse_size,
)

DESCRIPTION = (
    "Build a LongLLaDA model repo (our remote code, converted config, generation defaults, tokenizer, "
    "safetensors weights, model card) from a checkpoint of one of the model families (official or ours) and push it "
    "to the Hugging Face Hub."
)
EPILOG = (
    "Several --rope-scaling values publish one branch each (ntk:4 -> ntk-4, ntk-target:16384 -> ntk-target-16384, "
    "ntk-per-length -> ntk-per-length, none -> main). The token comes from HF_TOKEN or `hf auth login`."
)


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows an ArgumentTypeError's own message (for other errors only a generic one)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    convert.__name__ = parse.__name__
    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The upload arguments (one definition for both entry points)."""
    parser.add_argument("source", metavar="SOURCE", help="local checkpoint folder, or a Hub model id (ORG/NAME)")
    parser.add_argument("--repo-id", required=True, type=_argument_type(check_repo_id), help="target repo, ORG/NAME")
    parser.add_argument(
        "--rope-scaling",
        action="append",
        type=_argument_type(parse_rope_scaling),
        metavar="SPEC",
        help=f"one of {', '.join(ROPE_SCALING_FORMS)}; repeat to publish several branches "
        "(default: the source's own setting)",
    )
    parser.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    parser.add_argument("--revision", help="branch to push to (default main; one --rope-scaling only)")
    parser.add_argument("--commit-message", help="commit message (default names the rope scaling)")
    parser.add_argument("--force", action="store_true", help="overwrite a repo whose remote code differs from ours")
    parser.add_argument("--dry-run", action="store_true", help="build and list what would be uploaded, then stop")
    parser.add_argument("--out", type=Path, help="folder to build into (kept); default: a temporary folder")
    parser.add_argument(
        "--shard-size",
        default="5GB",
        type=_argument_type(parse_size),
        help="largest safetensors shard when converting .bin weights (default 5GB)",
    )
    parser.add_argument("--base-model", help="base_model of the card (default: the source's Hub id, if known)")
    parser.add_argument("--source-revision", help="revision of a Hub-id SOURCE to download")


def build_parser(prog: str = "python -m hub_upload") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return parser


def _variants(args: argparse.Namespace) -> list[tuple[RopeScalingChoice, str]]:
    """(scaling, branch) pairs to publish."""
    choices: list[RopeScalingChoice] = args.rope_scaling or [KEEP_SOURCE]
    if len(choices) == 1:
        return [(choices[0], args.revision or "main")]
    if args.revision:
        raise ValueError(
            f"--revision {args.revision!r} applies to a single --rope-scaling; with {len(choices)} of them each "
            "goes to its own branch (ntk-4, ntk-target-16384, ntk-per-length, none -> main)"
        )
    branches = [c.branch for c in choices]
    duplicates = sorted({b for b in branches if branches.count(b) > 1})
    if duplicates:
        raise ValueError(f"--rope-scaling values map to the same branch more than once: {duplicates}")
    return [(c, c.branch) for c in choices]


def run(args: argparse.Namespace, api_factory: Callable[..., Any] | None = None) -> int:
    """Build (and unless ``--dry-run``, push) every requested variant.

    ``api_factory(token=...)`` makes the ``HfApi`` (default ``huggingface_hub.HfApi``); tests pass a recording
    stand-in.
    """
    from hub_upload.build import (
        BuiltFolder,
        build_repo_folder,
        convert_config,
        resolve_base_model,
        resolve_source,
        verify_weights,
    )
    from hub_upload.push import (
        HubUnreachable,
        describe_network_error,
        network_errors,
        prepare_repo,
        resolve_token,
        upload_revision,
    )
    from hub_upload.shapes import check_weight_shapes

    if api_factory is None:
        from huggingface_hub import HfApi

        api_factory = HfApi
    variants = _variants(args)
    if args.out is not None and args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise ValueError(f"--out {args.out} is not an empty folder; allowed: a new or empty folder")
    if args.revision is not None and not args.revision.strip():
        raise ValueError("--revision is empty; allowed: a branch name such as main or ntk-4")

    # The push token is resolved first, so that a missing one stops the command before any download or build.
    api = None if args.dry_run else api_factory(token=resolve_token())

    def download_api() -> Any:
        # Public sources need no token: a dry run downloads with whatever login there is (maybe none).
        from huggingface_hub import get_token

        return api if api is not None else api_factory(token=get_token())

    source = resolve_source(args.source, download_api, revision=args.source_revision)
    # Every weight file is read whole before anything is built or pushed: a cut download or copy stops here.
    verify_weights(source.path)
    # ... and their shapes against the sizes config.json gives (headers only): a repo that cannot load is not built.
    check_weight_shapes(convert_config(source.config, KEEP_SOURCE), source.path)
    base_model = resolve_base_model(source, args.base_model)
    if base_model is None:
        print("note: base_model unknown for a local SOURCE that is not a Hub cache folder; pass --base-model ORG/NAME")

    with tempfile.TemporaryDirectory(prefix="longllada-upload-") as scratch:
        root = args.out if args.out is not None else Path(scratch)
        built: list[BuiltFolder] = []
        for choice, revision in variants:
            # One sub-folder per branch; no '.' in its name (transformers 4.46 cannot load remote code from one).
            dest = root if len(variants) == 1 else root / revision.replace(".", "_")
            folder = build_repo_folder(
                source, dest, args.repo_id, choice, revision=revision, shard_size=args.shard_size,
                base_model=base_model, weights_from=built[0] if built else None,
            )  # fmt: skip
            built.append(folder)
            if args.dry_run:
                _print_listing(folder.files(), args.repo_id, revision, dest, kept=args.out is not None)
        if args.dry_run:
            return 0
        # Every target is checked before the first upload: a refusal leaves the repo as it was.
        try:
            prepare_repo(
                api, args.repo_id, [f.revision for f in built], built[0].path, private=args.private, force=args.force
            )
        except network_errors() as err:
            raise HubUnreachable(
                f"could not reach {args.repo_id} on the Hub ({describe_network_error(err)}); nothing was uploaded"
            ) from None
        for number, folder in enumerate(built):
            try:
                url = upload_revision(api, folder.path, args.repo_id, folder.revision, args.commit_message)
            except network_errors() as err:
                done = ", ".join(f.revision for f in built[:number]) or "none"
                raise HubUnreachable(
                    f"the upload to {args.repo_id}@{folder.revision} failed ({describe_network_error(err)}); "
                    f"branches pushed before it: {done}"
                ) from None
            print(f"pushed {args.repo_id}@{folder.revision}: {url}")
    return 0


def _print_listing(files: list[tuple[str, int]], repo_id: str, revision: str, folder: Path, kept: bool) -> None:
    where = f"built in {folder}" if kept else "built in a temporary folder, removed"
    print(f"dry run: would upload to {repo_id}@{revision} ({where}):")
    width = max(len(name) for name, _ in files)
    for name, size in files:
        print(f"  {name:<{width}}  {human_size(size):>10}")
    total = sum(size for _, size in files)
    print(f"  total: {len(files)} files, {human_size(total)} ({total} bytes)")


def main(argv: list[str] | None = None, api_factory: Callable[..., Any] | None = None, prog: str | None = None) -> int:
    """`python -m hub_upload ...`; returns the exit code (2 for invalid input, 1 for a refused push)."""
    from hub_upload.push import RemoteCodeMismatch

    parser = build_parser(prog or "python -m hub_upload")
    args = parser.parse_args(argv)
    try:
        return run(args, api_factory)
    except RemoteCodeMismatch as err:
        print(f"{parser.prog}: refused: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"{parser.prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
