"""RULER's 13 tasks for LongLLaDA, built on lm-eval's own RULER generators and scoring (``lm_eval.tasks.ruler``).

lm-eval loads this file by path (``!function utils.x`` in the YAMLs). Only what differs from lm-eval's ``ruler``
tasks lives here:

- the base-model prompt (LongLLaDA's setup, arXiv 2506.14429): each document's prompt ends right after the question;
  lm-eval's answer stub (its ``gen_prefix``, e.g. "The special magic number for X mentioned in the provided text
  is") is dropped, so a base model answers directly;
- the essay haystack: the public-domain report shipped in the ``longllada`` package by default (lm-eval downloads
  Paul Graham's essays at run time), or the user's own text via ``essays_path``;
- the QA data: lm-eval's downloads stay the default; ``squad_path`` / ``hotpotqa_path`` read local files in the
  layouts lm-eval reads (SQuAD 2.0 dev JSON, HotpotQA dev-distractor JSON; JSON Lines accepted too);
- ``num_samples`` (lm-eval fixes 500 per length) and ``seed`` (each task and length draws from its own seeded
  random state, so a task's data does not depend on which other tasks ran before it);
- lengths too short for a task are refused with a ValueError (lm-eval's vt and cwe generators would loop forever);
- every document reports every length of the run's grid, its score under its own length and None under the
  others, and a length averages the scores it got (the task class ``RulerTask``): every process of a
  data-parallel run then holds the same metric names, which lm-eval's gathering of the processes' metrics
  needs (lm-eval's own "-1 for every other length" filler would be averaged in);
- a ``--metadata`` key that is a near miss of a known one (``max_seq_lenghts``) is an error listing the known keys.

Metadata keys (``--metadata`` JSON, merged by lm-eval with ``--model_args``): ``max_seq_lengths`` (default
[4096, 8192, 16384]), ``num_samples`` (500), ``seed`` (42), ``essays_path``, ``squad_path``, ``hotpotqa_path``;
the tokenizer comes from ``tokenizer`` / ``pretrained`` / ``model`` as in lm-eval's RULER.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from lm_eval_tasks.grid_bounds import check_grid
from lm_eval_tasks.grid_metrics import mean_of_scored
from lm_eval_tasks.metadata_keys import MAX_COUNT, check_count, check_metadata_keys

logger = logging.getLogger(__name__)

DEFAULT_SEQ_LENGTHS = (4096, 8192, 16384)  # the paper's RULER lengths
DEFAULT_NUM_SAMPLES = 500  # lm-eval's and RULER's number of samples per length
DEFAULT_SEED = 42
ESSAY_PACKAGE, ESSAY_RESOURCE = "longllada", ("data", "gov_report_001.txt")
# In a source checkout the report also lies two folders up, for when the package is not installed.
ESSAY_CHECKOUT_PATH = Path(__file__).resolve().parents[2] / ESSAY_PACKAGE / Path(*ESSAY_RESOURCE)
ESSAY_WORDS_STEP = 500  # lm-eval grows an essay haystack by 500 words at a time

# Generated-token budgets lm-eval's generators reserve in each prompt's length (RULER's own values).
NIAH_TOKENS_TO_GENERATE = 128
VT_TOKENS_TO_GENERATE = 30
CWE_TOKENS_TO_GENERATE = 120
FWE_TOKENS_TO_GENERATE = 50
QA_TOKENS_TO_GENERATE = 32
VT_ICL_LENGTH = 500  # lm-eval and RULER size vt's in-context example to 500 tokens
VT_ICL_STEP, VT_NOISE_STEP, CWE_WORD_STEP = 5, 10, 10  # the growth steps lm-eval's vt and cwe generators use
# The smallest prompt a generator can make is measured on a few random draws; it must fit with this slack,
# since the generator's own draws differ (random names and words have different token counts).
FIT_DRAWS, FIT_SLACK_TOKENS = 5, 16

# lm-eval's niah_utils functions, as parameters of lm-eval's prepare_niah.generate_samples.
NIAH_TASKS: dict[str, dict[str, Any]] = {
    "niah_single_1": {"type_haystack": "repeat", "type_needle_k": "words", "type_needle_v": "numbers"},
    "niah_single_2": {"type_haystack": "essay", "type_needle_k": "words", "type_needle_v": "numbers"},
    "niah_single_3": {"type_haystack": "essay", "type_needle_k": "words", "type_needle_v": "uuids"},
    "niah_multikey_1": {
        "type_haystack": "essay",
        "type_needle_k": "words",
        "type_needle_v": "numbers",
        "num_needle_k": 4,
    },
    "niah_multikey_2": {"type_haystack": "needle", "type_needle_k": "words", "type_needle_v": "numbers"},
    "niah_multikey_3": {"type_haystack": "needle", "type_needle_k": "uuids", "type_needle_v": "uuids"},
    "niah_multivalue": {
        "type_haystack": "essay",
        "type_needle_k": "words",
        "type_needle_v": "numbers",
        "num_needle_v": 4,
    },
    "niah_multiquery": {
        "type_haystack": "essay",
        "type_needle_k": "words",
        "type_needle_v": "numbers",
        "num_needle_q": 4,
    },
}


# -- options ------------------------------------------------------------------------------------------------------
class RulerOptions(NamedTuple):
    """The metadata keys this folder reads, validated (a NamedTuple: lm-eval loads this file by path, outside
    ``sys.modules``, where dataclasses cannot resolve their annotations)."""

    seq_lengths: tuple[int, ...]
    num_samples: int
    seed: int
    essays_path: str | None
    squad_path: str | None
    hotpotqa_path: str | None


def _as_int(field: str, value: Any, minimum: int, maximum: int = MAX_COUNT) -> int:
    """A whole number (or a string of digits, as model_args may deliver) within [minimum, maximum], else a
    ValueError (the tasks' one check: ``check_count``)."""
    return check_count(field, value, minimum, maximum)


def _as_path(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, Path)):
        raise ValueError(f"{field} must be a path (string), got {value!r}")
    return str(Path(value).expanduser())


