"""Dream-v0 beside LLaDA: official config and checkpoint format, logits and sampler equal to a reference written
from the description of the official model (tests/oracles/dream_reference.py), NTK scaling as for LLaDA, the
shifted likelihood, saving and loading as remote code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_isolated
from oracles import dream_reference as ref

from modeling_longllada import DreamConfig, DreamModel, ntk_scaling_factor
from modeling_longllada.configuration_dream import OFFICIAL_DEFAULTS

CONFIG = ref.official_config()
STATE = ref.random_state_dict(CONFIG, seed=0)
MASK_ID = CONFIG["mask_token_id"]
ATOL = 1e-4


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny official-format Dream folder (its name has no '.', which transformers 4.46 needs for remote code)."""
    return ref.write_official_folder(tmp_path_factory.mktemp("dream") / "tiny-dream-official", CONFIG, STATE)


@pytest.fixture(scope="module")
def model(official_dir: Path) -> DreamModel:
    return DreamModel.from_pretrained(official_dir).eval()


def prompts(lengths: tuple[int, ...], seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, MASK_ID, (n,), generator=g) for n in lengths]


def left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), ref.PAD_ID)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    return ids, mask


# -- configuration --------------------------------------------------------------------------------------------


def test_official_config_fields_round_trip(tmp_path):
    config = DreamConfig.from_dict(dict(CONFIG))
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for field in OFFICIAL_DEFAULTS:
        assert saved[field] == CONFIG[field], field
    assert saved["max_position_embeddings"] == 131072  # kept as the checkpoint has it
    assert saved["trained_length"] == 2048 and saved["rope_scaling"] is None
    again = DreamConfig.from_pretrained(tmp_path)
    assert {f: getattr(again, f) for f in OFFICIAL_DEFAULTS} == {f: CONFIG[f] for f in OFFICIAL_DEFAULTS}
    assert again.head_dim == 8 and again.trained_length == 2048


def test_ntk_scaling_law_reads_the_trained_length_not_max_position_embeddings():
    assert ntk_scaling_factor(128, 1e6, 2048, 4096) == 5
    config = DreamConfig(rope_scaling={"type": "ntk", "target_length": 4096})  # Dream-v0-7B's sizes
    assert (config.head_dim, config.rope_theta, config.trained_length) == (128, 1e6, 2048)
    assert config.rope_scaling_factor == 5 and config.rope_supported_length == 4096
    assert config.max_position_embeddings == 131072
    assert DreamConfig(rope_scaling="ntk:5").rope_scaling == {"type": "ntk", "factor": 5}
    assert DreamConfig(rope_scaling="ntk-per-length").rope_factor_for_length(4096) == 5
    # the same spec as LLaDA's, errors included
    with pytest.raises(ValueError, match="below the trained length 2048"):
        DreamConfig(rope_scaling={"type": "ntk", "target_length": 1024})
    with pytest.raises(ValueError, match="unknown keys"):
        DreamConfig(rope_scaling={"type": "ntk", "factor": 5, "alpha": 1})
    with pytest.raises(ValueError, match="long_factor has 2 numbers; allowed: 64"):
        DreamConfig(rope_scaling={"type": "longrope", "long_factor": [1.0, 2.0], "factor": 2})
    # transformers' methods read the trained length, not Qwen's 131072, as their original length
    assert DreamConfig(rope_scaling="yarn:2").rope_supported_length == 4096


@pytest.mark.parametrize("value", [0, -1, 2048.0, True, "2048"])
def test_bad_trained_length_is_refused(value):
    with pytest.raises(ValueError, match="trained_length"):
        DreamConfig(trained_length=value)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("hidden_act", "gelu", "hidden_act='gelu'"),
        ("use_sliding_window", True, "use_sliding_window"),
        ("tie_word_embeddings", True, "tie_word_embeddings"),
        ("num_key_value_heads", 3, "num_key_value_heads=3"),
    ],
)
def test_unsupported_architectures_are_refused(field, value, words):
    with pytest.raises(ValueError, match=words):
        DreamModel(DreamConfig.from_dict({**CONFIG, field: value}))


# -- the checkpoint and the forward pass -------------------------------------------------------------------------


