"""The model: official config fields, NTK scaling law, numerics, padding masks, backends."""

from __future__ import annotations

import json
import math

import pytest
import torch

from modeling_longllada import (
    LongLLaDAConfig,
    LongLLaDAModelLM,
    critical_dimension,
    modeling_longllada,
    ntk_scaling_factor,
)
from modeling_longllada.configuration_longllada import OFFICIAL_DEFAULTS
from modeling_longllada.modeling_longllada import LongLLaDARMSNorm, apply_rotary, rotary_cos_sin

SMALL = dict(
    d_model=64, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=96, vocab_size=100, embedding_size=128,
    max_sequence_length=64, rope_theta=10000.0, mask_token_id=126, eos_token_id=1, pad_token_id=1,
)  # fmt: skip


def small_model(**overrides) -> LongLLaDAModelLM:
    torch.manual_seed(0)
    return LongLLaDAModelLM(LongLLaDAConfig(**{**SMALL, **overrides})).eval()


# -- configuration --------------------------------------------------------------------------------------------


def test_official_fields_round_trip(tmp_path):
    official = dict(OFFICIAL_DEFAULTS, model_type="llada", architectures=["LLaDAModelLM"])
    config = LongLLaDAConfig.from_dict(official)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for field, value in OFFICIAL_DEFAULTS.items():
        assert saved[field] == value, field
    again = LongLLaDAConfig.from_pretrained(tmp_path)
    assert {f: getattr(again, f) for f in OFFICIAL_DEFAULTS} == OFFICIAL_DEFAULTS
    assert again.max_position_embeddings == 4096 and again.head_dim == 128


def test_max_position_embeddings_follows_scaling():
    assert LongLLaDAConfig().max_position_embeddings == 4096
    assert LongLLaDAConfig(rope_scaling={"type": "ntk", "target_length": 16384}).max_position_embeddings == 16384
    by_factor = LongLLaDAConfig(rope_scaling={"rope_type": "ntk", "factor": 4}).max_position_embeddings
    assert 8192 <= by_factor < 16384  # the law's inverse: λ=4 covers 8k but not 16k
    assert ntk_scaling_factor(128, 500000, 4096, by_factor) == 4
    assert LongLLaDAConfig(rope_parameters={"rope_type": "default", "rope_theta": 5e5}).rope_scaling is None


def test_scaling_law_examples():
    assert critical_dimension(128, 500000, 4096) == 64
    assert ntk_scaling_factor(128, 500000, 4096, 8192) == 4  # LLaDA-8B -> 8k
    assert ntk_scaling_factor(128, 500000, 8192, 16384) == 4  # LLaMA-3-8B -> 16k
    assert ntk_scaling_factor(128, 500000, 4096, 4096) == 1
    assert ntk_scaling_factor(128, 500000, 4096, 32768) > ntk_scaling_factor(128, 500000, 4096, 16384)
    assert LongLLaDAConfig(rope_scaling={"type": "ntk", "target_length": 8192}).rope_scaling_factor == 4


@pytest.mark.parametrize(
    "scaling, field",
    [
        ({"type": "longrope", "long_factor": [1.0, 2.0], "factor": 2}, "rope_scaling.long_factor has 2 numbers"),
        ({"type": "ntk", "factor": 0.5}, "rope_scaling.factor"),
        ({"type": "ntk", "factor": "4"}, "rope_scaling.factor"),
        ({"type": "ntk", "target_length": 0}, "rope_scaling.target_length"),
        ({"type": "ntk", "target_length": -8192}, "rope_scaling.target_length"),
        ({"type": "ntk", "factor": 2, "target_length": 8192}, "disagrees"),
        ({"type": "ntk"}, "'factor'"),
        ({"type": "dynamic", "factor": 2, "beta_fast": 4}, "unknown keys \\['beta_fast'\\] for type 'dynamic'"),
        ({"type": "ntk_per_length", "factor": 2}, "rope_scaling.factor"),
        ({"type": "ntk", "rope_type": "dynamic", "factor": 2}, "rope_type"),
        ({"type": "ntk", "factor": float("nan")}, "rope_scaling.factor"),
        ({"type": "ntk", "factor": float("inf")}, "rope_scaling.factor"),
        ({"type": "ntk", "factor": True}, "rope_scaling.factor"),
        ({"type": "ntk", "target_length": 8192.0}, "rope_scaling.target_length"),
        ({"type": "ntk", "target_length": 1024}, "below the trained length 4096"),
        ({"type": "ntk", "factor": 4, "original_max_position_embeddings": 8192}, "unknown keys"),
        ("ntk", "rope_scaling='ntk' is not allowed"),
        ("ntk:inf", "ntk:FACTOR"),
        ("ntk-target:abc", "ntk-target:LENGTH"),
        (42, "rope_scaling=42 is not allowed"),
    ],
)
def test_bad_rope_scaling_raises(scaling, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        LongLLaDAConfig(rope_scaling=scaling)


def test_factor_and_target_may_agree():
    config = LongLLaDAConfig(rope_scaling={"type": "ntk", "factor": 4, "target_length": 8192})
    assert config.rope_scaling_factor == 4


def test_unsupported_architecture_is_refused():
    with pytest.raises(ValueError, match="block_type"):
        small_model(block_type="sequential")


# -- numerics ---------------------------------------------------------------------------------------------------


def test_rmsnorm_upcasts_then_scales_in_input_dtype():
    norm = LongLLaDARMSNorm(8, 1e-5)
    norm.weight.data = torch.linspace(0.5, 2, 8)
    x = torch.randn(3, 8, dtype=torch.float64).to(torch.bfloat16)
    x32 = x.float()
    expected = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16) * norm.weight.to(
        torch.bfloat16
    )
    assert torch.equal(norm.to(torch.bfloat16)(x), expected)