def parse_options(kwargs: dict[str, Any]) -> RulerOptions:
    """Read and validate this folder's metadata keys from a task's merged metadata/model_args."""
    check_metadata_keys(kwargs, "longllada_ruler")
    lengths = kwargs.get("max_seq_lengths", DEFAULT_SEQ_LENGTHS)
    if isinstance(lengths, (int, str)) and not isinstance(lengths, bool):
        lengths = [lengths]
    if not isinstance(lengths, (list, tuple)) or not lengths:
        raise ValueError(
            f"max_seq_lengths must be a non-empty list of token counts, e.g. [4096, 8192], got {lengths!r}"
        )
    seq_lengths = tuple(_as_int("max_seq_lengths item", length, 1) for length in lengths)
    if len(set(seq_lengths)) != len(seq_lengths):
        raise ValueError(f"max_seq_lengths must not repeat a length, got {list(seq_lengths)!r}")
    options = RulerOptions(
        seq_lengths=seq_lengths,
        num_samples=_as_int("num_samples", kwargs.get("num_samples", DEFAULT_NUM_SAMPLES), 1),
        seed=_as_int("seed", kwargs.get("seed", DEFAULT_SEED), 0),
        essays_path=_as_path("essays_path", kwargs.get("essays_path")),
        squad_path=_as_path("squad_path", kwargs.get("squad_path")),
        hotpotqa_path=_as_path("hotpotqa_path", kwargs.get("hotpotqa_path")),
    )
    # each task builds num_samples prompts at every length (its own grid; the tasks of a run are built in turn)
    check_grid("longllada_ruler", "max_seq_lengths", seq_lengths, options.num_samples, kwargs)
    return options


def load_tokenizer(kwargs: dict[str, Any]):
    """The evaluated model's tokenizer, found as lm-eval's RULER finds it (``tokenizer``, ``pretrained``, ``model``)
    and loaded with the user's ``trust_remote_code`` (``lm_eval_tasks.model_tokenizer``)."""
    from lm_eval_tasks.model_tokenizer import load_tokenizer as load
    from lm_eval_tasks.model_tokenizer import tokenizer_name, trust_remote_code

    name = tokenizer_name(kwargs)
    if name is None:
        raise ValueError(
            "tokenizer: none given; RULER sizes its prompts in the evaluated model's tokens, so pass "
            "--model_args pretrained=<model> (or tokenizer=<name>), got neither tokenizer, pretrained nor model"
        )
    return load(name, trust_remote_code(kwargs))


# -- shared functions ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def seeded(*parts: Any, extra: Sequence[random.Random] = ()) -> Iterator[None]:
    """Seed Python's and NumPy's global random state (and ``extra`` generators) from ``parts``; restore on exit.

    lm-eval's generators draw from the global state; seeding per task and length makes each dataset the same
    whatever ran before, and restoring keeps lm-eval's own seeding of the evaluation untouched.
    """
    import numpy as np

    seed = zlib.crc32("|".join(str(part) for part in parts).encode("utf-8"))
    saved = (random.getstate(), np.random.get_state(), [rng.getstate() for rng in extra])
    random.seed(seed)
    np.random.seed(seed)
    for rng in extra:
        rng.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        for rng, state in zip(extra, saved[2]):
            rng.setstate(state)


