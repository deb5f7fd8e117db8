"""A left-padded batch on the GPU: attention row by row without a mask against sdpa's masked call, and what a
batch of NIAH-like prompts (lengths L and L-1, as the paper's grid cells come out) gives against each prompt alone.

A NIAH cell's prompts come out one token apart (1999 or 2000 tokens for the 2k cells), so most batches of a
sweep carry one token of left padding, and a mask turns sdpa away from its fastest kernels (cuDNN, flash) on
Hopper. ``fast_longllada.attention_by_row`` runs such a full pass's attention one row at a time, unmasked.

For each length (LLaDA-8B-shaped random bf16 model, built on the GPU):
- attention alone, [4, 32, L, 128] with rows of L and L-1 real keys: the masked call against row by row
  (median seconds of 5 after warm-up; max |difference|), and the unpadded call on contiguous [B, H, L, D]
  tensors against transposed views of [B, L, H, D] ones (the layout the block hands sdpa);
- one forward pass of that batch (32 positions' logits), with the row-by-row attention (the fast path) and with
  the masked call (the fast path switched off for attention only), and of the unpadded batch (4 rows of L);
- ``generate`` (32 tokens, block 32, 32 steps, exact and cache="prefix") of the padded batch against each row
  alone: seconds and tokens identical per row (lengths up to ``--generate-up-to``).

    python benchmarks/padded_batch_check.py --lengths 4096,32768 --out /tmp/out/padded_batch_h200.json
    python benchmarks/padded_batch_check.py --tiny --lengths 256 --out /tmp/padded_tiny.json   # CPU: the script
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fast_path_check import random_model, timed  # noqa: E402
from generate_bench import environment  # noqa: E402

from modeling_longllada import fast_longllada as fast  # noqa: E402
from modeling_longllada.modeling_longllada import attention  # noqa: E402

GEN = 32
ROWS = 4
SCRIPT = "padded_batch_check"  # the JSON files this script writes carry {"script": SCRIPT}


def attention_alone(device: torch.device, length: int, heads: int, head_dim: int) -> dict:
    torch.manual_seed(0)
    q, k, v = (torch.randn(ROWS, heads, length, head_dim, device=device, dtype=torch.bfloat16) for _ in range(3))
    real = torch.tensor([length, length - 1] * (ROWS // 2), device=device)
    mask = torch.arange(length, device=device)[None] >= (length - real)[:, None]
    starts = fast.left_padding_starts(mask)
    masked, masked_s, _ = timed(lambda: attention(q, k, v, mask, "sdpa"), device, repeats=5)
    by_row, by_row_s, _ = timed(lambda: fast.attention_by_row(q, k, v, starts, "sdpa"), device, repeats=5)
    unpadded, unpadded_s, _ = timed(lambda: attention(q, k, v, None, "sdpa"), device, repeats=5)
    # The block hands sdpa transposed views of [B, L, H, D] projections; the same values laid out contiguously:
    qt, kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    views, views_s, _ = timed(lambda: attention(qt, kt, vt, None, "sdpa"), device, repeats=5)
    flops = 4 * ROWS * heads * length * length * head_dim
    return {
        "masked_s": masked_s, "by_row_s": by_row_s, "unpadded_s": unpadded_s, "unpadded_views_s": views_s,
        "masked_tflops": flops / masked_s / 1e12, "by_row_tflops": flops / by_row_s / 1e12,
        "unpadded_tflops": flops / unpadded_s / 1e12, "unpadded_views_tflops": flops / views_s / 1e12,
        "max_abs_diff": float((masked.float() - by_row.float()).abs().max()),
        "views_equal_contiguous": bool(torch.equal(views, unpadded)),
    }  # fmt: skip


def batch_against_rows(model, device: torch.device, length: int, generate: bool) -> dict:
    vocab, mask_id, pad = model.config.vocab_size, model.config.mask_token_id, model.config.pad_token_id
    generator = torch.Generator().manual_seed(length)
    prompts = [torch.randint(8, vocab, (length - GEN - (row % 2),), generator=generator) for row in range(ROWS)]
    prompts = [p.masked_fill((p == mask_id) | (p == pad), 8) for p in prompts]
    width = max(len(p) for p in prompts)
    batch = torch.full((ROWS, width), pad)
    attention_mask = torch.zeros(ROWS, width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        batch[row, width - len(prompt) :], attention_mask[row, width - len(prompt) :] = prompt, 1
    batch, attention_mask = batch.to(device), attention_mask.to(device)
    full = torch.cat((batch, torch.full((ROWS, GEN), mask_id, device=device)), dim=1)
    full_mask = torch.cat((attention_mask, torch.ones(ROWS, GEN, dtype=torch.long, device=device)), dim=1)
    result: dict = {"length": length, "rows": ROWS, "prompt_tokens": [len(p) for p in prompts]}
    with torch.no_grad():
        _, result["forward_padded_by_row_s"], _ = timed(
            lambda: model(full, attention_mask=full_mask, logits_to_keep=GEN).logits, device
        )
        starts_of = fast.left_padding_starts
        fast.left_padding_starts = lambda mask: None  # the masked call, as before row-by-row attention
        try:
            _, result["forward_padded_masked_s"], _ = timed(
                lambda: model(full, attention_mask=full_mask, logits_to_keep=GEN).logits, device
            )
        finally:
            fast.left_padding_starts = starts_of
        same = torch.cat((prompts[0][None].expand(ROWS, -1).to(device),
                          torch.full((ROWS, GEN), mask_id, device=device)), dim=1)  # fmt: skip
        _, result["forward_unpadded_s"], _ = timed(lambda: model(same, logits_to_keep=GEN).logits, device)
    for mode, settings in {"exact": {}, "prefix": {"cache": "prefix"}}.items() if generate else ():
        common = dict(max_new_tokens=GEN, block_length=GEN, steps=GEN, **settings)
        together, seconds, _ = timed(
            lambda common=common: model.generate(batch, attention_mask=attention_mask, **common), device, repeats=1
        )
        alone = [model.generate(p[None].to(device), **common)[0, -GEN:] for p in prompts]
        result[f"{mode}_batch_s"] = seconds
        result[f"{mode}_rows_identical"] = [bool(torch.equal(together[row, -GEN:], alone[row])) for row in range(ROWS)]
        result[f"{mode}_token_agreement"] = float(
            sum((together[row, -GEN:] == alone[row]).sum() for row in range(ROWS)) / (ROWS * GEN)
        )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="4096,32768")
    parser.add_argument("--generate-up-to", type=int, default=8192, help="generate only at lengths up to this")
    parser.add_argument("--tiny", action="store_true", help="a small model on the CPU (checks the script)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        lengths = [int(n) for n in args.lengths.split(",")]
    except ValueError:
        parser.error(f"--lengths={args.lengths!r}: allowed: comma-separated positive integers")
    if any(n <= ROWS for n in lengths):
        parser.error(f"--lengths={args.lengths!r}: allowed: lengths above {ROWS}")
    if args.out.exists():
        try:
            ours = json.loads(args.out.read_text(encoding="utf-8")).get("script") == SCRIPT
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            parser.error(f"--out={str(args.out)!r} exists and was not written by this script; choose another path")
    device = torch.device("cpu" if args.tiny else "cuda")
    model = random_model("llada", args.tiny, device, torch.float32 if args.tiny else torch.bfloat16)
    config = model.config
    results: dict = {"script": SCRIPT, "command": " ".join(["python", *sys.argv]), "environment": environment(device),
                     "rows": []}  # fmt: skip
    for length in lengths:
        row = {"attention": attention_alone(device, length, config.n_heads, config.head_dim)}
        row.update(batch_against_rows(model, device, length, length <= args.generate_up_to))
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
