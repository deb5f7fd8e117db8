"""Sampler outputs on the shipped diffusion twin, recorded once and compared after every change to the sampler.

    python benchmarks/sampler_parity.py --record benchmarks/results/sampler_parity.json   # before a change
    python benchmarks/sampler_parity.py --check benchmarks/results/sampler_parity.json    # after it

Exact, prefix-cache, dual-cache and threshold decoding (with and without left padding, with cfg and sampling)
on prompts cut from the report the twin was trained on; ``--check`` exits 1 unless every token is identical.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modeling_longllada import LongLLaDAModelLM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / "longllada" / "models" / "tiny-llada-diffusion"
REPORT = ROOT / "longllada" / "data" / "gov_report_001.txt"

SETTINGS = {
    "exact": {},
    "exact_two_tokens_a_step": {"steps": 32},
    "prefix": {"cache": "prefix"},
    "dual": {"cache": "dual"},
    "threshold": {"threshold": 0.9},
    "prefix_threshold": {"cache": "prefix", "threshold": 0.9},
    "dual_threshold": {"cache": "dual", "threshold": 0.7},
    "cfg": {"cfg_scale": 1.0},
    "sampled": {"temperature": 0.8, "seed": 7},
    "random_remasking": {"remasking": "random", "seed": 7},
}


def outputs() -> dict[str, list[list[int]]]:
    tokenizer = AutoTokenizer.from_pretrained(TWIN, trust_remote_code=True)
    model = LongLLaDAModelLM.from_pretrained(TWIN).eval()  # the project's code, not the folder's copy
    words = REPORT.read_text().split()
    texts = [" ".join(words[i : i + n]) for i, n in ((0, 120), (500, 60), (2000, 90))]
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    results = {}
    for name, settings in SETTINGS.items():
        settings = dict(settings)
        seed = settings.pop("seed", None)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        out = model.generate(
            batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=64, block_length=32,
            generator=generator, **settings,
        )  # fmt: skip
        results[name] = out[:, batch["input_ids"].shape[1] :].tolist()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path)
    group.add_argument("--check", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    current = outputs()
    if args.record:
        args.record.write_text(json.dumps(current, indent=1) + "\n")
        print(f"recorded {len(current)} settings to {args.record}")
        return 0
    recorded = json.loads(args.check.read_text())
    differ = [name for name in recorded if recorded[name] != current.get(name)]
    for name in recorded:
        print(f"{name:24s} {'identical' if name not in differ else 'DIFFERENT'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
