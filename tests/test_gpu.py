"""On a CUDA GPU only (skipped elsewhere: CI has none; run on the GPU machine with ``pytest tests/test_gpu.py``): the
paths a CPU cannot take, for the block-diffusion family (LLaDA2): its block-causal passes through each attention
kernel the machine has, the fast path against the plain one, its cached steps replayed from a CUDA graph, and the
block cache against the official recompute, float32 where the kernel allows it."""

from __future__ import annotations

import pytest
import torch

from modeling_longllada import LLaDA2Config, LLaDA2ModelLM
from modeling_longllada import modeling_longllada as plain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BLOCK = 32
MASK_ID = 511


def tiny_llada2(dtype: torch.dtype, dense: bool = False) -> LLaDA2ModelLM:
    """Two layers (the first dense, one MoE; ``dense``: both dense), heads of 64, on the GPU."""
    sizes = dict(n_layers=2, d_model=256, n_heads=4, n_kv_heads=2, mlp_hidden_size=512, vocab_size=512,
                 trained_length=4096, rope_theta=10000.0)  # fmt: skip
    fields = LLaDA2Config.fields_from_sizes(**sizes) | ({"first_k_dense_replace": 2} if dense else {})
    config = LLaDA2Config(**fields, mask_token_id=MASK_ID, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    return LLaDA2ModelLM(config).to("cuda", dtype).eval()


def left_padded_batch(lengths: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, max] ids of ordinary tokens, each row left-padded to the longest, and the padding mask."""
    width = max(lengths)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 500, (len(lengths), width), generator=generator)
    mask = torch.arange(width)[None] >= torch.tensor([[width - n] for n in lengths])
    return ids.masked_fill(~mask, 1).cuda(), mask.long().cuda()


def logits(model: LLaDA2ModelLM, backend: str, fast: bool, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    model.config._attn_implementation = backend
    model.set_fast_path(fast)
    try:
        with torch.no_grad():
            return model(ids, attention_mask=mask, block_causal=BLOCK).logits.float()
    finally:
        model.config._attn_implementation = "sdpa"
        model.set_fast_path(None)


def test_block_causal_passes_agree_across_kernels_and_paths():
    """A left-padded batch over several blocks (the window's last block not full): sdpa on the plain and the fast
    path in float32, and, in bfloat16, FlashAttention-3 where it imports, against sdpa (dense layers: a bf16
    rounding would flip near-tied expert choices, and a flipped token's logits move by their whole scale)."""
    ids, mask = left_padded_batch((300, 237))
    model = tiny_llada2(torch.float32)
    reference = logits(model, "sdpa", False, ids, mask)
    real = mask.bool()
    torch.testing.assert_close(logits(model, "sdpa", True, ids, mask)[real], reference[real], atol=2e-4, rtol=0)
    torch.testing.assert_close(logits(model, "eager", False, ids, mask)[real], reference[real], atol=2e-4, rtol=0)
    if plain.fa3_func is None:
        pytest.skip("FlashAttention-3 (fa3-fwd) is not importable here: sdpa and eager checked")
    half = tiny_llada2(torch.bfloat16, dense=True)
    by_sdpa = logits(half, "sdpa", True, ids, mask)[real]
    by_fa3 = logits(half, "flash_attention_3", True, ids, mask)[real]
    assert (by_fa3 - by_sdpa).abs().max().item() < 0.05 * by_sdpa.abs().max().item()


def test_cached_steps_replayed_from_a_graph_give_the_recompute_s_answer():
    """float32: the block cache (its steps replayed from a CUDA graph) answers as the official recompute does,
    row by row in a left-padded batch."""
    model = tiny_llada2(torch.float32)
    ids, mask = left_padded_batch((200, 150))
    answers = {
        cache: model.generate(
            ids, attention_mask=mask, max_new_tokens=2 * BLOCK, block_length=BLOCK, steps=BLOCK, cache=cache
        )  # fmt: skip
        for cache in ("prefix", "none")
    }
    assert answers["prefix"].shape == answers["none"].shape == (2, ids.shape[1] + 2 * BLOCK)
    agreeing = (answers["prefix"] == answers["none"]).float().mean().item()
    assert agreeing >= 0.98, agreeing  # float32 on the GPU: the two paths' sums in another order
