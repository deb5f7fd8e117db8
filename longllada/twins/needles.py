"""Random needles ("The {subject} is {keyword}.") for the twins' training rows and their held-out evaluation.

Keywords whose CRC32 is 0 mod 10 are never trained on: they make the held-out evaluation needles.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

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
