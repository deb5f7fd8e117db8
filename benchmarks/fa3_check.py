"""FlashAttention-3 as the models' attention backend on one GPU: exactness, speed, and exact mode with it.

    python benchmarks/fa3_check.py --out benchmarks/results/fa3_check_h200.json
    python benchmarks/fa3_check.py --tiny --out /tmp/fa3_check_tiny.json   # CPU, a torch stand-in: checks the script

Needs FlashAttention-3 importable (the fa3-fwd wheel, or flash-attn 3 built from source); without it the sdpa
figures are still taken and the FA3 ones recorded as missing. Parts, each recorded even when another fails (the JSON
is rewritten after each):

- ``kernel``: which FlashAttention-3 imported, its build flags, torch, cuDNN, the GPU.
- ``exactness``: one attention call of random bf16 inputs (32 heads x 128, 1024 and 4096 tokens) by FA3 and by sdpa,
  each against a float64 reference; then the model's backend (``modeling_longllada.flash_attention_3``) against
  sdpa on a left-padded batch (rows of 3000 and 4096 keys: key offsets, no copy), on a batch with a hole in a row
  (the keys gathered), with grouped-query heads (Dream-7B's 28 over 4) and for 32 queries over 4096 keys (split-KV).
- ``speed``: one non-causal call of L x L (4k, 8k, 16k, 32k, 128k) by sdpa (torch's choice, cuDNN on Hopper), sdpa's
  flash kernel and FA3, in TFLOP/s; 32 queries over 4k / 16k / 32k / 128k keys (a cached step's attention) by sdpa
  (torch's choice, flash) and FA3 (one split, split-KV), in ms per layer, replayed from CUDA graphs of 8 calls over
  4 distinct caches.
- ``model``: an LLaDA-8B-shaped random bf16 model (``generate_bench.build_model``) at each prompt length of the
  paper's NIAH grid (2k-32k tokens, + 32 answer positions): one forward pass with sdpa's kernels and with FA3 for its
  long passes (the fast path's automatic choice, its threshold set to 0), the logits' max |difference| and argmax
  agreement, and the exact-mode step inside ``generate`` (``--probe-steps`` steps timed) with each.
- ``rule``: the FA3_MIN_KEYS these measurements give (the shortest grid length from which FA3's step is faster at
  every longer one), to be set in ``fast_longllada``; and whether FA3's split-KV beats sdpa's flash for 32 queries
  (FA3_FEW_QUERIES_MIN_KEYS).
- ``projection``: the whole NIAH grid in exact mode (6 lengths x 110 answers x 32 steps) from those steps, with sdpa
  and with the rule; also scaled by the committed one-GPU sweep's measured seconds per answer
  (``results/sweep_exact_subsample_v3.json``, an H200), against the 3.3 h target.
- ``official``: the official code's exact step (``generate_bench.baseline_generate``: the LM head and the softmax
  over every position) at 32k and 4k, against our exact step with the rule: the speed-up (target 1.3x at 32k).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generate_bench import (  # noqa: E402
    GEN,
    Clock,
    GiB,
    build_model,
    environment,
    random_tokens,
    run_baseline,
    run_generate,
    time_fn,
)

import modeling_longllada.modeling_longllada as modeling  # noqa: E402
from modeling_longllada import LongLLaDAConfig, fast_longllada  # noqa: E402
from modeling_longllada.modeling_longllada import AttentionMask  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_LENGTHS = (2000, 4000, 8000, 16000, 24000, 32000)  # the NIAH grid's prompt lengths (niah_sweep.py)
ANSWERS_PER_LENGTH = 110  # 11 depths x 10 repeats
TARGET_GRID_S = 3.3 * 3600
NEVER = 1 << 62


# -- small parts -------------------------------------------------------------------------------------------------------


def attention_flops(queries: int, keys: int, heads: int, head_dim: int) -> float:
    """QK^T and PV of a non-causal call: 4 · Lq · Lk · H · D."""
    return 4.0 * queries * keys * heads * head_dim


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads_per_step: int = 4) -> torch.Tensor:
    """float64 attention, q [L, H, D], k/v [S, Hkv, D] -> [L, H, D], a few heads at a time (bounded memory)."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    out = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    scale = q.shape[-1] ** -0.5
    for h in range(0, q.shape[1], heads_per_step):
        qh, kh, vh = (t[:, h : h + heads_per_step].double().transpose(0, 1) for t in (q, k, v))
        out[:, h : h + heads_per_step] = ((qh @ kh.transpose(1, 2)) * scale).softmax(-1).matmul(vh).transpose(0, 1)
    return out


