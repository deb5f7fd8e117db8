"""Speed and memory of LongLLaDA's forward pass and sampler against the official code's cost.

Builds an LLaDA-8B-shaped model (LongLLaDAConfig defaults) with random bf16 weights directly on the GPU, then,
per prompt length, times with CUDA events after warm-up:

- one forward pass (LM head on the 32 answer positions), ours and the official arithmetic's
  (:func:`reference_forward`, the same weights);
- ``generate`` with 32 new tokens (block 32, steps 32): exact mode, ``cache="prefix"``, ``cache="dual"``,
  threshold decoding (0.9, with the dual cache), with the number of forward passes;
- a baseline with the official code's cost: the official forward pass (LM head over every position; our
  model's own forward without ``logits_to_keep`` is no longer that, since its fast paths also speed it up),
  then argmax and softmax over the whole [B, L, V] tensor at every step, top-k over the whole sequence;
- cached steps against their memory floor (weights + cached keys/values read once, over the copy bandwidth
  measured in the same run), eager and replayed from a CUDA graph, and the old concatenating cache;
- peak memory (``torch.cuda.max_memory_allocated``, weights included) and token agreement with the baseline.

Long prompts (``--long``) run fewer things: the prefix-cached answer (its first step is one exact forward
pass) and optionally one baseline step; ``--huge`` lengths exact mode only (a 1-step ``generate`` and/or
``log_likelihood`` with one sample). ``--quick``: per length only the forward, baseline and exact steps.
``--fused-experiment``: the forward pass with RoPE and RMSNorm compiled by torch.compile, swapped in for the
measurement only (what fused elementwise kernels would give). Exact mode and the baseline are
run in full up to ``--full-up-to``; beyond it their first ``--probe-steps`` steps are timed (every step costs
the same: one pass over the whole sequence) and the 32-step time is the median step times 32, marked
"extrapolated". There the baseline and our exact step are also compared on identical states.

The last lines printed are a short table; everything goes to the JSON file (``--out``). ``--tiny`` runs the
whole script on the CPU in seconds with a small model (for checking the script, not for numbers).

    GIT_COMMIT=$(git rev-parse HEAD) python benchmarks/generate_bench.py --long 65536,131072 --huge 262144 \
        --huge-likelihood --long-baseline-up-to 65536 --probe-steps 2 --graph --profile 4096 \
        --fused-experiment --out benchmarks/results/h200.json

(benchmarks/NOTES.md lists the exact commands behind each committed result.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_longllada import LongLLaDAConfig, LongLLaDAModelLM  # noqa: E402
from modeling_longllada.generation_longllada import (  # noqa: E402
    BlockSchedule,
    DiffusionGenerationConfig,
    rule_for,
    transfer_schedule,
)
from modeling_longllada.modeling_longllada import rotary_cos_sin  # noqa: E402

GEN = 32  # new tokens, block length and steps of the paper's needle setup
GiB = 2**30


class StopGeneration(Exception):
    """Raised from a step callback to end a timed run after its probe steps."""


# -- timing ----------------------------------------------------------------------------------------------------


class Clock:
    """Marks on the device's timeline (CUDA events) or the host clock (CPU)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start, end) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return end - start

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def time_fn(clock: Clock, fn, reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    clock.sync()
    times = []
    for _ in range(reps):
        start = clock.mark()
        fn()
        times.append(clock.seconds(start, clock.mark()))
    return times


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / GiB if device.type == "cuda" else None


# -- the model -------------------------------------------------------------------------------------------------


def build_model(
    config: LongLLaDAConfig, device: torch.device, dtype: torch.dtype, seed: int, model_class=LongLLaDAModelLM
) -> LongLLaDAModelLM:
    """Random weights made where they live: modules built on the meta device, storage allocated on ``device``,
    linear/embedding weights ~ N(0, 0.02²), biases 0 and norm weights 1 (no slow CPU init, no download).
    ``model_class``: LongLLaDAModelLM, or DreamModel with a DreamConfig."""
    with torch.device("meta"):
        model = model_class(config)
    model = model.to(dtype).to_empty(device=device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    std = getattr(config, "init_std", None) or config.initializer_range
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
                param.fill_(1.0)
            elif name.endswith(".bias"):
                param.zero_()
            else:
                param.normal_(0.0, std, generator=generator)
    return model


def model_counts(config: LongLLaDAConfig) -> dict:
    d, mlp, layers = config.d_model, config.intermediate_size, config.n_layers
    kv = config.num_key_value_heads * config.head_dim
    block = d * d * 2 + d * kv * 2 + 3 * d * mlp + 2 * d
    vocab = config.embedding_size or config.vocab_size
    return {
        "block_params": block * layers,
        "head_params": vocab * d,
        "embedding_params": vocab * d,
        "total_params": block * layers + vocab * d * (1 if config.weight_tying else 2) + d,
    }


def forward_flops(config: LongLLaDAConfig, length: int, head_positions: int) -> float:
    """2·params·L for the blocks, 4·L²·d per layer for attention (QKᵀ and PV), 2·V·d per LM-head position."""
    counts = model_counts(config)
    attention = 4.0 * length * length * config.d_model * config.n_layers
    return 2.0 * counts["block_params"] * length + attention + 2.0 * counts["head_params"] * head_positions


def cached_step_bytes(config: LongLLaDAConfig, cache_length: int, bytes_per_value: int = 2) -> float:
    """Bytes a cached step must read at least: every weight once (embedding rows aside) and the cached keys
    and values of every layer once."""
    counts = model_counts(config)
    weights = (counts["block_params"] + counts["head_params"]) * bytes_per_value
    kv = 2 * config.n_layers * cache_length * config.num_key_value_heads * config.head_dim * bytes_per_value
    return float(weights + kv)


# -- the baseline: the official code's cost -----------------------------------------------------------------------


def _rope_reference(x, cos, sin):
    """The RoPE formula as the official model computes it: float32 copy, rotate, two products."""
    dtype = x.dtype
    x = x.float()
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat((-x2, x1), dim=-1) * sin).to(dtype)


def _rmsnorm_reference(x, weight, eps):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


@torch.no_grad()
def reference_forward(model, input_ids: torch.Tensor, head_positions: slice | None = None) -> torch.Tensor:
    """The official modeling file's arithmetic on our model's weights: every position through every
    layer, float32 RoPE and RMSNorm as written there, sdpa with torch's own kernel choice, and the LM head on
    every position (or ``head_positions``). This is the baseline's forward pass: it costs what the official
    model costs, whatever our model's own fast paths do. Returns logits [B, L or kept, V]."""
    config, t = model.config, model.model.transformer
    b, length = input_ids.shape
    heads, head_dim = config.n_heads, config.head_dim
    cos, sin = rotary_cos_sin(
        torch.arange(length, device=input_ids.device)[None], head_dim, config.rope_theta, input_ids.device
    )
    x = t.wte(input_ids)
    for block in t.blocks:
        n = _rmsnorm_reference(x, block.attn_norm.weight, block.attn_norm.eps)
        q, k, v = (
            proj(n).view(b, length, heads, head_dim).transpose(1, 2)
            for proj in (block.q_proj, block.k_proj, block.v_proj)
        )
        q, k = _rope_reference(q, cos, sin), _rope_reference(k, cos, sin)
        h = F.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(head_dim))
        x = x + block.attn_out(h.transpose(1, 2).reshape(b, length, -1))
        m = _rmsnorm_reference(x, block.ff_norm.weight, block.ff_norm.eps)
        x = x + block.ff_out(F.silu(block.ff_proj(m)) * block.up_proj(m))
    x = _rmsnorm_reference(x, t.ln_f.weight, t.ln_f.eps)
    if head_positions is not None:
        x = x[:, head_positions]
    return model.lm_head(x)


