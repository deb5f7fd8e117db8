"""Files a command writes into a folder, replaced later only when the command wrote them and they are unchanged.

A record file in the folder (``longllada_tables.json`` for ``longllada table``, ``rope_sweep.json`` for ``longllada
rope-sweep``) names the command (``written_by``) and lists each file it wrote with its SHA-256. A file of the
folder is the command's own when the record lists it with the digest it has now; any other file at a name the
command would write is refused (ValueError) before anything is written, and a record that another program wrote is
neither read as ours nor replaced. Files are written atomically (a temporary file in the folder, then a rename).

Standard library only: the command line imports it before torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` through a temporary file in the same folder and a rename (readable as an ordinary file
    of this user)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class OwnedFolder:
    """The files ``written_by`` (a command, ``longllada table``) wrote in ``out``, by its record ``record_file``.

    ``flag`` names the argument that gave the folder in messages. ``extra`` holds the record's other fields (what
    the command wants to keep beside the files: its settings, its command line)."""

    def __init__(self, out: str | os.PathLike, record_file: str, written_by: str, flag: str = "--out") -> None:
        self.out = Path(out).expanduser()
        self.record_file, self.written_by, self.flag = record_file, written_by, flag
        self.files: dict[str, str] = {}
        self.extra: dict[str, Any] = {}
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"{flag} {self.out}: is a file; allowed: a folder (created if absent)")
        self._read()

    def _read(self) -> None:
        record = self._record()
        if record is not None:
            self.files = {str(name): str(digest) for name, digest in record["files"].items()}
            self.extra = {key: value for key, value in record.items() if key not in ("written_by", "files")}

    def _record(self) -> dict[str, Any] | None:
        """The record in the folder now (None when there is none); ValueError when another program wrote it."""
        path = self.out / self.record_file
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if (
            not isinstance(record, dict)
            or record.get("written_by") != self.written_by
            or not isinstance(record.get("files"), dict)
        ):
            raise ValueError(
                f"{self.flag} {self.out}: {self.record_file} there was not written by `{self.written_by}`; it is left "
                "untouched: give a new " + self.flag
            )
        return record

    def owns(self, name: str) -> bool:
        """Whether ``name`` (relative to the folder) is absent, or a file this command wrote, unchanged since."""
        path = self.out / name
        if not path.exists():
            return True
        return path.is_file() and self.files.get(name) == sha256(path.read_bytes())

    def check(self, names: Iterable[str]) -> None:
        """Refuse (ValueError) when one of ``names`` exists and is not a file this command wrote, unchanged since."""
        for name in names:
            if not self.owns(name):
                raise ValueError(
                    f"{self.flag} {self.out}: {name} exists and was not written by `{self.written_by}` (or was changed "
                    f"since); it is left untouched: give a new {self.flag}, or move {name} away"
                )

    def write(self, name: str, data: bytes) -> Path:
        """Write ``name`` (checked first) and record it; the record itself is saved by :meth:`save`."""
        self.check([name])
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
        self.files[name] = sha256(data)
        return path

    def save(self) -> None:
        """Write the record (after checking again that whatever is there is ours)."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._record()  # a record another program put there since is refused, not replaced
        record = {"written_by": self.written_by, **self.extra, "files": dict(sorted(self.files.items()))}
        data = (json.dumps(record, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
        write_atomically(self.out / self.record_file, data)