def test_rope_is_split_halves_in_float32():
    d, base = 8, 10000.0
    x = torch.randn(1, 1, 5, d)
    cos, sin = rotary_cos_sin(torch.arange(5)[None], d, base, x.device)
    out = apply_rotary(x, cos, sin)
    for pos in range(5):
        for i in range(d // 2):
            theta = pos * base ** (-2 * i / d)
            a, b = x[0, 0, pos, i].item(), x[0, 0, pos, i + d // 2].item()
            assert out[0, 0, pos, i].item() == pytest.approx(a * math.cos(theta) - b * math.sin(theta), abs=1e-5)
            assert out[0, 0, pos, i + d // 2].item() == pytest.approx(
                b * math.cos(theta) + a * math.sin(theta), abs=1e-5
            )


def test_attention_is_bidirectional():
    model = small_model()
    ids = torch.randint(2, 100, (1, 10))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 100 + 2
    # A change at the last position moves the first position's logits: no causal mask.
    assert not torch.allclose(model(ids).logits[0, 0], model(changed).logits[0, 0])


# -- padding and backends ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_left_padding_matches_rows_run_alone(backend):
    model = small_model()
    model.config._attn_implementation = backend
    rows = [torch.randint(2, 100, (n,)) for n in (5, 12, 9)]
    width = max(len(r) for r in rows)
    ids = torch.full((3, width), SMALL["pad_token_id"])
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    batched = model(ids, attention_mask=mask).logits
    for i, r in enumerate(rows):
        alone = model(r[None]).logits[0]
        torch.testing.assert_close(batched[i, width - len(r) :], alone, atol=1e-5, rtol=1e-5)


def test_sdpa_and_eager_agree_in_float32():
    model = small_model()
    ids = torch.randint(2, 100, (2, 17))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    model.config._attn_implementation = "sdpa"
    sdpa = model(ids, attention_mask=mask).logits
    model.config._attn_implementation = "eager"
    eager = model(ids, attention_mask=mask).logits
    assert (sdpa - eager).abs().max().item() < 1e-5


def test_unknown_backend_is_refused():
    model = small_model()
    model.config._attn_implementation = "paged"
    with pytest.raises(ValueError, match="attn_implementation"):
        model(torch.randint(2, 100, (1, 4)))


def test_logits_to_keep_runs_the_head_only_there():
    model = small_model()
    ids = torch.randint(2, 100, (2, 12))
    full = model(ids).logits
    torch.testing.assert_close(model(ids, logits_to_keep=3).logits, full[:, -3:])
    torch.testing.assert_close(model(ids, logits_to_keep=slice(4, 8)).logits, full[:, 4:8])
    idx = torch.tensor([0, 5, 11])
    torch.testing.assert_close(model(ids, logits_to_keep=idx).logits, full[:, idx])
    assert model(ids, logits_to_keep=3).logits.shape == (2, 3, 128)


def test_labels_are_refused_with_a_pointer():
    with pytest.raises(ValueError, match="log_likelihood"):
        small_model()(torch.randint(2, 100, (1, 4)), labels=torch.randint(2, 100, (1, 4)))


def test_weight_tying_uses_the_embedding():
    model = small_model(weight_tying=True)
    assert "model.transformer.ff_out.weight" not in model.state_dict()
    ids = torch.randint(2, 100, (1, 6))
    hidden = model(ids, output_hidden_states=True).last_hidden_state
    torch.testing.assert_close(model(ids).logits, hidden @ model.model.transformer.wte.weight.T)


# -- RoPE scaling -------------------------------------------------------------------------------------------------


def test_ntk_factor_multiplies_the_base():
    model = small_model(rope_scaling={"type": "ntk", "factor": 8})
    assert model.rope_base(10) == SMALL["rope_theta"] * 8
    plain = small_model()
    ids = torch.randint(2, 100, (1, 20))
    assert not torch.allclose(model(ids).logits, plain(ids).logits)


def test_rope_scaling_strings_and_dicts_are_one_spec():
    assert LongLLaDAConfig(rope_scaling="ntk:4").rope_scaling == {"type": "ntk", "factor": 4}
    assert LongLLaDAConfig(rope_scaling="ntk-target:16k").rope_scaling == {"type": "ntk", "target_length": 16384}
    assert LongLLaDAConfig(rope_scaling="ntk-per-length").rope_scaling == {"type": "ntk_per_length"}
    assert LongLLaDAConfig(rope_scaling="none").rope_scaling is None
    assert LongLLaDAConfig(rope_scaling={"rope_type": "ntk", "factor": 4}).rope_scaling == {"type": "ntk", "factor": 4}
    # transformers' dynamic NTK keeps its name (causal LMs); the per-length law's old spelling warns
    from modeling_longllada import parse_rope_scaling

    assert parse_rope_scaling("dynamic:2") == {"type": "dynamic", "factor": 2}
    with pytest.warns(FutureWarning, match="ntk_per_length"):
        assert LongLLaDAConfig(rope_scaling={"type": "dynamic"}).rope_scaling == {"type": "ntk_per_length"}


def test_per_length_scaling_equals_static_scaling_at_the_same_length():
    length = 256  # 4x the trained length of SMALL
    factor = ntk_scaling_factor(16, SMALL["rope_theta"], SMALL["max_sequence_length"], length)
    assert factor > 1
    dynamic = small_model(rope_scaling={"type": "ntk_per_length"})
    static = small_model(rope_scaling={"type": "ntk", "factor": factor})
    ids = torch.randint(2, 100, (1, length))
    torch.testing.assert_close(dynamic(ids).logits, static(ids).logits)
    short = torch.randint(2, 100, (1, 32))  # within the trained length: no scaling
    torch.testing.assert_close(dynamic(short).logits, small_model()(short).logits)


# -- attention_mask shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mask_shape, words",
    [((2, 9), r"\(2, 9\).*\(2, 10\)"), ((1, 10), r"\(1, 10\).*\(2, 10\)"), ((2, 1, 10, 10), r"\(2, 1, 10, 10\)")],
)
def test_attention_mask_of_the_wrong_shape_names_the_shapes(mask_shape, words):
    model = small_model()
    ids = torch.randint(2, 100, (2, 10))
    with pytest.raises(ValueError, match="attention_mask has shape " + words):
        model(ids, attention_mask=torch.ones(mask_shape, dtype=torch.long))


def test_attention_mask_with_a_cache_covers_cached_and_input_positions():
    model = small_model()
    ids = torch.randint(2, 100, (1, 10))
    with torch.no_grad():
        cache = model(ids[:, :6], use_cache=True).present_key_values
        model(
            ids[:, 6:], attention_mask=torch.ones(1, 10), position_ids=torch.arange(6, 10)[None], past_key_values=cache
        )
        with pytest.raises(ValueError, match=r"\(1, 4\).*\(1, 10\) for the 6 cached and 4 input positions"):
            model(ids[:, 6:], attention_mask=torch.ones(1, 4), position_ids=torch.arange(6, 10)[None],
                  past_key_values=cache)  # fmt: skip


# -- save_pretrained writes the remote code it points to ------------------------------------------------------------

LOAD_SAVED = """
import json, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained({folder!r}, trust_remote_code=True)
with torch.no_grad():
    logits = model(torch.tensor([[5, 6, 7, 8]])).logits
print("RESULT " + json.dumps({{"class": type(model).__name__, "module": type(model).__module__,
                               "sum": float(logits.double().abs().sum())}}))
"""


def test_save_pretrained_of_a_loaded_model_loads_where_the_project_is_not_importable(tiny_model_dir, tmp_path):
    """After ``import modeling_longllada``, from_pretrained(dir).save_pretrained(out) used to write an auto_map to
    code files it did not write; the folder then failed to load with trust_remote_code."""
    from conftest import run_isolated

    from modeling_longllada import REMOTE_CODE_FILES

    model = LongLLaDAModelLM.from_pretrained(tiny_model_dir)
    out = tmp_path / "resaved-llada"
    model.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    for entry in config["auto_map"].values():
        assert (out / (entry.split(".")[0] + ".py")).is_file(), entry
    assert {p.name for p in out.glob("*.py")} <= set(REMOTE_CODE_FILES)
    with torch.no_grad():
        expected = float(model(torch.tensor([[5, 6, 7, 8]])).logits.double().abs().sum())
    out_text = run_isolated(LOAD_SAVED.format(folder=str(out)))
    result = json.loads(next(line[7:] for line in out_text.splitlines()[::-1] if line.startswith("RESULT ")))
    assert result["class"] == "LongLLaDAModelLM" and result["module"].startswith("transformers_modules.")
    assert result["sum"] == pytest.approx(expected, rel=1e-6)


# -- flash attention: our calling code against a reference of the kernel's documented semantics ---------------------


def _check_flash_inputs(q, k, v, dropout_p, softmax_scale):
    # The kernel's documented requirements that a CPU run can check.
    assert q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1, "the last dimension must be contiguous"
    assert q.shape[-2] % k.shape[-2] == 0 and k.shape == v.shape, "heads must be a multiple of key/value heads"
    assert dropout_p == 0.0
    return softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5


def _reference_attention(q, k, v, scale, causal):
    """One sequence: q [Lq, H, D], k/v [Lk, Hk, D] -> [Lq, H, D]. Causal masks are aligned bottom-right."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.double(), k.double()) * scale
    if causal:
        lq, lk = q.shape[0], k.shape[0]
        allowed = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v.double()).to(q.dtype)


def reference_flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **kwargs):
    """flash_attn_func as documented: q [B, Lq, H, D], k/v [B, Lk, Hk, D] -> [B, Lq, H, D]."""
    scale = _check_flash_inputs(q, k, v, dropout_p, softmax_scale)
    return torch.stack([_reference_attention(q[b], k[b], v[b], scale, causal) for b in range(q.shape[0])])


def reference_flash_attn_varlen_func(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0, softmax_scale=None,
    causal=False, **kwargs,
):  # fmt: skip
    """flash_attn_varlen_func as documented: sequences packed along the first dimension (q [total_q, H, D],
    k/v [total_k, Hk, D]), sequence i spanning cu_seqlens[i]:cu_seqlens[i+1] (int32, starting at 0)."""
    scale = _check_flash_inputs(q, k, v, dropout_p, softmax_scale)
    for cu, total, longest in ((cu_seqlens_q, q.shape[0], max_seqlen_q), (cu_seqlens_k, k.shape[0], max_seqlen_k)):
        assert cu.dtype == torch.int32 and cu.dim() == 1 and int(cu[0]) == 0 and int(cu[-1]) == total
        lengths = cu[1:] - cu[:-1]
        assert bool((lengths >= 0).all()) and int(lengths.max()) <= longest
    assert len(cu_seqlens_q) == len(cu_seqlens_k)
    out = torch.empty_like(q)
    for i in range(len(cu_seqlens_q) - 1):
        qs, qe, ks, ke = (int(t) for t in (cu_seqlens_q[i], cu_seqlens_q[i + 1], cu_seqlens_k[i], cu_seqlens_k[i + 1]))
        out[qs:qe] = _reference_attention(q[qs:qe], k[ks:ke], v[ks:ke], scale, causal)
    return out


def _as_flash_attn_4(kernel):
    """flash-attn 4's convention: keyword-only varlen arguments after ``qv``, (output, log-sum-exp) returned."""

    def call(q, k, v, qv=None, **kwargs):
        assert qv is None
        return kernel(q, k, v, **kwargs), None

    return call


@pytest.fixture(params=["flash-attn-2", "flash-attn-4"])
def reference_flash(monkeypatch, request):
    import modeling_longllada.modeling_longllada as modeling

    wrap = _as_flash_attn_4 if request.param == "flash-attn-4" else (lambda kernel: kernel)
    monkeypatch.setattr(modeling, "flash_attn_func", wrap(reference_flash_attn_func))
    monkeypatch.setattr(modeling, "flash_attn_varlen_func", wrap(reference_flash_attn_varlen_func))


def test_reference_flash_kernel_agrees_with_plain_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 5, 4, 8), torch.randn(2, 7, 2, 8), torch.randn(2, 7, 2, 8)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.repeat_interleave(2, 2).transpose(1, 2), v.repeat_interleave(2, 2).transpose(1, 2)
    ).transpose(1, 2)
    torch.testing.assert_close(reference_flash_attn_func(q, k, v), expected, atol=1e-5, rtol=1e-5)
    cu_q, cu_k = torch.tensor([0, 5, 10], dtype=torch.int32), torch.tensor([0, 7, 14], dtype=torch.int32)
    packed = reference_flash_attn_varlen_func(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), cu_q, cu_k, 5, 7)
    torch.testing.assert_close(packed.view(2, 5, 4, 8), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_flash_attention_calling_code_matches_sdpa(reference_flash, family):
    """Unpadding of the keys, cu_seqlens, the softmax scale and non-causal attention, checked on the CPU."""
    if family == "llada":
        model = small_model(n_kv_heads=2)
    else:
        from modeling_longllada import DreamConfig, DreamModel

        torch.manual_seed(0)
        model = DreamModel(DreamConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                       mask_token_id=127, pad_token_id=1, eos_token_id=1)).eval()  # fmt: skip
    rows = [torch.randint(2, 100, (n,)) for n in (5, 12, 9)]
    ids = torch.full((3, 12), 1)
    mask = torch.zeros(3, 12, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, 12 - len(r) :], mask[i, 12 - len(r) :] = r, 1
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    real = mask.bool()
    results = {}
    for backend in ("sdpa", "flash_attention_2"):
        model.config._attn_implementation = backend
        with torch.no_grad():
            padded = model(ids, attention_mask=mask, position_ids=positions).logits
            full = model(ids).logits  # no padding: the kernel without varlen
            cache = model(ids[:, :8], attention_mask=mask[:, :8], position_ids=positions[:, :8], use_cache=True)
            step = model(ids[:, 8:], attention_mask=mask, position_ids=positions[:, 8:],
                         past_key_values=cache.present_key_values).logits  # fmt: skip
        results[backend] = (padded[real], full, step)
    model.config._attn_implementation = "sdpa"
    for ours, expected in zip(results["flash_attention_2"], results["sdpa"]):
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


