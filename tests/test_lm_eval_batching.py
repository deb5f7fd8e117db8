"""`--model longllada` for sweeps: prompts of similar length batched together (never one length padded to
another), each prompt tokenised once with exactly HFLM's tokens, batches split in halves (as after running out
of GPU memory) giving the same tokens, and one timing record per batch."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("lm_eval")
import torch  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from longllada.lm_eval_model import LongLLaDALM, length_buckets  # noqa: E402

WORDS = "The committee reviewed the inventory of aircraft and the sustainment costs of the fleet".split()


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> LongLLaDALM:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", batch_size=4, dtype="float32")
    torch.set_num_threads(threads)


def request(context: str) -> Instance:
    kwargs = {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False}
    return Instance(request_type="generate_until", doc={}, arguments=(context, kwargs), idx=0)


def prompts(words: int, count: int) -> list[str]:
    """``count`` prompts of ``words`` words that differ in their last word (a letter: one token each)."""
    text = " ".join(WORDS[j % len(WORDS)] for j in range(words))
    return [f"{text} {letter}" for letter in "ABCDEFGH"[:count]]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.timings: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("longllada-timing "):
            self.timings.append(json.loads(message.split(" ", 1)[1]))


@pytest.fixture
def records():
    handler, logger = Records(), logging.getLogger("longllada.lm_eval_model")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the timing lines are DEBUG
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_length_buckets():
    assert length_buckets([100, 4000, 3990, 98, 3000, 4000]) == [[1, 5, 2], [4], [0, 3]]
    assert length_buckets([]) == []
    assert length_buckets([10, 10, 10], spread=0.0) == [[0, 1, 2]]


def test_prompts_tokenised_once_as_hflm_tokenises_them(lm):
    contexts = prompts(40, 3) + prompts(10, 2)
    lengths = lm._encode_once(contexts)
    try:
        assert lengths == [len(HFLM.tok_encode(lm, text)) for text in contexts]
        assert lm.tok_encode(contexts[0]) == HFLM.tok_encode(lm, contexts[0])
        ours, hflm = lm.tok_batch_encode(contexts), HFLM.tok_batch_encode(lm, contexts)
        assert torch.equal(ours[0], hflm[0]) and torch.equal(ours[1], hflm[1])  # left padding and its mask
    finally:
        lm._encodings.clear()


def test_a_later_setting_takes_the_token_ids_of_an_earlier_one(lm, tiny_model_dir):
    """`longllada eval --model_args A --model_args B` runs a sweep's settings in one process: the next setting's
    adapter, with a tokenizer loaded from the same files, takes the ids the first one made (the same arrays, nothing
    tokenised again); they are HFLM's ids."""
    contexts = prompts(30, 3) + prompts(12, 2)
    try:
        lengths = lm._encode_once(contexts)
        assert lm._tokenised == len(contexts)
        made = dict(lm._encodings)
    finally:
        lm._encodings.clear()
    later = LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", batch_size=4, dtype="float32")
    try:
        assert later.tokenizer is not lm.tokenizer
        assert later._encode_once(contexts[::-1]) == lengths[::-1]
        assert later._tokenised == 0
        assert all(later._encodings[key] is ids for key, ids in made.items())
        assert [later.tok_encode(text) for text in contexts] == [HFLM.tok_encode(later, text) for text in contexts]
        ours, hflm = later.tok_batch_encode(contexts[:3]), HFLM.tok_batch_encode(later, contexts[:3])
        assert torch.equal(ours[0], hflm[0]) and torch.equal(ours[1], hflm[1])
        assert later._encode_once([*contexts, "A prompt not seen before"])[-1] > 0 and later._tokenised == 1
    finally:
        later._encodings.clear()


