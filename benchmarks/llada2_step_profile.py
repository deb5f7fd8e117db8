"""LLaDA2's block-diffusion steps taken apart beside LLaDA-MoE's: operations, kernels, host syncs and time per step.

A cached step of LLaDA2 (``cache="prefix"``: one 32-token block against the exact block-diffusion cache) and one of
LLaDA-MoE (Fast-dLLM's prefix cache) do the same work per layer but for LLaDA2's router (sigmoid scores limited to
the best groups), its shared expert and its partial RoPE: their operation counts per layer should be close. So
should their full passes (LLaDA2's block-causal window of ``cache="none"``, LLaDA-MoE's exact-mode pass). This
script builds both families with the same structural numbers and measures, per prompt length:

- ``first_setup_ms``, ``first_full_pass_ms``: the first prompt encoding and block step at this length, then the
  first full pass (first-use costs, such as kernel plans built per new shape, show here);
- ``cached_step_ms``: a later step of the first answer block (the prompt encoded, step 0 run) as ``generate`` runs
  it (:class:`BlockCausalDenoiser` / :class:`BlockDenoiser`), eagerly; on CUDA also ``graph_ms``, replayed from the
  sampler's CUDA graph (``graph_recorded``; ``graph_max_abs_diff`` against the eager step on the same state);
- ``full_pass_ms``: the window up to the block's end with the LM head on the block (LLaDA2 block-causal, LLaDA-MoE
  bidirectional);
- ``generate_prefix_s`` / ``generate_none_s``: the whole answer (32 tokens, block 32, 32 steps) with each cache
  (``none`` up to ``--recompute-up-to`` tokens);
- ``cached_step_ops`` / ``full_pass_ops``: one eager call under ``torch.profiler``: the operations called from
  Python (``ops``: those that compute; ``view_ops``: views and allocations), per decoder layer (``per_layer``;
  ``per_moe_layer`` their mean over the expert layers), those that read a device value back to the host
  (``host_syncs``) and, on CUDA, the device's kernels, copies and fills (``kernels``, ``kernel_ms``).

Times are the fastest of ``--reps`` calls after a warm-up call: wall time on CUDA; on the CPU (one torch thread)
this thread's CPU time, which other processes sharing the cores inflate less.

Shapes (``--shape``): ``mid`` (the CPU default; float32) keeps the structural numbers of the checkpoints at a small
width: LLaDA2 with 256 experts, 8 a token in 8 groups (4 kept), a shared expert, the first layer dense, 4 query heads
per key/value head, RoPE on half of each head; LLaDA-MoE with 64 experts, 8 a token, whole-head RoPE; 4 layers each,
hidden 256, heads of 64. ``full`` (the CUDA default; bfloat16): LLaDA2.0-mini (``LLaDA2Config()``) and
LLaDA-MoE-7B-A1B's published shape (``benchmarks/moe_bench.py``), random weights built on the device.

    python benchmarks/llada2_step_profile.py --label after benchmarks/results/llada2_step_profile_cpu.json
    python benchmarks/llada2_step_profile.py --label after --lengths 4096,32768 \
        benchmarks/results/llada2_step_profile_h200.json                                     # on a GPU

``--label`` names the code measured (``before`` / ``after``, with a suffix such as ``_fast`` for other settings);
a report that exists keeps its other labels, and ``ratios_after_over_before`` compares ``after[_X]`` with
``before[_X]`` where both are there (measure both on the same machine). ``--fast-path on`` runs the fast path on
the CPU too (bit for bit the plain path's values there): the operations the GPU runs, but for the fused Triton
kernels.
``--tiny`` is the CPU check of the script (mid shape, one short length, one repetition).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llada2_block_cache import fill_random_, git_commit  # noqa: E402
from moe_bench import PUBLISHED_SHAPE  # noqa: E402

from modeling_longllada import LLaDA2Config, LLaDA2ModelLM, LLaDAMoEConfig, LLaDAMoEModelLM  # noqa: E402
from modeling_longllada.generation_longllada import (  # noqa: E402
    BlockCausalDenoiser,
    BlockDenoiser,
    DiffusionGenerationConfig,
    rule_for,
)

BLOCK = 32  # answer length, block length and steps (the official defaults' block)
VOCAB_MID = 2048
MID = {
    "llada2": dict(
        num_hidden_layers=4, hidden_size=256, num_attention_heads=4, num_key_value_heads=1, head_dim=64,
        partial_rotary_factor=0.5, intermediate_size=512, first_k_dense_replace=1, num_experts=256,
        num_experts_per_tok=8, n_group=8, topk_group=4, num_shared_experts=1, moe_intermediate_size=64,
        vocab_size=VOCAB_MID, max_position_embeddings=4096,
    ),
    "lladamoe": dict(
        PUBLISHED_SHAPE, vocab_size=VOCAB_MID, hidden_size=256, dense_intermediate_size=512,
        expert_intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
        moe_layer_freq=[1] * 4,
    ),
}  # fmt: skip
# Operations that compute nothing on a device: views, allocations, no-op conversions.
NO_KERNEL = frozenset(
    "aten::" + name
    for name in (
        "view", "reshape", "_reshape_alias", "_unsafe_view", "slice", "select", "as_strided", "transpose", "t",
        "expand", "expand_as", "unsqueeze", "squeeze", "narrow", "split", "split_with_sizes", "chunk", "permute",
        "alias", "detach", "unflatten", "flatten", "unbind", "view_as", "lift_fresh", "resolve_conj", "resolve_neg",
        "empty", "empty_strided", "empty_like", "to", "type_as", "contiguous", "result_type", "is_nonzero",
        "numpy_T", "movedim", "diagonal", "unfold", "_has_compatible_shallow_copy_type", "set_",
    )
)  # fmt: skip
# Operations that read a device value back to the host (a synchronisation on CUDA).
HOST_SYNCS = frozenset(("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::unique", "aten::_unique2",
                        "aten::tolist", "aten::is_nonzero", "aten::equal", "aten::bincount"))  # fmt: skip


def build(family: str, shape: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """The family's model with random weights (N(0, 0.02²), norms 1, router biases small), built on ``device``."""
    torch.manual_seed(seed)
    tokens = dict(mask_token_id=VOCAB_MID - 1, eos_token_id=1, pad_token_id=1) if shape == "mid" else {}
    if family == "llada2":
        config = LLaDA2Config(**(MID["llada2"] if shape == "mid" else {}), **tokens)
        cls = LLaDA2ModelLM
    else:
        config = LLaDAMoEConfig(**{**(MID["lladamoe"] if shape == "mid" else PUBLISHED_SHAPE), **tokens})
        cls = LLaDAMoEModelLM
    with torch.device("meta"):
        model = cls(config)
    model = model.to(dtype=dtype).to_empty(device=device).eval()
    fill_random_(model, device, seed, expert_bias_std=0.01)
    return model


