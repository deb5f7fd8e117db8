"""The model card (README.md) of a LongLLaDA repo: metadata, what it is, runnable demos, the NTK factor table.

One card for every family: what differs (the model's name and paper, the features, the facts table, the sampler
examples, the prompt rules) comes from the family's entry in ``modeling_longllada.families`` (``Family.card``) and
from the repo's config.

Every fenced block of the card is meant to be run as written (the python ones one after the other, as in a
notebook); tests/test_hub_upload.py runs them against a built folder of every family, and
tests/test_hub_upload_dream.py against one converted from an official-format Dream checkpoint.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from modeling_longllada.families import Family, SamplerDemo

# Tags after the family's own.
COMMON_TAGS = ["diffusion", "long-context", "ntk"]
# Context lengths of the NTK table besides the multiples (2x..32x) of the trained length.
COMMON_LENGTHS = (8192, 16384, 32768, 65536, 131072)
TRAINED_LENGTH_MULTIPLES = (2, 4, 8, 16, 32)
# Carried over from the source card when present.
INHERITED_METADATA = ("language", "license_name", "license_link", "datasets")

LONGLLADA_PAPER = "https://arxiv.org/abs/2506.14429"
SCALING_LAW_PAPER = "https://arxiv.org/abs/2310.05209"


def card_tags(family: Family) -> list[str]:
    """The card's Hub tags: the family's, the common ones, and ``custom_code`` unless transformers has the model."""
    return [family.card.tag, *COMMON_TAGS, *([] if family.native else ["custom_code"])]


def card_metadata(
    license: str, base_model: str | None, source_metadata: dict[str, Any] | None = None, tags: list[str] | None = None
) -> dict[str, Any]:
    """The YAML header, as a dict checked by ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import ModelCardData

    inherited = {k: v for k, v in (source_metadata or {}).items() if k in INHERITED_METADATA and v}
    data = ModelCardData(
        license=license,
        base_model=base_model,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=list(tags or []),
        **inherited,
    )
    return data.to_dict()


def _family(config: dict[str, Any]) -> Family:
    from hub_upload.build import family_of

    return family_of(config)


def parse_config(config: dict[str, Any]) -> Any:
    """The family's config object for a config.json dict (the family found by its ``model_type`` or fields)."""
    cls = _family(config).config_cls()
    return cls(**{k: v for k, v in config.items() if k not in ("auto_map", "architectures", "model_type")})


