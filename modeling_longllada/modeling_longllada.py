"""LongLLaDA: the LLaDA masked-diffusion transformer, loadable from the official checkpoints, with NTK RoPE scaling.

Copied flat into Hub model repos and loaded with ``trust_remote_code=True``: imports only torch, transformers
and the files beside it. State-dict keys and numerics follow the official LLaDA model (LLaDA, Nie et al. 2025):
pre-norm "llama" blocks, float32 RMSNorm, float32 split-half RoPE, bidirectional attention. Unlike the official
file it honours ``attention_mask`` (left padding), runs on transformers 4.46 through 5.x, and computes the LM
head only where asked (``logits_to_keep``), which the sampler and the likelihood rely on.

The pieces every diffusion family shares live here too: the norm, RoPE, attention, the pre-norm block
(:class:`BidirectionalBlock`) and the forward pass, likelihoods and saving (:class:`DiffusionLMMixin`);
``modeling_dream.py`` builds Dream from them.

Shapes: B batch, L query length, C cached (context) length, H heads, D head dim, V vocabulary.
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

from .configuration_longllada import LongLLaDAConfig
from .generation_longllada import (
    DiffusionSamplerMixin,
    _check_fits,
    check_generator,
    check_token_ids,
    embedding_rows,
)
from .rope_longllada import check_number

# attn_implementation="flash_attention_2" runs flash-attn 2 or, without it, flash-attn 4's CuTe kernels
# (Hopper and newer; the same call by keywords, its output first in a tuple).
try:
    from flash_attn import flash_attn_func, flash_attn_varlen_func
except ImportError:  # pragma: no cover - no flash-attn 2 on CPU machines
    try:
        from flash_attn.cute import flash_attn_func, flash_attn_varlen_func
    except ImportError:
        flash_attn_func = flash_attn_varlen_func = None

logger = logging.get_logger(__name__)

ATTENTION_BACKENDS = ("sdpa", "eager", "flash_attention_2")

# The remote code of a model repo, copied flat beside config.json (by save_pretrained, tiny-model and upload).
REMOTE_CODE_FILES = (
    "configuration_dream.py",
    "configuration_longllada.py",
    "fast_longllada.py",
    "generation_longllada.py",
    "modeling_dream.py",
    "modeling_longllada.py",
    "rope_longllada.py",
)

# One layer's keys and values for cached positions, already rotated: ([B, Hkv, C, D], [B, Hkv, C, D]).
LayerKV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class LongLLaDAOutput(ModelOutput):
    """Output of :class:`LongLLaDAModelLM`.

    logits: [B, L or kept, V]. present_key_values: per layer, the rotated keys/values of the input positions
    (when ``use_cache``), which the sampler assembles into prefix/suffix caches. hidden_states: per layer
    [B, L, d_model] when ``output_hidden_states``; last_hidden_state: [B, L, d_model] after the final norm.
    """

    logits: torch.Tensor | None = None
    present_key_values: tuple[LayerKV, ...] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    last_hidden_state: torch.Tensor | None = None


class LongLLaDARMSNorm(nn.Module):
    """RMSNorm as LLaDA computes it: normalise in float32, cast back, then scale by the weight."""

    def __init__(self, dim: int, eps: float, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return x * self.weight if self.weight is not None else x


def rotary_cos_sin(
    position_ids: torch.Tensor, head_dim: int, base: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cos/sin tables [B, 1, L, D] for the given positions [B, L]; the angle table is the half-size
    table concatenated with itself (split-halves RoPE)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = position_ids.to(torch.float32)[..., None] * inv_freq  # [B, L, D/2]
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # [B, 1, L, D]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate(x)·sin with rotate(x) = concat(-x2, x1), computed in float32 and cast back."""
    dtype = x.dtype
    x = x.float()
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat((-x2, x1), dim=-1) * sin).to(dtype)


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, S, D] -> [B, Hkv * n_rep, S, D] for grouped-query attention."""
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    backend: str,
) -> torch.Tensor:
    """Bidirectional attention. q [B, H, L, D]; k, v [B, H, S, D]; key_padding_mask [B, S] bool (True = attend)
    or None. Returns [B, L, H, D]. Pad queries attend to real keys only, so their rows stay finite."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    if backend == "flash_attention_2":
        return _flash_attention(q, k, v, key_padding_mask, scale)
    if backend == "eager":
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1).to(v.dtype)
        return torch.matmul(probs, v).transpose(1, 2)
    mask = key_padding_mask[:, None, None, :] if key_padding_mask is not None else None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(1, 2)


