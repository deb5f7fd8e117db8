"""The twins' training data, regenerated from the seed: the tokenizer's text, rows of exactly the trained
length (report, retrieval and SFT rows, see :mod:`longllada.twins`) and the batch stream.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longllada.twins.needles import EVAL_KEYWORD_MIX, NeedleGenerator, split_sentences
from longllada.twins.settings import TrainSettings


def report_text() -> str:
    return (Path(__file__).resolve().parents[1] / "data" / "gov_report_001.txt").read_text(encoding="utf-8")


def tokenizer_texts(vocab_text: str, n_examples: int = 400) -> list[str]:
    """The tokenizer's training text: the report plus a fixed sample of question/answer lines, so that the
    template pieces ("\\n\\nQuestion:", "\\nAnswer:") get tokens of their own. Deterministic."""
    generator = NeedleGenerator(vocab_text, random.Random(12345))
    lines = []
    for _ in range(n_examples):
        needle = generator()
        lines.append(f"{needle.sentence}\n\nQuestion: {needle.question}\nAnswer: {needle.keyword}.")
    return [vocab_text, "\n".join(lines)]


def vocabulary_pieces(tokenizer) -> tuple[list[str], list[str]]:
    """The tokenizer's alphabetic tokens as text: (word starts without their space, continuations), sorted."""
    starts, continuations = set(), set()
    special = set(tokenizer.all_special_ids)
    for token_id in tokenizer.get_vocab().values():
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        if text.startswith(" ") and text[1:].isalpha():
            starts.add(text[1:])
        elif text.isalpha():
            continuations.add(text)
    return sorted(starts), sorted(continuations)


def build_twin_tokenizer(vocab_size: int):
    from longllada.tokenizer import build_tokenizer

    return build_tokenizer(tokenizer_texts(report_text()), vocab_size=vocab_size)


@dataclass
class Batch:
    input_ids: Any  # LongTensor [B, L]
    loss_region: Any  # BoolTensor [B, L]: tokens that are masked/scored
    kinds: list[str]


