"""The model card (README.md) of a LongLLaDA repo, LLaDA or Dream: metadata, what it is, runnable demos, the NTK
factor table.

Every fenced block of the card is meant to be run as written (the python ones one after the other, as in a
notebook); tests/test_hub_upload.py (LLaDA) and tests/test_hub_upload_dream.py (Dream) run them against built
folders.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

CARD_TAGS = ["llada", "diffusion", "long-context", "ntk", "custom_code"]
DREAM_CARD_TAGS = ["dream", "diffusion", "long-context", "ntk", "custom_code"]
DREAM_MODEL_TYPES = ("Dream", "longllada_dream")
# Context lengths of the NTK table besides the multiples (2x..32x) of the trained length.
COMMON_LENGTHS = (8192, 16384, 32768, 65536, 131072)
TRAINED_LENGTH_MULTIPLES = (2, 4, 8, 16, 32)
# Carried over from the source card when present.
INHERITED_METADATA = ("language", "license_name", "license_link", "datasets")

LLADA_PAPER = "https://arxiv.org/abs/2502.09992"
DREAM_PAPER = "https://arxiv.org/abs/2508.15487"
FAST_DLLM_PAPER = "https://arxiv.org/abs/2505.22618"
LONGLLADA_PAPER = "https://arxiv.org/abs/2506.14429"
SCALING_LAW_PAPER = "https://arxiv.org/abs/2310.05209"


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
        tags=list(tags or CARD_TAGS),
        **inherited,
    )
    return data.to_dict()


def parse_config(config: dict[str, Any]) -> Any:
    """The family's config object for a config.json dict (Dream's model types -> DreamConfig, else LLaDA's)."""
    from modeling_longllada import DreamConfig, LongLLaDAConfig

    cls = DreamConfig if config.get("model_type") in DREAM_MODEL_TYPES else LongLLaDAConfig
    return cls(**{k: v for k, v in config.items() if k not in ("auto_map", "architectures", "model_type")})


