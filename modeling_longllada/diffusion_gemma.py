"""DiffusionGemma through transformers' own classes: NTK on its full-attention layers, its sampler's arguments,
chunked prompt encoding, and why it has no LongLLaDA perplexity.

DiffusionGemma (Google DeepMind, 2026) is native to transformers 5 (``transformers/models/diffusion_gemma``); this
module adds no remote code and reimplements neither the model nor its sampler. What follows was read from
transformers 5.25's code and the released ``google/diffusiongemma-26B-A4B-it`` ``config.json``.

**Model.** ``DiffusionGemmaForBlockDiffusion`` (``AutoModelForImageTextToText``, model type ``diffusion_gemma``;
text config ``diffusion_gemma_text`` under ``text_config``, a Gemma 4 vision tower under ``vision_config``). One
Gemma-4 MoE stack is used twice, with tied weights: a *causal encoder* (``model.encoder``) runs over the prompt
and fills a KV cache; a *bidirectional decoder* (``model.decoder``) denoises a canvas of ``config.canvas_length``
(256) tokens that attends to that cache (read-only) and to itself, with self-conditioning on the previous step's
logits. Each layer adds a dense GeGLU MLP and a top-8-of-128 MoE.

**Layers and RoPE.** ``text_config.layer_types`` interleaves ``sliding_attention`` (5 of every 6 layers; window
``sliding_window`` = 1024; head dim 256; ``rope_parameters["sliding_attention"]``: default RoPE, θ = 1e4, whole
head) and ``full_attention`` (every 6th layer and the last; head dim ``global_head_dim`` = 512, 2 key-value heads
with keys as values; ``rope_parameters["full_attention"]``: ``rope_type="proportional"``, θ = 1e6,
``partial_rotary_factor`` 0.25). Proportional RoPE (p-RoPE: Barbero et al. 2025, "Round and Round We Go! What
makes Rotary Positional Encodings useful?") rotates the first 64 of the 256 frequency pairs of a 512-wide head at
θ^(-2i/512), the *head* width in the exponent, and leaves the other 384 dimensions unrotated. Its longest rotated
period is 2π·θ^(126/512) ≈ 188 tokens.

**Trained window.** ``text_config.max_position_embeddings``: 262144 in the released config (the model card says
"up to 256K"; transformers' class default, 131072, is not the checkpoint's). Sliding layers never see a distance
beyond their window, so only the full-attention layers can meet unseen positions.

**NTK here.** The one ``rope_scaling`` spec (:func:`~.rope_longllada.parse_rope_scaling`) multiplies the θ of the
full-attention layers only; sliding layers keep theirs. The scaling law (Liu et al. 2023) is applied with those
layers' θ, the frequency width of their RoPE (the head, 512, for p-RoPE) and their rotated dimensions (128): when
the law's critical dimension lies beyond the rotated ones, every rotated dimension completes its period within
the trained window and the law asks for no scaling (λ = 1). For the released 26B-A4B that holds at every length
(critical dimension 396 of 512 > 128 rotated): ``ntk-target:256k`` and ``ntk-target:512k`` give λ = 1, and an
explicit ``ntk:λ`` remains the way to move its θ. See :func:`law_ntk_factor`.

**Sampler.** ``generate()`` (``DiffusionGemmaGenerationMixin``) encodes the prompt, then per canvas runs up to
``max_denoising_steps`` (48) decoder passes: a linear temperature schedule from ``t_max`` (0.8) to ``t_min``
(0.4), multinomial samples, entropy-bounded acceptance (``sampler_config.entropy_bound`` 0.1: the lowest-entropy
tokens whose summed entropy minus the largest stays within the bound are kept, the rest renoised uniformly), and a
canvas stops early once its argmax is unchanged for ``stability_threshold`` (1) steps and its mean entropy is
below ``confidence_threshold`` (0.005). The argmax canvas is appended and encoded; generation stops once every
row has met an EOS (``eos_token_id``; tokens after it become ``pad_token_id``) or ``max_new_tokens`` (rounded up
to whole canvases). There is no mask token: the canvas starts as uniform random tokens. The settings live in
``DiffusionGemmaGenerationConfig``; ``canvas_length`` is a model-config field. :class:`DiffusionGemmaSamplerArgs`
checks them and maps them onto both.

**Batches.** ``generate`` takes a 2D ``attention_mask``: left-padded rows are masked out of the encoder and the
decoder, and their shifted absolute positions do not change RoPE's relative angles, so a padded batch gives each
row the answer it gets alone (a test checks it with a deterministic canvas).

**Prompt encoding at 100k+ tokens.** With SDPA, transformers builds the sliding-window mask of the prompt as a
dense [L, L] boolean (64 GiB at 256k tokens; with left padding the full-attention mask too) before the first
layer runs; :func:`encode_prompt` feeds the encoder the prompt in chunks instead (same cache, same tokens), and
:func:`generate` then lets transformers' ``generate`` continue from that cache.

**Likelihood.** None that means what LongLLaDA's perplexity curve means (a masked-diffusion ELBO per chunk): the
model is a uniform-state (renoising) diffusion with no mask token, its forward returns logits and no loss, and its
noise schedule is not part of the checkpoint. :func:`chunk_perplexity` says so.

**Older transformers.** transformers 4.46 has no DiffusionGemma. This module imports on any supported version;
:func:`require_diffusion_gemma` turns a load on an older one into one line naming the version needed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
import transformers

from .families import DIFFUSION_GEMMA
from .rope_longllada import (
    MAX_COUNT,
    MAX_SCALE,
    check_number,
    critical_dimension,
    ntk_scaling_factor,
    parse_rope_scaling,
    spec_label,
)

MODEL_TYPE = DIFFUSION_GEMMA.model_type
# The transformers this module is written and tested against (per-layer configs, the `cache` keyword): the entry's.
MIN_TRANSFORMERS_VERSION = DIFFUSION_GEMMA.min_transformers

FULL_ATTENTION = "full_attention"
SLIDING_ATTENTION = "sliding_attention"
# Layers whose attention spans the whole context get the NTK base; windowed ones never meet unseen distances.
CONTEXT_LAYER_TYPES = (FULL_ATTENTION,)
WINDOWED_LAYER_TYPES = (SLIDING_ATTENTION,)

# Where a scaled config records what was applied (a text-config attribute, saved in config.json), so that a
# second scaling starts from the trained bases and `none` can restore them.
ROPE_SCALING_RECORD = "longllada_rope_scaling"

# The released google/diffusiongemma-26B-A4B-it text config: the fields that set shapes, RoPE and the window.
DIFFUSION_GEMMA_26B_A4B_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 262144,
    "hidden_size": 2816,
    "intermediate_size": 2112,
    "moe_intermediate_size": 704,
    "num_hidden_layers": 30,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "num_global_key_value_heads": 2,
    "head_dim": 256,
    "global_head_dim": 512,
    "num_experts": 128,
    "top_k_experts": 8,
    "max_position_embeddings": 262144,
    "sliding_window": 1024,
    "use_bidirectional_attention": "vision",
    "final_logit_softcapping": 30.0,
    "layer_types": [FULL_ATTENTION if (i + 1) % 6 == 0 else SLIDING_ATTENTION for i in range(30)],
    "rope_parameters": {
        SLIDING_ATTENTION: {"rope_type": "default", "rope_theta": 10000.0},
        FULL_ATTENTION: {"rope_type": "proportional", "rope_theta": 1000000.0, "partial_rotary_factor": 0.25},
    },
}
DIFFUSION_GEMMA_26B_A4B_CANVAS_LENGTH = 256

# Prompt tokens per encoder call in `encode_prompt`: the sliding-window mask is then [4096, 4096 + window].
DEFAULT_PREFILL_CHUNK = 4096

NO_LIKELIHOOD_REASON = (
    "DiffusionGemma defines no likelihood with the meaning of LongLLaDA's perplexity curve (a masked-diffusion "
    "ELBO per chunk): it is a uniform-state diffusion model without a mask token, its forward returns logits and "
    "no loss, and the noise schedule a uniform-state ELBO would need is not part of the checkpoint"
)


# -- transformers support -------------------------------------------------------------------------------------


def transformers_version_ok() -> bool:
    """True when the installed transformers is at least :data:`MIN_TRANSFORMERS_VERSION` and ships the model."""
    return DIFFUSION_GEMMA.is_supported() and hasattr(transformers, "DiffusionGemmaForBlockDiffusion")


def require_diffusion_gemma() -> None:
    """ImportError, one line (the family entry's :meth:`~.families.Family.check_transformers`), unless the installed
    transformers ships DiffusionGemma at a version this module supports."""
    try:
        DIFFUSION_GEMMA.check_transformers()
    except ValueError as err:
        raise ImportError(str(err)) from None
    if not hasattr(transformers, "DiffusionGemmaForBlockDiffusion"):
        raise ImportError(
            f"DiffusionGemma needs transformers >= {MIN_TRANSFORMERS_VERSION}; installed: {transformers.__version__} "
            "has no DiffusionGemmaForBlockDiffusion"
        )


# -- RoPE per layer type ----------------------------------------------------------------------------------------


def _text_config(config: Any) -> Any:
    """The text config of a DiffusionGemma config (or the text config itself)."""
    return getattr(config, "text_config", None) or config


def _layer_rope_parameters(text_config: Any, layer_type: str) -> dict[str, Any]:
    rope_parameters = getattr(text_config, "rope_parameters", None)
    if not isinstance(rope_parameters, Mapping) or not isinstance(rope_parameters.get(layer_type), Mapping):
        raise ValueError(
            f"rope_parameters has no entry for layer type {layer_type!r}; a DiffusionGemma text config keeps one "
            f"dict per layer type ({list(CONTEXT_LAYER_TYPES + WINDOWED_LAYER_TYPES)})"
        )
    return dict(rope_parameters[layer_type])


def check_layer_types(text_config: Any) -> list[str]:
    """The config's layer types in order; ValueError if one is neither full nor sliding attention (NTK would not
    know whether it sees the whole context)."""
    layer_types = list(getattr(text_config, "layer_types", None) or [])
    known = CONTEXT_LAYER_TYPES + WINDOWED_LAYER_TYPES
    unknown = sorted({kind for kind in layer_types if kind not in known})
    if unknown or not layer_types:
        raise ValueError(
            f"layer_types has {unknown or 'no entries'}; rope_scaling applies to {list(CONTEXT_LAYER_TYPES)} layers "
            f"and leaves {list(WINDOWED_LAYER_TYPES)} layers as trained, allowed: those layer types only"
        )
    return layer_types


def rope_dimensions(text_config: Any, layer_type: str) -> tuple[int, int]:
    """``(frequency_dim, rotary_dim)`` of a layer type's RoPE, as transformers computes it: pair ``i`` turns at
    ``θ^(-2i / frequency_dim)`` for ``2i < rotary_dim``, the rest of the head is not rotated.

    ``default`` RoPE with ``partial_rotary_factor`` p rotates ``int(head_dim·p)`` dimensions over that width;
    ``proportional`` (p-RoPE) keeps the head width in the exponent and rotates ``2·int(p·head_dim/2)`` dimensions.
    """
    parameters = _layer_rope_parameters(text_config, layer_type)
    head_dim = int(text_config.per_layer_config[layer_type].head_dim)
    fraction = float(parameters.get("partial_rotary_factor") or 1.0)
    rope_type = parameters.get("rope_type", "default")
    if rope_type == "default":
        rotary = int(head_dim * fraction)
        return rotary, rotary
    if rope_type == "proportional":
        return head_dim, 2 * int(fraction * head_dim // 2)
    raise ValueError(
        f"rope_parameters[{layer_type!r}].rope_type={rope_type!r} already rescales RoPE; NTK scaling applies to "
        "rope_type 'default' or 'proportional'"
    )


def law_ntk_factor(
    frequency_dim: int, rotary_dim: int, rope_theta: float, trained_length: int, target_length: int
) -> int:
    """The scaling law's integer NTK factor λ for RoPE that rotates ``rotary_dim`` of ``frequency_dim`` dimensions.

    Liu et al. 2023's critical dimension is counted over the frequency width; when it reaches past the rotated
    dimensions, each of them completes its period within ``trained_length``, no rotated dimension is out of
    distribution at any length, and λ = 1. Otherwise λ is :func:`ntk_scaling_factor` over the frequency width
    (for full rotary RoPE, ``rotary_dim == frequency_dim``, it is that function unchanged).
    """
    check_number("rotary_dim", rotary_dim, minimum=1, maximum=frequency_dim, integer=True)
    check_number("target_length", target_length, minimum=1, integer=True)
    if target_length <= trained_length:
        return 1
    if critical_dimension(frequency_dim, rope_theta, trained_length) >= rotary_dim:
        return 1
    return ntk_scaling_factor(frequency_dim, rope_theta, trained_length, target_length)


def _scaling_record(text_config: Any) -> dict[str, Any] | None:
    record = getattr(text_config, ROPE_SCALING_RECORD, None)
    return dict(record) if isinstance(record, Mapping) else None


def trained_rope(text_config: Any) -> tuple[int, dict[str, float]]:
    """``(trained window, trained θ per context layer type)``, from the scaling record of a scaled config or
    from the config itself."""
    record = _scaling_record(text_config)
    if record is not None:
        return int(record["trained_length"]), {k: float(v) for k, v in record["trained_rope_theta"].items()}
    check_layer_types(text_config)
    thetas = {
        kind: float(_layer_rope_parameters(text_config, kind)["rope_theta"])
        for kind in CONTEXT_LAYER_TYPES
        if kind in text_config.layer_types
    }
    return int(text_config.max_position_embeddings), thetas


def ntk_factors_for_length(config: Any, target_length: int) -> dict[str, int]:
    """λ per context layer type that the scaling law gives ``config`` for ``target_length`` tokens."""
    text_config = _text_config(config)
    trained_length, thetas = trained_rope(text_config)
    factors = {}
    for kind, theta in thetas.items():
        frequency_dim, rotary_dim = rope_dimensions(text_config, kind)
        factors[kind] = law_ntk_factor(frequency_dim, rotary_dim, theta, trained_length, target_length)
    return factors


def apply_rope_scaling(config: Any, rope_scaling: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Scale the RoPE base θ of the full-attention layers of a DiffusionGemma ``config`` in place (before the
    model is built from it); sliding-window layers keep theirs. Returns the record stored on the text config
    (``longllada_rope_scaling``: the spec, the factor per layer type, the trained θ and window) or None.

    ``rope_scaling``: any form :func:`parse_rope_scaling` accepts. ``ntk`` with ``factor`` multiplies θ by it;
    with ``target_length`` λ comes from :func:`law_ntk_factor` (both given must agree). ``None`` or ``"none"``
    restores the trained θ of a config scaled before. A config scaled before is scaled again from its trained θ.
    ``ntk_per_length`` and transformers' ``dynamic`` are refused: the encoder caches the prompt's rotated keys
    across canvases, so one θ must hold for a whole ``generate``.
    """
    text_config = _text_config(config)
    check_layer_types(text_config)
    spec = parse_rope_scaling(rope_scaling)
    trained_length, trained_thetas = trained_rope(text_config)
    if spec is not None:
        _check_spec(spec, trained_length)
    factors: dict[str, float] = {}
    rope_parameters = copy.deepcopy(dict(text_config.rope_parameters))
    for kind, theta in trained_thetas.items():
        factor = 1.0 if spec is None else _factor(spec, text_config, kind, theta, trained_length)
        factors[kind] = factor
        rope_parameters[kind] = {**rope_parameters[kind], "rope_theta": theta * factor}
    text_config.rope_parameters = rope_parameters
    if spec is None:
        if hasattr(text_config, ROPE_SCALING_RECORD):
            delattr(text_config, ROPE_SCALING_RECORD)
        return None
    record = {
        "rope_scaling": spec,
        "factor": factors,
        "trained_rope_theta": trained_thetas,
        "trained_length": trained_length,
    }
    setattr(text_config, ROPE_SCALING_RECORD, record)
    return record


