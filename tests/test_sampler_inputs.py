"""Odd inputs to ``generate()`` and the likelihoods, for every family: each is one ``ValueError`` naming the field,
the value and what is allowed, found before anything runs (no raw index error from the embedding, no silently
truncated float ids, no mask of 2s read as "real")."""

from __future__ import annotations

import logging

import pytest
import torch

from modeling_longllada import DreamModel, LongLLaDAModelLM
from modeling_longllada.generation_longllada import check_generator

FAMILIES = ("llada", "dream")


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    folder = request.getfixturevalue("tiny_model_dir" if request.param == "llada" else "tiny_dream_dir")
    loaded = (LongLLaDAModelLM if request.param == "llada" else DreamModel).from_pretrained(folder).eval()
    loaded.rows = loaded.get_input_embeddings().num_embeddings
    return loaded


def prompt(model, batch: int = 2, length: int = 6) -> torch.Tensor:
    ids = torch.arange(10, 10 + batch * length).view(batch, length)
    return ids.masked_fill(ids == model.config.mask_token_id, 11)


def generate(model, input_ids, **kwargs):
    return model.generate(input_ids, max_new_tokens=kwargs.pop("max_new_tokens", 4), steps=2, block_length=4,
                          **kwargs)  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: prompt(m).float(), "input_ids has dtype torch.float32; allowed: an integer tensor of token ids"),
        (lambda m: prompt(m) > 12, "input_ids has dtype torch.bool"),
        (lambda m: prompt(m).index_fill(1, torch.tensor([3]), -1), "input_ids holds -1 at [0, 3]; allowed: token ids "
                                                                    "in [0, ROWS)"),
        (lambda m: prompt(m).index_fill(1, torch.tensor([2]), m.rows), "input_ids holds ROWS at [0, 2]; allowed: "
                                                                        "token ids in [0, ROWS)"),
    ],
    ids=["float", "bool", "negative", "past-the-vocabulary"],
)  # fmt: skip
def test_bad_input_ids(model, make, message):
    with pytest.raises(ValueError) as refused:
        generate(model, make(model))
    assert message.replace("ROWS", str(model.rows)) in str(refused.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ids: torch.tensor([[1, 2, 1, 2, 1, 2]] * ids.shape[0]), r"attention_mask holds 2 at \[0, 1\]; allowed: "
                                                                       r"only 0 and 1"),
        (lambda ids: torch.full(ids.shape, 0.5), r"attention_mask has dtype torch.float32; allowed: bool or an "
                                                 r"integer tensor of 0 and 1"),
        (lambda ids: torch.ones(ids.shape), r"attention_mask has dtype torch.float32"),
        (lambda ids: torch.tensor([[-1] + [1] * (ids.shape[1] - 1)] * ids.shape[0]), r"attention_mask holds -1"),
        (lambda ids: [[1] * ids.shape[1]] * ids.shape[0], r"attention_mask is a list; allowed: a tensor"),
        (lambda ids: torch.ones(ids.shape[0], ids.shape[1] + 1, dtype=torch.long), r"attention_mask has shape"),
    ],
    ids=["twos", "halves", "float-ones", "negative", "list", "shape"],
)  # fmt: skip
def test_bad_attention_masks(model, make, message):
    ids = prompt(model)
    with pytest.raises(ValueError, match=message):
        generate(model, ids, attention_mask=make(ids))


def test_bool_and_integer_masks_give_the_same_tokens(model):
    ids = prompt(model)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0

    def seeded() -> torch.Generator:  # Dream's "origin" commits positions at random
        return torch.Generator().manual_seed(0)

    as_int = generate(model, ids, attention_mask=mask, generator=seeded())
    assert torch.equal(generate(model, ids, attention_mask=mask.bool(), generator=seeded()), as_int)
    assert torch.equal(generate(model, ids, attention_mask=mask.to(torch.int32), generator=seeded()), as_int)


@pytest.mark.parametrize("field", ["mask_token_id", "eos_token_id", "pad_token_id"])
def test_special_token_ids_past_the_vocabulary(model, field):
    with pytest.raises(ValueError, match=rf"{field}={model.rows} is not allowed; allowed: a token id in \[0, "):
        generate(model, prompt(model), **{field: model.rows})
    with pytest.raises(ValueError, match=rf"{field}=-2 is not allowed"):
        generate(model, prompt(model), **{field: -2})