def compare(ours: torch.Tensor, expected: torch.Tensor) -> dict:
    diff = (ours.double() - expected.double()).abs()
    return {
        "max_abs_diff": float(diff.max()),
        "rel_error": float(diff.norm() / expected.double().norm().clamp_min(1e-30)),
    }


def graph_ms(fn, clock: Clock, device: torch.device, reps: int) -> float:
    """Milliseconds of one ``fn()`` replayed from a CUDA graph (eagerly on the CPU)."""
    if device.type != "cuda":
        return statistics.median(time_fn(clock, fn, reps, warmup=1)) * 1e3
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    ms = statistics.median(time_fn(clock, graph.replay, reps, warmup=2)) * 1e3
    del graph
    return ms


def sdpa_kernel_context(name: str | None):
    from contextlib import nullcontext

    if name is None:
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[name])


def sdpa_call(q, k, v, kernel: str | None = None):
    """sdpa on the model's layout: q [B, L, H, D] (and k, v) seen as [B, H, L, D]; heads repeated as the model does."""
    group = q.shape[2] // k.shape[2]
    k, v = (t.repeat_interleave(group, dim=2) if group > 1 else t for t in (k, v))
    with sdpa_kernel_context(kernel):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def fa3_call(q, k, v, splits: int):
    out = modeling.fa3_func(q, k, v, softmax_scale=q.shape[-1] ** -0.5, causal=False, num_splits=splits)
    return out[0] if isinstance(out, tuple) else out


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# -- the parts ---------------------------------------------------------------------------------------------------------


def kernel_info() -> dict:
    info = {"fa3_imported": modeling.fa3_func is not None}
    if modeling.fa3_func is not None:
        info.update(
            module=modeling.fa3_func.__module__,
            build_flags=modeling._FA3_FLAGS,
            dtypes=[str(d) for d in modeling.FA3_DTYPES],
            forward_only=modeling.FA3_FORWARD_ONLY,
        )
    return info


