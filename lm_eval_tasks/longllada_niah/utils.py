"""NeedleBench-"origin" single-needle retrieval (LongLLaDA, arXiv 2506.14429) as an lm-eval task: dataset builder and scoring.

lm-eval loads this file by path (``!function utils.x`` in the YAML), so it imports nothing of the project; the
default haystack is found through ``importlib.resources`` on the ``longllada`` package, or beside this folder in
a source checkout.

Every prompt is ``haystack with the needle`` + ``"\\n\\nQuestion: <question>\\nAnswer:"``, measured with the
evaluated model's tokenizer (special tokens included, as the model receives it): within 1% of the requested
length and never over it. The needle sits at the requested depth of the haystack, counted in tokens: at the
nearest sentence boundary when that is within 1% of the length, else at the nearest word boundary.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lm_eval_tasks.grid_metrics import mean_of_scored

# Under lm-eval's logger, whose handler prints INFO (this file is loaded by path, so __name__ is just "utils").
logger = logging.getLogger("lm_eval.longllada_niah")

DEFAULT_CONTEXT_LENGTHS = (2000, 4000, 8000, 16000, 24000, 32000)
DEFAULT_DEPTHS = tuple(range(0, 101, 10))
DEFAULT_NUM_REPEATS = 10
DEFAULT_SEED = 42
DEFAULT_HAYSTACK = "gov_report"
# RULER's "noise" haystack: these five sentences, repeated.
NOISE_HAYSTACK = "noise"
NOISE_SENTENCES = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)
LENGTH_TOLERANCE = 0.01  # of the requested length, for both the prompt length and the needle position
QUESTION_TEMPLATE = "\n\nQuestion: {question}\nAnswer:"
NEEDLES_FILE = Path(__file__).resolve().with_name("needles.jsonl")
GOV_REPORT_NAME = "gov_report_001.txt"
# A sentence ends at . ! or ? followed by whitespace and a capital letter or an opening quote/bracket
# ("fig. 8)" and "U.S. law" stay whole more often than with a plain split on the full stop).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“‘(\[])")
_MAX_FILL_ATTEMPTS = 8
_MAX_SKIPPED_WORDS = 256


# -- scoring ----------------------------------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1) between two strings.

    Bit-parallel (Myers 1999, J. ACM 46(3); Hyyrö 2001 for the distance between whole strings): one column of the
    dynamic-programming table at a time, as bit masks of its vertical +1/-1 steps (one bit per character of the
    shorter string, in Python's unbounded integers), so each character of the longer string costs a dozen integer
    operations instead of a Python loop over the shorter one (about 25x faster on answers of ~100 characters,
    which the needle task scores by the thousand)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    matches: dict[str, int] = {}  # character -> the positions of b where it occurs
    for i, char in enumerate(b):
        matches[char] = matches.get(char, 0) | (1 << i)
    full, last = (1 << len(b)) - 1, 1 << (len(b) - 1)
    rises, falls, distance = full, 0, len(b)  # the first column: every step down adds 1
    for char in a:
        match = matches.get(char, 0)
        vertical = match | falls
        horizontal = (((match & rises) + rises) ^ rises) | match
        up = falls | ~(horizontal | rises)  # horizontal steps of +1 (Python's ~ stays a negative integer: masked below)
        down = rises & horizontal  # horizontal steps of -1
        if up & last:
            distance += 1
        elif down & last:
            distance -= 1
        up = (up << 1) | 1  # the top row is 0, 1, 2, ...: its step is always +1
        down <<= 1
        rises = (down | ~(vertical | up)) & full
        falls = up & vertical
    return distance


def needle_score(prediction: str, needle: str, keyword: str) -> float:
    """NeedleBench's score: 100 when the keyword is in the prediction (case-insensitive), else
    0.2 × 100 × (1 − edit distance / longer length) between the stripped prediction and the needle."""
    if keyword.lower() in prediction.lower():
        return 100.0
    prediction, needle = prediction.strip(), needle.strip()
    longest = max(len(prediction), len(needle))
    if longest == 0:
        return 0.0
    return 0.2 * 100.0 * (1.0 - levenshtein(prediction, needle) / longest)


def cell_metric_name(context_length: int, depth_percent: float) -> str:
    """Metric name of one (length, depth) cell, e.g. ``score_len4000_depth30`` (``12.5`` % becomes ``12p5``)."""
    return f"score_len{int(context_length)}_depth{f'{float(depth_percent):g}'.replace('.', 'p')}"


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """The overall ``score`` and this document's own cell metric."""
    score = needle_score(results[0] if results else "", doc["needle"], doc["keyword"])
    return {"score": score, cell_metric_name(doc["context_length"], doc["depth_percent"]): score}