def test_state_dict_has_the_official_keys(model):
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in STATE.items()}
    assert model.logits_shifted is True and DreamModel.logits_shifted is True
    for key, tensor in STATE.items():
        assert torch.equal(model.state_dict()[key], tensor), key


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_logits_equal_the_reference(model, backend):
    model.config._attn_implementation = backend
    (ids,) = prompts((13,))
    ids = torch.stack([ids, ids.flip(0)])
    ids[:, 5:8] = MASK_ID
    with torch.no_grad():
        ours = model(ids).logits
    torch.testing.assert_close(ours, ref.forward(CONFIG, STATE, ids), atol=ATOL, rtol=0)
    full_mask = torch.ones_like(ids)  # a mask without zeros is full attention
    with torch.no_grad():
        torch.testing.assert_close(model(ids, attention_mask=full_mask).logits, ours, atol=1e-6, rtol=0)
    model.config._attn_implementation = "sdpa"


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_logits_with_left_padding_equal_the_reference(model, backend):
    model.config._attn_implementation = backend
    ids, mask = left_pad(prompts((6, 11, 9)))
    real = mask.bool()
    with torch.no_grad():
        default_positions = model(ids, attention_mask=mask).logits
        # the sampler's positions: cumsum(mask) - 1, padding at 1
        positions = mask.cumsum(-1) - 1
        positions[mask == 0] = 1
        sampler_positions = model(ids, attention_mask=mask, position_ids=positions).logits
    # As the official forward: positions 0..L-1 whatever the mask; padded keys masked. Pad rows are junk.
    expected = ref.forward(CONFIG, STATE, ids, mask)
    torch.testing.assert_close(default_positions[real], expected[real], atol=ATOL, rtol=0)
    expected = ref.forward(CONFIG, STATE, ids, mask, positions)
    torch.testing.assert_close(sampler_positions[real], expected[real], atol=ATOL, rtol=0)
    # with the sampler's positions each row equals the row run alone
    for row, prompt in enumerate(prompts((6, 11, 9))):
        alone = ref.forward(CONFIG, STATE, prompt[None])[0]
        torch.testing.assert_close(sampler_positions[row, mask[row].bool()], alone, atol=ATOL, rtol=0)
    model.config._attn_implementation = "sdpa"


def test_ntk_factor_multiplies_the_base_as_the_reference(official_dir):
    scaled = DreamModel.from_pretrained(official_dir, rope_scaling={"type": "ntk", "factor": 5}).eval()
    assert scaled.rope_base(10) == CONFIG["rope_theta"] * 5
    (ids,) = prompts((40,))
    with torch.no_grad():
        ours = scaled(ids[None]).logits
    expected = ref.forward(CONFIG, STATE, ids[None], rope_theta=CONFIG["rope_theta"] * 5)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
    assert (ours - ref.forward(CONFIG, STATE, ids[None])).abs().max() > 1e-3  # the scaling changed something


def test_logits_to_keep_and_encode_lm_head(model):
    (ids,) = prompts((12,))
    ids = ids[None]
    with torch.no_grad():
        full = model(ids).logits
        torch.testing.assert_close(model(ids, logits_to_keep=3).logits, full[:, -3:])
        torch.testing.assert_close(model(ids, logits_to_keep=slice(2, 6)).logits, full[:, 2:6])
        hidden = model.encode(ids)[0]
        torch.testing.assert_close(model.lm_head(hidden), full)


def test_cached_forward_equals_the_full_pass(model):
    """The sampler's caches: keys/values of the other positions from a full pass, queries on a span."""
    (ids,) = prompts((16,))
    ids = ids[None]
    positions = torch.arange(16)[None]
    with torch.no_grad():
        full = model(ids, use_cache=True)
        buffers = [(k.clone(), v.clone()) for k, v in full.present_key_values]
        span = model(
            ids[:, 8:12], position_ids=positions[:, 8:12], past_key_values=buffers, cache_slot=slice(8, 12)
        ).logits
    torch.testing.assert_close(span, full.logits[:, 8:12], atol=1e-5, rtol=0)


# -- the likelihood (shifted) ------------------------------------------------------------------------------------


def test_likelihood_scores_token_j_from_position_j_minus_1(model):
    """One continuation token: every Monte-Carlo sample masks it, so -log p is the cross-entropy of the
    reference's logits at the position before it, with that token masked."""
    context, (token,) = [ref.BOS_ID, 17, 42, 99, 5], [63]
    masked = torch.tensor([context + [MASK_ID]])
    logits = ref.forward(CONFIG, STATE, masked)[0, len(context) - 1]  # unshifted: position j - 1 predicts j
    expected = -torch.log_softmax(logits, -1)[token].item()
    log_p, stderr = model.log_likelihood(context, [token], mc_num=3, batch_size=2)
    assert log_p == pytest.approx(-expected, abs=1e-4) and stderr == pytest.approx(0.0, abs=1e-6)
    assert model.chunk_perplexity(context, [token], mc_num=2) == pytest.approx(expected, abs=1e-4)