def ntk_table_rows(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the factor table: for each length past the trained one, λ from the scaling law and the base θ·λ.

    The trained length is the family's (``config.trained_length``: LLaDA's ``max_sequence_length``, Dream's
    ``trained_length``, 2048 for Dream-v0)."""
    from modeling_longllada import ntk_scaling_factor

    parsed = parse_config(config)
    head_dim = parsed.head_dim
    theta = float(parsed.rope_theta)
    trained = int(parsed.trained_length)
    lengths = sorted({m * trained for m in TRAINED_LENGTH_MULTIPLES} | {n for n in COMMON_LENGTHS if n > trained})
    rows = []
    for length in lengths:
        factor = ntk_scaling_factor(head_dim, theta, trained, length)
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
) -> str:
    """README.md for the repo ``repo_id`` at ``revision``, from its converted ``config`` (config.json as a dict)."""
    if config.get("model_type") in DREAM_MODEL_TYPES:
        return render_dream_model_card(
            repo_id, config, revision, license, base_model, source_metadata, has_chat_template
        )
    import yaml

    metadata = card_metadata(license, base_model, source_metadata)
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip()
    parsed, trained, rows, demo_factor, demo_target, name, rev, scaling, effective, base_line = _card_facts(
        repo_id, config, revision, base_model
    )

    sections = [
        f"---\n{header}\n---",
        f"# {name}",
        f"A LongLLaDA packaging{base_line}: the LLaDA masked-diffusion language model ([paper]({LLADA_PAPER})) "
        "with NTK scaling of its rotary position embeddings, so that it reads contexts longer than it was trained "
        f"on without any training, as in *LongLLaDA: Unlocking Long Context Capabilities in Diffusion LLMs* "
        f"([paper]({LONGLLADA_PAPER})). The weights are the base model's, unchanged; the remote code "
        "(`configuration_longllada.py`, `modeling_longllada.py`, `generation_longllada.py`) provides:",
        '- `rope_scaling` in the config: `{"type": "ntk", "factor": λ}` (RoPE base θ·λ), '
        '`{"type": "ntk", "target_length": T}` (λ from the extrapolation scaling law) or `{"type": "ntk_per_length"}` '
        "(λ chosen from each input's length); `max_position_embeddings` follows (the extended window), and "
        "`n_positions` adds the trained length for the answer denoised after the prompt, so lm-eval's `--model hf` "
        "keeps whole every prompt that fits the extended window;\n"
        "- `model.generate()`: LLaDA's diffusion sampler (blocks decoded left to right, low-confidence or random "
        "remasking, temperature, classifier-free guidance), with Fast-dLLM's prefix/dual key-value caches and "
        "confidence-threshold decoding as options;\n"
        "- `model.log_likelihood()`: the Monte-Carlo bound on log p(continuation | context) that LLaDA uses for "
        "multiple-choice evaluation;\n"
        "- attention masks honoured (left-padded batches give the same results as single prompts), and the LM "
        "head computed only where logits are needed.",
        "| | |\n|---|---|\n"
        f"| Layers, hidden size, heads (head dim) | {parsed.n_layers}, {parsed.d_model}, {parsed.n_heads} "
        f"({parsed.head_dim}) |\n"
        f"| Trained context (`max_sequence_length`) | {trained:,} tokens |\n"
        f"| RoPE base (`rope_theta`) | {parsed.rope_theta:,.0f} |\n"
        f"| `rope_scaling` of this revision (`{revision}`) | {_scaling_label(scaling)} |\n"
        f"| Effective RoPE base | {effective} |\n"
        f"| Context advertised (`max_position_embeddings`) | {parsed.max_position_embeddings:,} tokens |",
        "Without scaling, a diffusion LLM's perplexity stays flat past its trained length, but it only retrieves "
        'from the most recent window of about that length (its "local perception"); NTK scaling by the law '
        "below extends retrieval to the scaled length.",
        "## Usage",
        "Needs `torch` and `transformers` (4.46 or newer) and `trust_remote_code=True`. The snippets continue "
        "one another, like cells of a notebook.",
        "### Load and generate",
        _python(_load_and_generate(repo_id, rev, has_chat_template)),
        "### Batches and faster sampling",
        'Left-padded batches need the attention mask. `cache="prefix"` or `"dual"` reuses keys and values '
        "within a block, and `threshold` commits every prediction above that confidence (at least one per step): "
        "both approximate the exact sampler (Fast-dLLM) and are much faster on long outputs.",
        _python(_batched_generate()),
        "### Score a continuation",
        "`log_likelihood` returns a Monte-Carlo lower bound of log p(continuation | context) and its standard error "
        "(LLaDA uses 128 samples; one is enough for a single-token answer).",
        _python(_score()),
        "### Longer contexts: NTK scaling",
        "Any `rope_scaling` can be set at load time, whatever this revision's config holds. By factor (LongLLaDA "
        "multiplies the RoPE base by λ):",
        _python(_ntk_factor(rev, demo_factor)),
        "Or by the length to reach (λ from the scaling law below):",
        _python(_ntk_target(rev, demo_target)),
        "### NTK factors for common lengths",
        _ntk_section(parsed, rows),
        "## Evaluate",
        "With the `longllada` toolkit installed. Long-context benchmarks run through lm-eval with `--model longllada` "
        "(the diffusion sampler for generation, the Monte-Carlo bound for likelihoods) and the toolkit's tasks: "
        "`longllada_niah` (needle in a haystack, its grid set by `--metadata`), `longllada_ruler`, "
        "`longllada_longbench`. In `--model_args`, `ntk_factor=λ`, `ntk_target=T` or `rope_scaling=ntk-per-length` "
        "override this revision's RoPE scaling, and `cache=dual,threshold=0.9` selects the fast sampler:",
        _bash(_eval_command(repo_id, revision, trained)),
        "Perplexity versus context length (the LongLLaDA paper's Figure 1), written to a JSON-lines file:",
        _bash(_ppl_command(repo_id, revision, trained)),
        "## Notes",
        "- `generate` is a diffusion sampler: `max_new_tokens` is rounded up to a multiple of `block_length`, "
        "`steps` is capped at the output length, and HF options such as `top_p` or beams are ignored.\n"
        "- The official LLaDA checkpoints' remote code is not used here; these files load the same weights on "
        "transformers 4.46 to 5.x.\n"
        f"- Papers: LLaDA ({LLADA_PAPER}), LongLLaDA ({LONGLLADA_PAPER}), the RoPE extrapolation scaling law "
        f"({SCALING_LAW_PAPER}).",
    ]
    return "\n\n".join(sections) + "\n"


def _python(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def _bash(code: str) -> str:
    return f"```bash\n{code.strip()}\n```"


class _CardFacts(NamedTuple):
    """What both families' cards say of a revision, read from its config."""

    parsed: Any  # the config as this project's class
    trained: int  # trained context length
    rows: list[dict[str, Any]]  # the NTK table (ntk_table_rows)
    demo_factor: int  # λ for twice the trained length (LLaDA-8B: 4; Dream-v0: 5, the paper's), at least 2
    demo_target: int  # 4 × the trained length
    name: str  # the repo's name
    rev: str  # ', revision="..."' for the snippets, or "" for main
    scaling: Any  # the revision's rope_scaling
    effective: str  # the effective RoPE base, in words
    base_line: str  # " of [`base`](link)", or ""