def _task_class() -> type:
    from lm_eval.api.metrics import mean
    from lm_eval.api.task import ConfigurableTask

    from lm_eval_tasks.run_record import record_run

    class NeedleTask(ConfigurableTask):
        """``longllada_niah``: every document reports every cell of the grid, its score in its own cell and None
        in the others, and a cell averages the scores it got (:func:`mean_of_scored`). Every process of a
        data-parallel run (``accelerate launch``) thus holds the same metric names, which lm-eval's gathering
        of the processes' metrics needs; the cells follow the grid of ``--metadata``, none is declared."""

        def __init__(self, config: dict[str, Any] | None = None) -> None:
            super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"})
            cells = sorted({(int(d["context_length"]), float(d["depth_percent"])) for d in self.eval_docs})
            self.cell_names = [cell_metric_name(length, depth) for length, depth in cells]
            repeats = {int(d["repeat"]) for d in self.eval_docs}
            grid = {"context_lengths": sorted({length for length, _ in cells}),
                    "depths": sorted({depth for _, depth in cells}), "num_repeats": len(repeats)}  # fmt: skip
            record_run(self, longllada_grid=grid)

        def process_results(self, doc: dict[str, Any], results: list[str]) -> dict[str, float | None]:
            own = process_results(doc, results)
            return {"score": own["score"], **{name: own.get(name) for name in self.cell_names}}

        def aggregation(self) -> dict[str, Any]:
            return {"score": mean, **dict.fromkeys(self.cell_names, mean_of_scored)}

        def higher_is_better(self) -> dict[str, bool]:
            return dict.fromkeys(["score", *self.cell_names], True)

    return NeedleTask


def __getattr__(name: str) -> Any:
    # The class is built on first use (the YAML's ``class: !function utils.NeedleTask``), so that this module
    # imports without lm-eval (the project's tools and tests use its functions directly).
    if name == "NeedleTask":
        return _task_class()
    raise AttributeError(name)


# -- inputs -----------------------------------------------------------------------------------------------------
def load_needles(path: str | Path = NEEDLES_FILE) -> list[dict[str, str]]:
    """Needles of a JSONL file: ``subject``, ``keyword`` (one word), ``needle`` ("The {subject} is {keyword}.")
    and ``question`` ("What is the {subject}?")."""
    needles = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        subject, keyword = record.get("subject"), record.get("keyword")
        if not subject or not keyword or len(keyword.split()) != 1:
            raise ValueError(f"{path}:{number}: needs 'subject' and a one-word 'keyword', got {record!r}")
        expected = {"needle": f"The {subject} is {keyword}.", "question": f"What is the {subject}?"}
        for field, value in expected.items():
            if record.get(field, value) != value:
                raise ValueError(f"{path}:{number}: {field}={record[field]!r}; the fixed form is {value!r}")
        needles.append({"subject": subject, "keyword": keyword, **expected})
    if not needles:
        raise ValueError(f"{path}: no needles found")
    return needles


def default_haystack_path() -> Path:
    """The shipped public-domain report: package data of ``longllada``, or its source folder beside this one."""
    try:
        from importlib.resources import files

        resource = files("longllada").joinpath("data", GOV_REPORT_NAME)
        if resource.is_file():
            return Path(str(resource))
    except (ModuleNotFoundError, TypeError):
        pass
    source_copy = Path(__file__).resolve().parents[2] / "longllada" / "data" / GOV_REPORT_NAME
    if source_copy.is_file():
        return source_copy
    raise FileNotFoundError(
        f"the default haystack {GOV_REPORT_NAME} was not found (install the longllada package, or pass "
        "--metadata haystack=<path to .txt file or folder> or haystack=noise)"
    )


def split_sentences(text: str) -> list[str]:
    """Sentences of a text with whitespace normalised to single spaces."""
    text = " ".join(text.split())
    return [sentence for sentence in _SENTENCE_END.split(text) if sentence]