def _check_spec(spec: dict[str, Any], trained_length: int) -> None:
    kind = spec["type"]
    if kind == "ntk_per_length":
        raise ValueError(
            f"rope_scaling={spec_label(spec)!r} picks λ per forward length, but DiffusionGemma's encoder caches the "
            "prompt's rotated keys for every later canvas, so one θ must hold for a whole generate; allowed: "
            "'ntk:FACTOR' or 'ntk-target:LENGTH'"
        )
    if kind != "ntk":
        raise ValueError(
            f"rope_scaling type {kind!r} is not supported for DiffusionGemma (its full-attention layers are scaled "
            "by NTK, multiplying θ); allowed: 'ntk:FACTOR' or 'ntk-target:LENGTH'"
        )
    target = spec.get("target_length")
    if target is not None and target < trained_length:
        raise ValueError(
            f"rope_scaling.target_length={target!r} is below the trained window {trained_length}; allowed: a length "
            f">= {trained_length} (no scaling is needed below it)"
        )


def _factor(spec: dict[str, Any], text_config: Any, kind: str, theta: float, trained_length: int) -> float:
    factor, target = spec.get("factor"), spec.get("target_length")
    law = None
    if target is not None:
        frequency_dim, rotary_dim = rope_dimensions(text_config, kind)
        law = law_ntk_factor(frequency_dim, rotary_dim, theta, trained_length, target)
    else:
        rope_dimensions(text_config, kind)  # refuses a rope_type NTK cannot scale
    if factor is not None and law is not None and float(law) != float(factor):
        raise ValueError(
            f"rope_scaling.factor={factor!r} disagrees with rope_scaling.target_length={target!r}: the scaling law "
            f"gives factor {law} for the {kind} layers at that length; give one of the two, or matching values"
        )
    return float(factor if factor is not None else law)


