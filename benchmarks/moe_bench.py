"""LLaDA-MoE-7B-A1B-shaped random model: forward pass and a 32-token answer at long contexts, exact and prefix-cache
decoding, peak memory, and the share of time spent routing tokens and running the experts.

    python benchmarks/moe_bench.py benchmarks/results/moe_h200.json                 # on a GPU (bf16)
    python benchmarks/moe_bench.py --tiny benchmarks/results/moe_tiny_cpu.json      # a tiny shape on the CPU
    python benchmarks/moe_bench.py --config path/to/LLaDA-MoE-7B-A1B-Base/config.json out.json

The model is built on the device with random weights (never saved) from the checkpoint's shape: the official
config.json when ``--config`` names one, else the published shape below. Per context length (4k, 16k, 32k by
default; ``--lengths``): one forward pass over the whole sequence with the LM head on the last 32 positions
(median of 3), then a 32-token answer (block 32, 32 steps, one token a step: the LongLLaDA needle setup) without a
cache (``exact``: a full pass every step) and with the prefix cache (``prefix``: a full pass per block, then
cached steps replayed from a CUDA graph). Each run records seconds, tokens per second and the peak device memory.
Expert routing (the router: logits, scores, top-k) and expert compute (the sparse block as a whole: routing,
the grouped products, the weighted sum, the shared expert) are timed with CUDA events around those modules on the
eager passes (the forward pass and exact decoding; a replayed graph has no events), as shares of the run's time.
The one-time stacking of each layer's expert weights (see moe_longllada.py) is measured on its own: memory
allocated before and after, and the peak while stacking.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_longllada import LLaDAMoEConfig, LLaDAMoEModelLM, moe_longllada  # noqa: E402
from modeling_longllada.moe_longllada import Router, SparseMoE  # noqa: E402

GiB = 2**30
ANSWER = 32  # new tokens, block length and steps

# LLaDA-MoE-7B-A1B's shape: 16 layers, hidden 2048, 16 heads, 64 experts of 1024 with 8 per token, RoPE base 50000
# (the LLaDA-MoE paper, arXiv 2509.24389, Table 1); dense feed-forward 8192 and qk_layernorm (the official config
# class's fields as published configs fill them); vocabulary 157184 and <|mask|> 156895 (the released tokenizer, as
# the official inference code uses it). Every layer has experts. Fields not published here (partial rotary,
# shared expert, expert bias) take the values of the first release: whole-head RoPE, no shared expert, an expert
# bias. --config replaces all of it with a checkpoint's config.json.
PUBLISHED_SHAPE = {
    "vocab_size": 157184,
    "hidden_size": 2048,
    "dense_intermediate_size": 8192,
    "expert_intermediate_size": 1024,
    "shared_expert_intermediate_size": None,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "max_position_embeddings": 4096,
    "rope_theta": 50000.0,
    "partial_rotary_factor": 1.0,
    "num_experts": 64,
    "num_experts_per_tok": 8,
    "qk_layernorm": True,
    "moe_layer_freq": [1] * 16,
    "moe_router_enable_expert_bias": True,
    "moe_router_score_function": "softmax",
    "mask_token_id": 156895,
    "eos_token_id": 156892,
    "pad_token_id": 156892,
}
TINY_SHAPE = {
    **PUBLISHED_SHAPE,
    "vocab_size": 512,
    "hidden_size": 64,
    "dense_intermediate_size": 128,
    "expert_intermediate_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_layer_freq": [1, 0, 1],
    "mask_token_id": 511,
    "eos_token_id": 1,
    "pad_token_id": 1,
}


class Clock:
    """Wall time of a run: CUDA events on a GPU (the device's time), perf_counter on the CPU."""

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
            return start.elapsed_time(end) / 1000
        return end - start


class ModuleTimer:
    """Time spent inside Router.forward and SparseMoE.forward, summed over a run (eager passes only: nothing is
    recorded while a CUDA graph is captured, and a replayed graph runs no Python)."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.marks: dict[str, list] = {"routing": [], "experts": []}
        self.enabled = False

    def install(self) -> None:
        for name, cls in (("routing", Router), ("experts", SparseMoE)):
            original = cls.forward

            def timed(module, *args, _original=original, _name=name, **kwargs):
                capturing = torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
                if not self.enabled or capturing:
                    return _original(module, *args, **kwargs)
                start = self.clock.mark()
                out = _original(module, *args, **kwargs)
                self.marks[_name].append((start, self.clock.mark()))
                return out

            cls.forward = timed

    def start(self) -> None:
        self.marks = {"routing": [], "experts": []}
        self.enabled = True

    def stop(self) -> dict[str, float]:
        self.enabled = False
        return {name: sum(self.clock.seconds(a, b) for a, b in pairs) for name, pairs in self.marks.items()}


def build_model(shape: dict, device: torch.device, dtype: torch.dtype) -> LLaDAMoEModelLM:
    """Random weights on ``device`` (normal, the config's initializer range); nothing is read from or written to
    disk."""
    config = LLaDAMoEConfig(**shape)
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the target dtype: no float32 copy of the weights at any time
    try:
        with torch.device(device):
            model = LLaDAMoEModelLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    return model.to(dtype).eval()


def memory(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    return {
        "allocated_gib": torch.cuda.memory_allocated(device) / GiB,
        "peak_gib": torch.cuda.max_memory_allocated(device) / GiB,
    }


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def stack_experts(model: LLaDAMoEModelLM, device: torch.device) -> dict[str, float]:
    """Stack every layer's expert weights now (the first forward would) and measure the memory it takes."""
    reset_peak(device)
    before = memory(device)
    start = time.perf_counter()
    with torch.no_grad():
        for layer in model.model.layers:
            if isinstance(layer.mlp, SparseMoE):
                layer.mlp.stacked_weights()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    after = memory(device)
    row = {"seconds": time.perf_counter() - start}
    if before:
        row.update(
            allocated_before_gib=before["allocated_gib"],
            allocated_after_gib=after["allocated_gib"],
            peak_while_stacking_gib=after["peak_gib"],
            extra_at_rest_gib=after["allocated_gib"] - before["allocated_gib"],
        )
    return row


def random_ids(length: int, vocab: int, mask_id: int, device: torch.device, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab - 1, (1, length), generator=g)
    ids[ids == mask_id] = 2
    return ids.to(device)


def forward_run(model, length: int, device, clock: Clock, timer: ModuleTimer, repeats: int) -> dict:
    config = model.config
    ids = random_ids(length, config.vocab_size, config.mask_token_id, device, seed=length)
    ids[:, -ANSWER:] = config.mask_token_id
    with torch.no_grad():
        model(ids, logits_to_keep=ANSWER)  # warm-up at this length
        reset_peak(device)
        runs, shares = [], []
        for _ in range(repeats):
            timer.start()
            start = clock.mark()
            model(ids, logits_to_keep=ANSWER)
            seconds = clock.seconds(start, clock.mark())
            inside = timer.stop()
            runs.append(seconds)
            shares.append({name: t / seconds for name, t in inside.items()})
    seconds = statistics.median(runs)
    return {
        "length": length,
        "mode": "forward",
        "seconds": seconds,
        "tokens_per_second": length / seconds,
        "routing_share": statistics.median(s["routing"] for s in shares),
        "experts_share": statistics.median(s["experts"] for s in shares),
        **{k: v for k, v in memory(device).items() if k == "peak_gib"},
    }


def generate_run(model, length: int, cache: str, device, clock: Clock, timer: ModuleTimer) -> dict:
    config = model.config
    prompt = random_ids(length - ANSWER, config.vocab_size, config.mask_token_id, device, seed=length + 1)
    settings = dict(max_new_tokens=ANSWER, block_length=ANSWER, steps=ANSWER, cache=cache, return_dict_in_generate=True)
    reset_peak(device)
    timer.start()
    start = clock.mark()
    out = model.generate(prompt, **settings)
    seconds = clock.seconds(start, clock.mark())
    inside = timer.stop()
    row = {
        "length": length,
        "mode": "exact" if cache == "none" else cache,
        "seconds": seconds,
        "new_tokens_per_second": ANSWER / seconds,
        "forward_passes": out.num_forward_passes,
        "answer_has_no_mask": bool((out.sequences[:, -ANSWER:] != config.mask_token_id).all()),
        **{k: v for k, v in memory(device).items() if k == "peak_gib"},
    }
    if cache == "none":  # eager passes only: the shares are those of every step
        row.update(routing_share=inside["routing"] / seconds, experts_share=inside["experts"] / seconds)
    else:  # the block's full pass is eager; the cached steps replay a graph
        row.update(routing_seconds_eager=inside["routing"], experts_seconds_eager=inside["experts"])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write the JSON results")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape in float32 (CPU checks of the script)")
    parser.add_argument("--config", type=Path, help="a LLaDA-MoE config.json whose shape to build")
    parser.add_argument("--lengths", default=None, help="comma-separated context lengths (default 4096,16384,32768)")
    parser.add_argument("--modes", default="forward,exact,prefix", help="of forward, exact, prefix")
    parser.add_argument("--repeats", type=int, default=3, help="forward passes timed per length (median)")
    args = parser.parse_args()
    if args.output.exists() and args.output.is_dir():
        parser.error(f"output={str(args.output)!r} is a folder; give a JSON file path")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - {"forward", "exact", "prefix"})
    if unknown:
        parser.error(f"--modes has {unknown}; allowed: forward, exact, prefix")
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} is not allowed; allowed: an integer >= 1")
    default_lengths = "64,128,256" if args.tiny else "4096,16384,32768"
    try:
        lengths = [int(v) for v in (args.lengths or default_lengths).split(",")]
    except ValueError:
        parser.error(f"--lengths={args.lengths!r} is not allowed; allowed: integers > {ANSWER}, comma-separated")
    if any(length <= ANSWER for length in lengths):
        parser.error(f"--lengths={lengths} is not allowed; each must exceed the answer's {ANSWER} tokens")

    if args.config is not None:
        shape = {k: v for k, v in json.loads(args.config.read_text()).items() if k not in ("auto_map", "model_type")}
        shape.setdefault("mask_token_id", PUBLISHED_SHAPE["mask_token_id"])
        source = str(args.config)
    else:
        shape = TINY_SHAPE if args.tiny else PUBLISHED_SHAPE
        source = "tiny" if args.tiny else "published LLaDA-MoE-7B-A1B shape (see PUBLISHED_SHAPE)"
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    for name in ("modeling_longllada", "transformers_modules"):
        logging.getLogger(name).addHandler(handler)
    moe_longllada.logger.addHandler(handler)

    build_start = time.perf_counter()
    model = build_model(shape, device, dtype)
    parameters = sum(p.numel() for p in model.parameters())
    config = model.config
    experts_per_layer = 3 * config.expert_intermediate_size * config.hidden_size * config.num_experts
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype),
        "shape_source": source,
        "shape": {k: getattr(config, k) for k in PUBLISHED_SHAPE if k != "moe_layer_freq"},
        "rotary_dim": config.rotary_dim,
        "parameters": parameters,
        "build_seconds": time.perf_counter() - build_start,
        "weights_gib": parameters * torch.finfo(dtype).bits / 8 / GiB,
        "expert_weights_per_layer_gib": experts_per_layer * torch.finfo(dtype).bits / 8 / GiB,
        "grouped_mm_available": hasattr(torch, "_grouped_mm"),
        "stacking": stack_experts(model, device),
        "runs": [],
    }
    clock = Clock(device)
    timer = ModuleTimer(clock)
    timer.install()
    with torch.no_grad():  # warm-up at a small length: kernels compiled, graphs' first capture path exercised
        model.generate(random_ids(64, config.vocab_size, config.mask_token_id, device, 0), max_new_tokens=ANSWER,
                       block_length=ANSWER, steps=4, cache="prefix")  # fmt: skip
    for length in lengths:
        for mode in modes:
            if mode == "forward":
                row = forward_run(model, length, device, clock, timer, args.repeats)
            else:
                row = generate_run(model, length, "none" if mode == "exact" else "prefix", device, clock, timer)
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
    results["grouped_mm_failed_on"] = [f"{d} {t}" for d, t in sorted(moe_longllada._GROUPED_MM_FAILED, key=str)]
    results["warnings"] = sorted(set(warnings))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(math.isfinite(r["seconds"]) for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