def load_haystack_sentences(haystack: str | Path | None = None) -> tuple[list[str], bool]:
    """Sentences of the haystack and whether to shuffle them.

    ``haystack``: None or ``"gov_report"`` (the shipped report), ``"noise"`` (RULER's filler, not shuffled), or
    a path to a .txt file or to a folder of .txt files (read in name order).
    """
    if haystack is None or str(haystack) == DEFAULT_HAYSTACK:
        return split_sentences(default_haystack_path().read_text(encoding="utf-8")), True
    if str(haystack) == NOISE_HAYSTACK:
        return list(NOISE_SENTENCES), False
    path = Path(haystack).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise ValueError(f"haystack={str(haystack)!r} is a folder without .txt files; give one that has some")
        text = "\n".join(file.read_text(encoding="utf-8") for file in files)
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        raise ValueError(
            f"haystack={str(haystack)!r} is not a file or folder; allowed: {DEFAULT_HAYSTACK!r}, "
            f"{NOISE_HAYSTACK!r}, or a path to a .txt file or a folder of .txt files"
        )
    sentences = split_sentences(text)
    if not sentences:
        raise ValueError(f"haystack={str(haystack)!r} holds no text")
    return sentences, True


def _int_list(field: str, value: Any, default: Sequence[int], minimum: int, maximum: int | None = None) -> list[int]:
    """``value`` (a list, a single number, or a string of numbers) as whole numbers within [minimum, maximum]
    (None: the tasks' largest count), each checked by the tasks' one check (``check_count``)."""
    from lm_eval_tasks.metadata_keys import MAX_COUNT, check_count

    if value is None:
        return list(default)
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value.strip("[]() ")) if part]
    elif isinstance(value, (int, float)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{field}={value!r} is not allowed; allowed: a non-empty list of integers >= {minimum}")
    return [check_count(field, number, minimum, MAX_COUNT if maximum is None else maximum) for number in value]


def _depth_list(value: Any) -> list[float]:
    if value is None:
        return [float(d) for d in DEFAULT_DEPTHS]
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value.strip("[]() ")) if part]
    elif isinstance(value, (int, float)):
        value = [value]
    try:
        depths = [float(d) for d in value if not isinstance(d, bool)]
    except (TypeError, ValueError):
        raise ValueError(f"depths={value!r} is not a list of numbers; allowed: percentages in [0, 100]") from None
    if not depths or len(depths) != len(value) or any(not 0.0 <= d <= 100.0 for d in depths):  # NaN fails too
        raise ValueError(f"depths={value!r} is not allowed; allowed: a non-empty list of percentages in [0, 100]")
    return depths


def resolve_tokenizer(metadata: dict[str, Any]) -> Any:
    """The tokenizer named (or given) under ``tokenizer``, ``pretrained`` or ``model`` in the merged metadata,
    loaded with the user's ``trust_remote_code`` (``lm_eval_tasks.model_tokenizer``)."""
    from lm_eval_tasks.model_tokenizer import TOKENIZER_KEYS, metadata_tokenizer

    tokenizer = metadata_tokenizer(metadata)
    if tokenizer is not None:
        return tokenizer
    raise ValueError(
        "longllada_niah needs the evaluated model's tokenizer to size its prompts: give --model_args "
        "pretrained=<model> (or tokenizer=<name>), or --metadata tokenizer=<name>; none of "
        f"{list(TOKENIZER_KEYS)} was found"
    )


# -- building prompts -------------------------------------------------------------------------------------------
def encode_many(tokenizer: Any, texts: Sequence[str], special: bool) -> list[list[int]]:
    """Token ids of many texts, as ``tokenizer(text, add_special_tokens=special)["input_ids"]`` gives them.

    A fast tokenizer's Rust backend encodes them in chunks on a thread pool (it releases the GIL; lm-eval turns
    the backend's own parallelism off with ``TOKENIZERS_PARALLELISM=false``); other tokenizers encode in one call.
    """
    texts = list(texts)
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    # A backend left with padding or truncation switched on would not give the plain ids.
    if backend is None or backend.padding is not None or backend.truncation is not None or len(texts) == 1:
        return list(tokenizer(texts, add_special_tokens=special)["input_ids"])
    workers = max(1, min(len(texts), os.cpu_count() or 1, 32))
    size = max(1, math.ceil(len(texts) / (4 * workers)))
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)]

    # Without character offsets when the backend can (tokenizers >= 0.20): the ids are the same, 15-25% sooner.
    encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)

    def encode(chunk: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in encode_batch(chunk, add_special_tokens=special)]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [ids for chunk_ids in pool.map(encode, chunks) for ids in chunk_ids]


