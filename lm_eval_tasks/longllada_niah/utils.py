"""NeedleBench-"origin" single-needle retrieval (spec §5) as an lm-eval task: dataset builder and scoring.

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
import functools
import json
import logging
import math
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

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
# Where the model name arrives in the merged metadata/model_args (lm-eval's RULER reads the same keys).
TOKENIZER_KEYS = ("tokenizer", "pretrained", "model")
# A sentence ends at . ! or ? followed by whitespace and a capital letter or an opening quote/bracket
# ("fig. 8)" and "U.S. law" stay whole more often than with a plain split on the full stop).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“‘(\[])")
_MAX_FILL_ATTEMPTS = 8
_MAX_SKIPPED_WORDS = 256


# -- scoring ----------------------------------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


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


def mean_of_scored(items: Sequence[float | None]) -> float:
    """A cell's aggregation: the mean over the documents of that cell (the others report None); NaN when none
    of its documents was evaluated (``--limit`` shorter than the grid)."""
    scored = [x for x in items if x is not None]
    return sum(scored) / len(scored) if scored else math.nan


def _task_class() -> type:
    from lm_eval.api.metrics import mean
    from lm_eval.api.task import ConfigurableTask

    class NeedleTask(ConfigurableTask):
        """``longllada_niah``: every document reports every cell of the grid, its score in its own cell and None
        in the others, and a cell averages the scores it got (:func:`mean_of_scored`). Every process of a
        data-parallel run (``accelerate launch``) thus holds the same metric names, which lm-eval's gathering
        of the processes' metrics needs; the cells follow the grid of ``--metadata``, none is declared."""

        def __init__(self, config: dict[str, Any] | None = None) -> None:
            super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"})
            cells = sorted({(int(d["context_length"]), float(d["depth_percent"])) for d in self.eval_docs})
            self.cell_names = [cell_metric_name(length, depth) for length, depth in cells]

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
    if value is None:
        return list(default)
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value.strip("[]() ")) if part]
    elif isinstance(value, (int, float)):
        value = [value]
    allowed = f"integers >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{field}={value!r} is not a list of numbers; allowed: a list of {allowed}") from None
    if not numbers or any(n != int(n) or n < minimum or (maximum is not None and n > maximum) for n in numbers):
        raise ValueError(f"{field}={value!r} is not allowed; allowed: a non-empty list of {allowed}")
    return [int(n) for n in numbers]


def _depth_list(value: Any) -> list[float]:
    if value is None:
        return [float(d) for d in DEFAULT_DEPTHS]
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value.strip("[]() ")) if part]
    elif isinstance(value, (int, float)):
        value = [value]
    try:
        depths = [float(d) for d in value]
    except (TypeError, ValueError):
        raise ValueError(f"depths={value!r} is not a list of numbers; allowed: percentages in [0, 100]") from None
    if not depths or any(not 0.0 <= d <= 100.0 for d in depths):
        raise ValueError(f"depths={value!r} is not allowed; allowed: a non-empty list of percentages in [0, 100]")
    return depths


