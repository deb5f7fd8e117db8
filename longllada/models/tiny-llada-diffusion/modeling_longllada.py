"""LongLLaDA: the LLaDA masked-diffusion transformer, loadable from the official checkpoints, with NTK RoPE scaling.

Copied flat into Hub model repos and loaded with ``trust_remote_code=True``: imports only torch, transformers
and the files beside it. State-dict keys and numerics follow the official LLaDA model (LLaDA, Nie et al. 2025):
pre-norm "llama" blocks, float32 RMSNorm, float32 split-half RoPE, bidirectional attention. Unlike the official
file it honours ``attention_mask`` (left padding), runs on transformers 4.46 through 5.x, and computes the LM
head only where asked (``logits_to_keep``), which the sampler and the likelihood rely on.

The pieces every diffusion family shares live here too, as modules with their own ``forward`` in the manner of
transformers' model files: the norm, the rotary embedding (:class:`RotaryEmbedding`, the one place the models
get their cos/sin tables), the attention backends behind one switch (:data:`ATTENTION_FUNCTIONS`), the attention
module (:class:`SelfAttention`), the SwiGLU feed-forward (:class:`SwiGLUMLP`), the pre-norm layer
(:class:`DecoderLayer`) and the forward pass, likelihoods and saving (:class:`DiffusionLMMixin`).
``modeling_dream.py`` and ``modeling_lladamoe.py`` build their families from them (``moe_longllada.py`` adds the
mixture-of-experts feed-forward).

Shapes: B batch, L query length, S key length, C cached (context) length, H heads, D head dim, R rotary dims,
V vocabulary.
"""

from __future__ import annotations

import inspect
import json
import math
import operator
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

from .configuration_longllada import LongLLaDAConfig
from .generation_longllada import (
    DiffusionSamplerMixin,
    _check_fits,
    canvas_device,
    check_generator,
    check_token_ids,
    embedding_rows,
)
from .rope_longllada import ROPE_SCALING_TYPES, check_number, rope_scaling_per_length
from .rope_tables_longllada import RopeTables, rope_tables

# attn_implementation="flash_attention_2" runs flash-attn 2 or, without it, flash-attn 4's CuTe kernels
# (Hopper and newer; the same call by keywords, its output first in a tuple).
try:
    from flash_attn import flash_attn_func, flash_attn_varlen_func
except ImportError:  # pragma: no cover - no flash-attn 2 on CPU machines
    try:
        from flash_attn.cute import flash_attn_func, flash_attn_varlen_func
    except ImportError:
        flash_attn_func = flash_attn_varlen_func = None

# attn_implementation="flash_attention_3" runs FlashAttention-3 (Shah et al. 2024; Hopper): flash-attn 3 built from
# source (flash_attn_interface) or the prebuilt forward-only wheel fa3-fwd (pip install longllada[fa3]), whose
# interface is the same module renamed and imports its build flags as flash_attn_config, shipped as fa3_fwd_config.
try:
    from flash_attn_interface import flash_attn_func as fa3_func
    from flash_attn_interface import flash_attn_varlen_func as fa3_varlen_func
except ImportError:  # pragma: no cover - no FlashAttention-3 on CPU machines
    try:
        import fa3_fwd_config

        sys.modules.setdefault("flash_attn_config", fa3_fwd_config)
        from fa3_fwd_interface import flash_attn_func as fa3_func
        from fa3_fwd_interface import flash_attn_varlen_func as fa3_varlen_func
    except (ImportError, OSError):  # OSError: a wheel whose CUDA libraries do not load here
        fa3_func = fa3_varlen_func = None

logger = logging.get_logger(__name__)

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])

# The remote code of a model repo, copied flat beside config.json (by save_pretrained, tiny-model and upload).
REMOTE_CODE_FILES = (
    "configuration_dream.py",
    "configuration_llada2.py",
    "configuration_lladamoe.py",
    "configuration_longllada.py",
    "fast_longllada.py",
    "generation_longllada.py",
    "modeling_dream.py",
    "modeling_llada2.py",
    "modeling_lladamoe.py",
    "modeling_longllada.py",
    "moe_longllada.py",
    "rope_longllada.py",
    "rope_tables_longllada.py",
)

# One layer's keys and values for cached positions, already rotated: ([B, Hkv, C, D], [B, Hkv, C, D]).
LayerKV = tuple[torch.Tensor, torch.Tensor]
# Positions to compute (``logits_to_keep`` and its kin): the last n, a slice, or a 1-D index tensor.
Positions = int | slice | torch.Tensor


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


# -- rotary position embedding (RoPE, Su et al. 2021) ---------------------------------------------------------


def default_inverse_frequencies(rotary_dim: int, base: float, device: torch.device | str | None) -> torch.Tensor:
    """RoPE's inverse frequencies base^(-2i/R) for i in [0, R/2): float32 [R/2]."""
    return 1.0 / (base ** (torch.arange(0, rotary_dim, 2, device=device, dtype=torch.float32) / rotary_dim))


