"""The model families this project runs, one :class:`Family` entry each in ``FAMILIES``: the one place that knows them.

Every tool reads the entries (the Auto-class registration in ``modeling_longllada/__init__.py``, ``longllada
tiny-model``, ``longllada upload`` and its model card, ``longllada ppl``, lm-eval's ``--model longllada``, the
loading path in ``longllada/loading.py``); none of them names a family. Adding a family is its own modules (config
and model classes) plus one entry here. This module imports only the standard library, so that its data can be
read before torch and transformers load; classes and functions are named by dotted path and imported on use
(:func:`import_object`).

Fields of :class:`Family`
-------------------------
Identity and classes:

``name``
    The family's short name: the ``--arch`` value of ``longllada tiny-model`` and the ``longllada_family`` label
    of lm-eval results (``llada``, ``dream``, ``lladamoe``).
``title``
    Its name in prose and error messages (``LLaDA``, ``Dream``).
``model_type``
    The ``model_type`` of the ``config.json`` files this project writes for it (``longllada``).
``official_model_types``
    The ``model_type`` values of the official checkpoints, read by the same classes (``("llada",)``). They are
    registered with transformers' Auto classes too, so an official checkpoint loads with our classes without
    ``trust_remote_code``.
``claims``
    :class:`ConfigClaim` entries: configs of another family's official ``model_type`` that are this family's,
    told apart by their fields (LLaDA-MoE's first releases say ``"llada"``, LLaDA's type, but have expert fields
    and no ``d_model``). :func:`family_of_config` honours them, and so do transformers' Auto classes after
    registration: the config class registered for the claimed type hands such a ``config.json`` to this family's.
``config_class``, ``model_class``
    Dotted paths of the config and model classes (``modeling_longllada.configuration_longllada.LongLLaDAConfig``).
    For a remote-code family the last two parts name the file and the class of the ``auto_map`` (see
    :attr:`Family.auto_map`), so the file must be in ``modeling_longllada.REMOTE_CODE_FILES``.
``auto_classes``
    The transformers Auto classes that load the model (``AutoModel``, ``AutoModelForCausalLM``): registered for
    every model type of the family and written, with ``AutoConfig``, into the ``auto_map``.
``native``
    True for a family that transformers itself implements: no remote code is shipped or registered, and its
    ``model_type`` values are transformers' own.
``min_transformers``
    The oldest transformers release that runs it (``"4.46"``); :meth:`Family.check_transformers` refuses an older
    one in one line, and the family is not registered there.

Checkpoint format (``longllada upload``, ``longllada tiny-model``):

``required_fields``
    Fields a ``config.json`` must state (the config classes default to the full-size model, so a missing size
    would silently describe another one).
``embedding_key``, ``key_prefixes``
    The input embedding's tensor name and the prefixes every tensor name starts with, in the official layout.
``derived_fields``
    Fields that the config class computes; the source's stored value is dropped on conversion.
``written_fields``
    Config attributes written into a converted ``config.json`` from the config object (LLaDA: the derived
    ``max_position_embeddings``; Dream: ``trained_length``, absent from the official files).
``tiny_config_fields``
    Dotted path of a callable ``(**sizes) -> dict``: the family's config fields for the generic sizes of
    ``longllada tiny-model`` (``n_layers``, ``d_model``, ``n_heads``, ``n_kv_heads``, ``mlp_hidden_size``,
    ``vocab_size``, ``trained_length``, ``rope_theta``, ``rope_scaling``, the special token ids). A config
    classmethod (``LongLLaDAConfig.fields_from_sizes``).
``weight_shapes``
    Dotted path of a callable ``(config) -> dict[str, tuple[int, ...]]``: every tensor of an official-format
    checkpoint for ``config``, name to shape, in the official order (``LongLLaDAConfig.official_weight_shapes``).
``tiny_builder``
    Dotted path of a callable ``(out_dir, **keywords) -> Path`` that writes a tiny folder itself, for a family whose
    weights transformers' own class writes (a native family); ``tiny_config_fields`` then maps the generic sizes to
    its keywords. None: ``longllada tiny-model`` writes the config and ``weight_shapes``' random tensors.
``tokenizer``
    A :class:`TokenizerSpec`: the special tokens (names and order), the chat template and the BOS rule of the
    small tokenizers that ``longllada tiny-model`` trains, as the family's real tokenizer has them.

Prompts and tokenizers:

``bos_prefix``
    True when prompts start with the tokenizer's BOS token although the tokenizer does not add it (Dream, as the
    LongLLaDA paper's Dream runs do): lm-eval's ``--model longllada`` and the model card's examples prepend it.
``official_tokenizer_classes``
    ``tokenizer_class`` names of the official repos whose code only re-implements a standard tokenizer (Dream's
    ``DreamTokenizer``, Qwen2.5's byte-level BPE): loaded with transformers' fast tokenizer from
    ``tokenizer.json``, else with ``stock_tokenizer_class``, never with the repo's code.
``stock_tokenizer_class``
    transformers' class that reads such a repo's ``vocab.json`` and ``merges.txt`` (``Qwen2Tokenizer``), or None.

Sampler and scoring:

``sampler_arguments``
    The sampler arguments (``generate`` keyword arguments, ``--model_args`` keys of ``--model longllada``) the
    family takes; lm-eval refuses another one before the model loads.
``greedy_remasking``
    The ``remasking`` rule that commits the most confident position first (LLaDA's ``low_confidence``, Dream's
    ``maskgit_plus``): the greedy decoding that lm-eval's ``is_greedy`` check runs.
``likelihood``
    Whether the model scores continuations (``log_likelihood``, ``chunk_perplexity``): ``longllada ppl`` and
    lm-eval's likelihood requests need it; without, they refuse with :meth:`Family.likelihood_refusal`.
``variants``
    :class:`SamplerVariant` entries: releases of the family that share its architecture, checkpoint format and
    ``model_type`` and differ only in their sampler's defaults (LLaDA2.1 beside LLaDA2.0), which
    ``generation_config.json`` carries. ``longllada tiny-model --variant NAME`` writes them; ``longllada upload``
    picks one for a source among the variant's official repos, or whose ``generation_config.json`` states its
    settings, and names it on the card.

Hooks (``hooks``): for a family whose config and model classes are not this project's (a native one), the
dotted path of an object that does for the tools what our config and model classes do for ours; None otherwise.
Its attributes (DiffusionGemma's: ``modeling_longllada.diffusion_gemma.DiffusionGemmaHooks``):

``apply_rope_scaling(config, request) -> dict``
    ``request`` (any form of ``parse_rope_scaling``; ``"none"`` restores the trained RoPE) applied to the config in
    place before the weights load; None only describes the config. Returns the run's record (``scaling``,
    ``factor``, ``rope_theta``, ``effective_rope_theta``, ``config_field``). ``longllada.rope_scaling`` calls it.
``rope_summary(config) -> dict``
    ``trained_length``, ``context_window``, ``target_length``, ``rope_theta`` (trained), ``effective_rope_theta``,
    ``factor``, ``scaling`` (the spec or None) and, for the law, ``layers`` (which layers it scales), ``frequency_dim``
    and ``rotary_dim``: lm-eval's results record and the model card.
``ntk_factor_for_length(config, length) -> int``
    λ by the scaling law (the model card's NTK table).
``convert_config(source_config, rope_scaling, keep_source) -> dict``
    ``longllada upload``'s ``config.json`` (``rope_scaling``: a parsed spec or None; ``keep_source``: the
    source's own RoPE).
``check_sampler_arguments(arguments, generation_config) -> None``
    lm-eval's sampler arguments checked with the saved ``generation_config.json`` (a dict, maybe empty).
``generate_answers(model, input_ids, attention_mask, max_new_tokens, arguments, pad_token_id, seed) -> Tensor``
    lm-eval's ``generate_until``: [B, ``max_new_tokens``] answer ids, padded after the first EOS.
``generation_bytes_per_row(config, length, itemsize) -> int``
    What one row of a batch needs on the GPU at ``length`` positions (lm-eval splits batches by it).
``likelihood_reason``
    Without ``likelihood``: why (a sentence), for the tools' refusals.

The model card (``card``, a :class:`CardText`; every string is Markdown, copied into the card as it is):

``tag``
    The family's Hub tag (``llada``); the card adds ``diffusion``, ``long-context``, ``ntk`` (and ``custom_code``
    unless ``native``).
``model``, ``paper``
    The model's name as the card's first sentence gives it (``Dream-v0``) and its paper's address.
``official_repos``
    Hub ids of the official checkpoints (Base, Instruct), the first named as an example where ``longllada upload``
    refuses a source that is of no family.
``weights_note``, ``remote_code``
    Said after "the weights are the base model's, unchanged" (``" (the official keys)"``), and the remote-code
    files the card names.
``features``
    The card's bullet list of what the remote code provides (one bullet a string, ``"- "`` included).
``facts``
    The rows of the card's facts table: ``(label, value)`` templates filled by ``str.format`` with ``config`` (the
    config object), ``revision``, ``scaling`` (the revision's ``rope_scaling``, as shown) and ``effective`` (the
    effective RoPE base, in words). ``ROPE_FACTS`` holds the rows every family shows.
``auto_class``
    The Auto class the card's examples load the model with.
``generate``, ``batch_generate``
    :class:`SamplerDemo` calls of the card's "Load and generate" and batched examples.
``batch_heading``, ``batch_text``, ``score_text``, ``ntk_text``, ``eval_text``
    The sentences around the examples: the batched example's heading and introduction, the likelihood example's
    introduction, the NTK example's introduction (``{factor}``: λ for twice the trained length) and the
    evaluation paragraph.
``eval_arguments``
    The sampler part of the card's ``longllada eval --model_args`` (``{factor}`` as above).
``eval_example``
    The ``--model_args`` after ``pretrained=`` of the family's example in ``longllada eval --help``, which runs
    the first of ``official_repos``.
``notes``
    The family's first bullet of the card's Notes (its sampler's behaviour).
``ntk_demo``
    A native family's example of scaling RoPE at load time with transformers alone (``{rev}``, ``{factor}`` filled
    as above), in place of the ``rope_scaling=`` examples our classes take.
``papers``
    ``(name, address)`` of further papers cited among the card's references (Fast-dLLM), after LongLLaDA's.

What the tools ask of a family's classes
----------------------------------------
The config class: ``trained_length``, ``head_dim``, ``rotary_dim`` (the rotated dimensions of a head, which the
scaling law counts), ``rope_theta``, ``rope_scaling`` and the NTK properties of
``rope_longllada.RopeScalingMixin`` (the card's NTK table, ``ppl``, lm-eval's RoPE overrides). The model class:
``sampler_defaults`` (a dict, written to ``generation_config.json``), ``check_config(config)`` (refuses an
architecture it cannot run; upload calls it), ``generate`` with the entry's ``sampler_arguments``, and, with
``likelihood``, ``log_likelihood`` and ``chunk_perplexity``. A native family's classes may lack the first two; with
``hooks``, the tools ask the hooks instead of the config class.

Lookups: :func:`family_by_name` (an ``--arch`` value), :func:`family_of_config` (a ``config.json``'s fields:
its ``model_type``, ours or official, and the entries' ``claims``; None for any other model),
:func:`family_of_model_type` (a ``model_type`` alone), :func:`model_types` (every type, official first).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "FAMILIES",
    "ROPE_FACTS",
    "CardText",
    "ConfigClaim",
    "Family",
    "SamplerDemo",
    "SamplerVariant",
    "TokenizerSpec",
    "claiming_family",
    "family_by_name",
    "family_of_config",
    "family_of_model_type",
    "import_object",
    "model_types",
]


def import_object(path: str) -> Any:
    """The object at a dotted path: the longest importable module prefix, then attributes
    (``"pkg.module.Class.method"`` -> ``Class.method``)."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError as err:
            if err.name is None or not ".".join(parts[:split]).startswith(err.name):
                raise  # a module that exists but imports a missing one
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ImportError(f"nothing importable at {path!r}")


