"""Fast path against plain path on the GPU: the same tokens, the same logits (to kernel noise), and the timings.

``model.set_fast_path(True | False)`` switches between ``modeling_longllada.PlainOps`` (each piece of math written
once, plainly) and ``fast_longllada.FastOps`` (the same values with fewer passes over memory, and sdpa's flash
kernel first for few queries over many keys on Hopper). On the CPU the two are equal bit for bit (tests/); on a
GPU the kernel choice may move logits by rounding noise. This script, per model and prompt length, records:

- one forward pass (LM head on the last 32 positions): max |logit difference|, argmax agreement, time per path;
- ``generate`` with 32 new tokens (block 32, steps 32) in exact mode, ``cache="prefix"``, ``cache="dual"`` and
  threshold decoding (0.9): whether the tokens are identical, and the time per path;
- peak memory per path (``torch.cuda.max_memory_allocated``, weights included).

Models: random bf16 weights made on the GPU in the shape of LLaDA-8B (``--arch llada``, default) or Dream-v0-7B
(``--arch dream``), and the shipped diffusion twin ``longllada/models/tiny-llada-diffusion`` (``--twin``).

    python benchmarks/fast_path_check.py --arch llada --lengths 4096,16384,32768 \
        --out benchmarks/results/fast_path_h200_llada.json
    python benchmarks/fast_path_check.py --arch dream --lengths 4096,16384,32768 \
        --out benchmarks/results/fast_path_h200_dream.json
    python benchmarks/fast_path_check.py --twin --lengths 512,2048 --out benchmarks/results/fast_path_twin.json

``--tiny`` runs a small random model (on the CPU if there is no GPU) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generate_bench import build_model  # noqa: E402

from modeling_longllada import DreamConfig, DreamModel, LongLLaDAConfig, LongLLaDAModelLM  # noqa: E402

TWIN = ROOT / "longllada" / "models" / "tiny-llada-diffusion"
GEN = 32
MODES = {
    "exact": {},
    "prefix": {"cache": "prefix"},
    "dual": {"cache": "dual"},
    "threshold 0.9": {"threshold": 0.9},
}


def random_model(arch: str, tiny: bool, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A random model in the shape of LLaDA-8B or Dream-v0-7B (or a small one), made on ``device``."""
    if arch == "dream":
        sizes = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=1024, mask_token_id=1023) if tiny else {}  # fmt: skip
        return build_model(DreamConfig(**sizes), device, dtype, seed, model_class=DreamModel)
    sizes = dict(d_model=256, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=512, vocab_size=1024,
                 embedding_size=1024, mask_token_id=1023, eos_token_id=1, pad_token_id=1) if tiny else {}  # fmt: skip
    return build_model(LongLLaDAConfig(**sizes), device, dtype, seed)


def timed(fn, device: torch.device, repeats: int = 3):
    """(result of the last call, median seconds over ``repeats`` calls after one warm-up, peak bytes)."""
    result = fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000)
        else:
            import time

            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return result, statistics.median(times), peak


def check_length(model, length: int, device: torch.device, repeats: int) -> dict:
    vocab = model.config.vocab_size
    mask_id = model.config.mask_token_id
    generator = torch.Generator().manual_seed(length)
    prompt = torch.randint(8, vocab, (1, length - GEN), generator=generator)  # past the special tokens
    prompt = prompt.masked_fill(prompt == mask_id, 8).to(device)
    full = torch.cat((prompt, torch.full((1, GEN), mask_id, device=device)), dim=1)
    row: dict = {"length": length}
    logits = {}
    for enabled in (False, True):
        model.set_fast_path(enabled)
        name = "fast" if enabled else "plain"
        with torch.no_grad():
            out, seconds, peak = timed(lambda: model(full, logits_to_keep=GEN).logits.float(), device, repeats)
        logits[name] = out
        row[f"forward_s_{name}"], row[f"forward_peak_gib_{name}"] = seconds, peak and peak / 2**30
    row["forward_max_abs_diff"] = float((logits["fast"] - logits["plain"]).abs().max())
    row["forward_argmax_agreement"] = float((logits["fast"].argmax(-1) == logits["plain"].argmax(-1)).float().mean())
    for mode, settings in MODES.items():
        tokens = {}
        for enabled in (False, True):
            model.set_fast_path(enabled)
            name = "fast" if enabled else "plain"

            def run(settings=settings):
                # Dream greedily with maskgit_plus (its default "origin" commits at random and takes no threshold)
                alg = {"alg": "maskgit_plus"} if model.logits_shifted else {}
                return model.generate(prompt, max_new_tokens=GEN, block_length=GEN, steps=GEN, **alg, **settings)

            tokens[name], seconds, peak = timed(run, device, repeats=1)
            row[f"{mode}_s_{name}"], row[f"{mode}_peak_gib_{name}"] = seconds, peak and peak / 2**30
        row[f"{mode}_tokens_identical"] = bool(torch.equal(tokens["fast"], tokens["plain"]))
    model.set_fast_path(None)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("llada", "dream"), default="llada")
    parser.add_argument("--twin", action="store_true", help="the shipped diffusion twin instead of a random model")
    parser.add_argument("--lengths", default="4096,16384,32768", help="comma-separated prompt+answer lengths")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes per path (median)")
    parser.add_argument("--tiny", action="store_true", help="a small random model, to check the script")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.twin:
        model = LongLLaDAModelLM.from_pretrained(TWIN, dtype=torch.bfloat16).to(device).eval()
        name = "tiny-llada-diffusion (shipped twin)"
    else:
        model = random_model(args.arch, args.tiny, device, torch.bfloat16)
        name = f"random {args.arch}" + (" tiny" if args.tiny else "")
    lengths = [int(v) for v in args.lengths.split(",")]
    record = {
        "model": name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "rows": [check_length(model, n, device, args.repeats) for n in lengths],
    }
    for row in record["rows"]:
        print(
            f"{row['length']:>7}  forward plain {row['forward_s_plain'] * 1e3:8.1f} ms  fast "
            f"{row['forward_s_fast'] * 1e3:8.1f} ms  max|Δlogit| {row['forward_max_abs_diff']:.3g}  "
            + "  ".join(
                f"{mode}: {'same' if row[f'{mode}_tokens_identical'] else 'DIFFERENT'} "
                f"({row[f'{mode}_s_plain']:.2f}/{row[f'{mode}_s_fast']:.2f} s)"
                for mode in MODES
            )
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