def test_likelihood_needs_a_context_for_shifted_logits(model):
    with pytest.raises(ValueError, match="context_ids is empty"):
        model.log_likelihood([], [5, 6], mc_num=1)


# -- loading as users do -------------------------------------------------------------------------------------------

LOAD_OFFICIAL = """
import json, torch
from transformers import AutoModel
model = AutoModel.from_pretrained({folder!r}, trust_remote_code=True)
ids = torch.tensor({ids!r})
with torch.no_grad():
    logits = model(ids).logits
print("RESULT " + json.dumps({{"class": type(model).__name__, "module": type(model).__module__,
                               "shifted": model.logits_shifted, "logits": logits.tolist()}}))
"""


def result_line(out: str) -> dict:
    return json.loads(next(line[7:] for line in out.splitlines()[::-1] if line.startswith("RESULT ")))


def test_official_folder_loads_as_remote_code_where_the_project_is_not_importable(official_dir):
    ids = [[ref.BOS_ID, 17, 42, 99, 5, MASK_ID, MASK_ID]]
    result = result_line(run_isolated(LOAD_OFFICIAL.format(folder=str(official_dir), ids=ids)))
    assert result["class"] == "DreamModel" and result["module"].startswith("transformers_modules.")
    assert result["shifted"] is True
    expected = ref.forward(CONFIG, STATE, torch.tensor(ids))
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, atol=ATOL, rtol=0)


def test_save_pretrained_writes_the_remote_code_it_points_to(model, tmp_path):
    out = tmp_path / "saved-dream"
    model.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_dream.DreamConfig",
        "AutoModel": "modeling_dream.DreamModel",
        "AutoModelForCausalLM": "modeling_dream.DreamModel",
    }
    for name in ("configuration_dream.py", "modeling_dream.py", "modeling_longllada.py", "rope_longllada.py"):
        assert (out / name).is_file(), name
    code = LOAD_OFFICIAL.replace("AutoModel", "AutoModelForCausalLM")
    ids = [[ref.BOS_ID, 17, 42, MASK_ID]]
    result = result_line(run_isolated(code.format(folder=str(out), ids=ids)))
    assert result["class"] == "DreamModel"
    torch.testing.assert_close(
        torch.tensor(result["logits"]), ref.forward(CONFIG, STATE, torch.tensor(ids)), atol=ATOL, rtol=0
    )


# -- the sampler: model.diffusion_generate against the reference sampler --------------------------------------------

GREEDY_ALGS = ["maskgit_plus", "topk_margin", "entropy"]


def generate(model: DreamModel, ids: torch.Tensor, mask: torch.Tensor | None, **settings) -> torch.Tensor:
    with torch.no_grad():
        out = model.diffusion_generate(ids, attention_mask=mask, **settings)
    return out.sequences if hasattr(out, "sequences") else out


def test_reference_schedule_commits_nothing_first_and_two_last():
    """With steps equal to the new tokens the schedule is not one token per step (16/16: 0 first, 2 last)."""
    timesteps = torch.linspace(1, 1e-3, 17)
    counts, masked = [], 16
    for i in range(16):
        s, t = timesteps[i + 1], timesteps[i]
        n = int(torch.tensor(masked, dtype=torch.float32) * (1 - s / t)) if i < 15 else masked
        counts.append(n)
        masked -= n
    assert counts[0] == 0 and counts[-1] == 2 and sum(counts) == 16


@pytest.mark.parametrize("alg", GREEDY_ALGS)
def test_dream_sampler_greedy_matches_the_reference_row_by_row(model, alg):
    settings = dict(max_new_tokens=12, steps=12, alg=alg, alg_temp=None, temperature=0.0, top_p=None, top_k=None)
    for prompt in prompts((5, 9)):
        ids = prompt[None]
        expected = ref.diffusion_generate(CONFIG, STATE, ids, eps=1e-3, **settings)
        assert not bool((expected == MASK_ID).any())
        ours = generate(model, ids, torch.ones_like(ids), eps=1e-3, **settings)
        assert ours.tolist() == expected.tolist()


