"""One cached step of the sampler taken apart: where the time above its floor goes (LLaDA-8B shape, one GPU).

A cached step (Fast-dLLM's prefix or dual cache, Wu et al. 2025) recomputes only the active block: 32 queries
through every layer, attending over the whole sequence's cached keys/values, then the LM head on the block. Its
floor is every weight and every cached key/value read once at the card's copy bandwidth (measured here). On one
H200 at a 4k prompt the step replayed from a CUDA graph took 9.9 ms against a 4.0 ms floor (benchmarks/NOTES.md).

This script builds the model with random bf16 weights on the GPU (``generate_bench.build_model``), fills the caches
with one full pass over a random prompt (``--length`` tokens) and a ``--answer``-token answer of masks, and
measures, with CUDA events (medians of ``--reps``):

- the step as the sampler runs it: eager, and replayed from a CUDA graph recorded by the sampler's own
  ``CachedStepGraph`` (with and without its input copy), for the prefix cache (the block to the end of the
  sequence) and the dual cache (the block alone; with a one-block answer both are the same 32 positions);
- the whole sampler step inside ``generate`` (graph replay + choosing and committing tokens), per step;
- the kernels of one eager step under ``torch.profiler``: device time by family (the blocks' matrix products,
  attention over the cache, the LM head, the fused norm/RoPE/SwiGLU kernels, copies, the rest) and their count;
  the launch gaps are the step's time minus its kernels' time (eager, and in the graph);
- the parts alone, each recorded in a CUDA graph of its own: one layer's projections (separate, and fused as
  one QKV and one gate-up product), attention of 32 queries over the cache with each of sdpa's kernels (and
  FlashAttention-3's ``fa3_fwd`` if it imports, one split and split-KV), the LM head for 32, 16, 8 and 1 rows, the
  RoPE tables the step recomputes, and the sampler's work on the block's logits (its rule's ``step``);
Before and after the changes that bring the step toward its floor, in one process on the same card (the step,
inside ``generate``, and its kernels, for each of ``--variants``, at each of ``--lengths``):

- ``before``: the code as it was: sdpa's flash kernel first only from 8192 keys (``MANY_KEYS``), seven separate
  products a layer (``FUSED_PROJECTIONS_MAX_ROWS = 0``), this step's keys rotated into a new tensor then copied into
  the cache, the RoPE tables recomputed inside every step;
- ``after``: the fast path as it now is: flash first from ``MANY_KEYS`` (1024) keys, one q/k/v and one gate-up
  product a layer over packed weights, keys rotated straight into the cache buffers, one block's RoPE tables made
  once and handed to its steps (``position_embeddings``);
- ``after_fa3``: ``after`` with FlashAttention-3's split-KV for the cached steps (``FA3_FEW_QUERIES_MIN_KEYS = 0``),
  when it imports.

Each variant's logits are compared with ``before``'s (the products over packed weights and another attention kernel
round otherwise in bf16). The last lines printed are the floor, each variant's step and its ratio to the floor, and
a table of the parts. Everything goes to ``--out``. ``--tiny`` runs the measurable parts on the CPU with a small
model (checks the script; no graphs, no device profile).

    python benchmarks/cached_step_profile.py --lengths 4096,32768 --out benchmarks/results/cached_step_profile_h200.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generate_bench import (  # noqa: E402
    Clock,
    GiB,
    build_model,
    cached_step_bytes,
    ceilings,
    environment,
    random_tokens,
    time_fn,
)

from modeling_longllada import LongLLaDAConfig, fast_longllada  # noqa: E402
from modeling_longllada.generation_longllada import (  # noqa: E402
    BlockDenoiser,
    CachedStepGraph,
    DiffusionGenerationConfig,
    rule_for,
)

BLOCK = 32
VARIANTS = ("before", "after", "after_fa3")


@contextmanager
def variant(name: str):
    """The fast path as ``name`` describes it (see the module docstring), restored on exit."""
    saved = (
        fast_longllada.MANY_KEYS,
        fast_longllada.FUSED_PROJECTIONS_MAX_ROWS,
        fast_longllada.FA3_FEW_QUERIES_MIN_KEYS,
        fast_longllada.FastOps.__dict__["rotary"],
        BlockDenoiser.__init__,
    )
    if name == "before":
        fast_longllada.MANY_KEYS = 8192
        fast_longllada.FUSED_PROJECTIONS_MAX_ROWS = 0
        rotate = fast_longllada.rotary

        def rotate_then_copy(x, cos, sin, out=None):
            y = rotate(x, cos, sin)
            return y if out is None else out.copy_(y)

        fast_longllada.FastOps.rotary = staticmethod(rotate_then_copy)
        init = BlockDenoiser.__init__

        def tables_every_step(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.keeps_tables = False

        BlockDenoiser.__init__ = tables_every_step
    elif name == "after_fa3":
        fast_longllada.FA3_FEW_QUERIES_MIN_KEYS = 0
    try:
        yield
    finally:
        (
            fast_longllada.MANY_KEYS,
            fast_longllada.FUSED_PROJECTIONS_MAX_ROWS,
            fast_longllada.FA3_FEW_QUERIES_MIN_KEYS,
            fast_longllada.FastOps.rotary,
            BlockDenoiser.__init__,
        ) = saved


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def graph_ms(fn, clock: Clock, device: torch.device, reps: int) -> float:
    """Milliseconds of ``fn`` replayed from a CUDA graph (eagerly on the CPU)."""
    if device.type != "cuda":
        return median_ms(time_fn(clock, fn, reps, warmup=1))
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    ms = median_ms(time_fn(clock, graph.replay, reps, warmup=2))
    del graph
    return ms


# -- the step as the sampler runs it --------------------------------------------------------------------------------


class CachedStep:
    """The model's state after a block's first pass: whole-sequence key/value buffers, positions, the block. Calls
    the model as the sampler's cached steps do (``cache_slot``, ``logits_to_keep``, ``rope_seq_len``)."""

    def __init__(self, model, prompt_length: int, answer: int, mode: str):
        config, device = model.config, model.device
        self.model, self.mode = model, mode
        prompt = random_tokens(config, (1, prompt_length), prompt_length, device)
        self.x = torch.cat((prompt, prompt.new_full((1, answer), config.mask_token_id)), 1)
        total = self.x.shape[1]
        self.start, self.end = prompt_length, prompt_length + BLOCK
        self.positions = torch.arange(total, device=device)[None]
        with torch.no_grad():
            out = model(self.x, position_ids=self.positions, use_cache=True,
                        logits_to_keep=slice(self.start, self.end), rope_seq_len=total)  # fmt: skip
        self.cache = out.present_key_values
        self.span = slice(self.start, total if mode == "prefix" else self.end)
        self.keep = slice(0, BLOCK)
        self.rope_seq_len = total
        # The block's RoPE tables, made once as the sampler makes them (None: recomputed inside every step).
        self.tables = None

    def tokens(self) -> torch.Tensor:
        return self.x[:, self.span]

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        tables = {"position_embeddings": self.tables} if self.tables is not None else {}
        return self.model(
            tokens, position_ids=self.positions[:, self.span], past_key_values=self.cache, cache_slot=self.span,
            logits_to_keep=self.keep, rope_seq_len=self.rope_seq_len, **tables,
        ).logits  # fmt: skip

    @torch.no_grad()
    def keep_tables(self, keep: bool) -> None:
        self.tables = self.model.rotary_emb(self.positions[:, self.span], self.rope_seq_len) if keep else None


