"""LLaDA-MoE beside LLaDA and Dream: an official-format folder (official config fields and keys: expert layers and a
dense one, q/k norms, partial rotary, a shared expert, the expert bias) loads with our classes through transformers'
Auto classes; logits and LLaDA's sampler equal a reference written from the official code
(tests/oracles/lladamoe_reference.py); NTK scaling over the rotary dimensions; the folder's remote code works where
the project is not importable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_isolated
from oracles import lladamoe_reference as ref
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from modeling_longllada import (
    LLaDAMoEConfig,
    LLaDAMoEModelLM,
    critical_dimension,
    ntk_scaling_factor,
    registered_config_class,
)
from modeling_longllada.configuration_lladamoe import OFFICIAL_DEFAULTS

CONFIG = ref.official_config()
STATE = ref.random_state_dict(CONFIG, seed=0)
MASK_ID = CONFIG["mask_token_id"]
ATOL = 1e-4


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny official-format LLaDA-MoE folder, without code (its name has no '.', which transformers 4.46 needs)."""
    return ref.write_official_folder(tmp_path_factory.mktemp("lladamoe") / "tiny-lladamoe-official", CONFIG, STATE)


@pytest.fixture(scope="module")
def model(official_dir: Path) -> LLaDAMoEModelLM:
    return AutoModelForCausalLM.from_pretrained(official_dir).eval()


def prompts(lengths: tuple[int, ...], seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, MASK_ID, (n,), generator=g) for n in lengths]


# -- configuration and checkpoint ------------------------------------------------------------------------------------


def test_official_config_fields_round_trip(tmp_path):
    config = LLaDAMoEConfig.from_dict(dict(CONFIG))
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for field in OFFICIAL_DEFAULTS:  # (transformers 4.46 leaves out a None that is its own default: bos_token_id)
        assert saved.get(field) == CONFIG[field], field
    assert saved["mask_token_id"] == MASK_ID and saved["rope_scaling"] is None
    again = LLaDAMoEConfig.from_pretrained(tmp_path)
    assert {f: getattr(again, f) for f in OFFICIAL_DEFAULTS} == {f: CONFIG[f] for f in OFFICIAL_DEFAULTS}
    assert (again.head_dim, again.rotary_dim, again.trained_length) == (8, 4, 64)


def test_official_folder_loads_with_our_classes_and_the_official_keys(model):
    for auto in (AutoModel, AutoModelForCausalLM):
        assert auto._model_mapping[registered_config_class("lladamoe")] is LLaDAMoEModelLM
    assert type(model) is LLaDAMoEModelLM and model.config.model_type == "lladamoe"
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in STATE.items()}
    for key, tensor in STATE.items():
        assert torch.equal(state[key], tensor), key
    layers = model.model.layers
    assert layers[1].shared_expert is None and layers[2].shared_expert is not None  # layer 1 is dense


def test_a_llada_moe_config_that_says_llada_is_read_as_llada_moe(tmp_path):
    """Checkpoints of LLaDA-MoE's first code release say model_type "llada": their expert fields tell them apart."""
    folder = ref.write_official_folder(tmp_path / "moe-as-llada", {**CONFIG, "model_type": "llada"}, STATE)
    assert type(AutoConfig.from_pretrained(folder)) is registered_config_class("lladamoe")
    assert type(AutoModelForCausalLM.from_pretrained(folder)) is LLaDAMoEModelLM


