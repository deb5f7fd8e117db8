"""Figures written by `ppl-plot` and `niah-plot`: marked as ours in the file's own metadata, and never written
over a file that is not.

Each format that matplotlib writes with a metadata field carries ``longllada`` there (PNG ``Software``, PDF / SVG
/ PostScript ``Creator``), stored uncompressed, so an existing file is recognised by that mark in its bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

MARK = "longllada"
# format -> the metadata field matplotlib writes it under
METADATA_FIELDS = {"png": "Software", "pdf": "Creator", "svg": "Creator", "ps": "Creator", "eps": "Creator"}


def figure_format(out: str | Path) -> str:
    """The image format of ``out`` from its suffix, refused when it carries no metadata we can mark."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in METADATA_FIELDS:
        raise ValueError(
            f"--out {str(out)!r}: format {suffix or '(none)'!r} is not supported; allowed: {', '.join(METADATA_FIELDS)}"
        )
    return suffix


def figure_metadata(out: str | Path, command: str) -> dict[str, str]:
    """``savefig(metadata=...)`` that marks the figure as written by ``longllada COMMAND``."""
    return {METADATA_FIELDS[figure_format(out)]: f"{MARK} {command}"}


def check_figure_out(out: str | Path, command: str) -> Path:
    """Refuse ``--out`` before any work: a folder, a place that cannot be written, an unsupported format, or an
    existing file that ``longllada`` did not write."""
    path = Path(out).expanduser()
    figure_format(path)
    if path.is_dir():
        raise ValueError(f"--out {path}: is a folder; allowed: an image file")
    if path.exists():
        if not path.is_file():
            raise ValueError(f"--out {path}: is not a regular file")
        ours = f"{MARK} ".encode() in path.read_bytes()  # PDF keeps its metadata at the end
        if not ours and path.stat().st_size > 0:
            raise ValueError(
                f"--out {path}: exists and was not written by `longllada {command}`; it is left untouched: give a "
                "new --out"
            )
        return path
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"--out {path}: {folder} is a file, not a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as err:
        raise ValueError(f"--out {path}: cannot write in {path.parent} ({err.strerror or err})") from None
    return path