def test_generator_of_another_kind(model):
    with pytest.raises(ValueError, match="generator is a int; allowed: a torch.Generator or None"):
        generate(model, prompt(model), generator=42)
    generate(model, prompt(model), generator=torch.Generator().manual_seed(0))  # CPU: fine everywhere


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA generator needs a GPU")
def test_generator_on_another_device(model):
    with pytest.raises(ValueError, match="^generator is on cuda:0 and the model on cpu; allowed: a generator on cpu$"):
        generate(model, prompt(model), generator=torch.Generator("cuda").manual_seed(0))
    with pytest.raises(ValueError, match="generator is on cuda:0 .* allowed: a CPU generator"):
        model.log_likelihood([11, 12], [13], mc_num=2, batch_size=2, generator=torch.Generator("cuda"))


def test_check_generator_rule():
    """CPU generators draw the same numbers for every device (allowed with any model); one on another device than
    the model cannot draw for it; the likelihoods draw their masks on the CPU only."""
    cpu = torch.Generator()
    check_generator(cpu, torch.device("cpu"))
    check_generator(cpu, torch.device("cuda", 0))
    check_generator(None, torch.device("cpu"), cpu_only=True)
    with pytest.raises(ValueError, match="allowed: a torch.Generator or None"):
        check_generator(torch.random.default_generator.get_state(), torch.device("cpu"))


def test_max_length_and_max_new_tokens_follow_transformers(model):
    """transformers' generate(): both given, max_new_tokens wins, with a warning that says so."""
    ids = prompt(model)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    import modeling_longllada.generation_longllada as generation

    handler = Keep(logging.WARNING)
    generation.logger.addHandler(handler)
    try:
        out = generate(model, ids, max_new_tokens=4, max_length=ids.shape[1] + 12)
    finally:
        generation.logger.removeHandler(handler)
    assert out.shape[1] == ids.shape[1] + 4
    assert any("Both `max_new_tokens` (=4) and `max_length` (=18)" in message and "`max_new_tokens` will take "
               "precedence" in message for message in records), records  # fmt: skip
    assert generate(model, ids, max_new_tokens=None, max_length=ids.shape[1] + 4).shape[1] == ids.shape[1] + 4


@pytest.mark.parametrize(
    ("context", "continuation", "message"),
    [
        ([11.0, 12.0], [13], r"context_ids=\[11.0, 12.0\] is not allowed; allowed: a list of int token ids"),
        (torch.tensor([11.5, 12.0]), [13], "context_ids has dtype torch.float32"),
        ([11, 12], [True], r"continuation_ids=\[True\] is not allowed"),
        ([11, -3], [13], r"context_ids holds -3 at \[1\]"),
        ([11, 12], "ROWS", "continuation_ids holds"),
        (torch.tensor([[11, 12], [13, 14]]), [13], r"context_ids has shape \(2, 2\); allowed: one sequence"),
    ],
    ids=["float-list", "float-tensor", "bool", "negative", "past-the-vocabulary", "two-rows"],
)  # fmt: skip
def test_bad_likelihood_inputs(model, context, continuation, message):
    if continuation == "ROWS":
        continuation = [model.rows]
    with pytest.raises(ValueError, match=message):
        model.log_likelihood(context, continuation, mc_num=2, batch_size=2)
    with pytest.raises(ValueError, match=message):
        model.chunk_perplexity(context, continuation, mc_num=2, batch_size=2)
    assert model.log_likelihood(torch.tensor([[11, 12]]), [13], mc_num=2, batch_size=2)  # [1, L] is one sequence


def test_likelihood_generator_and_mask_token(model):
    with pytest.raises(ValueError, match="generator is a str; allowed: a torch.Generator or None"):
        model.log_likelihood([11, 12], [13], mc_num=2, batch_size=2, generator="seed")
    saved = model.config.mask_token_id
    model.config.mask_token_id = model.rows + 5
    try:
        with pytest.raises(ValueError, match=rf"mask_token_id={model.rows + 5} is not allowed; allowed: a token id"):
            model.log_likelihood([11, 12], [13], mc_num=2, batch_size=2)
    finally:
        model.config.mask_token_id = saved


def test_a_likelihood_batch_that_cannot_fit_is_refused_before_allocating(model):
    """mc_num and batch_size of 10**9 tried to allocate 10**9 copies of the sequence."""
    with pytest.raises(ValueError, match=r"× 1000000000 rows cannot fit: .* ask for a smaller batch_size"):
        model.log_likelihood([11, 12], [13], mc_num=10**9, batch_size=10**9)