def test_the_tools_read_a_llada_typed_folder_as_llada_moe(tmp_path):
    """The loading path of ppl and lm-eval and the upload's source check use the registry's claim too."""
    from hub_upload.build import family_of
    from longllada.loading import load_model, model_family
    from modeling_longllada.families import LLADA, LLADAMOE

    official = {**CONFIG, "model_type": "llada"}
    folder = ref.write_official_folder(tmp_path / "moe-as-llada", official, STATE)
    assert model_family(folder) == (LLADAMOE, "llada") and family_of(official) is LLADAMOE
    assert LLADAMOE.is_official(official)
    model = load_model(folder)
    assert type(model) is LLaDAMoEModelLM and model.config.mask_token_id == MASK_ID
    # LLaDA's own official config (d_model, no expert fields) stays LLaDA's
    assert family_of({"model_type": "llada", "d_model": 64, "n_heads": 4}) is LLADA


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("hidden_size", -1, "hidden_size=-1 is not allowed.*placeholder"),
        ("partial_rotary_factor", 0.375, "gives 3 rotary dimensions"),
        ("partial_rotary_factor", 1.5, r"partial_rotary_factor=1.5 is not allowed; allowed: a number in \(0, 1\]"),
        ("moe_layer_freq", [1, 1], "moe_layer_freq has 2 entries"),
        ("num_experts_per_tok", 9, "num_experts_per_tok=9 exceeds num_experts=8"),
        ("tie_word_embeddings", True, "tie_word_embeddings"),
        ("hidden_act", "gelu", "hidden_act='gelu'"),
    ],
)
def test_unsupported_configs_are_refused(field, value, words):
    with pytest.raises(ValueError, match=words):
        LLaDAMoEModelLM(LLaDAMoEConfig.from_dict({**CONFIG, field: value}))


# -- the forward pass --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_logits_equal_the_reference(model, backend):
    model.config._attn_implementation = backend
    (ids,) = prompts((13,))
    ids = torch.stack([ids, ids.flip(0)])
    ids[:, 5:8] = MASK_ID
    with torch.no_grad():
        ours = model(ids).logits
    model.config._attn_implementation = "sdpa"
    torch.testing.assert_close(ours, ref.forward(CONFIG, STATE, ids), atol=ATOL, rtol=0)


def test_logits_with_left_padding_equal_the_reference(model):
    rows = prompts((6, 11))
    ids = torch.full((2, 11), ref.PAD_ID)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, 11 - len(r) :], mask[i, 11 - len(r) :] = r, 1
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits  # positions 0..L-1 as the official forward
    real = mask.bool()
    torch.testing.assert_close(ours[real], ref.forward(CONFIG, STATE, ids, mask)[real], atol=ATOL, rtol=0)


def test_the_plain_and_fast_paths_and_the_caches_agree(model):
    """The fast path (in place, fused where it applies) gives the plain path's values on the CPU; a cached step
    over cache buffers gives the full pass's logits."""
    (ids,) = prompts((16,))
    ids = ids[None]
    results = {}
    with torch.no_grad():
        for enabled in (False, True):
            model.set_fast_path(enabled)
            results[enabled] = model(ids, use_cache=True)
        model.set_fast_path(None)
        full = results[False]
        buffers = [(k.clone(), v.clone()) for k, v in full.present_key_values]
        step = model(ids[:, 8:12], position_ids=torch.arange(8, 12)[None], past_key_values=buffers,
                     cache_slot=slice(8, 12)).logits  # fmt: skip
    assert torch.equal(results[True].logits, full.logits)
    torch.testing.assert_close(step, full.logits[:, 8:12], atol=1e-5, rtol=0)


def test_ntk_scaling_reads_the_rotary_dimension_and_multiplies_the_base(official_dir):
    sizes = dict(hidden_size=256, num_attention_heads=4, max_position_embeddings=4096)  # head 64, rotary 32
    config = LLaDAMoEConfig.from_dict({**CONFIG, **sizes, "rope_scaling": {"type": "ntk", "target_length": 32768}})
    assert (config.head_dim, config.rotary_dim, config.trained_length) == (64, 32, 4096)
    assert critical_dimension(32, 10000.0, 4096) == 24 and critical_dimension(64, 10000.0, 4096) == 46
    assert config.rope_scaling_factor == ntk_scaling_factor(32, 10000.0, 4096, 32768) == 10  # the full head: 15
    scaled = AutoModelForCausalLM.from_pretrained(official_dir, rope_scaling={"type": "ntk", "factor": 4}).eval()
    (ids,) = prompts((40,))
    with torch.no_grad():
        ours = scaled(ids[None]).logits
    torch.testing.assert_close(ours, ref.forward(CONFIG, STATE, ids[None], rope_theta=4 * CONFIG["rope_theta"]),
                               atol=ATOL, rtol=0)  # fmt: skip