def _version(text: str) -> tuple[int, ...]:
    """``"4.46.3"`` -> ``(4, 46, 3)``; a pre-release suffix (``5.0.0.dev0``, ``5.0.0rc1``) is ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


@dataclass(frozen=True)
class TokenizerSpec:
    """The special tokens of a family's tokenizer and how it uses them (see ``longllada.tokenizer``)."""

    special_tokens: tuple[str, ...]  # in id order: they take ids 0..n-1, before the 256 byte symbols
    bos_token: str
    eos_token: str
    pad_token: str
    mask_token: str
    chat_template: str
    add_bos: bool  # the tokenizer prepends BOS when encoding with add_special_tokens=True

    @property
    def min_vocab_size(self) -> int:
        return len(self.special_tokens) + 256  # every byte must stay encodable

    @property
    def additional_special_tokens(self) -> list[str]:
        named = {self.bos_token, self.eos_token, self.pad_token, self.mask_token}
        return [token for token in self.special_tokens if token not in named]


@dataclass(frozen=True)
class SamplerDemo:
    """A sampler call of the model card: ``output = model.<method>(input_ids, <arguments>)``.

    ``arguments``: ``(name, Python expression, comment or "")`` in order; ``returns_dict``: the call returns an
    object with ``sequences``; ``seeded``: it samples, so the example seeds torch first."""

    method: str
    arguments: tuple[tuple[str, str, str], ...]
    returns_dict: bool = False
    seeded: bool = False


@dataclass(frozen=True)
class CardText:
    """What a family's model card says (module docstring, "The model card")."""

    tag: str
    model: str
    paper: str
    official_repos: tuple[str, ...]
    weights_note: str
    remote_code: str
    features: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    auto_class: str
    generate: SamplerDemo
    batch_heading: str
    batch_text: str
    batch_generate: SamplerDemo
    score_text: str
    ntk_text: str
    eval_text: str
    eval_arguments: str
    notes: str
    papers: tuple[tuple[str, str], ...] = ()
    ntk_demo: str = ""
    eval_example: str = ""