def ntk_table_rows(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the factor table: for each length past the trained one, λ from the scaling law and the base θ·λ.

    The trained length is the family's (``config.trained_length``: LLaDA's ``max_sequence_length``, Dream's
    ``trained_length``, LLaDA-MoE's ``max_position_embeddings``; a native family's hooks read theirs, and give λ
    by their law); the law counts the rotated dimensions of a head (``config.rotary_dim``)."""
    from modeling_longllada import ntk_scaling_factor

    parsed = parse_config(config)
    hooks = _family(config).tool_hooks()
    if hooks is not None:  # a native family: its law (the layers it scales, their rotated dimensions)
        summary = hooks.rope_summary(parsed)
        theta, trained = float(summary["rope_theta"]), int(summary["trained_length"])
    else:
        theta, trained = float(parsed.rope_theta), int(parsed.trained_length)
    lengths = sorted({m * trained for m in TRAINED_LENGTH_MULTIPLES} | {n for n in COMMON_LENGTHS if n > trained})
    rows = []
    for length in lengths:
        if hooks is not None:
            factor = hooks.ntk_factor_for_length(parsed, length)
        else:
            factor = ntk_scaling_factor(parsed.rotary_dim, theta, trained, length)
        rows.append({"length": length, "ratio": length / trained, "factor": factor, "base": theta * factor})
    return rows


def _length_label(tokens: int) -> str:
    return f"{tokens:,}" + (f" ({tokens // 1024}k)" if tokens % 1024 == 0 else "")


def _scaling_label(rope_scaling: dict[str, Any] | None) -> str:
    return "none" if rope_scaling is None else f"`{json.dumps(rope_scaling)}`"


def render_model_card(
    repo_id: str,
    config: dict[str, Any],
    revision: str = "main",
    license: str = "other",
    base_model: str | None = None,
    source_metadata: dict[str, Any] | None = None,
    has_chat_template: bool = False,
    variant: Any = None,
) -> str:
    """README.md for the repo ``repo_id`` at ``revision``, from its converted ``config`` (config.json as a dict);
    ``variant`` (a ``families.SamplerVariant``) names the release the card is about, with its paper."""
    import dataclasses

    import yaml

    family = _family(config)
    card = family.card
    if variant is not None:
        card = dataclasses.replace(
            card, model=variant.title, paper=variant.paper,
            papers=((card.model, card.paper), *((name, url) for name, url in card.papers if url != variant.paper)),
        )  # fmt: skip
        family = dataclasses.replace(family, title=variant.title, card=card)
    metadata = card_metadata(license, base_model, source_metadata, tags=card_tags(family))
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip()
    facts = _card_facts(repo_id, config, revision, base_model)
    papers = [(family.title, card.paper), ("LongLLaDA", LONGLLADA_PAPER), *card.papers]
    papers.append(("the RoPE extrapolation scaling law", SCALING_LAW_PAPER))
    usage = (
        f"Needs `torch` and `transformers` ({family.min_transformers} or newer"
        + (", which has the model" if family.native else "")
        + ")"
        + ("" if family.native else " and `trust_remote_code=True`")
        + ". The snippets continue one another, like cells of a notebook."
    )
    if family.bos_prefix:
        usage += (
            f" Prompts start with the tokenizer's BOS token (`{family.tokenizer.bos_token}`), as in the LongLLaDA "
            f"paper's {family.title} runs."
        )

    if family.native:
        intro = (
            f"A LongLLaDA packaging{facts.base_line}: the {card.model} diffusion language model "
            f"([model]({card.paper})), which transformers implements itself, with NTK scaling of its rotary position "
            "embeddings for contexts longer than it was trained on, without any training, as in *LongLLaDA: "
            f"Unlocking Long Context Capabilities in Diffusion LLMs* ([paper]({LONGLLADA_PAPER})). The weights are "
            f"the base model's, unchanged{card.weights_note}, and no code is shipped: transformers' own classes load "
            "this repo. What it adds:"
        )
    else:
        intro = (
            f"A LongLLaDA packaging{facts.base_line}: the {card.model} masked-diffusion language model "
            f"([paper]({card.paper})) with NTK scaling of its rotary position embeddings, so that it reads contexts "
            "longer than it was trained on without any training, as in *LongLLaDA: Unlocking Long Context "
            f"Capabilities in Diffusion LLMs* ([paper]({LONGLLADA_PAPER})). The weights are the base model's, "
            f"unchanged{card.weights_note}; the remote code ({card.remote_code}) provides:"
        )
    if family.likelihood:
        scoring = ["### Score a continuation", card.score_text, _python(_score(family))]
        ppl = [
            "Perplexity versus context length (the LongLLaDA paper's Figure 1), written to a JSON-lines file:",
            _bash(_ppl_command(repo_id, revision, facts.trained)),
        ]
    else:
        scoring, ppl = [], []
    if card.ntk_demo:  # transformers alone: the base set in the config before the weights load
        ntk = [
            card.ntk_text.format(factor=facts.demo_factor),
            _python(card.ntk_demo.format(rev=facts.rev, factor=facts.demo_factor)),
        ]
    else:
        ntk = [
            card.ntk_text.format(factor=facts.demo_factor),
            _python(_ntk_factor(facts.rev, facts.demo_factor)),
            "Or by the length to reach (λ from the scaling law below):",
            _python(_ntk_target(facts.rev, facts.demo_target)),
        ]
    if family.native:
        code_note = (
            f"- No code is shipped: transformers' own {family.title} classes (transformers {family.min_transformers} "
            "or newer) load these files; an NTK branch differs from `main` only in its `config.json`."
        )
    else:
        code_note = (
            f"- The official {family.title} checkpoints' remote code is not used here; these files load the same "
            f"weights on transformers {family.min_transformers} to 5.x."
        )
    if not family.likelihood:
        code_note += f"\n- {family.likelihood_refusal()}. Perplexity curves and multiple-choice scoring do not apply."
    # LongLLaDA's finding on masked-diffusion LLMs, which their perplexity curves show
    perception = (
        [
            "Without scaling, a diffusion LLM's perplexity stays flat past its trained length, but it only retrieves "
            'from the most recent window of about that length (its "local perception"); NTK scaling by the law '
            "below extends retrieval to the scaled length."
        ]
        if family.likelihood
        else []
    )

    sections = [
        f"---\n{header}\n---",
        f"# {facts.name}",
        intro,
        "\n".join(card.features),
        _facts_table(card.facts, facts, revision),
        *perception,
        "## Usage",
        usage,
        "### Load and generate",
        _python(_load_and_generate(family, repo_id, facts.rev, has_chat_template)),
        f"### {card.batch_heading}",
        card.batch_text,
        _python(_batched_generate(family)),
        *scoring,
        "### Longer contexts: NTK scaling",
        *ntk,
        "### NTK factors for common lengths",
        _ntk_section(facts.parsed, facts.rows, facts.summary),
        "## Evaluate",
        card.eval_text,
        _bash(_eval_command(repo_id, revision, facts.trained, card.eval_arguments.format(factor=facts.demo_factor))),
        *ppl,
        "## Notes",
        f"{card.notes}\n{code_note}\n- Papers: {', '.join(f'{name} ({url})' for name, url in papers)}.",
    ]
    return "\n\n".join(sections) + "\n"


def _facts_table(rows: tuple[tuple[str, str], ...], facts: _CardFacts, revision: str) -> str:
    """The facts table: the family's ``(label, value)`` templates filled from the config and the revision."""
    values = {"config": facts.parsed, "revision": revision, "scaling": _scaling_label(facts.scaling),
              "effective": facts.effective}  # fmt: skip
    lines = [f"| {label.format(**values)} | {value.format(**values)} |" for label, value in rows]
    return "| | |\n|---|---|\n" + "\n".join(lines)


