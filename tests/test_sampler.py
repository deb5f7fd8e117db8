"""The diffusion sampler and likelihood, against an oracle written from the official sampler (LLaDA, Appendix B)."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from modeling_longllada import LongLLaDAConfig, LongLLaDAModelLM

MASK, EOS = 126, 1
SMALL = dict(
    d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, mlp_hidden_size=96, vocab_size=127, embedding_size=127,
    max_sequence_length=128, rope_theta=10000.0, mask_token_id=MASK, eos_token_id=EOS, pad_token_id=EOS,
)  # fmt: skip


@pytest.fixture(scope="module")
def model() -> LongLLaDAModelLM:
    torch.manual_seed(0)
    return LongLLaDAModelLM(LongLLaDAConfig(**SMALL)).eval()


def oracle_generate(model, prompt, gen_length, block_length, steps, temperature=0.0, cfg_scale=0.0,
                    remasking="low_confidence", generator=None):  # fmt: skip
    """A straightforward reading of the official sampler: full logits every step, confidence over the whole sequence,
    top-k per row in a loop. Random draws (Gumbel noise, random confidence) are taken for the active block, and
    the mask token is never a prediction (our two documented departures from the official code)."""
    batch, p = prompt.shape
    x = torch.cat((prompt, torch.full((batch, gen_length), MASK)), dim=1)
    prompt_index = torch.zeros_like(x, dtype=torch.bool)
    prompt_index[:, :p] = True
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    for b in range(num_blocks):
        start, end = p + b * block_length, p + (b + 1) * block_length
        n = (x[:, start:end] == MASK).sum(dim=1)
        for i in range(steps_per_block):
            k = n // steps_per_block + (i < n % steps_per_block).long()
            mask_index = x == MASK
            if cfg_scale > 0:
                unconditional = x.clone()
                unconditional[prompt_index] = MASK
                cond, uncond = model(torch.cat((x, unconditional))).logits.chunk(2)
                logits = uncond + (cfg_scale + 1) * (cond - uncond)
            else:
                logits = model(x).logits
            block_logits = logits[:, start:end]
            if temperature > 0:
                u = torch.rand(block_logits.shape, generator=generator, dtype=torch.float64)
                perturbed = block_logits.double().exp() / (-torch.log(u)) ** temperature
            else:
                perturbed = block_logits
            x0 = x.clone()
            x0[:, start:end] = perturbed.index_fill(-1, torch.tensor([MASK]), -torch.inf).argmax(dim=-1)
            confidence = torch.full(x.shape, -torch.inf)
            if remasking == "low_confidence":
                probs = torch.softmax(block_logits, dim=-1)
                confidence[:, start:end] = probs.gather(-1, x0[:, start:end, None]).squeeze(-1)
            else:
                confidence[:, start:end] = torch.rand((batch, end - start), generator=generator)
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, confidence, -torch.inf)
            for row in range(batch):
                chosen = torch.topk(confidence[row], k=int(k[row])).indices
                x[row, chosen] = x0[row, chosen]
    return x


@pytest.mark.parametrize(
    "gen_length, block_length, steps, cfg, temperature, remasking",
    [
        (16, 16, 16, 0.0, 0.0, "low_confidence"),  # one block
        (24, 8, 12, 0.0, 0.0, "low_confidence"),  # three blocks, two tokens a step
        (16, 16, 16, 1.5, 0.0, "low_confidence"),  # classifier-free guidance
        (24, 8, 24, 0.0, 0.7, "low_confidence"),  # temperature with a generator
        (24, 8, 24, 1.5, 0.7, "random"),
    ],
)
def test_matches_the_spec_oracle_token_for_token(model, gen_length, block_length, steps, cfg, temperature, remasking):
    prompt = torch.randint(2, 120, (2, 7), generator=torch.Generator().manual_seed(3))
    ours = model.generate(
        prompt, max_new_tokens=gen_length, block_length=block_length, steps=steps, cfg_scale=cfg,
        temperature=temperature, remasking=remasking, generator=torch.Generator().manual_seed(11),
    )  # fmt: skip
    oracle = oracle_generate(
        model, prompt, gen_length, block_length, steps, temperature, cfg, remasking, torch.Generator().manual_seed(11)
    )
    assert torch.equal(ours, oracle)
    assert not (ours == MASK).any()


def test_left_padded_batch_equals_rows_generated_alone(model):
    rows = [torch.randint(2, 120, (n,), generator=torch.Generator().manual_seed(n)) for n in (4, 11, 7)]
    width = max(len(r) for r in rows)
    ids = torch.full((3, width), EOS)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    kwargs = dict(max_new_tokens=16, block_length=8, steps=16)
    with_mask = model.generate(ids, attention_mask=mask, **kwargs)
    detected = model.generate(ids, **kwargs)  # lm-eval passes no mask: leading pad tokens are padding
    assert torch.equal(with_mask, detected)
    for i, r in enumerate(rows):
        alone = oracle_generate(model, r[None], 16, 8, 16)
        assert torch.equal(with_mask[i, width - len(r) :], alone[0])


def test_lengths_are_rounded_and_steps_capped(model):
    prompt = torch.randint(2, 120, (1, 5))
    out = model.generate(prompt, max_new_tokens=20, block_length=8, return_dict_in_generate=True)
    assert out.sequences.shape == (1, 25) and not (out.sequences == MASK).any()
    assert out.num_forward_passes == 24  # 20 -> 3 blocks of 8, one token a step
    capped = model.generate(prompt, max_new_tokens=8, block_length=8, steps=100, return_dict_in_generate=True)
    assert capped.num_forward_passes == 8
    rounded = model.generate(prompt, max_new_tokens=24, block_length=8, steps=5, return_dict_in_generate=True)
    assert rounded.num_forward_passes == 6  # 5 steps over 3 blocks: rounded up to 2 per block
    by_max_length = model.generate(prompt, max_length=13, block_length=8)
    assert by_max_length.shape == (1, 13)


@pytest.mark.parametrize(
    "prompt, kwargs, message",
    [
        (torch.tensor([[5, MASK, 7]]), {"max_new_tokens": 8}, "mask token"),
        (torch.zeros((1, 0), dtype=torch.long), {"max_new_tokens": 8}, "non-empty"),
        (torch.tensor([[EOS, EOS]]), {"max_new_tokens": 8}, "empty"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 0}, "max_new_tokens=0 is not allowed"),
        (torch.tensor([[5, 6]]), {"max_length": 2}, "positive"),
        (torch.tensor([[5, 6]]), {}, "max_new_tokens"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "remasking": "top_p"}, "remasking"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "cache": "paged"}, "cache"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "threshold": 1.5}, "threshold"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "beam_width": 2}, "unsupported"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "cfg_scale": float("nan")}, "cfg_scale=nan"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "temperature": float("nan")}, "temperature=nan"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "temperature": float("inf")}, "temperature=inf"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "steps": 2.5}, "steps=2.5"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "steps": True}, "steps=True"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8.0}, "max_new_tokens=8.0"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "top_p": 0.9}, "top_p=0.9 applies to Dream"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "alg": "entropy", "top_p": 1.5}, "top_p=1.5"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "alg": "beam"}, "remasking='beam'"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "remasking": "random", "threshold": 0.9}, "needs a confidence"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 2**32}, "cannot fit"),
        (torch.tensor([[5, 6]]), {"max_new_tokens": 8, "attention_mask": torch.ones(1, 3)}, "attention_mask has shape"),
    ],
)
def test_bad_input_raises(model, prompt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model.generate(prompt, block_length=8, **kwargs)


def eos_everywhere_model() -> LongLLaDAModelLM:
    """Every logit is 0 after a zeroed final norm, so argmax is token 0: make that the EOS token."""
    torch.manual_seed(0)
    model = LongLLaDAModelLM(LongLLaDAConfig(**{**SMALL, "eos_token_id": 0, "pad_token_id": 0})).eval()
    model.model.transformer.ln_f.weight.data.zero_()
    return model


def test_early_stop_fills_the_rest_with_eos():
    model = eos_everywhere_model()
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=32, block_length=8, return_dict_in_generate=True)
    assert out.num_forward_passes == 8  # one block, then every row has EOS
    assert out.sequences.shape == (1, 35) and (out.sequences[0, 3:] == 0).all()


class StopAtToken(StoppingCriteria):
    def __init__(self, token: int):
        self.token = token

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids[:, -1] == self.token


def test_stopping_criteria_end_generation_after_the_block(model):
    prompt = torch.randint(2, 120, (1, 6))
    full = model.generate(prompt, max_new_tokens=24, block_length=8, eos_token_id=None, return_dict_in_generate=True)
    first = int(full.sequences[0, 6])
    stopped = model.generate(
        prompt, max_new_tokens=24, block_length=8, eos_token_id=None, return_dict_in_generate=True,
        stopping_criteria=StoppingCriteriaList([StopAtToken(first)]),
    )  # fmt: skip
    assert stopped.num_forward_passes == 8
    assert torch.equal(stopped.sequences[0, :14], full.sequences[0, :14])


def _split_cache(kv_per_layer, full_mask, start, end, mode):
    """From a full pass's keys/values, a block's cache in the concatenating form of ``forward(past_key_values=...)``:
    prefix caches [0, start) and recomputes [start, L); dual caches [0, start) and [end, L), recomputes
    [start, end). Returns (per-layer (k, v), the cached positions' mask, (query start, query end))."""
    if mode == "prefix":
        cache = tuple((k[:, :, :start], v[:, :, :start]) for k, v in kv_per_layer)
        return cache, full_mask[:, :start], (start, full_mask.shape[1])
    cache = tuple(
        (torch.cat((k[:, :, :start], k[:, :, end:]), 2), torch.cat((v[:, :, :start], v[:, :, end:]), 2))
        for k, v in kv_per_layer
    )
    return cache, torch.cat((full_mask[:, :start], full_mask[:, end:]), 1), (start, end)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_steps_reproduce_the_full_pass(model, cache):
    """A cached step on unchanged tokens gives the full pass's block logits (the cache plumbing is exact)."""
    x = torch.randint(2, 120, (2, 40))
    mask = torch.ones_like(x)
    mask[0, :5] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    start, end = 24, 32
    full = model(x, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=slice(start, end))
    kv, kv_mask, (q0, q1) = _split_cache(full.present_key_values, mask, start, end, cache)
    cached = model(
        x[:, q0:q1], attention_mask=torch.cat((kv_mask, mask[:, q0:q1]), 1), position_ids=positions[:, q0:q1],
        past_key_values=kv, logits_to_keep=slice(start - q0, end - q0),
    )  # fmt: skip
    torch.testing.assert_close(cached.logits, full.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_caches_are_exact_for_a_block_of_one_step_and_complete_otherwise(model, cache):
    prompt = torch.randint(2, 120, (2, 9))
    one_step = dict(max_new_tokens=16, block_length=16, steps=1)
    assert torch.equal(model.generate(prompt, cache=cache, **one_step), model.generate(prompt, **one_step))
    out = model.generate(prompt, max_new_tokens=24, block_length=8, cache=cache, return_dict_in_generate=True)
    assert not (out.sequences == MASK).any() and out.num_forward_passes == 24


def test_threshold_decoding_takes_fewer_passes(model):
    prompt = torch.randint(2, 120, (2, 9))
    exact = model.generate(prompt, max_new_tokens=32, block_length=16, return_dict_in_generate=True)
    fast = model.generate(prompt, max_new_tokens=32, block_length=16, threshold=0.01, return_dict_in_generate=True)
    assert not (fast.sequences == MASK).any()
    assert fast.num_forward_passes < exact.num_forward_passes == 32


def test_step_callback_sees_every_step(model):
    seen = []
    model.generate(
        torch.tensor([[5, 6]]), max_new_tokens=16, block_length=8, step_callback=lambda b, s, x: seen.append((b, s))
    )
    assert seen == [(b, s) for b in range(2) for s in range(1, 9)]


def test_generation_config_defaults_are_saved(model, tmp_path):
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["block_length"] == 32 and saved["remasking"] == "low_confidence" and saved["cache"] == "none"
    assert saved["mask_token_id"] == MASK
    reloaded = LongLLaDAModelLM.from_pretrained(tmp_path)
    prompt = torch.tensor([[5, 6, 7]])
    assert torch.equal(reloaded.generate(prompt, max_new_tokens=8), model.generate(prompt, max_new_tokens=8))


# -- likelihood ---------------------------------------------------------------------------------------------------


def test_log_likelihood_is_reproducible_finite_and_converges(model):
    context, continuation = list(range(5, 25)), list(range(40, 52))
    first = model.log_likelihood(
        context, continuation, mc_num=8, batch_size=4, generator=torch.Generator().manual_seed(0)
    )
    again = model.log_likelihood(
        context, continuation, mc_num=8, batch_size=4, generator=torch.Generator().manual_seed(0)
    )
    assert first == again and all(map(lambda v: v == v and abs(v) < float("inf"), first))
    many = model.log_likelihood(
        context, continuation, mc_num=128, batch_size=32, generator=torch.Generator().manual_seed(0)
    )
    assert many[1] < first[1]
    guided = model.log_likelihood(
        context, continuation, mc_num=8, batch_size=8, cfg_scale=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert guided != first


def test_log_likelihood_matches_a_direct_computation(model):
    """One sample masking the single continuation token: the bound is log softmax at that position."""
    context = torch.tensor([5, 6, 7, 8])
    bound, stderr = model.log_likelihood(context, [42], mc_num=1, batch_size=1)
    logits = model(torch.cat((context, torch.tensor([MASK])))[None]).logits[0, -1]
    assert bound == pytest.approx(torch.log_softmax(logits, -1)[42].item(), abs=1e-5) and stderr == 0.0


def test_chunk_perplexity_is_a_mean_cross_entropy(model):
    value = model.chunk_perplexity(list(range(5, 40)), list(range(50, 66)), generator=torch.Generator().manual_seed(1))
    assert 0 < value < 20
    assert value == model.chunk_perplexity(
        list(range(5, 40)), list(range(50, 66)), generator=torch.Generator().manual_seed(1)
    )
    with pytest.raises(ValueError, match="mask token"):
        model.chunk_perplexity([5, MASK], [7, 8])


def test_a_device_map_model_samples_and_scores_as_the_plain_model(tiny_model_dir, tmp_path):
    """Loading with a device_map (here every other block offloaded to disk, run through accelerate's hooks, as
    with device_map="auto" over GPUs) changes no token of any cache mode and no likelihood; each layer's cache
    stays where that layer runs (the hooks' skip keys)."""
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, trust_remote_code=True).eval()
    blocks = len(plain.model.transformer.blocks)
    device_map = {"model.transformer.wte": "cpu", "model.transformer.ln_f": "cpu", "model.transformer.ff_out": "cpu"}
    device_map |= {f"model.transformer.blocks.{i}": "disk" if i % 2 else "cpu" for i in range(blocks)}
    sharded = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, trust_remote_code=True, device_map=device_map, offload_folder=str(tmp_path)
    ).eval()
    assert set(sharded.hf_device_map.values()) == {"cpu", "disk"}
    assert {"past_key_values", "present_key_values"} <= set(sharded._skip_keys_device_placement)
    ids = torch.randint(10, 200, (2, 40), generator=torch.Generator().manual_seed(0))
    for cache in ("none", "prefix", "dual"):
        expected = plain.generate(ids, max_new_tokens=16, block_length=8, steps=16, cache=cache)
        assert torch.equal(sharded.generate(ids, max_new_tokens=16, block_length=8, steps=16, cache=cache), expected)
    scores = [
        m.log_likelihood(ids[0, :30], ids[0, 30:], mc_num=4, batch_size=2, generator=torch.Generator().manual_seed(1))
        for m in (plain, sharded)
    ]
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)


