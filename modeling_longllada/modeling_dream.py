"""Dream-v0 for LongLLaDA: the Dream masked-diffusion transformer, loadable from the official checkpoints, with
NTK RoPE scaling, LongLLaDA's sampler and likelihoods.

Dream-v0 (Ye et al. 2025, arXiv 2508.15487) is a Qwen2.5-shaped transformer with bidirectional attention:
grouped-query attention with q/k/v biases, SwiGLU, RMSNorm, rotate-half RoPE and an untied LM head. Its math is
LLaDA's (float32 RMSNorm then the weight, float32 split-half RoPE, pre-norm blocks), so this file only names the
modules as the official state dict does (``model.layers.N.self_attn.q_proj``, ``lm_head``, ...) and reuses the
attention, feed-forward, layer, forward pass, likelihoods and saving of ``modeling_longllada.py``.

Dream keeps the head of the autoregressive model it starts from: the logits at position i predict the token at
position i + 1 (``logits_shifted = True``). ``forward`` returns them as the checkpoint computes them; the
sampler and the likelihood apply the shift. As in the official forward, positions default to 0..L-1 whatever
the attention mask; the sampler passes the positions of left-padded rows.

Copied flat into Hub model repos and loaded with ``trust_remote_code=True``: imports only torch, transformers
and the files beside it.

Shapes: B batch, L length, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin

from .configuration_dream import DreamConfig

# The next two are unused here: transformers 4.46 copies, from a local folder, only the files that the loaded module
# imports itself (not the files those import), so this names every file that modeling_longllada.py needs.
from .configuration_longllada import LongLLaDAConfig  # noqa: F401
from .fast_longllada import FastOps  # noqa: F401
from .generation_longllada import DREAM_DEFAULTS, SAMPLER_DEFAULTS, DiffusionSamplerMixin
from .modeling_longllada import (
    DecoderLayer,
    DiffusionLMMixin,
    LongLLaDAPreTrainedModel,
    LongLLaDARMSNorm,
    SelfAttention,
    SwiGLUMLP,
)
from .rope_tables_longllada import rope_tables  # noqa: F401  (unused here too: for transformers 4.46, as above)

__all__ = ["DreamConfig", "DreamModel"]


class DreamDecoderLayer(DecoderLayer):
    """One Dream layer (``model.layers.N.*`` keys): input_layernorm, self_attn (q/k/v with biases, o_proj without),
    post_attention_layernorm, mlp (SwiGLU)."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        self.input_layernorm = LongLLaDARMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = SelfAttention(
            config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
            qkv_bias=True, out_bias=False,
        )  # fmt: skip
        self.post_attention_layernorm = LongLLaDARMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLUMLP(config.hidden_size, config.intermediate_size)


class DreamBaseModel(nn.Module):
    """The transformer without its head (``model.*`` keys): embed_tokens, layers, norm."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DreamDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = LongLLaDARMSNorm(config.hidden_size, config.rms_norm_eps)


def _check_supported(config: DreamConfig) -> None:
    """The official checkpoints use one architecture; refuse configs that would need another."""
    if config.hidden_act != "silu":
        raise ValueError(f"hidden_act={config.hidden_act!r} is not supported; allowed: 'silu'")
    if config.use_sliding_window:
        raise ValueError("use_sliding_window=True is not supported; allowed: False (Dream attends to every position)")
    if config.tie_word_embeddings:
        raise ValueError("tie_word_embeddings=True is not supported; allowed: False (Dream's lm_head is its own)")
    if config.hidden_size % config.num_attention_heads or config.head_dim % 2:
        raise ValueError(
            f"hidden_size={config.hidden_size} must be a multiple of num_attention_heads="
            f"{config.num_attention_heads} with an even quotient (the RoPE head dimension)"
        )
    if config.num_attention_heads % config.num_key_value_heads:
        raise ValueError(
            f"num_attention_heads={config.num_attention_heads} must be a multiple of "
            f"num_key_value_heads={config.num_key_value_heads}"
        )


class DreamPreTrainedModel(LongLLaDAPreTrainedModel):
    """LLaDA's base class (backends, device placement, initialisation) with Dream's config and layer names."""

    config_class = DreamConfig
    _no_split_modules = ["DreamDecoderLayer"]

    def _initializer_std(self) -> float:
        return self.config.initializer_range


class DreamModel(DiffusionLMMixin, DiffusionSamplerMixin, DreamPreTrainedModel, GenerationMixin):
    """Dream-v0 masked diffusion LM with NTK RoPE scaling, LongLLaDA's sampler and Monte-Carlo likelihoods.

    Loads the official checkpoints unchanged (``model.embed_tokens``, ``model.layers.N.self_attn.{q,k,v,o}_proj``,
    ``model.layers.N.mlp.{gate,up,down}_proj``, ``model.layers.N.{input,post_attention}_layernorm``,
    ``model.norm``, ``lm_head``). Registered for ``AutoModel`` and ``AutoModelForCausalLM``.
    """

    logits_shifted = True
    positions_from_mask = False
    # Dream's own sampler rule and defaults (its diffusion_generate): the whole answer as one block, 512 steps,
    # "origin".
    sampler_rule = "dream"
    sampler_defaults = {**SAMPLER_DEFAULTS, **DREAM_DEFAULTS}

    check_config = staticmethod(_check_supported)

    def build_modules(self, config: DreamConfig) -> None:
        self.model = DreamBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    input_embeddings_path = "model.embed_tokens"

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