@torch.no_grad()
def baseline_generate(model, prompt, mask_id, on_step=None):
    """The official sampler loop (LLaDA's Appendix B; temperature 0, low_confidence, one block) over the official forward
    pass (:func:`reference_forward`): logits over the whole sequence, argmax and softmax over [B, L, V], confidence −inf after the block, top-k over the
    whole sequence. The one change from the official code: the mask token is never a prediction (its logit is
    set to −inf in place, no copy), as our sampler does, so that tokens can be compared."""
    batch, prompt_len = prompt.shape
    x = torch.cat((prompt, prompt.new_full((batch, GEN), mask_id)), dim=1)
    schedule = transfer_schedule(GEN, GEN)
    for step, k in enumerate(schedule):
        mask_index = x == mask_id
        logits = reference_forward(model, x)  # [B, L, V]: the official model's head runs on every position
        logits[..., mask_id] = -torch.inf
        x0 = logits.argmax(dim=-1)
        probs = torch.softmax(logits, dim=-1)  # [B, L, V]
        x0_p = probs.gather(-1, x0[..., None]).squeeze(-1)
        del logits, probs
        x0_p[:, prompt_len + GEN :] = -torch.inf
        x0 = torch.where(mask_index, x0, x)
        confidence = torch.where(mask_index, x0_p, -torch.inf)
        transfer = torch.zeros_like(x0, dtype=torch.bool)
        for row in range(batch):
            transfer[row, confidence[row].topk(k).indices] = True
        x[transfer] = x0[transfer]
        if on_step is not None:
            on_step(step, x)
    return x


def random_tokens(config, shape, seed: int, device) -> torch.Tensor:
    """Random ordinary token ids: below the special tokens (LLaDA's start at 126080) and the mask, above the
    first thousand (so a prompt never starts with the pad token, which would read as left padding)."""
    high = min(120000, config.mask_token_id, config.eos_token_id if config.eos_token_id > 2 else config.mask_token_id)
    low = 1000 if high > 2000 else 2
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed)).to(device)