# -- Dream's schedule and algorithms on the shared sampler ----------------------------------------------------


def test_dream_timestep_schedule_commits_nothing_first_and_two_last():
    from modeling_longllada.generation_longllada import timestep_schedule

    for n in (16, 32):
        counts, probabilities = timestep_schedule(n, n, 1e-3)
        assert sum(counts) == n and counts[0] == 0 and counts[-1] == 2
        assert probabilities[-1] == 1.0 and all(0 <= p < 1 for p in probabilities[:-1])


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
def test_dream_algorithms_fill_every_mask_and_threshold_takes_fewer_passes(model, alg):
    prompt = torch.randint(2, 120, (2, 9))
    out = model.diffusion_generate(prompt, max_new_tokens=16, steps=16, alg=alg, return_dict_in_generate=True)
    assert out.sequences.shape == (2, 25) and not (out.sequences == MASK).any() and out.num_forward_passes == 16
    blocks = model.generate(prompt, max_new_tokens=16, block_length=8, steps=16, alg=alg, cache="prefix")
    assert not (blocks == MASK).any()
    if alg == "maskgit_plus":
        fast = model.generate(prompt, max_new_tokens=16, block_length=8, alg=alg, threshold=0.01,
                              return_dict_in_generate=True)  # fmt: skip
        assert not (fast.sequences == MASK).any() and fast.num_forward_passes < 16
    else:
        with pytest.raises(ValueError, match="threshold") if alg == "entropy" else nullcontext():
            model.generate(prompt, max_new_tokens=16, block_length=8, alg=alg, threshold=0.5)


