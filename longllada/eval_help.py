"""`longllada eval --help`: what this command adds to lm-eval's — the arguments of ``--model longllada`` (from
:mod:`longllada.model_args`), settings sweeps, resume, several GPUs, and an example for each family of the registry
(``modeling_longllada.families``, read without torch). lm-eval's own options stay with lm-eval: ``longllada eval
run --help``."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from longllada.model_args import BATCH_ARGS, LIKELIHOOD_ARGS, LOADING_ARGS, MODEL_ARGS, ROPE_ARGS, SAMPLER_ARGS

WIDTH = 100
NAME_WIDTH = max(len(name) for name in MODEL_ARGS)
REGISTRY = "modeling_longllada.families"


def _registry() -> ModuleType:
    """The family registry, read without importing its package: ``modeling_longllada/__init__.py`` registers the
    families with transformers (torch and transformers load, seconds), while ``families.py`` needs only the standard
    library. The file runs under its own name, so a later ``import modeling_longllada`` uses this very module."""
    if REGISTRY in sys.modules or "modeling_longllada" in sys.modules:
        return importlib.import_module(REGISTRY)
    package = importlib.util.find_spec("modeling_longllada")  # found, not run
    spec = importlib.util.spec_from_file_location(REGISTRY, Path(package.origin).parent / "families.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[REGISTRY] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[REGISTRY]
        raise
    return module


FAMILIES = _registry().FAMILIES
# The causal LM example: any transformers model outside the families (the LongLLaDA paper's LLaMA-3 baseline).
CAUSAL_EXAMPLE = (
    None,
    "any transformers causal LM (the LLaMA-3 baseline)",
    "lm-eval's hf model, RoPE base θ·λ",
    "pretrained=meta-llama/Meta-Llama-3-8B,ntk_factor=4,max_length=32800",
)


def _family_example(family: Any) -> tuple[str, str, str, str]:
    """(family name, what it is, what it runs as, --model_args) of a family's example."""
    card = family.card
    how = ("transformers' classes" if family.native else "this package's classes") + " and diffusion sampler"
    if family.bos_prefix:
        how += ", the BOS prepended"
    model_args = ",".join(part for part in (f"pretrained={card.official_repos[0]}", card.eval_example) if part)
    floor = type(family).__dataclass_fields__["min_transformers"].default  # the project's own floor
    needs = f"; transformers {family.min_transformers}+" if family.min_transformers != floor else ""
    return family.name, f"{family.title} ({', '.join(card.official_repos)}{needs})", how, model_args


# (family name or None, what it is, what it runs as, --model_args): one per family, then the causal LM.
FAMILY_EXAMPLES = (*(_family_example(family) for family in FAMILIES if family.card.official_repos), CAUSAL_EXAMPLE)


def _takers(name: str) -> str:
    """``"; taken by A, B"`` for a sampler argument that not every family takes, else ``""``."""
    takers = [family.title for family in FAMILIES if name in family.sampler_arguments]
    return "" if len(takers) == len(FAMILIES) else f"; taken by {', '.join(takers) or 'no family'}"


def _arguments(group: dict[str, tuple[str, str]], sampler: bool = False) -> list[str]:
    lines = []
    for name, (default, meaning) in group.items():
        text = f"{meaning} (default: {default}{_takers(name) if sampler else ''})"
        wrapped = textwrap.wrap(text, WIDTH - NAME_WIDTH - 4)
        lines.append(f"  {name:<{NAME_WIDTH}}  {wrapped[0]}")
        lines += [f"  {'':<{NAME_WIDTH}}  {line}" for line in wrapped[1:]]
    return lines


def eval_help() -> str:
    """The text of ``longllada eval --help``."""
    examples = []
    for _, family, how, model_args in FAMILY_EXAMPLES:
        examples += [f"  # {family}: {how}",
                     f"  longllada eval --model longllada --model_args {model_args} \\",
                     "      --tasks longllada_niah --batch_size 8 --output_path results --log_samples"]  # fmt: skip
    titles = ", ".join(family.title for family in FAMILIES)
    lines = [
        "usage: longllada eval [lm-eval run options] --model longllada --model_args KEY=VALUE,... [--model_args ...]",
        "",
        *textwrap.wrap(
            f"lm-evaluation-harness's command line with --model longllada registered (the diffusion families, {titles}, "
            "through their classes and diffusion sampler, any other transformers causal LM as lm-eval's hf model "
            "does, each with NTK RoPE scaling) and the tasks longllada_niah, longllada_ruler_*, "
            "longllada_longbench_* on the include path. Every other option is lm-eval's.",
            WIDTH,
        ),
        "lm-eval's own options (--tasks, --limit, --gen_kwargs, --metadata, ...): longllada eval run --help",
        "",
        "--model longllada arguments (--model_args), besides lm-eval's hf model arguments (pretrained, dtype,",
        "device, max_length, tokenizer, revision, trust_remote_code, ...):",
        " diffusion sampler (each family takes those its sampler has):",
        *_arguments(SAMPLER_ARGS, sampler=True),
        " likelihoods (the diffusion families):",
        *_arguments(LIKELIHOOD_ARGS),
        " batches (--batch_size N batches prompts within 5% of each other's length):",
        *_arguments(BATCH_ARGS),
        " RoPE, every family:",
        *_arguments(ROPE_ARGS),
        " loading:",
        *_arguments(LOADING_ARGS),
        "",
        "Settings sweep (one process, the imports paid once): give --model_args once per setting; each is a",
        "whole setting (pretrained included), all are checked before the first model loads, and they run in",
        "order with the rest of the command line:",
        "  longllada eval --model longllada --tasks longllada_niah --output_path results --log_samples \\",
        "      --model_args pretrained=GSAI-ML/LLaDA-8B-Base --model_args pretrained=GSAI-ML/LLaDA-8B-Base,ntk_factor=4",
        "",
        "Resume: with --output_path, each finished setting is recorded in longllada_settings.json there; the same",
        "command run again skips those. --use_cache PATH keeps each setting's answers as they come",
        "(PATH_setting-<digest>), so a setting stopped half-way resumes from its answers too.",
        "",
        "Several GPUs (the requests shared out; a prompt gets the same answer as on one GPU):",
        "  accelerate launch --multi_gpu --num_processes 2 -m longllada eval --model longllada ...",
        "",
        "Examples, one per family:",
        *examples,
        "",
        "Then: longllada niah-plot results --out niah.png; longllada table results --out tables",
        "Logging: LONGLLADA_LOG_LEVEL=DEBUG adds each batch's timing and generated token ids.",
    ]
    return "\n".join(lines) + "\n"
