"""The results file of `longllada ppl`: JSON lines, a metadata record first, then one record per chunk.

A file is ours when its first line is a whole metadata record (``"record": "meta"``); no other file is ever
written over, ``--overwrite`` included. The metadata line is written to a temporary file and renamed into place,
so a file holding part of it is never ours. Chunk lines are appended and flushed one at a time; a kill can only
cut the last line short, and a resume drops that line (it has no final newline, or does not parse) before
appending.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from longllada.output_lock import OutputLock
from longllada.perplexity.fingerprint import fingerprint_changes

FORMAT = 2  # 2: the metadata holds the model's fingerprint (weights, revision)


@dataclass
class PerplexityCurve:
    """A run: its metadata and one row per finished chunk (``index``, ``length``, ``tokens``, ``value``,
    ``ppl``; ``stderr`` for the ELBO estimator)."""

    meta: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def lengths(self) -> list[int]:
        return [row["length"] for row in self.rows]

    @property
    def ppl(self) -> list[float]:
        return [row["ppl"] for row in self.rows]

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.meta.get("chunks")


def _parse_lines(path: Path, data: bytes | None = None) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    """Parse a results file: (meta or None, chunk rows in order, byte length of the well-formed prefix).

    The last line, when a kill cut it short (no final newline, or not JSON), is not part of the prefix. Raises
    when the first line is not a metadata record, or when a whole line is not the next chunk's record."""
    data = path.read_bytes() if data is None else data
    meta, rows, good = None, [], 0
    lines = data.splitlines(keepends=True)
    for number, raw in enumerate(lines, start=1):
        if not raw.endswith(b"\n"):
            break
        try:
            record = json.loads(raw)
        except ValueError:
            if meta is None or number < len(lines):
                raise ValueError(f"{path}: line {number} is not a JSON record of a `longllada ppl` run") from None
            break
        if meta is None:
            if not isinstance(record, dict) or record.get("record") != "meta":
                raise ValueError(f"{path}: the first line is not the metadata of a `longllada ppl` run")
            meta = record
        else:
            _check_row(path, number, record, len(rows))
            rows.append(record)
        good += len(raw)
    return meta, rows, good


def _check_row(path: Path, number: int, record: Any, index: int) -> None:
    """A chunk record as the curve writes it: the next index, and a length, token count, value and ppl."""
    if not isinstance(record, dict) or record.get("record") != "chunk":
        raise ValueError(f'{path}: line {number} is not a chunk record ("record": "chunk")')
    if record.get("index") != index:
        raise ValueError(f"{path}: line {number} has index {record.get('index')!r}; the next chunk is {index}")
    for field in ("length", "tokens", "value", "ppl"):
        value = record.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: line {number} (chunk {index}) has no number {field!r}, got {value!r}")


def _is_ours(data: bytes) -> bool:
    """Whether ``data`` starts with a whole metadata line of a `longllada ppl` run."""
    first, newline, _ = data.partition(b"\n")
    try:
        record = json.loads(first) if newline else None
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("record") == "meta"


def read_run(path: str | Path) -> PerplexityCurve:
    """Read a ``longllada ppl`` results file (a partly written one too: its finished chunks)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such results file: {str(path)!r}")
    meta, rows, _ = _parse_lines(path)
    if meta is None:
        raise ValueError(f"{path}: empty or not a `longllada ppl` results file (no metadata line)")
    return PerplexityCurve(meta=meta, rows=rows)


def same_run(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a run described by ``new`` continues the file's (``old``): equal metadata, where the model's folder
    may differ when its files are the same ones (a moved or another checkout, a copied folder, a committed file
    with the folder made relative): the fingerprint, not the path, is what the curve depends on."""
    if old == new:
        return True
    fingerprint = old.get("fingerprint")
    if not isinstance(fingerprint, dict) or not fingerprint.get("files") or fingerprint != new.get("fingerprint"):
        return False
    return {k: v for k, v in old.items() if k != "model"} == {k: v for k, v in new.items() if k != "model"}