def rotary_tables(
    position_ids: torch.Tensor, inv_freq: torch.Tensor, attention_factor: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cos/sin tables [B, 1, L, R] for positions [B, L] and inverse frequencies [R/2]: the half-size angle
    table concatenated with itself (split-halves RoPE), times ``attention_factor`` (1 but for methods such as YaRN
    that scale the attention logits through the tables, as transformers' rotary embeddings do)."""
    angles = position_ids.to(torch.float32)[..., None] * inv_freq  # [B, L, R/2]
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # [B, 1, L, R]
    cos, sin = angles.cos(), angles.sin()
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos, sin


def rotary_cos_sin(
    position_ids: torch.Tensor, rotary_dim: int, base: float, device: torch.device | str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables [B, 1, L, R] of plain RoPE with ``base`` over ``rotary_dim`` dimensions."""
    return rotary_tables(position_ids, default_inverse_frequencies(rotary_dim, base, device))


def spec_frequencies(config: Any, seq_len: int | None, device: torch.device | str | None) -> RopeTables:
    """The tables of the config's ``rope_scaling`` (any method of the one parser, or none) over its rotary
    dimensions: :func:`rope_tables_longllada.rope_tables`, which computes transformers' methods with transformers'
    ``ROPE_INIT_FUNCTIONS`` and the base-multiplying ones (the paper's NTK, UltraLLaDA's) as θ·λ. ``seq_len`` is
    read by the per-length methods only."""
    return rope_tables(
        config.rope_scaling, config.rotary_dim, config.rope_theta, config.trained_length, seq_len, device
    )


# The one place the models get their RoPE frequencies: ``rope_scaling`` type -> f(config, seq_len, device) ->
# (inverse frequencies [R/2] float32, attention factor). Every method of rope_longllada's parser maps to
# ``spec_frequencies``; another context-extension method plugs in here (with its name in the parser), as
# transformers' ROPE_INIT_FUNCTIONS do for its models.
ROPE_FREQUENCY_FUNCTIONS: dict[str, Callable[[Any, int | None, Any], tuple[torch.Tensor, float]]] = {
    kind: spec_frequencies for kind in ("default", *ROPE_SCALING_TYPES)
}
# Tables kept per RotaryEmbedding: the static one per device, and the last few lengths of a per-length method.
ROPE_TABLES_KEPT = 8


class RotaryEmbedding(nn.Module):
    """cos/sin tables of RoPE for the rotary part of each head: the first ``config.rotary_dim`` dimensions
    (``head_dim * partial_rotary_factor``; the rest of the head passes through unrotated), with the config's
    ``rope_scaling`` applied through :data:`ROPE_FREQUENCY_FUNCTIONS`, cos and sin times the method's attention
    factor (YaRN's temperature, LongRoPE's magnitude scaling) as transformers' rotary embeddings do.

    It holds no buffers (nothing is left uninitialised when transformers 5 builds the model on the meta device).
    The inverse frequencies are computed once and kept, keyed by the frequency rule, the spec, the base, the
    rotated dimensions, the trained length, the device and, for the per-length methods only, the pass's length: a static spec costs one
    computation per device, a per-length one one per distinct length (a generate() call's passes share theirs).
    A change of ``config.rope_scaling`` (or of the base) changes the key, so it takes effect at the next pass.
    The tables are float32 whatever the model's dtype (RoPE is applied in float32)."""

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self._tables: dict[tuple, tuple[torch.Tensor, float]] = {}

    @property
    def rotary_dim(self) -> int:
        return self.config.rotary_dim

    def inverse_frequencies(self, seq_len: int | None, device: torch.device | str | None) -> tuple[torch.Tensor, float]:
        """(inverse frequencies [R/2] float32 on ``device``, attention factor) for a forward pass over ``seq_len``
        positions (None or 0: within the trained length), from the kept tables when they are there."""
        config = self.config
        spec = config.rope_scaling
        kind = (spec or {}).get("type") or "default"
        frequencies = ROPE_FREQUENCY_FUNCTIONS.get(kind)
        if frequencies is None:
            raise ValueError(
                f"rope_scaling type {kind!r} has no frequency rule in this model; known: "
                f"{sorted(ROPE_FREQUENCY_FUNCTIONS)}"
            )
        length = (seq_len or None) if rope_scaling_per_length(spec) else None
        key = (
            frequencies, json.dumps(spec, sort_keys=True), float(config.rope_theta), config.rotary_dim,
            config.trained_length, str(torch.device(device) if device is not None else "cpu"), length,
        )  # fmt: skip
        kept = self._tables.get(key)
        if kept is None:
            inv_freq, attention_factor = frequencies(config, length, device)
            kept = (inv_freq, float(attention_factor))
            if len(self._tables) >= ROPE_TABLES_KEPT:
                self._tables.pop(next(iter(self._tables)))
            self._tables[key] = kept
        return kept

    def forward(self, position_ids: torch.Tensor, seq_len: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [B, L] -> (cos, sin), float32 [B, 1, L, R], times the method's attention factor.
        ``seq_len`` (the pass's length) is read by the per-length methods."""
        inv_freq, attention_factor = self.inverse_frequencies(seq_len, position_ids.device)
        return rotary_tables(position_ids, inv_freq, attention_factor)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate(x)·sin with rotate(x) = concat(-x2, x1) over the first R = cos.shape[-1] dimensions of x
    (the rest pass through: partial rotary), computed in float32 and cast back."""
    rotary_dim = cos.shape[-1]
    if rotary_dim < x.shape[-1]:
        return torch.cat((apply_rotary(x[..., :rotary_dim], cos, sin), x[..., rotary_dim:]), dim=-1)
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


# -- attention masks ------------------------------------------------------------------------------------------


class AttentionMask(NamedTuple):
    """Which keys each query may attend to (all three parts at once when several are given).

    key_padding: [B, S] bool, True for a real key, or None. allowed: any pattern, [B|1, 1|H, L, S] bool, True =
    attend, or None. block_length: block diffusion's block-causal pattern (LLaDA2; Arriola et al. 2025): a query
    at sequence index i sees key j when j // block_length <= i // block_length, i.e. its own block and every
    earlier one; keys are sequence indices 0..S-1 and ``query_index`` holds each query's (a ``range``, or an int64
    CPU tensor [L] where the queries kept are not a run); ``query_block_end`` [L] (int64, on the queries' device;
    None when the queries are one block) the index after each query's block. Kernels that take a boolean pattern
    (sdpa) run it a few blocks of queries a call, kernels that take none (flash) block by block
    (:func:`block_causal_attention`); ``shared`` keeps those runs and their patterns once a pass has built them,
    for its next layers (None: not kept)."""

    key_padding: torch.Tensor | None = None
    allowed: torch.Tensor | None = None
    block_length: int | None = None
    query_index: range | torch.Tensor | None = None
    query_block_end: torch.Tensor | None = None
    shared: dict[tuple, Any] | None = None

    def for_queries(self, keep: Positions | None) -> AttentionMask:
        """The mask of the queries at ``keep`` (as ``logits_to_keep``) only."""
        if keep is None:
            return self
        allowed = _select_positions(self.allowed, keep, dim=-2) if self.allowed is not None else None
        query_index = _select_indices(self.query_index, keep) if self.query_index is not None else None
        ends = _select_positions(self.query_block_end, keep, dim=0) if self.query_block_end is not None else None
        return self._replace(allowed=allowed, query_index=query_index, query_block_end=ends)

    def query_spans(
        self, keys: int, max_elements: int | None, max_share: float | None = None
    ) -> list[tuple[int, int, int]]:
        """The queries (block-causal) as runs of whole blocks, in their order: (first query, end query, key end)
        each, the keys the run's latest block sees being [0, key end). A run takes blocks while its queries times its
        keys stay within ``max_elements`` and, with ``max_share``, its queries within that share of its keys (at least
        one block; ``max_elements`` None: one block a run). A pass's layers share them."""
        block, index = self.block_length, self.query_index
        # Kept for the pass's other layers where the queries are a run (the last layer may keep fewer of them).
        shared = self.shared if isinstance(index, range) else None
        memo = (index.start, index.stop, index.step, keys, max_elements, max_share) if shared is not None else None
        if shared is not None and memo in shared:
            return shared[memo]
        if isinstance(index, range) and index.step == 1:  # the usual case: whole blocks but the first and last
            runs = [
                (b, min(index.stop, (b + 1) * block) - max(index.start, b * block))
                for b in range(index.start // block, (index.stop - 1) // block + 1)
            ] if index else []  # fmt: skip
        else:
            blocks, counts = torch.unique_consecutive(torch.as_tensor(index) // block, return_counts=True)
            runs = list(zip(blocks.tolist(), counts.tolist()))
        spans, start, i = [], 0, 0
        while i < len(runs):
            count, latest, j = runs[i][1], runs[i][0], i + 1
            while j < len(runs) and max_elements is not None:
                end = min(keys, (max(latest, runs[j][0]) + 1) * block)
                wider = count + runs[j][1]
                if wider * end > max_elements or (max_share is not None and wider > max_share * end):
                    break
                count, latest, j = count + runs[j][1], max(latest, runs[j][0]), j + 1
            spans.append((start, start + count, min(keys, (latest + 1) * block)))
            start, i = start + count, j
        if shared is not None:
            shared[memo] = spans
        return spans

    def dense(self, device: torch.device, keys: int) -> torch.Tensor | None:
        """The whole pattern as one boolean mask broadcastable to [B, H, L, S] (None: attend everywhere). Where
        a pattern leaves a query no key (a padding row), that row attends to every key: it stays finite, so no NaN
        reaches the real rows through it."""
        if self.allowed is None and self.block_length is None:
            return self.key_padding[:, None, None, :] if self.key_padding is not None else None
        allowed = self.allowed
        if self.block_length is not None:
            if self.query_block_end is not None:
                ends = self.query_block_end[:, None]
            else:  # one block
                ends = (int(max(self.query_index)) // self.block_length + 1) * self.block_length
            causal = (torch.arange(keys, device=device)[None, :] < ends)[None, None]  # [1, 1, L or 1, S]
            allowed = causal if allowed is None else allowed & causal
        if self.key_padding is not None:
            allowed = allowed & self.key_padding[:, None, None, :]
        return allowed | ~allowed.any(-1, keepdim=True)


# -- attention backends: one switch (config._attn_implementation), as transformers' ALL_ATTENTION_FUNCTIONS ----
# Each takes q [B, H, L, D], k, v [B, Hkv, S, D] (grouped-query heads: H a multiple of Hkv; a backend whose kernel
# needs them repeats them, the flash kernels take them as they are), an AttentionMask and the softmax scale, and
# returns [B, L, H, D].


def eager_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask, scale: float
) -> torch.Tensor:
    """Scores, mask, float32 softmax, weighted values: the reference the other backends must match."""
    k, v = _repeat_kv(k, q.shape[1] // k.shape[1]), _repeat_kv(v, q.shape[1] // v.shape[1])
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    allowed = mask.dense(q.device, k.shape[-2])
    if allowed is not None:
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1).to(v.dtype)
    return torch.matmul(probs, v).transpose(1, 2)


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask, scale: float
) -> torch.Tensor:
    """torch's scaled_dot_product_attention; a block-causal mask runs as a few calls over runs of query blocks (see
    :func:`block_causal_attention`)."""
    if mask.block_length is not None:
        return block_causal_attention(
            sdpa_attention, q, k, v, mask, scale, patterns=True, max_share=BLOCK_CAUSAL_RUN_SHARE
        )
    k, v = _repeat_kv(k, q.shape[1] // k.shape[1]), _repeat_kv(v, q.shape[1] // v.shape[1])
    allowed = mask.dense(q.device, k.shape[-2])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale).transpose(1, 2)


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask, scale: float
) -> torch.Tensor:
    """flash-attn (2, or 4's CuTe kernels): key padding by unpadding the keys (varlen), block-causal block by
    block. The kernel takes no other mask, so any other 4D pattern is refused."""
    if mask.allowed is not None:
        raise ValueError(_no_general_mask("flash_attention_2"))
    if mask.block_length is not None:
        return block_causal_attention(flash_attention, q, k, v, mask, scale, patterns=False)
    return _flash_attention(q, k, v, mask.key_padding, scale)


def _no_general_mask(backend: str) -> str:
    return (
        f"attn_implementation={backend!r} takes a padding mask and the block-causal mask (block_causal=) only; a "
        "general 4D attention_mask needs attn_implementation='sdpa' or 'eager'"
    )


# Block-causal attention through a kernel that takes a boolean pattern: queries and keys of one call at most this
# many (the pattern's elements; a few calls at 32k positions, one at 4k), so that the pattern stays small.
BLOCK_CAUSAL_PATTERN_ELEMENTS = 1 << 26
# The plain path's runs of queries: at most this share of the keys they see, so that the keys a run's product computes
# and the pattern masks out (those of its own later blocks) stay within an eighth of it; about log(L) calls a layer.
# Where the work is compute-bound (a CPU) this is near one call a block's time (a forward pass of LLaDA2, 4 layers of
# 256 wide, over a 2k window on one core: 356 ms; one call a block 317, one call for all 439); the fast path (CUDA,
# launch-bound) takes no share limit.
BLOCK_CAUSAL_RUN_SHARE = 0.25
# The patterns a pass keeps for its later layers: at most this many elements in all (the 4k window's is 2^24).
BLOCK_CAUSAL_PATTERNS_KEPT = 1 << 27


def block_causal_attention(
    kernel: Callable[..., torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask,
    scale: float,
    patterns: bool,
    max_share: float | None = None,
) -> torch.Tensor:
    """Block-causal attention exactly, with no [L, S] mask: one ``kernel`` call per run of query blocks, over the
    keys its latest block sees (the key padding, and any ``allowed`` pattern, cut to them).

    ``patterns``: the kernel takes a boolean pattern (sdpa): a run holds as many blocks as
    :data:`BLOCK_CAUSAL_PATTERN_ELEMENTS` and ``max_share`` (see :meth:`AttentionMask.query_spans`) allow (without a
    share, the whole window at the usual lengths), the block-causal pattern within the run given as ``allowed``, and
    grouped-query keys/values are repeated once for all runs. Otherwise
    (flash kernels) one block a run, which needs no pattern. A run of one block with no padding and no pattern is an
    unmasked call over its keys, as the sampler's cached steps are. A query left no key (a padding row) attends to
    the keys its block sees, so it stays finite (the keys past the pass are cache memory not yet written)."""
    keys = k.shape[2]
    spans = mask.query_spans(keys, BLOCK_CAUSAL_PATTERN_ELEMENTS if patterns else None, max_share)
    if len(spans) == 1:
        start, stop, end = spans[0]
        return kernel(q, k[:, :, :end], v[:, :, :end], _span_mask(mask, start, stop, end, q.device), scale)
    if patterns:  # grouped heads repeated once for every run (the keys the runs read), not run by run
        end = max(span[2] for span in spans)
        k, v = _repeat_kv(k[:, :, :end], q.shape[1] // k.shape[1]), _repeat_kv(v[:, :, :end], q.shape[1] // v.shape[1])
    out = q.new_empty(q.shape[0], q.shape[2], q.shape[1], q.shape[3])
    for start, stop, end in spans:
        out[:, start:stop] = kernel(
            q[:, :, start:stop], k[:, :, :end], v[:, :, :end], _span_mask(mask, start, stop, end, q.device), scale
        )
    return out


def _span_mask(mask: AttentionMask, start: int, stop: int, end: int, device: torch.device) -> AttentionMask:
    """The mask of queries [start, stop) over keys [0, end) of a block-causal pass, as a plain mask: key padding (a
    row with no real key attending to all of them) and ``allowed`` cut to the run, and, for a run of several blocks,
    the block-causal pattern within it as ``allowed`` (padding and ``allowed`` folded in; a query left no key
    attends to its block-causal keys)."""
    padding = mask.key_padding[:, :end] if mask.key_padding is not None else None
    allowed = mask.allowed[..., start:stop, :end] if mask.allowed is not None else None
    if mask.query_block_end is None:  # the queries are one block
        several = False
    elif isinstance(mask.query_index, range):
        several = mask.query_index[start] // mask.block_length != mask.query_index[stop - 1] // mask.block_length
    else:
        blocks = mask.query_index[start:stop] // mask.block_length
        several = bool(blocks.min() != blocks.max())
    if not several:
        if padding is not None:
            padding = padding | ~padding.any(-1, keepdim=True)
        return AttentionMask(padding, allowed)
    kept = mask.shared if isinstance(mask.query_index, range) else None
    key = (mask.query_index[start], mask.query_index[stop - 1], end)  # the run, the same in every layer of the pass
    if kept is not None and key in kept:
        return AttentionMask(allowed=kept[key])
    causal = (torch.arange(end, device=device)[None, :] < mask.query_block_end[start:stop, None])[None, None]
    pattern = causal if allowed is None else causal & allowed
    if padding is not None:
        pattern = pattern & padding[:, None, None, :]
    if pattern is not causal:
        pattern = pattern | (causal & ~pattern.any(-1, keepdim=True))
    if kept is not None:
        held = sum(p.numel() for p in kept.values() if isinstance(p, torch.Tensor))
        if held + pattern.numel() <= BLOCK_CAUSAL_PATTERNS_KEPT:
            kept[key] = pattern
    return AttentionMask(allowed=pattern)


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
    """flash-attn 4 (and FlashAttention-3's early releases) return (output, log-sum-exp); the others the output."""
    return out[0] if isinstance(out, tuple) else out


# -- FlashAttention-3 ------------------------------------------------------------------------------------------


def _fa3_build_flags() -> dict[str, bool]:
    """The build flags the installed FlashAttention-3 was compiled with (its setup writes them into the module
    flash_attn_config, which fa3-fwd ships as fa3_fwd_config); {} when unknown (a full build)."""
    if fa3_func is None:
        return {}
    return dict(getattr(sys.modules.get("flash_attn_config"), "CONFIG", {}).get("build_flags", {}))


_FA3_FLAGS = _fa3_build_flags()
# What the installed kernels take: fa3-fwd has bf16 kernels only (fp16 and the backward pass compiled out); a full
# source build has fp16 and gradients too. Anything else is refused with the reason, never silently run elsewhere.
FA3_DTYPES: tuple[torch.dtype, ...] = (
    (torch.bfloat16,) if _FA3_FLAGS.get("FLASHATTENTION_DISABLE_FP16") else (torch.bfloat16, torch.float16)
)
FA3_FORWARD_ONLY = bool(_FA3_FLAGS.get("FLASHATTENTION_DISABLE_BACKWARD"))
FA3_DEVICE_TYPES = frozenset({"cuda"})  # the tests add "cpu" for a stand-in kernel written from the documentation
# Calls with at most this many queries let the kernel split the keys over the multiprocessors (num_splits=0: its
# heuristic; the sampler's cached steps, whose few query tiles cannot fill the GPU); longer query sets run one split
# (the default). FlashAttention-3's early releases take no num_splits: they run their own default.
FA3_SPLIT_KV_MAX_QUERIES = 256
_FA3_TAKES_SPLITS = fa3_func is not None and "num_splits" in inspect.signature(fa3_func).parameters
FA3_INSTALL = (
    "attn_implementation='flash_attention_3' needs FlashAttention-3 (NVIDIA Hopper GPUs): pip install "
    "'longllada[fa3]' (fa3-fwd, the prebuilt forward-only wheel), or flash-attn 3 built from source (its "
    "flash_attn_interface module)"
)


def check_flash_attention_3() -> None:
    """Raise ImportError naming the install when no FlashAttention-3 kernel imports here."""
    if fa3_func is None:
        raise ImportError(FA3_INSTALL)


def _check_fa3_inputs(q: torch.Tensor) -> None:
    """The installed kernels' limits, checked before the call (their own errors do not name the fix)."""
    if q.device.type not in FA3_DEVICE_TYPES:
        raise ValueError(
            f"attn_implementation='flash_attention_3' got tensors on {q.device.type}; allowed: a CUDA device "
            "(move the model with .to('cuda'), or choose attn_implementation='sdpa')"
        )
    if q.dtype not in FA3_DTYPES:
        allowed = " or ".join(str(dtype).removeprefix("torch.") for dtype in FA3_DTYPES)
        raise ValueError(
            f"attn_implementation='flash_attention_3' got {str(q.dtype).removeprefix('torch.')} inputs; the "
            f"installed FlashAttention-3 has {allowed} kernels only: load the model with torch_dtype=torch.bfloat16, "
            "or choose attn_implementation='sdpa'"
        )
    if FA3_FORWARD_ONLY and q.requires_grad:
        raise ValueError(
            "attn_implementation='flash_attention_3' got inputs that need gradients, and the installed "
            "FlashAttention-3 (fa3-fwd) has no backward pass: run inference under torch.no_grad(), or train with "
            "attn_implementation='sdpa'"
        )


def flash_attention_3(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask, scale: float
) -> torch.Tensor:
    """FlashAttention-3 (Shah et al. 2024): grouped-query heads as they are; key padding by key offsets into the
    unpadded layout (varlen with ``seqused_k``: no copy where each row's real keys are one run, as with left
    padding), block-causal block by block; no other 4D pattern. At most :data:`FA3_SPLIT_KV_MAX_QUERIES` queries
    split the keys (split-KV)."""
    if mask.allowed is not None:
        raise ValueError(_no_general_mask("flash_attention_3"))
    if mask.block_length is not None:
        return block_causal_attention(flash_attention_3, q, k, v, mask, scale, patterns=False)
    _check_fa3_inputs(q)
    splits = {"num_splits": 0} if q.shape[2] <= FA3_SPLIT_KV_MAX_QUERIES and _FA3_TAKES_SPLITS else {}
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, L, H, D]: the layout the model makes, no copy
    if mask.key_padding is None:
        return _first(fa3_func(q, k, v, softmax_scale=scale, causal=False, **splits))
    return _fa3_padded(q, k, v, mask.key_padding, scale, splits)


def _fa3_padded(q, k, v, key_padding, scale, splits: dict):
    """Padded keys through the varlen call. Row b's queries are q[b] (pad queries included: they attend to their
    row's real keys and stay finite); its keys start at ``cu_seqlens_k[b]`` in the flattened [B·S] keys and number
    ``seqused_k[b]``. Where each row's real keys are one run (one host read to know it), the offsets point into k
    and v as they are; otherwise (or while a CUDA graph is being recorded, where no host read is possible) each
    row's real keys are first gathered to its front, in order (a stable sort)."""
    b, lq, s = q.shape[0], q.shape[1], k.shape[1]
    device = q.device
    runs = None if _capturing(device) else _key_runs(key_padding)
    row_starts = torch.arange(0, (b + 1) * s, s, device=device, dtype=torch.int32)  # [B + 1]
    if runs is not None:
        starts, counts, longest = runs
        cu_k = row_starts.clone()
        cu_k[:-1] += starts
    else:
        counts = key_padding.sum(-1, dtype=torch.int32)
        order = (~key_padding).to(torch.uint8).argsort(dim=-1, stable=True)  # [B, S]: real keys first, in order
        order = order[:, :, None, None]
        k, v = k.gather(1, order.expand(k.shape)), v.gather(1, order.expand(v.shape))
        cu_k, longest = row_starts, s
    out = fa3_varlen_func(
        q.reshape(b * lq, *q.shape[2:]),
        k.reshape(b * s, *k.shape[2:]),
        v.reshape(b * s, *v.shape[2:]),
        cu_seqlens_q=torch.arange(0, (b + 1) * lq, lq, device=device, dtype=torch.int32),
        cu_seqlens_k=cu_k,
        max_seqlen_q=lq,
        max_seqlen_k=longest,
        seqused_k=counts,
        softmax_scale=scale,
        causal=False,
        **splits,
    )
    out = _first(out)
    return out.view(b, lq, *out.shape[1:])


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _key_runs(key_padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """(first real key [B] int32, real keys [B] int32, the most real keys of a row) when every row's real keys
    are one contiguous run (left or right padding, or none), else None. One read back to the host."""
    keys = key_padding.shape[-1]
    position = torch.arange(keys, device=key_padding.device)
    counts = key_padding.sum(-1, dtype=torch.int32)
    starts = torch.where(key_padding, position, keys).amin(-1).to(torch.int32)
    in_run = (position >= starts[:, None]) & (position < (starts + counts)[:, None])
    one_run, longest = torch.stack(((key_padding == in_run).all().to(torch.int32), counts.max())).tolist()
    return (starts, counts, int(longest)) if one_run else None


# The backends by ``config._attn_implementation`` (transformers' names). Another kernel plugs in by adding an entry
# with the same signature.
ATTENTION_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "sdpa": sdpa_attention,
    "eager": eager_attention,
    "flash_attention_2": flash_attention,
    "flash_attention_3": flash_attention_3,
}


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask | torch.Tensor | None,
    backend: str,
) -> torch.Tensor:
    """Bidirectional attention by the backend registered under ``backend``. q [B, H, L, D]; k, v [B, Hkv, S, D];
    mask: an :class:`AttentionMask`, a [B, S] key padding mask (True = attend) or None. Returns [B, L, H, D].
    Pad queries attend to real keys only, so their rows stay finite."""
    if not isinstance(mask, AttentionMask):
        mask = AttentionMask(key_padding=mask)
    return ATTENTION_FUNCTIONS[backend](q, k, v, mask, 1.0 / math.sqrt(q.shape[-1]))


# -- the operations of a layer, plain --------------------------------------------------------------------------


class PlainOps:
    """The operations inside the modules, each written once and plainly (as transformers' ``modeling_llama.py``).
    ``fast_longllada.FastOps`` computes the same values with fewer passes over memory (inference only); the
    modules' ``forward`` take either as ``ops``."""

    @staticmethod
    def rms_norm(norm: LongLLaDARMSNorm, x: torch.Tensor) -> torch.Tensor:
        return norm(x)

    @staticmethod
    def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """apply_rotary(x, cos, sin), copied into ``out`` when given (a cache buffer's slice)."""
        y = apply_rotary(x, cos, sin)
        return y if out is None else out.copy_(y)

    attention = staticmethod(attention)

    @staticmethod
    def linears(modules: tuple[nn.Module, ...], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each module applied to x (projections of the same input: q/k/v, or gate and up)."""
        return tuple(module(x) for module in modules)

    @staticmethod
    def add_residual(update: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """residual + update (the fast path adds in place into ``update``, which it then owns)."""
        return residual + update

    @staticmethod
    def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """silu(gate) * up (Shazeer 2020)."""
        return F.silu(gate) * up


# -- modules ----------------------------------------------------------------------------------------------------


class AttentionNames(NamedTuple):
    """The attention's submodules under a checkpoint's names (transformers' Llama/Qwen2 names by default)."""

    q: str = "q_proj"
    k: str = "k_proj"
    v: str = "v_proj"
    qkv: str = "query_key_value"  # the fused projection, when there is one (LLaDA2, GPT-NeoX)
    o: str = "o_proj"
    q_norm: str = "q_norm"
    k_norm: str = "k_norm"


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: q/k/v projections (separate, or one fused ``query_key_value``
    split as [heads, kv heads, kv heads] × head_dim), optional biases, optional per-head RMSNorm of q and k
    (OLMoE / LLaDA-MoE's ``qk_layernorm``, applied before RoPE), optional clipping of q/k/v, grouped-query heads,
    RoPE over the rotary part of each head, the backend of ``config._attn_implementation``, output projection.

    The submodules carry the checkpoint's names (``names``; a family's subclass renames them). LLaDA's official
    block holds its attention weights itself, so LLaDA's block is a subclass of this one (see
    :class:`LongLLaDABlock`): the weights keep their keys in both layouts."""

    names = AttentionNames()

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        qkv_bias: bool = False,
        out_bias: bool = False,
        fused_qkv: bool = False,
        qk_norm_eps: float | None = None,
        clip_qkv: float | None = None,
    ):
        super().__init__()
        self.build_attention(
            hidden_size, num_heads, num_kv_heads, head_dim, qkv_bias=qkv_bias, out_bias=out_bias,
            fused_qkv=fused_qkv, qk_norm_eps=qk_norm_eps, clip_qkv=clip_qkv,
        )  # fmt: skip

    def build_attention(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        qkv_bias: bool = False,
        out_bias: bool = False,
        fused_qkv: bool = False,
        qk_norm_eps: float | None = None,
        clip_qkv: float | None = None,
    ) -> None:
        """Create the submodules (separate from ``__init__`` so that a block holding them itself can create its
        own modules first, in its checkpoint's order)."""
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.fused_qkv, self.clip_qkv = fused_qkv, clip_qkv
        self.qk_norm = qk_norm_eps is not None
        q_size, kv_size = num_heads * head_dim, num_kv_heads * head_dim
        names = self.names
        if fused_qkv:
            setattr(self, names.qkv, nn.Linear(hidden_size, q_size + 2 * kv_size, bias=qkv_bias))
        else:
            setattr(self, names.q, nn.Linear(hidden_size, q_size, bias=qkv_bias))
            setattr(self, names.k, nn.Linear(hidden_size, kv_size, bias=qkv_bias))
            setattr(self, names.v, nn.Linear(hidden_size, kv_size, bias=qkv_bias))
        setattr(self, names.o, nn.Linear(q_size, hidden_size, bias=out_bias))
        if self.qk_norm:
            setattr(self, names.q_norm, LongLLaDARMSNorm(head_dim, qk_norm_eps))
            setattr(self, names.k_norm, LongLLaDARMSNorm(head_dim, qk_norm_eps))

    def _projections(self, hidden_states: torch.Tensor, query_keep: Positions | None, ops: type[PlainOps] = PlainOps):
        """q [B, Lq, H, D] at the kept positions; k, v [B, L, Hkv, D] at every position (before norms and RoPE)."""
        b, length, _ = hidden_states.shape
        names, d = self.names, self.head_dim
        if self.fused_qkv:
            q_size, kv_size = self.num_heads * d, self.num_kv_heads * d
            q, k, v = getattr(self, names.qkv)(hidden_states).split((q_size, kv_size, kv_size), dim=-1)
            q = _select_positions(q, query_keep) if query_keep is not None else q
        elif query_keep is None or _keeps_every_position(query_keep, length):
            projections = (getattr(self, names.q), getattr(self, names.k), getattr(self, names.v))
            q, k, v = ops.linears(projections, hidden_states)
        else:
            k = getattr(self, names.k)(hidden_states)
            v = getattr(self, names.v)(hidden_states)
            if query_keep is not None:
                hidden_states = _select_positions(hidden_states, query_keep)
            q = getattr(self, names.q)(hidden_states)
        return q.view(b, -1, self.num_heads, d), k.view(b, length, -1, d), v.view(b, length, -1, d)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: AttentionMask,
        past_kv: LayerKV | None,
        backend: str,
        query_keep: Positions | None = None,
        cache_slot: slice | None = None,
        return_kv: bool = True,
        ops: type[PlainOps] = PlainOps,
    ) -> tuple[torch.Tensor, LayerKV | None]:
        """hidden_states [B, L, hidden] (normalised) -> (output [B, Lq, hidden], this pass's rotated keys/values
        [B, Hkv, L, D] or None).

        cos, sin: [B, 1, L, R] tables. query_keep: compute the output only at these positions (keys and values
        still come from every position). cache_slot: ``past_kv`` are whole-sequence buffers; write this pass's
        keys/values into them there and attend over the buffers (no copy of the cache); without it ``past_kv``
        (cached positions) are attended before the input positions. return_kv=False: return None for the keys/
        values (two full-size tensors less held). ops: the implementation of norms, RoPE and attention."""
        names = self.names
        q, k, v = self._projections(hidden_states, query_keep, ops)
        del hidden_states
        if self.qk_norm:
            q, k = ops.rms_norm(getattr(self, names.q_norm), q), ops.rms_norm(getattr(self, names.k_norm), k)
        if self.clip_qkv is not None:
            q, k, v = (t.clamp(-self.clip_qkv, self.clip_qkv) for t in (q, k, v))
        into_cache = past_kv is not None and cache_slot is not None
        v = v.transpose(1, 2)
        if into_cache and not return_kv:  # rotated straight into the cache buffers (no copy of this pass's keys)
            ops.rotary(k.transpose(1, 2), cos, sin, out=past_kv[0][:, :, cache_slot])
            past_kv[1][:, :, cache_slot] = v
            k, v = past_kv
        else:
            k = ops.rotary(k.transpose(1, 2), cos, sin)
        if query_keep is not None:
            cos, sin = (_select_positions(t[:, 0], query_keep)[:, None] for t in (cos, sin))
            mask = mask.for_queries(query_keep)
        b, n_queries = q.shape[:2]
        q = ops.rotary(q.transpose(1, 2), cos, sin)
        new_kv = (k, v) if return_kv else None
        if into_cache:
            if return_kv:
                past_kv[0][:, :, cache_slot] = k
                past_kv[1][:, :, cache_slot] = v
            k, v = past_kv
        elif past_kv is not None:  # cached positions first: the key order does not matter without a causal mask
            k, v = torch.cat((past_kv[0], k), dim=2), torch.cat((past_kv[1], v), dim=2)
        h = ops.attention(q, k, v, mask, backend)  # grouped heads: repeated by the backends that need it
        del q, k, v
        return getattr(self, names.o)(h.reshape(b, n_queries, -1)), new_kv


class SwiGLUMLP(nn.Module):
    """The SwiGLU feed-forward under the usual names: down_proj(silu(gate_proj(x)) * up_proj(x))."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, ops: type[PlainOps] = PlainOps) -> torch.Tensor:
        """x [..., hidden] -> [..., hidden]."""
        return swiglu_feed_forward(self.gate_proj, self.up_proj, self.down_proj, x, ops)


def swiglu_feed_forward(
    gate_proj: nn.Module, up_proj: nn.Module, down_proj: nn.Module, x: torch.Tensor, ops: type[PlainOps]
) -> torch.Tensor:
    """down_proj(silu(gate_proj(x)) * up_proj(x)), for modules held under any names."""
    gate, up = ops.linears((gate_proj, up_proj), x)
    del x
    hidden = ops.swiglu(gate, up)
    del gate, up  # (the fast path's product is gate itself, written in place)
    return down_proj(hidden)


class DecoderLayer(nn.Module):
    """A pre-norm transformer layer with bidirectional attention, as every family here builds it (LLaMA's block,
    Qwen2's layer, OLMoE's): h = x + attention(attention_norm(x)); out = h + feed_forward(mlp_norm(h)).

    A family creates its modules under its checkpoint's names and says which is which through ``attention_norm``,
    ``mlp_norm``, :meth:`attend` (default: the ``self_attn`` module) and :meth:`feed_forward` (default: the
    ``mlp`` module: a :class:`SwiGLUMLP`, or a mixture of experts)."""

    @property
    def attention_norm(self) -> nn.Module:
        return self.input_layernorm

    @property
    def mlp_norm(self) -> nn.Module:
        return self.post_attention_layernorm

    def attend(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, LayerKV | None]:
        """The attention sublayer: :meth:`SelfAttention.forward`'s arguments and result."""
        return self.self_attn(hidden_states, *args, **kwargs)

    def feed_forward(self, x: torch.Tensor, ops: type[PlainOps]) -> torch.Tensor:
        """The MLP sublayer: x [B, L, hidden] (normalised) -> [B, L, hidden]."""
        return self.mlp(x, ops)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: AttentionMask,
        past_kv: LayerKV | None,
        backend: str,
        query_keep: Positions | None = None,
        cache_slot: slice | None = None,
        return_kv: bool = True,
        ops: type[PlainOps] = PlainOps,
    ) -> tuple[torch.Tensor, LayerKV | None]:
        """x [B, L, hidden] -> (x' [B, Lq, hidden], keys/values); the arguments are :meth:`SelfAttention.forward`'s
        (``query_keep`` also cuts the residual stream to the kept positions)."""
        h, new_kv = self.attend(
            ops.rms_norm(self.attention_norm, x), cos, sin, mask, past_kv, backend,
            query_keep=query_keep, cache_slot=cache_slot, return_kv=return_kv, ops=ops,
        )  # fmt: skip
        if query_keep is not None:
            x = _select_positions(x, query_keep)
        x = ops.add_residual(h, x)
        del h
        return ops.add_residual(self.feed_forward(ops.rms_norm(self.mlp_norm, x), ops), x), new_kv


class LongLLaDABlock(DecoderLayer, SelfAttention):
    """LLaDA's "llama" block under the official names: attn_norm, q/k/v_proj, attn_out, ff_norm, ff_proj (gate),
    up_proj, ff_out (down). The official layout keeps the attention's and the feed-forward's weights on the block
    itself (``model.transformer.blocks.N.q_proj``), so the block is its own attention module: a
    :class:`SelfAttention` under LLaDA's names, and a :class:`DecoderLayer`."""

    names = AttentionNames(o="attn_out")

    def __init__(self, config: LongLLaDAConfig):
        nn.Module.__init__(self)
        d = config.d_model
        self.attn_norm = LongLLaDARMSNorm(d, config.rms_norm_eps, config.layer_norm_with_affine)
        self.build_attention(
            d, config.n_heads, config.num_key_value_heads, config.head_dim,
            qkv_bias=config.include_bias or config.include_qkv_bias, out_bias=config.include_bias,
            clip_qkv=config.clip_qkv,
        )  # fmt: skip
        self.ff_norm = LongLLaDARMSNorm(d, config.rms_norm_eps, config.layer_norm_with_affine)
        self.ff_proj = nn.Linear(d, config.intermediate_size, bias=config.include_bias)
        self.up_proj = nn.Linear(d, config.intermediate_size, bias=config.include_bias)
        self.ff_out = nn.Linear(config.intermediate_size, d, bias=config.include_bias)

    forward = DecoderLayer.forward

    @property
    def attention_norm(self) -> nn.Module:
        return self.attn_norm

    @property
    def mlp_norm(self) -> nn.Module:
        return self.ff_norm

    def attend(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, LayerKV | None]:
        return SelfAttention.forward(self, hidden_states, *args, **kwargs)

    def feed_forward(self, x: torch.Tensor, ops: type[PlainOps]) -> torch.Tensor:
        return swiglu_feed_forward(self.ff_proj, self.up_proj, self.ff_out, x, ops)


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

    # attn_implementation="flash_attention_3" is this file's own backend (with the fa3-fwd wheel, which transformers
    # does not know of): its availability is checked here, whatever transformers' checks would say.
    @classmethod
    def _autoset_attn_implementation(cls, config, *args, **kwargs):  # transformers 4.x
        if getattr(config, "_attn_implementation_internal", None) == "flash_attention_3":
            check_flash_attention_3()
            return config
        return super()._autoset_attn_implementation(config, *args, **kwargs)

    def _check_and_adjust_attn_implementation(self, attn_implementation, *args, **kwargs):  # transformers 5
        if attn_implementation == "flash_attention_3":
            check_flash_attention_3()
            return attn_implementation
        return super()._check_and_adjust_attn_implementation(attn_implementation, *args, **kwargs)

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:  # transformers 5: every pass reads the switch anew
        return True

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any):
        # transformers 4.x writes the buffers of the modules that a device_map puts on "disk" to the offload folder
        # but, unless offload_buffers=True, leaves the modules' own buffers at their initial values (a router's
        # expert_bias would be zeros); 5.x loads them into the modules. Offloaded with the weights, they cost a few
        # bytes a pass, and nothing where no module is offloaded.
        if kwargs.get("device_map") is not None and TRANSFORMERS_MAJOR < 5:
            kwargs.setdefault("offload_buffers", True)
        return super().from_pretrained(*args, **kwargs)

    def _initializer_std(self) -> float:
        return self.config.init_std

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self._initializer_std()
        if isinstance(module, nn.Linear):
            init_unloaded(module.weight, std=std)
            init_unloaded(module.bias, fill=0.0)
        elif isinstance(module, nn.Embedding):
            init_unloaded(module.weight, std=std)
        elif isinstance(module, LongLLaDARMSNorm):
            init_unloaded(module.weight, fill=1.0)


@torch.no_grad()
def init_unloaded(tensor: torch.Tensor | None, *, std: float | None = None, fill: float | None = None) -> None:
    """Fill ``tensor`` with N(0, std²) (``std``) or a constant (``fill``), unless from_pretrained has already
    loaded it: transformers 5 flags loaded tensors ``_is_hf_initialized`` and calls ``_init_weights`` on any module
    with an unflagged one, which under a ``device_map`` that offloads a module's weights to disk (they stay on the
    meta device) is also a module whose buffers were loaded, such as a router's ``expert_bias``."""
    if tensor is None or getattr(tensor, "_is_hf_initialized", False):
        return
    if std is not None:
        tensor.normal_(0.0, std)
    else:
        tensor.fill_(fill)


def _check_supported(config: LongLLaDAConfig) -> None:
    """The official checkpoints use one architecture; refuse configs that would need another."""
    expected = {"block_type": "llama", "layer_norm_type": "rms", "activation_type": "silu", "alibi": False}
    for field, allowed in expected.items():
        if getattr(config, field) != allowed:
            raise ValueError(f"{field}={getattr(config, field)!r} is not supported; allowed: {allowed!r}")
    if not config.rope:
        raise ValueError("rope=False is not supported; LLaDA checkpoints use rotary embeddings (rope=True)")
    if config.attention_layer_norm:
        raise ValueError("attention_layer_norm=True is not supported; allowed: False (as the LLaDA checkpoints)")
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
    ``embed(input_ids)``, ``decoder_layers`` (its :class:`DecoderLayer` list), ``final_norm``,
    ``lm_head(hidden)``, a config with ``rotary_dim``, ``rope_theta`` and the RoPE-scaling properties
    (``rope_longllada.RopeScalingMixin``), and the class attributes below. The RoPE tables come from one
    :class:`RotaryEmbedding` (``rotary_emb``, no weights). The sampler talks to every family through ``forward`` (with
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
        self.rotary_emb = RotaryEmbedding(self.config)
        self.post_init()
        self._init_generation_config()
        config = self.config
        logger.info(
            "%s RoPE: trained base %s, trained length %s, rope_scaling=%s, effective base %s",
            type(self).__name__,
            config.rope_theta,
            config.trained_length,
            config.rope_scaling,
            config.rope_effective_base,
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
        """Effective RoPE base for a forward pass spanning ``seq_len`` positions (the NTK rule's θ·λ)."""
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
        block_causal: int | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> LongLLaDAOutput:
        """Bidirectional forward pass. The logits are the checkpoint's own: with ``logits_shifted`` (Dream)
        the logits at position i predict the token at i + 1.

        Args:
            input_ids: [B, L] token ids (or ``inputs_embeds`` [B, L, d_model]).
            attention_mask: [B, C + L], 1 for real tokens, 0 for padding, over the keys in the order
                (cached positions, input positions). Padding is ignored as keys; pad rows' own logits are junk.
                Or any pattern as a boolean [B or 1, 1 or H, L, C + L] mask, True = attend (not with
                flash_attention_2).
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
            block_causal: block diffusion's attention (LLaDA2): with blocks of this many sequence positions, a
                position attends to its own block and every earlier one (beside ``attention_mask``); exact in every
                backend. Needs the keys in sequence order: no cache, or ``cache_slot`` buffers.
            position_embeddings: the RoPE tables (cos, sin) [B, 1, L, R] of ``position_ids``, as ``rotary_emb``
                makes them, when the caller keeps them (the sampler's cached steps reuse one block's tables).
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
            block_causal=block_causal,
            position_embeddings=position_embeddings,
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
        block_causal: int | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
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
        mask = build_attention_mask(attention_mask, block_causal, b, length, past_key_values, cache_slot, x.device)
        if position_ids is None:
            if past_key_values is not None:
                raise ValueError("position_ids is required with past_key_values (the cached positions are unknown)")
            if mask.key_padding is not None and self.positions_from_mask:
                position_ids = (mask.key_padding.long().cumsum(-1) - 1).clamp_min(0)
            else:
                position_ids = torch.arange(length, device=x.device).expand(b, length)
        if rope_seq_len is not None:
            check_number("rope_seq_len", rope_seq_len, minimum=1, integer=True)
        if position_embeddings is not None:
            if not (
                isinstance(position_embeddings, (tuple, list))
                and len(position_embeddings) == 2
                and all(
                    isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[-2] == length for t in position_embeddings
                )
            ):
                raise ValueError(
                    f"position_embeddings must be the (cos, sin) tables of the {length} input positions, two tensors "
                    f"[batch or 1, 1, {length}, rotary dims] as model.rotary_emb(position_ids) makes them"
                )
            cos, sin = position_embeddings
        else:
            if rope_seq_len is None and self.config.rope_per_length:
                rope_seq_len = int(position_ids.max()) + 1
            cos, sin = self.rotary_emb(position_ids.to(x.device), rope_seq_len or 0)

        backend = self.config._attn_implementation or "sdpa"
        if backend not in ATTENTION_FUNCTIONS:
            raise ValueError(
                f"attn_implementation={backend!r} is not supported; allowed: {sorted(ATTENTION_FUNCTIONS)}"
            )
        if backend == "flash_attention_2" and flash_attn_func is None:
            raise ValueError(
                "attn_implementation='flash_attention_2' needs the flash_attn package (pip install longllada[flash])"
            )
        if backend == "flash_attention_3" and fa3_func is None:
            raise ValueError(FA3_INSTALL)

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
                x, cos, sin, mask, past, backend,
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

    def masked_scorer(
        self, sequence: torch.Tensor, n_context: int, length: int, shift: int
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """How the likelihoods read a noised batch: a function from token rows [b, n] (``sequence`` [n], context
        then continuation, with continuation tokens masked) to the final hidden states that score the L
        continuation tokens [b, L, d]. Here one bidirectional pass over each row (LLaDA, Dream; with shifted logits
        the hidden state at j - 1 scores token j); a block-diffusion family reads its blocks as its bound says."""
        keep = slice(n_context - shift, n_context + length - shift)
        return lambda batch: self.encode(batch, hidden_to_keep=keep)[0]

    def _masked_losses(self, context_ids, continuation_ids, mc_num, batch_size, cfg_scale, generator):
        """Per Monte-Carlo sample: (cross-entropies [m] of its masked continuation tokens, mask ratio m / L)."""
        check_number("mc_num", mc_num, minimum=1, integer=True)
        check_number("batch_size", batch_size, minimum=1, integer=True)
        check_number("cfg_scale", cfg_scale, minimum=0)
        device = canvas_device(self)
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
        score = self.masked_scorer(seq, n_ctx, length, shift)
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
            hidden = score(batch)  # [b|2b, L, d]
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


def build_attention_mask(
    attention_mask: torch.Tensor | None,
    block_causal: int | None,
    batch: int,
    length: int,
    past_key_values: tuple[LayerKV, ...] | list[LayerKV] | None,
    cache_slot: slice | None,
    device: torch.device,
) -> AttentionMask:
    """The :class:`AttentionMask` of a forward pass. ``attention_mask`` covers the keys: [B, L], [B, C + L] with a
    cache, [B, C] with ``cache_slot`` buffers; or it is a boolean [B|1, 1|H, L, keys] pattern. A padding mask
    without padding becomes None, so sdpa takes its fastest (mask-free) kernel."""
    if past_key_values is None:
        keys, what = length, f"the {length} input positions"
    else:
        cached = past_key_values[0][0].shape[2]
        if cache_slot is not None:
            keys, what = cached, f"the {cached} positions of the cache buffers"
        else:
            keys, what = cached + length, f"the {cached} cached and {length} input positions"
    key_padding = allowed = None
    if attention_mask is not None:
        shape = tuple(attention_mask.shape)
        if attention_mask.dim() == 4:
            if attention_mask.dtype != torch.bool or shape[0] not in (1, batch) or shape[2:] != (length, keys):
                raise ValueError(
                    f"attention_mask has shape {shape} and dtype {attention_mask.dtype}; a 4D mask must be boolean "
                    f"(True = attend) of shape [batch or 1, 1 or heads, queries, keys] = ({batch}, 1, {length}, "
                    f"{keys}) for {what}"
                )
            allowed = attention_mask.to(device)
        elif attention_mask.dim() != 2 or shape != (batch, keys):
            raise ValueError(
                f"attention_mask has shape {shape}; allowed: [batch, keys] = ({batch}, {keys}) for {what} "
                f"(input_ids has batch {batch} and length {length}), or a boolean [batch, 1, {length}, {keys}]"
            )
        else:
            key_padding = attention_mask.to(device=device, dtype=torch.bool)
            # No padding: no mask (not while a CUDA graph is captured: the check reads the mask on the host; the
            # sampler passes no mask when there is no padding).
            if not (key_padding.is_cuda and torch.cuda.is_current_stream_capturing()) and bool(key_padding.all()):
                key_padding = None
    if block_causal is None:
        return AttentionMask(key_padding, allowed)
    check_number("block_causal", block_causal, minimum=1, integer=True)
    if past_key_values is not None and cache_slot is None:
        raise ValueError(
            "block_causal needs the keys in sequence order: give no past_key_values, or whole-sequence cache "
            "buffers with cache_slot"
        )
    start = range(*cache_slot.indices(keys)).start if cache_slot is not None else 0
    query_index = range(start, start + length)
    block_end = None
    if start // block_causal != (start + length - 1) // block_causal:  # several blocks: their ends, on the device
        block_end = (torch.arange(start, start + length, device=device) // block_causal + 1) * block_causal
    return AttentionMask(
        key_padding, allowed, block_causal, query_index, block_end, {} if block_end is not None else None
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
        """Final projection of already-normalised hidden states [..., d_model] -> logits [..., V], on the device
        of the projection's weight (under a ``device_map``, the untied ``ff_out`` runs its own forward, through
        accelerate's hook; the tied embedding's rows are read where they sit)."""
        if not self.config.weight_tying:
            logits = self.model.transformer.ff_out(hidden)
        else:
            weight = self.model.transformer.wte.weight
            if weight.is_meta:
                raise ValueError(
                    "weight_tying=True with model.transformer.wte offloaded (device_map 'cpu' offload or 'disk'): the "
                    "head reads the embedding's rows outside its forward; allowed: wte on a device (a GPU, or 'cpu' "
                    "in a CPU-only map)"
                )
            logits = F.linear(hidden.to(weight.device), weight)
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


def _keeps_every_position(keep: Positions, length: int) -> bool:
    """``keep`` (as ``logits_to_keep``) selects all ``length`` positions, in order (e.g. a cached step's block)."""
    if isinstance(keep, int):
        return keep == length
    return isinstance(keep, slice) and keep.indices(length) == (0, length, 1)


def _select_indices(index: range | torch.Tensor, keep: Positions) -> range | torch.Tensor:
    """The entries ``keep`` (as ``logits_to_keep``) of a list of sequence indices: a range stays one where it can."""
    if isinstance(index, torch.Tensor):
        return _select_positions(index, keep, dim=0)
    if isinstance(keep, int):
        return index[len(index) - keep :] if keep else index
    if isinstance(keep, slice):
        return index[keep]
    return torch.as_tensor(index)[keep.cpu()]


def _select_positions(x: torch.Tensor, keep: Positions | None, dim: int = 1) -> torch.Tensor:
    """The positions ``keep`` (as ``logits_to_keep``) of x along ``dim`` (default: [B, L, d] -> [B, kept, d])."""
    if keep is None or (isinstance(keep, int) and keep == 0):
        return x
    if isinstance(keep, int):
        return x.narrow(dim, x.shape[dim] - keep, keep)
    if isinstance(keep, slice):
        return x[(slice(None),) * (dim % x.dim()) + (keep,)]
    return x.index_select(dim, keep.to(x.device))