@pytest.mark.parametrize("alg", GREEDY_ALGS)
def test_dream_sampler_greedy_matches_the_reference_on_a_left_padded_batch(model, alg):
    ids, mask = left_pad(prompts((5, 9, 7)))
    settings = dict(max_new_tokens=10, steps=6, alg=alg, alg_temp=None, temperature=0.0, top_p=None, top_k=None)
    expected = ref.diffusion_generate(CONFIG, STATE, ids, mask, eps=1e-3, **settings)
    assert not bool((expected[:, ids.shape[1] :] == MASK_ID).any())
    assert generate(model, ids, mask, eps=1e-3, **settings).tolist() == expected.tolist()


def test_dream_sampler_filters_shape_the_confidence_as_the_reference(model):
    """top_p / top_k filter the logits before the confidence even when decoding greedily."""
    ids, mask = left_pad(prompts((6, 4)))
    settings = dict(max_new_tokens=8, steps=8, alg="entropy", alg_temp=None, temperature=0.0, top_p=0.9, top_k=20)
    expected = ref.diffusion_generate(CONFIG, STATE, ids, mask, eps=1e-3, **settings)
    assert generate(model, ids, mask, eps=1e-3, **settings).tolist() == expected.tolist()


def test_dream_sampler_origin_fills_every_mask(model):
    ids, mask = left_pad(prompts((5, 8)))
    torch.manual_seed(0)
    out = generate(model, ids, mask, max_new_tokens=8, steps=8, alg="origin", temperature=0.0, eps=1e-3)
    assert out.shape == (2, ids.shape[1] + 8)
    assert torch.equal(out[:, : ids.shape[1]], ids) and not bool((out == MASK_ID).any())


# -- Dream's hooks, as its official diffusion_generate calls them -----------------------------------------------------

FORCED, BANNED = 7, 9


def recording_hooks(calls: list):
    """A tokens hook that forces the last answer position to FORCED after the first step, and a logits hook that
    bans BANNED; both record when they were called and with what shapes."""

    def tokens_hook(step, x, logits):
        calls.append(("tokens", step, tuple(x.shape), None if logits is None else tuple(logits.shape)))
        if step is not None and step >= 1:
            x = x.clone()
            x[:, -1] = FORCED
        return x

    def logits_hook(step, x, logits):
        calls.append(("logits", step, tuple(x.shape), tuple(logits.shape)))
        logits = logits.clone()
        logits[..., BANNED] = -torch.inf
        return logits

    return tokens_hook, logits_hook


@pytest.mark.parametrize("alg", ["entropy", "maskgit_plus"])
def test_hooks_behave_as_in_the_official_sampler(model, alg):
    ids, mask = left_pad(prompts((5, 8)))
    settings = dict(max_new_tokens=8, steps=6, alg=alg, alg_temp=None, temperature=0.0, top_p=None, top_k=None)
    ours_calls, reference_calls = [], []
    tokens_hook, logits_hook = recording_hooks(ours_calls)
    ours = generate(model, ids, mask, eps=1e-3, generation_tokens_hook_func=tokens_hook,
                    generation_logits_hook_func=logits_hook, **settings)  # fmt: skip
    tokens_hook, logits_hook = recording_hooks(reference_calls)
    expected = ref.diffusion_generate(CONFIG, STATE, ids, mask, eps=1e-3, generation_tokens_hook_func=tokens_hook,
                                      generation_logits_hook_func=logits_hook, **settings)  # fmt: skip
    assert ours.tolist() == expected.tolist()
    assert ours_calls == reference_calls
    assert ours_calls[0] == ("tokens", None, tuple(ours.shape), None)
    assert [c[1] for c in ours_calls if c[0] == "logits"] == list(range(6))
    answer = ours[:, ids.shape[1] :]
    # (a mask may remain, as in the official sampler: forcing a position makes the rows' mask counts differ, and
    # the last step commits their mean)
    assert (answer[:, -1] == FORCED).all() and not (answer == BANNED).any()


def test_hooks_need_the_uncached_sampler_and_must_return_tokens(model):
    ids = prompts((5,))[0][None]
    with pytest.raises(ValueError, match="cache='prefix' is not allowed with generation_tokens_hook_func"):
        model.diffusion_generate(ids, max_new_tokens=4, steps=4, cache="prefix",
                                 generation_logits_hook_func=lambda step, x, logits: logits)  # fmt: skip
    with pytest.raises(ValueError, match="generation_tokens_hook_func returned"):
        model.diffusion_generate(ids, max_new_tokens=4, steps=4,
                                 generation_tokens_hook_func=lambda step, x, logits: x[:, :-1])  # fmt: skip
    with pytest.raises(ValueError, match="generation_logits_hook_func=3 is not allowed"):
        model.diffusion_generate(ids, max_new_tokens=4, steps=4, generation_logits_hook_func=3)