def base_model_doc(sample: dict[str, Any]) -> dict[str, Any]:
    """One of lm-eval's RULER samples as our document: no answer stub, the prompt ending at the question."""
    doc = {key: value for key, value in sample.items() if key != "gen_prefix"}
    doc["input"] = sample["input"].rstrip()
    return doc


def to_dataset(samples: list[dict[str, Any]]) -> dict[str, Any]:
    import datasets

    docs = [base_model_doc(sample) for sample in samples]
    return {"test": datasets.Dataset.from_list(docs, split=datasets.Split.TEST)}


def token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text).input_ids)


def require_fit(task: str, length: int, smallest: int) -> None:
    """Refuse a length below a task's smallest prompt (plus slack), before lm-eval's generator could spin on it."""
    if smallest + FIT_SLACK_TOKENS > length:
        raise ValueError(
            f"max_seq_lengths item {length} is too short for {task}: its smallest prompt with this tokenizer "
            f"takes about {smallest} tokens (generation budget included); allowed: lengths >= "
            f"{smallest + FIT_SLACK_TOKENS}"
        )


# -- the essay haystack -------------------------------------------------------------------------------------------
def read_essays(essays_path: str | None) -> str:
    """The haystack text: the shipped report by default, else a .txt file or every .txt file of a folder."""
    if essays_path is None:
        try:
            from importlib.resources import files

            return files(ESSAY_PACKAGE).joinpath(*ESSAY_RESOURCE).read_text(encoding="utf-8")
        except (ModuleNotFoundError, FileNotFoundError):
            if ESSAY_CHECKOUT_PATH.is_file():
                return ESSAY_CHECKOUT_PATH.read_text(encoding="utf-8")
            raise ValueError(
                f"essays_path: not given and the default report ({'/'.join(ESSAY_RESOURCE)} of the "
                f"'{ESSAY_PACKAGE}' package) is not installed; allowed: a .txt file or a folder of .txt files"
            ) from None
    path = Path(essays_path)
    if path.is_dir():
        files_found = sorted(path.glob("*.txt"))
        if not files_found:
            raise ValueError(
                f"essays_path {essays_path!r} is a folder without .txt files; allowed: a .txt file or a folder of .txt files"
            )
        return " ".join(file.read_text(encoding="utf-8") for file in files_found)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise ValueError(f"essays_path {essays_path!r} does not exist; allowed: a .txt file or a folder of .txt files")