def _card_facts(repo_id: str, config: Any, revision: str, base_model: str | None) -> _CardFacts:
    parsed = parse_config(config)
    rows = ntk_table_rows(config)
    scaling = parsed.rope_scaling
    if scaling is None:
        effective = f"{parsed.rope_theta:,.0f} (no scaling)"
    elif parsed.rope_per_length:
        effective = "chosen per forward pass from its length"
    else:
        effective = f"{parsed.rope_theta * parsed.rope_scaling_factor:,.0f} (factor {parsed.rope_scaling_factor:g})"
    return _CardFacts(
        parsed=parsed,
        trained=parsed.trained_length,
        rows=rows,
        demo_factor=max(2, rows[0]["factor"]),
        demo_target=4 * parsed.trained_length,
        name=repo_id.split("/")[-1],
        rev="" if revision == "main" else f', revision="{revision}"',
        scaling=scaling,
        effective=effective,
        base_line=f" of [`{base_model}`](https://huggingface.co/{base_model})" if base_model else "",
    )


def _load_and_generate(repo_id: str, rev: str, has_chat_template: bool) -> str:
    if has_chat_template:
        prompt = (
            'messages = [{"role": "user", "content": "Explain in two sentences why the sky is blue."}]\n'
            "text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)\n"
            'input_ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(device)\n'
        )
    else:
        prompt = (
            'text = "The sky is blue because"\ninput_ids = tokenizer(text, return_tensors="pt").input_ids.to(device)\n'
        )
    return f'''
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

repo = "{repo_id}"
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if device == "cuda" else torch.float32  # bf16 matmuls are slow on most CPUs
tokenizer = AutoTokenizer.from_pretrained(repo{rev}, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(
    repo{rev}, trust_remote_code=True, torch_dtype=dtype  # `dtype=` on transformers >= 4.56
).to(device).eval()

{prompt}
output = model.generate(
    input_ids,
    max_new_tokens=64,  # output length
    steps=64,  # denoising steps in all (here one token per step)
    block_length=32,  # blocks decoded left to right
    temperature=0.0,  # greedy; > 0 samples (Gumbel noise)
    cfg_scale=0.0,  # classifier-free guidance
    remasking="low_confidence",  # or "random"
)
print(tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True))
'''


def _batched_generate() -> str:
    return """
prompts = ["The capital of France is", "Diffusion language models write text by"]
tokenizer.padding_side = "left"
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
output = model.generate(
    batch.input_ids,
    attention_mask=batch.attention_mask,
    max_new_tokens=64,
    block_length=32,
    cache="dual",  # "none" (exact), "prefix" or "dual"
    threshold=0.9,  # commit every token above 0.9 confidence
)
for row in output:
    print(tokenizer.decode(row[batch.input_ids.shape[1]:], skip_special_tokens=True))
"""


