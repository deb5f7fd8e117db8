"""DiffusionGemma-26B-A4B-shaped random bf16 model on one GPU: prompt encoding and one canvas at long prompts.

    python benchmarks/diffusion_gemma_bench.py --lengths 32k,128k,256k --out benchmarks/results/diffusion_gemma_h200.json
    python benchmarks/diffusion_gemma_bench.py --tiny --out /tmp/diffusion_gemma_tiny.json   # CPU, seconds

    # a NIAH cell at 32k through `longllada eval`: the random model saved as a folder first (about 50 GB of bf16
    # shards; never committed), then evaluated as any checkpoint
    python benchmarks/diffusion_gemma_bench.py --lengths 32k --save-model /tmp/diffusion-gemma-26b-random \
        --out benchmarks/results/diffusion_gemma_h200_32k.json
    python -m longllada eval --model longllada \
        --model_args pretrained=/tmp/diffusion-gemma-26b-random,dtype=bfloat16,max_denoising_steps=48 \
        --tasks longllada_niah --metadata '{"context_lengths": [32768], "depths": [50], "num_repeats": 1}' \
        --device cuda --batch_size 1 --output_path benchmarks/results/diffusion_gemma_niah_32k

The model is transformers' own ``DiffusionGemmaForBlockDiffusion`` with the released checkpoint's text config
(``modeling_longllada.diffusion_gemma.DIFFUSION_GEMMA_26B_A4B_TEXT_CONFIG``: 30 layers, hidden 2816, 128 experts
top-8, 5 full-attention layers with p-RoPE, sliding window 1024, canvas 256) and transformers' default Gemma 4
vision tower, with random weights: speed and memory do not depend on the values. It is built on the ``meta``
device and materialised on the GPU in bf16 with the encoder/decoder ties in place, so neither a CPU copy nor a
second (untied) copy of the weights is ever allocated; transformers' own ``init_weights`` fills it.

For each prompt length and mode, one ``generate`` of one canvas (``max_new_tokens`` = canvas length, up to
``--max-denoising-steps`` steps; a random model never meets the early stop, so all steps run):

- ``transformers``: ``model.generate(prompt)`` as transformers runs it (the whole prompt in one encoder pass);
- ``chunked``: ``modeling_longllada.diffusion_gemma.generate``: the prompt encoded ``--prefill-chunk`` tokens at
  a time into the cache, then ``model.generate`` continues from it.

Recorded: prompt encoding time (to the first denoising step's end, minus one step), the median denoising step,
the steps run, the whole call, and peak GPU memory. A length that runs out of memory is recorded with the
allocator's message (what it tried to allocate), any other runtime error with its message, and the next one
still runs; which of torch's SDPA kernels accept the two head widths (256, 512) is recorded first. Results are written after each
length, so an interrupted run keeps what it measured. Times: CUDA-synchronised wall clock, after a warm-up at
a short prompt.

``--save-model DIR`` first writes the random model as a checkpoint folder that transformers loads as it loads the
released one (``save_pretrained``: the bf16 weights with their ties, ``config.json``, the released sampler
settings in ``generation_config.json``) with a small byte-level tokenizer that has Gemma 4's special tokens at
Gemma's ids (``longllada.tokenizer``; its ids stay far below the 262,144 rows of the embedding). ``DIR`` must be
new or empty: nothing already there is overwritten.
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modeling_longllada import diffusion_gemma as dg  # noqa: E402
from modeling_longllada.rope_longllada import parse_length  # noqa: E402

MODES = ("transformers", "chunked")
SAVED_TOKENIZER_VOCAB = 4096  # --save-model's tokenizer: Gemma's special tokens and a small BPE (at most this)
WARMUP_LENGTH = 1024
# Prompt tokens are drawn below Gemma's image-token ids (255999 and up) and above its special tokens.
FIRST_TEXT_ID, LAST_TEXT_ID = 10, 255_998

TINY_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 32,
    "intermediate_size": 64,
    "moe_intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_global_key_value_heads": 1,
    "head_dim": 8,
    "global_head_dim": 16,
    "num_experts": 4,
    "top_k_experts": 2,
    "max_position_embeddings": 256,
    "sliding_window": 16,
    "use_bidirectional_attention": "vision",
    "layer_types": [dg.SLIDING_ATTENTION, dg.FULL_ATTENTION],
}
TINY_VISION_CONFIG = {"model_type": "gemma4_vision", "hidden_size": 16, "intermediate_size": 32,
                      "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8,
                      "position_embedding_size": 64}  # fmt: skip


class StepClock:
    """A ``generate`` streamer that records only when the prompt enters and when each denoising step ends
    (``generate`` calls ``put`` with the prompt first, then ``put_draft`` after every step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.started: float | None = None
        self.steps: list[float] = []

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def put(self, value: torch.Tensor) -> None:
        if self.started is None:
            self.started = self._now()

    def put_draft(self, value: torch.Tensor | None = None, logits: torch.Tensor | None = None) -> None:
        self.steps.append(self._now())

    def end(self) -> None:
        pass


def build_random_model(config: Any, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """transformers' DiffusionGemma for ``config`` with random weights on ``device``: built on ``meta``, each
    (possibly tied) tensor allocated once on ``device``, then transformers' ``init_weights``."""
    from transformers import DiffusionGemmaForBlockDiffusion

    with torch.device("meta"):
        model = DiffusionGemmaForBlockDiffusion(config)
    allocated: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for name, tensor in list(module._parameters.items()):
            if tensor is not None:
                if id(tensor) not in allocated:
                    kind = dtype if tensor.is_floating_point() else tensor.dtype
                    empty = torch.full(tensor.shape, float("nan"), dtype=kind, device=device)
                    allocated[id(tensor)] = nn.Parameter(empty, requires_grad=False)
                module._parameters[name] = allocated[id(tensor)]
        for name, tensor in list(module._buffers.items()):
            if tensor is not None:
                if id(tensor) not in allocated:  # buffers keep their dtype (RoPE frequencies stay float32)
                    fill = float("nan") if tensor.is_floating_point() else 0
                    allocated[id(tensor)] = torch.full(tensor.shape, fill, dtype=tensor.dtype, device=device)
                module._buffers[name] = allocated[id(tensor)]
    model.init_weights()
    # The encoder layers' scalar is a buffer that init_weights leaves alone (their __init__ sets it to one).
    for layer in model.model.encoder.language_model.layers:
        layer.layer_scalar.fill_(1.0)
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    unset = [name for name, tensor in tensors if tensor.is_floating_point() and bool(tensor.isnan().any())]
    if unset:
        raise RuntimeError(f"tensors left uninitialised after init_weights: {unset[:5]}")
    return model.eval()


def model_config(tiny: bool) -> Any:
    from transformers import DiffusionGemmaConfig

    if tiny:
        return DiffusionGemmaConfig(text_config=copy.deepcopy(TINY_TEXT_CONFIG), vision_config=dict(TINY_VISION_CONFIG),
                                    canvas_length=8, boi_token_id=5, eoi_token_id=6, image_token_id=7)  # fmt: skip
    return dg.released_config()


def sdpa_backends(device: torch.device, head_dim: int) -> dict[str, list[str]]:
    """Which of torch's SDPA kernels run bf16 attention at this head width, causal and with a boolean mask (the
    two ways transformers calls it here): a kernel that cannot leaves torch the O(L²) math path."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    query = torch.randn(1, 4, 512, head_dim, device=device, dtype=torch.bfloat16)
    mask = torch.ones(512, 512, device=device, dtype=torch.bool).tril()
    found: dict[str, list[str]] = {"causal": [], "boolean_mask": []}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        for case, kwargs in (("causal", {"is_causal": True}), ("boolean_mask", {"attn_mask": mask})):
            try:
                with sdpa_kernel([backend]):
                    torch.nn.functional.scaled_dot_product_attention(query, query, query, **kwargs)
                found[case].append(backend.name)
            except RuntimeError:
                pass
    return found


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def allocated_gib(device: torch.device) -> float | None:
    return round(torch.cuda.memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def run_one(model: nn.Module, ids: torch.Tensor, mode: str, steps: int, chunk: int, device: torch.device) -> dict:
    canvas = model.config.canvas_length
    clock = StepClock(device)
    kwargs = {"max_new_tokens": canvas, "max_denoising_steps": steps, "streamer": clock}
    start = clock._now()
    if mode == "transformers":
        out = model.generate(ids, **kwargs)
    else:
        out = dg.generate(model, ids, prefill_chunk_size=chunk, **kwargs)
    total = clock._now() - start
    step_times = [b - a for a, b in zip(clock.steps, clock.steps[1:])]
    step = statistics.median(step_times) if step_times else 0.0
    assert out.sequences.shape[-1] >= canvas
    return {
        "prompt_encoding_s": round(clock.steps[0] - start - step, 3),
        "denoising_step_ms": round(1000 * step, 2),
        "steps": len(clock.steps),
        "total_s": round(total, 3),
    }


def check_new_folder(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"--save-model {str(folder)!r} is not a new or empty folder; nothing was written")


def save_model(model: nn.Module, folder: Path) -> Path:
    """``model`` as a checkpoint folder with a small Gemma-token tokenizer and the released sampler settings (see
    the module docstring); ``folder`` must be new or empty."""
    from longllada.tiny_diffusion_gemma import SAMPLER_SETTINGS
    from longllada.tiny_model import default_texts
    from longllada.tokenizer import build_tokenizer, save_tokenizer
    from modeling_longllada.families import GEMMA_TURN_END_TOKEN

    check_new_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text_config = model.config.text_config
    vocab = min(SAVED_TOKENIZER_VOCAB, text_config.vocab_size)  # every id the tokenizer makes has a row
    tokenizer = build_tokenizer(default_texts(), vocab, family=dg.MODEL_TYPE)
    save_tokenizer(tokenizer, folder)
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):  # Gemma's ids 0, 1, 2: the tokenizer's too
        if getattr(text_config, name) != getattr(tokenizer, name):
            raise ValueError(f"the tokenizer's {name} {getattr(tokenizer, name)} is not the model's")
    generation = dg.DiffusionGemmaSamplerArgs(
        max_new_tokens=model.config.canvas_length, **SAMPLER_SETTINGS
    ).generation_config()
    generation.bos_token_id, generation.pad_token_id = tokenizer.bos_token_id, tokenizer.pad_token_id
    generation.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(GEMMA_TURN_END_TOKEN)]
    model.generation_config = generation
    model.save_pretrained(folder, max_shard_size="5GB")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default=None, help="prompt lengths, e.g. 32k,128k,256k (default; --tiny: 64,256)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"any of {','.join(MODES)} (default both)")
    parser.add_argument(
        "--prefill-chunk",
        type=int,
        default=None,
        help=f"chunked mode's chunk (default {dg.DEFAULT_PREFILL_CHUNK}; --tiny: 32)",
    )
    parser.add_argument(
        "--max-denoising-steps",
        type=int,
        default=None,
        help="steps per canvas (default: the checkpoint's 48; --tiny: 4)",
    )
    parser.add_argument("--attn", default="sdpa", help="attn_implementation (default sdpa)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU, float32 (a check of the script)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--save-model",
        type=Path,
        metavar="DIR",
        help="first save the random model as a checkpoint folder (new or empty; for `longllada eval`)",
    )
    args = parser.parse_args()
    try:
        dg.require_diffusion_gemma()
    except ImportError as error:
        print(f"diffusion_gemma_bench: error: {error}", file=sys.stderr)
        return 2
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes={args.modes!r} is not allowed; allowed: a comma-separated subset of {list(MODES)}")
    lengths = [
        parse_length(n, "--lengths") for n in (args.lengths or ("64,256" if args.tiny else "32k,128k,256k")).split(",")
    ]
    if args.max_denoising_steps is None:
        args.max_denoising_steps = 4 if args.tiny else 48
    if args.prefill_chunk is None:
        args.prefill_chunk = 32 if args.tiny else dg.DEFAULT_PREFILL_CHUNK
    for name in ("prefill_chunk", "max_denoising_steps"):
        dg.check_number(f"--{name.replace('_', '-')}", getattr(args, name), minimum=1, integer=True)
    if args.save_model is not None:  # before minutes of building
        try:
            check_new_folder(args.save_model)
        except ValueError as error:
            parser.error(str(error))
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device; run on a GPU, or give --tiny for the CPU check")
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16

    import transformers

    torch.manual_seed(0)
    model = build_random_model(model_config(args.tiny), device, dtype)
    model.set_attn_implementation(args.attn)
    if args.save_model is not None:
        try:
            print(f"saved {save_model(model, args.save_model)}", file=sys.stderr, flush=True)
        except ValueError as error:
            print(f"diffusion_gemma_bench: error: {error}", file=sys.stderr)
            return 2
    vocab = model.config.text_config.vocab_size
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "attn_implementation": args.attn,
        "experts_implementation": model.get_experts_implementation(),
        "parameters_billion": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "weights_gib": allocated_gib(device),
        "canvas_length": model.config.canvas_length,
        "max_denoising_steps": args.max_denoising_steps,
        "prefill_chunk": args.prefill_chunk,
        "rows": [],
    }
    if device.type == "cuda":  # sliding layers' heads are 256 wide, full-attention layers' 512
        results["sdpa_kernels"] = {f"head_dim_{width}": sdpa_backends(device, width) for width in (256, 512)}

    def prompt(length: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(length)
        return torch.randint(FIRST_TEXT_ID, min(vocab, LAST_TEXT_ID), (1, length), generator=generator).to(device)

    warmup = min(WARMUP_LENGTH, min(lengths))
    for mode in modes:  # kernels chosen, allocator grown; the chunked mode in two chunks
        run_one(model, prompt(warmup), mode, 2, max(1, warmup // 2), device)
    for length in lengths:
        for mode in modes:
            row: dict[str, Any] = {"prompt_tokens": length, "mode": mode}
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            try:
                row.update(run_one(model, prompt(length), mode, args.max_denoising_steps, args.prefill_chunk, device))
            except torch.cuda.OutOfMemoryError as error:
                row["out_of_memory"] = str(error).strip().splitlines()[0]
            except RuntimeError as error:  # e.g. a kernel refusing a mask past 2**31 elements: recorded, next length
                row["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
            row["peak_gib"] = peak_gib(device)
            results["rows"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print("| prompt | mode | prompt encoding s | step ms | steps | total s | peak GiB |")
    for r in results["rows"]:
        failure = r.get("out_of_memory") or r.get("error")
        if failure:
            print(f"| {r['prompt_tokens']} | {r['mode']} | failed: {failure} | | | | {r['peak_gib']} |")
        else:
            print(f"| {r['prompt_tokens']} | {r['mode']} | {r['prompt_encoding_s']} | {r['denoising_step_ms']} | "
                  f"{r['steps']} | {r['total_s']} | {r['peak_gib']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
