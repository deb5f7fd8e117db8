"""The fast inference path: the plain path's math (``modeling_longllada.PlainOps``) with fewer passes over memory
and a kernel choice for long contexts on Hopper GPUs.

One switch selects it: ``model.set_fast_path(True | False | None)``; None (the default) means on for CUDA inputs.
It is used only when autograd is off (generation, scoring), since it writes into tensors in place. Each piece
computes the same values as its plain counterpart, bit for bit on the CPU (tests check that); on a GPU the only
other difference is which of sdpa's kernels runs (``benchmarks/fast_path_check.py`` compares tokens, logits and
timings of both paths; the measurements are in ``benchmarks/NOTES.md``).

Copied flat into Hub model repos: imports only torch and the files beside it.

Shapes: B batch, H heads, L queries, S keys, D head dim.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache

import torch
import torch.nn.functional as F

# The plain pieces, through `from . import` rather than `from .modeling_longllada import`: modeling_longllada
# imports this file, and transformers 4.46 loops forever on such a cycle when it follows relative imports to save a
# model's code; this form is outside the pattern it follows (the file is saved anyway, as the model's own module).
from . import modeling_longllada as plain

# Below this many elements RoPE keeps the plain form: its few kernels are cheaper than the half-by-half form's
# more numerous ones when launches, not bytes, dominate.
ROTARY_HALVES_MIN_NUMEL = 1 << 20
# sdpa's flash kernel first for at most this many queries over at least this many keys (the sampler's cached
# steps: a block of queries over the whole cache).
FEW_QUERIES, MANY_KEYS = 256, 8192


def rms_norm(norm: plain.LongLLaDARMSNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` with the float32 product x·scale rounded once to x's dtype as it is stored: the values of
    ``(x32 * scale).to(dtype)`` without writing and re-reading a float32 copy (a third fewer bytes)."""
    if x.dtype == torch.float32:
        return norm(x)
    x32 = x.float()
    scale = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.eps)
    del x32
    x = torch.mul(x, scale, out=torch.empty_like(x))
    return x * norm.weight if norm.weight is not None else x


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``plain.apply_rotary`` for large low-precision inputs: the same float32 products and sums, half by half, rounded
    straight into the output (x1·c - x2·s is bit for bit x1·c + (-x2)·s). No float32 copy of x or of rotate(x)
    is written: 15 instead of 24 passes of x's size over memory."""
    if x.dtype == torch.float32 or x.numel() < ROTARY_HALVES_MIN_NUMEL:
        return plain.apply_rotary(x, cos, sin)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.empty_like(x)
    first = x1 * cos[..., :half]
    first -= x2 * sin[..., :half]
    out[..., :half] = first
    del first
    second = x2 * cos[..., half:]
    second += x1 * sin[..., half:]
    out[..., half:] = second
    return out


@cache
def _device_major(device: torch.device) -> int:
    return torch.cuda.get_device_capability(device)[0]


def sdpa_preference(q: torch.Tensor, k: torch.Tensor, masked: bool) -> AbstractContextManager:
    """A context that puts sdpa's flash kernel first for few unmasked queries over many keys on Hopper (or newer),
    else a no-op (torch's own choice). Flash splits the keys over the multiprocessors, while torch's default on
    Hopper (cuDNN, the fastest for long query sets) runs one block per head and query tile. Left alone when the
    caller has narrowed sdpa's backends (e.g. ``sdpa_kernel(SDPBackend.CUDNN_ATTENTION)``): their choice stands."""
    if (
        masked
        or not q.is_cuda
        or q.dtype not in (torch.float16, torch.bfloat16)
        or q.shape[-2] > FEW_QUERIES
        or k.shape[-2] < MANY_KEYS
        or _device_major(q.device) < 9
    ):
        return nullcontext()
    cuda_backends = torch.backends.cuda
    if not (
        cuda_backends.cudnn_sdp_enabled()
        and cuda_backends.flash_sdp_enabled()
        and cuda_backends.mem_efficient_sdp_enabled()
        and cuda_backends.math_sdp_enabled()
    ):
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    try:
        return sdpa_kernel(order, set_priority=True)
    except TypeError:  # torch < 2.6 has no priority order: keep its default choice
        return nullcontext()


def left_padding_starts(key_padding_mask: torch.Tensor) -> list[int] | None:
    """Per row, the index of its first real key when every row is left padding (False then only True), else
    None. Reads the mask back to the host (one synchronisation)."""
    keys = key_padding_mask.shape[-1]
    real = key_padding_mask.sum(-1)
    position = torch.arange(keys, device=key_padding_mask.device)
    is_left_padding = (key_padding_mask == (position >= keys - real[:, None])).all()
    starts = (keys - real).tolist()
    return starts if bool(is_left_padding) else None


def attention_by_row(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, starts: list[int], backend: str
) -> torch.Tensor:
    """Left-padded bidirectional attention as one unmasked call per row over that row's real keys: the values of
    the masked call (pad queries included), with sdpa's fastest kernels, which take no mask (a masked call on
    Hopper falls back to a slower kernel). q [B, H, L, D]; k, v [B, H, S, D]. Returns [B, L, H, D]."""
    out = q.new_empty(q.shape[0], q.shape[2], q.shape[1], q.shape[3])
    for row, start in enumerate(starts):
        out[row : row + 1] = plain.attention(q[row : row + 1], k[row : row + 1, :, start:], v[row : row + 1, :, start:],
                                             None, backend)  # fmt: skip
    return out


def attention_with_preference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None, backend: str
) -> torch.Tensor:
    """``attention`` under :func:`sdpa_preference` (sdpa only); a left-padded batch of many queries on a GPU
    (a padded batch's full pass) row by row, without a mask (:func:`attention_by_row`)."""
    if (
        backend == "sdpa"
        and key_padding_mask is not None
        and q.is_cuda
        and q.shape[-2] > FEW_QUERIES
        and not torch.cuda.is_current_stream_capturing()
    ):
        starts = left_padding_starts(key_padding_mask)
        if starts is not None:
            return attention_by_row(q, k, v, starts, backend)
    preference = sdpa_preference(q, k, key_padding_mask is not None) if backend == "sdpa" else nullcontext()
    with preference:
        return plain.attention(q, k, v, key_padding_mask, backend)


class FastOps(plain.PlainOps):
    """The block's operations on the fast path (see the module docstring)."""

    rms_norm = staticmethod(rms_norm)
    rotary = staticmethod(rotary)
    attention = staticmethod(attention_with_preference)

    @classmethod
    def residual_mlp(cls, p: plain.BlockParts, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``PlainOps.residual_mlp`` with fewer full-size temporaries alive at once: the same values
        (a + b == b + a), computed in place."""
        x = h.add_(x)
        del h
        m = cls.rms_norm(p.mlp_norm, x)
        gate = F.silu(p.gate_proj(m), inplace=True)
        gate *= p.up_proj(m)
        del m
        return p.down_proj(gate).add_(x)