def _flash_attention(q, k, v, key_padding_mask, scale):
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, S, H, D]
    if key_padding_mask is None:
        return _first(flash_attn_func(q, k, v, softmax_scale=scale, causal=False))
    b, lq = q.shape[:2]
    # Queries keep every row (pad queries included, so shapes stay [B, L]); keys drop padding.
    keys = key_padding_mask.flatten().nonzero().squeeze(-1)
    seqlens_k = key_padding_mask.sum(-1, dtype=torch.int32)
    cu_k = F.pad(seqlens_k.cumsum(0, dtype=torch.int32), (1, 0))
    cu_q = torch.arange(0, (b + 1) * lq, lq, device=q.device, dtype=torch.int32)
    out = flash_attn_varlen_func(
        q.reshape(b * lq, *q.shape[2:]),
        k.reshape(-1, *k.shape[2:])[keys],
        v.reshape(-1, *v.shape[2:])[keys],
        cu_seqlens_q=cu_q,
        cu_seqlens_k=cu_k,
        max_seqlen_q=lq,
        max_seqlen_k=int(seqlens_k.max()),
        softmax_scale=scale,
        causal=False,
    )
    out = _first(out)
    return out.view(b, lq, *out.shape[1:])


def _first(out):
    """flash-attn 4 returns (output, log-sum-exp); flash-attn 2 the output alone."""
    return out[0] if isinstance(out, tuple) else out


class BlockParts(NamedTuple):
    """The modules of one pre-norm block, by role (each family names them as its checkpoint does)."""

    attn_norm: nn.Module
    q_proj: nn.Linear
    k_proj: nn.Linear
    v_proj: nn.Linear
    o_proj: nn.Linear
    mlp_norm: nn.Module
    gate_proj: nn.Linear
    up_proj: nn.Linear
    down_proj: nn.Linear


class PlainOps:
    """The operations of a block, each written once and plainly (as transformers' ``modeling_llama.py``).
    ``fast_longllada.FastOps`` computes the same values with fewer passes over memory (inference only)."""

    @staticmethod
    def rms_norm(norm: LongLLaDARMSNorm, x: torch.Tensor) -> torch.Tensor:
        return norm(x)

    rotary = staticmethod(apply_rotary)
    attention = staticmethod(attention)

    @classmethod
    def residual_mlp(cls, p: BlockParts, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The rest of a block after attention: x + h, then + down_proj(silu(gate_proj(m)) * up_proj(m)) with
        m = mlp_norm(x + h)."""
        x = x + h
        m = cls.rms_norm(p.mlp_norm, x)
        return x + p.down_proj(F.silu(p.gate_proj(m)) * p.up_proj(m))


class BidirectionalBlock(nn.Module):
    """A pre-norm transformer block with bidirectional attention, as LLaDA and Dream share it:
    h = x + o_proj(Attn(RoPE(q), RoPE(k), v)) of attn_norm(x); out = h + down_proj(silu(gate_proj) * up_proj) of
    mlp_norm(h). Subclasses create the modules under their checkpoint's names and return them from ``parts``."""

    n_heads: int
    n_kv_heads: int
    head_dim: int
    parts: BlockParts  # a property of each family's block: its modules by role

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        past_kv: LayerKV | None,
        backend: str,
        query_keep: int | slice | torch.Tensor | None = None,
        cache_slot: slice | None = None,
        return_kv: bool = True,
        ops: type[PlainOps] = PlainOps,
    ) -> tuple[torch.Tensor, LayerKV | None]:
        """query_keep: compute the output only at these positions (keys and values still come from every
        position). cache_slot: ``past_kv`` are whole-sequence buffers; write this pass's keys/values into them
        there and attend over the buffers (no copy of the cache). return_kv=False: return None for this pass's
        keys/values and free them before the feed-forward (two full-size tensors less at the peak). ops: the
        implementation of the norm, RoPE, attention and feed-forward (:class:`PlainOps` or the fast path's)."""
        p = self.parts
        b, length, _ = x.shape
        n = ops.rms_norm(p.attn_norm, x)
        k = p.k_proj(n).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = p.v_proj(n).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        k = ops.rotary(k, cos, sin)
        if query_keep is not None:
            x, n = _select_positions(x, query_keep), _select_positions(n, query_keep)
            cos, sin = (_select_positions(t[:, 0], query_keep)[:, None] for t in (cos, sin))
        n_queries = x.shape[1]
        q = p.q_proj(n).view(b, n_queries, self.n_heads, self.head_dim).transpose(1, 2)
        q = ops.rotary(q, cos, sin)
        del n
        new_kv = (k, v) if return_kv else None
        if past_kv is not None and cache_slot is not None:
            past_kv[0][:, :, cache_slot] = k
            past_kv[1][:, :, cache_slot] = v
            k, v = past_kv
        elif past_kv is not None:  # cached positions first: the key order does not matter without a causal mask
            k, v = torch.cat((past_kv[0], k), dim=2), torch.cat((past_kv[1], v), dim=2)
        n_rep = self.n_heads // self.n_kv_heads
        h = ops.attention(q, _repeat_kv(k, n_rep), _repeat_kv(v, n_rep), key_padding_mask, backend)
        del q, k, v
        return ops.residual_mlp(p, x, p.o_proj(h.reshape(b, n_queries, -1))), new_kv