def _score() -> str:
    return """
context = tokenizer("The capital of France is", return_tensors="pt").input_ids[0]
continuation = tokenizer(" Paris", add_special_tokens=False, return_tensors="pt").input_ids[0]
log_likelihood, stderr = model.log_likelihood(
    context, continuation, mc_num=128, batch_size=32, generator=torch.Generator().manual_seed(0)
)
print(f"log p(continuation | context) >= {log_likelihood:.3f} ± {stderr:.3f}")
"""


def _ntk_factor(rev: str, factor: int) -> str:
    return f"""
model = AutoModelForCausalLM.from_pretrained(
    repo{rev}, trust_remote_code=True, torch_dtype=dtype,
    rope_scaling={{"type": "ntk", "factor": {factor}}},
).to(device).eval()
print(model.config.rope_scaling, "-> context", model.config.max_position_embeddings)
"""


def _ntk_target(rev: str, target: int) -> str:
    return f"""
model = AutoModelForCausalLM.from_pretrained(
    repo{rev}, trust_remote_code=True, torch_dtype=dtype,
    rope_scaling={{"type": "ntk", "target_length": {target}}},
).to(device).eval()
print("factor", model.config.rope_scaling_factor, "-> context", model.config.max_position_embeddings)
"""


def _ntk_section(parsed: Any, rows: list[dict[str, Any]]) -> str:
    from modeling_longllada import critical_dimension

    d_extra = critical_dimension(parsed.head_dim, parsed.rope_theta, parsed.trained_length)
    intro = (
        f"From this model's config (head dim d = {parsed.head_dim}, θ = {parsed.rope_theta:,.0f}, trained length "
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


def _eval_command(repo_id: str, revision: str, trained: int) -> str:
    rev = "" if revision == "main" else f",revision={revision}"
    grid = {"context_lengths": [trained // 2, trained, 2 * trained], "depths": [0, 25, 50, 75, 100], "num_repeats": 2}
    return f"""
longllada eval --model longllada \\
  --model_args pretrained={repo_id}{rev},dtype=bfloat16,steps=32,block_length=32 \\
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


# -- Dream ---------------------------------------------------------------------------------------------------------


def render_dream_model_card(
    repo_id: str,
    config: dict[str, Any],
    revision: str = "main",
    license: str = "other",
    base_model: str | None = None,
    source_metadata: dict[str, Any] | None = None,
    has_chat_template: bool = False,
) -> str:
    """README.md of a Dream repo: Dream's own loading (``AutoModel``, ``diffusion_generate``) and our additions
    (blocks and caches in ``generate``, NTK scaling from Dream's trained length, the shifted likelihood)."""
    import yaml

    metadata = card_metadata(license, base_model, source_metadata, tags=DREAM_CARD_TAGS)
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip()
    parsed, trained, rows, demo_factor, demo_target, name, rev, scaling, effective, base_line = _card_facts(
        repo_id, config, revision, base_model
    )

    sections = [
        f"---\n{header}\n---",
        f"# {name}",
        f"A LongLLaDA packaging{base_line}: the Dream-v0 masked-diffusion language model ([paper]({DREAM_PAPER})) "
        "with NTK scaling of its rotary position embeddings, so that it reads contexts longer than it was trained "
        "on without any training, as in *LongLLaDA: Unlocking Long Context Capabilities in Diffusion LLMs* "
        f"([paper]({LONGLLADA_PAPER})). The weights are the base model's, unchanged (the official keys); the "
        "remote code (`configuration_dream.py`, `modeling_dream.py` and the LongLLaDA files they share) provides:",
        '- `rope_scaling` in the config: `{"type": "ntk", "factor": λ}` (RoPE base θ·λ), '
        '`{"type": "ntk", "target_length": T}` (λ from the extrapolation scaling law and the trained length '
        '`trained_length`) or `{"type": "ntk_per_length"}` (λ chosen from each input\'s length);\n'
        "- `model.diffusion_generate()`: Dream's sampler with its official arguments and algorithms (`origin`, "
        "`maskgit_plus`, `topk_margin`, `entropy`; `steps`, `eps`, `alg_temp`, `temperature`, `top_p`, `top_k`), "
        "greedy settings token-identical to the official code;\n"
        "- `model.generate()`: the same options plus blocks decoded left to right, Fast-dLLM's prefix/dual "
        f"key-value caches and confidence-threshold decoding ([paper]({FAST_DLLM_PAPER}));\n"
        "- `model.log_likelihood()`: the Monte-Carlo bound on log p(continuation | context), with Dream's shifted "
        "logits (position i predicts token i + 1) handled;\n"
        "- attention masks honoured (left-padded batches give the same results as single prompts); both "
        "`AutoModel` and `AutoModelForCausalLM` load it (so lm-eval's `--model hf` can too).",
        "| | |\n|---|---|\n"
        f"| Layers, hidden size, heads / key-value heads (head dim) | {parsed.num_hidden_layers}, "
        f"{parsed.hidden_size}, {parsed.num_attention_heads} / {parsed.num_key_value_heads} ({parsed.head_dim}) |\n"
        f"| Trained context (`trained_length`) | {trained:,} tokens |\n"
        f"| RoPE base (`rope_theta`) | {parsed.rope_theta:,.0f} |\n"
        f"| `rope_scaling` of this revision (`{revision}`) | {_scaling_label(scaling)} |\n"
        f"| Effective RoPE base | {effective} |\n"
        f"| `max_position_embeddings` (inherited from Qwen2.5, not the trained length) | "
        f"{parsed.max_position_embeddings:,} |",
        "Without scaling, a diffusion LLM's perplexity stays flat past its trained length, but it only retrieves "
        'from the most recent window of about that length (its "local perception"); NTK scaling by the law '
        "below extends retrieval to the scaled length.",
        "## Usage",
        "Needs `torch` and `transformers` (4.46 or newer) and `trust_remote_code=True`. The snippets continue "
        "one another, like cells of a notebook. Prompts start with the tokenizer's BOS token (`<|beginoftext|>`), "
        "as in the LongLLaDA paper's Dream runs.",
        "### Load and generate",
        _python(_dream_load_and_generate(repo_id, rev, has_chat_template)),
        "### Batches, blocks and caches",
        "`generate` takes the same options plus `block_length` (blocks decoded left to right, Dream's schedule "
        'within each), `cache="prefix"` or `"dual"` (keys and values reused within a block) and `threshold` '
        "(every prediction above that confidence committed, at least one per step): Fast-dLLM's approximations of "
        "the exact sampler, much faster on long outputs. Left-padded batches need the attention mask.",
        _python(_dream_batched_generate()),
        "### Score a continuation",
        "`log_likelihood` returns a Monte-Carlo lower bound of log p(continuation | context) and its standard error. "
        "The context must not be empty: Dream predicts each token from the position before it.",
        _python(_dream_score()),
        "### Longer contexts: NTK scaling",
        "Any `rope_scaling` can be set at load time, whatever this revision's config holds. By factor (LongLLaDA "
        f"multiplies the RoPE base by λ; its Dream runs use λ = {demo_factor} for twice the trained length):",
        _python(_ntk_factor(rev, demo_factor)),
        "Or by the length to reach (λ from the scaling law below):",
        _python(_ntk_target(rev, demo_target)),
        "### NTK factors for common lengths",
        _ntk_section(parsed, rows),
        "## Evaluate",
        "With the `longllada` toolkit installed. Long-context benchmarks run through lm-eval with `--model longllada` "
        "(Dream's sampler for generation, with the BOS token prepended, and the Monte-Carlo bound for likelihoods) "
        "and the toolkit's tasks: `longllada_niah` (needle in a haystack, its grid set by `--metadata`), "
        "`longllada_ruler`, `longllada_longbench`. In `--model_args`, `ntk_factor=λ` or `ntk_target=T` override "
        "this revision's RoPE scaling:",
        _bash(_dream_eval_command(repo_id, revision, trained, demo_factor)),
        "Perplexity versus context length (the LongLLaDA paper's Figure 1), written to a JSON-lines file:",
        _bash(_ppl_command(repo_id, revision, trained)),
        "## Notes",
        "- `diffusion_generate` decodes the whole answer as one span with `steps` denoising steps (default 512, "
        '`alg="origin"`); greedy settings (`temperature=0.0` and `alg` `maskgit_plus`, `topk_margin` or '
        "`entropy`) are deterministic. HF options such as beams are ignored.\n"
        "- The official Dream checkpoints' remote code is not used here; these files load the same weights on "
        "transformers 4.46 to 5.x.\n"
        f"- Papers: Dream ({DREAM_PAPER}), LongLLaDA ({LONGLLADA_PAPER}), Fast-dLLM ({FAST_DLLM_PAPER}), the RoPE "
        f"extrapolation scaling law ({SCALING_LAW_PAPER}).",
    ]
    return "\n\n".join(sections) + "\n"


def _dream_load_and_generate(repo_id: str, rev: str, has_chat_template: bool) -> str:
    if has_chat_template:
        prompt = (
            'messages = [{"role": "user", "content": "Explain in two sentences why the sky is blue."}]\n'
            "text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)\n"
        )
    else:
        prompt = 'text = "The sky is blue because"\n'
    return f'''
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

repo = "{repo_id}"
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if device == "cuda" else torch.float32  # bf16 matmuls are slow on most CPUs
tokenizer = AutoTokenizer.from_pretrained(repo{rev}, trust_remote_code=True)
model = AutoModel.from_pretrained(
    repo{rev}, trust_remote_code=True, torch_dtype=dtype  # `dtype=` on transformers >= 4.56
).to(device).eval()

{prompt}if not text.startswith(tokenizer.bos_token):
    text = tokenizer.bos_token + text  # Dream's prompts start with its BOS token
inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(device)
input_ids = inputs.input_ids
torch.manual_seed(0)  # temperature > 0 samples
output = model.diffusion_generate(
    input_ids,
    attention_mask=inputs.attention_mask,
    max_new_tokens=64,  # output length
    steps=64,  # denoising steps
    alg="entropy",  # or "origin", "maskgit_plus", "topk_margin"
    temperature=0.2,  # 0.0 with alg != "origin" is greedy
    top_p=0.95,
    return_dict_in_generate=True,
)
print(tokenizer.decode(output.sequences[0, input_ids.shape[1]:], skip_special_tokens=True))
'''


def _dream_batched_generate() -> str:
    return """
prompts = ["The capital of France is", "Diffusion language models write text by"]
tokenizer.padding_side = "left"
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
batch = tokenizer(
    [tokenizer.bos_token + p for p in prompts], add_special_tokens=False, return_tensors="pt", padding=True
).to(device)
output = model.generate(
    batch.input_ids,
    attention_mask=batch.attention_mask,
    max_new_tokens=64,
    steps=64,
    block_length=32,  # blocks decoded left to right
    alg="maskgit_plus",
    temperature=0.0,  # greedy
    cache="prefix",  # "none" (exact), "prefix" or "dual"
    threshold=0.9,  # commit every token above 0.9 confidence
)
for row in output:
    print(tokenizer.decode(row[batch.input_ids.shape[1]:], skip_special_tokens=True))
"""


def _dream_score() -> str:
    return """
context = tokenizer(
    tokenizer.bos_token + "The capital of France is", add_special_tokens=False, return_tensors="pt"
).input_ids[0]
continuation = tokenizer(" Paris", add_special_tokens=False, return_tensors="pt").input_ids[0]
log_likelihood, stderr = model.log_likelihood(
    context, continuation, mc_num=128, batch_size=32, generator=torch.Generator().manual_seed(0)
)
print(f"log p(continuation | context) >= {log_likelihood:.3f} ± {stderr:.3f}")
"""


def _dream_eval_command(repo_id: str, revision: str, trained: int, factor: int) -> str:
    rev = "" if revision == "main" else f",revision={revision}"
    grid = {"context_lengths": [trained // 2, trained, 2 * trained], "depths": [0, 25, 50, 75, 100], "num_repeats": 2}
    return f"""
longllada eval --model longllada \\
  --model_args pretrained={repo_id}{rev},dtype=bfloat16,steps=32,ntk_factor={factor} \\
  --tasks longllada_niah \\
  --metadata '{json.dumps(grid)}' \\
  --batch_size 1 --output_path results/
"""
