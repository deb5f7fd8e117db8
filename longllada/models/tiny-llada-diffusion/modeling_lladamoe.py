"""LLaDA-MoE for LongLLaDA: the LLaDA-MoE masked-diffusion transformer, loadable from the official checkpoints, with
NTK RoPE scaling, LLaDA's sampler (blocks, caches, threshold, classifier-free guidance) and likelihoods.

LLaDA-MoE-7B-A1B (inclusionAI; Zhu et al. 2025, arXiv 2509.24389) is an OLMoE-shaped transformer with
bidirectional attention: q/k/v/o projections (biases per ``attention_bias``), per-head RMSNorm of q and k
(``qk_layernorm``) before RoPE, RoPE over the first ``head_dim * partial_rotary_factor`` dimensions of each head,
pre-norm layers whose feed-forward is a mixture of experts (``moe_layer_freq`` non-zero) or a dense SwiGLU. The
official router: a bias-free ``gate``, softmax in float32, the ``expert_bias`` buffer added to the softmax weights
(the biased values both select the top-k experts and weight them), no normalisation, weights cast to the hidden
dtype; a shared expert, where the config has one, is added from the same normalised input. This file names the
modules as the official state dict does (``model.layers.N.mlp.experts.E.gate_proj``, ``model.layers.N.
shared_expert``, ...) and builds them from the shared modules of ``modeling_longllada.py`` and
``moe_longllada.py`` (experts batched by grouped products).

As in the official forward, positions default to 0..L-1 whatever the attention mask, which masks padded keys
only; the sampler passes the positions of left-padded rows. The logits at position i predict the token at i. RoPE
is applied in float32 (the official code rounds cos/sin to the model's dtype first): in bfloat16 the two differ by
roundings only; in float32 the logits agree to 1e-4 (``tests/test_lladamoe.py``).

Copied flat into Hub model repos and loaded with ``trust_remote_code=True``: imports only torch, transformers and
the files beside it.

Shapes: B batch, L length, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin

from .configuration_lladamoe import LLaDAMoEConfig

# The next two are unused here: transformers 4.46 copies, from a local folder, only the files that the loaded module
# imports itself (not the files those import), so this names every file that modeling_longllada.py needs.
from .configuration_longllada import LongLLaDAConfig  # noqa: F401
from .fast_longllada import FastOps  # noqa: F401
from .generation_longllada import SAMPLER_DEFAULTS, DiffusionSamplerMixin
from .modeling_longllada import (
    DecoderLayer,
    DiffusionLMMixin,
    LongLLaDAPreTrainedModel,
    LongLLaDARMSNorm,
    PlainOps,
    SelfAttention,
    SwiGLUMLP,
    init_unloaded,
)
from .moe_longllada import Router, RoutingRule, SparseMoE
from .rope_tables_longllada import rope_tables  # noqa: F401  (unused here too: for transformers 4.46, as above)

__all__ = ["LLaDAMoEConfig", "LLaDAMoEModelLM"]


def routing_rule(config: LLaDAMoEConfig) -> RoutingRule:
    """The official LLaDA-MoE router: softmax in float32 over logits in the hidden dtype, the expert bias added to
    the weights themselves, top-k neither normalised nor scaled (whatever ``norm_topk_prob`` and
    ``routed_scaling_factor`` say: the official block does not read them), combined in the hidden dtype."""
    return RoutingRule(config.num_experts, config.num_experts_per_tok, score_function="softmax", bias_in_weights=True)


class LLaDAMoEDecoderLayer(DecoderLayer):
    """One LLaDA-MoE layer (``model.layers.N.*`` keys): input_layernorm, self_attn (q/k/v/o_proj, q_norm, k_norm),
    post_attention_layernorm, mlp (experts: ``gate``, ``experts.E``, ``expert_bias``; or a dense SwiGLU) and,
    in expert layers of a config with one, ``shared_expert``."""

    def __init__(self, config: LLaDAMoEConfig, layer_index: int):
        super().__init__()
        hidden = config.hidden_size
        self.self_attn = SelfAttention(
            hidden, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
            qkv_bias=config.attention_bias, out_bias=config.attention_bias,
            qk_norm_eps=config.rms_norm_eps if config.qk_layernorm else None, clip_qkv=config.clip_qkv,
        )  # fmt: skip
        moe = config.is_moe_layer(layer_index)
        if moe:
            self.mlp = SparseMoE(
                hidden, config.expert_intermediate_size, routing_rule(config),
                expert_bias="moe" if config.moe_router_enable_expert_bias else None,
            )  # fmt: skip
        else:
            self.mlp = SwiGLUMLP(hidden, config.dense_intermediate_size)
        self.input_layernorm = LongLLaDARMSNorm(hidden, config.rms_norm_eps)
        self.post_attention_layernorm = LongLLaDARMSNorm(hidden, config.rms_norm_eps)
        if moe and config.shared_expert_intermediate_size is not None:
            self.shared_expert = SwiGLUMLP(hidden, config.shared_expert_intermediate_size)
        else:
            self.shared_expert = None

    def feed_forward(self, x: torch.Tensor, ops: type[PlainOps]) -> torch.Tensor:
        """The experts (or the dense SwiGLU), plus the shared expert on the same input."""
        y = self.mlp(x, ops)
        if self.shared_expert is not None:
            y = y + self.shared_expert(x, ops)
        return y


class LLaDAMoEBaseModel(nn.Module):
    """The transformer without its head (``model.*`` keys): embed_tokens, layers, norm."""

    def __init__(self, config: LLaDAMoEConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LLaDAMoEDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LongLLaDARMSNorm(config.hidden_size, config.rms_norm_eps)


def _check_supported(config: LLaDAMoEConfig) -> None:
    """Refuse a config the official architecture cannot run (the official class's -1 placeholders included)."""
    sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    for field in sizes:
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"{field}={value!r} is not allowed; allowed: a positive integer (the official class's -1 is a "
                "placeholder: load the checkpoint's config.json)"
            )
    if config.hidden_act != "silu":
        raise ValueError(f"hidden_act={config.hidden_act!r} is not supported; allowed: 'silu'")
    if config.tie_word_embeddings:
        raise ValueError("tie_word_embeddings=True is not supported; allowed: False (LLaDA-MoE's lm_head is its own)")
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"hidden_size={config.hidden_size} must be a multiple of num_attention_heads={config.num_attention_heads}"
        )
    if config.num_attention_heads % config.num_key_value_heads:
        raise ValueError(
            f"num_attention_heads={config.num_attention_heads} must be a multiple of "
            f"num_key_value_heads={config.num_key_value_heads}"
        )
    factor = config.partial_rotary_factor
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ValueError(f"partial_rotary_factor={factor!r} is not allowed; allowed: a number in (0, 1]")
    if config.rotary_dim < 2 or config.rotary_dim % 2:
        raise ValueError(
            f"partial_rotary_factor={factor!r} gives {config.rotary_dim} rotary dimensions of head_dim="
            f"{config.head_dim}; allowed: an even number >= 2"
        )
    if not isinstance(config.rope_theta, (int, float)) or config.rope_theta <= 1:
        raise ValueError(f"rope_theta={config.rope_theta!r} is not allowed; allowed: a number > 1")
    if len(config.moe_layer_freq) != config.num_hidden_layers:
        raise ValueError(
            f"moe_layer_freq has {len(config.moe_layer_freq)} entries; allowed: one per layer "
            f"(num_hidden_layers={config.num_hidden_layers}), 0 for a dense layer"
        )
    if any(config.moe_layer_freq):
        for field in ("num_experts", "num_experts_per_tok", "expert_intermediate_size"):
            value = getattr(config, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field}={value!r} is not allowed in a config with expert layers; allowed: >= 1")
        if config.num_experts_per_tok > config.num_experts:
            raise ValueError(
                f"num_experts_per_tok={config.num_experts_per_tok} exceeds num_experts={config.num_experts}"
            )
    if not all(config.moe_layer_freq) and config.dense_intermediate_size < 1:
        raise ValueError(
            f"dense_intermediate_size={config.dense_intermediate_size!r} is not allowed with dense layers; allowed: >= 1"
        )