def released_config() -> Any:
    """A ``DiffusionGemmaConfig`` with the released 26B-A4B's text config and canvas (transformers' default Gemma 4
    vision tower), for shapes and RoPE without the checkpoint."""
    require_diffusion_gemma()
    from transformers import DiffusionGemmaConfig

    return DiffusionGemmaConfig(
        text_config=copy.deepcopy(DIFFUSION_GEMMA_26B_A4B_TEXT_CONFIG),
        canvas_length=DIFFUSION_GEMMA_26B_A4B_CANVAS_LENGTH,
    )


def rope_theta_by_layer_type(model_or_config: Any) -> dict[str, float]:
    """The RoPE base θ each layer type uses, read from a model's (or a config's) text config."""
    config = getattr(model_or_config, "config", model_or_config)
    text_config = _text_config(config)
    return {kind: float(params["rope_theta"]) for kind, params in text_config.rope_parameters.items()}


# -- the sampler's arguments ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiffusionGemmaSamplerArgs:
    """DiffusionGemma's sampler settings under transformers' names, each checked for type, range and finiteness;
    None leaves the checkpoint's ``generation_config.json`` (or transformers' default) in place.

    Args:
        max_new_tokens: tokens to generate (rounded up to whole canvases by ``generate``).
        max_denoising_steps: decoder passes per canvas at most.
        t_max: temperature at the first denoising step; ``t_min``: at the last (linear in between; t_max > t_min).
        entropy_bound: entropy budget of the tokens accepted per step (``sampler_config.entropy_bound``).
        stability_threshold: steps the argmax canvas must stay unchanged before a canvas may stop early.
        confidence_threshold: mean token entropy below which a stable canvas stops.
        canvas_length: tokens per canvas (a model-config field; the checkpoint was trained with 256).
    """

    max_new_tokens: int | None = None
    max_denoising_steps: int | None = None
    t_min: float | None = None
    t_max: float | None = None
    entropy_bound: float | None = None
    stability_threshold: int | None = None
    confidence_threshold: float | None = None
    canvas_length: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "max_denoising_steps", "canvas_length"):
            check_number(name, getattr(self, name), minimum=1, maximum=MAX_COUNT, integer=True, optional=True)
        check_number("stability_threshold", self.stability_threshold, minimum=0, maximum=MAX_COUNT, integer=True,
                     optional=True)  # fmt: skip
        check_number("t_min", self.t_min, minimum=0, maximum=MAX_SCALE, optional=True)
        for name in ("t_max", "entropy_bound", "confidence_threshold"):
            check_number(name, getattr(self, name), minimum=0, maximum=MAX_SCALE, inclusive=False, optional=True)
        # transformers checks these with isinstance(float): an int from the command line is a float here.
        for name in ("t_min", "t_max", "entropy_bound", "confidence_threshold"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        _check_temperatures(self.t_min, self.t_max)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The argument names, as transformers spells them."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, arguments: Mapping[str, Any]) -> DiffusionGemmaSamplerArgs:
        """From keyword arguments (e.g. lm-eval ``--model_args``); an unknown name is a ValueError listing the
        allowed ones."""
        unknown = sorted(set(arguments) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown DiffusionGemma sampler arguments {unknown}; allowed: {list(cls.names())}")
        return cls(**dict(arguments))

    def generation_config(self, base: Any = None) -> Any:
        """A copy of ``base`` (a ``DiffusionGemmaGenerationConfig``; None: transformers' defaults) with these
        settings, validated by transformers."""
        require_diffusion_gemma()
        from transformers import DiffusionGemmaGenerationConfig, EntropyBoundSamplerConfig

        config = copy.deepcopy(base) if base is not None else DiffusionGemmaGenerationConfig()
        defaults = config._get_default_generation_params()
        for name in ("max_new_tokens", "max_denoising_steps", "t_min", "t_max", "stability_threshold",
                     "confidence_threshold"):  # fmt: skip
            if getattr(self, name) is not None:
                setattr(config, name, getattr(self, name))
        if self.entropy_bound is not None:
            config.sampler_config = EntropyBoundSamplerConfig(entropy_bound=self.entropy_bound)
        t_min = config.t_min if config.t_min is not None else defaults["t_min"]
        t_max = config.t_max if config.t_max is not None else defaults["t_max"]
        _check_temperatures(t_min, t_max)
        config.validate()
        return config

    def apply(self, model: Any) -> Any:
        """Set these settings on a loaded DiffusionGemma model: its generation config, and ``canvas_length`` on
        its config (``generate`` and the sampler read it on each call). Returns the model."""
        model.generation_config = self.generation_config(getattr(model, "generation_config", None))
        if self.canvas_length is not None:
            model.config.canvas_length = self.canvas_length
        return model


def _check_temperatures(t_min: float | None, t_max: float | None) -> None:
    if t_min is not None and t_max is not None and not t_max > t_min:
        raise ValueError(
            f"t_max={t_max!r} with t_min={t_min!r} is not allowed; allowed: t_max > t_min (the temperature falls "
            "linearly from t_max at the first denoising step to t_min at the last)"
        )


# -- loading --------------------------------------------------------------------------------------------------


def load_config(pretrained: str, *, rope_scaling: str | Mapping[str, Any] | None = None, **hub_kwargs: Any) -> Any:
    """A DiffusionGemma checkpoint's config (transformers' ``AutoConfig``) with ``rope_scaling`` applied by
    :func:`apply_rope_scaling`. ``hub_kwargs``: ``revision``, ``token``, ``cache_dir``, ``local_files_only``."""
    require_diffusion_gemma()
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(pretrained, **hub_kwargs)
    if config.model_type != MODEL_TYPE:
        raise ValueError(f"{pretrained!r} is a {config.model_type!r} model; expected model_type {MODEL_TYPE!r}")
    apply_rope_scaling(config, rope_scaling)
    return config


def load_model(
    pretrained: str,
    *,
    rope_scaling: str | Mapping[str, Any] | None = None,
    sampler: DiffusionGemmaSamplerArgs | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **hub_kwargs: Any,
) -> Any:
    """``AutoModelForImageTextToText.from_pretrained`` of a DiffusionGemma checkpoint with NTK on its
    full-attention layers and the sampler settings applied. ``model_kwargs``: ``dtype``, ``device_map``,
    ``attn_implementation``, ...; ``hub_kwargs`` go to both the config and the weights."""
    config = load_config(pretrained, rope_scaling=rope_scaling, **hub_kwargs)
    from transformers import AutoModelForImageTextToText

    model_kwargs = DIFFUSION_GEMMA.from_pretrained_kwargs({**(model_kwargs or {}), **hub_kwargs})
    model = AutoModelForImageTextToText.from_pretrained(pretrained, config=config, **model_kwargs)
    if sampler is not None:
        sampler.apply(model)
    return model.eval()


# -- long prompts ---------------------------------------------------------------------------------------------


@torch.no_grad()
def encode_prompt(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    chunk_size: int = DEFAULT_PREFILL_CHUNK,
    cache: Any = None,
) -> Any:
    """Run DiffusionGemma's encoder over ``input_ids`` [B, L] in chunks of ``chunk_size`` tokens and return the
    filled KV cache (a ``DynamicCache``, as ``generate`` makes one). The encoder is causal, so the cache equals
    the one a single pass builds, while each call's masks span [chunk, cached + chunk] positions instead of
    [L, L]. ``attention_mask`` [B, L] (1 = token, 0 = left padding) covers the whole prompt; ``cache`` continues
    an existing one (its positions come first).
    """
    check_number("chunk_size", chunk_size, minimum=1, maximum=MAX_COUNT, integer=True)
    from transformers import DynamicCache

    if cache is None:
        cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    past = cache.get_seq_length()
    if attention_mask is not None and attention_mask.shape[-1] != past + input_ids.shape[-1]:
        raise ValueError(
            f"attention_mask covers {attention_mask.shape[-1]} positions; it must cover the cached and new ones, "
            f"{past} + {input_ids.shape[-1]}"
        )
    encoder = model.model.encoder
    for start in range(0, input_ids.shape[-1], chunk_size):
        chunk = input_ids[:, start : start + chunk_size]
        mask = None if attention_mask is None else attention_mask[:, : past + start + chunk.shape[-1]]
        cache = encoder(input_ids=chunk, attention_mask=mask, cache=cache).cache
    return cache


def encoded_first(length: int, prefill_chunk_size: int | None) -> int:
    """How many of a prompt's ``length`` tokens :func:`generate` encodes into the cache before transformers'
    ``generate`` runs (all but the last chunk; 0 with one chunk or None)."""
    if prefill_chunk_size is None or length <= prefill_chunk_size:
        return 0
    return prefill_chunk_size * (math.ceil(length / prefill_chunk_size) - 1)


def generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    prefill_chunk_size: int | None = DEFAULT_PREFILL_CHUNK,
    **generate_kwargs: Any,
) -> Any:
    """transformers' ``model.generate`` with the prompt encoded by :func:`encode_prompt` first: all but its last
    ``prefill_chunk_size`` tokens go into a cache in chunks, and ``generate`` continues from that cache with the
    rest (None: one call, as transformers does it). ``generate_kwargs`` are ``generate``'s (``max_new_tokens``,
    ``max_denoising_steps``, ...). Returns what ``generate`` returns; its ``sequences`` hold the last chunk and
    the answer (``[:, -answer_length:]`` is the answer either way). The sampler's arguments among
    ``generate_kwargs`` are checked as :class:`DiffusionGemmaSamplerArgs` checks them and given to ``generate``
    in its generation config (``entropy_bound`` included, which ``generate`` takes only there)."""
    if prefill_chunk_size is not None:
        check_number("prefill_chunk_size", prefill_chunk_size, minimum=1, maximum=MAX_COUNT, integer=True)
    if "canvas_length" in generate_kwargs:
        raise ValueError(
            f"canvas_length={generate_kwargs['canvas_length']!r} is a field of the model's config, not an argument "
            "of generate; allowed: DiffusionGemmaSamplerArgs(canvas_length=...).apply(model)"
        )
    names = set(DiffusionGemmaSamplerArgs.names())
    sampler = DiffusionGemmaSamplerArgs.from_mapping({k: v for k, v in generate_kwargs.items() if k in names})
    generate_kwargs = {key: value for key, value in generate_kwargs.items() if key not in names}
    generate_kwargs["generation_config"] = sampler.generation_config(
        generate_kwargs.get("generation_config") or getattr(model, "generation_config", None)
    )
    if attention_mask is not None:  # transformers' generate reads a mask only when the keyword is given
        generate_kwargs["attention_mask"] = attention_mask
    cut = encoded_first(input_ids.shape[-1], prefill_chunk_size)
    if cut == 0:
        return model.generate(input_ids, **generate_kwargs)
    head_mask = None if attention_mask is None else attention_mask[:, :cut]
    cache = encode_prompt(model, input_ids[:, :cut], head_mask, chunk_size=prefill_chunk_size)
    return model.generate(input_ids[:, cut:], cache=cache, **generate_kwargs)


def generate_answers(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    max_new_tokens: int,
    sampler: DiffusionGemmaSamplerArgs | None = None,
    *,
    pad_token_id: int | None = None,
    seed: int | None = None,
    prefill_chunk_size: int | None = DEFAULT_PREFILL_CHUNK,
) -> torch.Tensor:
    """The answers to a (left-padded) batch, [B, ``max_new_tokens``]: :func:`generate` with the ``sampler``
    settings over the model's generation config, each answer cut at its first EOS (the EOS and what follows
    become ``pad_token_id``: the generation config's, else the model's) and truncated or padded to
    ``max_new_tokens`` (``generate`` denoises whole canvases). ``seed``: the sampler draws from torch's global
    generator; with a seed it draws from a forked one seeded so (the caller's random state is left as it was)."""
    check_number("max_new_tokens", max_new_tokens, minimum=1, integer=True)
    sampler = sampler or DiffusionGemmaSamplerArgs()
    generation_config = sampler.generation_config(getattr(model, "generation_config", None))
    if sampler.canvas_length is not None:
        model.config.canvas_length = sampler.canvas_length  # a model-config field, read on each call
    if pad_token_id is None:
        pad_token_id = generation_config.pad_token_id
    if pad_token_id is None:
        pad_token_id = model.config.get_text_config().pad_token_id
    devices = [input_ids.device] if input_ids.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        output = generate(
            model, input_ids, attention_mask, prefill_chunk_size=prefill_chunk_size,
            generation_config=generation_config, max_new_tokens=max_new_tokens, pad_token_id=pad_token_id,
        )  # fmt: skip
    sequences = getattr(output, "sequences", output)
    answers = sequences[:, input_ids.shape[-1] - encoded_first(input_ids.shape[-1], prefill_chunk_size) :]
    answers = answers[:, :max_new_tokens]
    eos = generation_config.eos_token_id
    if eos is not None:
        eos_ids = torch.tensor(eos if isinstance(eos, (list, tuple)) else [eos], device=answers.device)
        answers = answers.masked_fill(torch.isin(answers, eos_ids).cumsum(dim=-1) > 0, pad_token_id)
    if answers.shape[-1] < max_new_tokens:  # every row ended before the last canvas
        answers = torch.nn.functional.pad(answers, (0, max_new_tokens - answers.shape[-1]), value=pad_token_id)
    return answers


# -- likelihood ------------------------------------------------------------------------------------------------


def chunk_perplexity(model: Any, context_ids: Any, chunk_ids: Any, **kwargs: Any) -> float:
    """LongLLaDA's per-chunk score (``LongLLaDAModelLM.chunk_perplexity``'s contract) for DiffusionGemma: there
    is none; ValueError with the reason (:data:`NO_LIKELIHOOD_REASON`)."""
    raise ValueError(NO_LIKELIHOOD_REASON)


# -- checkpoint layout -----------------------------------------------------------------------------------------


def official_weight_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor of a DiffusionGemma checkpoint for ``config``, name to shape, as ``save_pretrained`` writes it:
    the model built on the meta device, without the tensors that share another's (the encoder's, tied to the
    decoder's, and the LM head)."""
    require_diffusion_gemma()
    from transformers import DiffusionGemmaForBlockDiffusion

    with torch.device("meta"):
        model = DiffusionGemmaForBlockDiffusion(config)
    tied = set(model.all_tied_weights_keys)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items() if name not in tied}


