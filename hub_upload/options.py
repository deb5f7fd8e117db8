"""Parsing of the command-line values of `longllada upload`: rope-scaling specs, sizes, repo ids.

Kept free of heavy imports: `longllada --help` builds the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The parser's forms (modeling_longllada.rope_longllada.ROPE_SCALING_STRINGS), named here without importing the
# package (torch), so that --help stays instant.
ROPE_SCALING_FORMS = (
    "ntk:FACTOR", "ntk-target:LENGTH", "ntk-per-length", "diffusion-ntk:LENGTH", "linear:FACTOR", "yarn:FACTOR",
    "dynamic:FACTOR", "llama3:FACTOR", "longrope:FILE.json[:LENGTH]", "longrope:MODEL[:LENGTH]", "a JSON object",
    "none",
)  # fmt: skip
# Decimal units, as the Hub and transformers' `max_shard_size` count them; the binary ones for completeness.
SIZE_UNITS = {
    "": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}  # fmt: skip
# The Hub takes files of at most 50 GB (its storage limits; 20 GB recommended): a larger shard cannot be pushed.
MAX_SHARD_SIZE = 50 * 10**9
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class RopeScalingChoice:
    """One requested variant: the ``rope_scaling`` to write (None: no scaling) and its default branch.

    ``keep_source`` marks the variant used when no ``--rope-scaling`` is given: the source's own setting stays.
    """

    spec: str
    rope_scaling: dict[str, Any] | None
    branch: str
    keep_source: bool = False


KEEP_SOURCE = RopeScalingChoice(spec="(as in SOURCE)", rope_scaling=None, branch="main", keep_source=True)


def parse_rope_scaling(text: str) -> RopeScalingChoice:
    """A ``--rope-scaling`` value through the one parser (``ntk:4``, ``ntk-target:16k``, ``ntk-per-length``,
    ``yarn:4``, ``none``, ...), with the branch it is published on by default (``ntk-4``, ``ntk-target-16384``,
    ``yarn-4``, ``main``)."""
    from modeling_longllada.rope_longllada import branch_name
    from modeling_longllada.rope_longllada import parse_rope_scaling as parse_spec

    spec = parse_spec(text, field="--rope-scaling")
    return RopeScalingChoice(text.strip(), spec, branch_name(spec))


def parse_size(text: str) -> int:
    """``5GB`` -> 5_000_000_000 bytes; also ``500MB``, ``2GiB``, ``1000`` (bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    size = int(float(match.group(1)) * SIZE_UNITS[unit]) if match and unit in SIZE_UNITS else 0
    if not 1 <= size <= MAX_SHARD_SIZE:  # a fraction of a byte ("0.5") included
        raise ValueError(
            f"--shard-size {text!r} is not a size; allowed: a positive number with a unit in "
            f"{sorted(u for u in SIZE_UNITS if u)} (e.g. 5GB), or bytes, from 1 byte to 50GB (the Hub's largest file)"
        )
    return size


def check_repo_id(repo_id: str, field: str = "--repo-id") -> str:
    """A Hub model id with its namespace: ``ORG/NAME``."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART.match(p) for p in parts) or len(repo_id) > 96:
        raise ValueError(
            f"{field}={repo_id!r} is not a Hub repo id; allowed: ORG/NAME (letters, digits, '.', '_', '-')"
        )
    if any(p.endswith(".git") or ".." in p or "--" in p for p in parts):
        raise ValueError(f"{field}={repo_id!r} may not contain '..' or '--' or end with '.git'")
    return repo_id


def human_size(num_bytes: int) -> str:
    """Decimal units, as the Hub shows file sizes."""
    size = float(num_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