class LongLLaDABlock(BidirectionalBlock):
    """LLaDA's "llama" block under the official names: attn_norm, q/k/v_proj, attn_out, ff_norm, ff_proj (gate),
    up_proj, ff_out (down)."""

    def __init__(self, config: LongLLaDAConfig):
        super().__init__()
        d, hd = config.d_model, config.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.num_key_value_heads, hd
        qkv_bias = config.include_bias or config.include_qkv_bias
        self.attn_norm = LongLLaDARMSNorm(d, config.rms_norm_eps, config.layer_norm_with_affine)
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=qkv_bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=qkv_bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=config.include_bias)
        self.ff_norm = LongLLaDARMSNorm(d, config.rms_norm_eps, config.layer_norm_with_affine)
        self.ff_proj = nn.Linear(d, config.intermediate_size, bias=config.include_bias)
        self.up_proj = nn.Linear(d, config.intermediate_size, bias=config.include_bias)
        self.ff_out = nn.Linear(config.intermediate_size, d, bias=config.include_bias)

    @property
    def parts(self) -> BlockParts:
        return BlockParts(
            self.attn_norm, self.q_proj, self.k_proj, self.v_proj, self.attn_out,
            self.ff_norm, self.ff_proj, self.up_proj, self.ff_out,
        )  # fmt: skip