def exactness(device, dtype, heads, head_dim, lengths) -> dict:
    out = {}
    for length in lengths:
        g = torch.Generator(device=device).manual_seed(length)
        q, k, v = (torch.randn(1, length, heads, head_dim, device=device, dtype=dtype, generator=g) for _ in range(3))
        expected = reference(q[0], k[0], v[0])
        row = {"sdpa": compare(sdpa_call(q, k, v)[0], expected)}
        if modeling.fa3_func is not None:
            row["fa3"] = compare(fa3_call(q, k, v, 1)[0], expected)
            row["fa3_split_kv"] = compare(fa3_call(q, k, v, 0)[0], expected)
        out[f"{length}x{length}"] = row
        del q, k, v, expected
        free(device)
    if modeling.fa3_func is None:
        return out
    scale = head_dim**-0.5
    g = torch.Generator(device=device).manual_seed(1)

    def backend_pair(q, k, v, mask):
        """The model's two backends on its layout: q [B, H, L, D] and k, v [B, Hkv, S, D] views of [B, L, H, D]."""
        qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
        fa3 = modeling.flash_attention_3(qt, kt, vt, mask, scale)
        sdpa = modeling.sdpa_attention(qt, kt, vt, mask, scale)
        return fa3, sdpa

    # Left padding: rows of 3000 and 4096 real keys (offsets into the keys as they are).
    q, k, v = (torch.randn(2, 4096, heads, head_dim, device=device, dtype=dtype, generator=g) for _ in range(3))
    padding = torch.ones(2, 4096, dtype=torch.bool, device=device)
    padding[0, :1096] = False
    fa3, sdpa = backend_pair(q, k, v, AttentionMask(key_padding=padding))
    out["left_padded_rows_3000_4096"] = compare(fa3, sdpa)
    holes = padding.clone()
    holes[1, 2000:2100] = False  # row 1's real keys in two runs: gathered
    fa3, sdpa = backend_pair(q, k, v, AttentionMask(key_padding=holes))
    out["padding_with_a_hole"] = compare(fa3, sdpa)
    few = q[:, :32]
    fa3, sdpa = backend_pair(few, k, v, AttentionMask())
    out["32_queries_over_4096_split_kv"] = compare(fa3, sdpa)
    kv_heads = max(1, heads // 8)
    k, v = k[:, :, :kv_heads].contiguous(), v[:, :, :kv_heads].contiguous()
    grouped = q[:, :, : min(heads, kv_heads * 7)].contiguous()  # Dream-7B: 28 query heads over 4 key/value heads
    fa3, sdpa = backend_pair(grouped, k, v, AttentionMask(key_padding=padding))
    out[f"grouped_heads_{grouped.shape[2]}_over_{kv_heads}_left_padded"] = compare(fa3, sdpa)
    return out


def speed(device, dtype, clock, heads, head_dim, lengths, cached_lengths, reps) -> dict:
    out = {"full": [], "few_queries": []}
    for length in lengths:
        g = torch.Generator(device=device).manual_seed(length)
        q, k, v = (torch.randn(1, length, heads, head_dim, device=device, dtype=dtype, generator=g) for _ in range(3))
        flops = attention_flops(length, length, heads, head_dim)
        row = {"queries": length, "keys": length}
        calls = {"sdpa_default": lambda q=q, k=k, v=v: sdpa_call(q, k, v)}
        if device.type == "cuda":
            calls["sdpa_flash"] = lambda q=q, k=k, v=v: sdpa_call(q, k, v, "flash")
        if modeling.fa3_func is not None:
            calls["fa3"] = lambda q=q, k=k, v=v: fa3_call(q, k, v, 1)
        for name, call in calls.items():
            try:
                seconds = statistics.median(time_fn(clock, call, reps, warmup=1))
                row[f"{name}_ms"] = seconds * 1e3
                row[f"{name}_tflops"] = flops / seconds / 1e12
            except RuntimeError as error:
                row[f"{name}_error"] = str(error).splitlines()[0][:200]
        if "fa3_ms" in row and "sdpa_default_ms" in row:
            row["fa3_speedup"] = row["sdpa_default_ms"] / row["fa3_ms"]
        out["full"].append(row)
        print("speed", json.dumps(row), flush=True)
        del q, k, v
        free(device)
    distinct = 4  # caches: more than L2 holds from 4k keys on, as 32 layers' are
    for keys in cached_lengths:
        g = torch.Generator(device=device).manual_seed(keys)
        q = torch.randn(1, 32, heads, head_dim, device=device, dtype=dtype, generator=g)
        caches = [
            tuple(torch.randn(1, keys, heads, head_dim, device=device, dtype=dtype, generator=g) for _ in range(2))
            for _ in range(distinct)
        ]
        row = {"queries": 32, "keys": keys}

        def every(call, caches=caches):
            return lambda: [call(k, v) for _ in range(2) for k, v in caches]

        calls = {"sdpa_default": every(lambda k, v, q=q: sdpa_call(q, k, v))}
        if device.type == "cuda":
            calls["sdpa_flash"] = every(lambda k, v, q=q: sdpa_call(q, k, v, "flash"))
        if modeling.fa3_func is not None:
            calls["fa3_one_split"] = every(lambda k, v, q=q: fa3_call(q, k, v, 1))
            calls["fa3_split_kv"] = every(lambda k, v, q=q: fa3_call(q, k, v, 0))
        for name, call in calls.items():
            try:
                row[f"{name}_ms_per_layer"] = graph_ms(call, clock, device, reps) / (2 * distinct)
            except RuntimeError as error:
                row[f"{name}_error"] = str(error).splitlines()[0][:200]
        out["few_queries"].append(row)
        print("speed", json.dumps(row), flush=True)
        del q, caches
        free(device)
    return out


def model_part(model, device, clock, lengths, probe_steps, reps) -> list[dict]:
    """Per prompt length: the forward pass and the exact step with sdpa's kernels and with FA3 for long passes."""
    rows = []
    config = model.config
    for length in lengths:
        prompt = random_tokens(config, (1, length), length, device)
        x = torch.cat((prompt, prompt.new_full((1, GEN), config.mask_token_id)), 1)
        row = {"prompt_length": length}
        logits = {}
        for name, least in (("sdpa", NEVER), ("fa3", 0)):
            if name == "fa3" and modeling.fa3_func is None:
                continue
            fast_longllada.FA3_MIN_KEYS = least
            with torch.no_grad():
                logits[name] = model(x, logits_to_keep=GEN).logits.float()  # also the warm-up
                forward = lambda x=x: model(x, logits_to_keep=GEN)  # noqa: E731
                times = time_fn(clock, forward, reps if length < 16000 else 2, warmup=0)
            row[f"forward_s_{name}"] = statistics.median(times)
            _, _, steps, _ = run_generate(model, prompt, clock, probe_steps, steps=GEN)
            row[f"exact_step_s_{name}"] = statistics.median(steps)
        if "fa3" in logits:
            a, b = logits["sdpa"], logits["fa3"]
            row["logits_max_abs_diff"] = float((a - b).abs().max())
            row["logits_rel_diff"] = float((a - b).norm() / a.norm())
            row["argmax_agreement"] = float((a.argmax(-1) == b.argmax(-1)).float().mean())
            row["exact_step_speedup"] = row["exact_step_s_sdpa"] / row["exact_step_s_fa3"]
        rows.append(row)
        print("model", json.dumps(row), flush=True)
        del logits, x, prompt
        free(device)
    fast_longllada.FA3_MIN_KEYS = NEVER
    return rows


def rule(model_rows: list[dict], speed_rows: dict) -> dict:
    """FA3_MIN_KEYS: the shortest measured length from which FA3's exact step is faster at every longer one; and
    FA3_FEW_QUERIES_MIN_KEYS: the fewest cached keys from which FA3's split-KV beats sdpa's best kernel for 32 queries
    at every longer measured length (None: never)."""
    out: dict = {}
    rows = [r for r in model_rows if "exact_step_speedup" in r]
    if rows:
        least = None
        for r in sorted(rows, key=lambda r: r["prompt_length"], reverse=True):
            if r["exact_step_speedup"] <= 1.0:
                break
            least = r["prompt_length"] + GEN
        out["FA3_MIN_KEYS"] = least
    few = [r for r in speed_rows.get("few_queries", []) if "fa3_split_kv_ms_per_layer" in r]
    if few:
        least = None
        for r in sorted(few, key=lambda r: r["keys"], reverse=True):
            best_sdpa = min(r[k] for k in ("sdpa_default_ms_per_layer", "sdpa_flash_ms_per_layer") if k in r)
            if r["fa3_split_kv_ms_per_layer"] >= best_sdpa:
                break
            least = r["keys"]
        out["FA3_FEW_QUERIES_MIN_KEYS"] = least
    out["note"] = "set these in modeling_longllada/fast_longllada.py (None: FA3 is never chosen there)"
    return out


def projection(model_rows: list[dict], chosen_min_keys: int | None, grid: tuple[int, ...] = PAPER_LENGTHS) -> dict:
    by_length = {r["prompt_length"]: r for r in model_rows}
    if any(n not in by_length for n in grid):
        return {"skipped": "not every grid length measured"}

    def step(n: int, with_rule: bool) -> float:
        r = by_length[n]
        use_fa3 = with_rule and chosen_min_keys is not None and n + GEN >= chosen_min_keys and "exact_step_s_fa3" in r
        return r["exact_step_s_fa3" if use_fa3 else "exact_step_s_sdpa"]

    out = {}
    for name, with_rule in (("sdpa", False), ("rule", True)):
        seconds = sum(ANSWERS_PER_LENGTH * GEN * step(n, with_rule) for n in grid)
        out[f"grid_s_{name}"] = round(seconds, 1)
        out[f"grid_h_{name}"] = round(seconds / 3600, 3)
    sweep = RESULTS / "sweep_exact_subsample_v3.json"
    if sweep.is_file() and grid == PAPER_LENGTHS:
        measured = json.loads(sweep.read_text())["runs"][0]["per_length"]
        scaled = sum(
            ANSWERS_PER_LENGTH * measured[str(n)]["seconds_per_answer"] * step(n, True) / step(n, False)
            for n in PAPER_LENGTHS
        )
        out["grid_s_measured_sweep_v3"] = round(
            sum(ANSWERS_PER_LENGTH * measured[str(n)]["seconds_per_answer"] for n in PAPER_LENGTHS), 1
        )
        out["grid_s_measured_sweep_v3_scaled_by_rule"] = round(scaled, 1)
        out["grid_h_measured_sweep_v3_scaled_by_rule"] = round(scaled / 3600, 3)
    out["target_s"] = TARGET_GRID_S
    out["method"] = (
        "110 answers x 32 exact steps at each grid length, each step the median of the probe steps inside generate "
        "(one GPU, batch 1); 'scaled': the committed sweep's measured seconds per answer (H200, the CLI, sdpa) "
        "times this card's step ratio rule / sdpa"
    )
    return out


def official(model, device, clock, model_rows, lengths, chosen_min_keys, probe_steps) -> list[dict]:
    rows = []
    by_length = {r["prompt_length"]: r for r in model_rows}
    for length in lengths:
        prompt = random_tokens(model.config, (1, length), length, device)
        _, _, steps = run_baseline(model, prompt, clock, device, probe_steps)
        row = {"prompt_length": length, "official_step_s": statistics.median(steps)}
        mine = by_length.get(length)
        if mine is not None:
            use_fa3 = chosen_min_keys is not None and length + GEN >= chosen_min_keys and "exact_step_s_fa3" in mine
            row["ours_step_s"] = mine["exact_step_s_fa3" if use_fa3 else "exact_step_s_sdpa"]
            row["ours_kernel"] = "fa3" if use_fa3 else "sdpa"
            row["speedup_vs_official"] = row["official_step_s"] / row["ours_step_s"]
            row["speedup_vs_official_sdpa_only"] = row["official_step_s"] / mine["exact_step_s_sdpa"]
        rows.append(row)
        print("official", json.dumps(row), flush=True)
        free(device)
    return rows


# -- a stand-in for --tiny (CPU) ----------------------------------------------------------------------------------------


def install_stand_in() -> None:
    """FlashAttention-3's call contract in torch (float32 on the CPU), to run this script's logic without a GPU."""

    def one(q, k, v, scale):  # q [Lq, H, D], k/v [Lk, Hkv, D]
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        return F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                              scale=scale).transpose(0, 1)  # fmt: skip

    def func(q, k, v, softmax_scale=None, causal=False, num_splits=1, **kwargs):
        return torch.stack([one(q[b], k[b], v[b], softmax_scale) for b in range(q.shape[0])])

    def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_q=None, seqused_k=None,
               softmax_scale=None, causal=False, num_splits=1, **kwargs):  # fmt: skip
        out = torch.zeros_like(q)
        for b in range(len(cu_seqlens_q) - 1):
            qs, qe = int(cu_seqlens_q[b]), int(cu_seqlens_q[b + 1])
            ks = int(cu_seqlens_k[b])
            ke = ks + int(seqused_k[b]) if seqused_k is not None else int(cu_seqlens_k[b + 1])
            out[qs:qe] = one(q[qs:qe], k[ks:ke], v[ks:ke], softmax_scale)
        return out

    modeling.fa3_func, modeling.fa3_varlen_func = func, varlen
    modeling.FA3_DEVICE_TYPES = frozenset({"cuda", "cpu"})
    modeling.FA3_DTYPES = (torch.bfloat16, torch.float32)