# -- parts of the run ------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git_commit": os.environ.get("GIT_COMMIT", "unknown"),
        "git_dirty": os.environ.get("GIT_DIRTY", "unknown"),
        "device": str(device),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / GiB, 1),
            multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.sm", "--format=csv,noheader"]
            env["driver_and_clocks"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as err:
            env["driver_and_clocks"] = f"nvidia-smi failed: {err}"
    return env


def ceilings(device: torch.device, clock: Clock, small: bool) -> dict:
    """Copy bandwidth (bytes read + written per second) and the bf16 matrix-product rate, on random data."""
    n = 2**20 if small else 2**29  # fp32 elements: 2 GiB on the GPU
    buffers = [torch.randn(n, device=device), torch.empty(n, device=device)]
    copy = statistics.median(time_fn(clock, lambda: buffers[1].copy_(buffers[0]), reps=10, warmup=2))
    buffers.clear()
    size = 256 if small else 8192
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    gemm = statistics.median(time_fn(clock, lambda: a @ b, reps=10, warmup=3))
    return {
        "copy_bytes": 2 * 4 * n,
        "copy_s": copy,
        "copy_bandwidth_Bps": 2 * 4 * n / copy,
        "gemm_size": size,
        "gemm_s": gemm,
        "gemm_flops_per_s": 2 * size**3 / gemm,
    }


def attention_kernels(device, clock, config, lengths, cached_lengths) -> list[dict]:
    """sdpa's kernels one layer at a time, q/k/v laid out as the model makes them ([B, L, H, D] transposed).
    Accuracy: ‖out − ref‖/‖ref‖ against float32 attention of the same bf16 inputs, on a slice of queries."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from modeling_longllada.modeling_longllada import attention

    h, d = config.n_heads, config.head_dim
    backends = {
        "default": None,
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    rows = []
    shapes = [(n, n) for n in lengths] + [(GEN, n) for n in cached_lengths]
    for n_q, n_k in shapes:
        q = torch.randn(1, n_q, h * d, device=device, dtype=torch.bfloat16).view(1, n_q, h, d).transpose(1, 2)
        k, v = (
            torch.randn(1, n_k, h * d, device=device, dtype=torch.bfloat16).view(1, n_k, h, d).transpose(1, 2)
            for _ in range(2)
        )
        scale = 1 / math.sqrt(d)
        sub = slice(0, min(n_q, 256))
        ref = torch.softmax((q[:, :, sub].float() @ k.float().transpose(-1, -2)) * scale, -1) @ v.float()
        flops = 4.0 * n_q * n_k * d * h
        reps = 20 if n_q == GEN else max(2, min(10, int(2e13 // flops)))
        row = {"queries": n_q, "keys": n_k, "flops": flops}
        for name, backend in list(backends.items()) + [("model_auto", "auto")]:
            if backend == "auto":

                def run(q=q, k=k, v=v):
                    return attention(q, k, v, None, "sdpa")
            else:
                context = nullcontext if backend is None else (lambda b=backend: sdpa_kernel(b))

                def run(context=context, q=q, k=k, v=v, scale=scale):
                    with context():
                        return F.scaled_dot_product_attention(q, k, v, scale=scale)

            try:
                times = time_fn(clock, run, reps=reps, warmup=1)
                out = run()
                out = out.transpose(1, 2) if backend == "auto" else out  # attention() returns [B, L, H, D]
                err = ((out[:, :, sub].float() - ref).norm() / ref.norm()).item()
                row[name] = {
                    "s": statistics.median(times),
                    "tflops": flops / statistics.median(times) / 1e12,
                    "rel_err": err,
                }
            except RuntimeError as error:  # a kernel that does not take this shape
                row[name] = {"error": str(error).splitlines()[0][:200]}
        rows.append(row)
    return rows


def elementwise_rewrites(device, clock, config, length) -> dict:
    """The float32 RoPE and RMSNorm as first written vs the fast path's, at one layer's size: time and bitwise
    equality."""
    from modeling_longllada.fast_longllada import rms_norm, rotary
    from modeling_longllada.modeling_longllada import LongLLaDARMSNorm, rotary_cos_sin

    h, d = config.n_heads, config.head_dim
    x = torch.randn(1, length, h * d, device=device, dtype=torch.bfloat16)
    xh = x.view(1, length, h, d).transpose(1, 2)
    cos, sin = rotary_cos_sin(torch.arange(length, device=device)[None], d, config.rope_theta, device)
    norm = LongLLaDARMSNorm(h * d, config.rms_norm_eps).to(device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(h * d, device=device) + 0.5)
    reps = 20
    out = {"length": length}
    with torch.no_grad():
        for name, old, new in (
            ("rope", lambda: _rope_reference(xh, cos, sin), lambda: rotary(xh, cos, sin)),
            ("rmsnorm", lambda: _rmsnorm_reference(x, norm.weight, norm.eps), lambda: rms_norm(norm, x)),
        ):
            out[name] = {
                "before_s": statistics.median(time_fn(clock, old, reps)),
                "after_s": statistics.median(time_fn(clock, new, reps)),
                "bitwise_equal": bool(torch.equal(old(), new())),
            }
    return out


def cached_step_variants(model, device, clock, length, reps, try_graph) -> dict:
    """One prefix-cached step (32 queries over a cache of ``length`` + 32 positions, one block) three ways:
    the old concatenating cache, the whole-sequence buffers the sampler now uses, and those replayed from a
    CUDA graph (launch overhead gone). Random keys/values: the cost does not depend on their values."""
    config = model.config
    total = length + GEN
    shape = (1, total, config.num_key_value_heads, config.head_dim)
    buffers = tuple(
        tuple(torch.randn(shape, device=device, dtype=model.dtype).transpose(1, 2) for _ in range(2))
        for _ in range(config.n_layers)
    )
    tokens = random_tokens(config, (1, GEN), 1, device)
    positions = torch.arange(length, total, device=device)[None]
    full_mask = torch.ones(1, total, dtype=torch.long, device=device)
    out = {}
    with torch.no_grad():
        concat_kv = tuple((k[:, :, :length], v[:, :, :length]) for k, v in buffers)
        concat_mask = full_mask[:, :length]

        def concat_step():
            return model(
                tokens, attention_mask=torch.cat((concat_mask, full_mask[:, length:]), 1), position_ids=positions,
                past_key_values=concat_kv, logits_to_keep=slice(0, GEN), rope_seq_len=total,
            ).logits  # fmt: skip

        def slot_step():
            return model(
                tokens, position_ids=positions, past_key_values=buffers, cache_slot=slice(length, total),
                logits_to_keep=slice(0, GEN), rope_seq_len=total,
            ).logits  # fmt: skip

        out["concat_s"] = statistics.median(time_fn(clock, concat_step, reps, warmup=2))
        out["slot_s"] = statistics.median(time_fn(clock, slot_step, reps, warmup=2))
        if try_graph and device.type == "cuda":
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        slot_step()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    graph_logits = slot_step()
                out["graph_s"] = statistics.median(time_fn(clock, graph.replay, reps, warmup=2))
                eager = slot_step()
                graph.replay()
                out["graph_matches_eager"] = bool(torch.equal(graph_logits, eager))
                del graph
            except RuntimeError as error:
                out["graph_error"] = str(error).splitlines()[0][:200]
    return out


def kernel_profile(model, device, length: int) -> dict:
    """One forward pass under the profiler: device time by kernel family, and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    x = random_tokens(model.config, (1, length + GEN), 7, device)
    with torch.no_grad():
        model(x, logits_to_keep=GEN)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(x, logits_to_keep=GEN)
            torch.cuda.synchronize()
    families = {"attention": 0.0, "gemm": 0.0, "other": 0.0}
    kernels = []
    for event in prof.key_averages():
        micros = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)
        if not micros or event.key.startswith(("cuda", "Memcpy", "Memset")) and micros == 0:
            continue
        name = event.key.lower()
        if any(tag in name for tag in ("flash", "fmha", "cudnn", "attention", "sdpa")):
            family = "attention"
        elif any(tag in name for tag in ("gemm", "xmma", "cutlass", "nvjet", "matmul", "sm90")):
            family = "gemm"
        else:
            family = "other"
        families[family] += micros / 1e6
        kernels.append((micros / 1e6, event.count, event.key[:120]))
    kernels.sort(reverse=True)
    return {"length": length, "seconds_by_family": families, "top_kernels": kernels[:20]}


