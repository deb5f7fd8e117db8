"""Push a built folder to the Hub with ``huggingface_hub.HfApi``.

The token is resolved by huggingface_hub (``HF_TOKEN``, else the stored login) and handed to ``HfApi``; it is
never printed nor written. An existing repo whose remote code differs from ours is not overwritten without
``force``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Files an upload replaces or removes on the remote (so no stale shard or old code stays beside the new ones).
REPLACED_PATTERNS = ["*.safetensors", "*.bin", "*.index.json", "*.py"]
# Files of an otherwise empty repo (created by the Hub or a bare `create_repo`).
EMPTY_REPO_FILES = {".gitattributes", "README.md"}


class RemoteCodeMismatch(ValueError):
    """The target repo holds a model whose code is not this version of LongLLaDA's."""


class HubUnreachable(ValueError):
    """A call to the Hub failed: no network, offline mode, a refused token, a server error."""


def network_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a failed Hub call raises, whichever HTTP library this huggingface_hub uses: OSError (its
    offline mode; requests' errors), its own HTTP error, and the HTTP library's base error (httpx's connection
    errors are not OSErrors)."""
    try:
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:  # huggingface_hub before 0.24
        from huggingface_hub.utils import HfHubHTTPError

    library = [
        c for c in HfHubHTTPError.__mro__ if c.__name__ == "HTTPError" and not c.__module__.startswith("huggingface")
    ]
    return (OSError, HfHubHTTPError, *library)


def describe_network_error(err: BaseException) -> str:
    """One line: the error's first line, with its type when the message alone does not say what failed."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def resolve_token() -> str:
    """The token huggingface_hub would use (``HF_TOKEN``, else ``hf auth login``'s stored one)."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise ValueError(
            "no Hugging Face token: set HF_TOKEN or log in with `hf auth login` (a token with write access)"
        )
    return token


def remote_code_differences(api: Any, repo_id: str, revision: str, folder: Path) -> list[str]:
    """How the code at ``repo_id@revision`` differs from ``folder``'s ``.py`` files ([] if it is the same, or if
    the repo holds no model yet)."""
    remote_files = api.list_repo_files(repo_id, revision=revision, repo_type="model")
    if set(remote_files) <= EMPTY_REPO_FILES:
        return []
    ours = {p.name: p.read_bytes() for p in folder.glob("*.py")}
    remote_code = sorted(f for f in remote_files if f.endswith(".py") and "/" not in f)
    differences = [f"{name}: not part of LongLLaDA's code" for name in remote_code if name not in ours]
    differences += [f"{name}: missing in the repo" for name in sorted(ours) if name not in remote_code]
    with tempfile.TemporaryDirectory(prefix="longllada-remote-code-") as cache_dir:
        for name in remote_code:
            if name not in ours:
                continue
            local = api.hf_hub_download(repo_id, name, revision=revision, repo_type="model", cache_dir=cache_dir)
            if Path(local).read_bytes() != ours[name]:
                differences.append(f"{name}: a different version")
    return differences


def prepare_repo(
    api: Any,
    repo_id: str,
    revisions: list[str],
    code_folder: Path,
    private: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> None:
    """Create the repo if needed and check, before anything is uploaded, that every target revision holds no
    model or this version's code (``code_folder``'s ``.py`` files).

    Calls: ``create_repo(exist_ok=True)``, ``list_repo_refs``, then per compared revision (the branch if it
    exists, else ``main``, from which a new branch starts) ``list_repo_files`` and ``hf_hub_download`` of its
    ``.py`` files. Raises :class:`RemoteCodeMismatch` when the code differs and ``force`` is False.
    """
    # private=None leaves a new repo's visibility to the account's (or organisation's) default.
    api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
    branches = {ref.name for ref in api.list_repo_refs(repo_id, repo_type="model").branches}
    compared = dict.fromkeys(r if r in branches else "main" for r in revisions)
    problems = []
    for revision in compared:
        if revision in branches:
            differences = remote_code_differences(api, repo_id, revision, code_folder)
            if differences:
                problems.append(f"{repo_id}@{revision}: " + "; ".join(differences))
    if problems and not force:
        raise RemoteCodeMismatch(
            f"the repo holds a model whose code differs from this LongLLaDA version ({' | '.join(problems)}); "
            "nothing was uploaded. Pass --force to overwrite it"
        )
    for problem in problems:
        log(f"--force: overwriting the code of {problem}")


def upload_revision(
    api: Any, folder: Path, repo_id: str, revision: str = "main", commit_message: str | None = None
) -> str:
    """``create_branch(exist_ok=True)`` unless ``revision`` is main, then ``upload_folder``; returns the commit URL.

    Remote weights and code files that the folder does not have are deleted in the same commit, so no stale
    shard stays beside the new ones.
    """
    if revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    message = commit_message or f"Upload LongLLaDA model ({_scaling_text(folder)})"
    info = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        revision=revision,
        commit_message=message,
        repo_type="model",
        delete_patterns=REPLACED_PATTERNS,
    )
    return info.commit_url


def _scaling_text(folder: Path) -> str:
    import json

    from hub_upload.build import published_rope_scaling

    scaling = published_rope_scaling(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    return "no RoPE scaling" if scaling is None else f"rope_scaling={json.dumps(scaling)}"