# -- main --------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default=",".join(map(str, PAPER_LENGTHS)), help="prompt lengths of the model part")
    parser.add_argument("--attention-lengths", default="4096,8192,16384,32768,131072", help="L of the L x L calls")
    parser.add_argument("--cached-lengths", default="4096,16384,32768,131072", help="keys of the 32-query calls")
    parser.add_argument("--official-lengths", default="32000,4000", help="lengths of the official code's step")
    parser.add_argument("--probe-steps", type=int, default=3, help="exact steps timed per length and kernel")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--parts", default="exactness,speed,model,official")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU with a torch stand-in for FA3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "fa3_check.json")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    heads, head_dim = 32, 128
    if args.tiny:
        install_stand_in()
        heads, head_dim = 4, 16
        args.lengths, args.attention_lengths, args.cached_lengths = "40,72,136", "64,128", "64,256"
        args.official_lengths, args.reps, args.probe_steps = "136,40", 2, 2
    ints = {name: [int(v) for v in getattr(args, name).split(",") if v] for name in
            ("lengths", "attention_lengths", "cached_lengths", "official_lengths")}  # fmt: skip
    parts = set(args.parts.split(","))
    clock = Clock(device)
    results: dict = {"environment": environment(device), "arguments": vars(args) | {"out": str(args.out)},
                     "kernel": kernel_info(), "errors": {}}  # fmt: skip
    print("kernel", json.dumps(results["kernel"], default=str), flush=True)

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str))

    def attempt(name, run):
        started = time.perf_counter()
        try:
            results[name] = run()
        except Exception as error:  # noqa: BLE001 - a part that fails is recorded; the others still run
            results["errors"][name] = f"{type(error).__name__}: {error}"[:2000]
            traceback.print_exc()
        results.setdefault("seconds", {})[name] = round(time.perf_counter() - started, 1)
        save()
        free(device)

    torch.manual_seed(args.seed)
    if "exactness" in parts:
        lengths = [64, 128] if args.tiny else [1024, 4096]
        attempt("exactness", lambda: exactness(device, dtype, heads, head_dim, lengths))
        print("exactness", json.dumps(results.get("exactness"), default=str), flush=True)
    if "speed" in parts:
        attempt("speed", lambda: speed(device, dtype, clock, heads, head_dim, ints["attention_lengths"],
                                       ints["cached_lengths"], args.reps))  # fmt: skip
    model = None
    if parts & {"model", "official"}:
        sizes = {}
        if args.tiny:
            sizes = dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=512,
                         embedding_size=512, mask_token_id=500, eos_token_id=1, pad_token_id=1)  # fmt: skip
        model = build_model(LongLLaDAConfig(**sizes), device, dtype, args.seed)
        if args.tiny:  # the fast path (on by default for CUDA inputs) with a query count the tiny lengths pass
            model.set_fast_path(True)
            fast_longllada.FEW_QUERIES = 8
        results["weights_gib"] = sum(p.numel() * p.element_size() for p in model.parameters()) / GiB
    saved_least = fast_longllada.FA3_MIN_KEYS
    if "model" in parts:
        attempt("model", lambda: model_part(model, device, clock, ints["lengths"], args.probe_steps, args.reps))
    fast_longllada.FA3_MIN_KEYS = saved_least
    results["rule"] = rule(results.get("model", []), results.get("speed", {}))
    chosen = results["rule"].get("FA3_MIN_KEYS")
    grid = tuple(ints["lengths"]) if args.tiny else PAPER_LENGTHS
    results["projection"] = projection(results.get("model", []), chosen, grid)
    save()
    if "official" in parts:
        attempt("official", lambda: official(model, device, clock, results.get("model", []),
                                             ints["official_lengths"], chosen, args.probe_steps))  # fmt: skip
    print(summary(results))
    return 1 if results["errors"] else 0