def run_generate(model, prompt, clock, probe_steps=None, **kwargs):
    """``model.generate`` timed with an event after every step. With ``probe_steps`` the run ends after that
    many steps. Returns (sequences or None, total seconds, per-step seconds, forward passes)."""
    marks = [clock.mark()]

    def on_step(block, step, x):
        marks.append(clock.mark())
        if probe_steps is not None and len(marks) > probe_steps:
            raise StopGeneration

    try:
        out = model.generate(
            prompt, max_new_tokens=GEN, block_length=GEN, return_dict_in_generate=True, step_callback=on_step, **kwargs
        )
    except StopGeneration:
        out = None
    end = clock.mark()
    steps = [clock.seconds(a, b) for a, b in zip(marks, marks[1:])]
    total = clock.seconds(marks[0], end)
    return (
        out.sequences if out is not None else None,
        total,
        steps,
        out.num_forward_passes if out is not None else len(steps),
    )


def run_baseline(model, prompt, clock, device, probe_steps=None):
    marks = [clock.mark()]

    def on_step(step, x):
        marks.append(clock.mark())
        if probe_steps is not None and len(marks) > probe_steps:
            raise StopGeneration

    try:
        seq = baseline_generate(model, prompt, model.config.mask_token_id, on_step)
    except StopGeneration:
        seq = None
    end = clock.mark()
    steps = [clock.seconds(a, b) for a, b in zip(marks, marks[1:])]
    return seq, clock.seconds(marks[0], end), steps