class _TokenCounter:
    """Token counts with one tokenizer; word pieces (" word") are counted once and cached."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._pieces: dict[str, int] = {}
        bare, full = self.ids("x"), self.ids("x", special=True)
        # Where the tokenizer puts its special tokens (BOS in front for LLaDA's): found around a one-word text.
        starts = [i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare]
        self.prefix = starts[0] if starts else len(full) - len(bare)
        self.suffix = len(full) - len(bare) - self.prefix

    def ids(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def count(self, text: str, special: bool = False) -> int:
        if not text:
            return self.prefix + self.suffix if special else 0
        return len(self.ids(text, special))

    def piece_counts(self, words: Sequence[str]) -> list[int]:
        missing = sorted({word for word in words if word not in self._pieces})
        for start in range(0, len(missing), 4096):
            batch = missing[start : start + 4096]
            encoded = encode_many(self.tokenizer, [" " + word for word in batch], special=False)
            self._pieces.update((word, len(ids)) for word, ids in zip(batch, encoded))
        return [self._pieces[word] for word in words]


def _word_stream(sentences: Sequence[str], shuffle: bool, rng: random.Random) -> Iterator[tuple[str, bool]]:
    """Endless (word, ends a sentence) pairs: the sentences in a fresh shuffled order on every pass."""
    order = list(range(len(sentences)))
    while True:
        if shuffle:
            rng.shuffle(order)
        for index in order:
            words = sentences[index].split()
            for position, word in enumerate(words):
                yield word, position == len(words) - 1


class _Haystack:
    """The haystack of one (length, repeat): a word stream that is cut to any token budget (cached per budget).
    Words are counted by their pieces (" word", cached over the whole grid), so a cut needs no tokenisation."""

    def __init__(self, sentences: Sequence[str], shuffle: bool, rng: random.Random, counter: _TokenCounter):
        self._stream = _word_stream(sentences, shuffle, rng)
        self._words: list[str] = []
        self._ends: list[bool] = []
        self._costs: list[int] = []
        self._cumulative: list[int] = [0]
        self._counter = counter
        self._cuts: dict[int, tuple[list[str], list[bool], list[int]]] = {}

    def _ensure(self, count: int) -> None:
        while len(self._words) < count:
            chunk = list(itertools.islice(self._stream, max(1024, count - len(self._words))))
            self._words.extend(word for word, _ in chunk)
            self._ends.extend(end for _, end in chunk)
            costs = self._counter.piece_counts([word for word, _ in chunk])
            self._costs.extend(costs)
            total = self._cumulative[-1]
            self._cumulative.extend(total + running for running in itertools.accumulate(costs))

    def cut(self, budget: int) -> tuple[list[str], list[bool], list[int]]:
        """Words whose pieces add up to at most ``budget`` tokens, as close to it as the stream allows: whole
        words in order, then, once one does not fit, later words that still fit (a few words are skipped at the
        very end so that a tight budget is met). Returns (words, ends a sentence, prefix token counts)."""
        if budget in self._cuts:
            return self._cuts[budget]
        while self._cumulative[-1] <= budget:
            self._ensure(2 * len(self._words) + 1024)
        # The whole words in order: every word before the first that does not fit.
        taken = bisect.bisect_right(self._cumulative, budget) - 1
        words, ends, cumulative = self._words[:taken], self._ends[:taken], self._cumulative[: taken + 1]
        total, index, skipped = cumulative[-1], taken, 0
        while total < budget and skipped <= _MAX_SKIPPED_WORDS:
            self._ensure(index + 1)
            cost = self._costs[index]
            if total + cost <= budget:
                words.append(self._words[index])
                ends.append(self._ends[index])
                total += cost
                cumulative.append(total)
            else:
                skipped += 1
            index += 1
        self._cuts[budget] = (words, ends, cumulative)
        return self._cuts[budget]


def _needle_layouts(
    words: Sequence[str], ends: Sequence[bool], cumulative: Sequence[int], depth: float, tolerance: float
) -> Iterator[tuple[list[str], int, int]]:
    """Candidate (word order, index of the needle, estimated tokens before it) triples, best first, estimated
    from the word pieces:

    1. the sentence boundary nearest the depth, when within ``tolerance`` tokens of it;
    2. the nearest word boundary (either side);
    3. when words are too long for the tolerance (short contexts): the word boundary just before the depth
       with one later word, of the missing size, moved in front of the needle (one word out of place).
    """
    target = depth / 100.0 * cumulative[-1]
    right = bisect.bisect_left(cumulative, target)
    # Sentence ends near the target only (a sentence is far shorter than the tolerance window searched).
    low, high = max(0, right - 2048), min(len(words), right + 2048)
    boundaries = [i + 1 for i in range(max(0, low - 1), high) if ends[i]]
    boundaries = [i for i in boundaries if low <= i <= high] + [0, len(words)]
    sentence = min(boundaries, key=lambda i: (abs(cumulative[i] - target), i))
    if abs(cumulative[sentence] - target) <= tolerance:
        yield list(words), sentence, cumulative[sentence]
    nearest = min(
        (i for i in (right - 1, right) if 0 <= i < len(cumulative)), key=lambda i: abs(cumulative[i] - target)
    )
    yield list(words), nearest, cumulative[nearest]
    if abs(cumulative[nearest] - target) <= tolerance:
        return
    before = max(0, right - 1)
    missing = target - cumulative[before]
    costs = [cumulative[i + 1] - cumulative[i] for i in range(before, min(len(words), before + 200))]
    movable = sorted(range(before, before + len(costs)), key=lambda j: (abs(costs[j - before] - missing), j))
    for j in movable[:3]:
        order = list(words[:before]) + [words[j]] + list(words[before:j]) + list(words[j + 1 :])
        yield order, before + 1, cumulative[before] + costs[j - before]


def _assemble(words: Sequence[str], index: int, needle: str, question: str) -> tuple[str, str, str]:
    """(prompt, haystack text before the needle, haystack text after it)."""
    before, after = " ".join(words[:index]), " ".join(words[index:])
    context = " ".join(part for part in (before, needle, after) if part)
    return context + QUESTION_TEMPLATE.format(question=question), before, after


def _find(ids: Sequence[int], part: Sequence[int], near: int, reach: int) -> int | None:
    """Index of ``part`` in ``ids`` nearest ``near`` (within ``reach``), or None."""
    if not part:
        return None
    for offset in range(reach + 1):
        for start in {near - offset, near + offset}:
            if 0 <= start <= len(ids) - len(part) and ids[start] == part[0] and ids[start : start + len(part)] == part:
                return start
    return None


class _Cell:
    """One (repeat, depth) of a length: its haystack row, needle and token budget; the needle layouts of the
    current budget, tried in order; and what the tokenizer measured of the best one so far."""

    def __init__(self, repeat: int, depth: float, stack: _Haystack, needle: dict[str, str], budget: int):
        self.repeat, self.depth, self.stack, self.needle, self.budget = repeat, depth, stack, needle, budget
        self.layouts: list[tuple[list[str], int, int]] = []
        self.tried = 0
        self.best: tuple[float, str, int, int, int] | None = None  # (error, prompt, tokens, position, haystack)
        self.prompt_tokens = 0

    def lay_out(self, tolerance: float) -> None:
        """The next layout to measure: a fresh list after a budget change (the first's estimated position is
        within the tolerance when any is), else the next of the list."""
        if not self.layouts:
            words, ends, cumulative = self.stack.cut(self.budget)
            self.layouts = list(_needle_layouts(words, ends, cumulative, self.depth, tolerance))
            self.tried, self.best = 0, None
        order, index, self.estimated_position = self.layouts[self.tried]
        self.prompt, self.before, self.after = _assemble(order, index, self.needle["needle"], self.needle["question"])

    def change_budget(self, budget: int) -> None:
        self.budget, self.layouts = budget, []


def _measure(cells: list[_Cell], counter: _TokenCounter, length: int, lowest: int, tolerance: float) -> list[_Cell]:
    """Tokenise the cells' prompts (one batched call) and keep, per cell, the measured layout with the needle
    nearest its depth. Returns the cells to measure again: a prompt outside [lowest, length] (its budget
    corrected by the miss), or a needle off by more than the tolerance while other layouts remain."""
    again, unlocated = [], []
    for cell, ids in zip(cells, encode_many(counter.tokenizer, [cell.prompt for cell in cells], special=True)):
        cell.prompt_tokens = len(ids)
        if not lowest <= len(ids) <= length:
            # Word pieces add up to the whole prompt's count for word-splitting tokenizers; move by the miss.
            cell.change_budget(cell.budget + length - len(ids))
            again.append(cell)
            continue
        # The needle's and the question's own tokens, found among the prompt's, give the haystack tokens before
        # and around the needle without tokenising those parts again (which is the fallback when a tokenizer
        # merges tokens across those boundaries).
        needle_ids = counter.ids((" " if cell.before else "") + cell.needle["needle"])
        question_ids = counter.ids(QUESTION_TEMPLATE.format(question=cell.needle["question"]))
        end = len(ids) - counter.suffix
        start = _find(ids, needle_ids, counter.prefix + cell.estimated_position, int(tolerance) + 64)
        if start is not None and ids[end - len(question_ids) : end] == question_ids:
            position = start - counter.prefix
            _keep(cell, position, end - counter.prefix - len(needle_ids) - len(question_ids), tolerance, again)
        else:
            unlocated.append(cell)
    if unlocated:
        before = encode_many(counter.tokenizer, [cell.before for cell in unlocated], special=False)
        after = encode_many(counter.tokenizer, [" " + cell.after if cell.after else "" for cell in unlocated], False)
        for cell, before_ids, after_ids in zip(unlocated, before, after):
            position = len(before_ids) if cell.before else 0
            _keep(cell, position, position + (len(after_ids) if cell.after else 0), tolerance, again)
    return again


def _keep(cell: _Cell, position: int, haystack_tokens: int, tolerance: float, again: list[_Cell]) -> None:
    error = abs(position - cell.depth / 100.0 * haystack_tokens)
    if cell.best is None or error < cell.best[0]:
        cell.best = (error, cell.prompt, cell.prompt_tokens, position, haystack_tokens)
    cell.tried += 1
    if error > tolerance and cell.tried < len(cell.layouts):
        again.append(cell)


def build_docs(
    tokenizer: Any,
    context_lengths: Sequence[int] = DEFAULT_CONTEXT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    num_repeats: int = DEFAULT_NUM_REPEATS,
    haystack: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    needles: Sequence[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """One document per (repeat, context length, depth), in that order.

    Each repeat of a length has its own shuffled haystack and its own needle (a seeded permutation of the
    needle set); the depths of one repeat share them, so a row of the heatmap differs only by where the needle
    is. Documents carry the prompt (``input``), the needle fields, the cell, and what was measured:
    ``prompt_tokens`` (special tokens included), ``needle_token_position`` (haystack tokens before the
    needle), ``haystack_tokens`` (haystack tokens without the needle).

    Cost: the haystack's words are tokenised once for the whole grid (as " word" pieces, which cut the
    haystack to a budget), and each prompt once, the prompts of one (length, depth) in one batched call; the
    needle's position and the haystack's size are read from the prompt's own tokens.
    """
    needles = list(needles) if needles is not None else load_needles()
    sentences, shuffle = load_haystack_sentences(haystack)
    counter = _TokenCounter(tokenizer)
    haystack_name = str(haystack) if haystack is not None else DEFAULT_HAYSTACK
    docs = []
    for length in context_lengths:
        tolerance = LENGTH_TOLERANCE * length
        lowest = math.ceil(length - tolerance)
        order = list(range(len(needles)))
        random.Random(f"{seed}:needles:{length}").shuffle(order)
        rows = []
        for repeat in range(num_repeats):
            needle = needles[order[repeat % len(needles)]]
            rng = random.Random(f"{seed}:haystack:{length}:{repeat}")
            fixed = counter.count(needle["needle"] + QUESTION_TEMPLATE.format(question=needle["question"]), True) + 1
            if fixed >= length:
                raise ValueError(
                    f"context_lengths contains {length}, shorter than the needle and question alone ({fixed} "
                    f"tokens); allowed: lengths above {fixed} for this tokenizer"
                )
            rows.append((repeat, _Haystack(sentences, shuffle, rng, counter), needle, length - fixed))
        cells = []
        # Depth by depth, every row of the length in one batch; a row's next depth starts from the budget its
        # last one needed.
        for depth in depths:
            batch = [_Cell(repeat, float(depth), stack, needle, budget) for repeat, stack, needle, budget in rows]
            pending = batch
            for _ in range(_MAX_FILL_ATTEMPTS * 4):
                pending = [cell for cell in pending if cell.budget > 0]
                for cell in pending:
                    cell.lay_out(tolerance)
                pending = _measure(pending, counter, length, lowest, tolerance)
                if not pending:
                    break
            unfit = [cell for cell in batch if cell.best is None]
            if unfit:
                raise ValueError(
                    f"could not fit a prompt of {length} tokens (within 1%) with this tokenizer and haystack; "
                    f"last attempt measured {unfit[0].prompt_tokens} tokens. Allowed: context_lengths well above "
                    "the needle and question length"
                )
            rows = [(repeat, stack, needle, cell.budget) for (repeat, stack, needle, _), cell in zip(rows, batch)]
            cells += batch
        for cell in cells:
            error, prompt, prompt_tokens, position, haystack_tokens = cell.best
            if error > tolerance:
                logger.warning(
                    "longllada_niah: needle at %s of %s haystack tokens for depth %s%% (length %s) is off by more "
                    "than 1%% of the length",
                    position, haystack_tokens, cell.depth, length,
                )  # fmt: skip
            docs.append(
                {
                    "input": prompt,
                    "context_length": length,
                    "depth_percent": cell.depth,
                    "needle": cell.needle["needle"],
                    "keyword": cell.needle["keyword"],
                    "question": cell.needle["question"],
                    "subject": cell.needle["subject"],
                    "prompt_tokens": prompt_tokens,
                    "needle_token_position": position,
                    "haystack_tokens": haystack_tokens,
                    "repeat": cell.repeat,
                    "haystack": haystack_name,
                    "seed": seed,
                }
            )
    # Repeat-major order: lm-eval's --limit takes the first documents, so a limit of (lengths × depths) is
    # one full pass over the grid.
    return sorted(docs, key=lambda doc: doc["repeat"])


# -- the grid cache ---------------------------------------------------------------------------------------------
# A sweep evaluates many model settings (the paper's configs list about 40) on the same grid: a grid built once is
# kept as a JSON file named by the hash of everything it depends on (this file, the needles, the haystack's text,
# the tokenizer, the grid's settings), so later runs read it (~0.3 s) instead of tokenising 9.5 M tokens again.
CACHE_ENV = "LONGLLADA_CACHE"  # the cache folder; "off" keeps nothing
GRID_MARKER = "longllada_niah_grid"


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """SHA-256 of what decides a fast tokenizer's ids: its backend's serialisation (vocabulary, merges,
    normalisation, post-processing), its class, ``add_bos_token`` and its special tokens. Two tokenizers loaded from
    the same files have the same fingerprint. None for a tokenizer without a one-string form (a slow one)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    special = {"class": type(tokenizer).__name__, "add_bos_token": getattr(tokenizer, "add_bos_token", None),
               "special_tokens": getattr(tokenizer, "special_tokens_map", None)}  # fmt: skip
    digest = hashlib.sha256(backend.to_str().encode())
    digest.update(json.dumps(special, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def grid_cache_file(tokenizer: Any, grid: dict[str, Any]) -> Path | None:
    """The cache file of this grid under ``$LONGLLADA_CACHE`` (default ``~/.cache/longllada``)/niah, or None when
    the cache is off or the tokenizer has no one-string form to fingerprint (a slow tokenizer)."""
    root = os.environ.get(CACHE_ENV, "")
    fingerprint = None if root.strip().lower() in ("off", "0", "false", "none") else tokenizer_fingerprint(tokenizer)
    if fingerprint is None:
        return None
    base = Path(root).expanduser() if root.strip() else Path.home() / ".cache" / "longllada"
    sentences, shuffle = load_haystack_sentences(grid.get("haystack"))
    digest = hashlib.sha256()
    for part in (
        Path(__file__).read_bytes(),
        NEEDLES_FILE.read_bytes(),
        "\n".join(sentences).encode() + bytes([shuffle]),
        fingerprint.encode(),
        json.dumps(grid, sort_keys=True, default=str).encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return base / "niah" / f"grid-{digest.hexdigest()[:32]}.json"


def read_cached_grid(path: Path | None) -> list[dict[str, Any]] | None:
    """The documents of a grid cached at ``path`` by :func:`write_cached_grid`, else None."""
    if path is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get(GRID_MARKER) != path.stem:
        logger.warning("longllada_niah: %s is not a grid this task wrote; building the grid without it", path)
        return None
    return record["documents"]


def write_cached_grid(path: Path | None, docs: list[dict[str, Any]]) -> None:
    """Keep the documents at ``path`` (written whole, then renamed: readers never see half a file). A file there
    that this task did not write is left alone; a cache that cannot be written is only logged."""
    if path is None or path.exists():  # ours would have been read; anything else stays as it is
        return
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({GRID_MARKER: path.stem, "documents": docs}), encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        logger.warning("longllada_niah: the grid was not cached at %s (%s)", path, error)
    finally:
        partial.unlink(missing_ok=True)


def grid_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    """The grid that ``metadata`` asks for (the keyword arguments of :func:`build_docs` but the tokenizer),
    checked: known keys, each value's type and range, and a size this machine and the evaluated model can hold
    (:func:`lm_eval_tasks.grid_bounds.check_grid`). Nothing is built or loaded."""
    from lm_eval_tasks.grid_bounds import check_grid
    from lm_eval_tasks.metadata_keys import SEED_RANGE, check_metadata_keys

    check_metadata_keys(metadata, "longllada_niah")
    num_repeats = _int_list("num_repeats", metadata.get("num_repeats"), [DEFAULT_NUM_REPEATS], 1)
    seeds = _int_list("seed", metadata.get("seed"), [DEFAULT_SEED], *SEED_RANGE)
    if len(num_repeats) != 1 or len(seeds) != 1:
        raise ValueError(
            f"num_repeats={metadata.get('num_repeats')!r} and seed={metadata.get('seed')!r} must be single integers"
        )
    grid = {
        "context_lengths": _int_list("context_lengths", metadata.get("context_lengths"), DEFAULT_CONTEXT_LENGTHS, 1),
        "depths": _depth_list(metadata.get("depths")),
        "num_repeats": num_repeats[0],
        "haystack": metadata.get("haystack"),
        "seed": seeds[0],
    }
    prompts = len(grid["depths"]) * grid["num_repeats"]
    check_grid("longllada_niah", "context_lengths", grid["context_lengths"], prompts, metadata)
    return grid


def niah_dataset(**metadata: Any) -> dict[str, Any]:
    """lm-eval ``custom_dataset``: builds the ``test`` split from ``--metadata`` merged with ``--model_args``.

    Keys: ``context_lengths`` (default 2000…32000), ``depths`` (percent, default 0…100 step 10),
    ``num_repeats`` (10), ``haystack`` ("gov_report", "noise", or a path to a .txt file or folder), ``seed``
    (42), and the tokenizer under ``tokenizer``/``pretrained``/``model``. A misspelt key is an error naming these;
    other keys (model arguments, other tasks' keys) are ignored. A grid built once is read back from the cache
    (``$LONGLLADA_CACHE``, default ``~/.cache/longllada``; ``LONGLLADA_CACHE=off`` keeps none).
    """
    import datasets

    grid = grid_settings(metadata)
    start = time.perf_counter()
    tokenizer = resolve_tokenizer(metadata)
    loaded = time.perf_counter()
    cache_file = grid_cache_file(tokenizer, grid)
    docs = read_cached_grid(cache_file)
    cached = docs is not None
    if docs is None:
        docs = build_docs(tokenizer, **grid)
        write_cached_grid(cache_file, docs)
    built = time.perf_counter()
    dataset = datasets.Dataset.from_list(docs, split=datasets.Split.TEST)
    timing = {
        "event": "niah_grid", "documents": len(docs), "prompt_tokens": sum(doc["prompt_tokens"] for doc in docs),
        "tokenizer_s": round(loaded - start, 3), "build_s": round(built - loaded, 3),
        "dataset_s": round(time.perf_counter() - built, 3), "t": time.time(),
        "rank": int(os.environ.get("RANK", "0")), "pid": os.getpid(), "cached": cached,
    }  # fmt: skip
    logger.info(
        "longllada_niah: %s prompts (%s tokens) %s in %.1f s; longllada-timing %s",
        len(docs), timing["prompt_tokens"], f"read from {cache_file}" if cached else "built", built - loaded,
        json.dumps(timing),
    )  # fmt: skip
    return {"test": dataset}
