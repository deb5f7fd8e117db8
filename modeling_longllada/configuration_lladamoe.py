"""Configuration of LLaDA-MoE for LongLLaDA: the official LLaDA-MoE config fields, unchanged, plus NTK RoPE scaling.

LLaDA-MoE-7B-A1B (Base, Instruct; inclusionAI; Zhu et al. 2025, arXiv 2509.24389) is a masked diffusion model with
an OLMoE-shaped transformer: bidirectional attention with per-head q/k RMSNorm, RoPE over ``partial_rotary_factor``
of each head, mixture-of-experts feed-forward layers (softmax router, an expert bias, optionally a shared expert)
and dense ones where ``moe_layer_freq`` says 0. Its checkpoints' ``config.json`` (``model_type: "lladamoe"``) loads
with this class unchanged: every official field is accepted and written back as given.

This file is copied flat into Hub model repos and loaded with ``trust_remote_code=True``: it imports only the
standard library, transformers and the files beside it.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .rope_longllada import RopeScalingMixin

__all__ = ["LLaDAMoEConfig", "OFFICIAL_DEFAULTS", "LLADAMOE_MASK_TOKEN_ID"]

# `<|mask|>` of the LLaDA-MoE tokenizer (the official inference code passes it to its samplers); the official
# config has no field for it.
LLADAMOE_MASK_TOKEN_ID = 156895

# Fields of the official LLaDA-MoE config class with its defaults. The official class's sizes are -1 placeholders:
# a checkpoint's config.json carries the real values (LLaDA-MoE-7B-A1B: hidden 2048, 16 layers, 16 heads, 64
# experts of 1024, 8 per token, vocabulary 157184). Every one is accepted and written back unchanged.
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "vocab_size": -1,
    "hidden_size": -1,
    "dense_intermediate_size": -1,
    "expert_intermediate_size": -1,
    "shared_expert_intermediate_size": -1,
    "num_hidden_layers": -1,
    "num_attention_heads": -1,
    "num_key_value_heads": None,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-05,
    "use_cache": False,
    "pad_token_id": 1,
    "bos_token_id": None,
    "eos_token_id": 50279,
    "tie_word_embeddings": False,
    "rope_theta": -1,
    "partial_rotary_factor": -1,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "clip_qkv": None,
    "num_experts_per_tok": -1,
    "num_experts": -1,
    "output_router_logits": False,
    "router_aux_loss_coef": 0.01,
    "norm_topk_prob": None,
    "qk_layernorm": None,
    "moe_layer_freq": [],
    "moe_router_enable_expert_bias": None,
    "moe_router_score_function": None,
    "routed_scaling_factor": 1,
    "router_num_group": -2,
    "router_topk_group": -2,
}


class LLaDAMoEConfig(RopeScalingMixin, PretrainedConfig):
    r"""Configuration of a LLaDA-MoE-architecture masked diffusion model with optional NTK RoPE scaling.

    Accepts every field of the official ``config.json`` (``hidden_size``, ``expert_intermediate_size``,
    ``num_experts``, ``moe_layer_freq``, ``partial_rotary_factor``, ...; see ``OFFICIAL_DEFAULTS``) and writes them
    back unchanged. As in the official model, ``norm_topk_prob``, ``moe_router_score_function``,
    ``routed_scaling_factor`` and the router group fields are kept but not used (its router is a softmax whose
    top-k weights are neither normalised nor scaled). Adds:

    - ``mask_token_id``: the tokenizer's ``<|mask|>`` (156895 for the released checkpoints);
    - ``rope_scaling`` (any form of :func:`rope_longllada.parse_rope_scaling`), as for LLaDA and Dream:
      ``{"type": "ntk", "factor": λ}`` multiplies the RoPE base, ``{"type": "ntk", "target_length": T}`` takes λ
      from the scaling law over the rotated dimensions (``rotary_dim``) and the trained length
      (``max_position_embeddings``), ``{"type": "ntk_per_length"}`` chooses λ at each forward pass.

    ``rope_theta`` stays the trained base.
    """

    model_type = "longllada_lladamoe"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        rope_scaling: str | dict[str, Any] | None = None,
        mask_token_id: int | None = LLADAMOE_MASK_TOKEN_ID,
        **kwargs: Any,
    ):
        # transformers 5 names the field `rope_parameters`; accept it for configs written by its tooling.
        rope_parameters = kwargs.pop("rope_parameters", None)
        if rope_scaling is None and rope_parameters is not None:
            rope_scaling = dict(rope_parameters)
        fields = {name: kwargs.pop(name, default) for name, default in OFFICIAL_DEFAULTS.items()}
        if fields["num_key_value_heads"] is None:  # as the official class: one key/value head per query head
            fields["num_key_value_heads"] = fields["num_attention_heads"]
        fields["moe_layer_freq"] = list(fields["moe_layer_freq"])
        token_ids = {name: fields[name] for name in ("pad_token_id", "eos_token_id", "bos_token_id")}
        super().__init__(tie_word_embeddings=fields["tie_word_embeddings"], **token_ids, **kwargs)
        for name, value in fields.items():
            setattr(self, name, value)
        self.mask_token_id = mask_token_id
        self.rope_scaling = rope_scaling

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        """Rotated dimensions of a head: ``head_dim * partial_rotary_factor`` (as transformers' RoPE init)."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def trained_length(self) -> int:
        """The context the checkpoint was trained at: the official ``max_position_embeddings``."""
        return self.max_position_embeddings

    @property
    def intermediate_size(self) -> int:
        """The HF-standard name, read by generic tools: the dense layers' feed-forward size."""
        return self.dense_intermediate_size

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer ``index`` has experts (``moe_layer_freq[index]`` non-zero) or a dense feed-forward."""
        return self.moe_layer_freq[index] != 0

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["rope_scaling"] = self.rope_scaling
        output.pop("rope_parameters", None)
        return output
