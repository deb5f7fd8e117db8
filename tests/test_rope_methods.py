"""Context-extension methods on the one spec: the rotary tables of every method against transformers' own, a causal
LM loaded with ``--rope-scaling`` for each, LongRoPE with LongDLLM's factors against LongDLLM's rotary class, the
parser's errors per class, and UltraLLaDA's checkpoint read as the LLaDA it is."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from longllada.perplexity import load_model
from longllada.rope_scaling import apply_rope_scaling, causal_rope_theta
from modeling_longllada import (
    DreamConfig,
    LongLLaDAConfig,
    LongLLaDAModelLM,
    diffusion_ntk_factor,
    ntk_scaling_factor,
    ntk_supported_length,
    parse_rope_scaling,
    rope_scaling_per_length,
    rope_tables,
)
from modeling_longllada.configuration_longllada import OFFICIAL_DEFAULTS
from modeling_longllada.modeling_longllada import apply_rotary
from modeling_longllada.rope_longllada import LONGROPE_FACTOR_TABLES, MAX_ROPE_BASE, spec_label
from modeling_longllada.rope_tables_longllada import ROPE_PARAMETERS_STYLE as V5

ROTARY, THETA, TRAINED = 16, 10000.0, 64
LENGTHS = (48, 200)  # within and past the trained length
LONG = [1.0 + i / 3 for i in range(ROTARY // 2)]
SHORT = [1.0 + i / 20 for i in range(ROTARY // 2)]


def llama_rotary(
    params: dict | None, theta: float = THETA, max_pos: int = TRAINED, partial: float | None = None,
    head_dim: int = ROTARY,
):  # fmt: skip
    """transformers' own LLaMA rotary embedding for ``params`` as transformers names them (the installed version's
    config shape), head dim ``head_dim`` (of which ``partial`` rotates)."""
    kwargs = dict(vocab_size=16, hidden_size=2 * head_dim, intermediate_size=16, num_hidden_layers=1,
                  num_attention_heads=2, head_dim=head_dim, max_position_embeddings=max_pos)  # fmt: skip
    if V5:
        kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": theta, **(params or {})}
        if partial is not None:
            kwargs["rope_parameters"]["partial_rotary_factor"] = partial
    else:
        kwargs.update(rope_theta=theta, rope_scaling=params)
        if partial is not None:
            kwargs["partial_rotary_factor"] = partial
    return LlamaRotaryEmbedding(config=LlamaConfig(**kwargs))


def transformers_cos_sin(rotary, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.arange(length)[None]
    cos, sin = rotary(torch.zeros(1, length, ROTARY), positions)
    return cos[0], sin[0]


def our_cos_sin(tables, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    angles = torch.arange(length, dtype=torch.float32)[:, None] * tables.inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos() * tables.attention_factor, angles.sin() * tables.attention_factor


def yarn_temperature(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature, written from the paper (eq. 21)."""
    return 0.1 * mscale * math.log(scale) + 1.0


def law_factor(d: int, theta: float, train: int, target: int) -> float:
    """The extrapolation scaling law, written from the paper: θ'/θ with θ' = (T/2π)^(d/d_crit)."""
    d_crit = 2 * math.ceil(d / 2 * math.log(train / (2 * math.pi), theta))
    return (target / (2 * math.pi)) ** (d / d_crit) / theta


def v4(params: dict, original: int) -> tuple[dict, int]:
    """transformers 4.x reads YaRN's and LongRoPE's original length from max_position_embeddings."""
    if params["rope_type"] not in ("yarn", "longrope"):
        return params, original
    return {k: v for k, v in params.items() if k != "original_max_position_embeddings"}, original


# (spec, transformers' parameters in the 5.x shape, the original length) for the methods transformers has.
TRANSFORMERS_CASES = {
    "linear": ("linear:4", {"rope_type": "linear", "factor": 4.0}, TRAINED),
    "dynamic": ("dynamic:2", {"rope_type": "dynamic", "factor": 2.0}, TRAINED),
    "yarn": ("yarn:4", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": TRAINED}, TRAINED),
    "yarn-full": (
        {"type": "yarn", "factor": 8, "beta_fast": 16, "beta_slow": 2, "attention_factor": 1.3,
         "original_max_position_embeddings": 32},
        {"rope_type": "yarn", "factor": 8.0, "beta_fast": 16.0, "beta_slow": 2.0, "attention_factor": 1.3,
         "original_max_position_embeddings": 32},
        32,
    ),
    "llama3": (
        {"type": "llama3", "factor": 8, "low_freq_factor": 2, "high_freq_factor": 6},
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0, "high_freq_factor": 6.0,
         "original_max_position_embeddings": TRAINED},
        TRAINED,
    ),
    "longrope": (
        {"type": "longrope", "long_factor": LONG, "factor": 4},
        {"rope_type": "longrope", "long_factor": LONG, "short_factor": LONG, "factor": 4.0,
         "original_max_position_embeddings": TRAINED},
        TRAINED,
    ),
    "longrope-target": (
        {"type": "longrope", "long_factor": LONG, "target_length": 512, "original_max_position_embeddings": 32},
        {"rope_type": "longrope", "long_factor": LONG, "short_factor": LONG, "factor": 16.0,
         "original_max_position_embeddings": 32},
        32,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TRANSFORMERS_CASES))