def summary(results: dict) -> str:
    lines = [f"FlashAttention-3: {results['kernel']}"]
    for row in results.get("speed", {}).get("full", []):
        cells = ", ".join(f"{k[:-7]} {row[k]:.0f}" for k in row if k.endswith("_tflops"))
        lines.append(f"  {row['queries']} x {row['keys']}: TFLOP/s {cells}")
    for row in results.get("speed", {}).get("few_queries", []):
        cells = ", ".join(f"{k[:-14]} {row[k]:.3f}" for k in row if k.endswith("_ms_per_layer"))
        lines.append(f"  32 x {row['keys']}: ms a layer {cells}")
    for row in results.get("model", []):
        lines.append(
            f"  prompt {row['prompt_length']}: exact step sdpa {row['exact_step_s_sdpa'] * 1e3:.1f} ms"
            + (
                f", fa3 {row['exact_step_s_fa3'] * 1e3:.1f} ms ({row['exact_step_speedup']:.3f}x), argmax agreement "
                f"{row['argmax_agreement']:.3f}"
                if "exact_step_s_fa3" in row
                else ""
            )  # fmt: skip
        )
    lines.append(f"rule: {results.get('rule')}")
    lines.append(f"projection: {results.get('projection')}")
    for row in results.get("official", []):
        lines.append(f"  official at {row['prompt_length']}: {row}")
    if results.get("errors"):
        lines.append(f"errors: {list(results['errors'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