class LongLLaDAPreTrainedModel(PreTrainedModel):
    config_class = LongLLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["LongLLaDABlock"]
    # device_map sharding: each layer's cached keys/values stay on that layer's GPU (accelerate would otherwise
    # copy the whole cache to the first GPU with the outputs, and the in-place cache writes would hit the copy).
    _skip_keys_device_placement = ["past_key_values", "present_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True  # transformers 5
    _supports_flash_attn_2 = True  # transformers 4.x

    def _initializer_std(self) -> float:
        return self.config.init_std

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self._initializer_std()
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
        elif isinstance(module, LongLLaDARMSNorm) and module.weight is not None:
            module.weight.fill_(1.0)


def _check_supported(config: LongLLaDAConfig) -> None:
    """The official checkpoints use one architecture; refuse configs that would need another."""
    expected = {"block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu", "alibi": False}
    for field, allowed in expected.items():
        if getattr(config, field) != allowed:
            raise ValueError(f"{field}={getattr(config, field)!r} is not supported; allowed: {allowed!r}")
    if not config.rope:
        raise ValueError("rope=False is not supported; LLaDA checkpoints use rotary embeddings (rope=True)")
    if config.n_heads % config.num_key_value_heads:
        raise ValueError(f"n_heads={config.n_heads} must be a multiple of n_kv_heads={config.n_kv_heads}")


class LongLLaDAModel(nn.Module):
    """The transformer (``model.transformer.*`` keys of the official checkpoint): embeddings, blocks, final
    norm and, unless ``weight_tying``, the output projection ``ff_out``."""

    def __init__(self, config: LongLLaDAConfig):
        super().__init__()
        modules = {
            "wte": nn.Embedding(config.embedding_size or config.vocab_size, config.d_model),
            "blocks": nn.ModuleList(LongLLaDABlock(config) for _ in range(config.n_layers)),
            "ln_f": LongLLaDARMSNorm(config.d_model, config.rms_norm_eps, config.layer_norm_with_affine),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, config.embedding_size or config.vocab_size, bias=False)
        self.transformer = nn.ModuleDict(modules)


class DiffusionLMMixin:
    """The forward pass, the transformer without its head (``encode``), Monte-Carlo likelihoods and saving,
    shared by every diffusion family (LLaDA, Dream).

    A family's model class provides ``build_modules(config)`` (its modules under its checkpoint's names),
    ``embed(input_ids)``, ``decoder_layers`` (its :class:`BidirectionalBlock` list), ``final_norm``,
    ``lm_head(hidden)``, a config with ``head_dim``, ``rope_theta`` and the RoPE-scaling
    properties, and the class attributes below. The sampler talks to every family through ``forward`` (with
    ``logits_to_keep`` and the caches) and ``logits_shifted``.
    """

    # True when the logits at position i predict the token at position i + 1 (Dream keeps the head of the
    # autoregressive model it starts from); False when they predict the token at i itself (LLaDA).
    logits_shifted: bool = False
    # Default positions with an attention mask: the count of real tokens (True), or 0..L-1 whatever the mask,
    # as the official Dream forward does (False).
    positions_from_mask: bool = True

    # Where the token embedding sits (dotted attribute path), for the HF accessors below.
    input_embeddings_path: str = ""

    @staticmethod
    def check_config(config) -> None:
        """Refuse a config this family cannot run, before any module is built (ValueError naming the field)."""

    def get_input_embeddings(self) -> nn.Embedding:
        return operator.attrgetter(self.input_embeddings_path)(self)

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        owner, _, name = self.input_embeddings_path.rpartition(".")
        setattr(operator.attrgetter(owner)(self), name, value)

    def __init__(self, config):
        """Check the config, build the family's modules, initialise, set the sampler defaults, log the RoPE."""
        self.check_config(config)
        super().__init__(config)
        self.build_modules(config)
        self.post_init()
        self._init_generation_config()
        config = self.config
        logger.info(
            "%s RoPE: trained base %s, trained length %s, rope_scaling=%s, effective base %s",
            type(self).__name__,
            config.rope_theta,
            config.trained_length,
            config.rope_scaling,
            "chosen per length" if config.rope_per_length else config.rope_theta * config.rope_scaling_factor,
        )

    @property
    def remote_code_auto_map(self) -> dict[str, str]:
        """The ``auto_map`` that save_pretrained writes: this class and its config class, by file and name."""
        model = f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}"
        config = f"{self.config_class.__module__.rsplit('.', 1)[-1]}.{self.config_class.__name__}"
        return {"AutoConfig": config, "AutoModel": model, "AutoModelForCausalLM": model}

    # -- the fast path ---------------------------------------------------------------------------------------
    _fast_path: bool | None = None

    def set_fast_path(self, enabled: bool | None) -> None:
        """Choose the fast inference path of ``fast_longllada.py`` (the same values with fewer passes over memory
        and a kernel choice for long contexts): True, False, or None (the default) for on with CUDA inputs. It
        runs only while autograd is off; with gradients the plain path always runs."""
        if enabled is not None and not isinstance(enabled, bool):
            raise ValueError(f"set_fast_path(enabled={enabled!r}) is not allowed; allowed: True, False or None")
        self._fast_path = enabled

    def block_ops(self, x: torch.Tensor) -> type[PlainOps]:
        """The operations a forward pass over ``x`` uses: the fast path's or the plain ones."""
        enabled = x.is_cuda if self._fast_path is None else self._fast_path
        if enabled and not torch.is_grad_enabled():
            from .fast_longllada import FastOps

            return FastOps
        return PlainOps

    def rope_base(self, seq_len: int) -> float:
        """Effective RoPE base for a forward pass spanning ``seq_len`` positions."""
        return self.config.rope_theta * self.config.rope_factor_for_length(seq_len)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: tuple[LayerKV, ...] | list[LayerKV] | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int | slice | torch.Tensor | None = None,
        rope_seq_len: int | None = None,
        cache_slot: slice | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> LongLLaDAOutput:
        """Bidirectional forward pass. The logits are the checkpoint's own: with ``logits_shifted`` (Dream)
        the logits at position i predict the token at i + 1.

        Args:
            input_ids: [B, L] token ids (or ``inputs_embeds`` [B, L, d_model]).
            attention_mask: [B, C + L], 1 for real tokens, 0 for padding, over the keys in the order
                (cached positions, input positions). Padding is ignored as keys; pad rows' own logits are junk.
            position_ids: [B, L]; default 0..L-1, or, for a family with ``positions_from_mask`` (LLaDA), from
                ``attention_mask`` (cumulative count of real tokens, so a left-padded row sees the positions it
                would have alone). Required with a cache.
            past_key_values: per layer, rotated keys/values [B, Hkv, C, D] of positions not in ``input_ids``
                (any order: prefix and/or suffix) — the diffusion caches of the sampler.
            use_cache: return this pass's rotated keys/values per layer in ``present_key_values``.
            logits_to_keep: where to run the LM head: an int n (the last n positions; 0 or None = all), a
                slice, or a 1-D index tensor of positions. The head is never computed elsewhere.
            rope_seq_len: the sequence length that picks the factor under ``{"type": "ntk_per_length"}`` scaling
                (default: the largest position + 1).
            cache_slot: with ``past_key_values``, the cached tensors are whole-sequence buffers [B, Hkv, C, D]
                and the input positions are ``cache_slot`` of them: this pass's keys/values are written there
                (in place) and attention runs over the buffers, with no copy of the cache; ``attention_mask``
                is then [B, C]. The sampler's cached steps use this.
        Returns:
            :class:`LongLLaDAOutput` with logits [B, kept, V].
        """
        if kwargs.get("labels") is not None:
            raise ValueError(
                "labels is not supported: a masked diffusion model has no next-token loss; "
                "use log_likelihood() or chunk_perplexity()"
            )
        keep = _positions_to_keep(logits_to_keep)
        keep = None if output_hidden_states else keep
        x, new_cache, hidden_states = self.encode(
            input_ids,
            attention_mask,
            position_ids,
            past_key_values,
            inputs_embeds,
            use_cache,
            output_hidden_states,
            rope_seq_len,
            hidden_to_keep=keep,
            cache_slot=cache_slot,
        )
        return LongLLaDAOutput(
            logits=self.lm_head(x if keep is not None else _select_positions(x, logits_to_keep)),
            present_key_values=new_cache,
            hidden_states=hidden_states,
            last_hidden_state=x if output_hidden_states else None,
        )

    def encode(
        self,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: tuple[LayerKV, ...] | list[LayerKV] | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        rope_seq_len: int | None = None,
        hidden_to_keep: int | slice | torch.Tensor | None = None,
        cache_slot: slice | None = None,
    ) -> tuple[torch.Tensor, tuple[LayerKV, ...] | None, tuple[torch.Tensor, ...] | None]:
        """The transformer without the LM head (arguments as :meth:`forward`). Returns the final-norm hidden
        states [B, L, d_model], this pass's keys/values per layer (if ``use_cache``) and, if asked, the hidden
        states entering each layer plus the final ones.

        hidden_to_keep (as ``logits_to_keep``; not with ``output_hidden_states``): return only these
        positions [B, kept, d_model]; the last layer then computes its queries, attention output and
        feed-forward only there (its keys/values still cover every position), which saves 1/n_layers of the
        pass."""
        if hidden_to_keep is not None and output_hidden_states:
            raise ValueError(
                "hidden_to_keep cannot be combined with output_hidden_states=True (it needs every position)"
            )
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        b, length = x.shape[:2]
        key_mask = None
        if attention_mask is not None:
            _check_mask_shape(attention_mask, b, length, past_key_values, cache_slot)
            key_mask = attention_mask.to(device=x.device, dtype=torch.bool)
            if position_ids is None and past_key_values is None and self.positions_from_mask:
                position_ids = (key_mask.long().cumsum(-1) - 1).clamp_min(0)
            # No padding: let sdpa take its fastest (mask-free) kernel. (Not while a CUDA graph is captured: the
            # check reads the mask on the host; the sampler passes no mask when there is no padding.)
            if not (key_mask.is_cuda and torch.cuda.is_current_stream_capturing()) and bool(key_mask.all()):
                key_mask = None
        if position_ids is None:
            if past_key_values is not None:
                raise ValueError("position_ids is required with past_key_values (the cached positions are unknown)")
            position_ids = torch.arange(length, device=x.device).expand(b, length)
        if rope_seq_len is not None:
            check_number("rope_seq_len", rope_seq_len, minimum=1, integer=True)
        if rope_seq_len is None and self.config.rope_per_length:
            rope_seq_len = int(position_ids.max()) + 1
        cos, sin = rotary_cos_sin(position_ids, self.config.head_dim, self.rope_base(rope_seq_len or 0), x.device)

        backend = self.config._attn_implementation or "sdpa"
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attn_implementation={backend!r} is not supported; allowed: {ATTENTION_BACKENDS}")
        if backend == "flash_attention_2" and flash_attn_func is None:
            raise ValueError(
                "attn_implementation='flash_attention_2' needs the flash_attn package (pip install longllada[flash])"
            )

        ops = self.block_ops(x)
        new_cache, hidden_states = [], []
        layers = self.decoder_layers
        last = len(layers) - 1
        for i, block in enumerate(layers):
            if output_hidden_states:
                hidden_states.append(x)
            past = past_key_values[i] if past_key_values is not None else None
            keep = hidden_to_keep if i == last else None
            x, kv = block(
                x, cos, sin, key_mask, past, backend,
                query_keep=keep, cache_slot=cache_slot, return_kv=use_cache, ops=ops,
            )  # fmt: skip
            if use_cache:
                new_cache.append(kv)
        x = ops.rms_norm(self.final_norm, x)
        if output_hidden_states:
            hidden_states.append(x)
        return (
            x,
            tuple(new_cache) if use_cache else None,
            tuple(hidden_states) if output_hidden_states else None,
        )

    # -- likelihoods (LLaDA, Appendix B.5; LongLLaDA, Figure 1) ----------------------------------------------
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
        """Monte-Carlo lower bound of log p(continuation | context) (LLaDA, Appendix B.5).

        Each sample masks m of the L continuation tokens (m stratified over a mini-batch: a random start, then
        evenly spaced, wrapped into [1, L]) and sums the masked tokens' cross-entropy divided by m / L. Returns
        ``(-mean, standard error of the mean)`` over the ``mc_num`` samples. The LM head runs on masked
        positions only. A model with ``logits_shifted`` (Dream) scores token j from position j - 1, so the context
        must not be empty there (give at least the BOS token).
        """
        per_sample = self._masked_losses(context_ids, continuation_ids, mc_num, batch_size, cfg_scale, generator)
        losses = torch.stack([ce.sum() / ratio for ce, ratio in per_sample])  # [mc_num]
        stderr = losses.std(unbiased=True) / math.sqrt(len(losses)) if len(losses) > 1 else losses.new_tensor(0.0)
        return -float(losses.mean()), float(stderr)

    @torch.no_grad()
    def chunk_perplexity(
        self,
        context_ids: torch.Tensor | list[int],
        chunk_ids: torch.Tensor | list[int],
        mc_num: int = 8,
        batch_size: int = 8,
        generator: torch.Generator | None = None,
    ) -> float:
        """LongLLaDA's per-chunk score (its Figure 1): mask the chunk as in :meth:`log_likelihood` (``mc_num``
        samples) and return the mean cross-entropy over all masked tokens, with no division by the mask ratio.
        exp of the running mean of these values over consecutive chunks is the perplexity curve."""
        per_sample = self._masked_losses(context_ids, chunk_ids, mc_num, batch_size, 0.0, generator)
        all_losses = torch.cat([ce for ce, _ in per_sample])
        return float(all_losses.mean())

    def _masked_losses(self, context_ids, continuation_ids, mc_num, batch_size, cfg_scale, generator):
        """Per Monte-Carlo sample: (cross-entropies [m] of its masked continuation tokens, mask ratio m / L)."""
        check_number("mc_num", mc_num, minimum=1, integer=True)
        check_number("batch_size", batch_size, minimum=1, integer=True)
        check_number("cfg_scale", cfg_scale, minimum=0)
        device = self.device
        rows = embedding_rows(self)
        context = _one_sequence("context_ids", context_ids, rows).to(device)
        target = _one_sequence("continuation_ids", continuation_ids, rows).to(device)
        if target.numel() == 0:
            raise ValueError("continuation_ids is empty; give at least one token to score")
        check_generator(generator, device, cpu_only=True)
        mask_id = self.config.mask_token_id
        if isinstance(mask_id, bool) or not isinstance(mask_id, int) or not 0 <= mask_id < rows:
            raise ValueError(f"mask_token_id={mask_id!r} is not allowed; allowed: a token id in [0, {rows})")
        if bool((context == mask_id).any()) or bool((target == mask_id).any()):
            raise ValueError(f"the inputs contain the mask token (id {mask_id}); remove it before scoring")
        n_ctx, length = context.numel(), target.numel()
        shift = 1 if self.logits_shifted else 0
        if shift and n_ctx == 0:
            raise ValueError(
                "context_ids is empty: this model's logits at position j - 1 predict token j (shifted logits), so "
                "the first token cannot be scored; give a context of at least one token (e.g. the BOS token)"
            )
        rows_per_pass = min(batch_size, mc_num) * (2 if cfg_scale > 0 else 1)
        _check_fits(self, rows_per_pass, n_ctx + length, "ask for a smaller batch_size (samples per pass) or a "
                    "shorter context")  # fmt: skip
        seq = torch.cat((context, target))
        out = []
        for start in range(0, mc_num, batch_size):
            b = min(batch_size, mc_num - start)
            offset = torch.randint(1, length + 1, (1,), generator=generator, device="cpu").item()
            counts = torch.round(torch.linspace(offset, offset + (b - 1) * length / b, b)).long()
            counts = ((counts - 1) % length) + 1  # [b] masked tokens per sample, in [1, L]
            ranks = torch.rand(b, length, generator=generator, device="cpu").argsort(dim=-1).argsort(dim=-1)
            is_masked = (ranks < counts[:, None]).to(device)  # [b, L]: m uniformly chosen positions
            noisy = seq.repeat(b, 1)
            noisy[:, n_ctx:] = torch.where(is_masked, mask_id, target)
            batch = noisy
            if cfg_scale > 0:
                unconditional = noisy.clone()
                unconditional[:, :n_ctx] = mask_id
                batch = torch.cat((noisy, unconditional))
            # Shifted logits: the hidden state at j - 1 scores token j.
            hidden = self.encode(batch, hidden_to_keep=slice(n_ctx - shift, n_ctx + length - shift))[0]  # [b|2b, L, d]
            is_masked = is_masked.to(hidden.device)  # a device_map model ends on its last GPU
            cond_h = hidden[:b][is_masked]  # [N, d]: masked positions only
            logits = self.lm_head(cond_h).float()
            if cfg_scale > 0:
                uncond = self.lm_head(hidden[b:][is_masked]).float()
                logits = uncond + (cfg_scale + 1) * (logits - uncond)
            labels = target.expand(b, length).to(logits.device)[is_masked.to(logits.device)]
            ce = F.cross_entropy(logits, labels, reduction="none")
            out.extend((piece, float(m) / length) for piece, m in zip(ce.split(counts.tolist()), counts.tolist()))
        return out

    # -- saving ----------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained``, plus this family's remote-code files beside ``config.json`` and an
        ``auto_map`` pointing to them, so that the folder loads with ``trust_remote_code=True`` wherever this
        package is not installed.

        transformers saves a custom model's module file and the files it imports when the model class is
        registered for an auto class (as a class loaded as remote code is); an unregistered class is registered for
        the duration of the save, so the code is written (and, with ``push_to_hub``, uploaded) with the weights."""
        self.config.auto_map = dict(self.remote_code_auto_map)
        cls = type(self)
        registered = cls._auto_class is not None
        if not registered:
            cls._auto_class = "AutoModelForCausalLM"
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if not registered:
                del cls._auto_class  # back to the inherited None


def _one_sequence(field: str, ids: torch.Tensor | list[int], rows: int) -> torch.Tensor:
    """Token ids of one sequence, as a 1-D long tensor: a list or a tensor of shape [L] or [1, L] of integer ids
    in [0, rows) (:func:`check_token_ids`); floats (which would be truncated) and several rows are refused."""
    if not isinstance(ids, torch.Tensor):
        if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"{field}={ids!r} is not allowed; allowed: a list of int token ids, or a tensor")
        ids = torch.tensor(list(ids), dtype=torch.long)
    if ids.dim() > 2 or (ids.dim() == 2 and ids.shape[0] != 1):
        raise ValueError(f"{field} has shape {tuple(ids.shape)}; allowed: one sequence, [length] or [1, length]")
    check_token_ids(field, ids, rows)
    return ids.flatten().long()


def _check_mask_shape(
    attention_mask: torch.Tensor,
    batch: int,
    length: int,
    past_key_values: tuple[LayerKV, ...] | list[LayerKV] | None,
    cache_slot: slice | None,
) -> None:
    """attention_mask covers the keys: [B, L], [B, C + L] with a cache, [B, C] with ``cache_slot`` buffers."""
    if past_key_values is None:
        keys, what = length, f"the {length} input positions"
    else:
        cached = past_key_values[0][0].shape[2]
        if cache_slot is not None:
            keys, what = cached, f"the {cached} positions of the cache buffers"
        else:
            keys, what = cached + length, f"the {cached} cached and {length} input positions"
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (batch, keys):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; allowed: [batch, keys] = ({batch}, {keys}) "
            f"for {what} (input_ids has batch {batch} and length {length})"
        )


class LongLLaDAModelLM(DiffusionLMMixin, DiffusionSamplerMixin, LongLLaDAPreTrainedModel, GenerationMixin):
    """LLaDA-compatible masked diffusion LM with NTK RoPE scaling, a diffusion ``generate()`` and Monte-Carlo
    likelihoods. Registered for ``AutoModel`` and ``AutoModelForCausalLM`` through ``auto_map``."""

    logits_shifted = False
    positions_from_mask = True
    input_embeddings_path = "model.transformer.wte"
    check_config = staticmethod(_check_supported)

    def build_modules(self, config: LongLLaDAConfig) -> None:
        self.model = LongLLaDAModel(config)

    def get_output_embeddings(self) -> nn.Module | None:
        return None  # the head is `ff_out` (or the tied embedding), applied by `lm_head`

    # -- the parts the shared forward uses -------------------------------------------------------------------
    def embed(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Token embeddings [B, L, d_model] (scaled by sqrt(d_model) when ``input_emb_norm``)."""
        x = self.get_input_embeddings()(input_ids)
        return x * (self.config.d_model**0.5) if self.config.input_emb_norm else x

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.model.transformer.blocks

    @property
    def final_norm(self) -> nn.Module:
        return self.model.transformer.ln_f

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final projection of already-normalised hidden states [..., d_model] -> logits [..., V]."""
        weight = self.model.transformer.wte.weight if self.config.weight_tying else self.model.transformer.ff_out.weight
        logits = F.linear(hidden, weight)
        if self.config.scale_logits:
            logits = logits * (1.0 / math.sqrt(self.config.d_model))
        return logits


def _positions_to_keep(logits_to_keep):
    """``logits_to_keep`` in the form that prunes the last layer, or None where it keeps every position."""
    if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, (int, slice, torch.Tensor, type(None))):
        raise ValueError(
            f"logits_to_keep={logits_to_keep!r} is not allowed; allowed: None, an integer >= 0, a slice or a 1-D "
            "index tensor"
        )
    if isinstance(logits_to_keep, int):
        check_number("logits_to_keep", logits_to_keep, minimum=0, integer=True)
    if logits_to_keep is None or (isinstance(logits_to_keep, int) and logits_to_keep == 0):
        return None
    return logits_to_keep


def _select_positions(x: torch.Tensor, logits_to_keep) -> torch.Tensor:
    """x [B, L, d] -> the positions where the LM head runs."""
    if logits_to_keep is None or (isinstance(logits_to_keep, int) and logits_to_keep == 0):
        return x
    if isinstance(logits_to_keep, int):
        return x[:, -logits_to_keep:]
    if isinstance(logits_to_keep, slice):
        return x[:, logits_to_keep]
    return x[:, logits_to_keep.to(x.device)]