def test_dream_origin_and_sampling_are_reproducible_with_a_generator(model):
    prompt = torch.randint(2, 120, (1, 5))
    kwargs = dict(max_new_tokens=12, steps=6, temperature=0.7, top_p=0.9, top_k=20)
    runs = [
        model.diffusion_generate(
            prompt,
            generator=torch.Generator().manual_seed(5),
            output_history=True,
            return_dict_in_generate=True,
            **kwargs,
        )  # fmt: skip
        for _ in range(2)
    ]
    assert torch.equal(runs[0].sequences, runs[1].sequences) and not (runs[0].sequences == MASK).any()
    assert len(runs[0].history) == 6 and torch.equal(runs[0].history[-1], runs[0].sequences)


def test_progress_bar_is_shown_for_long_work_only(model, capsys):
    prompt = torch.tensor([[5, 6]])
    model.generate(prompt, max_new_tokens=8, block_length=8, progress=True)
    assert "diffusion steps" in capsys.readouterr().err
    model.generate(prompt, max_new_tokens=8, block_length=8)
    assert "diffusion steps" not in capsys.readouterr().err


def test_memory_estimate_per_row_matches_the_measured_prefix_cache():
    """The estimate that sizes batches: an 8B LLaDA batch of 12 rows of 16,032 positions with the prefix cache
    peaked at 133.66 GiB on an H200, 14.93 GiB of it weights (9.89 GiB a row); exact mode keeps no cache."""
    from modeling_longllada import LongLLaDAConfig
    from modeling_longllada.generation_longllada import generation_bytes_per_row

    config = LongLLaDAConfig()  # LLaDA-8B's shape
    cached = generation_bytes_per_row(config, 16_032, cached=True, element_bytes=2)
    measured = (133.66 - 14.93) / 12 * 2**30
    assert abs(cached - measured) / measured < 0.05
    exact = generation_bytes_per_row(config, 16_032, cached=False, element_bytes=2)
    assert exact < cached / 4
    assert generation_bytes_per_row(config, 32_064, cached=True, element_bytes=2) == 2 * cached