def essay_haystack(essays_path: str | None, min_words: int) -> list[str]:
    """The essay haystack as lm-eval builds it (the text split into words), repeated to at least ``min_words``.

    lm-eval stops growing an essay haystack when the words run out, which leaves prompts shorter than asked;
    one report is ~12k words, so it is repeated as a whole as often as needed.
    """
    words = re.sub(r"\s+", " ", read_essays(essays_path)).strip().split(" ")
    if words == [""]:
        raise ValueError(f"essays_path {essays_path!r} holds no text; allowed: a .txt file or a folder of .txt files")
    return words * max(1, -(-min_words // len(words)))


@functools.lru_cache(maxsize=1024)
def _split_sentences_untrained(text: str) -> list[str]:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer().tokenize(text)


def _refuse_download(*args: Any, **kwargs: Any) -> bool:
    return False


def import_prepare_niah():
    """lm-eval's ``prepare_niah``, imported without letting it reach the network.

    At import it downloads NLTK's ``punkt_tab`` sentence model when missing. Here, when it is missing, that
    download is skipped and essays are split into sentences by NLTK's Punkt algorithm with default parameters
    (no learned abbreviations); ``python -m nltk.downloader punkt_tab`` restores lm-eval's exact splitting.
    """
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
        from lm_eval.tasks.ruler import prepare_niah

        return prepare_niah
    except LookupError:
        pass
    download = nltk.download
    nltk.download = _refuse_download
    try:
        from lm_eval.tasks.ruler import prepare_niah
    finally:
        nltk.download = download
    if prepare_niah.cached_sent_tokenize is not _split_sentences_untrained:
        logger.warning("NLTK's punkt_tab data is not installed: essays are split with untrained Punkt parameters.")
        prepare_niah.cached_sent_tokenize = _split_sentences_untrained
    return prepare_niah


# -- niah ---------------------------------------------------------------------------------------------------------
def niah_dataset(task: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """One of RULER's eight needle tasks through lm-eval's ``prepare_niah.generate_samples``."""
    options = parse_options(kwargs)
    tokenizer = load_tokenizer(kwargs)
    prepare_niah = import_prepare_niah()
    from lm_eval.tasks.ruler.niah_utils import TEMPLATE

    spec = NIAH_TASKS[task]
    if spec["type_haystack"] == "essay":
        haystack = essay_haystack(options.essays_path, max(options.seq_lengths) + ESSAY_WORDS_STEP)
    else:
        haystack = prepare_niah.get_haystack(type_haystack=spec["type_haystack"])
    samples: list[dict[str, Any]] = []
    for length in options.seq_lengths:
        with seeded(task, length, options.seed):
            samples += prepare_niah.generate_samples(
                haystack,
                TOKENIZER=tokenizer,
                max_seq_length=length,
                template=TEMPLATE,
                num_samples=options.num_samples,
                tokens_to_generate=NIAH_TOKENS_TO_GENERATE,
                **spec,
            )
    return to_dataset(samples)


def niah_single_1(**kwargs: Any) -> dict[str, Any]:
    return niah_dataset("niah_single_1", kwargs)


def niah_single_2(**kwargs: Any) -> dict[str, Any]:
    return niah_dataset("niah_single_2", kwargs)


def niah_single_3(**kwargs: Any) -> dict[str, Any]:
    return niah_dataset("niah_single_3", kwargs)


def niah_multikey_1(**kwargs: Any) -> dict[str, Any]:
    return niah_dataset("niah_multikey_1", kwargs)


def niah_multikey_2(**kwargs: Any) -> dict[str, Any]:
    return niah_dataset("niah_multikey_2", kwargs)


def niah_multikey_3(**kwargs: Any) -> dict[str, Any]:
    return niah_dataset("niah_multikey_3", kwargs)


def niah_multivalue(**kwargs: Any) -> dict[str, Any]:
    return niah_dataset("niah_multivalue", kwargs)


def niah_multiquery(**kwargs: Any) -> dict[str, Any]:
    return niah_dataset("niah_multiquery", kwargs)


# -- variable tracking ----------------------------------------------------------------------------------------------
def _vt_smallest(vt_utils: Any, tokenizer: Any, step: int, is_icl: bool, example_tokens: int) -> int:
    """The length lm-eval's vt generator measures for its smallest haystack (``step`` noise lines)."""
    sizes = []
    for _ in range(FIT_DRAWS):
        text, answer = vt_utils.generate_input_output(step, 1, 4, is_icl=is_icl)
        sizes.append(token_count(tokenizer, f"{text} {answer}") + VT_TOKENS_TO_GENERATE + example_tokens)
    return max(sizes)


def vt(**kwargs: Any) -> dict[str, Any]:
    """Variable tracking through lm-eval's ``vt_utils`` (one chain of 4 hops, with its in-context example)."""
    options = parse_options(kwargs)
    tokenizer = load_tokenizer(kwargs)
    from lm_eval.tasks.ruler import vt_utils

    samples: list[dict[str, Any]] = []
    for length in options.seq_lengths:
        with seeded("vt", length, options.seed):
            # A tokenizer too coarse for a 500-token example gets the smallest example it can make (lm-eval's
            # generator would loop forever looking for one).
            icl_length = max(VT_ICL_LENGTH, _vt_smallest(vt_utils, tokenizer, VT_ICL_STEP, True, 0) + FIT_SLACK_TOKENS)
            example = vt_utils.sys_vartrack_w_noise_random(
                tokenizer=tokenizer, num_samples=1, max_seq_length=icl_length, incremental=VT_ICL_STEP
            )[0]
            # lm-eval's generator counts the example as: its input, a space, its answers, a blank line.
            example_tokens = token_count(tokenizer, example["input"] + " " + " ".join(example["outputs"]) + "\n\n")
            require_fit("vt", length, _vt_smallest(vt_utils, tokenizer, VT_NOISE_STEP, False, example_tokens))
            samples += vt_utils.sys_vartrack_w_noise_random(
                tokenizer=tokenizer,
                num_samples=options.num_samples,
                max_seq_length=length,
                incremental=VT_NOISE_STEP,
                icl_example=example,
                tokens_to_generate=VT_TOKENS_TO_GENERATE,
            )
    return to_dataset(samples)


# -- common and frequent words ----------------------------------------------------------------------------------
def _cwe_smallest(cwe_utils: Any, tokenizer: Any, length: int) -> int:
    """The length lm-eval's cwe generator measures for its smallest list (``CWE_WORD_STEP`` distinct words)."""
    sizes = []
    for _ in range(FIT_DRAWS):
        example, text, answer = cwe_utils.generate_input_output(CWE_WORD_STEP, length)
        answers = " ".join(f"{i + 1}. {word}" for i, word in enumerate(answer))
        sizes.append(token_count(tokenizer, f"{example}\n{text} {answers}") + CWE_TOKENS_TO_GENERATE)
    return max(sizes)


def cwe(**kwargs: Any) -> dict[str, Any]:
    """Common word extraction through lm-eval's ``cwe_utils``."""
    options = parse_options(kwargs)
    tokenizer = load_tokenizer(kwargs)
    from lm_eval.tasks.ruler import cwe_utils

    samples: list[dict[str, Any]] = []
    for length in options.seq_lengths:
        with seeded("cwe", length, options.seed, extra=(cwe_utils.RNG,)):
            require_fit("cwe", length, _cwe_smallest(cwe_utils, tokenizer, length))
            samples += cwe_utils.sys_word_pair_random(
                num_samples=options.num_samples,
                max_seq_length=length,
                tokenizer=tokenizer,
                incremental=CWE_WORD_STEP,
                tokens_to_generate=CWE_TOKENS_TO_GENERATE,
            )
    return to_dataset(samples)


def fwe(**kwargs: Any) -> dict[str, Any]:
    """Frequent word extraction through lm-eval's ``fwe_utils``."""
    options = parse_options(kwargs)
    tokenizer = load_tokenizer(kwargs)
    from lm_eval.tasks.ruler import fwe_utils

    empty_prompt = token_count(tokenizer, fwe_utils.TEMPLATE.format(context="", query=""))
    samples: list[dict[str, Any]] = []
    for length in options.seq_lengths:
        # The generator shrinks its text until it fits, and needs 4 coded words (1 noise + the 3 answers).
        require_fit("fwe", length, max(empty_prompt + FWE_TOKENS_TO_GENERATE, 4 * 50))
        with seeded("fwe", length, options.seed):
            samples += fwe_utils.sys_kwext(
                tokenizer=tokenizer,
                max_seq_length=length,
                num_samples=options.num_samples,
                tokens_to_generate=FWE_TOKENS_TO_GENERATE,
            )
    return to_dataset(samples)


# -- question answering -----------------------------------------------------------------------------------------
def _read_json_records(field: str, path: str) -> Any:
    """A JSON document, or a JSON Lines file as a list of its records."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{field} {path!r} is not a file; allowed: a .json or .jsonl file")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{field} {path!r} is not valid JSON ({err}); allowed: a .json or .jsonl file") from None


def read_squad_file(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """SQuAD's layout (``{"data": [article, ...]}``, or JSON Lines of articles) as lm-eval's ``read_squad`` makes
    it: the sorted distinct paragraphs, and one record per answerable question (its paragraph, and the other
    paragraphs of its article as preferred distractors)."""
    content = _read_json_records("squad_path", path)
    articles = content.get("data") if isinstance(content, dict) else content
    if not isinstance(articles, list) or not all(isinstance(a, dict) and "paragraphs" in a for a in articles):
        raise ValueError(
            f'squad_path {path!r}: expected SQuAD\'s layout, {{"data": [{{"paragraphs": [{{"context", "qas"}}]}}]}} '
            "or one such article per JSON line"
        )
    docs = sorted({paragraph["context"] for article in articles for paragraph in article["paragraphs"]})
    doc_index = {text: i for i, text in enumerate(docs)}
    qas = []
    for article in articles:
        article_docs = [doc_index[paragraph["context"]] for paragraph in article["paragraphs"]]
        for paragraph in article["paragraphs"]:
            own = doc_index[paragraph["context"]]
            for qa in paragraph.get("qas", []):
                if qa.get("is_impossible", False):
                    continue
                qas.append(
                    {
                        "query": qa["question"],
                        "outputs": [answer["text"] for answer in qa["answers"]],
                        "context": [own],
                        "more_context": [i for i in article_docs if i != own],
                    }
                )
    return qas, docs


def read_hotpotqa_file(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """HotpotQA's layout (a list of ``{"question", "answer", "context": [[title, [sentence, ...]], ...]}``, or
    JSON Lines of them) as lm-eval's ``read_hotpotqa`` makes it: documents are "title\\ntext"."""
    records = _read_json_records("hotpotqa_path", path)
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and {"question", "answer", "context"} <= r.keys() for r in records
    ):
        raise ValueError(
            f"hotpotqa_path {path!r}: expected HotpotQA's layout, a list of "
            '{"question", "answer", "context": [[title, [sentences]]]} (or one per JSON line)'
        )

    def as_doc(title: str, sentences: list[str]) -> str:
        return f"{title}\n{''.join(sentences)}"

    docs = sorted({as_doc(title, sentences) for record in records for title, sentences in record["context"]})
    doc_index = {text: i for i, text in enumerate(docs)}
    qas = [
        {
            "query": record["question"],
            "outputs": [record["answer"]],
            "context": [doc_index[as_doc(title, sentences)] for title, sentences in record["context"]],
        }
        for record in records
    ]
    return qas, docs


def qa_dataset(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """RULER's QA tasks through lm-eval's ``qa_utils.generate_samples``, from a local file or lm-eval's download."""
    options = parse_options(kwargs)
    tokenizer = load_tokenizer(kwargs)
    from lm_eval.tasks.ruler import qa_utils

    if kind == "squad":
        qas, docs = read_squad_file(options.squad_path) if options.squad_path else qa_utils.read_squad()
    else:
        qas, docs = read_hotpotqa_file(options.hotpotqa_path) if options.hotpotqa_path else qa_utils.read_hotpotqa()
    if not qas:
        raise ValueError(f"{kind}: the data holds no answerable question; allowed: a file with at least one")
    num_samples = options.num_samples
    if num_samples > len(qas):
        logger.warning(
            "%s: num_samples=%d but the data holds %d questions; using %d.", kind, num_samples, len(qas), len(qas)
        )
        num_samples = len(qas)
    samples: list[dict[str, Any]] = []
    for length in options.seq_lengths:
        with seeded(f"qa_{kind}", length, options.seed):
            samples += qa_utils.generate_samples(
                tokenizer=tokenizer,
                docs=docs,
                qas=qas,
                max_seq_length=length,
                num_samples=num_samples,
                tokens_to_generate=QA_TOKENS_TO_GENERATE,
            )
    return to_dataset(samples)


def qa_squad(**kwargs: Any) -> dict[str, Any]:
    return qa_dataset("squad", kwargs)


def qa_hotpot(**kwargs: Any) -> dict[str, Any]:
    return qa_dataset("hotpotqa", kwargs)


# -- scoring ------------------------------------------------------------------------------------------------------
def _task_class() -> type:
    from lm_eval.api.task import ConfigurableTask

    from lm_eval_tasks.run_record import record_run

    class RulerTask(ConfigurableTask):
        """A ``longllada_ruler_*`` task: every document reports every length of the grid (its score under its
        own length, None under the others) and a length averages the scores it got (:func:`mean_of_scored`), so
        that every process of a data-parallel run holds the same metric names."""

        def __init__(self, config: dict[str, Any] | None = None) -> None:
            super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"})
            self.cell_names = [str(length) for length in sorted({int(d["max_length"]) for d in self.eval_docs})]
            record_run(self)

        def process_results(self, doc: dict[str, Any], results: list[str]) -> dict[str, float | None]:
            own = self.config.process_results(doc, results)
            return {name: own.get(name) for name in self.cell_names}

        def aggregation(self) -> dict[str, Any]:
            return dict.fromkeys(self.cell_names, mean_of_scored)

        def higher_is_better(self) -> dict[str, bool]:
            return dict.fromkeys(self.cell_names, True)

    return RulerTask


def __getattr__(name: str) -> Any:
    # Built on first use (the YAML's ``class: !function utils.RulerTask``), so that this module imports without
    # lm-eval's task machinery.
    if name == "RulerTask":
        return _task_class()
    raise AttributeError(name)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval's RULER score (every expected answer found, case-insensitive), as the metric of the doc's length."""
    from lm_eval.tasks.ruler.common_utils import postprocess_pred, string_match_all

    return {str(doc["max_length"]): string_match_all(postprocess_pred(results), [doc["outputs"]])}


def process_results_part(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval's RULER QA score (any expected answer found), as the metric of the doc's length."""
    from lm_eval.tasks.ruler.common_utils import postprocess_pred, string_match_part

    return {str(doc["max_length"]): string_match_part(postprocess_pred(results), [doc["outputs"]])}