@dataclass(frozen=True)
class ConfigClaim:
    """A ``config.json`` that says another family's ``model_type`` but is the claiming family's: it has every field
    of ``present`` and none of ``absent``."""

    model_type: str
    present: tuple[str, ...]
    absent: tuple[str, ...] = ()

    def matches(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` (a ``config.json`` as a dict) is one this claim takes."""
        return (
            config.get("model_type") == self.model_type
            and all(name in config for name in self.present)
            and not any(name in config for name in self.absent)
        )


@dataclass(frozen=True)
class SamplerVariant:
    """A release of a family that differs from it only in its sampler's defaults (module docstring, ``variants``).

    ``settings``: ``(name, value)`` pairs written into ``generation_config.json`` over the family's defaults; the
    first is the one that selects the variant (LLaDA2.1: ``editing_threshold``)."""

    name: str
    title: str
    paper: str
    settings: tuple[tuple[str, Any], ...]
    official_repos: tuple[str, ...] = ()

    def is_stated_by(self, generation_config: dict[str, Any]) -> bool:
        """Whether a ``generation_config.json`` (as a dict) selects this variant: it states the variant's first
        setting (not None)."""
        return bool(self.settings) and generation_config.get(self.settings[0][0]) is not None


@dataclass(frozen=True)
class Family:
    """One model family: see the module docstring for every field."""

    name: str
    title: str
    model_type: str
    official_model_types: tuple[str, ...]
    config_class: str
    model_class: str
    required_fields: tuple[str, ...]
    embedding_key: str
    key_prefixes: tuple[str, ...]
    tiny_config_fields: str
    weight_shapes: str
    tokenizer: TokenizerSpec
    sampler_arguments: tuple[str, ...]
    greedy_remasking: str
    card: CardText
    auto_classes: tuple[str, ...] = ("AutoModel", "AutoModelForCausalLM")
    claims: tuple[ConfigClaim, ...] = ()
    native: bool = False
    min_transformers: str = "4.46"
    derived_fields: tuple[str, ...] = ()
    written_fields: tuple[str, ...] = ()
    bos_prefix: bool = False
    official_tokenizer_classes: tuple[str, ...] = ()
    stock_tokenizer_class: str | None = None
    likelihood: bool = True
    hooks: str | None = None
    tiny_builder: str | None = None
    variants: tuple[SamplerVariant, ...] = ()

    @property
    def model_types(self) -> tuple[str, ...]:
        """Every ``model_type`` of the family, the official ones first."""
        return (*self.official_model_types, self.model_type)

    def is_official(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` (a ``config.json`` as a dict) is an official checkpoint's: an official
        ``model_type``, or another family's type that one of this family's ``claims`` takes."""
        return config.get("model_type") in self.official_model_types or any(c.matches(config) for c in self.claims)

    @property
    def architecture(self) -> str:
        """The model class's name, for ``config.json``'s ``architectures``."""
        return self.model_class.rsplit(".", 1)[-1]

    @property
    def auto_map(self) -> dict[str, str]:
        """The ``auto_map`` of a ``config.json`` this project writes: ``file.Class`` of the config class and of
        the model class under each Auto class (empty for a native family: transformers has the classes)."""
        if self.native:
            return {}
        config, model = (".".join(path.split(".")[-2:]) for path in (self.config_class, self.model_class))
        return {"AutoConfig": config, **{name: model for name in self.auto_classes}}

    def from_pretrained_kwargs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` for the model class's ``from_pretrained``, with transformers' Hub kernels off for a native
        family when the Hub is offline (``HF_HUB_OFFLINE``, ``local_files_only``) and the caller did not choose
        (``use_kernels``): transformers 5 kernelizes its own classes by default, fetching kernels such as
        ``kernels-community/activation`` from the Hub, and fails to load the model offline on a GPU."""
        out = dict(kwargs)
        offline = out.get("local_files_only") or _hub_offline()
        if self.native and "use_kernels" not in out and offline and transformers_has_hub_kernels():
            out["use_kernels"] = False
        return out

    def config_cls(self) -> type:
        """The config class (imports transformers)."""
        return import_object(self.config_class)

    def model_cls(self) -> type:
        """The model class (imports torch and transformers)."""
        return import_object(self.model_class)

    def tool_hooks(self) -> Any:
        """The object named by ``hooks`` (imported on use), or None for a family whose config and model classes
        are this project's."""
        return None if self.hooks is None else import_object(self.hooks)

    def likelihood_refusal(self) -> str:
        """Why a model of this family cannot be scored (``likelihood`` False), in one line: the tools' refusal
        for ``longllada ppl`` and lm-eval's likelihood requests, with the reason its hooks give."""
        reason = getattr(self.tool_hooks(), "likelihood_reason", None)
        return f"{self.title} models have no likelihood" + (f": {reason}" if reason else "")

    def variant(self, name: str | None) -> SamplerVariant | None:
        """The variant called ``name`` (None for None); ValueError naming the allowed ones otherwise."""
        if name is None:
            return None
        for variant in self.variants:
            if variant.name == name:
                return variant
        allowed = [variant.name for variant in self.variants]
        raise ValueError(f"variant {name!r} is not one of {self.title}'s; allowed: {allowed or 'none'}")

    def variant_of(self, hub_id: str | None, generation_config: dict[str, Any] | None) -> SamplerVariant | None:
        """The variant of a checkpoint: one whose official repos hold ``hub_id``, or whose settings its
        ``generation_config.json`` states; None for the family's own release."""
        for variant in self.variants:
            if hub_id in variant.official_repos or variant.is_stated_by(generation_config or {}):
                return variant
        return None

    def is_supported(self) -> bool:
        """Whether the installed transformers is recent enough for this family."""
        try:
            installed = importlib.metadata.version("transformers")
        except importlib.metadata.PackageNotFoundError:
            return False
        return _version(installed) >= _version(self.min_transformers)

    def check_transformers(self) -> None:
        """Refuse, in one line, a transformers release older than the family needs."""
        if not self.is_supported():
            try:
                installed = importlib.metadata.version("transformers")
            except importlib.metadata.PackageNotFoundError:
                installed = "none"
            raise ValueError(
                f"{self.title} needs transformers >= {self.min_transformers}; installed: {installed} "
                f"(pip install -U 'transformers>={self.min_transformers}')"
            )


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def transformers_has_hub_kernels() -> bool:
    """Whether this transformers takes ``use_kernels`` (Hub kernels; transformers 4.46 has none)."""
    from transformers import PreTrainedModel

    return hasattr(PreTrainedModel, "set_use_kernels")


# -- the card rows every family shows ----------------------------------------------------------------------------

ROPE_FACTS: tuple[tuple[str, str], ...] = (
    ("RoPE base (`rope_theta`)", "{config.rope_theta:,.0f}"),
    ("`rope_scaling` of this revision (`{revision}`)", "{scaling}"),
    ("Effective RoPE base", "{effective}"),
)

FAST_DLLM_PAPER = "https://arxiv.org/abs/2505.22618"

# -- LLaDA (Nie et al. 2025) ---------------------------------------------------------------------------------------

# LLaMA-3-style template, as LLaDA-8B-Instruct's: each turn is a role header, a blank line, the trimmed content and
# <|eot_id|>; BOS starts the first turn; the generation prompt opens an assistant header.
LLADA_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + (message['content'] | trim) + '<|eot_id|>' -%}"
    "{%- if loop.first -%}{{ bos_token }}{%- endif -%}"
    "{{ content }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)