def _python(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def _bash(code: str) -> str:
    return f"```bash\n{code.strip()}\n```"


class _CardFacts(NamedTuple):
    """What every family's card says of a revision, read from its config."""

    parsed: Any  # the config as the family's class
    trained: int  # trained context length
    rows: list[dict[str, Any]]  # the NTK table (ntk_table_rows)
    demo_factor: int  # λ for twice the trained length (LLaDA-8B: 4; Dream-v0: 5, the paper's), at least 2
    demo_target: int  # 4 × the trained length
    name: str  # the repo's name
    rev: str  # ', revision="..."' for the snippets, or "" for main
    scaling: Any  # the revision's rope_scaling
    effective: str  # the effective RoPE base, in words
    base_line: str  # " of [`base`](link)", or ""
    summary: dict[str, Any] | None  # a native family's RoPE as its hooks read it (rope_summary), else None


def _card_facts(repo_id: str, config: Any, revision: str, base_model: str | None) -> _CardFacts:
    parsed = parse_config(config)
    rows = ntk_table_rows(config)
    hooks = _family(config).tool_hooks()
    summary = hooks.rope_summary(parsed) if hooks is not None else None
    if summary is not None:
        scaling, trained = summary["scaling"], int(summary["trained_length"])
        effective = f"{summary['effective_rope_theta']:,.0f}" + (
            f" (factor {summary['factor']:g} of {summary['rope_theta']:,.0f})" if scaling else " (no scaling)"
        )
    else:
        scaling, trained = parsed.rope_scaling, int(parsed.trained_length)
        if scaling is None:
            effective = f"{parsed.rope_theta:,.0f} (no scaling)"
        elif parsed.rope_per_length:
            effective = "chosen per forward pass from its length"
        elif parsed.rope_effective_base == "per frequency":
            effective = f"{parsed.rope_theta:,.0f}, its frequencies rescaled by `{scaling['type']}`"
        else:
            effective = f"{parsed.rope_theta * parsed.rope_scaling_factor:,.0f} (factor {parsed.rope_scaling_factor:g})"
    return _CardFacts(
        parsed=parsed,
        trained=trained,
        rows=rows,
        demo_factor=max(2, rows[0]["factor"]),
        demo_target=4 * trained,
        name=repo_id.split("/")[-1],
        rev="" if revision == "main" else f', revision="{revision}"',
        scaling=scaling,
        effective=effective,
        base_line=f" of [`{base_model}`](https://huggingface.co/{base_model})" if base_model else "",
        summary=summary,
    )


def _call(demo: SamplerDemo, first: str) -> str:
    """``output = model.<method>(first, name=value,  # comment ...)``, one argument a line."""
    lines = [f"output = model.{demo.method}(", f"    {first},"]
    for name, value, comment in demo.arguments:
        lines.append(f"    {name}={value}," + (f"  # {comment}" if comment else ""))
    return "\n".join(lines) + "\n)"


def _load_and_generate(family: Family, repo_id: str, rev: str, has_chat_template: bool) -> str:
    demo = family.card.generate
    text = (
        'messages = [{"role": "user", "content": "Explain in two sentences why the sky is blue."}]\n'
        "text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)\n"
        if has_chat_template
        else 'text = "The sky is blue because"\n'
    )
    if family.bos_prefix:
        prompt = (
            f"{text}if not text.startswith(tokenizer.bos_token):\n"
            f"    text = tokenizer.bos_token + text  # {family.title}'s prompts start with its BOS token\n"
            'inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(device)\n'
            "input_ids = inputs.input_ids\n"
        )
    elif has_chat_template:
        prompt = (
            text + 'input_ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(device)\n'
        )
    else:
        prompt = text + 'input_ids = tokenizer(text, return_tensors="pt").input_ids.to(device)\n'
    if demo.seeded:
        prompt += "torch.manual_seed(0)  # temperature > 0 samples\n"
    else:
        prompt += "\n"
    sequences = "output.sequences" if demo.returns_dict else "output"
    if family.native:  # transformers' own classes: no remote code, and a transformers that knows `dtype=`
        imports = ", ".join(sorted({family.card.auto_class, "AutoTokenizer"}))
        loading = f"""tokenizer = AutoTokenizer.from_pretrained(repo{rev})
model = {family.card.auto_class}.from_pretrained(repo{rev}, dtype=dtype).to(device).eval()"""
    else:
        imports = ", ".join(sorted({family.card.auto_class, "AutoModelForCausalLM", "AutoTokenizer"}))
        loading = f"""tokenizer = AutoTokenizer.from_pretrained(repo{rev}, trust_remote_code=True)
model = {family.card.auto_class}.from_pretrained(
    repo{rev}, trust_remote_code=True, torch_dtype=dtype  # `dtype=` on transformers >= 4.56
).to(device).eval()"""
    return f'''
import torch
from transformers import {imports}

repo = "{repo_id}"
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if device == "cuda" else torch.float32  # bf16 matmuls are slow on most CPUs
{loading}

{prompt}{_call(demo, "input_ids")}
print(tokenizer.decode({sequences}[0, input_ids.shape[1]:], skip_special_tokens=True))
'''


def _batched_generate(family: Family) -> str:
    if family.bos_prefix:
        batch = (
            "batch = tokenizer(\n"
            '    [tokenizer.bos_token + p for p in prompts], add_special_tokens=False, return_tensors="pt", '
            "padding=True\n"
            ").to(device)"
        )
    else:
        batch = 'batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)'
    demo = family.card.batch_generate
    call = _call(demo, "batch.input_ids").replace(
        "    batch.input_ids,\n", "    batch.input_ids,\n    attention_mask=batch.attention_mask,\n", 1
    )
    seed = "torch.manual_seed(0)  # the sampler draws at random\n" if demo.seeded else ""
    rows = "output.sequences" if demo.returns_dict else "output"
    return f"""
prompts = ["The capital of France is", "Diffusion language models write text by"]
tokenizer.padding_side = "left"
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
{batch}
{seed}{call}
for row in {rows}:
    print(tokenizer.decode(row[batch.input_ids.shape[1]:], skip_special_tokens=True))
"""


def _score(family: Family) -> str:
    if family.bos_prefix:
        context = (
            "context = tokenizer(\n"
            '    tokenizer.bos_token + "The capital of France is", add_special_tokens=False, return_tensors="pt"\n'
            ").input_ids[0]"
        )
    else:
        context = 'context = tokenizer("The capital of France is", return_tensors="pt").input_ids[0]'
    return f"""
{context}
continuation = tokenizer(" Paris", add_special_tokens=False, return_tensors="pt").input_ids[0]
log_likelihood, stderr = model.log_likelihood(
    context, continuation, mc_num=128, batch_size=32, generator=torch.Generator().manual_seed(0)
)
print(f"log p(continuation | context) >= {{log_likelihood:.3f}} ± {{stderr:.3f}}")
"""


def _ntk_factor(rev: str, factor: int) -> str:
    return f"""
model = AutoModelForCausalLM.from_pretrained(
    repo{rev}, trust_remote_code=True, torch_dtype=dtype,
    rope_scaling={{"type": "ntk", "factor": {factor}}},
).to(device).eval()
print(model.config.rope_scaling, "-> context", model.config.rope_supported_length)
"""


def _ntk_target(rev: str, target: int) -> str:
    return f"""
model = AutoModelForCausalLM.from_pretrained(
    repo{rev}, trust_remote_code=True, torch_dtype=dtype,
    rope_scaling={{"type": "ntk", "target_length": {target}}},
).to(device).eval()
print("factor", model.config.rope_scaling_factor, "-> context", model.config.rope_supported_length)
"""


def _ntk_section(parsed: Any, rows: list[dict[str, Any]], summary: dict[str, Any] | None = None) -> str:
    if summary is not None:
        return _native_ntk_section(summary, rows)
    from modeling_longllada import critical_dimension

    rotary_dim = parsed.rotary_dim
    d_extra = critical_dimension(rotary_dim, parsed.rope_theta, parsed.trained_length)
    rotated = "head dim" if rotary_dim == parsed.head_dim else f"rotated dims of a {parsed.head_dim}-dim head"
    intro = (
        f"From this model's config ({rotated} d = {rotary_dim}, θ = {parsed.rope_theta:,.0f}, trained length "
        f"{parsed.trained_length:,}): the critical dimension is d_extra = 2·⌈(d/2)·log_θ(T_train / 2π)⌉ = "
        f"{d_extra}; covering T tokens needs the base θ' = (T / 2π)^(d / d_extra), and λ = ⌈θ' / θ⌉ "
        "([scaling law](" + SCALING_LAW_PAPER + "); LongLLaDA rounds up to an integer). "
        '`{"type": "ntk", "target_length": T}` picks the same λ.'
    )
    lines = [
        "| Context length T | × trained | λ | RoPE base θ·λ | `rope_scaling` |",
        "|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {_length_label(row['length'])} | {row['ratio']:g} | {row['factor']} | {row['base']:,.0f} | "
            f'`{{"type": "ntk", "factor": {row["factor"]}}}` |'
        )
    return intro + "\n\n" + "\n".join(lines)


def _native_ntk_section(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The NTK table of a native family, from its hooks' reading of the config: the law over the layers NTK
    scales, whose RoPE may rotate only part of each head (p-RoPE)."""
    from modeling_longllada import critical_dimension

    width, rotated = summary["frequency_dim"], summary["rotary_dim"]
    theta, trained = float(summary["rope_theta"]), int(summary["trained_length"])
    d_extra = critical_dimension(width, theta, trained)
    intro = (
        f"From this model's config, for its `{summary['layers']}` layers (the ones that see the whole context, "
        f"whose base NTK scales): frequencies over d = {width} dimensions, {rotated} of them rotated, "
        f"θ = {theta:,.0f}, trained window {trained:,}. The critical dimension is d_extra = "
        f"2·⌈(d/2)·log_θ(T_train / 2π)⌉ = {d_extra} ([scaling law]({SCALING_LAW_PAPER}))"
    )
    if d_extra >= rotated:
        intro += (
            f", beyond the {rotated} rotated dimensions: each of them completes its period within the trained "
            "window, none meets an angle it was not trained on at any length, and the law asks for no scaling "
            "(λ = 1). An explicit factor still moves the base."
        )
    else:
        intro += "; covering T tokens needs the base θ' = (T / 2π)^(d / d_extra), and λ = ⌈θ' / θ⌉."
    lines = [
        "| Context length T | × trained | λ | RoPE base θ·λ | `ntk_factor` / `--rope-scaling` |",
        "|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {_length_label(row['length'])} | {row['ratio']:g} | {row['factor']} | {row['base']:,.0f} | "
            f"`{row['factor']}` / `ntk:{row['factor']}` |"
        )
    return intro + "\n\n" + "\n".join(lines)


def _eval_command(repo_id: str, revision: str, trained: int, sampler_arguments: str) -> str:
    rev = "" if revision == "main" else f",revision={revision}"
    grid = {"context_lengths": [trained // 2, trained, 2 * trained], "depths": [0, 25, 50, 75, 100], "num_repeats": 2}
    return f"""
longllada eval --model longllada \\
  --model_args pretrained={repo_id}{rev},dtype=bfloat16,{sampler_arguments} \\
  --tasks longllada_niah \\
  --metadata '{json.dumps(grid)}' \\
  --batch_size 1 --output_path results/
"""


def _ppl_command(repo_id: str, revision: str, trained: int) -> str:
    # `longllada ppl` loads a model by id (main branch); another branch is downloaded first and read locally.
    model = repo_id if revision == "main" else f'"$(hf download {repo_id} --revision {revision} --quiet)"'
    return f"""
longllada ppl --model {model} --max-length {4 * trained} --chunk 64 --mc 8 --out ppl.jsonl
"""
