"""Configuration of LLaDA2.0 / LLaDA2.1 for LongLLaDA: the official LLaDA2 config fields, unchanged, plus NTK RoPE
scaling.

LLaDA2.0 (inclusionAI, "LLaDA2.0: Scaling Up Diffusion Language Models to 100B", arXiv 2512.15745) and LLaDA2.1
("LLaDA2.1: Speeding Up Text Diffusion via Token Editing") are block-diffusion mixture-of-experts models. Their
checkpoints' ``config.json`` (``model_type: "llada2_moe"``, ``auto_map`` to
``configuration_llada2_moe.LLaDA2MoeConfig``) loads with this class unchanged: every official field is accepted
and written back as given, and so are the keys that the checkpoints carry but the official code never reads
(``norm_topk_prob``, ``score_function``, ``moe_router_enable_expert_bias``, ``router_dtype``, ``rotary_dim``, ...).
LLaDA2.0 and LLaDA2.1 share this architecture; they differ only in their samplers.

This file is copied flat into Hub model repos and loaded with ``trust_remote_code=True``: it imports only
the standard library, transformers and the files beside it.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import PretrainedConfig

from .rope_longllada import RopeScalingMixin, check_number

__all__ = ["LLaDA2Config", "OFFICIAL_DEFAULTS", "LLADA2_MASK_TOKEN_ID", "LLADA2_EOS_TOKEN_ID"]

logger = logging.getLogger(__name__)

# The token ids that the official `generate` takes by default (`mask_id`, `eos_id`): LLaDA2's tokenizer's
# <|mask|> and <|endoftext|>.
LLADA2_MASK_TOKEN_ID = 156895
LLADA2_EOS_TOKEN_ID = 156892

# The arguments of the official LLaDA2MoeConfig, defaulting to LLaDA2.0-mini's architecture (the official class's
# own defaults differ and cannot run: `moe_intermediate_size=None`; only a checkpoint's config.json counts).
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "vocab_size": 157184,
    "hidden_size": 2048,
    "intermediate_size": 5120,
    "num_hidden_layers": 20,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "use_qkv_bias": False,
    "use_qk_norm": True,
    "use_bias": False,
    "rms_norm_eps": 1e-6,
    "norm_head": False,
    "tie_word_embeddings": False,
    "embedding_dropout": 0.0,
    "attention_dropout": 0.0,
    "output_dropout": 0.0,
    "initializer_range": 0.02,
    "max_position_embeddings": 32768,
    "rope_theta": 600000.0,
    "use_cache": False,
    "use_sliding_window": False,
    "sliding_window": 4096,
    "max_window_layers": 28,
    "pad_token_id": LLADA2_EOS_TOKEN_ID,
    "num_experts": 256,
    "num_shared_experts": 1,
    "num_experts_per_tok": 8,
    "n_group": 8,
    "topk_group": 4,
    "routed_scaling_factor": 2.5,
    "moe_intermediate_size": 512,
    "first_k_dense_replace": 1,
    "head_dim": 128,
    "output_router_logits": False,
    "partial_rotary_factor": 0.5,
}

_POSITIVE_INTEGERS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim")
_FLAGS = ("use_qkv_bias", "use_qk_norm", "use_bias", "tie_word_embeddings")


class LLaDA2Config(RopeScalingMixin, PretrainedConfig):
    r"""Configuration of a LLaDA2-architecture block-diffusion MoE model with optional NTK RoPE scaling.

    Accepts every field of the official ``config.json`` (see ``OFFICIAL_DEFAULTS``) and writes them back
    unchanged, resolved as the official class resolves them: ``head_dim=None`` becomes
    ``hidden_size // num_attention_heads`` and ``num_key_value_heads=0`` becomes ``num_attention_heads`` (as
    LLaDA2.1's class does; LLaDA2.0's cannot run 0). The architecture they describe, as the official model file
    builds it:

    - attention: one fused ``query_key_value`` projection (bias ``use_qkv_bias``) split into
      ``num_attention_heads``, ``num_key_value_heads``, ``num_key_value_heads`` heads of ``head_dim``; per-head
      RMSNorms ``query_layernorm`` / ``key_layernorm`` when ``use_qk_norm``; RoPE on the first
      :attr:`rotary_dim` = ``int(head_dim * partial_rotary_factor)`` dimensions of each head (rotate-half);
      output projection ``dense`` (bias ``use_bias``);
    - MLP: the first ``first_k_dense_replace`` layers (all, when ``num_experts`` is None) are a SwiGLU of
      ``intermediate_size``; the others route each token to ``num_experts_per_tok`` of ``num_experts`` SwiGLU
      experts of ``moe_intermediate_size`` (sigmoid scores; selection on scores + ``expert_bias`` limited to the
      best ``topk_group`` of ``n_group`` groups; weights: the unbiased scores of the chosen experts, normalised
      to sum 1 when more than one is chosen, times ``routed_scaling_factor``), plus shared experts: one SwiGLU of
      ``moe_intermediate_size * num_shared_experts`` (none when ``num_shared_experts`` is None or 0).

    The official code reads no other field: ``norm_topk_prob``, ``score_function``, ``norm_head``,
    ``use_sliding_window`` and the dropouts are kept for the round trip only, and so are we.

    Adds:

    - ``trained_length``: the context the checkpoint was trained at, read by the NTK scaling law: the official
      ``max_position_embeddings`` (32768 for LLaDA2.0-mini), which stays as the checkpoint has it;
    - ``rope_scaling`` (any form of :func:`rope_longllada.parse_rope_scaling`): ``{"type": "ntk", "factor": 4}``
      multiplies the RoPE base by 4, ``{"type": "ntk", "target_length": 131072}`` takes the factor from the
      scaling law on the rotary part of each head (:attr:`rotary_dim`), ``{"type": "ntk_per_length"}`` chooses it
      from the length; every other method of the parser (``yarn``, ``linear``, ``longrope``, ...) applies too, as
      in the other families. ``rope_theta`` stays the trained base;
    - ``mask_token_id`` / ``eos_token_id``: the sampler's defaults, those of the official ``generate``
      (156895 and 156892) unless the config names others.
    """

    model_type = "longllada_llada2"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        rope_scaling: str | dict[str, Any] | None = None,
        mask_token_id: int = LLADA2_MASK_TOKEN_ID,
        eos_token_id: int | None = LLADA2_EOS_TOKEN_ID,
        **kwargs: Any,
    ):
        # transformers 5 names the field `rope_parameters` (with the trained base in it); accept it for configs
        # written by its tooling.
        rope_parameters = kwargs.pop("rope_parameters", None)
        rope_theta_given = "rope_theta" in kwargs
        fields = {name: kwargs.pop(name, default) for name, default in OFFICIAL_DEFAULTS.items()}
        if (
            fields["head_dim"] is None
            and isinstance(fields["num_attention_heads"], int)
            and fields["num_attention_heads"]
        ):
            fields["head_dim"] = fields["hidden_size"] // fields["num_attention_heads"]
        if fields["num_key_value_heads"] == 0:
            fields["num_key_value_heads"] = fields["num_attention_heads"]
        super().__init__(
            pad_token_id=fields["pad_token_id"],
            eos_token_id=eos_token_id,
            tie_word_embeddings=fields["tie_word_embeddings"],
            **kwargs,
        )
        for name, value in fields.items():
            setattr(self, name, value)
        self.mask_token_id = mask_token_id
        self._check_architecture()
        if rope_scaling is None and rope_parameters is not None:
            rope_scaling = self._rope_scaling_from_parameters(rope_parameters, rope_theta_given)
        self.rope_scaling = rope_scaling

    # -- derived sizes -------------------------------------------------------------------------------------------

    @property
    def rotary_dim(self) -> int:
        """The rotated dimensions of each head: ``int(head_dim * partial_rotary_factor)``, as the official file
        computes them (64 of 128 for LLaDA2.0). A ``rotary_dim`` key in config.json is kept for the round trip;
        the official code never reads it."""
        return int(self.head_dim * self.partial_rotary_factor)

    @rotary_dim.setter
    def rotary_dim(self, value: Any) -> None:
        self.__dict__["rotary_dim"] = value  # a config.json key, written back as given

    @property
    def trained_length(self) -> int:
        """The context the checkpoint was trained at: the official ``max_position_embeddings``."""
        return self.max_position_embeddings

    @property
    def num_dense_layers(self) -> int:
        """How many leading layers have a dense SwiGLU instead of experts."""
        if self.num_experts is None:
            return self.num_hidden_layers
        return min(self.first_k_dense_replace, self.num_hidden_layers)

    @property
    def shared_expert_intermediate_size(self) -> int:
        """The shared experts' SwiGLU width (0: none)."""
        if self.num_experts is None or not self.num_shared_experts:
            return 0
        return self.moe_intermediate_size * self.num_shared_experts

    # -- checks ------------------------------------------------------------------------------------------------

    def _check_architecture(self) -> None:
        """Refuse, naming the field, what the official model file cannot build or we cannot run."""
        for name in _POSITIVE_INTEGERS:
            check_number(name, getattr(self, name), minimum=1, integer=True)
        check_number("num_key_value_heads", self.num_key_value_heads, minimum=1, integer=True)
        check_number("max_position_embeddings", self.max_position_embeddings, minimum=1, integer=True)
        check_number("rms_norm_eps", self.rms_norm_eps, minimum=0, inclusive=False)
        check_number("rope_theta", self.rope_theta, minimum=1, inclusive=False)
        check_number("partial_rotary_factor", self.partial_rotary_factor, minimum=0, maximum=1, inclusive=False)
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed; allowed: True or False")
        if self.hidden_act != "silu":
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; allowed: 'silu' (SwiGLU MLPs)")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.rotary_dim < 2 or self.rotary_dim % 2:
            raise ValueError(
                f"partial_rotary_factor={self.partial_rotary_factor!r} with head_dim={self.head_dim} rotates "
                f"{self.rotary_dim} dimensions; allowed: a factor giving an even number >= 2 (rotate-half pairs)"
            )
        stated = self.__dict__.get("rotary_dim")
        if stated is not None and stated != self.rotary_dim:
            logger.warning(
                "config.json gives rotary_dim=%r, but the official LLaDA2 code rotates head_dim x "
                "partial_rotary_factor = %s dimensions and never reads rotary_dim; so do we",
                stated,
                self.rotary_dim,
            )
        check_number("mask_token_id", self.mask_token_id, minimum=0, integer=True)
        eos_ids = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        for eos_id in eos_ids:
            check_number("eos_token_id", eos_id, minimum=0, integer=True, optional=True)
        check_number("first_k_dense_replace", self.first_k_dense_replace, minimum=0, integer=True)
        if self.num_dense_layers:
            check_number("intermediate_size", self.intermediate_size, minimum=1, integer=True)
        if self.num_experts is not None:
            self._check_experts()

    def _check_experts(self) -> None:
        check_number("num_experts", self.num_experts, minimum=1, integer=True)
        check_number("moe_intermediate_size", self.moe_intermediate_size, minimum=1, integer=True)
        check_number("num_shared_experts", self.num_shared_experts, minimum=0, integer=True, optional=True)
        check_number("routed_scaling_factor", self.routed_scaling_factor, minimum=0, inclusive=False)
        check_number("n_group", self.n_group, minimum=1, maximum=self.num_experts, integer=True)
        if self.num_experts % self.n_group:
            raise ValueError(f"num_experts={self.num_experts} must be a multiple of n_group={self.n_group}")
        group_size = self.num_experts // self.n_group
        if group_size < 2:
            raise ValueError(
                f"num_experts={self.num_experts} in n_group={self.n_group} groups leaves {group_size} expert per "
                "group; allowed: at least 2 (a group is scored by the sum of its best two experts)"
            )
        check_number("topk_group", self.topk_group, minimum=1, maximum=self.n_group, integer=True)
        check_number(
            "num_experts_per_tok", self.num_experts_per_tok, minimum=1, maximum=self.topk_group * group_size,
            integer=True,
        )  # fmt: skip

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
        **token_ids: int | None,
    ) -> dict[str, Any]:
        """The official config fields of a model of these sizes (``longllada tiny-model``): LLaDA2.0-mini's shape
        scaled down. The first layer is dense (SwiGLU of ``mlp_hidden_size``), the others route each token to 2 of
        8 experts (4 groups, the best 2 kept) of a quarter of that width, plus one shared expert of the same width;
        ``head_dim`` is ``d_model / n_heads`` and RoPE turns half of it, as LLaDA2's does."""
        return {
            "num_hidden_layers": n_layers,
            "hidden_size": d_model,
            "num_attention_heads": n_heads,
            "num_key_value_heads": n_kv_heads,
            "head_dim": d_model // n_heads,
            "intermediate_size": mlp_hidden_size,
            "first_k_dense_replace": 1,
            "num_experts": 8,
            "n_group": 4,
            "topk_group": 2,
            "num_experts_per_tok": 2,
            "num_shared_experts": 1,
            # a multiple of 4 (16-byte rows in float32), as the grouped expert products need
            "moe_intermediate_size": max(4, mlp_hidden_size // 16 * 4),
            "vocab_size": vocab_size,
            "max_position_embeddings": trained_length,
            "rope_theta": rope_theta,
            "rope_scaling": rope_scaling,
            **token_ids,
        }

    def official_weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of an official LLaDA2 checkpoint of this config, name to shape, in the official order
        (the official module tree: embeddings; per layer the attention, the MLP — experts, gate with its
        ``expert_bias`` buffer, shared experts — and the two norms; final norm, ``lm_head``)."""
        d, vocab, head_dim = int(self.hidden_size), int(self.vocab_size), int(self.head_dim)
        heads, kv_heads = int(self.num_attention_heads), int(self.num_key_value_heads)

        def swiglu(prefix: str, inner: int) -> dict[str, tuple[int, ...]]:
            return {f"{prefix}gate_proj.weight": (inner, d), f"{prefix}up_proj.weight": (inner, d),
                    f"{prefix}down_proj.weight": (d, inner)}  # fmt: skip

        shapes: dict[str, tuple[int, ...]] = {"model.word_embeddings.weight": (vocab, d)}
        for i in range(int(self.num_hidden_layers)):
            prefix = f"model.layers.{i}."
            qkv_rows = (heads + 2 * kv_heads) * head_dim
            shapes[f"{prefix}attention.query_key_value.weight"] = (qkv_rows, d)
            if self.use_qkv_bias:
                shapes[f"{prefix}attention.query_key_value.bias"] = (qkv_rows,)
            if self.use_qk_norm:
                shapes[f"{prefix}attention.query_layernorm.weight"] = (head_dim,)
                shapes[f"{prefix}attention.key_layernorm.weight"] = (head_dim,)
            shapes[f"{prefix}attention.dense.weight"] = (d, heads * head_dim)
            if self.use_bias:
                shapes[f"{prefix}attention.dense.bias"] = (d,)
            if i < self.num_dense_layers:
                shapes.update(swiglu(f"{prefix}mlp.", int(self.intermediate_size)))
            else:
                for e in range(int(self.num_experts)):
                    shapes.update(swiglu(f"{prefix}mlp.experts.{e}.", int(self.moe_intermediate_size)))
                shapes[f"{prefix}mlp.gate.weight"] = (int(self.num_experts), d)
                shapes[f"{prefix}mlp.gate.expert_bias"] = (int(self.num_experts),)
                if self.shared_expert_intermediate_size:
                    shapes.update(swiglu(f"{prefix}mlp.shared_experts.", self.shared_expert_intermediate_size))
            shapes[f"{prefix}input_layernorm.weight"] = (d,)
            shapes[f"{prefix}post_attention_layernorm.weight"] = (d,)
        shapes["model.norm.weight"] = (d,)
        shapes["lm_head.weight"] = (vocab, d)
        return shapes

    # -- serialisation -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["rope_scaling"] = self.rope_scaling
        output.pop("rope_parameters", None)
        return output