LLADA = Family(
    name="llada",
    title="LLaDA",
    model_type="longllada",
    official_model_types=("llada",),
    config_class="modeling_longllada.configuration_longllada.LongLLaDAConfig",
    model_class="modeling_longllada.modeling_longllada.LongLLaDAModelLM",
    required_fields=("d_model", "n_heads", "n_layers", "max_sequence_length", "rope_theta"),
    embedding_key="model.transformer.wte.weight",
    key_prefixes=("model.transformer.",),
    derived_fields=("max_position_embeddings",),  # follows max_sequence_length and rope_scaling
    written_fields=("max_position_embeddings",),
    tiny_config_fields="modeling_longllada.configuration_longllada.LongLLaDAConfig.fields_from_sizes",
    weight_shapes="modeling_longllada.configuration_longllada.LongLLaDAConfig.official_weight_shapes",
    tokenizer=TokenizerSpec(
        # <|startoftext|> BOS (added when encoding), <|endoftext|> EOS and PAD, <|mdm_mask|> MASK, then the chat
        # tokens: end of turn, header start, header end.
        special_tokens=(
            "<|startoftext|>",
            "<|endoftext|>",
            "<|mdm_mask|>",
            "<|eot_id|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
        ),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        mask_token="<|mdm_mask|>",
        chat_template=LLADA_CHAT_TEMPLATE,
        add_bos=True,
    ),
    sampler_arguments=("steps", "block_length", "remasking", "temperature", "cfg_scale", "cache", "threshold"),
    greedy_remasking="low_confidence",
    card=CardText(
        tag="llada",
        model="LLaDA",
        paper="https://arxiv.org/abs/2502.09992",
        official_repos=("GSAI-ML/LLaDA-8B-Base", "GSAI-ML/LLaDA-8B-Instruct"),
        weights_note="",
        remote_code="`configuration_longllada.py`, `modeling_longllada.py`, `generation_longllada.py`",
        features=(
            '- `rope_scaling` in the config: `{"type": "ntk", "factor": λ}` (RoPE base θ·λ), '
            '`{"type": "ntk", "target_length": T}` (λ from the extrapolation scaling law) or '
            '`{"type": "ntk_per_length"}` (λ chosen from each input\'s length); `max_position_embeddings` follows '
            "(the extended window), and `n_positions` adds the trained length for the answer denoised after the "
            "prompt, so lm-eval's `--model hf` keeps whole every prompt that fits the extended window;",
            "- `model.generate()`: LLaDA's diffusion sampler (blocks decoded left to right, low-confidence or "
            "random remasking, temperature, classifier-free guidance), with Fast-dLLM's prefix/dual key-value "
            "caches and confidence-threshold decoding as options;",
            "- `model.log_likelihood()`: the Monte-Carlo bound on log p(continuation | context) that LLaDA uses for "
            "multiple-choice evaluation;",
            "- attention masks honoured (left-padded batches give the same results as single prompts), and the LM "
            "head computed only where logits are needed.",
        ),
        facts=(
            (
                "Layers, hidden size, heads (head dim)",
                "{config.n_layers}, {config.d_model}, {config.n_heads} ({config.head_dim})",
            ),
            ("Trained context (`max_sequence_length`)", "{config.trained_length:,} tokens"),
            *ROPE_FACTS,
            ("Context advertised (`max_position_embeddings`)", "{config.max_position_embeddings:,} tokens"),
        ),
        auto_class="AutoModelForCausalLM",
        generate=SamplerDemo(
            method="generate",
            arguments=(
                ("max_new_tokens", "64", "output length"),
                ("steps", "64", "denoising steps in all (here one token per step)"),
                ("block_length", "32", "blocks decoded left to right"),
                ("temperature", "0.0", "greedy; > 0 samples (Gumbel noise)"),
                ("cfg_scale", "0.0", "classifier-free guidance"),
                ("remasking", '"low_confidence"', 'or "random"'),
            ),
        ),
        batch_heading="Batches and faster sampling",
        batch_text=(
            'Left-padded batches need the attention mask. `cache="prefix"` or `"dual"` reuses keys and values '
            "within a block, and `threshold` commits every prediction above that confidence (at least one per "
            "step): both approximate the exact sampler (Fast-dLLM) and are much faster on long outputs."
        ),
        batch_generate=SamplerDemo(
            method="generate",
            arguments=(
                ("max_new_tokens", "64", ""),
                ("block_length", "32", ""),
                ("cache", '"dual"', '"none" (exact), "prefix" or "dual"'),
                ("threshold", "0.9", "commit every token above 0.9 confidence"),
            ),
        ),
        score_text=(
            "`log_likelihood` returns a Monte-Carlo lower bound of log p(continuation | context) and its standard "
            "error (LLaDA uses 128 samples; one is enough for a single-token answer)."
        ),
        ntk_text=(
            "Any `rope_scaling` can be set at load time, whatever this revision's config holds. By factor "
            "(LongLLaDA multiplies the RoPE base by λ):"
        ),
        eval_text=(
            "With the `longllada` toolkit installed. Long-context benchmarks run through lm-eval with `--model "
            "longllada` (the diffusion sampler for generation, the Monte-Carlo bound for likelihoods) and the "
            "toolkit's tasks: `longllada_niah` (needle in a haystack, its grid set by `--metadata`), "
            "`longllada_ruler`, `longllada_longbench`. In `--model_args`, `ntk_factor=λ`, `ntk_target=T` or "
            "`rope_scaling=ntk-per-length` override this revision's RoPE scaling, and `cache=dual,threshold=0.9` selects "
            "the fast sampler:"
        ),
        eval_arguments="steps=32,block_length=32",
        eval_example="ntk_target=16384,cache=prefix",
        notes=(
            "- `generate` is a diffusion sampler: `max_new_tokens` is rounded up to a multiple of `block_length`, "
            "`steps` is capped at the output length, and HF options such as `top_p` or beams are ignored."
        ),
    ),
)

# -- Dream-v0 (Ye et al. 2025) -------------------------------------------------------------------------------------

# ChatML, as Qwen2.5's and Dream-Instruct's: a default system turn when none is given, each turn
# "<|im_start|>role\ncontent<|im_end|>\n", and the generation prompt opens an assistant turn.
DREAM_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

