"""The docs, code and comments speak of the software, not of how it was made: no task-tracker numbers, no words
for the people or runs that wrote it, no paths of the machines it was written on. Measurement logs and data files
(what programs printed) are left as they are."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = {".md", ".py", ".sh", ".yaml", ".toml", ".cfg"}
SKIPPED = ("benchmarks/results/", "longllada/data/", "tests/fixtures/")
# Spelled in pieces so that this file does not name them itself.
WORDS = re.compile(
    r"(?i:(?<![\w.])("
    + "|".join(["iss" + r"ues?", "integ" + "rator", "help" + r"ers?", "sess" + r"ions?"])
    + r")(?![\w.])|"
    + "sp"
    + r"ec §|"
    + "dev"
    + r"ice (?:call|command|budget))|"
    + "/"
    + "work/|"
    + r"\.lib"
    + "rary/"
)
# Technical senses that stay: pytest's fixture scope and an HTTP client's connection pool.
ALLOWED = re.compile(r'scope="session"|HTTP session|requests\.Session')


def text_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO).as_posix()
        if any(part.startswith(".") for part in path.relative_to(REPO).parts) or relative.startswith(SKIPPED):
            continue
        if path.is_file() and (path.suffix in SUFFIXES or path.name == "Makefile"):
            files.append(path)
    return files


def test_no_words_about_how_the_project_is_developed():
    found = []
    for path in text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if WORDS.search(ALLOWED.sub("", line)):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert len(text_files()) > 100
    assert found == []