# -- FlashAttention-3: our calling code against a stand-in of the kernel's documented contract ------------------------
# fa3-fwd's fa3_fwd_interface (FlashAttention-3's hopper/flash_attn_interface.py renamed): flash_attn_func returns the
# output alone (early releases: (output, log-sum-exp)); flash_attn_varlen_func reads row b's keys from
# cu_seqlens_k[b], seqused_k[b] of them when given (else up to cu_seqlens_k[b + 1]), likewise for queries;
# num_splits=1 one split, 0 the split-KV heuristic, n > 1 that many; grouped-query heads as they are.


def _check_fa3_call(q, k, v, softmax_scale, causal, num_splits, kwargs):
    assert q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1, "the last dimension must be contiguous"
    assert q.shape[-2] % k.shape[-2] == 0 and k.shape == v.shape, "heads must be a multiple of key/value heads"
    assert q.dtype == k.dtype == v.dtype and q.shape[-1] in range(8, 257, 8)
    assert isinstance(num_splits, int) and num_splits >= 0 and causal is False
    assert not {"dropout_p", "alibi_slopes"} & set(kwargs), "not FlashAttention-3 arguments"
    return softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5


def reference_fa3_func(q, k, v, softmax_scale=None, causal=False, qv=None, num_splits=1, **kwargs):
    """flash_attn_func of fa3-fwd: q [B, Lq, H, D], k/v [B, Lk, Hk, D] -> [B, Lq, H, D]."""
    scale = _check_fa3_call(q, k, v, softmax_scale, causal, num_splits, kwargs)
    assert qv is None and q.dim() == 4
    return torch.stack([_reference_attention(q[b], k[b], v[b], scale, False) for b in range(q.shape[0])])


