"""`longllada train-tiny`: train the shipped twins, a tiny masked-diffusion LLaDA and its autoregressive twin.

Both twins have the same widths, heads, layers, MLP, RoPE base, tokenizer and data; they differ only in the
objective and the attention:

- ``diffusion``: our architecture (:class:`LongLLaDAModelLM`, bidirectional), LLaDA's masked-diffusion loss: per
  sequence t ~ U(eps, 1), each token of the loss region replaced by the mask token with probability t,
  cross-entropy on the masked tokens weighted 1/t, summed and divided by the region's length (the sequence
  length for pretraining rows, as LLaDA pretraining; the response length for SFT rows, as LLaDA SFT), then
  averaged over the batch.
- ``ar``: ``transformers.LlamaForCausalLM`` (causal), next-token cross-entropy over the loss region.

Data, regenerated from the seed, nothing downloaded. Every row of a batch has the same length: the trained
length, or (``--short-batch-share``, 10% of batches) a random shorter one, as LLaDA pretraining keeps 1% of
random-length sequences. Row kinds (``--mix``; default report 0.3, retrieval 0.1, sft 0.6):

- ``report``: the shipped public-domain report's sentences in random order; loss on every token (pretraining);
- ``retrieval``: a haystack of shuffled report sentences with a needle "The {subject} is {keyword}." at a random
  depth (a sentence or word boundary; in 30% of rows a distractor needle about another subject too), then
  ``"\\n\\nQuestion: What is the {subject}?\\nAnswer: {keyword}."`` and EOS; loss on every token;
- ``sft``: the same documents split into a prompt (up to ``Answer:``) and a response (`` {keyword}.`` then EOS up
  to the row's end, as LLaDA SFT pads with EOS; at most ``--sft-response-tokens`` = 32 tokens, the sampler's
  output window); only the response is masked / scored, as in LLaDA SFT, so that the model learns to answer.

AR loss weighting (``--ar-loss-weighting``): ``row`` (default) averages each row's token losses, then the rows,
as the diffusion loss does, so that an SFT row's few answer tokens count as much as a report row; ``token``
averages over all scored tokens of the batch.

Needles come from this module's own generator, never from the evaluation needles of ``lm_eval_tasks/longllada_niah``
(those are only evaluated on, at the end). Subjects: templates ("secret/special/... noun (of the place or
person)") or, for ``--phrase-subject-share`` (0.5) of them, a run of 2-6 report words; keywords
(``--keyword-mix`` 0.3/0.5/0.2): real words (word lists and the report's words), invented words, numbers,
capitalised in ``--capitalize-share`` (0.25) of cases; and, for ``--piece-keyword-share`` (0.4) of keywords, a
random word-start token of the vocabulary followed by 0-2 random continuation tokens. Without those, a token that
never starts a training keyword is never copied: teacher-forced, the twins trained before that option got the first
token of such held-out keywords right 0 times in 80, and that of the others 120 (causal) and 110 (diffusion) of 120. Keywords whose CRC32 is 0 mod 10 are never
trained on: they make the held-out evaluation needles.

The shipped twins' model cards give the command that reproduces them (``benchmarks/train_logs/*_summary.json``
holds their settings).

At the end each twin is reloaded from its saved folder (float32) and evaluated: retrieval accuracy (the keyword
appears in the output) at the trained length minus 32 (prompt + 32 generated tokens = trained length), the
trained length, and 2/4/8 times it, at five depths, on the held-out needles and on the evaluation task's needles;
the diffusion twin through ``model.generate`` (exact LLaDA sampling: 32 tokens, block 32, 32 steps, greedy,
low-confidence remasking), with and without NTK scaling (``{"type": "dynamic"}``); the AR twin greedy, with and
without NTK (base multiplied by the scaling law's factor for the length).

GPU run of the shipped twins (both on one H200, about 6 minutes of training)::

    longllada train-tiny --twin diffusion --steps 10000 --data-workers 4 --eval-prompts 50 &
    longllada train-tiny --twin ar --steps 10000 --data-workers 4 --eval-prompts 50 &
    wait

(``benchmarks/h200x2_session.sh train`` ran it; the other runs' summaries are in
``benchmarks/train_logs/variants/``.)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import queue
import random
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_LOG_DIR = REPO / "benchmarks" / "train_logs"
NIAH_NEEDLES = REPO / "lm_eval_tasks" / "longllada_niah" / "needles.jsonl"  # evaluation only, never training
NEEDLE_SETS = ("held-out", "niah-task")
DIFFUSION_DIR_NAME = "tiny-llada-diffusion"
AR_DIR_NAME = "tiny-llama-ar"
TWINS = ("diffusion", "ar")
ROW_KINDS = ("report", "retrieval", "sft")
AR_LOSS_WEIGHTINGS = ("row", "token")
MASK_EPS = 1e-3  # LLaDA: p_mask = (1 - eps) t + eps, so that no row is left entirely unmasked in expectation
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Keyword sources (real words, invented words, numbers). The evaluation, the answer probe and the tokenizer's
# sample always use EVAL_KEYWORD_MIX; training uses TrainSettings.keyword_mix, which leans on invented words so
# that copying, not remembering a vocabulary of answers, is what pays.
EVAL_KEYWORD_MIX = (0.55, 0.30, 0.15)

# -- word lists for the needle generator (our own) -----------------------------------------------------------------

SUBJECT_ADJECTIVES = (
    "secret special hidden magic lucky private favourite chosen official true final forgotten ancient missing "
    "golden silent sacred stolen lost rare original winning mysterious preferred usual old new first last "
    "real main proper famous"
).split()
SUBJECT_NOUNS = (
    "code word password color colour ingredient animal fruit city name flower gem song tool metal spice drink "
    "dish signal key symbol treasure river mountain island planet star bird tree stone instrument game motto "
    "vegetable fabric emblem coin recipe weapon vehicle number season sport language mineral perfume ship horse "
    "dance poem flag lantern mascot password charm"
).split()
SUBJECT_OWNERS = (
    "harbor|old lighthouse|king|queen|museum|captain|northern village|castle|library|festival|mountain tribe|"
    "desert caravan|royal navy|lost city|ancient temple|forest guild|night market|silver mine|island fortress|"
    "river kingdom|council|inventor|detective|wizard|baker|gardener|pilot|astronomer|orchestra|school|hospital|"
    "old farm|circus|monastery|railway station|pirate crew|tea house|grand hotel|chess club|space station|"
    "sailor|blacksmith|painter|emperor|village elder|duchess|merchant guild|southern province|academy|bakery"
).split("|")
KEYWORD_WORDS = (
    "amber violet crimson teal indigo scarlet ivory olive maroon azure cobalt emerald saffron ochre magenta "
    "tiger falcon otter badger heron panther dolphin walrus lynx raven sparrow beetle salmon gecko bison moose "
    "mango papaya cherry lemon walnut almond fig plum apricot kiwi melon pepper ginger cinnamon nutmeg vanilla "
    "copper silver bronze granite marble quartz onyx topaz opal jade pearl ruby garnet basalt slate cobble "
    "anchor lantern compass hammer kettle ladder mirror pillow rocket saddle violin trumpet banjo harp drum "
    "meadow canyon glacier volcano prairie lagoon tundra desert forest valley harbor island summit delta "
    "thunder breeze blizzard drizzle sunrise twilight midnight rainbow comet nebula eclipse orbit galaxy "
    "paris cairo lima oslo quito delhi tokyo rome vienna dublin lisbon nairobi havana sydney boston denver "
    "tango waltz polka salsa rumba ballet opera sonnet ballad riddle fable legend saga myth "
    "velvet linen cotton satin denim wool silk tweed canvas leather "
    "pumpkin carrot turnip radish celery potato onion garlic cabbage spinach "
    "bicycle tractor canoe glider sledge wagon scooter yacht ferry tram "
    "orchid tulip daisy lily lotus poppy iris violet cactus fern maple cedar willow birch oak pine "
    "mercury venus saturn jupiter neptune pluto apollo atlas titan orion phoenix dragon griffin unicorn"
).split()
SYLLABLES = (
    "ka ri mo ta ve lu si na po de zo fi ra ko mi tu be la no gu sha tri qua bel dor fen gal hin jor kel "
    "lim mar nor pel quin ros sel tor ul vin wex yar zan"
).split()


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after ., ! or ? followed by whitespace), stripped, empty ones dropped."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def is_held_out(keyword: str) -> bool:
    """Keywords reserved for evaluation: CRC32 of the lower-cased word is 0 mod 10 (about 10%)."""
    return zlib.crc32(keyword.lower().encode("utf-8")) % 10 == 0


@dataclass(frozen=True)
class Needle:
    subject: str
    keyword: str

    @property
    def sentence(self) -> str:
        return f"The {self.subject} is {self.keyword}."

    @property
    def question(self) -> str:
        return f"What is the {self.subject}?"


class NeedleGenerator:
    """Random needles: subjects from the word lists above, keywords from those lists, the report's words,
    invented words and numbers. ``held_out`` selects the evaluation keywords (disjoint from training's)."""

    def __init__(self, report_text: str, rng: random.Random, held_out: bool = False,
                 keyword_mix: Sequence[float] = EVAL_KEYWORD_MIX, phrase_subject_share: float = 0.0,
                 capitalize_share: float = 0.1, pieces: tuple[Sequence[str], Sequence[str]] | None = None,
                 piece_keyword_share: float = 0.0):  # fmt: skip
        if piece_keyword_share and not pieces:
            raise ValueError("piece_keyword_share > 0 needs the tokenizer's pieces (vocabulary_pieces(tokenizer))")
        if len(keyword_mix) != 3 or any(w < 0 for w in keyword_mix) or sum(keyword_mix) <= 0:
            raise ValueError(
                f"keyword_mix must be 3 non-negative weights (words, invented, numbers), got {keyword_mix!r}"
            )
        total = sum(keyword_mix)
        self.word_share, self.invented_share = keyword_mix[0] / total, keyword_mix[1] / total
        self.rng = rng
        report_words = {w.lower() for w in re.findall(r"\b[A-Za-z]{4,12}\b", report_text)}
        pool = sorted(set(KEYWORD_WORDS) | report_words)
        self.words = [w for w in pool if is_held_out(w) == held_out]
        self.held_out = held_out
        self.phrase_subject_share, self.capitalize_share = phrase_subject_share, capitalize_share
        self.pieces, self.piece_keyword_share = pieces, piece_keyword_share
        # word runs of the report for free-form subjects ("annual sustainment cost of the fleet")
        self.phrase_sources = [
            words
            for words in (re.findall(r"[A-Za-z][A-Za-z'-]*", s) for s in split_sentences(report_text))
            if len(words) >= 3
        ]

    def phrase_subject(self) -> str:
        """2 to 6 consecutive words of a report sentence, lower-cased, not starting with an article."""
        words = self.rng.choice(self.phrase_sources)
        size = self.rng.randint(2, min(6, len(words)))
        start = self.rng.randint(0, len(words) - size)
        phrase = [w.lower() for w in words[start : start + size]]
        while phrase and phrase[0] in ("the", "a", "an"):
            phrase = phrase[1:]
        return " ".join(phrase) if len(phrase) >= 2 else self.template_subject()

    def subject(self) -> str:
        if self.phrase_subject_share and self.rng.random() < self.phrase_subject_share:
            return self.phrase_subject()
        return self.template_subject()

    def template_subject(self) -> str:
        r = self.rng.random()
        adjective, noun = self.rng.choice(SUBJECT_ADJECTIVES), self.rng.choice(SUBJECT_NOUNS)
        owner = self.rng.choice(SUBJECT_OWNERS)
        if r < 0.4:
            return f"{adjective} {noun}"
        if r < 0.8:
            return f"{adjective} {noun} of the {owner}"
        return f"{noun} of the {owner}"

    def piece_keyword(self) -> str:
        """A word-start token of the vocabulary and 0-2 continuation tokens, drawn uniformly: every token of
        the vocabulary turns up as a keyword piece, so that copying is learned for all of them."""
        starts, continuations = self.pieces  # type: ignore[misc]
        n_continuations = self.rng.choices((0, 1, 2), weights=(0.4, 0.35, 0.25))[0]
        return self.rng.choice(starts) + "".join(self.rng.choice(continuations) for _ in range(n_continuations))

    def keyword(self) -> str:
        while True:
            r = self.rng.random()
            if self.piece_keyword_share and self.rng.random() < self.piece_keyword_share:
                word = self.piece_keyword()
            elif r < self.word_share:
                word = self.rng.choice(self.words)
            elif r < self.word_share + self.invented_share:
                word = "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, 3)))
            else:
                word = str(self.rng.randint(10, 99999))
            if self.rng.random() < self.capitalize_share and word.isalpha():
                word = word.capitalize()
            if is_held_out(word) == self.held_out:
                return word

    def __call__(self) -> Needle:
        return Needle(self.subject(), self.keyword())


# -- settings ------------------------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    """Everything that determines a training run (written into the logs and the model cards)."""

    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    mlp_hidden_size: int = 768
    vocab_size: int = 4096
    train_length: int = 256
    rope_theta: float = 10000.0
    steps: int = 6000
    batch_size: int = 128
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 300
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    mix: dict[str, float] = field(default_factory=lambda: {"report": 0.3, "retrieval": 0.1, "sft": 0.6})
    keyword_mix: tuple[float, float, float] = (0.3, 0.5, 0.2)
    phrase_subject_share: float = 0.5  # share of free-form subjects (report word runs) among training needles
    capitalize_share: float = 0.25  # share of capitalised keywords (names) among training needles
    # share of training keywords made of random vocabulary tokens: a token never seen as a keyword piece is not
    # copied at all (the twins shipped before this setting: 0 of 80 such first tokens, 92-100% of seen ones)
    piece_keyword_share: float = 0.4
    sft_response_tokens: int = 32  # SFT responses (answer + EOS padding) at most this long; 0: any length
    ar_loss_weighting: str = "row"  # "row": every row counts the same (as the diffusion loss); "token": legacy
    distractor_share: float = 0.3
    log_every: int = 25
    probe_every: int = 250
    eval_prompts: int = 40
    eval_multiples: tuple[int, ...] = (1, 2, 4, 8)
    short_batch_share: float = 0.1
    short_batch_min_length: int = 96
    # processes building batches; each has its own seeded stream, so a run reproduces for a given count
    data_workers: int = 0
    time_limit_s: float | None = None
    time_budget_s: float | None = None

    def check(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "mlp_hidden_size", "vocab_size", "train_length", "steps",
                     "batch_size", "log_every", "probe_every"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")
        if self.train_length < 64:
            raise ValueError(
                f"train_length must be >= 64 (a haystack, a needle and a question), got {self.train_length}"
            )
        if (
            set(self.mix) - set(ROW_KINDS)
            or not self.mix
            or any(v < 0 for v in self.mix.values())
            or sum(self.mix.values()) <= 0
        ):
            raise ValueError(f"mix must map some of {ROW_KINDS} to non-negative shares (not all 0), got {self.mix!r}")
        if self.ar_loss_weighting not in AR_LOSS_WEIGHTINGS:
            raise ValueError(f"ar_loss_weighting must be one of {AR_LOSS_WEIGHTINGS}, got {self.ar_loss_weighting!r}")
        if (
            isinstance(self.sft_response_tokens, bool)
            or not isinstance(self.sft_response_tokens, int)
            or self.sft_response_tokens < 0
        ):
            raise ValueError(f"sft_response_tokens must be an integer >= 0, got {self.sft_response_tokens!r}")
        if len(self.keyword_mix) != 3 or any(w < 0 for w in self.keyword_mix) or sum(self.keyword_mix) <= 0:
            raise ValueError(
                f"keyword_mix must be 3 non-negative weights (words, invented, numbers), got {self.keyword_mix!r}"
            )
        if isinstance(self.data_workers, bool) or not isinstance(self.data_workers, int) or self.data_workers < 0:
            raise ValueError(f"data_workers must be an integer >= 0, got {self.data_workers!r}")
        for name in ("phrase_subject_share", "capitalize_share", "piece_keyword_share", "short_batch_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0 <= self.short_batch_share <= 1:
            raise ValueError(f"short_batch_share must be in [0, 1], got {self.short_batch_share!r}")
        if not 0 <= self.distractor_share <= 1:
            raise ValueError(f"distractor_share must be in [0, 1], got {self.distractor_share!r}")


def parse_keyword_mix(text: str) -> tuple[float, float, float]:
    """``"0.3,0.5,0.2"`` -> weights of real words, invented words and numbers."""
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        raise ValueError(f"--keyword-mix must be three numbers WORDS,INVENTED,NUMBERS, got {text!r}") from None
    if len(weights) != 3:
        raise ValueError(f"--keyword-mix must be three numbers WORDS,INVENTED,NUMBERS, got {text!r}")
    return weights  # type: ignore[return-value]


def parse_mix(text: str) -> dict[str, float]:
    """``"report=0.35,retrieval=0.15,sft=0.5"`` -> dict (shares are normalised when sampling)."""
    mix = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in ROW_KINDS:
            raise ValueError(f"--mix entries must be KIND=SHARE with KIND in {ROW_KINDS}, got {part!r}")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--mix share for {name.strip()!r} must be a number, got {value!r}") from None
    return mix


# -- the tokenizer and the data ------------------------------------------------------------------------------------


def report_text() -> str:
    return (Path(__file__).resolve().parent / "data" / "gov_report_001.txt").read_text(encoding="utf-8")


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
        """One row of ``kind`` (see the module docstring) and its loss region."""
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


# -- models ----------------------------------------------------------------------------------------------------


def diffusion_config(settings: TrainSettings, tokenizer):
    from longllada.tiny_model import AUTO_MAP, round_up
    from modeling_longllada import LongLLaDAConfig

    size = round_up(len(tokenizer))
    return LongLLaDAConfig(
        d_model=settings.d_model, n_heads=settings.n_heads, n_kv_heads=settings.n_heads, n_layers=settings.n_layers,
        mlp_hidden_size=settings.mlp_hidden_size, mlp_ratio=max(1, settings.mlp_hidden_size // settings.d_model),
        vocab_size=size, embedding_size=size, max_sequence_length=settings.train_length,
        rope_theta=float(settings.rope_theta), init_device="cpu", architectures=["LongLLaDAModelLM"],
        auto_map=dict(AUTO_MAP), mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip


def llama_config(settings: TrainSettings, tokenizer):
    from transformers import LlamaConfig

    from longllada.tiny_model import round_up

    return LlamaConfig(
        vocab_size=round_up(len(tokenizer)), hidden_size=settings.d_model, intermediate_size=settings.mlp_hidden_size,
        num_hidden_layers=settings.n_layers, num_attention_heads=settings.n_heads,
        num_key_value_heads=settings.n_heads, max_position_embeddings=settings.train_length,
        rope_theta=float(settings.rope_theta), rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=False,
        mlp_bias=False, hidden_act="silu", initializer_range=0.02, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, architectures=["LlamaForCausalLM"],
    )  # fmt: skip


def build_model(twin: str, settings: TrainSettings, tokenizer):
    import torch

    torch.manual_seed(settings.seed)
    if twin == "diffusion":
        from modeling_longllada import LongLLaDAModelLM

        return LongLLaDAModelLM(diffusion_config(settings, tokenizer))
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(llama_config(settings, tokenizer))


# -- losses ----------------------------------------------------------------------------------------------------


def diffusion_loss(model, batch: Batch, mask_id: int, generator) -> tuple[Any, dict[str, float]]:
    """LLaDA's masked-diffusion loss (module docstring); also the per-kind losses for the log."""
    import torch
    import torch.nn.functional as F

    x, region = batch.input_ids, batch.loss_region
    b, length = x.shape
    t = torch.rand(b, device=x.device, generator=generator)
    p_mask = (1 - MASK_EPS) * t + MASK_EPS
    masked = (torch.rand(b, length, device=x.device, generator=generator) < p_mask[:, None]) & region
    noisy = torch.where(masked, torch.full_like(x, mask_id), x)
    rows, cols = masked.nonzero(as_tuple=True)
    logits = model(input_ids=noisy, logits_to_keep=None).logits
    token_ce = F.cross_entropy(logits[rows, cols].float(), x[rows, cols], reduction="none") / p_mask[rows]
    per_row = torch.zeros(b, device=x.device).index_add_(0, rows, token_ce) / region.sum(1).clamp_min(1)
    return per_row.mean(), _per_kind(per_row, batch.kinds)


def ar_loss(model, batch: Batch, eos_id: int, weighting: str = "row") -> tuple[Any, dict[str, float]]:
    """Next-token cross-entropy over the loss region (a token is scored when it is in the region; for SFT rows
    the answer and the first EOS), averaged over scored tokens; per-kind losses for the log."""
    import torch
    import torch.nn.functional as F

    x, region = batch.input_ids, batch.loss_region.clone()
    sft = torch.tensor([k == "sft" for k in batch.kinds], device=x.device)
    if sft.any():  # after the first EOS of an SFT response, the padding is not scored
        eos_seen = (x == eos_id) & region
        after_first = eos_seen.cumsum(1) > 1
        region = region & ~(after_first & sft[:, None])
    logits = model(input_ids=x).logits[:, :-1]
    targets, scored = x[:, 1:], region[:, 1:]
    token_ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    token_ce = token_ce.view_as(targets) * scored
    per_row = token_ce.sum(1) / scored.sum(1).clamp_min(1)
    if weighting == "row":  # each row counts the same: an SFT row's few answer tokens weigh as much as a report row
        return per_row.mean(), _per_kind(per_row, batch.kinds)
    return token_ce.sum() / scored.sum().clamp_min(1), _per_kind(per_row, batch.kinds)


def _per_kind(per_row, kinds: list[str]) -> dict[str, float]:
    values = per_row.detach().float().cpu().tolist()
    out: dict[str, float] = {}
    for kind in ROW_KINDS:
        chosen = [v for v, k in zip(values, kinds) if k == kind]
        if chosen:
            out[f"loss_{kind}"] = sum(chosen) / len(chosen)
    return out


def lr_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at the last step."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    floor = settings.min_lr_ratio
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# -- the answer probe during training (cheap) -----------------------------------------------------------------


def probe_accuracy(twin: str, model, probe: Batch, answers: list[list[int]], mask_id: int) -> float:
    """Share of held-out SFT rows whose whole answer is predicted right: diffusion, one step with the whole
    response masked (argmax per position); AR, teacher-forced argmax of each answer token."""
    import torch

    x, region = probe.input_ids, probe.loss_region
    with torch.no_grad():
        if twin == "diffusion":
            noisy = torch.where(region, torch.full_like(x, mask_id), x)
            pred = model(input_ids=noisy).logits.argmax(-1)
        else:
            pred = torch.cat([x[:, :1], model(input_ids=x).logits[:, :-1].argmax(-1)], dim=1)
    right = 0
    for i, answer in enumerate(answers):
        start = int(region[i].float().argmax())
        right += bool(torch.equal(pred[i, start : start + len(answer)].cpu(), torch.tensor(answer)))
    return right / len(answers)


# -- training ----------------------------------------------------------------------------------------------------


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


def train_twin(twin: str, settings: TrainSettings, out_dir: Path, log_dir: Path, device: str) -> dict[str, Any]:
    """Train one twin, save it to ``out_dir``, log to ``log_dir/{twin}.jsonl``; returns the summary."""
    import torch

    settings.check()
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    tokenizer = build_twin_tokenizer(settings.vocab_size)
    text = report_text()
    builder = DocumentBuilder.for_training(tokenizer, text, settings)
    probe_builder = DocumentBuilder(tokenizer, text, settings.train_length, random.Random(10_000 + settings.seed),
                                    held_out=True)  # fmt: skip
    probe = probe_builder.batch(64, {"sft": 1.0})
    probe_answers = []
    for i in range(probe.input_ids.shape[0]):
        response = probe.input_ids[i][probe.loss_region[i]].tolist()
        probe_answers.append(response[: response.index(tokenizer.eos_token_id)])
    probe = Batch(probe.input_ids.to(device), probe.loss_region.to(device), probe.kinds)

    model = build_model(twin, settings, tokenizer).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.startswith("cuda"),
    )  # fmt: skip
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    use_autocast = device.startswith("cuda")
    mask_id = tokenizer.mask_token_id
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{twin}.jsonl"
    log = log_path.open("w", encoding="utf-8")
    log.write(json.dumps({"event": "start", "twin": twin, "settings": asdict(settings), "parameters": n_params,
                          "device": device, "vocab": len(tokenizer)}) + "\n")  # fmt: skip
    print(f"[{twin}] {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}, device {device}", flush=True)

    batches = batch_stream(builder, settings)
    start = time.time()
    window: list[float] = []
    kinds_window: dict[str, list[float]] = {}
    step = -1
    stopped_early = False
    calibration = (10, 60)  # with a time budget, the step count is fixed from the speed of these steps
    while step + 1 < settings.steps:
        step += 1
        if settings.time_budget_s is not None and step in calibration:
            if step == calibration[0]:
                calibration_start = time.time()
            else:
                per_step = (time.time() - calibration_start) / (calibration[1] - calibration[0])
                settings.steps = max(step + 1, settings.warmup_steps + 1, int(settings.time_budget_s / per_step))
                log.write(json.dumps({"event": "steps_set", "step": step, "seconds_per_step": per_step,
                                      "steps": settings.steps}) + "\n")  # fmt: skip
                print(f"[{twin}] {per_step * 1000:.1f} ms/step: training {settings.steps} steps", flush=True)
        if settings.time_limit_s is not None and time.time() - start > settings.time_limit_s:
            stopped_early = True
            break
        batch = next(batches)
        batch = Batch(batch.input_ids.to(device, non_blocking=True), batch.loss_region.to(device), batch.kinds)
        lr = lr_at(step, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_autocast):
            if twin == "diffusion":
                loss, parts = diffusion_loss(model, batch, mask_id, generator)
            else:
                loss, parts = ar_loss(model, batch, tokenizer.eos_token_id, settings.ar_loss_weighting)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        window.append(float(loss.detach()))
        for k, v in parts.items():
            kinds_window.setdefault(k, []).append(v)
        last = step == settings.steps - 1
        if (step + 1) % settings.log_every == 0 or last:
            record = {"step": step + 1, "loss": sum(window) / len(window), "lr": lr, "grad_norm": float(grad_norm),
                      "elapsed_s": round(time.time() - start, 2),
                      **{k: sum(v) / len(v) for k, v in kinds_window.items()}}  # fmt: skip
            if (step + 1) % settings.probe_every == 0 or last:
                model.eval()
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_autocast):
                    record["probe_answer_acc"] = probe_accuracy(twin, model, probe, probe_answers, mask_id)
                print(f"[{twin}] step {step + 1} loss {record['loss']:.4f} probe {record['probe_answer_acc']:.2f} "
                      f"({record['elapsed_s']:.0f}s)", flush=True)  # fmt: skip
            log.write(json.dumps(record) + "\n")
            log.flush()
            window, kinds_window = [], {}
    steps_done = step + (0 if stopped_early else 1)
    train_seconds = time.time() - start
    log.write(json.dumps({"event": "end", "steps_done": steps_done, "stopped_early": stopped_early,
                          "train_seconds": round(train_seconds, 1)}) + "\n")  # fmt: skip
    log.close()
    folder = out_dir / (DIFFUSION_DIR_NAME if twin == "diffusion" else AR_DIR_NAME)
    save_twin(twin, model, tokenizer, folder)
    return {"twin": twin, "parameters": n_params, "steps_done": steps_done, "stopped_early": stopped_early,
            "train_seconds": round(train_seconds, 1), "folder": str(folder), "settings": asdict(settings)}  # fmt: skip


# -- saving ----------------------------------------------------------------------------------------------------


def _portable_config(folder: Path, extra: dict[str, Any]) -> None:
    """Make config.json read the same on transformers 4.46 and 5.x: weights are stored in bfloat16 to keep the
    package small, but the model loads in float32 by default (``torch_dtype`` for 4.x, ``dtype`` for 5.x)."""
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(extra)
    config["torch_dtype"] = config["dtype"] = "float32"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_twin(twin: str, model, tokenizer, folder: Path) -> Path:
    """Write a twin's folder: config.json, model.safetensors (bfloat16), tokenizer, generation_config.json and,
    for the diffusion twin, the remote-code files beside them."""
    import torch
    from safetensors.torch import save_file

    from longllada.tiny_model import copy_remote_code, write_generation_config
    from longllada.tokenizer import save_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    token_ids = {"mask_token_id": tokenizer.mask_token_id, "eos_token_id": tokenizer.eos_token_id,
                 "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id}  # fmt: skip
    save_tokenizer(tokenizer, folder)
    if twin == "diffusion":
        model.config.save_pretrained(folder)
        _portable_config(folder, {})
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        copy_remote_code(folder)
        write_generation_config(folder, token_ids)
    else:
        state.pop("lm_head.weight", None) if model.config.tie_word_embeddings else None
        model.config.save_pretrained(folder)
        _portable_config(folder, {"rope_theta": float(model.config.rope_theta if hasattr(model.config, "rope_theta")
                                                     else model.config.rope_parameters["rope_theta"])})  # fmt: skip
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        generation = {"bos_token_id": token_ids["bos_token_id"], "eos_token_id": token_ids["eos_token_id"],
                      "pad_token_id": token_ids["pad_token_id"], "do_sample": False}  # fmt: skip
        (folder / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
    return folder


def load_twin(twin: str, folder: Path, device: str):
    """Reload a saved twin in float32, as a user would."""
    import torch

    if twin == "diffusion":
        from modeling_longllada import LongLLaDAModelLM

        model = LongLLaDAModelLM.from_pretrained(folder, torch_dtype=torch.float32)
    else:
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    return model.to(device).eval()


# -- evaluation ------------------------------------------------------------------------------------------------


def eval_prompts(tokenizer, length: int, n_prompts: int, seed: int,
                 needles: Sequence[Needle] | None = None) -> list[tuple[list[int], Needle, float]]:  # fmt: skip
    """Needle prompts of exactly ``length`` tokens in the contiguous report: haystack + needle at one of five
    depths (a sentence start near it) + "\\n\\nQuestion: ...\\nAnswer:". Needles: held-out ones from the
    generator, or ``needles`` (each at every depth; ``n_prompts`` is then ignored)."""
    rng = random.Random(seed)
    text = report_text()
    generator = NeedleGenerator(text, rng, held_out=True)
    if needles is not None:
        n_prompts = len(needles) * len(DEPTHS)
    report_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    period = set(tokenizer(".", add_special_tokens=False)["input_ids"])
    prompts = []
    for i in range(n_prompts):
        needle = generator() if needles is None else needles[i // len(DEPTHS)]
        depth = DEPTHS[i % len(DEPTHS)]
        question = tokenizer("\n\nQuestion: " + needle.question + "\nAnswer:", add_special_tokens=False)["input_ids"]
        spaced = tokenizer(" " + needle.sentence, add_special_tokens=False)["input_ids"]
        budget = length - len(question) - len(spaced)
        if budget < 0:
            raise ValueError(f"prompt length {length} is shorter than the needle and question ({length - budget} "
                             "tokens); evaluate longer prompts")  # fmt: skip
        while len(report_ids) < budget:  # longer than the report: repeat it
            report_ids = report_ids + report_ids
        offset = rng.randint(0, len(report_ids) - budget)
        hay = report_ids[offset : offset + budget]
        starts = [j + 1 for j, t in enumerate(hay[:-1]) if t in period] + [0, len(hay)]
        at = min(starts, key=lambda c: abs(c - depth * len(hay)))
        prompts.append((hay[:at] + spaced + hay[at:] + question, needle, depth))
    return prompts


def with_rope_base(model, factor: float):
    """A Llama twin whose RoPE base is multiplied by ``factor`` (NTK scaling): rebuilt and reloaded."""
    from transformers import LlamaForCausalLM

    config = copy.deepcopy(model.config)
    base = getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]
    if getattr(config, "rope_parameters", None) is not None:
        config.rope_parameters = {**config.rope_parameters, "rope_theta": base * factor}
    config.rope_theta = base * factor
    scaled = LlamaForCausalLM(config).to(model.device, model.dtype)
    scaled.load_state_dict(model.state_dict())
    return scaled.eval()


def evaluate_retrieval(twin: str, model, tokenizer, settings: TrainSettings, device: str, batch_size: int = 20,
                       needle_set_names: Sequence[str] = NEEDLE_SETS) -> list[dict[str, Any]]:  # fmt: skip
    """Retrieval accuracy per (prompt length, NTK on/off); see the module docstring."""
    import torch

    from modeling_longllada import ntk_scaling_factor

    head_dim = settings.d_model // settings.n_heads
    lengths = [settings.train_length - 32] + [m * settings.train_length for m in settings.eval_multiples]
    unknown = set(needle_set_names) - set(NEEDLE_SETS)
    if unknown:
        raise ValueError(f"needle sets {sorted(unknown)} are unknown; allowed: {NEEDLE_SETS}")
    needle_sets: list[tuple[str, list[Needle] | None]] = [("held-out", None)] if "held-out" in needle_set_names else []
    if (
        "niah-task" in needle_set_names and NIAH_NEEDLES.is_file()
    ):  # the evaluation task's needles: never trained on, other subjects' style
        rows = [json.loads(line) for line in NIAH_NEEDLES.read_text(encoding="utf-8").splitlines() if line.strip()]
        needle_sets.append(("niah-task", [Needle(r["subject"], r["keyword"]) for r in rows]))
    results = []
    for (set_name, needles), length in ((ns, n) for n in lengths for ns in needle_sets):
        prompts = eval_prompts(tokenizer, length, settings.eval_prompts, seed=777 + length, needles=needles)
        total = length + 32 if twin == "diffusion" else length + 8
        factor = ntk_scaling_factor(head_dim, settings.rope_theta, settings.train_length, total)
        for ntk in (False, True):
            if ntk and factor == 1:
                continue
            if twin == "diffusion":
                model.config.rope_scaling = {"type": "dynamic"} if ntk else None
                scored = model
            else:
                scored = with_rope_base(model, factor) if ntk else model
            right, by_depth = 0, {d: [0, 0] for d in DEPTHS}
            examples = []
            for i in range(0, len(prompts), batch_size):
                chunk = prompts[i : i + batch_size]
                ids = torch.tensor([p for p, _, _ in chunk], device=device)
                with torch.no_grad():
                    if twin == "diffusion":
                        out = scored.generate(ids, max_new_tokens=32, steps=32, block_length=32, temperature=0.0)
                    else:
                        out = scored.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                              do_sample=False, pad_token_id=tokenizer.eos_token_id)  # fmt: skip
                for (_, needle, depth), row in zip(chunk, out[:, ids.shape[1] :].tolist()):
                    answer = tokenizer.decode(row, skip_special_tokens=True)
                    hit = needle.keyword in answer
                    right += hit
                    by_depth[depth][0] += hit
                    by_depth[depth][1] += 1
                    if len(examples) < 3:
                        examples.append({"keyword": needle.keyword, "output": answer[:60]})
            result = {"twin": twin, "needles": set_name, "prompt_length": length, "ntk": ntk, "ntk_factor": factor if ntk else 1,
                      "accuracy": right / len(prompts), "n": len(prompts),
                      "by_depth": {str(d): v[0] / v[1] for d, v in by_depth.items() if v[1]}, "examples": examples}  # fmt: skip
            print(f"[{twin}] retrieval ({set_name} needles) @ {length} tokens{' NTK x' + str(factor) if ntk else ''}: "
                  f"{result['accuracy']:.2%}", flush=True)  # fmt: skip
            results.append(result)
    if twin == "diffusion":
        model.config.rope_scaling = None
    return results


# -- model cards -------------------------------------------------------------------------------------------------


def write_model_card(twin: str, folder: Path, settings: TrainSettings, summary: dict[str, Any], command: str,
                     log_dir: Path, note: str = "") -> Path:  # fmt: skip
    """README.md: what the model is, how it was trained (the command), final losses and retrieval numbers."""
    log = [json.loads(line) for line in (log_dir / f"{twin}.jsonl").read_text().splitlines()]
    records = [r for r in log if "loss" in r]
    vocab = next((r["vocab"] for r in log if r.get("event") == "start"), settings.vocab_size)
    at_trained = [r["accuracy"] for r in summary.get("retrieval", [])
                  if r["prompt_length"] == settings.train_length and not r["ntk"]
                  and r.get("needles", "held-out") == "held-out"]  # fmt: skip
    status = ""
    if at_trained and twin == "diffusion":
        verdict = "meets" if at_trained[0] >= 0.9 else "is below"
        status = (
            f"\n**Status:** retrieval at the trained length is {at_trained[0]:.0%}, which {verdict} the "
            "project's 90% target for the diffusion twin (issue 7).\n"
        )
    final = records[-1] if records else {}
    retrieval = summary.get("retrieval", [])
    table = "\n".join(
        f"| {r.get('needles', 'held-out')} | {r['prompt_length']} | {'NTK x' + str(r['ntk_factor']) if r['ntk'] else 'none'} "
        f"| {r['accuracy']:.0%} ({r['n']} prompts) |"
        for r in retrieval
    )
    what = {
        "diffusion": (
            "A tiny masked diffusion language model of the LLaDA architecture (`LongLLaDAModelLM`, bidirectional "
            "attention, official LLaDA key names), trained with LLaDA's masked-diffusion objective. Loads with "
            "`AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`; the remote code is beside the "
            "weights. Sample with `model.generate(input_ids, max_new_tokens=32, steps=32, block_length=32)`."
        ),
        "ar": (
            "The autoregressive twin: `transformers.LlamaForCausalLM` with the same widths, heads, layers, MLP, RoPE "
            "base, tokenizer and data as `tiny-llada-diffusion`, trained with next-token loss. A plain transformers "
            "folder (no remote code)."
        ),
    }[twin]
    mix = ", ".join(f"{k} {v:g}" for k, v in settings.mix.items())
    pieces = ""
    if settings.piece_keyword_share:
        pieces = (f"; {settings.piece_keyword_share:.0%} of the keywords are instead 1-3 random tokens of the "
                  "vocabulary, so that every token is learned as a piece to copy")  # fmt: skip
    reproduce = (
        f"\nThe time budget fixed the step count at {summary['steps_done']}; add `--steps {summary['steps_done']}` "
        "and drop `--time-budget` to repeat the same schedule on any machine.\n"
        if "--time-budget" in command
        else ""
    )
    card = f"""---
license: mit
library_name: transformers
tags: [longllada, tiny, {"masked-diffusion, llada" if twin == "diffusion" else "causal-lm, llama"}]
---
# {folder.name}

{what}

Shipped with the LongLLaDA toolkit for its CPU demo of the paper's findings (perplexity and needle retrieval
past the trained length, with and without NTK RoPE scaling). It is a toy: it knows one report and the
needle format, nothing else.

## Model

| field | value |
|---|---|
| parameters | {summary["parameters"] / 1e6:.2f} M |
| layers, width, heads (head dim), MLP | {settings.n_layers}, {settings.d_model}, {settings.n_heads} ({settings.d_model // settings.n_heads}), {settings.mlp_hidden_size} |
| vocabulary | byte-level BPE, {vocab} tokens (asked {settings.vocab_size}; the text has no more merges), LLaDA special tokens |
| trained length | {settings.train_length} tokens |
| RoPE base | {settings.rope_theta:g} |
| stored dtype | bfloat16 (loads as float32 by default) |

## Training

Data (regenerated by the command, nothing downloaded): the public-domain GAO report shipped in
`longllada/data/gov_report_001.txt`, sentences shuffled into {settings.train_length}-token rows, and synthetic
retrieval documents (a needle "The {{subject}} is {{keyword}}." at a random depth of a haystack of report
sentences, a distractor needle in {settings.distractor_share:.0%} of them, then
"Question: What is the {{subject}}?" / "Answer: {{keyword}}."). Needles come from the training script's own
generator; keywords reserved for evaluation are never trained on. Keyword sources: real words, invented words
and numbers (weights {"/".join(f"{w:g}" for w in settings.keyword_mix)}){pieces}. Row mix: {mix} (`sft` rows score only the
answer and its EOS padding{", masked as in LLaDA SFT" if twin == "diffusion" else ""}).

Objective: {"masked diffusion: t ~ U(0.001, 1) per row, tokens of the loss region masked with probability t, cross-entropy on masked tokens weighted 1/t, divided by the region length" if twin == "diffusion" else "next-token cross-entropy on the loss region"}.
AdamW (lr {settings.lr:g}, betas 0.9/0.95, weight decay {settings.weight_decay:g}), {settings.warmup_steps} warm-up steps then cosine to
{settings.min_lr_ratio:g}x, batch {settings.batch_size} x {settings.train_length} tokens, {summary["steps_done"]} steps
({summary["train_seconds"]:.0f} s on {summary.get("device_name", "the training device")}), seed {settings.seed}, bf16 autocast.

```
{command}
```
{reproduce}{note}

Final training loss (mean of the last {settings.log_every} steps): {final.get("loss", float("nan")):.4f}
({", ".join(f"{k[5:]} {v:.4f}" for k, v in final.items() if k.startswith("loss_"))}).
Loss curves: `benchmarks/train_logs/{twin}.jsonl` and `loss_curves.png`.

## Needle retrieval ({"exact diffusion sampling: 32 tokens, block 32, 32 steps, greedy" if twin == "diffusion" else "greedy decoding, 8 tokens"})

Prompt = contiguous report text of the given length with the needle at depth 0/25/50/75/100 %, then the question;
a hit when the output contains the keyword. Needles: `held-out` = the training generator's format with keywords
reserved from training; `niah-task` = the evaluation task's own needles (`lm_eval_tasks/longllada_niah`, other
subjects and wording, never trained on; each at every depth). {"NTK: `rope_scaling={'type': 'dynamic'}` (the scaling law's factor for the length)." if twin == "diffusion" else "NTK: RoPE base multiplied by the scaling law's factor for the length."}

| needles | prompt tokens | scaling | accuracy |
|---|---|---|---|
{table}
{status}"""
    path = folder / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


# -- loss-curve plot ---------------------------------------------------------------------------------------------


def plot_logs(log_dir: Path) -> Path | None:
    """``loss_curves.png`` from the twins' JSON-lines logs (training loss and the answer probe)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency; the GPU image may lack it
        return None
    fig, (ax_loss, ax_probe) = plt.subplots(1, 2, figsize=(11, 4))
    for twin in TWINS:
        path = log_dir / f"{twin}.jsonl"
        if not path.is_file():
            continue
        records = [json.loads(line) for line in path.read_text().splitlines()]
        steps = [r["step"] for r in records if "loss" in r]
        ax_loss.plot(steps, [r["loss"] for r in records if "loss" in r], label=f"{twin}: total")
        for kind in ROW_KINDS:
            points = [(r["step"], r[f"loss_{kind}"]) for r in records if f"loss_{kind}" in r]
            if points:
                ax_loss.plot(*zip(*points), lw=0.7, alpha=0.6, label=f"{twin}: {kind} rows")
        probe = [(r["step"], r["probe_answer_acc"]) for r in records if "probe_answer_acc" in r]
        if probe:
            ax_probe.plot(*zip(*probe), marker=".", label=twin)
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log", title="training loss (diffusion: 1/t-weighted bound)")
    ax_probe.set(xlabel="step", ylabel="answers exactly right", ylim=(0, 1.02),
                 title="held-out answer probe (one step / teacher-forced)")  # fmt: skip
    ax_loss.legend(fontsize=7)
    ax_probe.legend(fontsize=8)
    fig.tight_layout()
    out = log_dir / "loss_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# -- command line ---------------------------------------------------------------------------------------------


def settings_from_dict(values: dict[str, Any]) -> TrainSettings:
    """TrainSettings from its ``asdict`` form (as stored in a summary); unknown keys are ignored."""
    known = {f.name for f in fields(TrainSettings)}
    kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
    kept.setdefault("piece_keyword_share", 0.0)  # runs from before the setting had none
    return TrainSettings(**kept)


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    settings = TrainSettings(
        d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, mlp_hidden_size=args.mlp,
        vocab_size=args.vocab_size, train_length=args.train_length, rope_theta=args.rope_theta, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, warmup_steps=min(args.warmup, args.steps), seed=args.seed,
        eval_prompts=args.eval_prompts, time_limit_s=args.time_limit, time_budget_s=args.time_budget,
        short_batch_share=args.short_batch_share, data_workers=args.data_workers,
        distractor_share=args.distractor_share, sft_response_tokens=args.sft_response_tokens,
        ar_loss_weighting=args.ar_loss_weighting, keyword_mix=parse_keyword_mix(args.keyword_mix),
        phrase_subject_share=args.phrase_subject_share, capitalize_share=args.capitalize_share,
        piece_keyword_share=args.piece_keyword_share, log_every=min(args.log_every, args.steps),
        probe_every=min(args.probe_every, args.steps),
        eval_multiples=tuple(int(m) for m in args.eval_multiples.split(",")) if args.eval_multiples else (),
    )  # fmt: skip
    if args.mix:
        settings.mix = parse_mix(args.mix)
    settings.check()
    return settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-tiny", help="train the shipped tiny diffusion and autoregressive twins (GPU recommended)",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainSettings()
    parser.add_argument("--twin", choices=(*TWINS, "both"), default="both", help="which twin to train (default both)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_MODELS_DIR, help="models folder (default: shipped)")
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR, help="logs folder (benchmarks/train_logs)")
    parser.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    parser.add_argument("--d-model", type=int, default=defaults.d_model)
    parser.add_argument("--layers", type=int, default=defaults.n_layers)
    parser.add_argument("--heads", type=int, default=defaults.n_heads)
    parser.add_argument("--mlp", type=int, default=defaults.mlp_hidden_size)
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    parser.add_argument("--train-length", type=int, default=defaults.train_length)
    parser.add_argument("--rope-theta", type=float, default=defaults.rope_theta)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup", type=int, default=defaults.warmup_steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--mix", default=None, help="row shares, e.g. report=0.35,retrieval=0.15,sft=0.5")
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--probe-every", type=int, default=defaults.probe_every)
    parser.add_argument("--eval-prompts", type=int, default=defaults.eval_prompts, help="held-out prompts per length")
    parser.add_argument("--eval-multiples", default=",".join(map(str, defaults.eval_multiples)),
                        help="evaluation lengths as multiples of the trained length ('' for none)")  # fmt: skip
    parser.add_argument("--no-eval", action="store_true", help="skip the final retrieval evaluation")
    parser.add_argument("--eval-sets", default=",".join(NEEDLE_SETS),
                        help="needle sets to evaluate: held-out (the generator's reserved keywords) and/or niah-task "
                             "(lm_eval_tasks/longllada_niah/needles.jsonl)")  # fmt: skip
    parser.add_argument("--eval-only", action="store_true", help="evaluate the saved twins, do not train")
    parser.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="fix the step count from the speed of the first steps so that training takes about "
                             "this many seconds (the count is logged; --steps N reproduces it)")  # fmt: skip
    parser.add_argument("--keyword-mix", default=",".join(f"{w:g}" for w in defaults.keyword_mix),
                        help="training keyword sources: weights of real words, invented words, numbers")  # fmt: skip
    parser.add_argument("--phrase-subject-share", type=float, default=defaults.phrase_subject_share,
                        help="share of training needles whose subject is a run of report words (default 0.5)")  # fmt: skip
    parser.add_argument("--capitalize-share", type=float, default=defaults.capitalize_share,
                        help="share of capitalised training keywords (default 0.25)")  # fmt: skip
    parser.add_argument("--piece-keyword-share", type=float, default=defaults.piece_keyword_share,
                        help="share of training keywords made of random vocabulary tokens, so that every token is "
                             "learned as a piece to copy (default 0.4; 0 before this option existed)")  # fmt: skip
    parser.add_argument("--sft-response-tokens", type=int, default=defaults.sft_response_tokens,
                        help="longest SFT response (answer + EOS padding); 0: any length (default 32)")  # fmt: skip
    parser.add_argument("--ar-loss-weighting", choices=AR_LOSS_WEIGHTINGS, default=defaults.ar_loss_weighting,
                        help="AR loss: 'row' (each row counts the same, default) or 'token' (mean over tokens)")  # fmt: skip
    parser.add_argument("--short-batch-share", type=float, default=defaults.short_batch_share,
                        help="share of batches shorter than the trained length (default 0.1)")  # fmt: skip
    parser.add_argument("--distractor-share", type=float, default=defaults.distractor_share,
                        help="share of needle rows with a second needle about another subject (default 0.3)")  # fmt: skip
    parser.add_argument("--data-workers", type=int, default=defaults.data_workers,
                        help="processes building batches (0: a thread of this process, the default); the data "
                             "stream depends on this count")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import torch

    settings = settings_from_args(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    twins = TWINS if args.twin == "both" else (args.twin,)
    command = "longllada train-tiny " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["train-tiny"] else sys.argv[1:])
    args.log_dir.mkdir(parents=True, exist_ok=True)
    for twin in twins:
        folder = args.out_dir / (DIFFUSION_DIR_NAME if twin == "diffusion" else AR_DIR_NAME)
        summary_path = args.log_dir / f"{twin}_summary.json"
        if args.eval_only:
            summary = json.loads(summary_path.read_text())
        else:
            summary = train_twin(twin, settings, args.out_dir, args.log_dir, device)
            summary["device_name"] = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
            summary["command"] = command
        # the settings the saved twin was trained with (an --eval-only run may be given other ones)
        trained = settings_from_dict(summary["settings"]) if "settings" in summary else settings
        eval_settings = replace(trained, eval_multiples=settings.eval_multiples, eval_prompts=settings.eval_prompts)
        if not args.no_eval:
            from transformers import AutoTokenizer

            model = load_twin(twin, folder, device)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            sets = [name.strip() for name in args.eval_sets.split(",") if name.strip()]
            fresh = evaluate_retrieval(twin, model, tokenizer, eval_settings, device, needle_set_names=sets)
            # --eval-only adds to (or replaces cells of) the saved results instead of dropping the others
            kept = summary.get("retrieval", []) if args.eval_only else []
            cell = lambda r: (r.get("needles", "held-out"), r["prompt_length"], r["ntk"])  # noqa: E731
            new_cells = {cell(r) for r in fresh}
            summary["retrieval"] = sorted([r for r in kept if cell(r) not in new_cells] + fresh,
                                          key=lambda r: (r["prompt_length"], r.get("needles", "held-out"), r["ntk"]))  # fmt: skip
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        write_model_card(twin, folder, trained, summary, summary.get("command", command), args.log_dir,
                         summary.get("card_note", ""))  # fmt: skip
    plot_logs(args.log_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longllada.train_tiny", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