@functools.cache
def load_tokenizer(name: str) -> Any:
    """The tokenizer of a model name or local folder (as lm-eval's RULER loads it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, trust_remote_code=True)


def resolve_tokenizer(metadata: dict[str, Any]) -> Any:
    """The tokenizer named (or given) under ``tokenizer``, ``pretrained`` or ``model`` in the merged metadata."""
    for key in TOKENIZER_KEYS:
        value = metadata.get(key)
        if value is None or value == "":
            continue
        return load_tokenizer(str(value)) if isinstance(value, (str, Path)) else value
    raise ValueError(
        "longllada_niah needs the evaluated model's tokenizer to size its prompts: give --model_args "
        "pretrained=<model> (or tokenizer=<name>), or --metadata tokenizer=<name>; none of "
        f"{list(TOKENIZER_KEYS)} was found"
    )


# -- building prompts -------------------------------------------------------------------------------------------
class _TokenCounter:
    """Token counts with one tokenizer; word pieces (" word") are counted once and cached."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._pieces: dict[str, int] = {}

    def count(self, text: str, special: bool = False) -> int:
        if not text:
            return len(self.tokenizer("", add_special_tokens=True)["input_ids"]) if special else 0
        return len(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def piece_counts(self, words: Sequence[str]) -> list[int]:
        missing = sorted({word for word in words if word not in self._pieces})
        for start in range(0, len(missing), 4096):
            batch = missing[start : start + 4096]
            encoded = self.tokenizer([" " + word for word in batch], add_special_tokens=False)["input_ids"]
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
    """The haystack of one (length, repeat): a word stream that is cut to any token budget (cached per budget)."""

    def __init__(self, sentences: Sequence[str], shuffle: bool, rng: random.Random, counter: _TokenCounter):
        self._stream = _word_stream(sentences, shuffle, rng)
        self._words: list[str] = []
        self._ends: list[bool] = []
        self._costs: list[int] = []
        self._counter = counter
        self._cuts: dict[int, tuple[list[str], list[bool], list[int]]] = {}

    def _ensure(self, count: int) -> None:
        while len(self._words) < count:
            chunk = [next(self._stream) for _ in range(max(1024, count - len(self._words)))]
            self._words.extend(word for word, _ in chunk)
            self._ends.extend(end for _, end in chunk)
            self._costs.extend(self._counter.piece_counts([word for word, _ in chunk]))

    def cut(self, budget: int) -> tuple[list[str], list[bool], list[int]]:
        """Words whose pieces add up to at most ``budget`` tokens, as close to it as the stream allows: whole
        words in order, then, once one does not fit, later words that still fit (a few words are skipped at the
        very end so that a tight budget is met). Returns (words, ends a sentence, prefix token counts)."""
        if budget in self._cuts:
            return self._cuts[budget]
        words, ends, cumulative = [], [], [0]
        total, index, skipped = 0, 0, 0
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
) -> Iterator[tuple[list[str], int]]:
    """Candidate (word order, index of the needle) pairs, best first, by estimated token position:

    1. the sentence boundary nearest the depth, when within ``tolerance`` tokens of it;
    2. the nearest word boundary (either side);
    3. when words are too long for the tolerance (short contexts): the word boundary just before the depth
       with one later word, of the missing size, moved in front of the needle (one word out of place).
    """
    target = depth / 100.0 * cumulative[-1]
    boundaries = [0] + [i + 1 for i, end in enumerate(ends) if end]
    sentence = min(boundaries + [len(words)], key=lambda i: (abs(cumulative[i] - target), i))
    if abs(cumulative[sentence] - target) <= tolerance:
        yield list(words), sentence
    right = bisect.bisect_left(cumulative, target)
    nearest = min(
        (i for i in (right - 1, right) if 0 <= i < len(cumulative)), key=lambda i: abs(cumulative[i] - target)
    )
    yield list(words), nearest
    if abs(cumulative[nearest] - target) <= tolerance:
        return
    before = max(0, right - 1)
    missing = target - cumulative[before]
    costs = [cumulative[i + 1] - cumulative[i] for i in range(len(words))]
    movable = sorted(range(before, min(len(words), before + 200)), key=lambda j: (abs(costs[j] - missing), j))
    for j in movable[:3]:
        order = list(words[:before]) + [words[j]] + list(words[before:j]) + list(words[j + 1 :])
        yield order, before + 1


def _assemble(words: Sequence[str], index: int, needle: str, question: str) -> tuple[str, str, str]:
    """(prompt, haystack text before the needle, haystack text after it)."""
    before, after = " ".join(words[:index]), " ".join(words[index:])
    context = " ".join(part for part in (before, needle, after) if part)
    return context + QUESTION_TEMPLATE.format(question=question), before, after


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
        for repeat in range(num_repeats):
            needle = needles[order[repeat % len(needles)]]
            rng = random.Random(f"{seed}:haystack:{length}:{repeat}")
            stack = _Haystack(sentences, shuffle, rng, counter)
            fixed = counter.count(needle["needle"] + QUESTION_TEMPLATE.format(question=needle["question"]), True) + 1
            if fixed >= length:
                raise ValueError(
                    f"context_lengths contains {length}, shorter than the needle and question alone ({fixed} "
                    f"tokens); allowed: lengths above {fixed} for this tokenizer"
                )
            budget = length - fixed
            for depth in depths:
                doc = _place(stack, budget, counter, needle, float(depth), length, lowest, tolerance)
                budget = doc.pop("_budget")
                doc.update(repeat=repeat, haystack=haystack_name, seed=seed)
                docs.append(doc)
    # Repeat-major order: lm-eval's --limit takes the first documents, so a limit of (lengths × depths) is
    # one full pass over the grid.
    return sorted(docs, key=lambda doc: doc["repeat"])