def compare_steps(model, prompt, device, n_states) -> dict:
    """Baseline step vs our exact step on identical states (the baseline's own trajectory): same committed
    position and token? Also how far apart the block logits are, and the margins where they disagree."""
    mask_id = model.config.mask_token_id
    settings = DiffusionGenerationConfig.resolve(model, None, {"max_new_tokens": GEN})
    rule = rule_for(model, settings)
    prompt_len = prompt.shape[1]
    x = torch.cat((prompt, prompt.new_full((1, GEN), mask_id)), dim=1)
    block = slice(prompt_len, prompt_len + GEN)
    schedule = transfer_schedule(GEN, GEN)
    same, logit_rel, top_token_agree, margins = [], [], [], []
    with torch.no_grad():
        for step in range(n_states):
            base_logits = reference_forward(model, x)[:, block].clone()
            ours_logits = model(x, logits_to_keep=block).logits
            k = schedule[step]
            base_logits[..., mask_id] = -torch.inf
            plan = BlockSchedule((k,))
            base_next = rule.step(x[:, block], base_logits, plan, 0, None)
            ours_next = rule.step(x[:, block], ours_logits, plan, 0, None)
            same.append(bool(torch.equal(base_next, ours_next)))
            b32, o32 = base_logits.float(), ours_logits.float()
            finite = torch.isfinite(b32)
            logit_rel.append(((o32 - b32)[finite].norm() / b32[finite].norm()).item())
            o32[..., mask_id] = -torch.inf
            top_token_agree.append((b32.argmax(-1) == o32.argmax(-1)).float().mean().item())
            top2 = b32.topk(2, dim=-1).values
            margins.append((top2[..., 0] - top2[..., 1]).median().item())
            x[:, block] = base_next
    return {
        "states": n_states,
        "same_commit": same,
        "block_logits_rel_diff": logit_rel,
        "argmax_agreement": top_token_agree,
        "median_top2_logit_margin": margins,
    }