def test_the_model_card_s_ntk_table_counts_the_rotated_dimensions():
    from hub_upload.model_card import ntk_table_rows

    sizes = dict(hidden_size=256, num_attention_heads=4, max_position_embeddings=4096)  # head 64, rotary 32
    rows = {row["length"]: row["factor"] for row in ntk_table_rows({**CONFIG, **sizes})}
    assert rows[32768] == ntk_scaling_factor(32, 10000.0, 4096, 32768) == 10  # the whole head would give 15


# -- the sampler and the likelihood --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gen_length, block_length, steps", [(12, 12, 12), (12, 4, 6)])
def test_greedy_generate_equals_the_official_llada_sampler(model, gen_length, block_length, steps):
    prompt = torch.stack(prompts((7, 7), seed=3))
    expected = ref.llada_generate(CONFIG, STATE, prompt, gen_length, block_length, steps)
    ours = model.generate(prompt, max_new_tokens=gen_length, block_length=block_length, steps=steps)
    assert ours.tolist() == expected.tolist()
    assert not (ours == MASK_ID).any()


@pytest.mark.parametrize("settings", [{"cache": "prefix"}, {"cache": "dual", "threshold": 0.5}, {"cfg_scale": 1.0}])
def test_the_llada_sampler_modes_fill_every_mask(model, settings):
    prompt = torch.stack(prompts((6, 6), seed=4))
    out = model.generate(prompt, max_new_tokens=8, block_length=4, **settings)
    assert out.shape == (2, 14) and not (out[:, 6:] == MASK_ID).any()


def test_likelihood_scores_the_masked_token(model):
    context = [5, 17, 42, 99]
    bound, stderr = model.log_likelihood(context, [63], mc_num=1, batch_size=1)
    logits = ref.forward(CONFIG, STATE, torch.tensor([context + [MASK_ID]]))[0, -1]
    assert bound == pytest.approx(torch.log_softmax(logits, -1)[63].item(), abs=1e-4) and stderr == 0.0


# -- as remote code, where the project is not importable -----------------------------------------------------------------

LOAD_REMOTE = """
import json, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained({folder!r}, trust_remote_code=True)
ids = torch.tensor({ids!r})
with torch.no_grad():
    logits = model(ids).logits
    tokens = model.generate(ids[:, :4], max_new_tokens=4, block_length=4, steps=4)
print("RESULT " + json.dumps({{"class": type(model).__name__, "module": type(model).__module__,
                               "logits": logits.tolist(), "tokens": tokens.tolist()}}))
"""


