"""How far the approximate samplers move from exact mode, on tiny models (CPU, seconds).

For each model and prompt, ``generate`` runs in exact mode (``cache="none"``) and in each approximate mode:
``cache="prefix"``, ``cache="dual"``, threshold decoding (0.9, 0.5) without and with the dual cache. Printed per
mode: token agreement with exact mode (share of the generated tokens that are equal, position by position),
the share of prompts whose whole answer is equal, and the mean number of forward passes. (No times: on a
tiny CPU model they measure the host, not the sampler; benchmarks/generate_bench.py times the 8B shape.)

Models: a random tiny model (``longllada.tiny_model.build_tiny_model``) and, where it is in the tree, the
trained tiny twin ``longllada/models/tiny-llada-diffusion`` (prompts cut from the report it was trained on,
which makes its predictions confident, unlike a random model's). Two layouts: one block of 32 (the needle
setup: the prefix cache is then the prompt) and four blocks of 8 (later blocks also see earlier answers
through the cache).

    python benchmarks/cache_agreement.py --out benchmarks/results/cache_agreement_tiny.txt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modeling_longllada import LongLLaDAModelLM  # noqa: E402

TWIN = ROOT / "longllada" / "models" / "tiny-llada-diffusion"
REPORT = ROOT / "longllada" / "data" / "gov_report_001.txt"
MODES = {
    "prefix": {"cache": "prefix"},
    "dual": {"cache": "dual"},
    "threshold 0.9": {"threshold": 0.9},
    "threshold 0.5": {"threshold": 0.5},
    "threshold 0.9 + dual": {"threshold": 0.9, "cache": "dual"},
}
LAYOUTS = {"1 block of 32": {"block_length": 32, "steps": 32}, "4 blocks of 8": {"block_length": 8, "steps": 32}}


def random_model(workdir: Path) -> tuple[LongLLaDAModelLM, list[torch.Tensor]]:
    from longllada.tiny_model import build_tiny_model

    path = build_tiny_model(workdir / "random", n_layers=4, d_model=128, n_heads=4, vocab_size=512, seed=0)
    model = LongLLaDAModelLM.from_pretrained(path).eval()
    special = {model.config.mask_token_id, model.config.eos_token_id, model.config.pad_token_id}
    ordinary = torch.tensor([i for i in range(model.config.vocab_size) if i not in special and i > 8])
    generator = torch.Generator().manual_seed(0)
    prompts = [ordinary[torch.randint(len(ordinary), (96,), generator=generator)][None] for _ in range(8)]
    return model, prompts


def twin_model() -> tuple[LongLLaDAModelLM, list[torch.Tensor]]:
    from transformers import AutoTokenizer

    model = LongLLaDAModelLM.from_pretrained(TWIN).eval()
    tokenizer = AutoTokenizer.from_pretrained(TWIN)
    ids = tokenizer(REPORT.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    length = 160  # + 32 generated: inside the twin's trained 256 tokens
    starts = torch.linspace(0, len(ids) - length - 1, 8).long().tolist()
    return model, [torch.tensor(ids[s : s + length])[None] for s in starts]


@torch.no_grad()
def compare(model, prompts, layout: dict) -> list[tuple[str, float, float, float]]:
    """Rows (mode, token agreement with exact, share of identical answers, mean forward passes)."""
    rows = []
    exact, passes = [], []
    for prompt in prompts:
        out = model.generate(prompt, max_new_tokens=32, return_dict_in_generate=True, **layout)
        exact.append(out.sequences[0, prompt.shape[1] :])
        passes.append(out.num_forward_passes)
    rows.append(("exact", 1.0, 1.0, sum(passes) / len(passes)))
    for name, kwargs in MODES.items():
        same_tokens, same_answers, passes = [], [], []
        for prompt, reference in zip(prompts, exact):
            out = model.generate(prompt, max_new_tokens=32, return_dict_in_generate=True, **layout, **kwargs)
            answer = out.sequences[0, prompt.shape[1] :]
            same_tokens.append((answer == reference).float().mean().item())
            same_answers.append(float(torch.equal(answer, reference)))
            passes.append(out.num_forward_passes)
        rows.append(
            (
                name,
                sum(same_tokens) / len(same_tokens),
                sum(same_answers) / len(same_answers),
                sum(passes) / len(passes),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    lines = [
        "Approximate samplers against exact mode on tiny CPU models: 32 new tokens, 32 steps, greedy, "
        "low-confidence remasking; 8 prompts per model.",
        "agreement = generated tokens equal to exact mode's, position by position; identical = whole answer equal.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        models = {"random tiny model (4 layers, d 128; 96-token random prompts)": lambda: random_model(Path(tmp))}
        if (TWIN / "model.safetensors").exists():
            models["trained tiny twin tiny-llada-diffusion (160-token report prompts)"] = twin_model
        for title, load in models.items():
            model, prompts = load()
            for layout_name, layout in LAYOUTS.items():
                lines.append(f"{title}, {layout_name}:")
                lines.append(f"  {'mode':<22} {'agreement':>9} {'identical':>9} {'passes':>7}")
                for name, agree, identical, passes in compare(model, prompts, layout):
                    lines.append(f"  {name:<22} {agree:>9.1%} {identical:>9.0%} {passes:>7.1f}")
                lines.append("")
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