def step_times(step: CachedStep, clock: Clock, device: torch.device, reps: int) -> dict:
    tokens = step.tokens()
    out = {
        "queries": step.span.stop - step.span.start,
        "eager_ms": median_ms(time_fn(clock, lambda: step(tokens), reps, 2)),
    }
    if device.type != "cuda":
        return out
    graph, _ = CachedStepGraph.capture(step, tokens)
    if graph is None:
        out["graph_error"] = "capture failed (see the log)"
        return out
    out["graph_ms"] = median_ms(time_fn(clock, lambda: graph(tokens), reps, 2))  # input copy + replay
    out["graph_replay_only_ms"] = median_ms(time_fn(clock, graph.graph.replay, reps, 2))
    out["graph_input_copy_ms"] = out["graph_ms"] - out["graph_replay_only_ms"]
    out["graph_matches_eager"] = bool(torch.equal(graph(tokens), step(tokens)))
    return out


def sampler_steps(model, prompt_length: int, answer: int, mode: str, clock: Clock) -> dict:
    """Per-step time inside ``generate`` (an event after each step): the graph replay plus the sampler's own
    work (predictions, confidences, commits) and the host's launches between steps."""
    config = model.config
    prompt = random_tokens(config, (1, prompt_length), prompt_length, model.device)
    marks = []

    def on_step(block, step, x):
        marks.append(clock.mark())

    for _ in range(2):  # the first run records the graph; the second is timed
        marks.clear()
        marks.append(clock.mark())
        model.generate(prompt, max_new_tokens=answer, block_length=BLOCK, steps=answer, cache=mode,
                       step_callback=on_step)  # fmt: skip
    steps = [clock.seconds(a, b) for a, b in zip(marks, marks[1:])]
    cached = [s for i, s in enumerate(steps) if i % BLOCK != 0]  # a block's first step is a full pass
    return {"first_step_ms": steps[0] * 1e3, "cached_step_ms": median_ms(cached), "steps": len(steps)}