def prompt_ids(model, length: int, device: torch.device, seed: int) -> torch.Tensor:
    """[1, length] ordinary token ids (no mask, EOS or pad), drawn on the CPU."""
    config = model.config
    special = {config.mask_token_id, config.eos_token_id, config.pad_token_id}
    ids = torch.randint(3, min(config.vocab_size, 150000), (1, length), generator=torch.Generator().manual_seed(seed))
    for token in special:
        if token is not None:
            ids[ids == token] = 3
    return ids.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def once(fn, device: torch.device) -> float:
    """Seconds of one call of ``fn``: wall time on CUDA (synchronised), this thread's CPU time on the CPU (torch runs
    one thread there: see ``main``), which other processes sharing the cores do not inflate."""
    clock = time.perf_counter if device.type == "cuda" else time.thread_time
    synchronize(device)
    start = clock()
    fn()
    synchronize(device)
    return clock() - start


def seconds(fn, device: torch.device, reps: int) -> float:
    """The fastest of ``reps`` calls of ``fn()`` after one warm-up call, in seconds (:func:`once`): the call least
    disturbed by other work on the machine."""
    fn()
    return min(once(fn, device) for _ in range(reps))


class StepSetup:
    """The sampler's state at step 1 of the first answer block: prompt encoded, step 0 run; ``step(n)`` runs step n
    exactly as ``generate`` does (same denoiser, same inputs), ``full_pass()`` the cache-free pass of that block."""

    def __init__(self, model, prompt: torch.Tensor, cuda_graph: bool):
        self.model = model
        self.s = DiffusionGenerationConfig.resolve(
            model, None, dict(max_new_tokens=BLOCK, block_length=BLOCK, steps=BLOCK, cache="prefix",
                              cuda_graph=cuda_graph),
        )  # fmt: skip
        rule = rule_for(model, self.s)
        length = prompt.shape[1]
        if isinstance(model, LLaDA2ModelLM):
            canvas = rule.canvas(prompt, torch.ones_like(prompt), length, BLOCK)
            self.x, self.positions = canvas.x, canvas.position_ids
            self.start, self.end = canvas.span(0)
            self.denoiser = BlockCausalDenoiser(model, self.s, canvas)
            self.block_causal = {"block_causal": BLOCK}
        else:
            mask = torch.full((1, BLOCK), self.s.mask_token_id, device=prompt.device)
            self.x = torch.cat((prompt, mask), dim=1)
            self.positions = torch.arange(self.x.shape[1], device=prompt.device)[None]
            self.start, self.end = length, length + BLOCK
            self.denoiser = BlockDenoiser(model, self.s, torch.ones_like(self.x), length)
            self.block_causal = {}
        with torch.no_grad():
            self.denoiser(self.x, self.start, self.end, 0)

    @torch.no_grad()
    def step(self, n: int = 1) -> torch.Tensor:
        return self.denoiser(self.x, self.start, self.end, n)

    @torch.no_grad()
    def full_pass(self) -> torch.Tensor:
        end = self.end
        return self.model(self.x[:, :end], position_ids=self.positions[:, :end], logits_to_keep=slice(self.start, end),
                          **self.block_causal).logits  # fmt: skip


