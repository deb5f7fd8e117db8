"""Needle retrieval of a saved twin at its trained length and past it, with and without NTK scaling.

Prompts are contiguous report text with the needle at depth 0/25/50/75/100 %, then the question; a hit when
the output contains the keyword. Needles: held-out ones from the training generator (keywords never trained
on) and the evaluation task's own (``lm_eval_tasks/longllada_niah``, only ever evaluated on).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longllada.twins.data import report_text
from longllada.twins.needles import Needle, NeedleGenerator
from longllada.twins.settings import TrainSettings

REPO = Path(__file__).resolve().parents[2]
NIAH_NEEDLES = REPO / "lm_eval_tasks" / "longllada_niah" / "needles.jsonl"  # evaluation only, never training
NEEDLE_SETS = ("held-out", "niah-task")
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def eval_prompts(tokenizer, length: int, n_prompts: int, seed: int,
                 needles: Sequence[Needle] | None = None) -> list[tuple[list[int], Needle, float]]:  # fmt: skip
    """Needle prompts of exactly ``length`` tokens in the contiguous report: haystack + needle at one of five
    depths (a sentence start near it) + "\\n\\nQuestion: ...\\nAnswer:". Needles: held-out ones from the
    generator, or ``needles`` (each at every depth; ``n_prompts`` is then ignored)."""
    rng = random.Random(seed)
    text = report_text()
    generator = NeedleGenerator(text, rng, held_out=True)
    if needles is not None:
        n_prompts = len(needles) * len(DEPTHS)
    report_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    period = set(tokenizer(".", add_special_tokens=False)["input_ids"])
    prompts = []
    for i in range(n_prompts):
        needle = generator() if needles is None else needles[i // len(DEPTHS)]
        depth = DEPTHS[i % len(DEPTHS)]
        question = tokenizer("\n\nQuestion: " + needle.question + "\nAnswer:", add_special_tokens=False)["input_ids"]
        spaced = tokenizer(" " + needle.sentence, add_special_tokens=False)["input_ids"]
        budget = length - len(question) - len(spaced)
        if budget < 0:
            raise ValueError(f"prompt length {length} is shorter than the needle and question ({length - budget} "
                             "tokens); evaluate longer prompts")  # fmt: skip
        while len(report_ids) < budget:  # longer than the report: repeat it
            report_ids = report_ids + report_ids
        offset = rng.randint(0, len(report_ids) - budget)
        hay = report_ids[offset : offset + budget]
        starts = [j + 1 for j, t in enumerate(hay[:-1]) if t in period] + [0, len(hay)]
        at = min(starts, key=lambda c: abs(c - depth * len(hay)))
        prompts.append((hay[:at] + spaced + hay[at:] + question, needle, depth))
    return prompts


def with_rope_base(model, factor: float):
    """A Llama twin whose RoPE base is multiplied by ``factor`` (NTK scaling): rebuilt and reloaded."""
    from transformers import LlamaForCausalLM

    config = copy.deepcopy(model.config)
    base = getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]
    if getattr(config, "rope_parameters", None) is not None:
        config.rope_parameters = {**config.rope_parameters, "rope_theta": base * factor}
    config.rope_theta = base * factor
    scaled = LlamaForCausalLM(config).to(model.device, model.dtype)
    scaled.load_state_dict(model.state_dict())
    return scaled.eval()


def evaluate_retrieval(twin: str, model, tokenizer, settings: TrainSettings, device: str, batch_size: int = 20,
                       needle_set_names: Sequence[str] = NEEDLE_SETS) -> list[dict[str, Any]]:  # fmt: skip
    """Retrieval accuracy per (prompt length, NTK on/off); see :mod:`longllada.twins`."""
    import torch

    from modeling_longllada import ntk_scaling_factor

    head_dim = settings.d_model // settings.n_heads
    lengths = [settings.train_length - 32] + [m * settings.train_length for m in settings.eval_multiples]
    unknown = set(needle_set_names) - set(NEEDLE_SETS)
    if unknown:
        raise ValueError(f"needle sets {sorted(unknown)} are unknown; allowed: {NEEDLE_SETS}")
    needle_sets: list[tuple[str, list[Needle] | None]] = [("held-out", None)] if "held-out" in needle_set_names else []
    if (
        "niah-task" in needle_set_names and NIAH_NEEDLES.is_file()
    ):  # the evaluation task's needles: never trained on, other subjects' style
        rows = [json.loads(line) for line in NIAH_NEEDLES.read_text(encoding="utf-8").splitlines() if line.strip()]
        needle_sets.append(("niah-task", [Needle(r["subject"], r["keyword"]) for r in rows]))
    results = []
    for (set_name, needles), length in ((ns, n) for n in lengths for ns in needle_sets):
        prompts = eval_prompts(tokenizer, length, settings.eval_prompts, seed=777 + length, needles=needles)
        total = length + 32 if twin == "diffusion" else length + 8
        factor = ntk_scaling_factor(head_dim, settings.rope_theta, settings.train_length, total)
        for ntk in (False, True):
            if ntk and factor == 1:
                continue
            if twin == "diffusion":
                model.config.rope_scaling = {"type": "dynamic"} if ntk else None
                scored = model
            else:
                scored = with_rope_base(model, factor) if ntk else model
            right, by_depth = 0, {d: [0, 0] for d in DEPTHS}
            examples = []
            for i in range(0, len(prompts), batch_size):
                chunk = prompts[i : i + batch_size]
                ids = torch.tensor([p for p, _, _ in chunk], device=device)
                with torch.no_grad():
                    if twin == "diffusion":
                        out = scored.generate(ids, max_new_tokens=32, steps=32, block_length=32, temperature=0.0)
                    else:
                        out = scored.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                              do_sample=False, pad_token_id=tokenizer.eos_token_id)  # fmt: skip
                for (_, needle, depth), row in zip(chunk, out[:, ids.shape[1] :].tolist()):
                    answer = tokenizer.decode(row, skip_special_tokens=True)
                    hit = needle.keyword in answer
                    right += hit
                    by_depth[depth][0] += hit
                    by_depth[depth][1] += 1
                    if len(examples) < 3:
                        examples.append({"keyword": needle.keyword, "output": answer[:60]})
            result = {"twin": twin, "needles": set_name, "prompt_length": length, "ntk": ntk, "ntk_factor": factor if ntk else 1,
                      "accuracy": right / len(prompts), "n": len(prompts),
                      "by_depth": {str(d): v[0] / v[1] for d, v in by_depth.items() if v[1]}, "examples": examples}  # fmt: skip
            print(f"[{twin}] retrieval ({set_name} needles) @ {length} tokens{' NTK x' + str(factor) if ntk else ''}: "
                  f"{result['accuracy']:.2%}", flush=True)  # fmt: skip
            results.append(result)
    if twin == "diffusion":
        model.config.rope_scaling = None
    return results