# -- the kernels of one step ------------------------------------------------------------------------------------------

FAMILIES = (  # (family, substrings of kernel names), first match wins; the LM head is told apart by annotation
    ("attention", ("flash", "fmha", "cudnn", "sdpa", "attention", "fprop")),
    ("triton: norm, RoPE, SwiGLU", ("_rms_norm_kernel", "_rotary_kernel", "_swiglu_kernel", "triton")),
    ("gemm", ("gemm", "nvjet", "cutlass", "xmma", "sm90_", "matmul", "splitk")),
    ("copies", ("copy", "memcpy", "memset", "fill")),
)


def _family(name: str) -> str:
    lowered = name.lower()
    for family, tags in FAMILIES:
        if any(tag in lowered for tag in tags):
            return family
    return "other elementwise"


def kernel_breakdown(step: CachedStep, device: torch.device) -> dict:
    """Device time by kernel family for one eager step (the graph replays the same kernels), with the LM head's
    kernels (annotated) apart from the blocks' products."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    tokens = step.tokens()
    model = step.model
    head = model.lm_head

    def annotated_head(hidden):
        with record_function("lm_head"):
            return head(hidden)

    step(tokens)
    torch.cuda.synchronize(device)
    model.lm_head = annotated_head
    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step(tokens)
            torch.cuda.synchronize(device)
    finally:
        del model.lm_head  # back to the class's method
    families: dict[str, dict] = {}
    kernels, total = [], 0.0
    for event in prof.events():
        if event.device_type != DeviceType.CUDA or getattr(event, "is_user_annotation", False):
            continue
        if event.name.startswith("gpu_user_annotation") or event.name in ("lm_head",):
            continue
        ms = event.time_range.elapsed_us() / 1e3
        family = _family(event.name)
        entry = families.setdefault(family, {"ms": 0.0, "kernels": 0})
        entry["ms"] += ms
        entry["kernels"] += 1
        total += ms
        kernels.append((ms, event.name[:100]))
    head_ms = sum(
        e.device_time_total / 1e3 for e in prof.events() if e.name == "lm_head" and e.device_type == DeviceType.CPU
    )
    if "gemm" in families and head_ms:
        families["lm head (gemm)"] = {"ms": head_ms, "kernels": 1}
        families["gemm"]["ms"] -= head_ms
        families["gemm"]["kernels"] -= 1
    kernels.sort(reverse=True)
    return {"kernels_ms": total, "kernel_count": len(kernels), "families": families, "top": kernels[:15]}


# -- the parts alone ------------------------------------------------------------------------------------------------


def projections(model, clock, device, reps) -> dict:
    """The seven products of every layer for 32 rows, as separate products and fused (QKV, gate-up) over the weights
    packed as the fast path packs them (``fast_longllada.packed_weights``: the parameters become views of one tensor
    a layer, no copy kept; each layer's own, so no reuse from L2 across layers)."""
    blocks = model.model.transformer.blocks
    x = torch.randn(1, BLOCK, model.config.d_model, device=device, dtype=model.dtype)
    h = torch.randn(1, BLOCK, model.config.intermediate_size, device=device, dtype=model.dtype)

    def separate():
        for block in blocks:
            block.q_proj(x), block.k_proj(x), block.v_proj(x), block.attn_out(x)
            block.ff_proj(x), block.up_proj(x), block.ff_out(h)

    out = {"separate_ms": graph_ms(separate, clock, device, reps), "kernels_per_layer_separate": 7}
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    fused = [
        (
            fast_longllada.packed_weights((b.q_proj, b.k_proj, b.v_proj))[0],
            fast_longllada.packed_weights((b.ff_proj, b.up_proj))[0],
        )
        for b in blocks
    ]
    if before is not None:
        out["memory_added_by_packing_gib"] = (torch.cuda.memory_allocated(device) - before) / GiB

    def together():
        for block, (qkv, gate_up) in zip(blocks, fused):
            F.linear(x, qkv), block.attn_out(x), F.linear(x, gate_up), block.ff_out(h)

    out["fused_ms"] = graph_ms(together, clock, device, reps)
    out["kernels_per_layer_fused"] = 4
    return out


def attention_choices(step: CachedStep, clock, device, reps) -> dict:
    """Attention of the block's 32 queries over the cache, every layer (each layer's own keys/values), per kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    config = step.model.config
    heads, dim = config.n_heads, config.head_dim
    q = torch.randn(1, BLOCK, heads, dim, device=device, dtype=step.model.dtype).transpose(1, 2)
    caches = step.cache
    scale = 1 / math.sqrt(dim)
    choices = {"default": None}
    if device.type == "cuda":
        choices.update(flash=SDPBackend.FLASH_ATTENTION, cudnn=SDPBackend.CUDNN_ATTENTION,
                       efficient=SDPBackend.EFFICIENT_ATTENTION)  # fmt: skip
    out = {"keys": caches[0][0].shape[2], "layers": len(caches)}
    for name, backend in choices.items():
        context = nullcontext if backend is None else (lambda b=backend: sdpa_kernel(b))

        def run(context=context):
            with context():
                for k, v in caches:
                    F.scaled_dot_product_attention(q, k, v, scale=scale)

        try:
            out[f"sdpa_{name}_ms"] = graph_ms(run, clock, device, reps)
        except RuntimeError as error:
            out[f"sdpa_{name}_error"] = str(error).splitlines()[0][:200]
    fa3 = _fa3()
    if fa3 is not None and device.type == "cuda":
        q_bshd = q.transpose(1, 2)
        kv_bshd = [(k.transpose(1, 2), v.transpose(1, 2)) for k, v in caches]  # the buffers' memory layout
        for splits in (1, 0):

            def run_fa3(splits=splits):
                for k, v in kv_bshd:
                    fa3.flash_attn_with_kvcache(q_bshd, k, v, softmax_scale=scale, causal=False, num_splits=splits)

            try:
                out[f"fa3_splits{splits}_eager_ms"] = median_ms(time_fn(clock, run_fa3, reps, warmup=2))
                out[f"fa3_splits{splits}_ms"] = graph_ms(run_fa3, clock, device, reps)
            except (RuntimeError, AssertionError) as error:
                out[f"fa3_splits{splits}_error"] = str(error).splitlines()[0][:200]
    elif fa3 is None:
        out["fa3"] = "fa3_fwd not importable"
    return out


def _fa3():
    try:
        import fa3_fwd_config

        sys.modules.setdefault("flash_attn_config", fa3_fwd_config)
        import fa3_fwd_interface

        return fa3_fwd_interface
    except Exception:  # noqa: BLE001 - optional: any failure to import means "not measured"
        return None


def lm_head_rows(model, clock, device, reps) -> dict:
    """The LM head for fewer rows costs as much while its 1 GB of weights dominates (computing it only for the
    still-masked positions would save little)."""
    out = {}
    for rows in (BLOCK, 16, 8, 1):
        hidden = torch.randn(1, rows, model.config.d_model, device=device, dtype=model.dtype)
        out[f"rows_{rows}_ms"] = graph_ms(lambda hidden=hidden: model.lm_head(hidden), clock, device, reps)
    return out


def rope_tables(step: CachedStep, clock, device, reps) -> dict:
    """The cos/sin tables every cached step recomputes from its positions (the same for a block's every step)."""
    positions = step.positions[:, step.span]
    return {"ms": graph_ms(lambda: step.model.rotary_emb(positions, step.rope_seq_len), clock, device, reps)}


def sampler_work(step: CachedStep, clock, device, reps) -> dict:
    """The sampler rule's step on the block's logits (predictions, softmax confidences, the top-k commit), eagerly
    as ``generate`` runs it between graph replays."""
    logits = step(step.tokens())
    settings = DiffusionGenerationConfig.resolve(step.model, None, {"max_new_tokens": BLOCK, "steps": BLOCK})
    rule = rule_for(step.model, settings)
    plan = rule.schedule.block(BLOCK, 1)
    block = step.x[:, step.start : step.end]
    return {"eager_ms": median_ms(time_fn(clock, lambda: rule.step(block, logits, plan, 0, None), reps, 2))}


def variants_at(model, length: int, answer: int, names: list[str], clock, device, reps, floor_ms: float) -> dict:
    """Each variant's step (prefix and dual: eager, graph), its logits against ``before``'s, its step inside
    ``generate`` and (on CUDA) its kernels, at one prompt length."""
    out: dict = {name: {} for name in names}
    for mode in ("prefix", "dual"):
        step = CachedStep(model, length, answer, mode)
        reference = None
        for name in names:
            with variant(name):
                step.keep_tables(name != "before")
                row = step_times(step, clock, device, reps)
                with torch.no_grad():
                    logits = step(step.tokens()).float()
                if reference is None:
                    reference = logits
                row["logits_max_abs_diff_vs_first"] = float((logits - reference).abs().max())
                row["argmax_agreement_vs_first"] = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
                measured = row.get("graph_ms", row["eager_ms"])
                row["ratio_to_floor"] = measured / floor_ms
                if mode == "prefix" and device.type == "cuda":
                    try:
                        row["kernels"] = kernel_breakdown(step, device)
                    except Exception as error:  # noqa: BLE001 - recorded; the rest still runs
                        row["kernels"] = {"error": f"{type(error).__name__}: {error}"[:300]}
            out[name][mode] = row
            print(length, name, mode, json.dumps({k: v for k, v in row.items() if k != "kernels"}), flush=True)
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for name in names:
        with variant(name):
            try:
                out[name]["sampler"] = sampler_steps(model, length, answer, "prefix", clock)
            except Exception as error:  # noqa: BLE001 - as above
                out[name]["sampler"] = {"error": f"{type(error).__name__}: {error}"[:300]}
    return out


# -- report ----------------------------------------------------------------------------------------------------


def summary(results: dict) -> str:
    lines = []
    for length, at in results.get("lengths", {}).items():
        floor = at["floor_ms"]
        lines.append(f"prompt {length}: floor {floor:.2f} ms")
        for name, row in at.get("variants", {}).items():
            cells = []
            for mode in ("prefix", "dual"):
                r = row.get(mode, {})
                measured = r.get("graph_ms", r.get("eager_ms"))
                if measured is not None:
                    cells.append(f"{mode} {measured:.2f} ms ({measured / floor:.2f}x floor, eager {r['eager_ms']:.1f})")
            sampler = row.get("sampler", {})
            if "cached_step_ms" in sampler:
                cells.append(f"inside generate {sampler['cached_step_ms']:.2f} ms")
            kernels = row.get("prefix", {}).get("kernels", {})
            if "kernel_count" in kernels:
                cells.append(f"{kernels['kernel_count']} kernels {kernels['kernels_ms']:.2f} ms")
            diff = row.get("prefix", {}).get("logits_max_abs_diff_vs_first")
            if diff is not None:
                cells.append(f"logits vs before: max |diff| {diff:.3g}")
            lines.append(f"  {name:10} " + "; ".join(cells))
    for name, value in results.get("parts", {}).items():
        lines.append(
            f"part {name}: "
            + ", ".join(f"{key} {v:.3f}" if isinstance(v, float) else f"{key} {v}" for key, v in value.items())
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="4096", help="prompt tokens, comma-separated (the parts: the first)")
    parser.add_argument("--answer", type=int, default=32, help="answer tokens (a multiple of the 32-token block)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--parts", action=argparse.BooleanOptionalAction, default=True, help="the parts alone too")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="small float32 model on the CPU: checks the script")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/cached_step_profile.json")
    args = parser.parse_args(argv)
    if args.answer % BLOCK or args.answer <= 0:
        parser.error(f"--answer {args.answer} is not allowed; allowed: a positive multiple of {BLOCK}")
    names = [v for v in args.variants.split(",") if v]
    if not names or set(names) - set(VARIANTS):
        parser.error(f"--variants {args.variants!r} is not allowed; allowed: some of {', '.join(VARIANTS)}")
    lengths = [int(v) for v in args.lengths.split(",") if v]
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sizes = {}
    if args.tiny:
        sizes = dict(d_model=128, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=256, vocab_size=512,
                     embedding_size=512, mask_token_id=500, eos_token_id=1, pad_token_id=1)  # fmt: skip
        lengths = list(dict.fromkeys(min(n, 256) for n in lengths))
        args.reps = min(args.reps, 5)
    if "after_fa3" in names and _fa3() is None and not args.tiny:
        names.remove("after_fa3")  # recorded below
    config = LongLLaDAConfig(**sizes)
    clock = Clock(device)
    results: dict = {"environment": environment(device), "arguments": vars(args), "config": config.to_diff_dict(),
                     "variants": names, "fa3": "imported" if _fa3() is not None else "fa3_fwd not importable"}  # fmt: skip

    def save() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))

    results["ceilings"] = ceilings(device, clock, small=args.tiny)
    bandwidth = results["ceilings"]["copy_bandwidth_Bps"]
    model = build_model(config, device, dtype, args.seed)
    if args.tiny:
        model.set_fast_path(True)  # as on a GPU by default
    results["weights_gib"] = sum(p.numel() * p.element_size() for p in model.parameters()) / GiB
    results["lengths"] = {}
    for length in lengths:
        total = length + args.answer
        at = {"floor_bytes": cached_step_bytes(config, total)}
        at["floor_ms"] = at["floor_bytes"] / bandwidth * 1e3
        print(f"prompt {length}: copy {bandwidth / 1e12:.2f} TB/s; floor {at['floor_ms']:.2f} ms", flush=True)
        results["lengths"][str(length)] = at
        try:
            at["variants"] = variants_at(model, length, args.answer, names, clock, device, args.reps, at["floor_ms"])
        except Exception as error:  # noqa: BLE001 - recorded; the next length still runs
            at["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        save()
    results["parts"] = {}
    if args.parts:
        step = CachedStep(model, lengths[0], args.answer, "prefix")
        step.keep_tables(True)
        parts = [
            ("projections", lambda: projections(model, clock, device, args.reps)),
            ("attention", lambda: attention_choices(step, clock, device, args.reps)),
            ("lm_head", lambda: lm_head_rows(model, clock, device, args.reps)),
            ("rope_tables", lambda: rope_tables(step, clock, device, args.reps)),
            ("sampler_work", lambda: sampler_work(step, clock, device, args.reps)),
        ]
        for name, run in parts:
            started = time.perf_counter()
            try:
                results["parts"][name] = run()
            except Exception as error:  # noqa: BLE001 - a measurement that fails is recorded, the others still run
                results["parts"][name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
            results["parts"][name]["wall_s"] = time.perf_counter() - started
            print(name, json.dumps(results["parts"][name], default=str), flush=True)
            save()
    save()
    print(summary(results))


if __name__ == "__main__":
    main()
