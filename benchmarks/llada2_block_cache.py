"""LLaDA2.0-mini-shaped random model: a 32-token answer at long prompts with the exact block-diffusion key/value cache,
against the official-style recompute, in one run; and, optionally, the model saved to a folder for a NIAH cell
through ``longllada eval``.

    python benchmarks/llada2_block_cache.py benchmarks/results/llada2_block_cache_h100.json      # GPU, bf16
    python benchmarks/llada2_block_cache.py --tiny benchmarks/results/llada2_block_cache_tiny_cpu.json
    python benchmarks/llada2_block_cache.py --save-model /tmp/llada2-mini-random --lengths --recompute-lengths

The model is ``LLaDA2Config()``'s shape (LLaDA2.0-mini: 20 layers, hidden 2048, 16 heads / 4 key-value heads of
128 with RoPE on 64 dimensions, 256 experts of 512 with 8 a token in 8 groups (4 kept), one shared expert, the first
layer dense 5120, vocabulary 157184; about 16.3B parameters, 32.5 GB in bfloat16), built on the meta device and
materialised on the GPU with random weights (N(0, 0.02²), norms 1): no copy of it ever exists on the CPU.

For each prompt length (``--lengths``, default 4k, 32k and 128k tokens of random ids) the answer of 32 tokens (block
32, 32 steps a block, threshold 0.95: the official defaults) is generated with the cache (``cache="prefix"``: the
prompt's whole blocks encoded once, in passes of ``PREFILL_TOKENS`` positions, then each step runs only the active
block), and, for ``--recompute-lengths`` (default 4k and 32k), as the official ``generate`` does it
(``cache="none"``: the whole window ``x[:, :block_end]`` at every step, the LM head on the active block only).
Each run records its seconds (after a warm-up run), its forward passes (the prompt's encoding passes apart), the
peak device memory, and its answer; the report gives the recompute / cache time ratio and whether the two answers
agree, token by token.

``--save-model DIR`` writes the random model as a LongLLaDA folder (config, safetensors shards, remote code,
generation_config.json, and a small tokenizer with LLaDA2's special tokens trained on the shipped report, whose
mask/EOS ids the config then takes) before anything else runs, and prints the ``longllada eval`` command of a NIAH
cell at 32k and 64k on it. DIR must be new or empty (32.5 GB are written: a scratch disk, never the repository).

``--tiny`` runs a 2-layer shape in float32 on the CPU (lengths 256 and 1024, recompute at 256): a check of the
script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_longllada import LLaDA2Config, LLaDA2ModelLM  # noqa: E402
from modeling_longllada import generation_longllada as generation  # noqa: E402

GiB = 2**30
ANSWER = 32  # new tokens; block length and steps a block too
INIT_STD = 0.02
NIAH_LENGTHS = (32768, 65536)
SHAPE_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "rotary_dim", "num_experts", "num_experts_per_tok", "moe_intermediate_size", "vocab_size")  # fmt: skip
TINY_SIZES = dict(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, mlp_hidden_size=128, vocab_size=512,
                  trained_length=256, rope_theta=10000.0)  # fmt: skip


def build_model(tiny: bool, device: torch.device, dtype: torch.dtype, seed: int) -> LLaDA2ModelLM:
    """The random model on ``device``: built on meta (no memory), given storage on the device, then filled there."""
    if tiny:
        config = LLaDA2Config(
            **LLaDA2Config.fields_from_sizes(**TINY_SIZES), mask_token_id=511, eos_token_id=1, pad_token_id=1
        )
    else:
        config = LLaDA2Config()  # LLaDA2.0-mini's shape
    with torch.device("meta"):
        model = LLaDA2ModelLM(config)
    model = model.to(dtype=dtype).to_empty(device=device).eval()
    fill_random_(model, device, seed)
    return model


def fill_random_(model: torch.nn.Module, device: torch.device, seed: int, expert_bias_std: float = 0.0) -> None:
    """Random weights in place, drawn on ``device``: N(0, 0.02²), norms 1, the routers' expert biases
    N(0, ``expert_bias_std``²) (zeros for 0). The only buffers of our MoE models are those biases."""
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, INIT_STD, generator=generator)
        for name, buffer in model.named_buffers():
            if name.endswith("expert_bias"):  # LLaDA-MoE's (mlp.expert_bias) and LLaDA2's (mlp.gate.expert_bias)
                buffer.normal_(0.0, expert_bias_std, generator=generator) if expert_bias_std else buffer.zero_()


def random_prompt(length: int, config: LLaDA2Config, device: torch.device, seed: int) -> torch.Tensor:
    """[1, length] ids of ordinary tokens (no mask, EOS or pad), drawn on the CPU (the same ids on every device)."""
    generator = torch.Generator().manual_seed(seed)
    special = {config.mask_token_id, config.eos_token_id, config.pad_token_id}
    high = min(config.vocab_size, 150000)
    ids = torch.randint(3, high, (1, length), generator=generator)
    for token in special:
        ids[ids == token] = 3
    return ids.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(model: LLaDA2ModelLM, prompt: torch.Tensor, cache: str) -> dict:
    """One 32-token answer; seconds, passes, peak memory and the answer's ids."""
    device = prompt.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=ANSWER, block_length=ANSWER, steps=ANSWER, cache=cache,
                         return_dict_in_generate=True)  # fmt: skip
    synchronize(device)
    seconds = time.perf_counter() - start
    length = prompt.shape[1]
    first_column = length // ANSWER * ANSWER
    chunk = max(ANSWER, generation.PREFILL_TOKENS // ANSWER * ANSWER)
    prompt_passes = math.ceil(first_column / chunk) if cache != "none" else 0
    record = {
        "prompt_tokens": length,
        "cache": cache,
        "seconds": round(seconds, 3),
        "forward_passes": out.num_forward_passes,
        "prompt_passes": prompt_passes,
        "denoising_passes": out.num_forward_passes - prompt_passes,
        "answer": out.sequences[0, length:].tolist(),
    }
    if device.type == "cuda":
        record["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / GiB, 2)
    return record


def save_model(model: LLaDA2ModelLM, folder: Path) -> None:
    """The random model as a LongLLaDA folder, with a small LLaDA2 tokenizer whose special ids the config takes."""
    from longllada.tiny_model import default_texts
    from longllada.tokenizer import build_tokenizer, save_tokenizer

    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"--save-model {folder} is not empty; allowed: a new or empty folder")
    tokenizer = build_tokenizer(default_texts(), vocab_size=min(4096, model.config.vocab_size), family="llada2")
    for name in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id"):
        setattr(model.config, name, getattr(tokenizer, name))
        setattr(model.generation_config, name, getattr(tokenizer, name))
    model.save_pretrained(folder, max_shard_size="5GB")  # before any forward: expert weights not yet stacked
    save_tokenizer(tokenizer, folder)
    print(f"saved the random model to {folder}")


def niah_command(folder: Path) -> str:
    grid = json.dumps({"context_lengths": list(NIAH_LENGTHS), "depths": [50], "num_repeats": 1})
    return (
        f"longllada eval --model longllada --model_args pretrained={folder},dtype=bfloat16 "
        f"--tasks longllada_niah --metadata '{grid}' --batch_size 1 --device cuda "
        f"--output_path benchmarks/results/llada2_niah_random --log_samples"
    )


def git_commit() -> str | None:
    """``GIT_COMMIT`` when set (a GPU machine's copy of the tree may carry stale git metadata), else the checkout's
    commit; None outside a git checkout."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        root = Path(__file__).resolve().parents[1]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="JSON report to write")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer shape in float32 on the CPU (a check)")
    parser.add_argument("--lengths", type=int, nargs="*", default=None, help="prompt lengths with the cache")
    parser.add_argument("--recompute-lengths", type=int, nargs="*", default=None, help="also without the cache")
    parser.add_argument("--save-model", type=Path, default=None, help="write the random model here first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        lengths = [256, 1024] if args.lengths is None else args.lengths
        recompute = [256] if args.recompute_lengths is None else args.recompute_lengths
    else:
        if not torch.cuda.is_available():
            raise SystemExit("needs a CUDA GPU (or --tiny for the CPU check)")
        device, dtype = torch.device("cuda"), torch.bfloat16
        lengths = [4096, 32768, 131072] if args.lengths is None else args.lengths
        recompute = [4096, 32768] if args.recompute_lengths is None else args.recompute_lengths
    if (lengths or recompute) and args.out is None:
        raise SystemExit("give the JSON report's path (OUT)")
    if args.out is not None and args.out.exists() and not args.out.is_file():
        raise SystemExit(f"OUT {args.out} is not a file")
    started = time.perf_counter()
    model = build_model(args.tiny, device, dtype, args.seed)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {parameters / 1e9:.2f}B parameters, {dtype}, on {device} ({time.perf_counter() - started:.1f} s)")
    if args.save_model is not None:
        save_model(model, args.save_model)
        print("NIAH cell at 32k and 64k on it:\n  " + niah_command(args.save_model))
    if not lengths and not recompute:
        return 0
    config = model.config
    warm = random_prompt(2 * ANSWER, config, device, args.seed + 1)
    for cache in ("prefix", "none"):  # kernels, the expert stacks, allocator pools
        run(model, warm, cache)
    runs: list[dict] = []
    for length in sorted(set(lengths) | set(recompute)):
        prompt = random_prompt(length, config, device, args.seed + length)
        for cache in ("prefix", "none"):
            if length in (lengths if cache == "prefix" else recompute):
                record = run(model, prompt, cache)
                print(json.dumps({k: v for k, v in record.items() if k != "answer"}), flush=True)
                runs.append(record)
                # written after every run: a run stopped at a time cap keeps the lengths it finished
                write_report(args.out, report_of(args, model, parameters, dtype, device, runs, recompute))
    report = report_of(args, model, parameters, dtype, device, runs, recompute)
    write_report(args.out, report)
    for comparison in report["comparisons"]:
        print(json.dumps(comparison))
    print(f"wrote {args.out}")
    return 0


def report_of(args: argparse.Namespace, model: LLaDA2ModelLM, parameters: int, dtype: torch.dtype,
              device: torch.device, runs: list[dict], recompute: list[int]) -> dict:  # fmt: skip
    """The JSON report of the runs so far: each run, and for each recompute length the ratio and the agreement."""
    config = model.config
    comparisons = []
    for length in recompute:
        pair = {r["cache"]: r for r in runs if r["prompt_tokens"] == length}
        if {"prefix", "none"} <= set(pair):
            same = [a == b for a, b in zip(pair["prefix"]["answer"], pair["none"]["answer"])]
            comparisons.append({
                "prompt_tokens": length,
                "recompute_over_cache": round(pair["none"]["seconds"] / pair["prefix"]["seconds"], 2),
                "tokens_agreeing": sum(same),
                "tokens": len(same),
                "identical": all(same),
            })  # fmt: skip
    report = {
        "command": " ".join(["python", *sys.argv]),
        "commit": git_commit(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype),
        "parameters": parameters,
        "shape": {name: getattr(config, name) for name in SHAPE_FIELDS},
        "sampler": dict(
            max_new_tokens=ANSWER,
            block_length=ANSWER,
            steps=ANSWER,
            threshold=0.95,
            prefill_tokens=generation.PREFILL_TOKENS,
        ),  # fmt: skip
        "runs": runs,
        "comparisons": comparisons,
    }
    return report


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main())