def test_saved_folder_loads_as_remote_code_where_the_project_is_not_importable(model, tmp_path):
    out = tmp_path / "saved-lladamoe"
    model.save_pretrained(out)
    saved = json.loads((out / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForCausalLM"] == "modeling_lladamoe.LLaDAMoEModelLM"
    for name in ("modeling_lladamoe.py", "moe_longllada.py", "modeling_longllada.py", "configuration_lladamoe.py"):
        assert (out / name).is_file(), name
    shutil.rmtree(out / "__pycache__", ignore_errors=True)
    ids = [[5, 17, 42, 99, MASK_ID, MASK_ID]]
    result = json.loads(next(line[7:] for line in run_isolated(LOAD_REMOTE.format(folder=str(out), ids=ids))
                             .splitlines()[::-1] if line.startswith("RESULT ")))  # fmt: skip
    assert result["class"] == "LLaDAMoEModelLM" and result["module"].startswith("transformers_modules.")
    torch.testing.assert_close(torch.tensor(result["logits"]), ref.forward(CONFIG, STATE, torch.tensor(ids)),
                               atol=ATOL, rtol=0)  # fmt: skip
    with torch.no_grad():
        expected = model.generate(torch.tensor(ids)[:, :4], max_new_tokens=4, block_length=4, steps=4)
    assert result["tokens"] == expected.tolist()


# -- published with `longllada upload`, loaded where the project is not importable ---------------------------------

LOAD_UPLOADED = """
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained({folder!r}, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained({folder!r}, trust_remote_code=True)
ids = torch.tensor({ids!r})
with torch.no_grad():
    logits = model(ids).logits
    tokens = model.generate(ids, max_new_tokens=8, block_length=4, steps=8)
print("RESULT " + json.dumps({{"class": type(model).__name__, "module": type(model).__module__,
                               "mask": [tokenizer.mask_token, model.config.mask_token_id],
                               "logits": logits.tolist(), "tokens": tokens.tolist()}}))
"""


def test_an_official_folder_uploaded_runs_as_remote_code_like_the_reference(tmp_path):
    """`longllada upload --dry-run` of an official-format folder (model_type "llada", as the releases' config.json
    says; the tokenizer of `tiny-model --arch lladamoe`), NTK factor 4: the repo's remote code, where the project
    is not importable, gives the reference's logits at base 4θ and the official sampler's greedy tokens. A copy
    that says "lladamoe" converts to the same repo."""
    from hub_upload import main as upload
    from longllada.tiny_model import default_texts
    from longllada.tokenizer import build_tokenizer, save_tokenizer

    tokenizer = build_tokenizer(default_texts(), vocab_size=300, family="lladamoe")
    ids = {"mask_token_id": tokenizer.mask_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    config = ref.official_config(vocab_size=320, model_type="llada", **ids)
    state = ref.random_state_dict(config, seed=5)
    built = {}
    for model_type in ("llada", "lladamoe"):
        source = ref.write_official_folder(tmp_path / f"official-{model_type}", {**config, "model_type": model_type},
                                           state)  # fmt: skip
        save_tokenizer(tokenizer, source)
        out = built[model_type] = tmp_path / model_type / "Tiny-LongLLaDA-MoE"
        assert upload([str(source), "--repo-id", "me/Tiny-LongLLaDA-MoE", "--rope-scaling", "ntk:4", "--dry-run",
                       "--out", str(out)]) == 0  # fmt: skip
    converted = json.loads((built["llada"] / "config.json").read_text())
    assert converted == json.loads((built["lladamoe"] / "config.json").read_text())
    assert converted["model_type"] == "longllada_lladamoe" and converted["mask_token_id"] == ids["mask_token_id"]
    assert converted["rope_scaling"] == {"type": "ntk", "factor": 4}
    assert converted["moe_layer_freq"] == config["moe_layer_freq"]
    prompt = torch.randint(3, 320, (1, 7), generator=torch.Generator().manual_seed(6))
    stdout = run_isolated(LOAD_UPLOADED.format(folder=str(built["llada"]), ids=prompt.tolist()))
    result = json.loads(next(line[7:] for line in stdout.splitlines()[::-1] if line.startswith("RESULT ")))
    assert result["class"] == "LLaDAMoEModelLM" and result["module"].startswith("transformers_modules.")
    assert result["mask"] == ["<|mask|>", ids["mask_token_id"]]
    reference = {**config, "rope_theta": 4 * config["rope_theta"]}
    torch.testing.assert_close(torch.tensor(result["logits"]), ref.forward(reference, state, prompt), atol=ATOL, rtol=0)
    assert result["tokens"] == ref.llada_generate(reference, state, prompt, 8, 4, 8).tolist()