class LLaDAMoEPreTrainedModel(LongLLaDAPreTrainedModel):
    """LLaDA's base class (backends, device placement, initialisation) with LLaDA-MoE's config, layers and router."""

    config_class = LLaDAMoEConfig
    _no_split_modules = ["LLaDAMoEDecoderLayer"]

    def _initializer_std(self) -> float:
        return self.config.initializer_range

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Router):
            init_unloaded(module.weight, std=self._initializer_std())
        # The expert bias is a buffer that a checkpoint may lack: zero, not left as memory (transformers 5 builds
        # modules on the meta device).
        if isinstance(module, (Router, SparseMoE)):
            init_unloaded(module.expert_bias, fill=0.0)


class LLaDAMoEModelLM(DiffusionLMMixin, DiffusionSamplerMixin, LLaDAMoEPreTrainedModel, GenerationMixin):
    """LLaDA-MoE masked diffusion LM with NTK RoPE scaling, LLaDA's sampler and Monte-Carlo likelihoods.

    Loads the official checkpoints unchanged (``model.embed_tokens``, ``model.layers.N.self_attn.{q,k,v,o}_proj``,
    ``model.layers.N.self_attn.{q,k}_norm``, ``model.layers.N.mlp.gate``, ``model.layers.N.mlp.experts.E.
    {gate,up,down}_proj``, ``model.layers.N.mlp.expert_bias``, ``model.layers.N.shared_expert``,
    ``model.layers.N.{input,post_attention}_layernorm``, ``model.norm``, ``lm_head``). Registered for
    ``AutoModel`` and ``AutoModelForCausalLM``.
    """

    logits_shifted = False
    positions_from_mask = False
    sampler_rule = "llada"
    sampler_defaults = SAMPLER_DEFAULTS
    input_embeddings_path = "model.embed_tokens"
    check_config = staticmethod(_check_supported)

    def build_modules(self, config: LLaDAMoEConfig) -> None:
        self.model = LLaDAMoEBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    # -- the parts the shared forward uses -------------------------------------------------------------------
    def embed(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Token embeddings [B, L, hidden_size]."""
        return self.get_input_embeddings()(input_ids)

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.model.layers

    @property
    def final_norm(self) -> nn.Module:
        return self.model.norm