@pytest.mark.parametrize("length", LENGTHS)
def test_tables_equal_transformers_for_its_methods(case, length):
    spec, params, original = TRANSFORMERS_CASES[case]
    if V5:
        rotary = llama_rotary(params)
    else:
        params, max_pos = v4(params, original)
        rotary = llama_rotary(params, max_pos=max_pos)
    tables = rope_tables(spec, ROTARY, THETA, TRAINED, seq_len=length)
    assert tables.inv_freq.dtype == torch.float32 and tables.inv_freq.shape == (ROTARY // 2,)
    for ours, theirs in zip(our_cos_sin(tables, length), transformers_cos_sin(rotary, length)):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("length", LENGTHS)
def test_yarn_mscale_and_longrope_magnitudes(length):
    """The attention temperatures transformers 4.x lacks (YaRN's mscale pair, LongRoPE's "yarn" magnitude) are the
    papers' formulas; transformers 5 computes the mscale pair itself."""
    spec = {"type": "yarn", "factor": 4, "mscale": 1.0, "mscale_all_dim": 0.5}
    if V5:
        params = {"rope_type": "yarn", "factor": 4.0, "mscale": 1.0, "mscale_all_dim": 0.5,
                  "original_max_position_embeddings": TRAINED}  # fmt: skip
    else:
        temperature = yarn_temperature(4, 1.0) / yarn_temperature(4, 0.5)
        params = {"rope_type": "yarn", "factor": 4.0, "attention_factor": temperature}
    tables = rope_tables(spec, ROTARY, THETA, TRAINED, seq_len=length)
    for ours, theirs in zip(our_cos_sin(tables, length), transformers_cos_sin(llama_rotary(params), length)):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    longrope = {"type": "longrope", "long_factor": LONG, "factor": 4, "magnitude_scaling": "yarn"}
    assert rope_tables(longrope, ROTARY, THETA, TRAINED).attention_factor == pytest.approx(yarn_temperature(4))
    su = {"type": "longrope", "long_factor": LONG, "factor": 4}
    expected_su = math.sqrt(1 + math.log(4) / math.log(TRAINED))
    assert rope_tables(su, ROTARY, THETA, TRAINED).attention_factor == pytest.approx(expected_su)


@pytest.mark.skipif(not V5, reason="transformers 4.x's LLaMA applies long_factor at every length")
@pytest.mark.parametrize("length", LENGTHS)
def test_longrope_short_and_long_tables_follow_the_length(length):
    spec = {"type": "longrope", "long_factor": LONG, "short_factor": SHORT, "factor": 4}
    params = {"rope_type": "longrope", "long_factor": LONG, "short_factor": SHORT, "factor": 4.0,
              "original_max_position_embeddings": TRAINED}  # fmt: skip
    assert rope_scaling_per_length(parse_rope_scaling(spec))
    tables = rope_tables(spec, ROTARY, THETA, TRAINED, seq_len=length)
    for ours, theirs in zip(our_cos_sin(tables, length), transformers_cos_sin(llama_rotary(params), length)):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("length", LENGTHS)
def test_partial_rotary_tables_equal_transformers(length):
    params = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": TRAINED}
    rotary = llama_rotary(params if V5 else v4(params, TRAINED)[0], partial=0.5)
    positions = torch.arange(length)[None]
    cos, sin = rotary(torch.zeros(1, length, ROTARY), positions)
    tables = rope_tables("yarn:4", ROTARY // 2, THETA, TRAINED, seq_len=length)
    angles = positions[0, :, None].float() * tables.inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    torch.testing.assert_close(cos[0], angles.cos() * tables.attention_factor, atol=1e-6, rtol=0)


@pytest.mark.parametrize("length", LENGTHS)
def test_base_scaling_methods_equal_transformers_default_rope_at_the_scaled_base(length):
    """The LongLLaDA paper's NTK (factor, target, per length) and UltraLLaDA's diffusion-aware NTK only multiply
    the base: their tables are transformers' default RoPE at θ·λ, λ from the papers' formulas."""
    target = 1024
    cases = {
        "ntk:4": 4.0,
        f"ntk-target:{target}": math.ceil(law_factor(ROTARY, THETA, TRAINED, target)),
        "ntk-per-length": max(1, math.ceil(law_factor(ROTARY, THETA, TRAINED, length))) if length > TRAINED else 1,
        f"diffusion-ntk:{target}": law_factor(ROTARY, THETA, 2 * TRAINED, 2 * target),
    }
    for spec, factor in cases.items():
        tables = rope_tables(spec, ROTARY, THETA, TRAINED, seq_len=length)
        rotary = llama_rotary(None, theta=THETA * factor)
        for ours, theirs in zip(our_cos_sin(tables, length), transformers_cos_sin(rotary, length)):
            torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0, msg=spec)


def test_diffusion_aware_ntk_is_the_law_on_doubled_ranges():
    # LLaDA-8B to 128k: d'_crit = 2·ceil(64·log_θ(8192 / 2π)) = 70, λ' = (262144 / 2π)^(128/70) / 500000
    expected = (2 * 131072 / (2 * math.pi)) ** (128 / 70) / 500000
    assert diffusion_ntk_factor(128, 500000, 4096, 131072) == pytest.approx(expected, rel=1e-12)
    assert 500 < expected < ntk_scaling_factor(128, 500000, 4096, 131072)  # LongLLaDA's rule asks more: 871
    config = LongLLaDAConfig(rope_scaling="diffusion-ntk:128k")
    assert config.rope_scaling == {"type": "diffusion_ntk", "target_length": 131072}
    assert config.rope_scaling_factor == pytest.approx(expected) and config.max_position_embeddings == 131072
    assert DreamConfig(rope_scaling={"type": "diffusion_ntk", "target_length": 2048}).rope_scaling_factor == 1.0


def test_every_form_parses_to_one_canonical_spec_and_back(tmp_path):
    table = tmp_path / "factors.json"
    table.write_text(json.dumps(LONG))
    keyed = tmp_path / "longrope.json"
    keyed.write_text(json.dumps({"long_factor": LONG, "short_factor": SHORT, "factor": 4, "magnitude_scaling": "yarn"}))
    assert parse_rope_scaling("linear:4") == {"type": "linear", "factor": 4}
    assert parse_rope_scaling("YARN:2.5") == {"type": "yarn", "factor": 2.5}
    assert parse_rope_scaling('{"rope_type": "yarn", "factor": 4, "beta_fast": 16}') == {
        "type": "yarn", "factor": 4, "beta_fast": 16}  # fmt: skip
    assert parse_rope_scaling(f"longrope:{table}:8k") == {
        "type": "longrope",
        "long_factor": LONG,
        "target_length": 8192,
    }
    assert parse_rope_scaling(f"longrope:{keyed}")["short_factor"] == SHORT
    published = parse_rope_scaling("longrope:gsai-ml/llada-8b-instruct")
    assert published["long_factor"] == list(LONGROPE_FACTOR_TABLES["GSAI-ML/LLaDA-8B-Instruct"]["long_factor"])
    assert published["original_max_position_embeddings"] == 4096 and published["target_length"] == 131072
    assert parse_rope_scaling("longrope:apple/DiffuCoder-7B-Instruct:32k")["original_max_position_embeddings"] == 16384
    for spec in (published, parse_rope_scaling(f"longrope:{keyed}"), {"type": "yarn", "factor": 4, "beta_fast": 16.0}):
        assert parse_rope_scaling(spec_label(parse_rope_scaling(spec))) == parse_rope_scaling(spec)
    llama31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}  # fmt: skip
    assert parse_rope_scaling(llama31) == {"type": "llama3", **{k: v for k, v in llama31.items() if k != "rope_type"}}