# -- the tools' hooks --------------------------------------------------------------------------------------------


def rope_summary(config: Any) -> dict[str, Any]:
    """What a DiffusionGemma config's RoPE is, for records and model cards: the trained window, the scaling it
    carries (its record), and for the layers NTK scales (``layers``: the full-attention ones) λ, the trained and
    the scaled base and the law's dimensions; ``rope_theta_by_layer_type``: every layer type's base in use.
    ``context_window``: the scaling's ``target_length`` when it names one, else the trained window (for p-RoPE
    layers whose rotated pairs all turn within the window, the scaling law bounds no length)."""
    text_config = _text_config(config)
    trained_length, trained_thetas = trained_rope(text_config)
    record = _scaling_record(text_config)
    spec = dict(record["rope_scaling"]) if record else None
    target = spec.get("target_length") if spec else None
    frequency_dim, rotary_dim = rope_dimensions(text_config, FULL_ATTENTION)
    in_use = rope_theta_by_layer_type(config)
    return {
        "trained_length": trained_length,
        "context_window": int(target) if target else trained_length,
        "target_length": target,
        "scaling": spec,
        "factor": float(record["factor"][FULL_ATTENTION]) if record else 1.0,
        "rope_theta": trained_thetas[FULL_ATTENTION],
        "effective_rope_theta": in_use[FULL_ATTENTION],
        "rope_theta_by_layer_type": in_use,
        "layers": FULL_ATTENTION,
        "frequency_dim": frequency_dim,
        "rotary_dim": rotary_dim,
    }


