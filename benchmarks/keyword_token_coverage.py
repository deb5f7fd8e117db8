"""Why the tiny twins missed needles: is the keyword's first token one they ever copied in training?

For held-out needle prompts at the trained length minus 32 (the training script's own ``eval_prompts``), this
scores each keyword piece teacher-forced: the causal twin's argmax after the prompt and the right earlier
pieces; the diffusion twin's argmax at piece k with pieces < k given and the rest of a 32-token answer window
masked. First-piece accuracy is split by how often that token started a keyword in a sample of the twin's
training keywords (``--draws`` keywords from the training generator with the twin's saved settings).

    python benchmarks/keyword_token_coverage.py --models longllada/models \\
        --settings benchmarks/train_logs/diffusion_summary.json --label shipped --out results.json

CPU only, about a minute per pair of twins.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from longllada.twins.data import DocumentBuilder, report_text
from longllada.twins.evaluation import eval_prompts
from longllada.twins.settings import settings_from_dict

BUCKETS = ("never", "1-20", "over 20")


def first_token_counts(tokenizer, summary_path: Path, draws: int) -> collections.Counter:
    """How often each token starts a training keyword, over ``draws`` keywords of the twin's generator."""
    settings = settings_from_dict(json.loads(summary_path.read_text())["settings"])
    builder = DocumentBuilder.for_training(tokenizer, report_text(), settings)
    counts: collections.Counter = collections.Counter()
    for _ in range(draws):
        counts[tokenizer(" " + builder.needles.keyword(), add_special_tokens=False)["input_ids"][0]] += 1
    return counts


def bucket(count: int) -> str:
    return BUCKETS[0] if count == 0 else BUCKETS[1] if count <= 20 else BUCKETS[2]


@torch.no_grad()
def piece_accuracy(models: Path, summary_path: Path, n_prompts: int, draws: int) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(models / "tiny-llama-ar")
    causal = AutoModelForCausalLM.from_pretrained(models / "tiny-llama-ar").eval()
    diffusion = AutoModelForCausalLM.from_pretrained(models / "tiny-llada-diffusion", trust_remote_code=True).eval()
    counts = first_token_counts(tokenizer, summary_path, draws)
    length = causal.config.max_position_embeddings - 32
    mask = tokenizer.mask_token_id
    by_piece = {"causal": collections.defaultdict(list), "diffusion": collections.defaultdict(list)}
    by_bucket = {"causal": collections.defaultdict(list), "diffusion": collections.defaultdict(list)}
    for prompt, needle, _depth in eval_prompts(tokenizer, length, n_prompts, seed=1):
        answer = tokenizer(" " + needle.keyword + ".", add_special_tokens=False)["input_ids"][:-1]  # without "."
        logits = causal(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(answer)]
        causal_right = (logits.argmax(-1) == torch.tensor(answer)).tolist()
        window = torch.full((len(answer), 32), mask)  # row k: pieces < k given, the rest masked
        for k in range(len(answer)):
            window[k, :k] = torch.tensor(answer[:k])
        rows = torch.cat([torch.tensor([prompt]).expand(len(answer), -1), window], dim=1)
        picks = diffusion(input_ids=rows).logits[torch.arange(len(answer)), len(prompt) + torch.arange(len(answer))]
        diffusion_right = (picks.argmax(-1) == torch.tensor(answer)).tolist()
        for twin, right in (("causal", causal_right), ("diffusion", diffusion_right)):
            for k, ok in enumerate(right):
                by_piece[twin][min(k, 3)].append(ok)
            by_bucket[twin][bucket(counts[answer[0]])].append(right[0])

    def summary(values: dict) -> dict:
        return {str(key): {"accuracy": round(sum(v) / len(v), 3), "n": len(v)} for key, v in sorted(values.items())}

    return {
        "prompt_length": length, "prompts": n_prompts, "keyword_draws": draws,
        "piece_accuracy": {twin: summary(v) for twin, v in by_piece.items()},  # piece index, 3 = 3 and later
        "first_piece_by_training_count": {twin: summary(v) for twin, v in by_bucket.items()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="folder with tiny-llada-diffusion, tiny-llama-ar")
    parser.add_argument("--settings", type=Path, required=True, help="the twins' training summary (settings)")
    parser.add_argument("--label", required=True, help="name of this pair in the output file")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--draws", type=int, default=50_000, help="training keywords sampled for the counts")
    parser.add_argument("--out", type=Path, required=True, help="JSON file; the label's entry is replaced")
    args = parser.parse_args()
    result = piece_accuracy(args.models, args.settings, args.prompts, args.draws)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[args.label] = result
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
