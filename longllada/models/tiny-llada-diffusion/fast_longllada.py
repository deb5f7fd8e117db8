"""The fast inference path: the plain path's math (``modeling_longllada.PlainOps``) with fewer passes over memory
and a kernel choice for long contexts on Hopper GPUs.

One switch selects it: ``model.set_fast_path(True | False | None)``; None (the default) means on for CUDA inputs.
It is used only when autograd is off (generation, scoring), since it writes into tensors in place. Each piece
computes the same values as its plain counterpart, bit for bit on the CPU (tests check that); on a GPU the only
other difference is which of sdpa's kernels runs (``benchmarks/fast_path_check.py`` compares tokens, logits and
timings of both paths; the measurements are in ``benchmarks/NOTES.md``).

On CUDA, in bf16/fp16, the norm, RoPE and the SwiGLU product run as fused Triton kernels when triton imports (one
read and one write of each tensor instead of several float32 temporaries); ``LONGLLADA_TRITON=0`` in the environment,
or ``USE_TRITON = False`` on this module, keeps the torch code. RoPE and SwiGLU give the torch code's values bit for
bit; the norm sums its squares in another order than torch's reduction, so the float32 mean may differ in its last
bit, which moves a rare bf16 output by one unit in the last place (``benchmarks/fused_kernels_check.py`` measures it).

Copied flat into Hub model repos: imports only torch, the files beside it and (optionally) triton.

Shapes: B batch, H heads, L queries, S keys, D head dim, N the normalised size, I the feed-forward width.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

# Optional: without triton (or with a broken one) the torch code runs. One flat try block: transformers 4.46 finds a
# remote-code file's required packages by cutting try...except spans out of its text, and would see an import
# nested deeper as required.
try:
    import triton
    import triton.language as tl
    from triton.language.extra.cuda import libdevice  # triton >= 3.0
except Exception:  # noqa: BLE001 - whatever a broken install raises, the torch code still runs
    triton = tl = libdevice = None

# The plain pieces, through `from . import` rather than `from .modeling_longllada import`: modeling_longllada
# imports this file, and transformers 4.46 loops forever on such a cycle when it follows relative imports to save a
# model's code; this form is outside the pattern it follows (the file is saved anyway, as the model's own module).
from . import modeling_longllada as plain

# Below this many elements RoPE keeps the plain form: its few kernels are cheaper than the half-by-half form's
# more numerous ones when launches, not bytes, dominate.
ROTARY_HALVES_MIN_NUMEL = 1 << 20
# sdpa's flash kernel first for at most this many queries over at least this many keys (the sampler's cached
# steps: a block of queries over the whole cache). Flash splits the keys over the multiprocessors; torch's default
# on Hopper (cuDNN) gives the few query tiles one block each: 32 queries over 8k / 32k / 128k keys took 0.10 /
# 0.19 / 0.54 ms a layer with flash, 0.14 / 0.46 / 1.72 ms by default (one H200). Provisional from 1024 keys (was
# 8192): the 4k cached step's attention is to be measured (benchmarks/cached_step_profile.py, before / after).
FEW_QUERIES, MANY_KEYS = 256, 1024
# FlashAttention-3 in place of sdpa (attn_implementation="sdpa" on the fast path, a Hopper GPU, a kernel that
# imports: see modeling_longllada.flash_attention_3) where it was measured faster: more than FEW_QUERIES queries over
# at least FA3_MIN_KEYS keys (exact mode's passes), and at most FEW_QUERIES queries over at least
# FA3_FEW_QUERIES_MIN_KEYS keys (cached steps, FA3 splitting the keys; None: never). Measured on one H200 in the
# LLaDA-8B model (benchmarks/results/fa3_check_h200.json): the exact step 0.98x sdpa at 2k, 1.03x at 4k, 1.08x at
# 16k, 1.11x at 32k; 32 queries with split-KV 0.026 / 0.071 / 0.128 ms a layer over 4k / 16k / 32k keys against
# sdpa-flash's 0.030 / 0.078 / 0.142. 4032: the NIAH grid's 4k prompts (4,000 tokens and the 32-token answer) on.
FA3_MIN_KEYS = 4032
FA3_FEW_QUERIES_MIN_KEYS: int | None = 4096
# One product for a layer's q/k/v projections and one for its feed-forward's gate and up where a pass has at most
# this many rows (batch x positions: the sampler's cached steps, whose products read every weight for a few rows):
# 4 instead of 7 weight-bound products a layer. The weights are packed once into one tensor whose row blocks the
# separate parameters then are (no memory beyond the weights; see packed_weights). Longer passes (compute-bound)
# keep the separate products, whose kernels exact mode shares with the official code. 0: never. On CUDA only: a
# product over the packed weights can round otherwise than the separate ones (a CPU BLAS may pick another kernel for
# another width), and on the CPU the fast path gives the plain path's values bit for bit (tests add "cpu").
FUSED_PROJECTIONS_MAX_ROWS = 512
FUSED_PROJECTIONS_DEVICE_TYPES = frozenset({"cuda"})

logger = logging.getLogger(__name__)


def _triton_switch() -> bool:
    value = os.environ.get("LONGLLADA_TRITON", "1")
    if value not in ("0", "1"):
        raise ValueError(
            f"LONGLLADA_TRITON={value!r} is not allowed; allowed: '0' (torch code) or '1' (Triton kernels)"
        )
    return value == "1"


# The fused Triton kernels: on unless LONGLLADA_TRITON=0; set False/True here to switch them within a process.
USE_TRITON = _triton_switch()
# Devices whose tensors the kernels take. Tests add "cpu" under triton's interpreter (TRITON_INTERPRET=1).
TRITON_DEVICE_TYPES = frozenset({"cuda"})
# Triton's interpreter (numpy on the CPU) has no libdevice and truncates float32 -> bf16: the kernels then use
# tl.exp and round to bf16 by hand (see _rounded).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


# -- fused Triton kernels -------------------------------------------------------------------------------------
# Each reproduces PyTorch's eager arithmetic: every float32 product and sum rounded on its own (launched with
# enable_fp_fusion=False, so no a·b + c becomes an fma), float32 -> bf16/fp16 rounding to nearest even.


def _jit(fn):
    return triton.jit(fn) if triton is not None else fn


@_jit
def _rounded(v, like_ptr, BF16_BY_HAND: tl.constexpr):
    """float32 ``v`` rounded to nearest even into ``like_ptr``'s element type. By hand for bf16 under the
    interpreter, whose cast truncates: add half a bf16 unit minus one, plus the kept part's last bit (ties to even),
    and keep the upper 16 bits; NaN stays a quiet NaN."""
    if BF16_BY_HAND:
        bits = v.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        bits = tl.where(v != v, 0x7FC0, bits)
        return bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return v.to(like_ptr.dtype.element_ty)


@_jit
def _rms_norm_kernel(
    x_ptr, w_ptr, y_ptr, x_row_stride, y_row_stride, eps, inv_n,
    N: tl.constexpr, HAS_WEIGHT: tl.constexpr, BLOCK: tl.constexpr, ONE_BLOCK: tl.constexpr, INTERPRET: tl.constexpr,
    BF16_BY_HAND: tl.constexpr,
):  # fmt: skip
    """One row of x [rows, N] per program: y = dtype(x32 · rsqrt(mean(x32²) + eps)), then dtype(y · w).
    N is a constant (one compilation per model width, and no masks when N is the block size). The mean is the
    float32 sum of squares times 1/N, as torch's CUDA mean computes it (sum, then the factor); only the order of
    the sum differs. Rows longer than BLOCK take a second pass (the row is then in L2)."""
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    y_row = y_ptr + row * y_row_stride
    cols = tl.arange(0, BLOCK)
    if ONE_BLOCK:
        mask = cols < N
        x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
        total = tl.sum(x * x, axis=0)
    else:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, N, BLOCK):
            mask = start + cols < N
            xs = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
            acc += xs * xs
        total = tl.sum(acc, axis=0)
    mean_square = total * inv_n + eps
    if INTERPRET:  # numpy's 1/sqrt
        scale = tl.math.rsqrt(mean_square)
    else:  # the CUDA rsqrtf torch calls
        scale = libdevice.rsqrt(mean_square)
    if ONE_BLOCK:
        y = _rounded(x * scale, y_ptr, BF16_BY_HAND)
        if HAS_WEIGHT:
            w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            y = _rounded(y.to(tl.float32) * w, y_ptr, BF16_BY_HAND)
        tl.store(y_row + cols, y, mask=mask)
    else:
        for start in range(0, N, BLOCK):
            mask = start + cols < N
            xs = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
            y = _rounded(xs * scale, y_ptr, BF16_BY_HAND)
            if HAS_WEIGHT:
                w = tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
                y = _rounded(y.to(tl.float32) * w, y_ptr, BF16_BY_HAND)
            tl.store(y_row + start + cols, y, mask=mask)


@_jit
def _rotary_kernel(
    x_ptr, cos_ptr, sin_ptr, out_ptr, n_heads, n_rows,
    x_sb, x_sh, x_sl, c_sb, c_sl, s_sb, s_sl, o_sb, o_sh, o_sl,
    HALF: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_HALF: tl.constexpr, BF16_BY_HAND: tl.constexpr,
):  # fmt: skip
    """BLOCK_L positions of one (batch, head) per program. x [B, H, L, D] and out by strides (head dim contiguous);
    cos/sin [B or 1, 1, L, D] float32 (batch stride 0 when broadcast). First half x1·c - x2·s (bit for bit
    x1·c + (-x2)·s), second half x2·c + x1·s, each product and sum rounded in float32. The heads of one block of
    positions are neighbouring programs, so the block's cos/sin come from memory once and from L2 after."""
    b = tl.program_id(1).to(tl.int64)
    h = (tl.program_id(0) % n_heads).to(tl.int64)
    rows = (tl.program_id(0) // n_heads) * BLOCK_L + tl.arange(0, BLOCK_L)
    cols = tl.arange(0, BLOCK_HALF)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < HALF)
    rows = rows.to(tl.int64)[:, None]
    x_at = x_ptr + b * x_sb + h * x_sh + rows * x_sl + cols[None, :]
    c_at = cos_ptr + b * c_sb + rows * c_sl + cols[None, :]
    s_at = sin_ptr + b * s_sb + rows * s_sl + cols[None, :]
    x1 = tl.load(x_at, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_at + HALF, mask=mask, other=0.0).to(tl.float32)
    first = x1 * tl.load(c_at, mask=mask, other=0.0) - x2 * tl.load(s_at, mask=mask, other=0.0)
    second = x2 * tl.load(c_at + HALF, mask=mask, other=0.0) + x1 * tl.load(s_at + HALF, mask=mask, other=0.0)
    o_at = out_ptr + b * o_sb + h * o_sh + rows * o_sl + cols[None, :]
    tl.store(o_at, _rounded(first, out_ptr, BF16_BY_HAND), mask=mask)
    tl.store(o_at + HALF, _rounded(second, out_ptr, BF16_BY_HAND), mask=mask)