def agreement(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    if a is None or b is None:
        return None
    return (a[:, -GEN:] == b[:, -GEN:]).float().mean().item()


def bench_length(model, device, clock, length, args, copy_bw) -> dict:
    config = model.config
    mask_id = config.mask_token_id
    prompt = random_tokens(config, (1, length), length, device)
    x = torch.cat((prompt, prompt.new_full((1, GEN), mask_id)), dim=1)
    total = length + GEN
    block = slice(length, total)
    res = {"prompt_length": length}
    full_run = length <= args.full_up_to
    fwd_reps = 5 if length <= 8192 else (3 if length <= 16384 else 2)
    exact_flops = forward_flops(config, total, GEN)
    base_flops = forward_flops(config, total, total)

    with torch.no_grad():
        # one forward pass: ours and the official arithmetic's, LM head on the 32 answer positions in both
        peak_reset(device)
        times = time_fn(clock, lambda: model(x, logits_to_keep=block), fwd_reps)
        res["forward"] = {"s": statistics.median(times), "all_s": times, "peak_gib": peak_gib(device)}
        times = time_fn(clock, lambda: reference_forward(model, x, block), fwd_reps)
        res["forward_reference"] = {"s": statistics.median(times), "all_s": times}
        for key in ("forward", "forward_reference"):
            res[key]["tflops"] = exact_flops / res[key]["s"] / 1e12

    # baseline (official cost) and exact mode
    peak_reset(device)
    base_seq, base_total, base_steps = run_baseline(
        model, prompt, clock, device, None if full_run else args.probe_steps
    )
    base_step = statistics.median(base_steps)
    res["baseline"] = {
        "s": base_total if full_run else base_step * GEN,
        "extrapolated": not full_run,
        "step_s": base_step,
        "steps_timed": len(base_steps),
        "tflops": base_flops / base_step / 1e12,
        "peak_gib": peak_gib(device),
    }
    peak_reset(device)
    exact_seq, exact_total, exact_steps, passes = run_generate(
        model, prompt, clock, None if full_run else args.probe_steps, steps=GEN
    )
    exact_step = statistics.median(exact_steps)
    res["exact"] = {
        "s": exact_total if full_run else exact_step * GEN,
        "extrapolated": not full_run,
        "step_s": exact_step,
        "steps_timed": len(exact_steps),
        "forward_passes": passes if full_run else GEN,
        "tflops": exact_flops / exact_step / 1e12,
        "peak_gib": peak_gib(device),
        "token_agreement_with_baseline": agreement(exact_seq, base_seq),
    }
    if not full_run:
        res["step_comparison"] = compare_steps(model, prompt, device, args.probe_steps)

    if args.quick:
        return res
    # caches and threshold decoding (full runs: one full pass, then cheap steps)
    floor_s = cached_step_bytes(config, total) / copy_bw
    for name, kwargs in (
        ("prefix", {"cache": "prefix"}),
        ("prefix_eager", {"cache": "prefix", "cuda_graph": False}),
        ("dual", {"cache": "dual"}),
        ("threshold_dual", {"cache": "dual", "threshold": 0.9}),
    ):
        peak_reset(device)
        seq, t, steps, passes = run_generate(model, prompt, clock, None, steps=GEN, **kwargs)
        cached = steps[1:]
        res[name] = {
            "s": t,
            "forward_passes": passes,
            "first_step_s": steps[0] if steps else None,
            "cached_step_s": statistics.median(cached) if cached else None,
            "cached_step_floor_s": floor_s,
            "peak_gib": peak_gib(device),
            "token_agreement_with_exact": agreement(seq, exact_seq),
            "token_agreement_with_baseline": agreement(seq, base_seq),
        }
    res["cached_step_variants"] = cached_step_variants(model, device, clock, length, 10, args.graph)
    res["cached_step_variants"]["floor_s"] = floor_s
    res["cached_step_bytes"] = cached_step_bytes(config, total)
    return res


def bench_long(model, device, clock, length, args, copy_bw, huge: bool) -> dict:
    """Long prompts: memory and time of what fits. Not huge: one forward, the prefix-cached answer, one
    baseline step (optional). Huge: exact mode only — a 1-step generate and log_likelihood with one sample."""
    config = model.config
    prompt = random_tokens(config, (1, length), length, device)
    total = length + GEN
    res = {"prompt_length": length}
    if huge and not args.huge_skip_generate:
        peak_reset(device)
        seq, t, steps, passes = run_generate(model, prompt, clock, None, steps=1)
        res["exact_1_step"] = {
            "s": t,
            "forward_passes": passes,
            "tflops": forward_flops(config, total, GEN) / t / 1e12,
            "peak_gib": peak_gib(device),
            "no_mask_left": bool((seq != config.mask_token_id).all()),
        }
    if huge:
        if args.huge_likelihood:
            peak_reset(device)
            start = clock.mark()
            bound, _ = model.log_likelihood(prompt[0, :-GEN], prompt[0, -GEN:], mc_num=1, batch_size=1)
            res["log_likelihood_mc1"] = {
                "s": clock.seconds(start, clock.mark()),
                "value": bound,
                "peak_gib": peak_gib(device),
            }
        return res
    peak_reset(device)
    seq, t, steps, passes = run_generate(model, prompt, clock, None, steps=GEN, cache="prefix")
    res["prefix"] = {
        "s": t,
        "forward_passes": passes,
        "first_step_s": steps[0],
        "cached_step_s": statistics.median(steps[1:]),
        "cached_step_floor_s": cached_step_bytes(config, total) / copy_bw,
        "peak_gib": peak_gib(device),
    }
    # The prefix run's first step is one exact forward pass over the whole sequence (keeping its keys/values).
    forward_s = steps[0]
    res["forward"] = {
        "s": forward_s,
        "tflops": forward_flops(config, total, GEN) / forward_s / 1e12,
        "source": "prefix step 1",
    }
    res["exact_extrapolated_s"] = forward_s * GEN
    if length <= args.long_baseline_up_to:
        peak_reset(device)
        try:
            _, _, base_steps = run_baseline(model, prompt, clock, device, probe_steps=1)
            res["baseline"] = {
                "step_s": base_steps[0],
                "s": base_steps[0] * GEN,
                "extrapolated": True,
                "peak_gib": peak_gib(device),
            }
        except torch.OutOfMemoryError as error:
            res["baseline"] = {"error": str(error).splitlines()[0][:200]}
    return res


def fused_experiment(model, device, clock, lengths) -> dict:
    """What fused elementwise kernels would give: RoPE and RMSNorm (the official formulas) compiled by
    torch.compile (one Triton kernel each instead of 7–8 passes over memory), swapped into the model for this
    measurement only. Times the forward pass and compares its logits with the eager model's."""
    from modeling_longllada.fast_longllada import FastOps

    with torch.no_grad():
        ops = model.block_ops(torch.empty(0, device=device))  # the path this run's forward passes take
    eager_rope, eager_norm = ops.__dict__.get("rotary"), ops.__dict__.get("rms_norm")

    def restore():
        for name, value in (("rotary", eager_rope), ("rms_norm", eager_norm)):
            if value is None and name in ops.__dict__:
                delattr(ops, name)
            elif value is not None:
                setattr(ops, name, value)

    assert ops is FastOps or device.type != "cuda", "the fast path runs on CUDA inputs by default"
    fused_rope = torch.compile(_rope_reference, dynamic=True, fullgraph=True)
    fused_norm = torch.compile(_rmsnorm_reference, dynamic=True, fullgraph=True)
    out: dict = {}
    try:
        for length in lengths:
            x = random_tokens(model.config, (1, length + GEN), 3, device)
            keep = slice(length, length + GEN)
            with torch.no_grad():
                eager_logits = model(x, logits_to_keep=keep).logits.float()
                ops.rotary = staticmethod(fused_rope)
                ops.rms_norm = staticmethod(lambda norm, h: fused_norm(h, norm.weight, norm.eps))
                t0 = time.perf_counter()
                fused_logits = model(x, logits_to_keep=keep).logits.float()
                clock.sync()
                first_call = time.perf_counter() - t0
                reps = 5 if length <= 8192 else 2
                times = time_fn(clock, lambda x=x, keep=keep: model(x, logits_to_keep=keep), reps, warmup=0)
                restore()
            out[length] = {
                "forward_s": statistics.median(times),
                "first_call_s_with_compile": first_call,
                "logits_rel_diff_vs_eager": ((fused_logits - eager_logits).norm() / eager_logits.norm()).item(),
                "argmax_agreement_vs_eager": (fused_logits.argmax(-1) == eager_logits.argmax(-1)).float().mean().item(),
            }
    except Exception as error:  # noqa: BLE001 - an experiment: record why it failed, keep the run's results
        out["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    finally:
        restore()
    return out


# -- report ----------------------------------------------------------------------------------------------------


def table(results: dict) -> str:
    def f(value, spec=".2f"):
        return "-" if value is None else format(value, spec)

    lines = [
        "len | fwd s (official) TF/s | exact 32 s | base 32 s | x | prefix s (x) | dual s | thr s/passes "
        "| cached ms (eager) / floor | peak GiB ours/base | agree",
    ]
    for length, r in results["lengths"].items():
        if "prefix" not in r:  # --quick
            lines.append(
                f"{length} | fwd {r['forward']['s']:.3f} ({r['forward_reference']['s']:.3f}) | exact "
                f"{r['exact']['s']:.2f} | base {r['baseline']['s']:.2f} | peak GiB {f(r['exact']['peak_gib'])}/"
                f"{f(r['baseline']['peak_gib'])} | same commit {r.get('step_comparison', {}).get('same_commit')}"
            )
            continue
        ex, base, pre = r["exact"], r["baseline"], r["prefix"]
        agree = ex["token_agreement_with_baseline"]
        if agree is None and "step_comparison" in r:
            sc = r["step_comparison"]["same_commit"]
            agree_text = f"{sum(sc)}/{len(sc)} steps"
        else:
            agree_text = f(agree, ".0%") if agree is not None else "-"
        lines.append(
            f"{length} | {f(r['forward']['s'], '.3f')} ({f(r['forward_reference']['s'], '.3f')}) "
            f"{f(r['forward']['tflops'], '.0f')} | {f(ex['s'])}{'*' if ex['extrapolated'] else ''} | "
            f"{f(base['s'])}{'*' if base['extrapolated'] else ''} | {f(base['s'] / ex['s'])} | "
            f"{f(pre['s'])} ({f(base['s'] / pre['s'], '.1f')}) | {f(r['dual']['s'])} | "
            f"{f(r['threshold_dual']['s'])}/{r['threshold_dual']['forward_passes']} | "
            f"{f(pre['cached_step_s'] * 1e3, '.1f')} ({f(r['prefix_eager']['cached_step_s'] * 1e3, '.1f')}) / "
            f"{f(pre['cached_step_floor_s'] * 1e3, '.1f')} | "
            f"{f(ex['peak_gib'], '.1f')}/{f(base['peak_gib'], '.1f')} | {agree_text}"
        )
    for length, r in results.get("long", {}).items():
        parts = [f"{length}:"]
        if "forward" in r:
            parts.append(f"fwd {r['forward']['s']:.2f}s {r['forward']['tflops']:.0f}TF/s")
        if "prefix" in r:
            p = r["prefix"]
            parts.append(
                f"prefix {p['s']:.2f}s (cached {p['cached_step_s'] * 1e3:.1f}ms, peak {f(p['peak_gib'], '.1f')}GiB)"
            )
        if "baseline" in r:
            parts.append(f"base {f(r['baseline'].get('s'))}s* peak {f(r['baseline'].get('peak_gib'), '.1f')}")
        if "exact_1_step" in r:
            e = r["exact_1_step"]
            parts.append(f"exact 1-step {e['s']:.1f}s {e['tflops']:.0f}TF/s peak {f(e['peak_gib'], '.1f')}GiB")
        if "log_likelihood_mc1" in r:
            e = r["log_likelihood_mc1"]
            parts.append(f"loglik {e['s']:.1f}s peak {f(e['peak_gib'], '.1f')}GiB")
        if "error" in r:
            parts.append(r["error"])
        lines.append(" ".join(parts))
    lines.append("* = median step x 32 (extrapolated); x = speed-up over the baseline")
    return "\n".join(lines)


def attention_table(rows: list[dict]) -> str:
    lines = [
        "attn q x k | " + " | ".join(("default", "flash", "cudnn", "efficient", "model_auto")) + "  (ms, TF/s, err)"
    ]
    for row in rows:
        cells = []
        for name in ("default", "flash", "cudnn", "efficient", "model_auto"):
            cell = row.get(name, {})
            cells.append(
                "err" if "error" in cell else f"{cell['s'] * 1e3:.2f} {cell['tflops']:.0f} {cell['rel_err']:.1e}"
            )
        lines.append(f"{row['queries']}x{row['keys']} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="small model on the CPU: checks the script in seconds")
    parser.add_argument("--d-model", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--mlp", type=int)
    parser.add_argument("--vocab", type=int)
    parser.add_argument("--lengths", default="4096,8192,16384,32768")
    parser.add_argument("--long", default="", help="longer prompts: forward + prefix-cached answer")
    parser.add_argument("--huge", default="", help="longest prompts: exact 1-step generate only")
    parser.add_argument("--huge-likelihood", action="store_true", help="also log_likelihood (mc 1) at --huge")
    parser.add_argument("--huge-skip-generate", action="store_true", help="no 1-step generate at --huge")
    parser.add_argument("--fused-experiment", action="store_true", help="time torch.compile'd RoPE/RMSNorm")
    parser.add_argument("--quick", action="store_true", help="per length: forward, baseline and exact only")
    parser.add_argument("--deadline-s", type=float, default=1e9, help="skip later parts past this many seconds")
    parser.add_argument(
        "--long-baseline-up-to", type=int, default=0, help="one baseline step at --long lengths to here"
    )
    parser.add_argument("--full-up-to", type=int, default=8192, help="run exact and baseline in full up to here")
    parser.add_argument("--probe-steps", type=int, default=3)
    parser.add_argument("--parts", default="ceilings,attention,elementwise,lengths,long")
    parser.add_argument("--graph", action="store_true", help="also time cached steps replayed from a CUDA graph")
    parser.add_argument("--profile", type=int, default=0, help="profile one forward pass at this prompt length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/generate_bench.json")
    args = parser.parse_args(argv)

    run_start = time.perf_counter()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sizes = dict(d_model=256, n_layers=4, n_heads=4, n_kv_heads=4, mlp_hidden_size=512, vocab_size=1024,
                 embedding_size=1024, mask_token_id=1000, eos_token_id=1, pad_token_id=1) if args.tiny else {}  # fmt: skip
    for flag, field in (("d_model", "d_model"), ("layers", "n_layers"), ("mlp", "mlp_hidden_size")):
        if getattr(args, flag) is not None:
            sizes[field] = getattr(args, flag)
    if args.heads is not None:
        sizes.update(n_heads=args.heads, n_kv_heads=args.heads)
    if args.vocab is not None:
        sizes.update(vocab_size=args.vocab, embedding_size=args.vocab, mask_token_id=args.vocab - 2)
    config = LongLLaDAConfig(**sizes)
    clock = Clock(device)
    parts = set(args.parts.split(","))
    lengths = [int(n) for n in args.lengths.split(",") if n]
    if args.tiny and args.lengths == parser.get_default("lengths"):
        lengths = [64, 128]
    results: dict = {
        "environment": environment(device),
        "config": config.to_diff_dict(),
        "counts": model_counts(config),
    }
    results["arguments"] = vars(args)
    torch.manual_seed(args.seed)

    def save() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))

    print(json.dumps(results["environment"]), flush=True)
    results["ceilings"] = ceilings(device, clock, small=args.tiny)
    copy_bw = results["ceilings"]["copy_bandwidth_Bps"]
    print(f"copy {copy_bw / 1e12:.2f} TB/s, gemm {results['ceilings']['gemm_flops_per_s'] / 1e12:.0f} TF/s", flush=True)
    if "attention" in parts and device.type == "cuda":
        cached = lengths + [int(n) for n in args.long.split(",") if n]
        results["attention"] = attention_kernels(
            device, clock, config, [n + GEN for n in lengths], [n + GEN for n in cached]
        )
        print(attention_table(results["attention"]), flush=True)
        save()
    if "elementwise" in parts:
        results["elementwise"] = elementwise_rewrites(device, clock, config, 128 if args.tiny else 32768 + GEN)
        print(json.dumps(results["elementwise"]), flush=True)

    t0 = time.perf_counter()
    model = build_model(config, device, dtype, args.seed)
    clock.sync()
    results["model_build_s"] = time.perf_counter() - t0
    results["weights_gib"] = sum(p.numel() * p.element_size() for p in model.parameters()) / GiB
    print(f"model built in {results['model_build_s']:.1f}s, {results['weights_gib']:.2f} GiB", flush=True)

    if args.profile and device.type == "cuda":
        results["profile"] = kernel_profile(model, device, args.profile)
        print(json.dumps(results["profile"]), flush=True)

    results["lengths"] = {}
    if "lengths" in parts:
        for length in lengths:
            t0 = time.perf_counter()
            results["lengths"][length] = bench_length(model, device, clock, length, args, copy_bw)
            results["lengths"][length]["wall_s"] = time.perf_counter() - t0
            save()
            print(json.dumps({length: results["lengths"][length]}, default=str)[:3000], flush=True)
    results["long"] = {}
    if "long" in parts:
        for text, huge in ((args.long, False), (args.huge, True)):
            for length in (int(n) for n in text.split(",") if n):
                if time.perf_counter() - run_start > args.deadline_s:
                    results["long"][length] = {"error": "skipped: past --deadline-s"}
                    continue
                t0 = time.perf_counter()
                try:
                    results["long"][length] = bench_long(model, device, clock, length, args, copy_bw, huge)
                except torch.OutOfMemoryError as error:
                    results["long"][length] = {"error": "out of memory: " + str(error).splitlines()[0][:200]}
                results["long"][length]["wall_s"] = time.perf_counter() - t0
                save()
                print(json.dumps({length: results["long"][length]}, default=str), flush=True)
    if args.fused_experiment and time.perf_counter() - run_start < args.deadline_s:
        results["fused_experiment"] = fused_experiment(model, device, clock, lengths)
        print(json.dumps({"fused_experiment": results["fused_experiment"]}), flush=True)
    results["run_s"] = time.perf_counter() - run_start
    save()
    if "attention" in results:
        print(attention_table(results["attention"]))
    if "fused_experiment" in results:
        for length, r in results["fused_experiment"].items():
            print(f"fused elementwise {length}: {r}")
    print(table(results))


if __name__ == "__main__":
    main()