DREAM = Family(
    name="dream",
    title="Dream",
    model_type="longllada_dream",
    official_model_types=("Dream",),
    config_class="modeling_longllada.configuration_dream.DreamConfig",
    model_class="modeling_longllada.modeling_dream.DreamModel",
    required_fields=(
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "rope_theta",
        "mask_token_id",
    ),
    embedding_key="model.embed_tokens.weight",
    key_prefixes=("model.", "lm_head."),
    written_fields=("trained_length",),
    tiny_config_fields="modeling_longllada.configuration_dream.DreamConfig.fields_from_sizes",
    weight_shapes="modeling_longllada.configuration_dream.DreamConfig.official_weight_shapes",
    tokenizer=TokenizerSpec(
        # Qwen's order: end of text and the chat tokens first; Dream appended BOS (not added when encoding:
        # callers prepend it) and MASK.
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|beginoftext|>", "<|mask|>"),
        bos_token="<|beginoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        mask_token="<|mask|>",
        chat_template=DREAM_CHAT_TEMPLATE,
        add_bos=False,
    ),
    bos_prefix=True,
    official_tokenizer_classes=("DreamTokenizer",),
    stock_tokenizer_class="Qwen2Tokenizer",
    sampler_arguments=(
        "steps",
        "block_length",
        "remasking",
        "alg",
        "alg_temp",
        "temperature",
        "top_p",
        "top_k",
        "eps",
        "cfg_scale",
        "cache",
        "threshold",
    ),
    greedy_remasking="maskgit_plus",
    card=CardText(
        tag="dream",
        model="Dream-v0",
        paper="https://arxiv.org/abs/2508.15487",
        official_repos=("Dream-org/Dream-v0-Base-7B", "Dream-org/Dream-v0-Instruct-7B"),
        weights_note=" (the official keys)",
        remote_code="`configuration_dream.py`, `modeling_dream.py` and the LongLLaDA files they share",
        features=(
            '- `rope_scaling` in the config: `{"type": "ntk", "factor": λ}` (RoPE base θ·λ), '
            '`{"type": "ntk", "target_length": T}` (λ from the extrapolation scaling law and the trained length '
            '`trained_length`) or `{"type": "ntk_per_length"}` (λ chosen from each input\'s length);',
            "- `model.diffusion_generate()`: Dream's sampler with its official arguments and algorithms (`origin`, "
            "`maskgit_plus`, `topk_margin`, `entropy`; `steps`, `eps`, `alg_temp`, `temperature`, `top_p`, "
            "`top_k`), greedy settings token-identical to the official code;",
            "- `model.generate()`: the same options plus blocks decoded left to right, Fast-dLLM's prefix/dual "
            f"key-value caches and confidence-threshold decoding ([paper]({FAST_DLLM_PAPER}));",
            "- `model.log_likelihood()`: the Monte-Carlo bound on log p(continuation | context), with Dream's "
            "shifted logits (position i predicts token i + 1) handled;",
            "- attention masks honoured (left-padded batches give the same results as single prompts); both "
            "`AutoModel` and `AutoModelForCausalLM` load it (so lm-eval's `--model hf` can too).",
        ),
        facts=(
            (
                "Layers, hidden size, heads / key-value heads (head dim)",
                "{config.num_hidden_layers}, "
                "{config.hidden_size}, {config.num_attention_heads} / {config.num_key_value_heads} ({config.head_dim})",
            ),
            ("Trained context (`trained_length`)", "{config.trained_length:,} tokens"),
            *ROPE_FACTS,
            (
                "`max_position_embeddings` (inherited from Qwen2.5, not the trained length)",
                "{config.max_position_embeddings:,}",
            ),
        ),
        auto_class="AutoModel",
        generate=SamplerDemo(
            method="diffusion_generate",
            arguments=(
                ("attention_mask", "inputs.attention_mask", ""),
                ("max_new_tokens", "64", "output length"),
                ("steps", "64", "denoising steps"),
                ("alg", '"entropy"', 'or "origin", "maskgit_plus", "topk_margin"'),
                ("temperature", "0.2", '0.0 with alg != "origin" is greedy'),
                ("top_p", "0.95", ""),
                ("return_dict_in_generate", "True", ""),
            ),
            returns_dict=True,
            seeded=True,
        ),
        batch_heading="Batches, blocks and caches",
        batch_text=(
            "`generate` takes the same options plus `block_length` (blocks decoded left to right, Dream's schedule "
            'within each), `cache="prefix"` or `"dual"` (keys and values reused within a block) and `threshold` '
            "(every prediction above that confidence committed, at least one per step): Fast-dLLM's approximations "
            "of the exact sampler, much faster on long outputs. Left-padded batches need the attention mask."
        ),
        batch_generate=SamplerDemo(
            method="generate",
            arguments=(
                ("max_new_tokens", "64", ""),
                ("steps", "64", ""),
                ("block_length", "32", "blocks decoded left to right"),
                ("alg", '"maskgit_plus"', ""),
                ("temperature", "0.0", "greedy"),
                ("cache", '"prefix"', '"none" (exact), "prefix" or "dual"'),
                ("threshold", "0.9", "commit every token above 0.9 confidence"),
            ),
        ),
        score_text=(
            "`log_likelihood` returns a Monte-Carlo lower bound of log p(continuation | context) and its standard "
            "error. The context must not be empty: Dream predicts each token from the position before it."
        ),
        ntk_text=(
            "Any `rope_scaling` can be set at load time, whatever this revision's config holds. By factor "
            "(LongLLaDA multiplies the RoPE base by λ; its Dream runs use λ = {factor} for twice the trained "
            "length):"
        ),
        eval_text=(
            "With the `longllada` toolkit installed. Long-context benchmarks run through lm-eval with `--model "
            "longllada` (Dream's sampler for generation, with the BOS token prepended, and the Monte-Carlo bound "
            "for likelihoods) and the toolkit's tasks: `longllada_niah` (needle in a haystack, its grid set by "
            "`--metadata`), `longllada_ruler`, `longllada_longbench`. In `--model_args`, `ntk_factor=λ` or "
            "`ntk_target=T` override this revision's RoPE scaling:"
        ),
        eval_arguments="steps=32,ntk_factor={factor}",
        eval_example="ntk_factor=5,alg=entropy,temperature=0.2,top_p=0.95,steps=32",
        notes=(
            "- `diffusion_generate` decodes the whole answer as one span with `steps` denoising steps (default "
            '512, `alg="origin"`); greedy settings (`temperature=0.0` and `alg` `maskgit_plus`, `topk_margin` or '
            "`entropy`) are deterministic. HF options such as beams are ignored."
        ),
        papers=(("Fast-dLLM", FAST_DLLM_PAPER),),
    ),
)

# -- DiffusionGemma (Google DeepMind 2026; transformers' own classes) ---------------------------------------------

# Gemma 4's special tokens: Gemma's first five at their ids (pad 0, eos 1, bos 2, unk 3, mask 4), then the chat
# and image tokens (the config's image token ids name the last three).
GEMMA_TURN_END_TOKEN = "<turn|>"  # ends a chat turn; an EOS of the checkpoint's generation config
GEMMA_IMAGE_START_TOKEN = "<|image>"
GEMMA_IMAGE_END_TOKEN = "<image|>"
GEMMA_IMAGE_TOKEN = "<|image|>"

# Gemma 4's turn format, as DiffusionGemma's instruction-tuned checkpoint uses it: BOS, then
# "<|turn>role\ncontent<turn|>\n" per turn (assistant as "model"); the generation prompt opens a model turn and,
# unless enable_thinking is set, closes an empty thought channel so that the answer follows directly.
GEMMA_CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{- '<|turn>' + role + '\n' + (message['content'] | trim) + '<turn|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|turn>model\n' -}}"
    "{%- if not (enable_thinking | default(false)) -%}{{- '<|channel>thought\n<channel|>' -}}{%- endif -%}"
    "{%- endif -%}"
)

# Scaling a native model's RoPE at load time, with transformers alone: the full-attention layers' base, from the
# trained one this revision records if it is an NTK branch (``{rev}``, ``{factor}``: filled by the card).
GEMMA_NTK_DEMO = """
from transformers import AutoConfig

config = AutoConfig.from_pretrained(repo{rev})
text_config = config.text_config
full = text_config.rope_parameters["full_attention"]
record = getattr(text_config, "longllada_rope_scaling", None) or {{}}  # an NTK branch records its trained base
trained = record.get("trained_rope_theta", {{}}).get("full_attention", full["rope_theta"])
full["rope_theta"] = trained * {factor}  # NTK on the full-attention layers; sliding-window layers keep theirs
model = AutoModelForImageTextToText.from_pretrained(repo{rev}, config=config, dtype=dtype).to(device).eval()
print({{kind: p["rope_theta"] for kind, p in model.config.text_config.rope_parameters.items()}})
"""

