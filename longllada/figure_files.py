"""Figures written by `ppl-plot` and `niah-plot`: marked as ours in the file's own metadata, and never written
over a file that is not.

Each format that matplotlib writes with a metadata field carries ``longllada COMMAND`` there: PNG a ``tEXt``
chunk ``Software``, SVG the Dublin Core creator (``metadata/RDF/Work/creator/Agent/title``), PDF ``/Creator`` in
the document information dictionary that the trailer names, PostScript and EPS the ``%%Creator:`` comment of the
header. An existing file is ours only when that field, read from the format's structure, equals the mark of one
of our commands exactly: a file that merely mentions ``longllada`` somewhere in its bytes (a caption, a comment, a
text chunk under another keyword) is not.
"""

from __future__ import annotations

import re
import struct
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

MARK = "longllada"
COMMANDS = ("niah-plot", "ppl-plot", "rope-sweep")  # whose figures replace one another's
# format -> the metadata field matplotlib writes it under
METADATA_FIELDS = {"png": "Software", "pdf": "Creator", "svg": "Creator", "ps": "Creator", "eps": "Creator"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_BYTES = 1 << 16  # a PostScript header's comments come first
_SVG_CREATOR = (
    "{http://www.w3.org/2000/svg}metadata/{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF/"
    "{http://creativecommons.org/ns#}Work/{http://purl.org/dc/elements/1.1/}creator/"
    "{http://creativecommons.org/ns#}Agent/{http://purl.org/dc/elements/1.1/}title"
)
_PDF_INFO = re.compile(rb"trailer\s*<<(?:(?!>>).)*?/Info\s+(\d+)\s+(\d+)\s+R", re.S)


def figure_format(out: str | Path) -> str:
    """The image format of ``out`` from its suffix, refused when it carries no metadata we can mark."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in METADATA_FIELDS:
        raise ValueError(
            f"--out {str(out)!r}: format {suffix or '(none)'!r} is not supported; allowed: {', '.join(METADATA_FIELDS)}"
        )
    return suffix


def figure_mark(command: str) -> str:
    return f"{MARK} {command}"


def figure_metadata(out: str | Path, command: str) -> dict[str, str]:
    """``savefig(metadata=...)`` that marks the figure as written by ``longllada COMMAND``."""
    return {METADATA_FIELDS[figure_format(out)]: figure_mark(command)}


def png_text(data: bytes, keyword: str) -> str | None:
    """The text of the PNG ``tEXt`` chunk named ``keyword`` (None when there is none, or no PNG)."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind == b"tEXt" and b"\0" in body:
            name, _, text = body.partition(b"\0")
            if name == keyword.encode("latin-1"):
                return text.decode("latin-1")
        if kind == b"IEND":
            break
        position += 12 + length
    return None


def svg_creator(data: bytes) -> str | None:
    """The Dublin Core creator of an SVG file's metadata (None when it has none, or is no SVG)."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return None
    if root.tag != "{http://www.w3.org/2000/svg}svg":
        return None
    title = root.find(_SVG_CREATOR)
    return title.text if title is not None else None


def _pdf_string(data: bytes, start: int) -> str | None:
    """The PDF literal string ``( ... )`` at ``data[start]`` (nested parentheses and backslash escapes)."""
    if data[start : start + 1] != b"(":
        return None
    depth, out, position = 0, bytearray(), start
    escapes = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}
    while position < len(data):
        byte = data[position]
        if byte == ord("\\") and position + 1 < len(data):
            following = data[position + 1]
            out += escapes.get(following, bytes([following]))
            position += 2
            continue
        if byte == ord("("):
            depth += 1
            if depth > 1:
                out.append(byte)
        elif byte == ord(")"):
            depth -= 1
            if depth == 0:
                return out.decode("latin-1")
            out.append(byte)
        else:
            out.append(byte)
        position += 1
    return None


def pdf_creator(data: bytes) -> str | None:
    """``/Creator`` of the document information dictionary named by a PDF's (last) trailer."""
    if not data.startswith(b"%PDF-"):
        return None
    trailers = list(_PDF_INFO.finditer(data))
    if not trailers:
        return None
    number, generation = trailers[-1].group(1), trailers[-1].group(2)
    found = re.search(rb"(?:^|[\r\n])" + number + rb"\s+" + generation + rb"\s+obj\s*<<", data)
    if found is None:
        return None
    end = data.find(b"endobj", found.end())
    info = data[found.end() : end if end >= 0 else len(data)]
    creator = re.search(rb"/Creator\s*(?=\()", info)
    return _pdf_string(info, creator.end()) if creator else None


def postscript_creator(data: bytes) -> str | None:
    """The ``%%Creator:`` comment of a PostScript (or EPS) file's header (before ``%%EndComments``)."""
    if not data.startswith(b"%!PS-Adobe-"):
        return None
    for line in data[:HEADER_BYTES].splitlines()[1:]:
        if line.startswith(b"%%Creator:"):
            return line[len(b"%%Creator:") :].strip().decode("latin-1")
        if line.startswith(b"%%EndComments") or not line.startswith(b"%"):
            return None
    return None


def figure_creator(path: str | Path) -> str | None:
    """The metadata field ``longllada`` marks its figures with, read from the file's format (see the module)."""
    kind = figure_format(path)
    data = Path(path).read_bytes()
    if kind == "png":
        return png_text(data, METADATA_FIELDS["png"])
    if kind == "svg":
        return svg_creator(data)
    if kind == "pdf":
        return pdf_creator(data)
    return postscript_creator(data)


def is_our_figure(path: str | Path) -> bool:
    """Whether the file at ``path`` is a figure one of our plot commands wrote (its metadata field, exactly)."""
    return figure_creator(path) in {figure_mark(command) for command in COMMANDS}


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
        if path.stat().st_size > 0 and not is_our_figure(path):
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