class DiffusionGemmaHooks:
    """What the project's tools ask of DiffusionGemma in place of a config class of ours (``Family.hooks``; the
    protocol is in ``modeling_longllada.families``' docstring). Stateless: every hook is a static method."""

    likelihood_reason = NO_LIKELIHOOD_REASON
    # Where a record says the scaling went (the full-attention entry of the text config's per-type RoPE).
    CONFIG_FIELD = f"text_config.rope_parameters.{FULL_ATTENTION}.rope_theta"

    @staticmethod
    def apply_rope_scaling(config: Any, request: str | Mapping[str, Any] | None) -> dict[str, Any]:
        """:func:`apply_rope_scaling` for a request (None: the config described, unchanged), as a run's record:
        λ and the trained and scaled base of the full-attention layers, and every layer type's base in use."""
        if request is not None:
            apply_rope_scaling(config, request)
        summary = rope_summary(config)
        spec = summary["scaling"]
        label = spec_label(spec) if request is not None else (f"config:{spec_label(spec)}" if spec else None)
        return {
            "scaling": label,
            "factor": summary["factor"],
            "rope_theta": summary["rope_theta"],
            "effective_rope_theta": summary["effective_rope_theta"],
            "rope_theta_by_layer_type": summary["rope_theta_by_layer_type"],
            "config_field": DiffusionGemmaHooks.CONFIG_FIELD,
        }

    rope_summary = staticmethod(rope_summary)

    @staticmethod
    def ntk_factor_for_length(config: Any, length: int) -> int:
        """λ by the scaling law for ``length`` tokens (the largest over the context layer types)."""
        return max(ntk_factors_for_length(config, length).values())

    @staticmethod
    def convert_config(
        source_config: Mapping[str, Any], rope_scaling: Mapping[str, Any] | None, keep_source: bool
    ) -> dict[str, Any]:
        """A published ``config.json``: the source's fields, transformers' model type and class, no ``auto_map``
        (no code is shipped), and unless ``keep_source`` the full-attention layers' base θ scaled by
        ``rope_scaling`` (None: the trained θ) in ``text_config.rope_parameters`` with the record beside it, so
        that transformers alone reads the scaled base. Checked by building transformers' config from it."""
        require_diffusion_gemma()
        from transformers import DiffusionGemmaConfig

        fields = {k: v for k, v in source_config.items() if k not in ("auto_map", "architectures", "model_type")}
        try:
            config = DiffusionGemmaConfig(**copy.deepcopy(fields))
        except (TypeError, ValueError) as err:
            raise ValueError(f"config.json is not a DiffusionGemma config: {' '.join(str(err).split())}") from None
        text = dict(fields.get("text_config") or {})
        if not keep_source:
            apply_rope_scaling(config, rope_scaling)
            text["rope_parameters"] = copy.deepcopy(dict(config.text_config.rope_parameters))
            record = _scaling_record(config.text_config)
            if record is None:
                text.pop(ROPE_SCALING_RECORD, None)
            else:
                text[ROPE_SCALING_RECORD] = json_ready(record)
        check_layer_types(config.text_config)
        return {
            "architectures": [DIFFUSION_GEMMA.architecture],
            "model_type": MODEL_TYPE,
            **fields,
            "text_config": text,
        }

    @staticmethod
    def check_sampler_arguments(arguments: Mapping[str, Any], generation_config: Mapping[str, Any]) -> None:
        """Sampler arguments checked as :class:`DiffusionGemmaSamplerArgs` does, over the checkpoint's saved
        ``generation_config.json`` (a dict; empty: transformers' defaults)."""
        require_diffusion_gemma()
        from transformers import DiffusionGemmaGenerationConfig

        sampler = DiffusionGemmaSamplerArgs.from_mapping(arguments)
        base = DiffusionGemmaGenerationConfig.from_dict(dict(generation_config)) if generation_config else None
        sampler.generation_config(base)

    @staticmethod
    def generate_answers(
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        max_new_tokens: int,
        arguments: Mapping[str, Any],
        pad_token_id: int | None,
        seed: int | None,
    ) -> torch.Tensor:
        """:func:`generate_answers` with the sampler arguments (transformers' names) of ``arguments``."""
        sampler = DiffusionGemmaSamplerArgs.from_mapping(arguments)
        return generate_answers(
            model, input_ids, attention_mask, max_new_tokens, sampler, pad_token_id=pad_token_id, seed=seed
        )

    @staticmethod
    def generation_bytes_per_row(config: Any, length: int, itemsize: int) -> int:
        """An estimate of one batch row's memory at ``length`` positions (prompt and answer): the full-attention
        layers' keys and values at every position, the sliding layers' within their window and a prefill chunk,
        one chunk's attention scores (float32), and the decoder's float32 logits over a canvas (the sampler keeps
        a few tensors of that size: logits, probabilities, self-conditioning)."""
        text_config = _text_config(config)
        layer_types = check_layer_types(text_config)
        per_layer = text_config.per_layer_config
        total = 0
        for kind in set(layer_types):
            layers = layer_types.count(kind)
            kv_width = per_layer[kind].num_key_value_heads * per_layer[kind].head_dim
            positions = length if kind in CONTEXT_LAYER_TYPES else min(length, text_config.sliding_window)
            total += layers * 2 * (positions + DEFAULT_PREFILL_CHUNK) * kv_width * itemsize
        chunk = min(length, DEFAULT_PREFILL_CHUNK)
        total += chunk * length * text_config.num_attention_heads * 4
        total += 4 * int(config.canvas_length) * text_config.vocab_size * 4
        return total


def json_ready(value: Any) -> Any:
    """``value`` with tuples as lists and mappings as dicts, as ``config.json`` holds it."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