def reference_fa3_varlen_func(
    q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_q=None, seqused_k=None,
    softmax_scale=None, causal=False, qv=None, num_splits=1, **kwargs,
):  # fmt: skip
    """flash_attn_varlen_func of fa3-fwd: q [total_q, H, D], k/v [total_k, Hk, D]; rows by offsets and counts."""
    scale = _check_fa3_call(q, k, v, softmax_scale, causal, num_splits, kwargs)
    rows = len(cu_seqlens_q) - 1
    spans = []
    for cu, used, total, longest in ((cu_seqlens_q, seqused_q, q.shape[0], max_seqlen_q),
                                     (cu_seqlens_k, seqused_k, k.shape[0], max_seqlen_k)):  # fmt: skip
        assert cu.dtype == torch.int32 and cu.shape == (rows + 1,) and cu.device == q.device
        if used is None:
            assert int(cu[0]) == 0 and int(cu[-1]) == total and bool((cu[1:] >= cu[:-1]).all())
            counts = cu[1:] - cu[:-1]
        else:
            assert used.dtype == torch.int32 and used.shape == (rows,)
            counts = used
        starts = cu[:-1]
        assert bool((starts >= 0).all()) and bool((starts + counts <= total).all()) and int(counts.max()) <= longest
        spans.append(list(zip(starts.tolist(), counts.tolist())))
    out = torch.zeros_like(q)  # a query row with no key: zeros, as documented
    for (qs, qn), (ks, kn) in zip(*spans):
        if qn and kn:
            out[qs : qs + qn] = _reference_attention(q[qs : qs + qn], k[ks : ks + kn], v[ks : ks + kn], scale, False)
    return out


def _as_early_fa3(kernel):
    """FlashAttention-3's early releases: (output, log-sum-exp) returned."""
    return lambda *args, **kwargs: (kernel(*args, **kwargs), None)


@pytest.fixture(params=["fa3-fwd", "fa3-early"])
def reference_fa3(monkeypatch, request):
    """The stand-in kernels in place of the installed ones, taking CPU float32 (the real ones: CUDA, bf16)."""
    import modeling_longllada.modeling_longllada as modeling

    wrap = _as_early_fa3 if request.param == "fa3-early" else (lambda kernel: kernel)
    calls = []

    def counted(kernel):
        def call(*args, **kwargs):
            calls.append(kwargs.get("num_splits", 1))
            return kernel(*args, **kwargs)

        return call

    monkeypatch.setattr(modeling, "fa3_func", counted(wrap(reference_fa3_func)))
    monkeypatch.setattr(modeling, "fa3_varlen_func", counted(wrap(reference_fa3_varlen_func)))
    monkeypatch.setattr(modeling, "_FA3_TAKES_SPLITS", True)
    monkeypatch.setattr(modeling, "FA3_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    monkeypatch.setattr(modeling, "FA3_DTYPES", (torch.bfloat16, torch.float32))
    return calls


def test_reference_fa3_kernel_agrees_with_plain_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 5, 4, 8), torch.randn(2, 7, 2, 8), torch.randn(2, 7, 2, 8)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.repeat_interleave(2, 2).transpose(1, 2), v.repeat_interleave(2, 2).transpose(1, 2)
    ).transpose(1, 2)
    torch.testing.assert_close(reference_fa3_func(q, k, v), expected, atol=1e-5, rtol=1e-5)
    cu_q = torch.tensor([0, 5, 10], dtype=torch.int32)
    # Row 1's keys given by an offset and a count (seqused_k), the padded layout left as it is.
    cu_k, used = torch.tensor([0, 7, 14], dtype=torch.int32), torch.tensor([7, 4], dtype=torch.int32)
    cu_k_offsets = torch.tensor([0, 10, 14], dtype=torch.int32)
    packed = reference_fa3_varlen_func(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), cu_q, cu_k_offsets, 5, 7,
                                       seqused_k=used)  # fmt: skip
    torch.testing.assert_close(packed.view(2, 5, 4, 8)[0], expected[0], atol=1e-5, rtol=1e-5)
    row1 = reference_fa3_func(q[1:], k[1:, 3:], v[1:, 3:])
    torch.testing.assert_close(packed.view(2, 5, 4, 8)[1:], row1, atol=1e-5, rtol=1e-5)
    whole = reference_fa3_varlen_func(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), cu_q, cu_k, 5, 7)
    torch.testing.assert_close(whole.view(2, 5, 4, 8), expected, atol=1e-5, rtol=1e-5)


def _left_padded_batch():
    rows = [torch.randint(2, 100, (n,), generator=torch.Generator().manual_seed(n)) for n in (5, 12, 9)]
    ids = torch.full((3, 12), 1)
    mask = torch.zeros(3, 12, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, 12 - len(r) :], mask[i, 12 - len(r) :] = r, 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp_min(0)


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_flash_attention_3_calling_code_matches_sdpa(reference_fa3, family):
    """Key offsets (no copy) for left padding, real keys gathered where a row has holes, grouped-query heads as they
    are, the softmax scale, split-KV for few queries, through the model's full passes and cached steps."""
    model = small_model(n_kv_heads=2) if family == "llada" else _dream_model()
    ids, mask, positions = _left_padded_batch()
    holes = mask.clone()
    holes[1, 6] = 0  # not one run of real keys: the gathering path
    results = {}
    for backend in ("sdpa", "flash_attention_3"):
        model.config._attn_implementation = backend
        with torch.no_grad():
            padded = model(ids, attention_mask=mask, position_ids=positions).logits
            holed = model(ids, attention_mask=holes, position_ids=positions).logits
            full = model(ids, position_ids=positions, use_cache=True)
            buffers = [(k.clone(), v.clone()) for k, v in full.present_key_values]
            step = model(ids[:, 8:12], attention_mask=mask, position_ids=positions[:, 8:12], past_key_values=buffers,
                         cache_slot=slice(8, 12)).logits  # fmt: skip
        results[backend] = (padded[mask.bool()], holed[holes.bool()], full.logits, step)
    model.config._attn_implementation = "sdpa"
    for ours, expected in zip(results["flash_attention_3"], results["sdpa"]):
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert set(reference_fa3) == {0}  # 12 queries or fewer: split-KV every time