@_jit
def _swiglu_kernel(
    gate_ptr, up_ptr, out_ptr, n, n_cols, g_rs, u_rs, o_rs,
    BLOCK: tl.constexpr, ROWS: tl.constexpr, INTERPRET: tl.constexpr, BF16_BY_HAND: tl.constexpr,
):  # fmt: skip
    """out = dtype(dtype(silu(gate)) · up) over n elements, silu as torch's CUDA kernel computes it: x / (1 + expf(-x))
    in float32 with IEEE division (libdevice's expf; plain exp under the interpreter). Contiguous (ROWS false), or
    rows of n_cols contiguous elements at row strides g_rs, u_rs, o_rs (the halves of a fused gate-up product)."""
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    g_at, u_at, o_at = offsets, offsets, offsets
    if ROWS:
        row, col = offsets // n_cols, offsets % n_cols
        g_at, u_at, o_at = row * g_rs + col, row * u_rs + col, row * o_rs + col
    g = tl.load(gate_ptr + g_at, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(up_ptr + u_at, mask=mask, other=0.0).to(tl.float32)
    if INTERPRET:
        e = tl.exp(-g)
    else:
        e = libdevice.exp(-g)
    silu = _rounded(tl.math.div_rn(g, 1.0 + e), out_ptr, BF16_BY_HAND)
    tl.store(out_ptr + o_at, _rounded(silu.to(tl.float32) * u, out_ptr, BF16_BY_HAND), mask=mask)


# Launch signatures already run once (so compiled and loaded): see _launch.
_launched: set[tuple] = set()
_triton_failed = False


def _spec(arg) -> tuple:
    """What triton specialises a kernel on, per argument (or finer): a tensor's dtype and 16-byte alignment,
    an integer's being 1, a multiple of 16, or beyond 32 bits."""
    if isinstance(arg, torch.Tensor):
        return (arg.dtype, arg.data_ptr() % 16 == 0)
    if isinstance(arg, bool) or not isinstance(arg, int):
        return (type(arg),)
    return (int, arg == 1, arg % 16 == 0, not -(2**31) <= arg < 2**31)


def _triton_usable(x: torch.Tensor) -> bool:
    """The kernels take x: triton imported and works, switched on, a low-precision tensor, no autograd."""
    return (
        triton is not None
        and USE_TRITON
        and not _triton_failed
        and x.device.type in TRITON_DEVICE_TYPES
        and x.dtype in (torch.bfloat16, torch.float16)
        and not torch.is_grad_enabled()
    )


def _launch(kernel, grid: tuple[int, ...], args: tuple, num_warps: int, **constants) -> bool:
    """Run ``kernel[grid](*args, **constants)``; False where it did not run (the caller then runs torch's code).

    A signature's first launch compiles the kernel and loads it on the device: never inside a CUDA graph capture
    (the sampler's capture replays an eager warm-up of the same step first, so its kernels are ready; a signature
    first seen while capturing keeps torch's code in the graph). A first launch that fails (a broken triton, no C
    compiler) switches the kernels off for the process, with one warning."""
    global _triton_failed
    device = args[0].device
    if device.type == "cuda" and device.index != torch.cuda.current_device():
        with torch.cuda.device(device):  # triton launches on the current device (a device_map model's later GPUs)
            return _launch(kernel, grid, args, num_warps, **constants)
    key = (kernel, device, num_warps, tuple(sorted(constants.items())), tuple(_spec(a) for a in args))
    if key in _launched:
        kernel[grid](*args, **constants, num_warps=num_warps, enable_fp_fusion=False)
        return True
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return False
    try:
        kernel[grid](*args, **constants, num_warps=num_warps, enable_fp_fusion=False)
    except Exception as error:  # noqa: BLE001 - any failure of triton's toolchain: the torch code runs instead
        _triton_failed = True
        logger.warning(
            "fused Triton kernels switched off, torch code runs instead (%s: %s)", type(error).__name__, error
        )
        return False
    _launched.add(key)
    return True


def triton_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor | None:
    """LLaDA's RMSNorm of x [..., N] (bf16/fp16) by the fused kernel: y [..., N] contiguous, in x's dtype, or None
    where the kernel does not apply (then run the torch code). ``weight`` [N] in x's dtype, or None."""
    n = x.shape[-1]
    if not _triton_usable(x) or x.numel() == 0:
        return None
    if weight is not None and (
        weight.dtype != x.dtype or weight.device != x.device or weight.shape != (n,) or weight.stride() != (1,)
    ):
        return None  # e.g. a float32 weight: torch promotes the product to float32, which the kernel does not
    rows = x.reshape(-1, n)  # a view for the block's inputs (contiguous); a copy otherwise
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    block = min(triton.next_power_of_2(n), 16384)
    launched = _launch(
        _rms_norm_kernel, (rows.shape[0],),
        (rows, weight if weight is not None else rows, y, rows.stride(0), n, float(eps), 1.0 / n),
        num_warps=max(1, min(16, block // 512)), N=n,
        HAS_WEIGHT=weight is not None, BLOCK=block if n <= block else 4096, ONE_BLOCK=n <= block, INTERPRET=INTERPRET,
        BF16_BY_HAND=INTERPRET and x.dtype == torch.bfloat16,
    )  # fmt: skip
    return y if launched else None


def triton_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor | None:
    """``plain.apply_rotary`` of x [B, H, L, D] (bf16/fp16, any strides with the head dim contiguous, e.g. the
    transposed view of [B, L, H, D]) by the fused kernel, or None where it does not apply. cos, sin
    [B or 1, 1, L, D] float32 with the last dim contiguous. Written into ``out`` (x's shape and dtype, head dim
    contiguous: a cache buffer's slice) when given, else into a new tensor of x's layout (``empty_like``)."""
    if not _triton_usable(x) or x.dim() != 4 or x.numel() == 0:
        return None
    if out is not None and (
        out.shape != x.shape or out.dtype != x.dtype or out.device != x.device or out.stride(-1) != 1
    ):
        return None
    b, heads, length, d = x.shape
    for t in (cos, sin):
        if (
            t.dtype != torch.float32
            or t.device != x.device
            or t.dim() != 4
            or t.shape[0] not in (1, b)
            or t.shape[1:] != (1, length, d)
            or t.stride(-1) != 1
        ):
            return None
    if d % 2 or x.stride(-1) != 1:
        return None
    if out is None:
        out = torch.empty_like(x)
        if out.stride(-1) != 1:
            out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    half = d // 2
    block_half = triton.next_power_of_2(half)
    block_l = max(1, min(64, 2048 // block_half, triton.next_power_of_2(length)))

    def batch_stride(t: torch.Tensor) -> int:
        return t.stride(0) if t.shape[0] > 1 else 0

    launched = _launch(
        _rotary_kernel, (heads * triton.cdiv(length, block_l), b),
        (x, cos, sin, out, heads, length, x.stride(0), x.stride(1), x.stride(2), batch_stride(cos), cos.stride(2),
         batch_stride(sin), sin.stride(2), out.stride(0), out.stride(1), out.stride(2)),
        num_warps=4, HALF=half, BLOCK_L=block_l, BLOCK_HALF=block_half,
        BF16_BY_HAND=INTERPRET and x.dtype == torch.bfloat16,
    )  # fmt: skip
    return out if launched else None


def triton_swiglu_(gate: torch.Tensor, up: torch.Tensor) -> bool:
    """gate <- silu(gate) * up in place (gate, up [..., I], same shape, bf16/fp16: contiguous, or rows of I contiguous
    elements at one row stride each, as the two halves of a fused gate-up product), with torch's roundings (silu
    rounded to the dtype, then the product). False where the kernel does not apply (gate untouched)."""
    if (
        not _triton_usable(gate)
        or up.dtype != gate.dtype
        or up.device != gate.device
        or up.shape != gate.shape
        or gate.numel() == 0
    ):
        return False
    block = 4096
    grid = (triton.cdiv(gate.numel(), block),)
    constants = dict(BLOCK=block, INTERPRET=INTERPRET, BF16_BY_HAND=INTERPRET and gate.dtype == torch.bfloat16)
    if gate.is_contiguous() and up.is_contiguous():
        return _launch(_swiglu_kernel, grid, (gate, up, gate, gate.numel(), 1, 0, 0, 0), num_warps=8, ROWS=False,
                       **constants)  # fmt: skip
    gate_rows, up_rows = _as_rows(gate), _as_rows(up)
    if gate_rows is None or up_rows is None:
        return False
    n_cols = gate.shape[-1]
    args = (gate, up, gate, gate.numel(), n_cols, gate_rows.stride(0), up_rows.stride(0), gate_rows.stride(0))
    return _launch(_swiglu_kernel, grid, args, num_warps=8, ROWS=True, **constants)


def _as_rows(t: torch.Tensor) -> torch.Tensor | None:
    """t [..., I] as a view [rows, I] with contiguous rows, or None where no such view exists."""
    if t.stride(-1) != 1:
        return None
    try:
        return t.view(-1, t.shape[-1])
    except RuntimeError:
        return None


# -- the fast path's pieces -----------------------------------------------------------------------------------


def rms_norm(norm: plain.LongLLaDARMSNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``: the fused kernel where it applies (see the module docstring), else torch with the float32 product
    x·scale rounded once to x's dtype as it is stored: the values of ``(x32 * scale).to(dtype)`` without writing
    and re-reading a float32 copy (a third fewer bytes). A norm whose weight is not beside x (a ``device_map`` that
    puts it on another GPU, or offloads it to the meta device between passes) runs its own forward, through which
    accelerate's hook brings x and the weight together."""
    weight = norm.weight
    if x.dtype == torch.float32 or (weight is not None and weight.device != x.device):
        return norm(x)
    y = triton_rms_norm(x, norm.weight, norm.eps)
    if y is not None:
        return y
    x32 = x.float()
    scale = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.eps)
    del x32
    x = torch.mul(x, scale, out=torch.empty_like(x))
    return x * norm.weight if norm.weight is not None else x


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``plain.apply_rotary`` for large low-precision inputs: the same float32 products and sums, half by half, rounded
    straight into the output (x1·c - x2·s is bit for bit x1·c + (-x2)·s). No float32 copy of x or of rotate(x)
    is written: 15 instead of 24 passes of x's size over memory. The fused kernel, where it applies, makes 2. With
    partial rotary (cos/sin narrower than the head) the rotary part is rotated this way and the rest copied.
    ``out``: write the result there (a cache buffer's slice: the kernel then writes the cache directly)."""
    rotary_dim = cos.shape[-1]
    if rotary_dim < x.shape[-1]:
        if out is None:
            out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        rotary(x[..., :rotary_dim], cos, sin, out=out[..., :rotary_dim])
        out[..., rotary_dim:] = x[..., rotary_dim:]
        return out
    if x.dtype != torch.float32:
        done = triton_rotary(x, cos, sin, out)
        if done is not None:
            return done
    if x.dtype == torch.float32 or x.numel() < ROTARY_HALVES_MIN_NUMEL:
        y = plain.apply_rotary(x, cos, sin)
        return y if out is None else out.copy_(y)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    if out is None:
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


def fa3_preferred(q: torch.Tensor, k: torch.Tensor, mask: plain.AttentionMask) -> bool:
    """FlashAttention-3 rather than sdpa for this call (see :data:`FA3_MIN_KEYS`): a kernel that imports and takes
    these inputs (device, dtype, head dim up to 256, no gradients, a Hopper GPU: where it was measured), the shape
    rule, padding as the only mask (block-causal passes run block by block, a shape not measured). Not for a padded
    call while a CUDA graph is recorded, which would gather the keys at every replay."""
    if plain.fa3_func is None or mask.allowed is not None or mask.block_length is not None or q.requires_grad:
        return False
    if q.device.type not in plain.FA3_DEVICE_TYPES or q.dtype not in plain.FA3_DTYPES:
        return False
    if q.shape[-1] > 256 or q.shape[-1] % 8 or (q.is_cuda and _device_major(q.device) != 9):
        return False
    least = FA3_MIN_KEYS if q.shape[-2] > FEW_QUERIES else FA3_FEW_QUERIES_MIN_KEYS
    if least is None or k.shape[-2] < least:
        return False
    return mask.key_padding is None or not (q.is_cuda and torch.cuda.is_current_stream_capturing())


def attention_with_preference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: plain.AttentionMask | None, backend: str
) -> torch.Tensor:
    """``attention`` by FlashAttention-3 where :func:`fa3_preferred`, else under :func:`sdpa_preference` (sdpa only);
    a left-padded batch of many queries on a GPU (a padded batch's full pass, padding its only mask) row by row,
    without a mask (:func:`attention_by_row`)."""
    mask = mask if mask is not None else plain.AttentionMask()
    if backend == "sdpa" and mask.block_length is not None:
        # Runs of query blocks with no share limit (one call a layer at 4k: launches cost more here than the keys
        # a run computes and masks out), each through this function.
        scale = 1.0 / math.sqrt(q.shape[-1])
        return plain.block_causal_attention(_query_run_attention, q, k, v, mask, scale, patterns=True)
    if backend == "sdpa" and fa3_preferred(q, k, mask):
        return plain.attention(q, k, v, mask, "flash_attention_3")
    key_padding_mask = mask.key_padding
    padding_only = mask.allowed is None and mask.block_length is None
    if (
        backend == "sdpa"
        and key_padding_mask is not None
        and padding_only
        and q.is_cuda
        and q.shape[-2] > FEW_QUERIES
        and not torch.cuda.is_current_stream_capturing()
    ):
        starts = left_padding_starts(key_padding_mask)
        if starts is not None:
            return attention_by_row(q, k, v, starts, backend)
    masked = key_padding_mask is not None or not padding_only
    preference = sdpa_preference(q, k, masked) if backend == "sdpa" else nullcontext()
    with preference:
        return plain.attention(q, k, v, mask, backend)


def _query_run_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: plain.AttentionMask, scale: float
) -> torch.Tensor:
    """A run of block-causal queries (its mask a plain one) through :func:`attention_with_preference`: the cached
    step's one block over the cache is an unmasked call of few queries over many keys (``scale`` is the one it
    computes)."""
    return attention_with_preference(q, k, v, mask, "sdpa")


def packed_weights(linears: Sequence[nn.Module]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The weights [N1 + N2 + ..., K] (and biases) of ``linears`` as one tensor whose consecutive row blocks the
    linears' own parameters are, so that one product computes them all (None where they cannot be: not plain
    ``nn.Linear`` modules, accelerate's hooks, meta or mixed tensors, biases on some only).

    The first call copies the weights into one new tensor and makes each parameter a view of its rows (as
    ``moe_longllada`` stacks its experts): the memory at rest stays that of the weights, the checkpoint's keys and
    values stay where they were, and a load or an optimiser step writes through the views. Later calls find the
    parameters already laid out so (their storage and offsets say it, nothing else is kept) and build the view
    over them; a replaced parameter (``.to()``, a new state) is packed again."""
    if not all(type(m) is nn.Linear and getattr(m, "_hf_hook", None) is None for m in linears):
        return None
    weights = [m.weight for m in linears]
    biases = [m.bias for m in linears]
    first = weights[0]
    if any(b is None for b in biases) != all(b is None for b in biases) or first.is_meta:
        return None
    for group in (weights, biases if biases[0] is not None else []):
        if any(t.device != first.device or t.dtype != first.dtype for t in group):
            return None
    if any(w.dim() != 2 or w.shape[1] != first.shape[1] for w in weights):
        return None
    weight = _rows_of_one_tensor(weights)
    bias = _rows_of_one_tensor(biases) if biases[0] is not None else None
    if weight is None or (biases[0] is not None and bias is None):
        if first.is_cuda and torch.cuda.is_current_stream_capturing():
            return None  # never move parameters into a graph's private memory
        weight = _pack(linears, "weight") if weight is None else weight
        bias = _pack(linears, "bias") if biases[0] is not None and bias is None else bias
    return weight, bias


def _rows_of_one_tensor(parts: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The tensor of which ``parts`` are consecutive contiguous row blocks, in order (a view over their storage), or
    None where they are not laid out so."""
    first = parts[0]
    offset = first.storage_offset()
    storage = first.untyped_storage().data_ptr()
    for part in parts:
        if not part.is_contiguous() or part.untyped_storage().data_ptr() != storage or part.storage_offset() != offset:
            return None
        offset += part.numel()
    rows = sum(part.shape[0] for part in parts)
    return torch.as_strided(first, (rows, *first.shape[1:]), first.stride())


@torch.no_grad()
def _pack(modules: Sequence[nn.Module], name: str) -> torch.Tensor:
    """Copy the modules' parameters ``name`` into one tensor and make each a view of its rows; the tensor. Made
    outside inference mode, so that the parameters stay ordinary tensors (trainable later)."""
    parts = [getattr(m, name) for m in modules]
    with torch.inference_mode(False):
        packed = torch.cat([p.detach() for p in parts])
    start = 0
    for part in parts:
        part.data = packed[start : start + part.shape[0]]
        start += part.shape[0]
    return packed


class FastOps(plain.PlainOps):
    """The modules' operations on the fast path (see the module docstring)."""

    rms_norm = staticmethod(rms_norm)
    rotary = staticmethod(rotary)
    attention = staticmethod(attention_with_preference)

    @staticmethod
    def linears(modules: Sequence[nn.Module], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``PlainOps.linears``: for a pass of at most :data:`FUSED_PROJECTIONS_MAX_ROWS` rows, one product with the
        packed weights (:func:`packed_weights`), split into the modules' outputs (views of one tensor)."""
        fits = x.numel() <= FUSED_PROJECTIONS_MAX_ROWS * x.shape[-1]
        if fits and len(modules) > 1 and x.device.type in FUSED_PROJECTIONS_DEVICE_TYPES:
            packed = packed_weights(modules)
            if packed is not None:
                out = F.linear(x, *packed)
                return out.split([m.out_features for m in modules], dim=-1)
        return plain.PlainOps.linears(modules, x)

    @staticmethod
    def add_residual(update: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``PlainOps.add_residual`` in place into ``update`` (a + b == b + a bit for bit): one full-size
        temporary less."""
        return update.add_(residual)

    @staticmethod
    def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """silu(gate) * up written into ``gate`` (the caller's own temporary): one fused kernel where it applies,
        else torch's in-place silu and product, the same roundings as ``PlainOps.swiglu``."""
        if not triton_swiglu_(gate, up):
            F.silu(gate, inplace=True).mul_(up)
        return gate