# -- the rules: chosen once, schedules injected, every promised token committed ----------------------------------------


def test_rule_and_schedule_are_chosen_once_from_the_model_and_the_settings(model):
    from modeling_longllada import DreamModel
    from modeling_longllada.generation_longllada import (
        DiffusionGenerationConfig,
        DreamRule,
        LLaDARule,
        ThresholdSchedule,
        TimestepSchedule,
        TransferSchedule,
        rule_for,
    )

    def rule(m, **kwargs):
        return rule_for(m, DiffusionGenerationConfig.resolve(m, None, {"max_new_tokens": 8, **kwargs}))

    llada = rule(model)
    assert isinstance(llada, LLaDARule) and isinstance(llada.schedule, TransferSchedule)
    assert isinstance(rule(model, alg="entropy").schedule, TimestepSchedule)  # another rule's algorithm: its rule
    fast = rule(model, threshold=0.9)
    assert isinstance(fast, LLaDARule) and isinstance(fast.schedule, ThresholdSchedule)
    plan = fast.schedule.block(16, 2)
    assert plan.steps == 16 and plan.threshold == 0.9  # until the block is full, at most one step per token
    assert DreamModel.sampler_rule == "dream" and LLaDARule.algorithms == ("low_confidence", "random")
    assert isinstance(rule(model, remasking="maskgit_plus", threshold=0.5), DreamRule)


