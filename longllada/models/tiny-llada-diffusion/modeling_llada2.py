"""LLaDA2.0 / LLaDA2.1 for LongLLaDA: the block-diffusion mixture-of-experts transformer of inclusionAI, loadable from
the official checkpoints, with NTK RoPE scaling, the official samplers (LLaDA2.0's and LLaDA2.1's editing one) on an
exact key/value cache, and the block-diffusion likelihood bound.

LLaDA2.0 ("LLaDA2.0: Scaling Up Diffusion Language Models to 100B", arXiv 2512.15745) and LLaDA2.1 ("LLaDA2.1:
Speeding Up Text Diffusion via Token Editing", arXiv 2602.08676) share one architecture (Ling 2.0's): a fused
``query_key_value`` projection split as [heads, kv heads, kv heads] × ``head_dim``, per-head RMSNorms of q and k
(``query_layernorm`` / ``key_layernorm``) before RoPE, RoPE on the first ``head_dim * partial_rotary_factor``
dimensions, the output projection ``dense``; pre-norm layers whose feed-forward is a dense SwiGLU for the first
``first_k_dense_replace`` layers and a mixture of experts after (sigmoid router scores, selection on scores plus
``expert_bias`` limited to the best groups, the unbiased scores of the chosen normalised and scaled, shared
experts); final ``norm``, ``lm_head``. The logits at position i predict the token at i.

Attention is block-causal (block diffusion, Arriola et al. 2025, arXiv 2503.09573): with blocks of ``block_length``
positions a token sees its own block and every earlier one. The official ``generate`` builds that mask itself;
:meth:`LLaDA2ModelLM.forward` takes it as ``block_causal=block_length`` (exact in every attention backend, no
[L, L] mask), or as the official additive 4-D mask (0 / -inf). Without either, attention is bidirectional over the
input. Unlike the official forward, a 2-D padding mask is honoured as such (the official one, under sdpa, turns a
2-D mask into a causal one).

Because a finished block never changes and never sees later blocks, its keys and values are final once computed
from its final tokens: the sampler keeps them (``cache="prefix"``, the default: the prompt's whole blocks encoded
once, in chunks, each later step running only the active block against the cache). The tokens are those of the
official recompute (``cache="none"``), which runs the whole window at every step.

Copied flat into Hub model repos and loaded with ``trust_remote_code=True``: imports only torch, transformers and
the files beside it.

Shapes: B batch, L length, C cached length, V vocabulary, d hidden size.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from transformers import GenerationMixin

from .configuration_llada2 import LLaDA2Config

# The next three are unused here: transformers 4.46 copies, from a local folder, only the files that the loaded module
# imports itself (not the files those import), so this names every file that modeling_longllada.py needs.
from .configuration_longllada import LongLLaDAConfig  # noqa: F401
from .fast_longllada import FastOps  # noqa: F401
from .generation_longllada import LLADA2_DEFAULTS, DiffusionSamplerMixin
from .modeling_longllada import (
    AttentionNames,
    DecoderLayer,
    DiffusionLMMixin,
    LayerKV,
    LongLLaDAOutput,
    LongLLaDAPreTrainedModel,
    LongLLaDARMSNorm,
    SelfAttention,
    SwiGLUMLP,
)
from .moe_longllada import Router, RoutingRule, SparseMoE
from .rope_longllada import check_number
from .rope_tables_longllada import rope_tables  # noqa: F401  (unused here too: for transformers 4.46, as above)

__all__ = ["LLaDA2Config", "LLaDA2ModelLM"]


def routing_rule(config: LLaDA2Config) -> RoutingRule:
    """The official LLaDA2 gate: router logits in float32, sigmoid scores, selection on scores + ``expert_bias``
    within the best ``topk_group`` of ``n_group`` groups, the chosen experts' unbiased scores normalised (more than
    one chosen) and multiplied by ``routed_scaling_factor``, the experts' outputs combined in float32. The official
    code reads neither ``norm_topk_prob`` nor ``score_function``; neither do we."""
    return RoutingRule(
        config.num_experts, config.num_experts_per_tok, score_function="sigmoid", logits_in_float32=True,
        n_group=config.n_group, topk_group=config.topk_group, normalize=True,
        routed_scaling_factor=float(config.routed_scaling_factor), combine_in_float32=True,
    )  # fmt: skip


class LLaDA2Attention(SelfAttention):
    """LLaDA2's attention under the official names: ``query_key_value`` (fused), ``query_layernorm`` and
    ``key_layernorm`` (per head), ``dense`` (output)."""

    names = AttentionNames(qkv="query_key_value", o="dense", q_norm="query_layernorm", k_norm="key_layernorm")


class LLaDA2DecoderLayer(DecoderLayer):
    """One LLaDA2 layer (``model.layers.N.*`` keys): input_layernorm, attention, post_attention_layernorm and mlp
    (a dense SwiGLU, or the experts: ``gate`` with its ``expert_bias``, ``experts.E``, ``shared_experts``)."""

    def __init__(self, config: LLaDA2Config, layer_index: int):
        super().__init__()
        hidden = config.hidden_size
        self.attention = LLaDA2Attention(
            hidden, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
            qkv_bias=config.use_qkv_bias, out_bias=config.use_bias, fused_qkv=True,
            qk_norm_eps=config.rms_norm_eps if config.use_qk_norm else None,
        )  # fmt: skip
        if layer_index < config.num_dense_layers:
            self.mlp = SwiGLUMLP(hidden, config.intermediate_size)
        else:
            self.mlp = SparseMoE(
                hidden, config.moe_intermediate_size, routing_rule(config), expert_bias="gate",
                shared_intermediate_size=config.shared_expert_intermediate_size or None,
            )  # fmt: skip
        self.input_layernorm = LongLLaDARMSNorm(hidden, config.rms_norm_eps)
        self.post_attention_layernorm = LongLLaDARMSNorm(hidden, config.rms_norm_eps)

    def attend(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, LayerKV | None]:
        return self.attention(hidden_states, *args, **kwargs)


class LLaDA2BaseModel(nn.Module):
    """The transformer without its head (``model.*`` keys): word_embeddings, layers, norm."""

    def __init__(self, config: LLaDA2Config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LLaDA2DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LongLLaDARMSNorm(config.hidden_size, config.rms_norm_eps)


def _check_supported(config: LLaDA2Config) -> None:
    """What the config class accepts but this model cannot run (the config checks the rest)."""
    if config.tie_word_embeddings:
        raise ValueError("tie_word_embeddings=True is not supported; allowed: False (LLaDA2's lm_head is its own)")


class LLaDA2PreTrainedModel(LongLLaDAPreTrainedModel):
    """LLaDA's base class (backends, device placement, initialisation) with LLaDA2's config, layers and router."""

    config_class = LLaDA2Config
    _no_split_modules = ["LLaDA2DecoderLayer"]

    def _initializer_std(self) -> float:
        return self.config.initializer_range

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Router):
            module.weight.normal_(0.0, self._initializer_std())
            # A buffer that a checkpoint may lack: zero, not left as memory (transformers 5 builds on meta).
            if module.expert_bias is not None:
                module.expert_bias.zero_()


class LLaDA2ModelLM(DiffusionLMMixin, DiffusionSamplerMixin, LLaDA2PreTrainedModel, GenerationMixin):
    """LLaDA2.0 / LLaDA2.1 block-diffusion MoE LM with NTK RoPE scaling, the official samplers on an exact key/value
    cache, and the block-diffusion likelihood bound.

    Loads the official checkpoints unchanged (``model.word_embeddings``, ``model.layers.N.attention.
    {query_key_value, query_layernorm, key_layernorm, dense}``, ``model.layers.N.mlp.{gate_proj, up_proj,
    down_proj}`` (dense layers) or ``model.layers.N.mlp.{gate.weight, gate.expert_bias, experts.E.*,
    shared_experts.*}``, ``model.layers.N.{input,post_attention}_layernorm``, ``model.norm``, ``lm_head``).
    Registered for ``AutoModel`` and ``AutoModelForCausalLM``.

    ``generate`` runs LLaDA2.0's sampler, or LLaDA2.1's editing sampler when ``editing_threshold`` is set (in the
    call or in ``generation_config.json``); see :class:`generation_longllada.LLaDA2Rule`.
    """

    logits_shifted = False
    positions_from_mask = True
    sampler_rule = "llada2"
    sampler_defaults = LLADA2_DEFAULTS
    input_embeddings_path = "model.word_embeddings"
    check_config = staticmethod(_check_supported)

    def build_modules(self, config: LLaDA2Config) -> None:
        self.model = LLaDA2BaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    # -- the parts the shared forward uses -------------------------------------------------------------------
    def embed(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Token embeddings [B, L, d]."""
        return self.get_input_embeddings()(input_ids)

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.model.layers

    @property
    def final_norm(self) -> nn.Module:
        return self.model.norm

    def forward(
        self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> LongLLaDAOutput:
        """:meth:`DiffusionLMMixin.forward`, plus the official additive mask: a floating-point 4-D
        ``attention_mask`` [B or 1, 1, L, keys] of 0 (attend) and -inf or the dtype's minimum (do not), as the
        official ``generate`` builds it, is read as the boolean pattern it stands for. ``block_causal=block_length``
        gives the same block-diffusion pattern without any [L, L] mask."""
        if (
            isinstance(attention_mask, torch.Tensor)
            and attention_mask.dim() == 4
            and attention_mask.is_floating_point()
        ):
            attention_mask = additive_mask_as_pattern(attention_mask)
        return super().forward(input_ids, attention_mask, **kwargs)

    # -- likelihood: the block-diffusion bound ----------------------------------------------------------------
    @torch.no_grad()
    def log_likelihood(
        self,
        context_ids: torch.Tensor | list[int],
        continuation_ids: torch.Tensor | list[int],
        mc_num: int = 128,
        batch_size: int = 32,
        cfg_scale: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[float, float]:
        """Monte-Carlo lower bound of log p(continuation | context) under block diffusion, and its standard error.

        The training objective of LLaDA2.0 (arXiv 2512.15745, eq. (1), the block-diffusion bound of BD3-LM,
        Arriola et al. 2025, arXiv 2503.09573, eq. (7) there): with the linear schedule α_t = 1 − t,
        −log p(x) ≤ E_t[(1/t) Σ_{masked i} −log p(x_i | clean blocks before i's block, i's block noised)]. Each
        sample masks m of the L continuation tokens (stratified as LLaDA's estimator, weight L/m; context tokens
        are never masked); every block is predicted from the clean blocks before it and its own noised tokens.
        The clean sequence is encoded once (the keys and values the sampler's cache holds) and each sample runs
        only the noised blocks against them. No classifier-free guidance (``cfg_scale`` must be 0)."""
        if cfg_scale != 0:
            raise ValueError(
                f"cfg_scale={cfg_scale!r} is not allowed for LLaDA2; allowed: 0 (it has no classifier-free guidance)"
            )
        return super().log_likelihood(context_ids, continuation_ids, mc_num, batch_size, cfg_scale, generator)

    @property
    def scoring_block_length(self) -> int:
        """The block length the likelihood assumes: the sampler's (``generation_config.block_length``, 32 for the
        official checkpoints)."""
        block_length = getattr(self.generation_config, "block_length", None) or LLADA2_DEFAULTS["block_length"]
        check_number("generation_config.block_length", block_length, minimum=1, integer=True)
        return int(block_length)

    def masked_scorer(
        self, sequence: torch.Tensor, n_context: int, length: int, shift: int
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The final hidden states of the continuation positions [b, L, d] for noised copies [b, n] of
        ``sequence`` [n] (context then continuation, the continuation partly masked), under block diffusion's
        bound: block k of the noised tokens attends to the clean keys/values of blocks < k (encoded once, here) and
        to its own noised tokens. Only the blocks from the one holding the first continuation token on run."""
        block = self.scoring_block_length
        n = sequence.numel()
        first = n_context // block * block  # the first block with a continuation token
        device = self.device
        clean = self.encode(sequence[None], use_cache=True, block_causal=block, hidden_to_keep=1)[1]
        query_block = torch.arange(first, n, device=device) // block
        key_block = torch.arange(n, device=device) // block
        allowed = torch.cat(
            (key_block[None, :] < query_block[:, None], query_block[None, :] == query_block[:, None]), dim=1
        )[None, None]  # [1, 1, n - first, n + n - first]: clean keys of earlier blocks, then the own noised block
        positions = torch.arange(first, n, device=device)[None]

        def score(noisy: torch.Tensor) -> torch.Tensor:
            rows = noisy.shape[0]
            cache = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in clean]
            return self.encode(
                noisy[:, first:], attention_mask=allowed, position_ids=positions.expand(rows, -1),
                past_key_values=cache, hidden_to_keep=slice(n_context - first, n - first),
            )[0]  # fmt: skip

        return score


def additive_mask_as_pattern(mask: torch.Tensor) -> torch.Tensor:
    """An additive attention mask (0 = attend, -inf or at most half the dtype's minimum = do not) as the boolean
    pattern it stands for; other values (biases) are refused."""
    blocked = mask <= torch.finfo(mask.dtype).min / 2
    if bool(((mask != 0) & ~blocked).any()):
        raise ValueError(
            "attention_mask: a floating-point 4D mask must hold only 0 (attend) and -inf or the dtype's minimum "
            "(do not attend), as the official block-diffusion mask does; other additive biases are not supported"
        )
    return ~blocked