def test_flash_attention_3_refuses_what_its_kernels_cannot_run(reference_fa3, monkeypatch):
    import modeling_longllada.modeling_longllada as modeling

    model = small_model()
    model.config._attn_implementation = "flash_attention_3"
    ids = torch.randint(2, 100, (1, 6))
    monkeypatch.setattr(modeling, "FA3_DTYPES", (torch.bfloat16,))
    with torch.no_grad(), pytest.raises(ValueError, match="got float32 inputs.*bfloat16 kernels only.*torch_dtype"):
        model(ids)
    monkeypatch.setattr(modeling, "FA3_DTYPES", (torch.float32,))
    monkeypatch.setattr(modeling, "FA3_FORWARD_ONLY", True)
    with pytest.raises(ValueError, match="no backward pass.*torch.no_grad"):
        model(ids)  # autograd on
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()
    monkeypatch.setattr(modeling, "FA3_DEVICE_TYPES", frozenset({"cuda"}))
    with torch.no_grad(), pytest.raises(ValueError, match="tensors on cpu; allowed: a CUDA device"):
        model(ids)
    monkeypatch.setattr(modeling, "fa3_func", None)
    with torch.no_grad(), pytest.raises(ValueError, match=r"pip install 'longllada\[fa3\]'"):
        model(ids)


def test_flash_attention_3_by_name_in_from_pretrained(tmp_path, monkeypatch, reference_fa3):
    """transformers' own checks do not know fa3-fwd: the model's classes answer for flash_attention_3 (4.x and 5.x)."""
    from transformers import AutoModelForCausalLM

    import modeling_longllada.modeling_longllada as modeling

    small_model().save_pretrained(tmp_path / "small")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "small", attn_implementation="flash_attention_3")
    assert model.config._attn_implementation == "flash_attention_3"
    with torch.no_grad():
        model(torch.randint(2, 100, (1, 6)))
    assert reference_fa3  # the stand-in ran
    if hasattr(model, "set_attn_implementation"):  # transformers 5: the switch set on a loaded model
        model.set_attn_implementation("sdpa")
        assert model.config._attn_implementation == "sdpa"
        model.set_attn_implementation("flash_attention_3")
        assert model.config._attn_implementation == "flash_attention_3"
    monkeypatch.setattr(modeling, "fa3_func", None)
    with pytest.raises(ImportError, match=r"flash_attention_3' needs FlashAttention-3.*longllada\[fa3\]"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "small", attn_implementation="flash_attention_3")


# -- the fast path: the plain path's values, bit for bit on the CPU --------------------------------------------------


def test_fast_pieces_equal_the_plain_pieces_bit_for_bit():
    from modeling_longllada import fast_longllada as fast

    torch.manual_seed(0)
    x = torch.randn(2, 4, 2048, 64).to(torch.bfloat16)  # 1M elements: the half-by-half RoPE
    assert x.numel() >= fast.ROTARY_HALVES_MIN_NUMEL
    cos, sin = rotary_cos_sin(torch.arange(2048)[None], 64, 10000.0, x.device)
    assert torch.equal(fast.rotary(x, cos, sin), apply_rotary(x, cos, sin))
    norm = LongLLaDARMSNorm(64, 1e-5).to(torch.bfloat16)
    norm.weight.data = torch.linspace(0.5, 2, 64).to(torch.bfloat16)
    assert torch.equal(fast.rms_norm(norm, x), norm(x))


def test_left_padded_attention_row_by_row_equals_the_masked_call():
    """A padded batch's full pass on a GPU runs one unmasked attention call per row over its real keys (sdpa's
    fastest kernels take no mask): the masked call's values, pad queries included."""
    from modeling_longllada import fast_longllada as fast
    from modeling_longllada.modeling_longllada import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 40, 16) for _ in range(3))
    real = torch.tensor([40, 33, 1])
    mask = torch.arange(40)[None] >= (40 - real)[:, None]
    starts = fast.left_padding_starts(mask)
    assert starts == [0, 7, 39]
    by_row = fast.attention_by_row(q, k, v, starts, "sdpa")
    torch.testing.assert_close(by_row, attention(q, k, v, mask, "sdpa"), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_row[1:2], attention(q[1:2], k[1:2, :, 7:], v[1:2, :, 7:], None, "sdpa"))
    holes = mask.clone()
    holes[0, 5] = False  # not left padding: the masked call stays
    assert fast.left_padding_starts(holes) is None


def _dream_model(**overrides):
    from modeling_longllada import DreamConfig, DreamModel

    torch.manual_seed(0)
    sizes = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=128, mask_token_id=127, pad_token_id=1, eos_token_id=1)  # fmt: skip
    return DreamModel(DreamConfig(**{**sizes, **overrides})).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", ["llada", "dream"])
def test_fast_path_gives_the_plain_paths_values(monkeypatch, family, dtype):
    from modeling_longllada.fast_longllada import FastOps
    from modeling_longllada.modeling_longllada import PlainOps

    monkeypatch.setattr("modeling_longllada.fast_longllada.ROTARY_HALVES_MIN_NUMEL", 0)  # half-by-half RoPE too
    model = (small_model(n_kv_heads=2) if family == "llada" else _dream_model()).to(dtype)
    ids = torch.randint(2, 100, (2, 16))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    results = {}
    for enabled in (False, True):
        model.set_fast_path(enabled)
        with torch.no_grad():
            assert model.block_ops(ids) is (FastOps if enabled else PlainOps)
            padded = model(ids, attention_mask=mask, position_ids=positions).logits
            full = model(ids, position_ids=positions, use_cache=True)
            buffers = [(k.clone(), v.clone()) for k, v in full.present_key_values]
            step = model(ids[:, 8:12], attention_mask=mask, position_ids=positions[:, 8:12], past_key_values=buffers,
                         cache_slot=slice(8, 12), logits_to_keep=slice(1, 3)).logits  # fmt: skip
            kept = model(ids, logits_to_keep=3).logits
        results[enabled] = [padded, full.logits, *[t for kv in full.present_key_values for t in kv], step, kept]
    for plain, fast in zip(results[False], results[True]):
        assert plain.dtype == dtype and torch.equal(plain, fast)