DIFFUSION_GEMMA = Family(
    name="diffusion_gemma",
    title="DiffusionGemma",
    # transformers' own model type, which the official checkpoints carry too (nothing of ours is registered)
    model_type="diffusion_gemma",
    official_model_types=(),
    config_class="transformers.DiffusionGemmaConfig",
    model_class="transformers.DiffusionGemmaForBlockDiffusion",
    auto_classes=("AutoModelForImageTextToText",),
    native=True,
    min_transformers="5.25",
    required_fields=("text_config",),
    # save_pretrained keeps the decoder's copy of the weights the encoder shares (the ties' sources)
    embedding_key="model.decoder.embed_tokens.weight",
    key_prefixes=("model.", "lm_head."),
    tiny_config_fields="longllada.tiny_diffusion_gemma.builder_sizes",
    weight_shapes="modeling_longllada.diffusion_gemma.official_weight_shapes",
    tiny_builder="longllada.tiny_diffusion_gemma.build_tiny_diffusion_gemma",
    hooks="modeling_longllada.diffusion_gemma.DiffusionGemmaHooks",
    tokenizer=TokenizerSpec(
        special_tokens=(
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            "<mask>",
            "<|turn>",
            GEMMA_TURN_END_TOKEN,
            "<|channel>",
            "<channel|>",
            GEMMA_IMAGE_START_TOKEN,
            GEMMA_IMAGE_END_TOKEN,
            GEMMA_IMAGE_TOKEN,
        ),
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        mask_token="<mask>",  # Gemma's vocabulary has one; DiffusionGemma's sampler never uses it
        chat_template=GEMMA_CHAT_TEMPLATE,
        add_bos=True,
    ),
    # transformers' names (DiffusionGemmaGenerationConfig; canvas_length is the model config's); max_new_tokens
    # is the task's
    sampler_arguments=(
        "max_denoising_steps",
        "t_min",
        "t_max",
        "entropy_bound",
        "stability_threshold",
        "confidence_threshold",
        "canvas_length",
    ),
    greedy_remasking="",  # no greedy setting: the sampler draws every canvas (and there is no likelihood to check)
    likelihood=False,
    card=CardText(
        tag="diffusion-gemma",
        model="DiffusionGemma",
        paper="https://huggingface.co/google/diffusiongemma-26B-A4B-it",
        official_repos=("google/diffusiongemma-26B-A4B-it",),
        weights_note="",
        remote_code="",
        features=(
            "- NTK scaling of the full-attention layers only: on an NTK branch, `config.json`'s "
            '`text_config.rope_parameters["full_attention"]["rope_theta"]` is the scaled base θ·λ, so transformers '
            "alone reads the branch as it is; the sliding-window layers keep their base (they never see a distance "
            "beyond their window), and `text_config.longllada_rope_scaling` records the request, λ and the trained "
            "base;",
            "- `model.generate()`: transformers' DiffusionGemma sampler (the prompt encoded once, then canvases of "
            "`canvas_length` tokens denoised with entropy-bounded acceptance, a falling temperature and an early "
            "stop per canvas), with the checkpoint's `generation_config.json`;",
            "- left-padded batches with their attention mask: each prompt gets the answer it gets alone.",
        ),
        facts=(
            (
                "Layers, hidden size, experts (active per token)",
                "{config.text_config.num_hidden_layers}, {config.text_config.hidden_size}, "
                "{config.text_config.num_experts} ({config.text_config.top_k_experts})",
            ),
            (
                "Trained window (`text_config.max_position_embeddings`)",
                "{config.text_config.max_position_embeddings:,} tokens",
            ),
            (
                "Sliding-window layers: window, RoPE base",
                "{config.text_config.sliding_window} tokens, "
                "{config.text_config.rope_parameters[sliding_attention][rope_theta]:,.0f}",
            ),
            ("Full-attention layers: RoPE type", "{config.text_config.rope_parameters[full_attention][rope_type]}"),
            ("`rope_scaling` of this revision (`{revision}`)", "{scaling}"),
            ("Full-attention layers' RoPE base", "{effective}"),
            ("Canvas (`canvas_length`)", "{config.canvas_length} tokens"),
        ),
        auto_class="AutoModelForImageTextToText",
        generate=SamplerDemo(
            method="generate",
            arguments=(
                ("max_new_tokens", "256", "rounded up to whole canvases"),
                ("max_denoising_steps", "48", "decoder passes per canvas at most"),
                ("t_max", "0.8", "temperature at the first step ..."),
                ("t_min", "0.4", "... falling linearly to this one at the last"),
            ),
            returns_dict=True,
            seeded=True,
        ),
        batch_heading="Batches",
        batch_text=(
            "Left-padded batches need the attention mask; each prompt then gets the answer it gets alone. The sampler "
            "draws its starting canvas and its tokens at random: seed torch for repeatable answers."
        ),
        batch_generate=SamplerDemo(
            method="generate",
            arguments=(
                ("max_new_tokens", "256", ""),
                ("max_denoising_steps", "24", "fewer passes per canvas: faster, rougher"),
            ),
            returns_dict=True,
            seeded=True,
        ),
        score_text="",
        ntk_text=(
            "transformers reads the RoPE bases from the config, so a scaled base is set there before the weights "
            "load; only the full-attention layers' base changes (LongLLaDA multiplies it by λ; here λ = {factor}):"
        ),
        eval_text=(
            "With the `longllada` toolkit installed. Long-context benchmarks run through lm-eval with `--model "
            "longllada` (transformers' sampler, the prompt encoded in chunks, batches left-padded, answers cut at the "
            "first EOS) and the toolkit's tasks: `longllada_niah` (needle in a haystack, its grid set by "
            "`--metadata`), `longllada_ruler`, `longllada_longbench`. In `--model_args`, `ntk_factor=λ` or "
            "`ntk_target=T` scale the full-attention layers' base at load time, and the sampler's arguments keep "
            "transformers' names (`max_denoising_steps`, `t_min`, `t_max`, `entropy_bound`, `stability_threshold`, "
            "`confidence_threshold`, `canvas_length`):"
        ),
        eval_arguments="max_denoising_steps=48",
        notes=(
            "- `generate` denoises whole canvases: `max_new_tokens` is rounded up to a multiple of `canvas_length`, "
            "and an answer ends at its first EOS (padding follows). The sampler is random (there is no greedy "
            "setting): seed torch for repeatable answers."
        ),
        papers=(
            ("p-RoPE", "https://arxiv.org/abs/2410.06205"),
            ("the entropy-bounded sampler", "https://arxiv.org/abs/2505.24857"),
        ),
        ntk_demo=GEMMA_NTK_DEMO,
        eval_example="max_denoising_steps=48",
    ),
)

# -- LLaDA-MoE-7B-A1B (Zhu et al. 2025) ----------------------------------------------------------------------------

# The role format of the Ling 2.0 tokenizer that LLaDA-MoE shares (<role>SYSTEM</role>, <role>HUMAN</role>,
# <role>ASSISTANT</role>, each turn closed by <|role_end|>, the turn dllm and the official inference stop at); the
# generation prompt opens an assistant turn. No BOS: the official inference code encodes prompts without one.
LLADAMOE_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{%- set role = 'HUMAN' -%}"
    "{%- else -%}{%- set role = message['role'] | upper -%}{%- endif -%}"
    "{{ '<role>' + role + '</role>' + message['content'] + '<|role_end|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<role>ASSISTANT</role>' }}{%- endif -%}"
)