# -- causal LMs: the config transformers computes from ------------------------------------------------------------

CAUSAL_TRAINED, CAUSAL_HEAD = 128, 8


@pytest.fixture(scope="module")
def llama_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A tiny random LlamaForCausalLM (head dim 8, trained length 128) with the tiny model's tokenizer."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=CAUSAL_TRAINED, rope_theta=THETA,
    )  # fmt: skip
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("llama") / "llama"
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def causal_specs(tmp_path: Path) -> list:
    table = tmp_path / "factors.json"
    table.write_text(json.dumps([1.0 + i for i in range(CAUSAL_HEAD // 2)]))
    return [
        "ntk:4", "ntk-target:4096", "diffusion-ntk:1024", "linear:4", "dynamic:2", "yarn:4", "llama3:8",
        f"longrope:{table}:512", '{"type": "yarn", "factor": 8, "beta_fast": 16, "attention_factor": 1.2}',
    ]  # fmt: skip


def test_causal_lm_loaded_with_each_method_has_the_spec_tables(llama_dir, tmp_path):
    """`--rope-scaling` on a causal LM writes transformers' own config; the model transformers builds from it has
    the tables of the one spec function (itself checked against transformers above)."""
    for spec in causal_specs(tmp_path):
        loaded = load_model(llama_dir, spec, device="cpu")
        config = loaded.model.config
        params = config.rope_parameters if V5 else (config.rope_scaling or {})
        kind = parse_rope_scaling(spec)["type"]
        if kind in ("ntk", "diffusion_ntk"):
            assert params.get("rope_type", "default") == "default" and causal_rope_theta(config) > THETA
        else:
            assert params["rope_type"] == kind and causal_rope_theta(config) == THETA, spec
        rotary = loaded.model.model.rotary_emb
        for length in (64, 300):
            positions = torch.arange(length)[None]
            cos, sin = rotary(torch.zeros(1, length, CAUSAL_HEAD), positions)
            tables = rope_tables(spec, CAUSAL_HEAD, THETA, CAUSAL_TRAINED, seq_len=length)
            angles = positions[0, :, None].float() * tables.inv_freq
            angles = torch.cat((angles, angles), dim=-1)
            torch.testing.assert_close(cos[0], angles.cos() * tables.attention_factor, atol=1e-6, rtol=0, msg=spec)
            torch.testing.assert_close(sin[0], angles.sin() * tables.attention_factor, atol=1e-6, rtol=0, msg=spec)
        assert loaded.rope["scaling"] == spec_label(parse_rope_scaling(spec))


def test_causal_method_replaces_the_configs_own_scaling():
    params = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 64}  # fmt: skip
    kwargs = dict(
        vocab_size=16, hidden_size=32, num_attention_heads=2, num_hidden_layers=1, max_position_embeddings=512
    )
    config = LlamaConfig(**kwargs, rope_parameters={"rope_theta": THETA, **params}) if V5 else LlamaConfig(
        **kwargs, rope_theta=THETA, rope_scaling=params)  # fmt: skip
    record = apply_rope_scaling(config, "yarn:2")
    applied = config.rope_parameters if V5 else config.rope_scaling
    assert applied["rope_type"] == "yarn" and "low_freq_factor" not in applied and record["factor"] == 2.0
    if not V5:  # 4.x reads YaRN's original length from max_position_embeddings: another one cannot be said
        with pytest.raises(ValueError, match="transformers 4.x reads as the original length"):
            apply_rope_scaling(config, {"type": "yarn", "factor": 2, "original_max_position_embeddings": 256})


# -- LongRoPE with LongDLLM's published factors, against LongDLLM's own rotary class ---------------------------------


@pytest.fixture(scope="module")
def longdllm_package(tmp_path_factory) -> Path:
    """LongDLLM 0.1.5 installed without dependencies into a temporary folder (its RoPE module needs only torch)."""
    target = tmp_path_factory.mktemp("longdllm")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
             "--target", str(target), "longdllm==0.1.5"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"pip could not install longdllm 0.1.5 from the package registry: {err}")
    if result.returncode != 0:
        pytest.skip(f"pip could not install longdllm 0.1.5 from the package registry: {result.stderr.strip()[-300:]}")
    return target / "longdllm"


def longdllm_rope_module(package: Path):
    """Only its RoPE module, by file: the package's __init__ imports its generation code and dependencies."""
    spec = importlib.util.spec_from_file_location("longdllm_rope_classes", package / "rope_classes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "model, csv", [("GSAI-ML/LLaDA-8B-Instruct", "llada"), ("apple/DiffuCoder-7B-Instruct", "diffucoder")]
)
def test_stored_factor_tables_are_longdllms(longdllm_package, model, csv):
    shipped = [float(x) for x in (longdllm_package / "data" / f"{csv}_rescale_factors.csv").read_text().split()]
    assert list(LONGROPE_FACTOR_TABLES[model]["long_factor"]) == shipped


@pytest.mark.parametrize("magnitude", ["su", "yarn"])
def test_longrope_with_longdllm_factors_matches_longdllm_rotary_for_llada(longdllm_package, magnitude):
    """LLaDA-8B (head dim 128, base 500000, trained 4096) extended to 128k as LongDLLM's README does:
    ``adapt_for_long_context(model, target_length=131072)`` builds this rotary class for every LLaDA block."""
    rope_classes = longdllm_rope_module(longdllm_package)
    factors = LONGROPE_FACTOR_TABLES["GSAI-ML/LLaDA-8B-Instruct"]["long_factor"]
    theirs = rope_classes.LongRoPEScaledRotaryEmbedding(
        dim=128, rescale_factors=list(factors), scale=32.0, max_position_embeddings=131072,
        original_max_position_embeddings=4096, base=500000.0, magnitude_scaling_policy=magnitude, model_type="llada",
    )  # fmt: skip
    spec = parse_rope_scaling("longrope:GSAI-ML/LLaDA-8B-Instruct")
    if magnitude == "yarn":
        spec = {**spec, "magnitude_scaling": "yarn"}
    length = 6000  # past the trained length, where the rescaled low frequencies matter
    tables = rope_tables(spec, 128, 500000.0, OFFICIAL_DEFAULTS["max_sequence_length"], seq_len=length)
    assert tables.attention_factor == pytest.approx(theirs.mscale, rel=1e-12)
    torch.manual_seed(0)
    q, k = torch.randn(1, 2, length, 128), torch.randn(1, 2, length, 128)
    their_q, their_k = theirs(q, k)
    cos, sin = our_cos_sin(tables, length)
    torch.testing.assert_close(apply_rotary(q, cos, sin), their_q, atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_rotary(k, cos, sin), their_k, atol=1e-6, rtol=0)
    # the cos/sin themselves, from the class's own table method
    their_cos, their_sin = theirs._forward_llama(q[:, 0], torch.arange(length)[None])
    torch.testing.assert_close(cos, their_cos[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, their_sin[0], atol=1e-6, rtol=0)


# -- the parser's errors, one class each ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        # unknown keys, for the type or for every type
        ({"type": "yarn", "factor": 2, "low_freq_factor": 1}, r"unknown keys \['low_freq_factor'\] for type 'yarn'"),
        ({"type": "linear", "factor": 2, "truncate": False}, r"unknown keys \['truncate'\]"),
        # the model's own fields are not a scaling
        ({"type": "yarn", "factor": 2, "rope_theta": 1e6}, r"rope_scaling\.rope_theta=1000000\.0 is not allowed"),
        ({"type": "ntk", "factor": 2, "partial_rotary_factor": 0.5}, r"partial_rotary_factor=0\.5 is not allowed"),
        # non-finite numbers, out of range, the wrong kind
        ({"type": "yarn", "factor": float("nan")}, r"rope_scaling\.factor=nan is not allowed"),
        ({"type": "yarn", "factor": 2, "beta_fast": float("inf")}, r"rope_scaling\.beta_fast=inf"),
        ({"type": "longrope", "long_factor": [1.0, float("nan")], "factor": 2}, r"long_factor\[1\]=nan"),
        ({"type": "longrope", "long_factor": [1.0, -2.0], "factor": 2}, r"long_factor\[1\]=-2\.0"),
        ({"type": "longrope", "long_factor": "1,2", "factor": 2}, r"long_factor='1,2' is not allowed"),
        ({"type": "llama3", "factor": 0.5}, r"rope_scaling\.factor=0\.5"),
        ({"type": "yarn", "factor": 2, "attention_factor": 50}, r"attention_factor=50 is not allowed.*<= 10\.0"),
        (
            {"type": "yarn", "factor": 2, "original_max_position_embeddings": 4096.0},
            r"original_max_position_embeddings",
        ),
        ({"type": "longrope", "long_factor": [1.0], "factor": 2, "magnitude_scaling": "cubic"}, "magnitude_scaling"),
        # bounds: every factor, every length
        ("ntk:1e305", r"ntk:FACTOR=1e\+305 is not allowed; allowed: a finite number >= 1 and <= 1e\+12"),
        ({"type": "linear", "factor": 1e13}, r"<= 1e\+12"),
        ("ntk-target:9999999999k", r"<= 4294967296"),
        # what a type needs, and what contradicts
        ({"type": "yarn"}, "needs 'factor'"),
        ({"type": "diffusion_ntk"}, "needs 'target_length'"),
        ({"type": "longrope", "long_factor": [1.0]}, "needs one of 'factor'"),
        ({"type": "longrope", "long_factor": [1.0], "factor": 2, "target_length": 8192}, "needs one of 'factor'"),
        ({"type": "longrope", "long_factor": [1.0, 2.0], "short_factor": [1.0], "factor": 2}, "the same count"),
        ({"type": "yarn", "factor": 2, "beta_fast": 1, "beta_slow": 2}, "beta_fast > beta_slow"),
        ({"type": "llama3", "factor": 2, "low_freq_factor": 4}, "high_freq_factor > low_freq_factor"),
        ({"type": "yarn", "factor": 2, "mscale": 1.0}, "needs its pair"),
        ({"type": "yarn", "factor": 2, "mscale": 1, "mscale_all_dim": 1, "attention_factor": 1}, "give the attention"),
        # strings
        ("bogus:2", "allowed: none, ntk:FACTOR"),
        ("longrope:nowhere", r"longrope:SOURCE='nowhere' is not allowed"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "allowed: none, ntk:FACTOR"),
    ],
)
def test_parser_errors_name_the_field(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_rope_scaling(spec)


def test_factor_files_are_checked(tmp_path):
    for name, content, message in [
        ("missing.json", None, "no such file"),
        ("broken.json", "[1, 2", "not a readable JSON file"),
        ("other.json", '{"type": "yarn", "factor": 2}', "names type 'yarn'"),
        ("number.json", "4", "a JSON list of factors"),
    ]:
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(ValueError, match=message):
            parse_rope_scaling(f"longrope:{path}:8k", field="--rope-scaling")


@pytest.mark.parametrize(
    "spec, rotary_dim, theta, message",
    [
        ({"type": "longrope", "long_factor": [1.0] * 7, "factor": 2}, 16, THETA,
         r"rope_scaling\.long_factor has 7 numbers; allowed: 8, one per rotary frequency \(rotary dim 16 / 2\)"),
        ("longrope:GSAI-ML/LLaDA-8B-Instruct", 64, 500000.0, "long_factor has 64 numbers; allowed: 32"),
        ({"type": "longrope", "long_factor": [1.0] * 8, "target_length": 32}, 16, THETA, "below the original length"),
        ("ntk-target:32", 16, THETA, "below the trained length 64"),
        ("ntk:1e6", 16, 1e25, r"scaled RoPE base 1e\+25 x 1e\+06 = 1e\+31 is above the limit 1e\+30"),
        ("ntk-target:4294967296", 16, THETA, r"the scaling law gives a factor of .* allowed: a length whose factor"),
        ("dynamic:2", 2, THETA, "needs a rotary dim above 2"),
    ],
)  # fmt: skip
def test_model_checks_of_a_spec(spec, rotary_dim, theta, message):
    with pytest.raises(ValueError, match=message):
        rope_tables(spec, rotary_dim, theta, TRAINED)


def test_ntk_bounds_reach_the_configs_as_one_error():
    with pytest.raises(ValueError, match=r"<= 1e\+12"):
        LongLLaDAConfig(rope_scaling="ntk:1e305")
    with pytest.raises(ValueError, match=r"above the limit 1e\+30"):
        LongLLaDAConfig(rope_theta=1e25, rope_scaling="ntk:1e6")
    assert LongLLaDAConfig(rope_scaling="ntk:1e12").rope_theta * 1e12 <= MAX_ROPE_BASE


def test_rope_theta_and_partial_rotary_factor_of_transformers_5s_rope_parameters():
    """`rope_parameters` (transformers 5) holds the trained base: honoured when the config states none, refused
    when it disagrees; the rotated share must be the config's. Inside `rope_scaling` both are refused."""
    honoured = LongLLaDAConfig(rope_parameters={"rope_type": "ntk", "factor": 2, "rope_theta": 1e6})
    assert honoured.rope_theta == 1e6 and honoured.rope_scaling == {"type": "ntk", "factor": 2}
    assert DreamConfig(rope_theta=1e6, rope_parameters={"rope_type": "default", "rope_theta": 1e6}).rope_scaling is None
    with pytest.raises(ValueError, match=r"rope_parameters\.rope_theta=1000000\.0 disagrees with rope_theta=500000"):
        LongLLaDAConfig(rope_theta=500000.0, rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    with pytest.raises(ValueError, match=r"rope_parameters\.partial_rotary_factor=0\.5 disagrees"):
        DreamConfig(rope_parameters={"rope_type": "default", "partial_rotary_factor": 0.5})
    with pytest.raises(ValueError, match=r"rope_scaling\.rope_theta=1000000\.0 is not allowed"):
        LongLLaDAConfig(rope_scaling={"type": "ntk", "factor": 2, "rope_theta": 1e6})


# -- the diffusion families: every method in their one rotary embedding --------------------------------------------

# spec -> (transformers' parameters in the 5.x shape, or None for a base-multiplying method: transformers' default
# RoPE at the base the papers' formulas give), for a rotary part of ROTARY dimensions trained at TRAINED.
DIFFUSION_CASES = {
    "linear:4": {"rope_type": "linear", "factor": 4.0},
    "dynamic:2": {"rope_type": "dynamic", "factor": 2.0},
    "yarn:4": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": TRAINED},
    "yarn-full": TRANSFORMERS_CASES["yarn-full"][1],
    "llama3:8": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": TRAINED},
    "longrope": TRANSFORMERS_CASES["longrope"][1],
    "longrope-short": {"rope_type": "longrope", "long_factor": LONG, "short_factor": SHORT, "factor": 4.0,
                       "original_max_position_embeddings": TRAINED},
    "ntk:4": None,
    "ntk-target:1024": None,
    "ntk-per-length": None,
    "diffusion-ntk:1024": None,
}  # fmt: skip
DIFFUSION_SPECS = {
    "yarn-full": TRANSFORMERS_CASES["yarn-full"][0],
    "longrope": TRANSFORMERS_CASES["longrope"][0],
    "longrope-short": {"type": "longrope", "long_factor": LONG, "short_factor": SHORT, "factor": 4},
}


def diffusion_model(family: str, spec):
    """A tiny random model of ``family`` with ``spec``: LLaDA and Dream rotate whole heads of ROTARY dimensions,
    LLaDA-MoE half of each 2·ROTARY-dimension head (partial rotary); all trained at TRAINED with base THETA."""
    from oracles import dream_reference, lladamoe_reference

    from modeling_longllada import DreamModel, LLaDAMoEConfig, LLaDAMoEModelLM

    torch.manual_seed(0)
    if family == "llada":
        config = LongLLaDAConfig(
            d_model=2 * ROTARY, n_heads=2, n_kv_heads=2, n_layers=1, mlp_hidden_size=64, vocab_size=64,
            embedding_size=64, max_sequence_length=TRAINED, rope_theta=THETA, mask_token_id=63, eos_token_id=1,
            pad_token_id=1, rope_scaling=spec,
        )  # fmt: skip
        return LongLLaDAModelLM(config).eval()
    if family == "dream":
        fields = dream_reference.official_config(hidden_size=2 * ROTARY, num_attention_heads=2,
                                                 num_key_value_heads=2, num_hidden_layers=1, vocab_size=64)  # fmt: skip
        return DreamModel(DreamConfig(**{**fields, "rope_scaling": spec}, trained_length=TRAINED)).eval()
    fields = lladamoe_reference.official_config(hidden_size=4 * ROTARY, num_attention_heads=2, num_key_value_heads=2,
                                                num_hidden_layers=1, max_position_embeddings=TRAINED)  # fmt: skip
    return LLaDAMoEModelLM(LLaDAMoEConfig(**{**fields, "rope_scaling": spec})).eval()


def law_base(spec: str, length: int) -> float:
    """The base θ·λ of a base-multiplying spec for a pass over ``length`` positions, from the papers' formulas."""
    target = 1024
    factors = {
        "ntk:4": 4.0,
        "ntk-target:1024": math.ceil(law_factor(ROTARY, THETA, TRAINED, target)),
        "ntk-per-length": max(1, math.ceil(law_factor(ROTARY, THETA, TRAINED, length))) if length > TRAINED else 1,
        "diffusion-ntk:1024": law_factor(ROTARY, THETA, 2 * TRAINED, 2 * target),
    }
    return THETA * factors[spec]


@pytest.mark.parametrize("family", ["llada", "dream", "lladamoe"])
@pytest.mark.parametrize("case", sorted(DIFFUSION_CASES))
def test_diffusion_models_cos_sin_equal_transformers_llama_rotary(family, case):
    """Each method's cos/sin in our diffusion models (full rotary: LLaDA, Dream; partial: LLaDA-MoE) equal those of
    transformers' LlamaRotaryEmbedding built from an equivalent config, within and past the trained length."""
    params = DIFFUSION_CASES[case]
    if not V5 and case == "longrope-short":
        pytest.skip("transformers 4.x's LLaMA applies long_factor at every length")
    model = diffusion_model(family, DIFFUSION_SPECS.get(case, case))
    partial = 0.5 if family == "lladamoe" else None
    head = ROTARY if partial is None else 2 * ROTARY
    assert model.config.rotary_dim == ROTARY
    for length in LENGTHS:
        if params is None:  # (LLaMA's default RoPE ignores partial_rotary_factor: the rotated part as a head)
            rotary = llama_rotary(None, theta=law_base(case, length), head_dim=ROTARY)
        else:
            original = params.get("original_max_position_embeddings", TRAINED)
            given, max_pos = (params, TRAINED) if V5 else v4(params, original)
            rotary = llama_rotary(given, partial=partial, head_dim=head, max_pos=max_pos)
        positions = torch.arange(length)[None]
        theirs = rotary(torch.zeros(1, length, rotary.config.head_dim), positions)
        ours = model.rotary_emb(positions, length)
        for mine, reference in zip(ours, theirs):
            assert mine.shape == (1, 1, length, ROTARY)
            torch.testing.assert_close(mine[:, 0], reference, atol=1e-6, rtol=0, msg=f"{family} {case} {length}")


def test_rotary_tables_are_computed_once_per_spec_device_and_length(monkeypatch):
    """A static spec's tables are computed once for every pass (not per layer or step); a per-length one once per
    distinct length; a new spec on the config is taken at the next pass."""
    import modeling_longllada.modeling_longllada as modeling

    calls = []

    def counted(config, seq_len, device):
        calls.append((config.rope_scaling or {}).get("type"))
        return modeling.spec_frequencies(config, seq_len, device)

    for kind in ("default", "yarn", "dynamic"):
        monkeypatch.setitem(modeling.ROPE_FREQUENCY_FUNCTIONS, kind, counted)
    model = diffusion_model("llada", "yarn:4")
    ids = torch.randint(3, 60, (1, 12))
    with torch.no_grad():
        model.generate(ids, max_new_tokens=8, steps=4, block_length=8)
        model(ids)
    assert calls == ["yarn"]
    model.config.rope_scaling = "dynamic:2"
    with torch.no_grad():
        for length in (40, 100, 100, 40):
            model(torch.randint(3, 60, (1, length)))
    assert calls == ["yarn", "dynamic", "dynamic"]  # lengths 40 and 100, each once
    model.config.rope_scaling = None
    with torch.no_grad():
        model(ids)
    assert calls[-1] is None


@pytest.mark.parametrize(
    "spec",
    ["linear:4", "dynamic:2", "yarn:4", "llama3:8", "longrope-file", "ntk:4", "ntk-per-length", "diffusion-ntk:1024"],
)
def test_a_model_loaded_with_each_method_generates(tiny_model_dir, tiny_dream_dir, tmp_path, spec):
    """``from_pretrained(..., rope_scaling=...)`` with every method: the config holds the spec and its window, the
    model's tables are the spec's, and generate() runs past the trained length."""
    from transformers import AutoModelForCausalLM

    for folder in (tiny_model_dir, tiny_dream_dir):
        config = AutoConfig.from_pretrained(folder)
        rotary_dim, trained = config.rotary_dim, config.trained_length
        given = spec
        if spec == "longrope-file":
            table = tmp_path / "factors.json"
            table.write_text(json.dumps([1.0 + i / 4 for i in range(rotary_dim // 2)]))
            given = f"longrope:{table}:{4 * trained}"
        model = AutoModelForCausalLM.from_pretrained(folder, rope_scaling=given).eval()
        parsed = parse_rope_scaling(given)
        assert model.config.rope_scaling == parsed
        assert model.config.max_position_embeddings >= trained and model.config.n_positions > trained
        length = trained + 40
        positions = torch.arange(length)[None]
        cos, _ = model.rotary_emb(positions, length)
        tables = rope_tables(parsed, rotary_dim, config.rope_theta, trained, seq_len=length)
        torch.testing.assert_close(cos[0, 0], our_cos_sin(tables, length)[0], atol=1e-6, rtol=0)
        prompt = torch.randint(5, 100, (2, trained))
        out = model.generate(prompt, max_new_tokens=8, steps=4, block_length=8)
        assert out.shape == (2, trained + 8) and torch.equal(out[:, :trained], prompt)
        assert int(out[:, trained:].min()) >= 0 and int(out[:, trained:].max()) < model.config.vocab_size


def test_diffusion_windows_follow_each_method():
    """max_position_embeddings / rope_supported_length / n_positions: the target, the law's inverse, or the trained
    (original) length times a method's factor."""

    def window(spec) -> int:
        return LongLLaDAConfig(d_model=64, n_heads=4, max_sequence_length=256, rope_theta=THETA,
                               rope_scaling=spec).max_position_embeddings  # fmt: skip

    assert window(None) == 256 and window("linear:4") == window("yarn:4") == window("dynamic:4") == 1024
    assert window("llama3:8") == 2048 and window("ntk-target:3000") == 3000 and window("diffusion-ntk:5000") == 5000
    assert window({"type": "yarn", "factor": 2, "original_max_position_embeddings": 512}) == 1024
    assert window("ntk:4") == ntk_supported_length(16, THETA, 256, 4) > 256
    assert window({"type": "longrope", "long_factor": [1.0] * 8, "factor": 8}) == 2048
    assert window({"type": "longrope", "long_factor": [1.0] * 8, "target_length": 700}) == 700
    dream = DreamConfig(hidden_size=64, num_attention_heads=4, trained_length=256, rope_scaling="yarn:4")
    assert dream.rope_supported_length == 1024 and dream.n_positions == 131072 + 256  # its own window is larger
    assert dream.rope_effective_base == "per frequency" and dream.rope_scaling_factor == 1.0
    assert DreamConfig(rope_scaling="dynamic:2").rope_effective_base == "per length"


def test_a_diffusion_model_refuses_a_factor_table_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"rope_scaling\.long_factor has 64 numbers; allowed: 8"):
        diffusion_model("llada", "longrope:GSAI-ML/LLaDA-8B-Instruct")
    with pytest.raises(ValueError, match=r"long_factor has 8 numbers; allowed: 64"):
        LongLLaDAConfig(rope_scaling={"type": "longrope", "long_factor": LONG, "factor": 4})
    assert LongLLaDAConfig(rope_scaling="longrope:GSAI-ML/LLaDA-8B-Instruct").max_position_embeddings == 131072


# -- UltraLLaDA: a LLaDA checkpoint post-trained to 128k ----------------------------------------------------------------


def ultrallada_folder(tiny_model_dir: Path, out: Path) -> Path:
    """A folder shaped like UltraLLaDA's Hub repo (relaxe-system-lab/UltraLLaDA: model type ``llada``, LLaDA-8B-Base's
    ``configuration_llada`` / ``modeling_llada`` remote code, absent here so it can never run), with tiny sizes, the
    fields a newer transformers writes, a 128k trained length and the base the diffusion-aware NTK gives."""
    shutil.copytree(tiny_model_dir, out, ignore=shutil.ignore_patterns("*.py", ".longllada*"))
    ours = json.loads((out / "config.json").read_text())
    config = {k: v for k, v in ours.items() if k in OFFICIAL_DEFAULTS or k.endswith("_token_id")}
    head_dim = config["d_model"] // config["n_heads"]
    trained = config["max_sequence_length"]
    config.update(
        model_type="llada",
        architectures=["LLaDAModelLM"],
        auto_map={"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM",
                  "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"},
        max_sequence_length=131072,
        rope_theta=config["rope_theta"] * diffusion_ntk_factor(head_dim, config["rope_theta"], trained, 131072),
        dtype="bfloat16",
        transformers_version="4.57.6",
        use_cache=False,
    )  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def test_ultrallada_checkpoint_loads_as_llada(tiny_model_dir, tmp_path):
    folder = ultrallada_folder(tiny_model_dir, tmp_path / "UltraLLaDA")
    published = json.loads((folder / "config.json").read_text())
    config = AutoConfig.from_pretrained(folder)
    assert isinstance(config, LongLLaDAConfig) and config.model_type == "llada"
    assert config.trained_length == 131072 and config.max_position_embeddings == 131072
    assert config.rope_theta == published["rope_theta"] and config.rope_scaling is None
    model = AutoModel.from_pretrained(folder, rope_scaling="ntk-per-length")
    assert type(model) is LongLLaDAModelLM and model.config.rope_per_length
    with torch.no_grad():
        logits = model(torch.tensor([[5, 9, 14, 3, 7]])).logits
    assert torch.isfinite(logits).all()
    assert model.rope_base(5) == published["rope_theta"]  # within its 128k: no further scaling


# -- the tools: every method reaches the diffusion models, and runs name it ------------------------------------------


def test_ppl_and_upload_take_every_method_for_a_diffusion_model(tiny_model_dir, tmp_path, capsys):
    """``longllada ppl --rope-scaling yarn:4`` scores a diffusion model with YaRN's tables and records the method;
    ``longllada upload``'s --rope-scaling names every form of the one parser and writes the spec to config.json."""
    from hub_upload.build import convert_config
    from hub_upload.options import ROPE_SCALING_FORMS
    from hub_upload.options import parse_rope_scaling as upload_choice
    from longllada import cli
    from modeling_longllada.rope_longllada import ROPE_SCALING_STRINGS

    out = tmp_path / "yarn.jsonl"
    args = ["ppl", "--model", str(tiny_model_dir), "--out", str(out), "--device", "cpu", "--no-progress",
            "--rope-scaling", "yarn:4", "--max-length", "128", "--mc", "1", "--batch-size", "1"]  # fmt: skip
    assert cli.main(args) == 0, capsys.readouterr().err
    meta = json.loads(out.read_text().splitlines()[0])
    assert meta["rope_scaling"] == "yarn:4" and meta["rope"]["factor"] == 4.0
    assert meta["rope"]["rope_type"] == "yarn" and meta["rope"]["effective_rope_theta"] == "per frequency"

    def stem(form: str) -> str:
        return form.split(":")[0].split("[")[0]

    assert {stem(form) for form in ROPE_SCALING_FORMS} == {stem(form) for form in ROPE_SCALING_STRINGS}
    choice = upload_choice("yarn:4")
    assert choice.branch == "yarn-4"
    source = json.loads((tiny_model_dir / "config.json").read_text())
    converted = convert_config(source, choice)
    assert converted["rope_scaling"] == {"type": "yarn", "factor": 4}
    assert converted["max_position_embeddings"] == 4 * source["max_sequence_length"]


def test_runs_name_each_method(tiny_model_dir):
    """What plots and tables call a setting: NTK by its λ, the frequency-rescaling methods by their label."""
    from longllada.run_info import RunSetting, model_facts

    facts = model_facts(str(tiny_model_dir), {"rope_scaling": "yarn:4"})
    assert facts == {"trained_length": 256, "context_window": 1024, "factor": 4.0, "target": None, "scaling": "yarn:4"}
    assert RunSetting(model="m", **facts).label() == "m, yarn:4"
    longrope = {"type": "longrope", "long_factor": [1.0 + i for i in range(8)], "target_length": 2048}
    facts = model_facts(str(tiny_model_dir), {"rope_scaling": json.dumps(longrope)})
    assert facts["context_window"] == 2048 and facts["factor"] == 8.0
    assert RunSetting(**facts).scaling_text() == "longrope ×8 (T=2048)"
    ntk = model_facts(str(tiny_model_dir), {"rope_scaling": "ntk:4"})
    assert RunSetting(**ntk).scaling_text() == "NTK λ=4" and ntk["context_window"] > 256
    per_length = model_facts(str(tiny_model_dir), {"rope_scaling": "dynamic:2"})
    assert per_length["factor"] == "per length" and RunSetting(**per_length).scaling_text() == "dynamic:2"
    assert RunSetting(**model_facts(str(tiny_model_dir), {"rope_scaling": "ntk-per-length"})).scaling_text() == (
        "NTK per length"
    )


REMOTE_CODE_RUN = """
import json, torch
from transformers import AutoModelForCausalLM
for folder in {folders!r}:
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    cos, _ = model.rotary_emb(torch.arange({length})[None], {length})
    out = model.generate(torch.arange(5, 5 + {length})[None] % 90 + 5, max_new_tokens=4, steps=2, block_length=4)
    print(json.dumps({{"module": type(model).__module__, "scaling": model.config.rope_scaling,
                       "cos": cos[0, 0, -1].tolist(), "shape": list(out.shape)}}))
"""


def test_saved_folders_with_a_method_run_as_remote_code(tiny_model_dir, tiny_dream_dir, tmp_path, run_isolated):
    """A LLaDA and a Dream folder whose config.json carries YaRN / LongRoPE load with their own remote code where
    the project is not importable (transformers 4.46 copies only the files each module imports: the rotary tables'
    module is among them) and take the spec's tables."""
    specs = {"llada": {"type": "yarn", "factor": 4}, "dream": {"type": "longrope", "long_factor": LONG, "factor": 4}}
    folders = []
    for name, source in (("llada", tiny_model_dir), ("dream", tiny_dream_dir)):
        # a name of its own: transformers keeps a folder's copied modules by the folder's name between runs
        folder = shutil.copytree(source, tmp_path / f"{name}-scaled-{uuid.uuid4().hex[:12]}")
        config = json.loads((folder / "config.json").read_text())
        config["rope_scaling"] = specs[name]
        (folder / "config.json").write_text(json.dumps(config))
        folders.append(str(folder))
    length = 300
    lines = run_isolated(REMOTE_CODE_RUN.format(folders=folders, length=length)).strip().splitlines()
    for name, line in zip(specs, lines):
        result = json.loads(line)
        assert result["module"].startswith("transformers_modules.") and result["shape"] == [1, length + 4]
        assert result["scaling"] == parse_rope_scaling(specs[name])
        tables = rope_tables(specs[name], ROTARY, THETA, 256, seq_len=length)
        torch.testing.assert_close(torch.tensor(result["cos"]), our_cos_sin(tables, length)[0][-1], atol=1e-5, rtol=0)
