"""sdpa against the flash-attention kernels (flash-attn 2, or flash-attn 4 on Hopper) on the GPU.

    python benchmarks/attention_backends.py --lengths 4096,16384,32768 --generate-lengths 4096,16384 \
        --out benchmarks/results/attention_backends_h200.json

For an LLaDA-8B-shaped random bf16 model (``fast_path_check.random_model``), per prompt length: one forward pass
with each backend (LM head on the last 32 positions; max |logit difference|, argmax agreement, median time of
``--repeats``), and at ``--generate-lengths`` a 32-token exact answer (block 32, 32 steps) with each backend:
tokens identical or not, and its time. A left-padded batch of two rows checks the varlen path (keys unpadded,
``cu_seqlens``) against sdpa with its padding mask, on the real rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fast_path_check import GEN, random_model, timed  # noqa: E402

import modeling_longllada.modeling_longllada as modeling  # noqa: E402

BACKENDS = ("sdpa", "flash_attention_2")


def kernel_name() -> str:
    module = getattr(modeling.flash_attn_func, "__module__", "") or ""
    return "flash-attn 4 (CuTe)" if "cute" in module else ("flash-attn 2" if module else "none")


def compare(model, length: int, device: torch.device, repeats: int, generate: bool) -> dict:
    vocab, mask_id = model.config.vocab_size, model.config.mask_token_id
    prompt = torch.randint(8, vocab - 8, (1, length - GEN), generator=torch.Generator().manual_seed(length))
    prompt = prompt.masked_fill(prompt == mask_id, 8).to(device)
    full = torch.cat((prompt, torch.full((1, GEN), mask_id, device=device)), dim=1)
    row: dict = {"length": length}
    logits, tokens = {}, {}
    for backend in BACKENDS:
        model.config._attn_implementation = backend
        with torch.no_grad():
            logits[backend], seconds, _ = timed(lambda: model(full, logits_to_keep=GEN).logits.float(), device, repeats)
        row[f"forward_s_{backend}"] = seconds
        if generate:
            tokens[backend], seconds, _ = timed(
                lambda: model.generate(prompt, max_new_tokens=GEN, block_length=GEN, steps=GEN), device, repeats=1
            )
            row[f"exact_s_{backend}"] = seconds
    a, b = logits["sdpa"], logits["flash_attention_2"]
    row["forward_max_abs_diff"] = float((a - b).abs().max())
    row["forward_rel_diff"] = float((a - b).norm() / a.norm())
    row["forward_argmax_agreement"] = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    row["forward_speedup"] = row["forward_s_sdpa"] / row["forward_s_flash_attention_2"]
    if generate:
        row["exact_tokens_identical"] = bool(torch.equal(tokens["sdpa"], tokens["flash_attention_2"]))
        row["exact_token_agreement"] = float((tokens["sdpa"] == tokens["flash_attention_2"]).float().mean())
        row["exact_speedup"] = row["exact_s_sdpa"] / row["exact_s_flash_attention_2"]
    return row


def padded_batch(model, device: torch.device) -> dict:
    """Two rows, 3000 and 4096 tokens, left-padded: the varlen call against sdpa's mask, on the real rows."""
    vocab = model.config.vocab_size
    ids = torch.randint(8, vocab - 8, (2, 4096), generator=torch.Generator().manual_seed(1)).to(device)
    mask = torch.ones_like(ids)
    mask[0, :1096] = 0
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = {}
    for backend in BACKENDS:
        model.config._attn_implementation = backend
        with torch.no_grad():
            out[backend] = model(ids, attention_mask=mask, position_ids=positions, logits_to_keep=GEN).logits.float()
    a, b = out["sdpa"], out["flash_attention_2"]
    return {"rows": [3000, 4096], "rel_diff": float((a - b).norm() / a.norm()),
            "argmax_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean())}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="4096,16384,32768")
    parser.add_argument("--generate-lengths", default="4096,16384")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a small model, to check the script")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if modeling.flash_attn_func is None:
        print("no flash-attention kernel is installed (flash-attn 2, or flash-attn 4's flash_attn.cute)")
        return 1
    device = torch.device("cuda")
    model = random_model("llada", args.tiny, device, torch.bfloat16)
    model.set_fast_path(True)
    generate_at = {int(n) for n in args.generate_lengths.split(",") if n}
    results = {"command": " ".join(["python", *sys.argv]), "gpu": torch.cuda.get_device_name(device),
               "torch": torch.__version__, "kernel": kernel_name(), "rows": []}  # fmt: skip
    for length in (int(n) for n in args.lengths.split(",")):
        row = compare(model, length, device, args.repeats, length in generate_at)
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    results["padded_batch"] = padded_batch(model, device)
    print(json.dumps(results["padded_batch"]), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