def computes(event) -> bool:
    """The operation, or one it calls, runs a computation (not only views and allocations)."""
    return event.name not in NO_KERNEL or any(computes(child) for child in event.cpu_children)


def operation_counts(fn, model, device: torch.device) -> dict:
    """One call of ``fn`` under torch.profiler: the operations called from Python, per decoder layer, host syncs and
    (CUDA) device kernels."""
    layers = model.decoder_layers
    handles, ranges = [], {}
    for index, layer in enumerate(layers):

        def enter(module, args, index=index):
            ranges[index] = torch.profiler.record_function(f"layer{index}")
            ranges[index].__enter__()

        def leave(module, args, output, index=index):
            ranges.pop(index).__exit__(None, None, None)

        handles += [layer.register_forward_pre_hook(enter), layer.register_forward_hook(leave)]
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    try:
        synchronize(device)
        with torch.profiler.profile(activities=activities) as prof:
            fn()
            synchronize(device)
    finally:
        for handle in handles:
            handle.remove()
    events = prof.events()
    ops, views, syncs = Counter(), Counter(), Counter()
    per_layer = Counter()
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        parent, layer = event.cpu_parent, None
        top = True
        while parent is not None:
            if parent.name.startswith("aten::"):
                top = False
                break
            if layer is None and parent.name.startswith("layer") and parent.name[5:].isdigit():
                layer = int(parent.name[5:])
            parent = parent.cpu_parent
        if not top:
            continue
        if event.name in HOST_SYNCS:
            syncs[event.name] += 1
        if computes(event):
            ops[event.name] += 1
            per_layer[layer] += 1
        else:
            views[event.name] += 1
    record = {
        "ops": sum(ops.values()),
        "view_ops": sum(views.values()),
        "host_syncs": sum(syncs.values()),
        "host_sync_ops": dict(syncs),
        "outside_layers": per_layer.get(None, 0),
        "per_layer": [per_layer.get(i, 0) for i in range(len(layers))],
        "top_ops": dict(ops.most_common(25)),
    }
    if device.type == "cuda":  # the device's own events: kernels, copies and fills (not the layers' annotations)
        kernels = [
            e for e in events
            if e.device_type == torch.autograd.DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
            and not e.name.startswith(("gpu_user_annotation", "layer"))
        ]  # fmt: skip
        record["kernels"] = len(kernels)
        record["kernel_ms"] = round(sum(e.time_range.elapsed_us() for e in kernels) / 1000, 3)
    return record