class DocumentBuilder:
    """Builds rows of exactly ``length`` tokens in token space (pieces tokenized once and concatenated at
    pre-token boundaries, which is what tokenizing the whole text gives with this byte-level BPE)."""

    def __init__(self, tokenizer, text: str, length: int, rng: random.Random, held_out: bool = False,
                 distractor_share: float = 0.3, keyword_mix: Sequence[float] = EVAL_KEYWORD_MIX,
                 sft_response_tokens: int = 0, phrase_subject_share: float = 0.0,
                 capitalize_share: float = 0.1, piece_keyword_share: float = 0.0):  # fmt: skip
        self.tokenizer = tokenizer
        self.distractor_share = distractor_share
        self.sft_response_tokens = sft_response_tokens
        self.length = length
        self.rng = rng
        self.needles = NeedleGenerator(text, rng, held_out=held_out, keyword_mix=keyword_mix,
                                       phrase_subject_share=phrase_subject_share, capitalize_share=capitalize_share,
                                       pieces=vocabulary_pieces(tokenizer) if piece_keyword_share else None,
                                       piece_keyword_share=piece_keyword_share)  # fmt: skip
        sentences = split_sentences(text)
        self.sentence_ids = [ids for ids in self._encode([" " + s for s in sentences]) if ids]
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        vocab = tokenizer.get_vocab()
        # ids whose token starts with a space ("Ġ" in byte-level BPE): a word starts there
        self.word_start = {i for tok, i in vocab.items() if tok.startswith("\u0120")}

    @classmethod
    def for_training(cls, tokenizer, text: str, settings: TrainSettings) -> DocumentBuilder:
        """The builder of a run's training rows: ``settings``' data options, seeded with its seed."""
        return cls(tokenizer, text, settings.train_length, random.Random(settings.seed),
                   distractor_share=settings.distractor_share, keyword_mix=settings.keyword_mix,
                   sft_response_tokens=settings.sft_response_tokens,
                   phrase_subject_share=settings.phrase_subject_share, capitalize_share=settings.capitalize_share,
                   piece_keyword_share=settings.piece_keyword_share)  # fmt: skip

    def reseed(self, seed: int) -> None:
        """Give this builder (and its needle generator) a fresh random stream: one per data worker."""
        self.rng = self.needles.rng = random.Random(seed)

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def haystack(self, n_tokens: int) -> tuple[list[int], list[int]]:
        """Random report sentences cut to ``n_tokens``; also the sentence start offsets."""
        ids: list[int] = []
        starts: list[int] = []
        while len(ids) < n_tokens:
            starts.append(len(ids))
            ids.extend(self.rng.choice(self.sentence_ids))
        return ids[:n_tokens], [s for s in starts if s < n_tokens]

    def _insertion_point(self, hay: list[int], starts: list[int], depth: float | None) -> int:
        if not hay:
            return 0
        if self.rng.random() < 0.5:
            candidates = starts + [len(hay)]
        else:
            candidates = [i for i, t in enumerate(hay) if t in self.word_start] + [0, len(hay)]
        if depth is None:
            return self.rng.choice(candidates)
        target = depth * len(hay)
        return min(candidates, key=lambda c: abs(c - target))

    def retrieval_parts(self, prompt_length: int, needle, distractor: bool, depth: float | None = None,
                        bos: bool = False) -> tuple[list[int], list[int]]:  # fmt: skip
        """(prompt ids of exactly ``prompt_length`` tokens ending with "Answer:", answer ids " keyword.")."""
        pieces = [" " + needle.sentence, needle.sentence, "\n\nQuestion: " + needle.question + "\nAnswer:",
                  " " + needle.keyword + "."]  # fmt: skip
        other = None
        if distractor:
            other = self.needles()
            while other.subject == needle.subject:
                other = self.needles()
            pieces.append(" " + other.sentence)
        encoded = self._encode(pieces)
        spaced, bare, question, answer = encoded[:4]
        other_ids = encoded[4] if other is not None else []
        budget = prompt_length - len(question) - len(spaced) - len(other_ids) - (1 if bos else 0)
        if other_ids and budget < 8:  # a short row: no room for a distractor
            budget, other_ids = budget + len(other_ids), []
        if budget < 0:
            raise ValueError(f"prompt_length={prompt_length} is too short for the needle and the question")
        hay, starts = self.haystack(budget)
        if other_ids:
            at = self._insertion_point(hay, starts, None)
            hay = hay[:at] + other_ids + hay[at:]
            starts = [s if s < at else s + len(other_ids) for s in starts]
        at = self._insertion_point(hay, starts, depth)
        needle_ids = spaced if at > 0 else bare  # "The" at the very start has no space before it
        hay = hay[:at] + needle_ids + hay[at:]
        prompt = ([self.bos] if bos else []) + hay + question
        # the bare needle may be a token shorter or longer than the spaced one: fix the length at the front
        while len(prompt) > prompt_length:
            del prompt[1 if bos else 0]
        while len(prompt) < prompt_length:
            prompt.insert(1 if bos else 0, self.rng.choice(self.sentence_ids)[0])
        return prompt, answer

    def row(self, kind: str) -> tuple[list[int], list[bool]]:
        """One row of ``kind`` (see :mod:`longllada.twins`) and its loss region."""
        length = self.length
        bos = self.rng.random() < 0.5
        if kind == "report":
            hay, _ = self.haystack(length - (1 if bos else 0))
            ids = ([self.bos] if bos else []) + hay
            return ids, [True] * length
        needle = self.needles()
        distractor = self.rng.random() < self.distractor_share
        answer_len = len(self._encode([" " + needle.keyword + "."])[0])
        longest = length - answer_len - 1
        if kind == "retrieval":
            prompt, answer = self.retrieval_parts(longest, needle, distractor, bos=bos)
            ids = prompt + answer + [self.eos]
            return ids, [True] * length
        shortest = min(max(longest // 4, 64), longest)
        if self.sft_response_tokens:  # responses as long as the sampler's output window, not longer
            shortest = max(shortest, length - self.sft_response_tokens)
        prompt_length = self.rng.randint(min(shortest, longest), longest)
        prompt, answer = self.retrieval_parts(prompt_length, needle, distractor, bos=bos)
        response = answer + [self.eos] * (length - len(prompt) - len(answer))
        return prompt + response, [False] * len(prompt) + [True] * len(response)

    def batch(self, batch_size: int, mix: dict[str, float], length: int | None = None) -> Batch:
        """``batch_size`` rows of kinds drawn from ``mix``, all of ``length`` tokens (default: the builder's)."""
        import torch

        if length is not None:
            self.length = length
        kinds = self.rng.choices(list(mix), weights=list(mix.values()), k=batch_size)
        rows = [self.row(kind) for kind in kinds]
        input_ids = torch.tensor([r[0] for r in rows], dtype=torch.long)
        region = torch.tensor([r[1] for r in rows], dtype=torch.bool)
        return Batch(input_ids, region, kinds)


def prefetch(make: Callable[[], Batch], depth: int = 8) -> Iterator[Batch]:
    """Batches from ``make()`` built by one background thread (in order, so still seeded), overlapping the
    CPU work of building rows with the GPU's training step."""
    ready: queue.Queue = queue.Queue(maxsize=depth)

    def worker() -> None:
        try:
            while True:
                ready.put(make())
        except BaseException as err:  # handed to the training loop, which re-raises it
            ready.put(err)

    threading.Thread(target=worker, daemon=True).start()
    while True:
        item = ready.get()
        if isinstance(item, BaseException):
            raise item
        yield item


def batch_stream(builder: DocumentBuilder, settings: TrainSettings) -> Iterator[Batch]:
    """The training batches. With ``settings.data_workers`` = 0, one background thread of this process builds
    them from ``builder``'s stream; with N > 0, N processes do, worker w with its own stream seeded from
    (seed, w), batches taken from the workers in turn (batch i from worker i mod N): reproducible for a given N.
    (At about 10 ms of Python per batch, one thread sharing the interpreter with the training loop is what
    limited the GPU runs.)"""
    import torch

    def next_batch(source: DocumentBuilder) -> Batch:
        # Like LLaDA's 1% of random-length pretraining sequences: some batches are shorter than the trained
        # length, so that the model also sees short inputs.
        length = settings.train_length
        if source.rng.random() < settings.short_batch_share:
            length = source.rng.randint(min(settings.short_batch_min_length, length), length)
        return source.batch(settings.batch_size, settings.mix, length=length)

    if settings.data_workers == 0:
        yield from prefetch(lambda: next_batch(builder))
        return

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self) -> Iterator[tuple[Any, Any, list[str]]]:
            worker = torch.utils.data.get_worker_info().id
            torch.set_num_threads(1)
            builder.reseed(settings.seed * 1_000_003 + 7919 * (worker + 1))  # the workers' copies, not ours
            while True:
                batch = next_batch(builder)
                yield batch.input_ids, batch.loss_region, batch.kinds

    loader = torch.utils.data.DataLoader(Stream(), batch_size=None, num_workers=settings.data_workers,
                                         pin_memory=torch.cuda.is_available(), prefetch_factor=4,
                                         multiprocessing_context="fork")  # fmt: skip
    for input_ids, loss_region, kinds in loader:
        yield Batch(input_ids, loss_region, list(kinds))