def _meta_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    details = []
    for key in changed:
        if key == "fingerprint":
            details += fingerprint_changes(old.get(key), new.get(key))
        else:
            details.append(f"{key}: file has {old.get(key)!r}, this run {new.get(key)!r}")
    return "; ".join(details)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class ResultsFile:
    """``--out``: checked when made (before any model loads), then opened with the run's metadata.

    ``ResultsFile(out, overwrite)`` takes the path's lock (:class:`~longllada.output_lock.OutputLock`: a second
    run on the same ``--out`` is refused while this one runs, instead of both appending rows), and refuses a
    folder, a path it cannot write, and any non-empty file that is not a ``longllada ppl`` results file.
    :meth:`check_fingerprint` refuses, before loading, a resume over other weights; :meth:`open` resumes a run
    with equal metadata, or starts the file anew; :meth:`close` (or the object's end) releases the lock."""

    def __init__(self, out: str | Path, overwrite: bool = False) -> None:
        self.path = Path(out).expanduser()
        self._lock = OutputLock(self.path, "longllada ppl")
        self._handle: IO[str] | None = None
        self.overwrite = overwrite
        self.meta: dict[str, Any] | None = None
        self.rows: list[dict[str, Any]] = []
        self._good = 0
        self._inspect()  # a path that is no results file of ours is refused as such, before locking
        self._lock.acquire()
        try:
            self._inspect()  # again: now no other run can change it
        except BaseException:
            self._lock.release()
            raise

    def _refuse(self, why: str) -> ValueError:
        return ValueError(f"--out {self.path}: {why}")

    def _inspect(self) -> None:
        """Read what is at the path now; check that it can be written."""
        path = self.path
        if path.is_dir():
            raise self._refuse("is a folder; allowed: a results file (new, or one of an earlier `longllada ppl` run)")
        if path.exists() and not path.is_file():
            raise self._refuse("is not a regular file")
        if not path.exists():
            parent = path.parent
            for folder in (parent, *parent.parents):
                if folder.exists():
                    if not folder.is_dir():
                        raise self._refuse(f"{folder} is a file, not a folder")
                    break
            try:
                parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".probe"):
                    pass
            except OSError as err:
                raise self._refuse(f"cannot write in {parent} ({err.strerror or err})") from None
            return
        try:
            with path.open("r+b") as handle:
                data = handle.read()
        except OSError as err:
            raise self._refuse(f"cannot be read and written ({err.strerror or err})") from None
        if not data:
            return  # an empty file: nothing to lose
        if not _is_ours(data):
            raise self._refuse(
                "exists and was not written by `longllada ppl` (its first line is not a whole metadata record); "
                "it is left untouched: give a new --out"
            )
        try:
            self.meta, self.rows, self._good = _parse_lines(path, data)
        except ValueError as err:
            if not self.overwrite:
                raise ValueError(f"{err}; the run cannot be resumed: pass --overwrite to replace it") from None
            self.meta = {}

    def check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        """Refuse to resume a run scored with other weights (or another revision) than ``fingerprint``'s."""
        if self.meta is None or self.overwrite:
            return
        changes = fingerprint_changes(self.meta.get("fingerprint"), fingerprint)
        if changes:
            raise self._refuse(
                f"holds a run of other weights ({'; '.join(changes)}); resuming it would mix two models: give a "
                "new --out, or pass --overwrite to replace it"
            )

    def open(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        """Start appending chunk rows for the run described by ``meta``; returns the rows already done."""
        self._inspect()  # again: the file may have changed while the model loaded
        if self.meta is not None and not self.overwrite:
            if not same_run(self.meta, meta):
                raise ValueError(
                    f"--out {self.path} holds a different run ({_meta_changes(self.meta, meta)}); give a new --out, "
                    "or pass --overwrite to replace it"
                )
            with self.path.open("r+b") as handle:
                handle.truncate(self._good)  # drop a line cut short by an interruption
            self._handle = self.path.open("a", encoding="utf-8")
            return list(self.rows)
        # A new file: the metadata line appears whole or not at all.
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            os.chmod(temporary, 0o666 & ~_umask())  # as open() would create it (mkstemp makes it private)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(meta) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.meta, self.rows, self._good = meta, [], 0
        self._handle = self.path.open("a", encoding="utf-8")
        return []

    def append(self, row: dict[str, Any]) -> None:
        """Write one chunk row as one line, flushed (a kill leaves at most this line cut short)."""
        assert self._handle is not None, "open() first"
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file and release its lock."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._lock.release()

    def __del__(self) -> None:  # a run that failed before close() (a model that did not load) frees its lock
        self.close()
