"""Dream-v0-7B-shaped random bf16 model on one GPU: a forward pass and a 32-token answer at long contexts.

    python benchmarks/dream_bench.py --lengths 4096,16384,32768 --out dream.json

For each prompt length: a full forward pass (LM head on the last 32 positions, as the sampler asks), then a
32-token answer in exact mode and with the prefix cache (one block of 32, 32 steps, Dream's ``maskgit_plus``,
greedy), each with its peak GPU memory. The model is Dream-v0-7B's architecture (hidden 3584, 28 layers,
28 query / 4 key-value heads, SwiGLU 18944, vocabulary 152064, RoPE base 1e6) with random weights: speed and
memory do not depend on the values. Timings: CUDA-synchronised wall clock, median of ``--reps`` forward passes;
one generation each after a warm-up at the shortest length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modeling_longllada import DreamConfig, DreamModel  # noqa: E402

ANSWER = 32


def timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="4096,16384,32768")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ntk-factor", type=float, default=None, help="e.g. 5: the paper's Dream setting")
    args = parser.parse_args()
    device = torch.device("cuda")
    scaling = {"type": "ntk", "factor": args.ntk_factor} if args.ntk_factor else None
    config = DreamConfig(rope_scaling=scaling)  # Dream-v0-7B's official fields are the defaults
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with device:
        model = DreamModel(config).eval()
    torch.set_default_dtype(torch.float32)
    vocab = config.vocab_size
    results = {
        "command": " ".join(["python", *sys.argv]),
        "gpu": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "dtype": "bfloat16",
        "parameters_billion": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "rope_scaling": scaling,
        "rows": [],
    }

    def prompt(length: int) -> torch.Tensor:
        ids = torch.randint(0, 151643, (1, length), generator=torch.Generator().manual_seed(length))
        return ids.to(device)

    def answer(ids: torch.Tensor, cache: str) -> torch.Tensor:
        return model.generate(
            ids, max_new_tokens=ANSWER, block_length=ANSWER, steps=ANSWER, alg="maskgit_plus", cache=cache
        )

    lengths = [int(n) for n in args.lengths.split(",")]
    answer(prompt(min(lengths)), "prefix")  # warm-up: kernels chosen, allocator grown
    for length in lengths:
        ids = prompt(length)
        row: dict = {"prompt_tokens": length}
        with torch.no_grad():
            torch.cuda.reset_peak_memory_stats(device)
            times = [timed(lambda ids=ids: model(ids, logits_to_keep=ANSWER).logits)[0] for _ in range(args.reps)]
            row["forward_s"] = round(statistics.median(times), 4)
            row["forward_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        outputs = {}
        for cache in ("none", "prefix"):
            torch.cuda.reset_peak_memory_stats(device)
            seconds, out = timed(lambda ids=ids, cache=cache: answer(ids, cache))
            outputs[cache] = out[0, length:]
            row[f"{cache}_s"] = round(seconds, 3)
            row[f"{cache}_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            assert int((out == config.mask_token_id).sum()) == 0 and int(out.max()) < vocab
        row["prefix_vs_exact_token_agreement"] = float((outputs["none"] == outputs["prefix"]).float().mean())
        row["prefix_speedup"] = round(row["none_s"] / row["prefix_s"], 2)
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("| prompt | forward s | exact 32 tokens s (peak GiB) | prefix s (peak GiB) | speed-up | agreement |")
    for r in results["rows"]:
        print(
            f"| {r['prompt_tokens']} | {r['forward_s']} | {r['none_s']} ({r['none_peak_gib']}) | "
            f"{r['prefix_s']} ({r['prefix_peak_gib']}) | {r['prefix_speedup']}x | {r['prefix_vs_exact_token_agreement']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