LLADAMOE = Family(
    name="lladamoe",
    title="LLaDA-MoE",
    model_type="longllada_lladamoe",
    official_model_types=("lladamoe",),
    # The first releases' config.json (and the official configuration_lladamoe.py, class LLaDAConfig) say "llada",
    # LLaDA's type: their expert fields, and no d_model, tell them apart.
    claims=(
        ConfigClaim(model_type="llada", present=("expert_intermediate_size", "moe_layer_freq"), absent=("d_model",)),
    ),
    config_class="modeling_longllada.configuration_lladamoe.LLaDAMoEConfig",
    model_class="modeling_longllada.modeling_lladamoe.LLaDAMoEModelLM",
    required_fields=(
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "vocab_size",
        "rope_theta",
        "partial_rotary_factor",
        "moe_layer_freq",
    ),
    embedding_key="model.embed_tokens.weight",
    key_prefixes=("model.", "lm_head."),
    # The official config has no field for the mask token: ours is written, so that the tokenizer's id travels.
    written_fields=("mask_token_id",),
    tiny_config_fields="modeling_longllada.configuration_lladamoe.LLaDAMoEConfig.fields_from_sizes",
    weight_shapes="modeling_longllada.configuration_lladamoe.LLaDAMoEConfig.official_weight_shapes",
    tokenizer=TokenizerSpec(
        # Ling 2.0's: <|endoftext|> EOS and PAD (156892), <|mask|> MASK (156895), the role tokens; a BOS that
        # prompts do not carry.
        special_tokens=("<|startoftext|>", "<|endoftext|>", "<|mask|>", "<role>", "</role>", "<|role_end|>"),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        mask_token="<|mask|>",
        chat_template=LLADAMOE_CHAT_TEMPLATE,
        add_bos=False,
    ),
    sampler_arguments=LLADA.sampler_arguments,
    greedy_remasking=LLADA.greedy_remasking,
    card=replace(
        LLADA.card,
        tag="llada-moe",
        model="LLaDA-MoE-7B-A1B",
        paper="https://arxiv.org/abs/2509.24389",
        official_repos=("inclusionAI/LLaDA-MoE-7B-A1B-Base", "inclusionAI/LLaDA-MoE-7B-A1B-Instruct"),
        weights_note=" (the official keys)",
        remote_code="`configuration_lladamoe.py`, `modeling_lladamoe.py` and the LongLLaDA files they share",
        features=(
            '- `rope_scaling` in the config: `{"type": "ntk", "factor": λ}` (RoPE base θ·λ), '
            '`{"type": "ntk", "target_length": T}` (λ from the extrapolation scaling law over the rotated '
            "dimensions of each head, `head_dim × partial_rotary_factor`, and the trained length "
            '`max_position_embeddings`) or `{"type": "ntk_per_length"}` (λ chosen from each input\'s length);',
            "- the mixture of experts as the official model routes it (softmax router in float32, the expert bias "
            "added to its weights, top-k unnormalised, the shared expert beside), every expert of a layer computed "
            "at once by grouped matrix products;",
            "- `model.generate()`: LLaDA's diffusion sampler (blocks decoded left to right, low-confidence or "
            "random remasking, temperature, classifier-free guidance), with Fast-dLLM's prefix/dual key-value "
            f"caches and confidence-threshold decoding ([paper]({FAST_DLLM_PAPER})) as options;",
            "- `model.log_likelihood()`: the Monte-Carlo bound on log p(continuation | context) that LLaDA uses for "
            "multiple-choice evaluation;",
            "- attention masks honoured (left-padded batches give the same results as single prompts), and the LM "
            "head computed only where logits are needed.",
        ),
        facts=(
            (
                "Layers, hidden size, heads / key-value heads (head dim, rotated dims)",
                "{config.num_hidden_layers}, {config.hidden_size}, {config.num_attention_heads} / "
                "{config.num_key_value_heads} ({config.head_dim}, {config.rotary_dim})",
            ),
            (
                "Experts (per token), expert width",
                "{config.num_experts} ({config.num_experts_per_tok}), {config.expert_intermediate_size}",
            ),
            ("Trained context (`max_position_embeddings`)", "{config.trained_length:,} tokens"),
            *ROPE_FACTS,
        ),
        papers=(("Fast-dLLM", FAST_DLLM_PAPER),),
        eval_example="ntk_target=8192,cache=prefix,threshold=0.9",
    ),
)

# -- LLaDA2.0 / LLaDA2.1 (inclusionAI 2025, 2026) -----------------------------------------------------------------