def test_fast_path_packs_projections_as_views_of_one_tensor(tmp_path, monkeypatch):
    """Few-row passes on a GPU compute q/k/v and gate/up with one product each: the weights packed once into one
    tensor whose row blocks the parameters become (no copy kept, the checkpoint's keys and values unchanged, saved as
    before), packed again after .to(); long passes keep the separate products. (On the CPU here, switched on.)"""
    from modeling_longllada import fast_longllada as fast

    monkeypatch.setattr(fast, "FUSED_PROJECTIONS_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    model = small_model(n_kv_heads=2)
    block = model.model.transformer.blocks[0]
    before = {name: t.clone() for name, t in model.state_dict().items()}
    linears = (block.q_proj, block.k_proj, block.v_proj)
    assert fast._rows_of_one_tensor([m.weight for m in linears]) is None
    weight, bias = fast.packed_weights(linears)
    assert bias is None and weight.shape == (64 + 32 + 32, 64)
    storage = weight.untyped_storage().data_ptr()
    assert all(m.weight.untyped_storage().data_ptr() == storage for m in linears)  # views of it: no second copy
    assert torch.equal(weight, torch.cat([before[f"model.transformer.blocks.0.{n}.weight"] for n in
                                          ("q_proj", "k_proj", "v_proj")]))  # fmt: skip
    again, _ = fast.packed_weights(linears)  # found laid out: a view, no new copy
    assert again.data_ptr() == weight.data_ptr()
    x = torch.randn(2, 5, 64)
    fused = fast.FastOps.linears(linears, x)
    for out, module in zip(fused, linears):
        torch.testing.assert_close(out, module(x), atol=1e-6, rtol=1e-6)  # (the BLAS may round otherwise)
    ids = torch.randint(2, 100, (1, 8))
    with torch.no_grad():
        plain = model(ids).logits
        model.set_fast_path(True)
        torch.testing.assert_close(model(ids).logits, plain, atol=1e-5, rtol=1e-5)  # every layer's products packed
    assert all(torch.equal(t, before[name]) for name, t in model.state_dict().items())
    up = (block.ff_proj, block.up_proj)
    assert fast._rows_of_one_tensor([m.weight for m in up]) is not None
    model.save_pretrained(tmp_path / "saved")
    saved = LongLLaDAModelLM.from_pretrained(tmp_path / "saved").state_dict()
    assert all(torch.equal(saved[name], t) for name, t in before.items())
    model.to(torch.float64)  # new storage for every parameter: packed again at the next use
    assert fast._rows_of_one_tensor([m.weight for m in linears]) is None
    assert fast.packed_weights(linears)[0].dtype == torch.float64
    long_rows = torch.randn(1, fast.FUSED_PROJECTIONS_MAX_ROWS + 1, 64, dtype=torch.float64)
    calls = []
    block.q_proj.register_forward_hook(lambda *args: calls.append(1))
    fast.FastOps.linears(linears, long_rows)
    assert calls == [1]  # the separate product
    model.to(torch.float32)
    assert fast.packed_weights((block.q_proj, nn_linear_with_bias())) is None  # biases on some only


def nn_linear_with_bias():
    return torch.nn.Linear(64, 8, bias=True)


def test_fast_path_picks_flash_attention_3_by_shape(reference_fa3, monkeypatch):
    """attn_implementation='sdpa' on the fast path: FA3 for many queries over many keys, not for few queries
    (cached steps) unless FA3_FEW_QUERIES_MIN_KEYS says so, then split-KV; the values of sdpa."""
    import modeling_longllada.modeling_longllada as modeling
    from modeling_longllada import fast_longllada as fast

    monkeypatch.setattr(fast, "FEW_QUERIES", 4)
    monkeypatch.setattr(modeling, "FA3_SPLIT_KV_MAX_QUERIES", 4)
    monkeypatch.setattr(fast, "FA3_MIN_KEYS", 12)
    model = small_model(n_kv_heads=2)
    ids, mask, positions = _left_padded_batch()
    short = ids[:, :10]
    results = {}
    for enabled in (False, True):
        model.set_fast_path(enabled)
        reference_fa3.clear()
        with torch.no_grad():
            padded = model(ids, attention_mask=mask, position_ids=positions).logits
            assert reference_fa3 == ([1, 1] if enabled else [])  # 12 queries over 12 keys, both layers
            below = model(short, position_ids=positions[:, :10]).logits  # 10 keys: under FA3_MIN_KEYS
            full = model(ids, position_ids=positions, use_cache=True)
            buffers = [(k.clone(), v.clone()) for k, v in full.present_key_values]
            reference_fa3.clear()
            step = model(ids[:, 8:12], attention_mask=mask, position_ids=positions[:, 8:12],
                         past_key_values=buffers, cache_slot=slice(8, 12)).logits  # fmt: skip
            assert reference_fa3 == []  # 4 queries: sdpa while FA3_FEW_QUERIES_MIN_KEYS is None
            monkeypatch.setattr(fast, "FA3_FEW_QUERIES_MIN_KEYS", 12)
            split = model(ids[:, 8:12], attention_mask=mask, position_ids=positions[:, 8:12],
                          past_key_values=buffers, cache_slot=slice(8, 12)).logits  # fmt: skip
            assert reference_fa3 == ([0, 0] if enabled else [])  # split-KV
            monkeypatch.setattr(fast, "FA3_FEW_QUERIES_MIN_KEYS", None)
        results[enabled] = (padded[mask.bool()], below, full.logits, step, split)
    for plain, chosen in zip(results[False], results[True]):
        torch.testing.assert_close(chosen, plain, atol=1e-5, rtol=1e-5)


def test_rope_tables_from_the_caller_and_once_per_block_in_the_sampler():
    model = small_model()
    ids = torch.randint(2, 100, (1, 12))
    positions = torch.arange(12)[None]
    with torch.no_grad():
        full = model(ids, use_cache=True)
        step = dict(position_ids=positions[:, 8:12], cache_slot=slice(8, 12), rope_seq_len=12)
        buffers = [(k.clone(), v.clone()) for k, v in full.present_key_values]
        own = model(ids[:, 8:12], past_key_values=buffers, **step).logits
        tables = model.rotary_emb(positions[:, 8:12], 12)
        given = model(ids[:, 8:12], past_key_values=buffers, position_embeddings=tables, **step).logits
        with pytest.raises(ValueError, match="position_embeddings must be the \\(cos, sin\\) tables of the 4 input"):
            model(ids[:, 8:12], past_key_values=buffers, position_embeddings=tables[:1], **step)
    assert torch.equal(own, given)
    made = []
    model.rotary_emb.register_forward_hook(lambda *args: made.append(1))
    model.generate(ids[:, :6], max_new_tokens=8, block_length=4, steps=8, cache="prefix")
    assert len(made) == 2 + 2  # per block: its full pass, then one table for its three cached steps


def test_fast_path_switch():
    from modeling_longllada.modeling_longllada import PlainOps

    model = small_model()
    x = torch.zeros(1, 4)
    with torch.no_grad():
        assert model.block_ops(x) is PlainOps  # default: on for CUDA inputs only
    model.set_fast_path(True)
    assert torch.is_grad_enabled() and model.block_ops(x) is PlainOps  # never with autograd on
    logits = model(torch.randint(2, 100, (1, 6))).logits
    logits.sum().backward()  # the plain path trains
    assert model.model.transformer.blocks[0].q_proj.weight.grad is not None
    with pytest.raises(ValueError, match="set_fast_path.*allowed: True, False or None"):
        model.set_fast_path("yes")


# -- numeric arguments: type, range, finiteness ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda m: m.log_likelihood([3, 4], [5], mc_num=0), "mc_num=0"),
        (lambda m: m.log_likelihood([3, 4], [5], mc_num=2.5), "mc_num=2.5"),
        (lambda m: m.log_likelihood([3, 4], [5], mc_num=True), "mc_num=True"),
        (lambda m: m.log_likelihood([3, 4], [5], batch_size=0), "batch_size=0"),
        (lambda m: m.log_likelihood([3, 4], [5], cfg_scale=float("nan")), "cfg_scale=nan"),
        (lambda m: m.log_likelihood([3, 4], [5], cfg_scale=-1.0), "cfg_scale=-1.0"),
        (lambda m: m.chunk_perplexity([3, 4], [5], mc_num=-1), "mc_num=-1"),
        (lambda m: m(torch.tensor([[3, 4, 5]]), logits_to_keep=-1), "logits_to_keep=-1"),
        (lambda m: m(torch.tensor([[3, 4, 5]]), logits_to_keep=2.0), "logits_to_keep=2.0"),
        (lambda m: m(torch.tensor([[3, 4, 5]]), logits_to_keep=True), "logits_to_keep=True"),
        (lambda m: m(torch.tensor([[3, 4, 5]]), rope_seq_len=0), "rope_seq_len=0"),
    ],
)
def test_bad_numbers_are_refused_with_the_field_and_what_is_allowed(call, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.") + ".*allowed"):
        call(small_model())


# -- masks beyond padding: block-causal and any boolean 4D pattern -----------------------------------------------------


def _block_causal_reference(length: int, block: int) -> torch.Tensor:
    """[1, 1, L, L] bool: position i sees j when j's block is not after i's (block diffusion)."""
    blocks = torch.arange(length) // block
    return (blocks[None, :] <= blocks[:, None])[None, None]


@pytest.mark.parametrize("backend", ["sdpa", "eager", "flash_attention_2"])
def test_block_causal_attention_is_exact_in_every_backend(reference_flash, backend):
    """block_causal=b equals the dense boolean pattern run by eager, with and without left padding; a position sees
    its own block and every earlier one (a change in a later block moves nothing before it)."""
    _check_block_causal(backend)


def test_block_causal_attention_is_exact_in_flash_attention_3(reference_fa3):
    _check_block_causal("flash_attention_3")


@pytest.mark.parametrize("elements", [1, 64])  # one block a run; runs of two blocks (8 queries x 8 keys) and one
@pytest.mark.parametrize("fast", [False, True])
def test_block_causal_attention_is_exact_in_runs_of_blocks(monkeypatch, elements, fast):
    """sdpa runs the block-causal queries a few blocks a call (the pattern within each run as a boolean mask, the
    grouped keys/values repeated once): exact whatever the runs, on the plain path and on the fast path's (which
    gives each run its own kernel preference)."""
    monkeypatch.setattr(modeling_longllada, "BLOCK_CAUSAL_PATTERN_ELEMENTS", elements)
    monkeypatch.setattr(modeling_longllada, "BLOCK_CAUSAL_RUN_SHARE", 1.0)  # runs as long as the elements allow
    _check_block_causal("sdpa", fast=fast)


def test_block_causal_runs_of_queries():
    """The runs of query blocks a pass is cut into: together every query once, in order; each run's keys end with
    its latest block; the fast path's (no share limit) one run at 4k, the plain path's a few (log L)."""
    mask = modeling_longllada.AttentionMask(block_length=32, query_index=range(0, 4128))
    for share, most in ((None, 1), (modeling_longllada.BLOCK_CAUSAL_RUN_SHARE, 20)):
        spans = mask.query_spans(4128, modeling_longllada.BLOCK_CAUSAL_PATTERN_ELEMENTS, share)
        assert 1 <= len(spans) <= most
        assert [s[0] for s in spans] == [0] + [s[1] for s in spans[:-1]] and spans[-1][1] == 4128
        assert all(end == -(-stop // 32) * 32 for _, stop, end in spans)
        if share is not None:
            assert all(stop - start <= share * end or stop - start == 32 for start, stop, end in spans)
    assert len(mask.query_spans(4128, None)) == 129  # one block a run (flash kernels)
    tail = modeling_longllada.AttentionMask(block_length=32, query_index=range(4100, 4128))  # a block's tail
    assert tail.query_spans(8192, None) == [(0, 28, 4128)]


def test_block_causal_attention_of_kept_queries_that_are_not_a_run():
    model = small_model(n_kv_heads=2)
    ids = torch.randint(2, 100, (1, 13))
    keep = torch.tensor([11, 2, 3, 7])
    with torch.no_grad():
        full = model(ids, block_causal=4).logits
        kept = model(ids, block_causal=4, logits_to_keep=keep).logits
    torch.testing.assert_close(kept, full[:, keep], atol=1e-5, rtol=1e-5)


def _check_block_causal(backend: str, fast: bool = False) -> None:
    model = small_model(n_kv_heads=2)
    model.set_fast_path(fast)
    ids = torch.randint(2, 100, (2, 13))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    dense = _block_causal_reference(13, 4).expand(2, 1, 13, 13) & mask.bool()[:, None, None, :]
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        expected = model(ids, attention_mask=dense, position_ids=torch.arange(13).expand(2, 13)).logits
        model.config._attn_implementation = backend
        ours = model(ids, attention_mask=mask, position_ids=torch.arange(13).expand(2, 13), block_causal=4).logits
        changed = ids.clone()
        changed[:, 9] = (ids[:, 9] + 1) % 100 + 2  # block 2 (positions 8..11)
        moved = model(changed, attention_mask=mask, position_ids=torch.arange(13).expand(2, 13), block_causal=4).logits
    model.config._attn_implementation = "sdpa"
    real = mask.bool()
    torch.testing.assert_close(ours[real], expected[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(moved[:, :8], ours[:, :8], atol=1e-6, rtol=0)
    assert (moved[:, 8:] - ours[:, 8:]).abs().max() > 1e-4


def test_block_causal_with_cache_buffers_equals_the_full_pass():
    model = small_model()
    ids = torch.randint(2, 100, (1, 16))
    positions = torch.arange(16)[None]
    with torch.no_grad():
        full = model(ids, use_cache=True, block_causal=4)
        buffers = [(k.clone(), v.clone()) for k, v in full.present_key_values]
        step = model(ids[:, 8:12], position_ids=positions[:, 8:12], past_key_values=buffers, cache_slot=slice(8, 12),
                     block_causal=4).logits  # fmt: skip
        kept = model(ids, block_causal=4, logits_to_keep=slice(4, 9)).logits
        with pytest.raises(ValueError, match="block_causal needs the keys in sequence order"):
            model(ids[:, 8:], position_ids=positions[:, 8:], past_key_values=[(k[:, :, :8], v[:, :, :8])
                  for k, v in full.present_key_values], block_causal=4)  # fmt: skip
    torch.testing.assert_close(step, full.logits[:, 8:12], atol=1e-5, rtol=0)
    torch.testing.assert_close(kept, full.logits[:, 4:9], atol=1e-5, rtol=0)


def test_boolean_4d_masks_in_sdpa_and_eager_and_refused_by_flash(reference_flash, reference_fa3):
    model = small_model(n_kv_heads=2)
    ids = torch.randint(2, 100, (2, 9))
    allowed = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0)) > 0.4
    allowed[:, :, torch.arange(9), torch.arange(9)] = True  # every position sees itself
    results = {}
    for backend in ("sdpa", "eager"):
        model.config._attn_implementation = backend
        with torch.no_grad():
            results[backend] = model(ids, attention_mask=allowed).logits
    torch.testing.assert_close(results["sdpa"], results["eager"], atol=1e-5, rtol=1e-5)
    for backend in ("flash_attention_2", "flash_attention_3"):
        model.config._attn_implementation = backend
        with pytest.raises(ValueError, match=f"{backend}' takes a padding mask and the block-causal mask"):
            model(ids, attention_mask=allowed)
    model.config._attn_implementation = "sdpa"
    with pytest.raises(ValueError, match="a 4D mask must be boolean"):
        model(ids, attention_mask=allowed.long())
    with pytest.raises(ValueError, match="block_causal=0"):
        model(ids, block_causal=0)


def test_a_query_with_no_allowed_key_stays_finite():
    """A pattern that leaves a padding row no key must not put NaN into the real rows (sdpa would return NaN for
    that row, and its keys would carry it onward)."""
    model = small_model()
    ids = torch.randint(2, 100, (1, 8))
    allowed = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    allowed[..., 0, :] = False
    with torch.no_grad():
        logits = model(ids, attention_mask=allowed).logits
    assert torch.isfinite(logits).all()


# -- the attention module: fused or separate projections, q/k norms, partial rotary ----------------------------------


def test_fused_qkv_equals_separate_projections_with_the_same_weights():
    from modeling_longllada.modeling_longllada import AttentionMask, SelfAttention

    torch.manual_seed(0)
    separate = SelfAttention(32, 4, 2, 8, qkv_bias=True, qk_norm_eps=1e-6)
    fused = SelfAttention(32, 4, 2, 8, qkv_bias=True, qk_norm_eps=1e-6, fused_qkv=True)
    with torch.no_grad():
        fused.query_key_value.weight.copy_(torch.cat([separate.q_proj.weight, separate.k_proj.weight,
                                                      separate.v_proj.weight]))  # fmt: skip
        fused.query_key_value.bias.copy_(torch.cat([separate.q_proj.bias, separate.k_proj.bias, separate.v_proj.bias]))
        fused.o_proj.load_state_dict(separate.o_proj.state_dict())
        for norm in ("q_norm", "k_norm"):
            getattr(separate, norm).weight.normal_()
            getattr(fused, norm).weight.copy_(getattr(separate, norm).weight)
    x = torch.randn(2, 6, 32)
    cos, sin = rotary_cos_sin(torch.arange(6)[None], 4, 10000.0, "cpu")  # rotary over 4 of 8 dimensions
    with torch.no_grad():
        a, kv_a = separate(x, cos, sin, AttentionMask(), None, "sdpa", query_keep=slice(1, 4))
        b, kv_b = fused(x, cos, sin, AttentionMask(), None, "sdpa", query_keep=slice(1, 4))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(kv_a[0], kv_b[0])
    assert a.shape == (2, 3, 32) and kv_a[0].shape == (2, 2, 6, 8)


def test_partial_rotary_rotates_the_first_dimensions_only():
    from modeling_longllada import fast_longllada as fast

    x = torch.randn(1, 2, 5, 8)
    cos, sin = rotary_cos_sin(torch.arange(5)[None], 4, 100.0, "cpu")
    out = apply_rotary(x, cos, sin)
    assert torch.equal(out[..., 4:], x[..., 4:])
    torch.testing.assert_close(out[..., :4], apply_rotary(x[..., :4], cos, sin))
    assert not torch.allclose(out[..., :4], x[..., :4])
    wide = torch.randn(2, 4, 300, 64).to(torch.bfloat16)
    cos, sin = rotary_cos_sin(torch.arange(300)[None], 32, 10000.0, "cpu")
    assert torch.equal(fast.rotary(wide, cos, sin), apply_rotary(wide, cos, sin))


def test_the_scaling_law_reads_the_rotary_dimension():
    """λ comes from the rotated dimensions: a config rotating half of each 64-dim head scales as a 32-dim one."""

    class HalfRotary(LongLLaDAConfig):
        def __init__(self, **kwargs):  # explicit: transformers 5 would generate one that skips ours
            super().__init__(**kwargs)

        @property
        def rotary_dim(self) -> int:
            return self.head_dim // 2

    sizes = dict(d_model=1024, n_heads=16, rope_theta=10000.0, rope_scaling={"type": "ntk", "target_length": 32768})
    full, half = LongLLaDAConfig(**sizes), HalfRotary(**sizes)
    assert (full.rotary_dim, half.rotary_dim) == (64, 32)
    assert full.rope_scaling_factor == ntk_scaling_factor(64, 10000.0, 4096, 32768)
    assert half.rope_scaling_factor == ntk_scaling_factor(32, 10000.0, 4096, 32768) != full.rope_scaling_factor
    assert half.rope_supported_length == 32768


def test_rotary_embedding_is_the_one_place_for_frequencies(monkeypatch):
    """A context-extension method plugs in as (inverse frequencies, attention factor) for its rope_scaling type."""
    import modeling_longllada.modeling_longllada as modeling

    model = small_model(rope_scaling={"type": "ntk", "factor": 4})
    ids = torch.randint(2, 100, (1, 10))
    with torch.no_grad():
        ntk = model(ids).logits

    def doubled_factor(config, seq_len, device):
        inv_freq, _ = modeling.spec_frequencies(config, seq_len, device)
        return inv_freq, 2.0

    monkeypatch.setitem(modeling.ROPE_FREQUENCY_FUNCTIONS, "ntk", doubled_factor)
    cos, sin = model.rotary_emb(torch.arange(10)[None], 10)
    reference = rotary_cos_sin(torch.arange(10)[None], 16, SMALL["rope_theta"] * 4, "cpu")
    torch.testing.assert_close(cos, 2 * reference[0])
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, ntk)