def first_moe_layer(model) -> int:
    return 1 if isinstance(model, LLaDA2ModelLM) else 0


def measure(family: str, model, length: int, device: torch.device, reps: int, recompute_up_to: int) -> dict:
    prompt = prompt_ids(model, length, device, seed=length)
    row: dict = {"prompt_tokens": length}
    # First use of this length: the prompt's encoding and the block's first step, then one window pass (first-use
    # costs such as kernel plans built per new shape show here, beside the later calls below).
    row["first_setup_ms"] = round(once(lambda: StepSetup(model, prompt, cuda_graph=False), device) * 1000, 3)
    eager = StepSetup(model, prompt, cuda_graph=False)
    row["first_full_pass_ms"] = round(once(eager.full_pass, device) * 1000, 3)
    row["cached_step_ms"] = round(seconds(partial(eager.step, 2), device, reps) * 1000, 3)
    row["cached_step_ops"] = operation_counts(partial(eager.step, 2), model, device)
    if device.type == "cuda":
        graphed = StepSetup(model, prompt, cuda_graph=True)
        graphed.step(1)  # records the graph (if the step can be recorded)
        row["graph_recorded"] = getattr(graphed.denoiser, "graph", None) is not None
        row["graph_ms"] = round(seconds(partial(graphed.step, 2), device, reps) * 1000, 3)
        # The same state through the graph and eagerly (bit for bit but where a fused kernel first seen while
        # recording kept torch's code in the graph).
        row["graph_max_abs_diff"] = float((graphed.step(2).float() - eager.step(2).float()).abs().max())
        del graphed
    row["full_pass_ms"] = round(seconds(eager.full_pass, device, max(1, reps // 4)) * 1000, 3)
    row["full_pass_ops"] = operation_counts(eager.full_pass, model, device)
    for part in ("cached_step_ops", "full_pass_ops"):
        per_layer = row[part]["per_layer"][first_moe_layer(model) :]
        row[part]["per_moe_layer"] = round(statistics.mean(per_layer), 1) if per_layer else None
    del eager
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for cache in ("prefix", "none"):
        if cache == "none" and length > recompute_up_to:
            continue

        def answer(cache=cache):
            return model.generate(prompt, max_new_tokens=BLOCK, block_length=BLOCK, steps=BLOCK, cache=cache)

        row[f"generate_{cache}_s"] = round(seconds(answer, device, 1), 3)
    return row


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return env


def ratios(runs: dict) -> dict:
    """after / before of every timing and count both labels have (per family and length), for each pair of labels
    ``before[_X]`` / ``after[_X]``."""
    out: dict = {}
    for label in runs:
        if label.startswith("after"):
            pair = ratio_pair(runs.get("before" + label[len("after") :]), runs[label])
            if pair:
                out[label] = pair
    return out


def ratio_pair(before: dict | None, after: dict) -> dict:
    if not before:
        return {}
    out: dict = {}
    for family, lengths in after["families"].items():
        for length, row in lengths.items():
            old = before["families"].get(family, {}).get(length)
            if old is None:
                continue
            entry = {}
            for key, value in row.items():
                if key.endswith(("_ms", "_s")) and isinstance(old.get(key), (int, float)) and old[key]:
                    entry[key] = round(value / old[key], 3)
                elif key.endswith("_ops") and isinstance(old.get(key), dict):
                    entry[key] = {name: round(value[name] / old[key][name], 3) for name in ("ops", "per_moe_layer")
                                  if old[key].get(name)}  # fmt: skip
            out.setdefault(family, {})[length] = entry
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSON report (other labels already in it are kept)")
    parser.add_argument("--label", default="after", help="what code this measures (before / after)")
    parser.add_argument("--shape", choices=("mid", "full"), default=None, help="mid (CPU default) or full (CUDA)")
    parser.add_argument("--lengths", default=None, help="prompt lengths, comma-separated")
    parser.add_argument("--families", default="llada2,lladamoe", help="of llada2, lladamoe")
    parser.add_argument("--reps", type=int, default=None, help="timed calls per measurement (the fastest counts)")
    parser.add_argument(
        "--recompute-up-to",
        type=int,
        default=8192,
        help="the whole answer with cache='none' at prompt lengths up to this (32 full passes)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is one)")
    parser.add_argument(
        "--fast-path",
        choices=("auto", "on", "off"),
        default="auto",
        help="the models' fast path (auto: on for CUDA; on, on the CPU: the structure the GPU runs)",
    )
    parser.add_argument("--tiny", action="store_true", help="CPU check of the script (mid shape, short, 1 rep)")
    args = parser.parse_args()
    if args.out.exists() and not args.out.is_file():
        parser.error(f"out={str(args.out)!r} is not a file")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    shape = args.shape or ("full" if device.type == "cuda" else "mid")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    default_lengths = "96" if args.tiny else ("4096" if device.type == "cuda" else "512,2048")
    try:
        lengths = [int(v) for v in (args.lengths or default_lengths).split(",")]
    except ValueError:
        parser.error(f"--lengths={args.lengths!r}: integers, comma-separated")
    if any(length < BLOCK for length in lengths):
        parser.error(f"--lengths={lengths}: each at least {BLOCK}")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if not families or set(families) - {"llada2", "lladamoe"}:
        parser.error(f"--families={args.families!r}: of llada2, lladamoe")
    if device.type == "cpu":
        torch.set_num_threads(1)  # every operation on this thread, so that its CPU time is the work's
    reps = args.reps or (1 if args.tiny else (20 if device.type == "cuda" else 5))
    if reps < 1:
        parser.error(f"--reps={reps}: at least 1")

    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    run = {"command": " ".join(["python", *sys.argv]), "commit": git_commit(), "environment": environment(device),
           "shape": shape, "dtype": str(dtype), "fast_path": args.fast_path, "families": {}}  # fmt: skip
    for family in families:
        model = build(family, shape, device, dtype)
        model.set_fast_path({"auto": None, "on": True, "off": False}[args.fast_path])
        run.setdefault("configs", {})[family] = {
            k: getattr(model.config, k, None)
            for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                      "num_experts", "num_experts_per_tok", "n_group", "topk_group", "vocab_size")
        }  # fmt: skip
        for length in lengths:
            row = measure(family, model, length, device, reps, args.recompute_up_to)
            run["families"].setdefault(family, {})[str(length)] = row
            brief = {k: v for k, v in row.items() if not k.endswith("_ops")}
            brief["ops"] = {k: row[k]["ops"] for k in ("cached_step_ops", "full_pass_ops")}
            brief["per_moe_layer"] = {k: row[k]["per_moe_layer"] for k in ("cached_step_ops", "full_pass_ops")}
            print(family, json.dumps(brief), flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report.setdefault("runs", {})[args.label] = run
    report["ratios_after_over_before"] = ratios(report["runs"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
