"""`longllada eval --help`: what this command adds to lm-eval's — the arguments of ``--model longllada`` (from
:mod:`longllada.model_args`), settings sweeps, resume, several GPUs, and an example for each family. lm-eval's own
options stay with lm-eval: ``longllada eval run --help``."""

from __future__ import annotations

import textwrap

from longllada.model_args import BATCH_ARGS, LIKELIHOOD_ARGS, LOADING_ARGS, ROPE_ARGS, SAMPLER_ARGS

# (family, what it runs as, --model_args of an example). The tasks' README files give the paper's settings.
FAMILY_EXAMPLES = (
    ("LLaDA-8B Base/Instruct, LLaDA-1.5", "our diffusion classes and sampler",
     "pretrained=GSAI-ML/LLaDA-8B-Base,ntk_target=16384,cache=prefix"),
    ("Dream-v0 7B Base/Instruct", "our classes, Dream's sampler, the BOS prepended",
     "pretrained=Dream-org/Dream-v0-Base-7B,ntk_factor=5,alg=entropy,temperature=0.2,top_p=0.95,steps=32"),
    ("LLaDA2.0 / LLaDA2.1 mini, flash", "our block-diffusion classes, the official samplers on an exact key/value "
     "cache", "pretrained=inclusionAI/LLaDA2.1-mini,ntk_target=65536,editing_threshold=0.9"),
    ("any transformers causal LM (the LLaMA-3 baseline)", "lm-eval's hf model, RoPE base θ·λ",
     "pretrained=meta-llama/Meta-Llama-3-8B,ntk_factor=4,max_length=32800"),
)  # fmt: skip
WIDTH = 100


def _arguments(group: dict[str, tuple[str, str]]) -> list[str]:
    lines = []
    for name, (default, meaning) in group.items():
        text = f"{meaning} (default: {default})"
        wrapped = textwrap.wrap(text, WIDTH - 20)
        lines.append(f"  {name:<16}  {wrapped[0]}")
        lines += [f"  {'':<16}  {line}" for line in wrapped[1:]]
    return lines


def eval_help() -> str:
    """The text of ``longllada eval --help``."""
    examples = []
    for family, how, model_args in FAMILY_EXAMPLES:
        examples += [f"  # {family}: {how}",
                     f"  longllada eval --model longllada --model_args {model_args} \\",
                     "      --tasks longllada_niah --batch_size 8 --output_path results --log_samples"]  # fmt: skip
    lines = [
        "usage: longllada eval [lm-eval run options] --model longllada --model_args KEY=VALUE,... [--model_args ...]",
        "",
        *textwrap.wrap(
            "lm-evaluation-harness's command line with --model longllada registered (LLaDA and Dream through this "
            "package's classes and diffusion sampler, any other transformers causal LM as lm-eval's hf model does, "
            "each with NTK RoPE scaling) and the tasks longllada_niah, longllada_ruler_*, longllada_longbench_* on "
            "the include path. Every other option is lm-eval's.",
            WIDTH,
        ),
        "lm-eval's own options (--tasks, --limit, --gen_kwargs, --metadata, ...): longllada eval run --help",
        "",
        "--model longllada arguments (--model_args), besides lm-eval's hf model arguments (pretrained, dtype,",
        "device, max_length, tokenizer, revision, trust_remote_code, ...):",
        " diffusion sampler (LLaDA, Dream, LLaDA2):",
        *_arguments(SAMPLER_ARGS),
        " likelihoods (LLaDA, Dream, LLaDA2):",
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