def _place(
    stack: _Haystack,
    budget: int,
    counter: _TokenCounter,
    needle: dict[str, str],
    depth: float,
    length: int,
    lowest: int,
    tolerance: float,
) -> dict[str, Any]:
    """Cut the haystack to the budget, insert the needle at the depth, measure, and correct the budget until
    the prompt is within [lowest, length] tokens (the needle position checked likewise)."""
    for _ in range(_MAX_FILL_ATTEMPTS):
        words, ends, cumulative = stack.cut(budget)
        best = None
        for order, index in _needle_layouts(words, ends, cumulative, depth, tolerance):
            prompt, before, after = _assemble(order, index, needle["needle"], needle["question"])
            position = counter.count(before)
            haystack_tokens = position + counter.count((" " + after) if after else "")
            error = abs(position - depth / 100.0 * haystack_tokens)
            if best is None or error < best[0]:
                best = (error, prompt, position, haystack_tokens)
            if error <= tolerance:
                break
        error, prompt, position, haystack_tokens = best
        prompt_tokens = counter.count(prompt, special=True)
        if lowest <= prompt_tokens <= length:
            if error > tolerance:
                logger.warning(
                    "longllada_niah: needle at %s of %s haystack tokens for depth %s%% (length %s) is off by more "
                    "than 1%% of the length",
                    position, haystack_tokens, depth, length,
                )  # fmt: skip
            return {
                "input": prompt,
                "context_length": length,
                "depth_percent": depth,
                "needle": needle["needle"],
                "keyword": needle["keyword"],
                "question": needle["question"],
                "subject": needle["subject"],
                "prompt_tokens": prompt_tokens,
                "needle_token_position": position,
                "haystack_tokens": haystack_tokens,
                "_budget": budget,
            }
        # Word pieces add up to the whole prompt's count for word-splitting tokenizers; move by the miss.
        budget += length - prompt_tokens
        if budget <= 0:
            break
    raise ValueError(
        f"could not fit a prompt of {length} tokens (within 1%) with this tokenizer and haystack; last attempt "
        f"measured {prompt_tokens} tokens. Allowed: context_lengths well above the needle and question length"
    )


def niah_dataset(**metadata: Any) -> dict[str, Any]:
    """lm-eval ``custom_dataset``: builds the ``test`` split from ``--metadata`` merged with ``--model_args``.

    Keys: ``context_lengths`` (default 2000…32000), ``depths`` (percent, default 0…100 step 10),
    ``num_repeats`` (10), ``haystack`` ("gov_report", "noise", or a path to a .txt file or folder), ``seed``
    (42), and the tokenizer under ``tokenizer``/``pretrained``/``model``. Other keys are ignored.
    """
    import datasets

    num_repeats = _int_list("num_repeats", metadata.get("num_repeats"), [DEFAULT_NUM_REPEATS], 1)
    seeds = _int_list("seed", metadata.get("seed"), [DEFAULT_SEED], -(2**63))
    if len(num_repeats) != 1 or len(seeds) != 1:
        raise ValueError(
            f"num_repeats={metadata.get('num_repeats')!r} and seed={metadata.get('seed')!r} must be single integers"
        )
    docs = build_docs(
        resolve_tokenizer(metadata),
        context_lengths=_int_list("context_lengths", metadata.get("context_lengths"), DEFAULT_CONTEXT_LENGTHS, 1),
        depths=_depth_list(metadata.get("depths")),
        num_repeats=num_repeats[0],
        haystack=metadata.get("haystack"),
        seed=seeds[0],
    )
    return {"test": datasets.Dataset.from_list(docs, split=datasets.Split.TEST)}