def test_a_block_longer_than_the_answer_is_clipped(model):
    prompt = torch.randint(2, 120, (2, 6), generator=torch.Generator().manual_seed(2))
    long_block = model.generate(prompt, max_new_tokens=4, block_length=256, return_dict_in_generate=True)
    clipped = model.generate(prompt, max_new_tokens=4, block_length=4, return_dict_in_generate=True)
    assert torch.equal(long_block.sequences, clipped.sequences) and long_block.num_forward_passes == 4


@pytest.mark.parametrize("settings", [{}, {"threshold": 0.5}, {"alg": "maskgit_plus"}])
def test_steps_commit_the_promised_masks_when_every_confidence_is_minus_infinity(settings):
    """confidence_eos_eot_inf sets the confidence of EOS predictions to -inf; where every prediction is EOS the
    step still commits the masks its schedule promises (it used to pick committed positions among the ties)."""
    model = eos_everywhere_model()
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=8, block_length=8, confidence_eos_eot_inf=True,
                         **settings)  # fmt: skip
    assert not (out == MASK).any()


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("alg_temp", [0.005, 1e-4, 1e-30])
def test_a_small_alg_temp_leaves_no_mask(model, alg, alg_temp):
    """softmax(confidence / alg_temp) underflows to zero for all but a few positions; the draw of k positions
    without replacement then took committed ones and left masks. The k most confident are taken instead there."""
    prompt = torch.randint(2, 120, (2, 7), generator=torch.Generator().manual_seed(4))
    runs = [
        model.diffusion_generate(
            prompt, max_new_tokens=12, steps=6, alg=alg, alg_temp=alg_temp, generator=torch.Generator().manual_seed(9)
        )  # fmt: skip
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1]) and not (runs[0] == MASK).any()
    drawn = model.diffusion_generate(prompt, max_new_tokens=12, steps=6, alg=alg, alg_temp=1.0,
                                     generator=torch.Generator().manual_seed(9))  # fmt: skip
    assert not (drawn == MASK).any()
