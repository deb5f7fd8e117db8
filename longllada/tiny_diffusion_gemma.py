"""A tiny random DiffusionGemma folder, loadable with transformers' own classes (no remote code).

The folder holds what the released ``google/diffusiongemma-26B-A4B-it`` holds, scaled down: ``config.json``
(model type ``diffusion_gemma``: its text config with sliding- and full-attention layers, p-RoPE on the full ones,
a MoE in every layer, and a small Gemma 4 vision tower), ``model.safetensors`` written by transformers' own
``DiffusionGemmaForBlockDiffusion`` (so the official key names and ties), ``generation_config.json`` with the
checkpoint's sampler settings, and a byte-level BPE tokenizer with Gemma 4's special tokens and turn format
(:mod:`longllada.tokenizer`, from the family entry ``diffusion_gemma``). ``AutoModelForImageTextToText.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load it; ``generate`` runs on it.

``longllada tiny-model --arch diffusion_gemma`` builds it through the family entry (``tiny_builder``), its generic
sizes mapped by :func:`builder_sizes`.

As for the other families' tiny models, a folder is only ever written by this builder or ``tiny-model``: anything
else already there is refused (the marker file ``.longllada_tiny_model.json`` lists the files written).

Needs a transformers with DiffusionGemma (:func:`modeling_longllada.diffusion_gemma.require_diffusion_gemma`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from modeling_longllada.diffusion_gemma import (
    FULL_ATTENTION,
    SLIDING_ATTENTION,
    apply_rope_scaling,
    require_diffusion_gemma,
)
from modeling_longllada.rope_longllada import check_number

ARCH = "diffusion_gemma"
# One full-attention layer in every six, and the last one, as transformers derives Gemma 4's layer types.
FULL_ATTENTION_EVERY = 6
TINY_VISION_CONFIG: dict[str, Any] = {
    "model_type": "gemma4_vision",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "position_embedding_size": 64,
}
# The released checkpoint's generation_config.json: up to 48 denoising steps, temperature 0.8 -> 0.4,
# entropy bound 0.1, stop a canvas once stable for 1 step at mean entropy < 0.005, one canvas of answer.
SAMPLER_SETTINGS: dict[str, Any] = {
    "max_denoising_steps": 48,
    "t_min": 0.4,
    "t_max": 0.8,
    "entropy_bound": 0.1,
    "stability_threshold": 1,
    "confidence_threshold": 0.005,
}


def tiny_layer_types(n_layers: int) -> list[str]:
    """Sliding-window layers with a full-attention layer every sixth and last (Gemma 4's pattern)."""
    return [
        FULL_ATTENTION if (i + 1) % FULL_ATTENTION_EVERY == 0 or i == n_layers - 1 else SLIDING_ATTENTION
        for i in range(n_layers)
    ]


def builder_sizes(
    *,
    n_layers: int,
    d_model: int,
    n_heads: int,
    n_kv_heads: int,
    mlp_hidden_size: int,
    vocab_size: int,
    trained_length: int,
    rope_theta: float | None = None,
    rope_scaling: str | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``longllada tiny-model``'s generic sizes as :func:`build_tiny_diffusion_gemma`'s keywords (the entry's
    ``tiny_config_fields``): the sliding layers' head ``d_model / n_heads`` wide and the full-attention layers'
    twice that (as the released 256 and 512), the MoE experts' inner size a third of the MLP's (as 704 of 2112),
    the sliding window a sixteenth of the trained window (at least 4). ``rope_theta`` must be None: the model has
    two bases (sliding-window layers and full-attention layers), both from its config."""
    if rope_theta is not None:
        raise ValueError(
            f"rope_theta={rope_theta!r} (--rope-theta) is not allowed for DiffusionGemma: it has two RoPE bases "
            "(sliding-window layers 10,000, full-attention layers 1,000,000, as released); allowed: leave it out"
        )
    for name, value in (("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads),
                        ("n_kv_heads", n_kv_heads), ("mlp_hidden_size", mlp_hidden_size),
                        ("trained_length", trained_length)):  # fmt: skip
        check_number(name, value, minimum=1, integer=True)
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
    head_dim = d_model // n_heads
    return {
        "n_layers": n_layers,
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "head_dim": head_dim,
        "global_head_dim": 2 * head_dim,
        "intermediate_size": mlp_hidden_size,
        "moe_intermediate_size": max(1, mlp_hidden_size // 3),
        "sliding_window": max(4, trained_length // 16),
        "max_position_embeddings": trained_length,
        "vocab_size": vocab_size,
        "rope_scaling": rope_scaling,
    }


def build_tiny_diffusion_gemma(
    out_dir: str | Path,
    *,
    n_layers: int = 2,
    d_model: int = 32,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    head_dim: int = 8,
    global_head_dim: int = 16,
    intermediate_size: int = 64,
    n_experts: int = 4,
    top_k_experts: int = 2,
    moe_intermediate_size: int = 16,
    sliding_window: int = 16,
    max_position_embeddings: int = 256,
    canvas_length: int = 8,
    vocab_size: int = 512,
    rope_scaling: str | dict[str, Any] | None = None,
    seed: int = 0,
    texts: Iterable[str] | None = None,
) -> Path:
    """Write a tiny random DiffusionGemma folder (see the module docstring) and return its path.

    Args:
        out_dir: new, empty, or written by a tiny-model builder before (its files are then replaced); anything
            else is refused with ValueError before a file is written.
        n_layers: text layers (:func:`tiny_layer_types`: the last is always full attention).
        d_model, n_heads, n_kv_heads, head_dim: sliding-window layers' sizes (head_dim even, for RoPE).
        global_head_dim: the full-attention layers' head width (one key-value head, keys as values, as the
            released model's 2 per 16 query heads); its p-RoPE rotates a quarter of it.
        intermediate_size: the dense MLP's (and the self-conditioning block's) inner size.
        n_experts, top_k_experts, moe_intermediate_size: the MoE beside it.
        sliding_window: the sliding layers' window; max_position_embeddings: the trained window.
        canvas_length: tokens per canvas (the released model: 256).
        vocab_size: BPE vocabulary to train (Gemma's special tokens included); the embedding has exactly it.
        rope_scaling: NTK for the full-attention layers (``apply_rope_scaling``), written into the config.
        seed: seeds the weights (the tokenizer is deterministic in ``texts``).
        texts: tokenizer training text; default the shipped report (``longllada.tiny_model.default_texts``).
    """
    require_diffusion_gemma()
    sizes = {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "n_kv_heads": n_kv_heads,
             "head_dim": head_dim, "global_head_dim": global_head_dim, "intermediate_size": intermediate_size,
             "n_experts": n_experts, "top_k_experts": top_k_experts,
             "moe_intermediate_size": moe_intermediate_size, "sliding_window": sliding_window,
             "max_position_embeddings": max_position_embeddings, "canvas_length": canvas_length}  # fmt: skip
    for name, value in sizes.items():
        check_number(name, value, minimum=1, integer=True)
    check_number("seed", seed, minimum=0, integer=True)
    for name in ("head_dim", "global_head_dim"):
        if sizes[name] % 2:
            raise ValueError(f"{name}={sizes[name]} is not allowed; allowed: an even number (RoPE turns pairs)")
    if n_heads % n_kv_heads:
        raise ValueError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads}")
    if top_k_experts > n_experts:
        raise ValueError(f"top_k_experts={top_k_experts} is not allowed; allowed: at most n_experts={n_experts}")

    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    from longllada.tiny_model import _files_we_may_replace, _install, default_texts
    from longllada.tokenizer import build_tokenizer, save_tokenizer
    from modeling_longllada.diffusion_gemma import DiffusionGemmaSamplerArgs
    from modeling_longllada.families import (
        GEMMA_IMAGE_END_TOKEN,
        GEMMA_IMAGE_START_TOKEN,
        GEMMA_IMAGE_TOKEN,
        GEMMA_TURN_END_TOKEN,
    )

    out = Path(out_dir)
    ours = _files_we_may_replace(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tiny-model-", dir=out.parent) as scratch:
        staging = Path(scratch)
        tokenizer = build_tokenizer(default_texts() if texts is None else texts, vocab_size, family=ARCH)
        save_tokenizer(tokenizer, staging)
        token_id = tokenizer.convert_tokens_to_ids
        text_config = {
            "vocab_size": len(tokenizer),
            "hidden_size": d_model,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": n_layers,
            "num_attention_heads": n_heads,
            "num_key_value_heads": n_kv_heads,
            "head_dim": head_dim,
            "global_head_dim": global_head_dim,
            "num_global_key_value_heads": 1,
            "num_experts": n_experts,
            "top_k_experts": top_k_experts,
            "moe_intermediate_size": moe_intermediate_size,
            "sliding_window": sliding_window,
            "max_position_embeddings": max_position_embeddings,
            "layer_types": tiny_layer_types(n_layers),
            "use_bidirectional_attention": "vision",
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
        }
        config = DiffusionGemmaConfig(
            text_config=text_config,
            vision_config=dict(TINY_VISION_CONFIG),
            canvas_length=canvas_length,
            boi_token_id=token_id(GEMMA_IMAGE_START_TOKEN),
            eoi_token_id=token_id(GEMMA_IMAGE_END_TOKEN),
            image_token_id=token_id(GEMMA_IMAGE_TOKEN),
            architectures=["DiffusionGemmaForBlockDiffusion"],
        )
        apply_rope_scaling(config, rope_scaling)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DiffusionGemmaForBlockDiffusion(config).eval()
        model.save_pretrained(staging)
        generation = DiffusionGemmaSamplerArgs(max_new_tokens=canvas_length, **SAMPLER_SETTINGS).generation_config()
        generation.bos_token_id = tokenizer.bos_token_id
        generation.pad_token_id = tokenizer.pad_token_id
        generation.eos_token_id = [tokenizer.eos_token_id, token_id(GEMMA_TURN_END_TOKEN)]
        generation.save_pretrained(staging)
        _install(staging, out, ours, ARCH)
    return out
