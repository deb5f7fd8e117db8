"""A cheap fingerprint of a model folder, recorded in a results file so that a resume refuses other weights.

Reading 16 GB of weights on every resume would cost longer than many resumed runs, so a weight file is known by
its size, its modification time (ns), and a SHA-256 of its first 1 MiB (a safetensors header: every tensor's
name, dtype, shape and offsets) plus 16 blocks of 4 KiB spread evenly over the rest (a ``.bin`` zip's central
directory, at its end, holds a CRC-32 of every tensor). Small files that change the results (config, tokenizer,
remote code) are hashed whole.

Why this is enough: every way weights are replaced (``save_pretrained``, a training step, a download, ``cp``)
writes the file anew and sets a new modification time; copies that keep the time (``cp -p``, ``rsync -t``) of a
different checkpoint differ in size, header or sampled bytes unless the two differ only outside the sampled
blocks, which no usual workflow produces. A folder in the Hugging Face cache (``.../snapshots/<commit>``) also
gives its revision, the commit it was downloaded at.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Small files whose content enters the numbers: config, tokenizer, generation defaults, remote code.
HASHED_SUFFIXES = (".json", ".model", ".txt", ".py", ".jinja")
NOT_FINGERPRINTED = ("README.md", ".gitattributes")
HEAD_BYTES = 1 << 20
SAMPLED_BLOCKS, BLOCK_BYTES = 16, 4096
SMALL_FILE_LIMIT = 64 << 20  # hashed whole below this size, sampled above it


def _sampled_sha256(path: Path, size: int) -> str:
    """SHA-256 of the first ``HEAD_BYTES`` and of ``SAMPLED_BLOCKS`` blocks spread evenly over the file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(HEAD_BYTES))
        if size > HEAD_BYTES:
            span = size - HEAD_BYTES - BLOCK_BYTES
            for i in range(SAMPLED_BLOCKS):
                handle.seek(HEAD_BYTES + max(0, span) * i // max(1, SAMPLED_BLOCKS - 1))
                digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()


def _file_entry(path: Path) -> dict[str, Any]:
    stat = path.stat()  # follows the Hub cache's symlinks to the blobs
    if path.suffix in WEIGHT_SUFFIXES or stat.st_size > SMALL_FILE_LIMIT:
        return {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256_sampled": _sampled_sha256(path, stat.st_size),
        }
    return {"size": stat.st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def model_fingerprint(folder: str | Path, weights: bool = True) -> dict[str, Any]:
    """``{"revision": commit or None, "files": {name: entry}}`` of a model folder's top-level files.

    ``revision`` is the commit of a Hugging Face cache snapshot folder, else None (a local folder). ``weights``:
    the folder must hold a weight file (False for a tokenizer's folder)."""
    folder = Path(folder).expanduser()
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name in NOT_FINGERPRINTED or not path.is_file():
            continue
        if path.suffix in WEIGHT_SUFFIXES or path.suffix in HASHED_SUFFIXES:
            files[path.name] = _file_entry(path)
    if weights and not any(Path(name).suffix in WEIGHT_SUFFIXES for name in files):
        raise ValueError(f"model folder {str(folder)!r} holds no weight file ({', '.join(WEIGHT_SUFFIXES)})")
    absolute = Path(os.path.abspath(folder))
    revision = absolute.name if absolute.parent.name == "snapshots" else None
    return {"revision": revision, "files": files}


def model_folder(model: str | Path, revision: str | None = None, subfolder: str | None = None) -> Path | None:
    """The local folder of ``model`` (its ``subfolder``): itself when it is one, else the cached snapshot of a Hub
    id at ``revision`` (None when the Hub id is not in the cache)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path / subfolder if subfolder else path
    from transformers.utils import cached_file

    location = {"revision": revision or "main", "subfolder": subfolder or ""}
    for name in ("config.json", "tokenizer_config.json"):  # a tokenizer's repo may have no config.json
        try:
            found = cached_file(str(model), name, local_files_only=True, **location)
        except (OSError, ValueError):
            continue
        if found:
            return Path(found).parent
    return None


def fingerprint_changes(old: Any, new: Any) -> list[str]:
    """What differs between two fingerprints, one phrase per file (empty when they are equal)."""
    if old == new:
        return []
    if not isinstance(old, dict):
        return ["the file records no fingerprint of its weights (an older format), so they cannot be checked"]
    if not isinstance(new, dict):
        return ["the model's weights cannot be fingerprinted (no local copy)"]
    changes = []
    if old.get("revision") != new.get("revision"):
        changes.append(f"revision: file has {old.get('revision')!r}, this model {new.get('revision')!r}")
    old_files, new_files = old.get("files") or {}, new.get("files") or {}
    for name in sorted(set(old_files) | set(new_files)):
        if name not in new_files:
            changes.append(f"{name}: gone from the model folder")
        elif name not in old_files:
            changes.append(f"{name}: new in the model folder")
        elif old_files[name] != new_files[name]:
            fields = sorted(
                k
                for k in set(old_files[name]) | set(new_files[name])
                if old_files[name].get(k) != new_files[name].get(k)
            )
            changes.append(f"{name}: {', '.join(fields)} changed")
    return changes