# Ling 2.0's chat format, as LLaDA2's tokenizer renders it: each turn "<role>ROLE</role>content<|role_end|>" with
# the roles SYSTEM, HUMAN and ASSISTANT; a default system turn "detailed thinking off" when none is given (as
# the official examples send); the generation prompt opens an assistant turn.
LLADA2_CHAT_TEMPLATE = (
    "{%- set names = {'system': 'SYSTEM', 'user': 'HUMAN', 'assistant': 'ASSISTANT'} -%}"
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{ '<role>SYSTEM</role>detailed thinking off<|role_end|>' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<role>' + names.get(message['role'], message['role'] | upper) + '</role>' + message['content']"
    " + '<|role_end|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<role>ASSISTANT</role>' }}{%- endif -%}"
)

LLADA2_PAPER = "https://arxiv.org/abs/2512.15745"
LLADA21_PAPER = "https://arxiv.org/abs/2602.08676"
BLOCK_DIFFUSION_PAPER = "https://arxiv.org/abs/2503.09573"

LLADA2 = Family(
    name="llada2",
    title="LLaDA2",
    model_type="longllada_llada2",
    official_model_types=("llada2_moe",),
    config_class="modeling_longllada.configuration_llada2.LLaDA2Config",
    model_class="modeling_longllada.modeling_llada2.LLaDA2ModelLM",
    required_fields=(
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "rope_theta",
        "max_position_embeddings",
        "num_experts",
        "num_experts_per_tok",
        "moe_intermediate_size",
        "first_k_dense_replace",
    ),
    embedding_key="model.word_embeddings.weight",
    key_prefixes=("model.", "lm_head."),
    tiny_config_fields="modeling_longllada.configuration_llada2.LLaDA2Config.fields_from_sizes",
    weight_shapes="modeling_longllada.configuration_llada2.LLaDA2Config.official_weight_shapes",
    tokenizer=TokenizerSpec(
        # <|startoftext|> BOS (not added when encoding), <|endoftext|> EOS and PAD, <|mask|> MASK, then the chat
        # tokens of the role headers and turn ends.
        special_tokens=("<|startoftext|>", "<|endoftext|>", "<|mask|>", "<role>", "</role>", "<|role_end|>"),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        mask_token="<|mask|>",
        chat_template=LLADA2_CHAT_TEMPLATE,
        add_bos=False,
    ),
    sampler_arguments=(
        "steps",
        "block_length",
        "temperature",
        "top_p",
        "top_k",
        "cache",
        "threshold",
        "minimal_topk",
        "eos_early_stop",
        "editing_threshold",
        "max_post_steps",
        "num_to_transfer",
    ),
    greedy_remasking="confidence_threshold",
    variants=(
        SamplerVariant(
            name="2.1",
            title="LLaDA2.1",
            paper=LLADA21_PAPER,
            settings=(("editing_threshold", 0.9), ("max_post_steps", 16), ("num_to_transfer", 1)),
            official_repos=("inclusionAI/LLaDA2.1-mini", "inclusionAI/LLaDA2.1-flash"),
        ),
    ),
    card=CardText(
        tag="llada2",
        model="LLaDA2.0",
        paper=LLADA2_PAPER,
        official_repos=("inclusionAI/LLaDA2.0-mini", "inclusionAI/LLaDA2.0-flash"),
        weights_note=" (the official keys)",
        remote_code="`configuration_llada2.py`, `modeling_llada2.py` and the LongLLaDA files they share",
        features=(
            '- `rope_scaling` in the config: `{"type": "ntk", "factor": λ}` (RoPE base θ·λ), '
            '`{"type": "ntk", "target_length": T}` (λ from the extrapolation scaling law on the rotated part of each '
            "head, `head_dim × partial_rotary_factor` dimensions, and the trained length `max_position_embeddings`) "
            'or `{"type": "ntk_per_length"}` (λ chosen from each input\'s length);',
            "- `model.generate()`: the official block-diffusion samplers, token-identical to the official `generate` "
            "at temperature 0: LLaDA2.0's (`block_length`, `steps`, `threshold`, `minimal_topk`, `eos_early_stop`, "
            "`temperature`, `top_k`, `top_p`) and, with `editing_threshold`, LLaDA2.1's token editing "
            "(`max_post_steps`, `num_to_transfer`); HF names for the rest (`max_new_tokens`, `eos_token_id`, "
            "`mask_token_id`);",
            '- an exact key/value cache for block diffusion (the default, `cache="prefix"`): the prompt\'s blocks '
            "are encoded once, in chunks, and each step runs only the active block, where the official code "
            f"recomputes the whole sequence ([block diffusion]({BLOCK_DIFFUSION_PAPER}): a block never sees later "
            "ones, so the kept keys and values are exact);",
            "- batches with left padding and their attention mask, each row as it would be alone (the official "
            "`generate` takes one prompt);",
            "- `model.log_likelihood()`: the block-diffusion bound on log p(continuation | context) that LLaDA2.0 "
            "trains on (each block predicted from the clean blocks before it);",
            "- the experts run batched (grouped matrix products), the LM head only where logits are needed.",
        ),
        facts=(
            (
                "Layers, hidden size, heads / key-value heads (head dim, rotated dims)",
                "{config.num_hidden_layers}, {config.hidden_size}, {config.num_attention_heads} / "
                "{config.num_key_value_heads} ({config.head_dim}, {config.rotary_dim})",
            ),
            (
                "Experts (per token, shared), dense layers",
                "{config.num_experts} ({config.num_experts_per_tok}, {config.num_shared_experts}), "
                "{config.num_dense_layers}",
            ),
            ("Trained context (`max_position_embeddings`)", "{config.trained_length:,} tokens"),
            *ROPE_FACTS,
        ),
        auto_class="AutoModelForCausalLM",
        generate=SamplerDemo(
            method="generate",
            arguments=(
                ("max_new_tokens", "64", "output length"),
                ("block_length", "32", "blocks decoded left to right"),
                ("steps", "32", "at most 32 steps a block"),
                ("threshold", "0.95", "commit every token above 0.95, at least the schedule's count"),
                ("temperature", "0.0", "greedy"),
            ),
        ),
        batch_heading="Batches, the cache and LLaDA2.1's editing",
        batch_text=(
            'Left-padded batches need the attention mask. `cache="prefix"` (the default) keeps every finished '
            'block\'s keys and values and gives the tokens of `cache="none"`, the official recompute. '
            "`editing_threshold` turns on LLaDA2.1's token editing: already placed tokens of the block are replaced "
            "where the model's new prediction exceeds it (the default of LLaDA2.1 repos)."
        ),
        batch_generate=SamplerDemo(
            method="generate",
            arguments=(
                ("max_new_tokens", "64", ""),
                ("block_length", "32", ""),
                ("threshold", "0.9", ""),
                ("cache", '"prefix"', '"prefix" (exact key/value cache) or "none" (recompute)'),
                ("editing_threshold", "0.9", "LLaDA2.1's editing; None: LLaDA2.0's sampler"),
            ),
        ),
        score_text=(
            "`log_likelihood` returns a Monte-Carlo lower bound of log p(continuation | context) under block "
            "diffusion (blocks of `generation_config.block_length`) and its standard error; the context is encoded "
            "once and each sample runs only the noised blocks."
        ),
        ntk_text=(
            "Any `rope_scaling` can be set at load time, whatever this revision's config holds. By factor "
            "(LongLLaDA multiplies the RoPE base by λ):"
        ),
        eval_text=(
            "With the `longllada` toolkit installed. Long-context benchmarks run through lm-eval with `--model "
            "longllada` (the block-diffusion sampler with its key/value cache for generation, the block-diffusion "
            "bound for likelihoods) and the toolkit's tasks: `longllada_niah` (needle in a haystack, its grid set "
            "by `--metadata`), `longllada_ruler`, `longllada_longbench`. In `--model_args`, `ntk_factor=λ`, "
            "`ntk_target=T` or `rope_scaling=ntk-per-length` override this revision's RoPE scaling, and "
            "`editing_threshold=0.9` selects LLaDA2.1's sampler:"
        ),
        eval_arguments="block_length=32,steps=32,threshold=0.95,ntk_factor={factor}",
        notes=(
            "- `generate` is a block-diffusion sampler: blocks are counted from each prompt's first token (the "
            "official layout; a batch is re-padded by whole blocks), `steps` is per block, the answer ends at its "
            "first EOS (the rest of the row is EOS), and HF options such as beams are ignored."
        ),
        papers=(("LLaDA2.1", LLADA21_PAPER), ("Block diffusion", BLOCK_DIFFUSION_PAPER)),
        eval_example="ntk_target=65536",
    ),
)

FAMILIES: tuple[Family, ...] = (LLADA, DREAM, LLADAMOE, LLADA2, DIFFUSION_GEMMA)


# -- lookups -----------------------------------------------------------------------------------------------------


def family_by_name(name: str) -> Family:
    """The family called ``name`` (an ``--arch`` value); ValueError naming the allowed ones otherwise."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise ValueError(f"family {name!r} is not known; allowed: {[family.name for family in FAMILIES]}")


def family_of_model_type(model_type: str | None) -> Family | None:
    """The family whose ``config.json`` says ``model_type`` (ours or an official one), or None. A config of a type
    that another family claims by its fields (:class:`ConfigClaim`) needs :func:`family_of_config`."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None


def claiming_family(config: Mapping[str, Any]) -> Family | None:
    """The family one of whose ``claims`` takes ``config`` (a ``config.json`` as a dict), or None."""
    for family in FAMILIES:
        if any(claim.matches(config) for claim in family.claims):
            return family
    return None


def family_of_config(config: Mapping[str, Any]) -> Family | None:
    """The family of a ``config.json`` (as a dict): the one that claims it by its fields, else the one of its
    ``model_type``; None for any other model."""
    return claiming_family(config) or family_of_model_type(config.get("model_type"))


def model_types() -> tuple[str, ...]:
    """Every model type of every family, per family the official ones first."""
    return tuple(model_type for family in FAMILIES for model_type in family.model_types)
