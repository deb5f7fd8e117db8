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
        # transformers 5 names the field `rope_parameters` (with the trained base in it); accept it for configs
        # written by its tooling.
        rope_parameters = kwargs.pop("rope_parameters", None)
        rope_theta_given = "rope_theta" in kwargs
        fields = {name: kwargs.pop(name, default) for name, default in OFFICIAL_DEFAULTS.items()}
        if fields["num_key_value_heads"] is None:  # as the official class: one key/value head per query head
            fields["num_key_value_heads"] = fields["num_attention_heads"]
        fields["moe_layer_freq"] = list(fields["moe_layer_freq"])
        token_ids = {name: fields[name] for name in ("pad_token_id", "eos_token_id", "bos_token_id")}
        super().__init__(tie_word_embeddings=fields["tie_word_embeddings"], **token_ids, **kwargs)
        for name, value in fields.items():
            setattr(self, name, value)
        self.mask_token_id = mask_token_id
        if rope_scaling is None and rope_parameters is not None:
            rope_scaling = self._rope_scaling_from_parameters(rope_parameters, rope_theta_given)
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

    # -- the family registry's hooks (modeling_longllada/families.py) ------------------------------------------

    @classmethod
    def fields_from_sizes(
        cls,
        *,
        n_layers: int,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        mlp_hidden_size: int,
        vocab_size: int,
        trained_length: int,
        rope_theta: float,
        rope_scaling: str | dict[str, Any] | None = None,
        num_experts: int = 8,
        num_experts_per_tok: int = 2,
        expert_intermediate_size: int | None = None,
        **token_ids: int | None,
    ) -> dict[str, Any]:
        """The official config fields of a model of these sizes (``longllada tiny-model``), with every part of
        the architecture present: ``num_experts`` experts of ``expert_intermediate_size`` (default a quarter of
        ``mlp_hidden_size``, a multiple of 4 so that expert rows are 16-byte aligned in float32), the top
        ``num_experts_per_tok`` per token, the expert bias and a shared expert of the experts' width; the first
        layer dense (``mlp_hidden_size``) when there are two or more; q/k norms; RoPE over half of each head where
        that is an even number of dimensions (else the whole head); the trained length as
        ``max_position_embeddings``."""
        expert = expert_intermediate_size or max(4, mlp_hidden_size // 4 // 4 * 4)
        head_dim = d_model // n_heads
        partial = 0.5 if head_dim % 4 == 0 else 1.0
        return {
            "num_hidden_layers": n_layers,
            "hidden_size": d_model,
            "num_attention_heads": n_heads,
            "num_key_value_heads": n_kv_heads,
            "dense_intermediate_size": mlp_hidden_size,
            "expert_intermediate_size": expert,
            "shared_expert_intermediate_size": expert,
            "num_experts": num_experts,
            "num_experts_per_tok": num_experts_per_tok,
            "moe_layer_freq": [0 if i == 0 and n_layers > 1 else 1 for i in range(n_layers)],
            "moe_router_enable_expert_bias": True,
            "moe_router_score_function": "softmax",
            "norm_topk_prob": False,
            "qk_layernorm": True,
            "partial_rotary_factor": partial,
            "vocab_size": vocab_size,
            "max_position_embeddings": trained_length,
            "rope_theta": rope_theta,
            "rope_scaling": rope_scaling,
            **token_ids,
        }

    def official_weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of an official LLaDA-MoE checkpoint of this config, name to shape, in the official
        modules' order (per layer: attention with its biases and q/k norms, the feed-forward, the two norms, the
        shared expert)."""
        d, vocab, head_dim = int(self.hidden_size), int(self.vocab_size), int(self.head_dim)
        q_dim, kv_dim = int(self.num_attention_heads) * head_dim, int(self.num_key_value_heads) * head_dim

        def swiglu(prefix: str, inner: int) -> dict[str, tuple[int, ...]]:
            return {f"{prefix}gate_proj.weight": (inner, d), f"{prefix}up_proj.weight": (inner, d),
                    f"{prefix}down_proj.weight": (d, inner)}  # fmt: skip

        shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, d)}
        for i in range(int(self.num_hidden_layers)):
            prefix = f"model.layers.{i}."
            for name, rows in (("q_proj", q_dim), ("k_proj", kv_dim), ("v_proj", kv_dim), ("o_proj", d)):
                shapes[f"{prefix}self_attn.{name}.weight"] = (rows, q_dim if name == "o_proj" else d)
                if self.attention_bias:
                    shapes[f"{prefix}self_attn.{name}.bias"] = (rows,)
            if self.qk_layernorm:
                shapes.update({f"{prefix}self_attn.q_norm.weight": (head_dim,),
                               f"{prefix}self_attn.k_norm.weight": (head_dim,)})  # fmt: skip
            moe = self.is_moe_layer(i)
            if not moe:
                shapes.update(swiglu(f"{prefix}mlp.", int(self.dense_intermediate_size)))
            else:
                if self.moe_router_enable_expert_bias:
                    shapes[f"{prefix}mlp.expert_bias"] = (int(self.num_experts),)
                shapes[f"{prefix}mlp.gate.weight"] = (int(self.num_experts), d)
                for e in range(int(self.num_experts)):
                    shapes.update(swiglu(f"{prefix}mlp.experts.{e}.", int(self.expert_intermediate_size)))
            shapes[f"{prefix}input_layernorm.weight"] = (d,)
            shapes[f"{prefix}post_attention_layernorm.weight"] = (d,)
            if moe and self.shared_expert_intermediate_size is not None:
                shapes.update(swiglu(f"{prefix}shared_expert.", int(self.shared_expert_intermediate_size)))
        shapes.update({"model.norm.weight": (d,), "lm_head.weight": (vocab, d)})
        return shapes