def test_similar_lengths_batched_together_and_batches_equal_single_prompts(lm, records):
    long, short = prompts(60, 5), prompts(20, 3)
    contexts = [long[0], short[0], long[1], long[2], short[1], long[3], short[2], long[4]]
    batched = lm.generate_until([request(text) for text in contexts])
    batches = [r for r in records.timings if r["event"] == "batch"]
    # 5 long prompts at batch 4: 4 + 1; the 3 short ones in a batch of their own (no long padding).
    assert sorted(r["rows"] for r in batches) == [1, 3, 4]
    for r in batches:
        assert max(r["prompt_tokens"]) - min(r["prompt_tokens"]) <= 0.05 * max(r["prompt_tokens"])
    (requests_record,) = [r for r in records.timings if r["event"] == "requests"]
    assert requests_record["count"] == 8 and requests_record["groups"] == 2
    lm.batch_size_per_gpu = 1
    try:
        single = lm.generate_until([request(text) for text in contexts])
    finally:
        lm.batch_size_per_gpu = 4
    assert batched == single


def test_timing_lines_are_debug_only(lm, records):
    logger = logging.getLogger("longllada.lm_eval_model")
    logger.setLevel(logging.INFO)  # the default of `longllada eval`: progress bars, no JSON lines between them
    lm.generate_until([request(text) for text in prompts(10, 2)])
    assert records.timings == []
    logger.setLevel(logging.DEBUG)
    lm.generate_until([request(text) for text in prompts(10, 2)])
    assert {r["event"] for r in records.timings} == {"requests", "batch", "generated"}


def test_split_batches_give_the_same_tokens(lm, records):
    contexts = prompts(30, 4)
    whole = lm.generate_until([request(text) for text in contexts])
    lm._row_limits.append((1, 1))  # as after an out-of-memory batch: one row a batch from now on
    try:
        halves = lm.generate_until([request(text) for text in contexts])
    finally:
        lm._row_limits.clear()
    assert halves == whole
    rows = [r["rows"] for r in records.timings if r["event"] == "batch"]
    assert rows == [4, 1, 1, 1, 1]


def test_unknown_model_arg_is_one_error_line_before_loading(tiny_model_dir, capsys):
    from longllada.eval_cli import run_eval

    args = ["--model", "longllada", "--model_args", f"pretrained={tiny_model_dir},block_lenght=32",
            "--tasks", "longllada_niah", "--device", "cpu"]  # fmt: skip
    assert run_eval(args) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("longllada eval: error:")]
    assert line.startswith("longllada eval: error: unknown --model_args ['block_lenght']")
    assert "'block_length'" in line and "'cache'" in line and "'dtype'" in line  # the known keys are listed
    assert "longllada-timing" not in err  # refused before the model's constructor went any further


def test_batches_do_not_depend_on_the_process_count():
    """lm-eval gives process r of W the documents r, r + W, ...: the groups a batch is drawn from are the same
    documents whether one process or 2, 4 or 8 see them (so a prompt's batch-mates, and its tokens, are too), and
    a group never mixes grid lengths."""
    from longllada.lm_eval_model import batch_groups

    lengths = [2000 - (i % 3 == 0) for i in range(50)] + [4000 - (i % 2) for i in range(50)]
    doc_ids = list(range(100))

    def documents(groups: list[list[int]], ids: list[int]) -> list[list[int]]:
        return sorted(sorted(ids[i] for i in group) for group in groups)

    one_process = documents(batch_groups(lengths, doc_ids), doc_ids)
    for world in (2, 4, 8):
        processes = []
        for rank in range(world):
            mine = doc_ids[rank::world]
            processes += documents(batch_groups([lengths[i] for i in mine], mine), mine)
        assert sorted(processes) == one_process
    assert all(len({lengths[i] > 3000 for i in group}) == 1 for group in batch_groups(lengths, doc_ids))
    assert len(one_process) == 16  # 8 classes × 2 lengths
    assert batch_groups([5, 5, 5], [None, None, None]) == [[0, 1, 2]]  # requests without ids: one class
    # batch_classes=1: any documents of a length share a batch (single-process runs)
    assert sorted(map(len, batch_groups(lengths, doc_ids, classes=1))) == [50, 50]
