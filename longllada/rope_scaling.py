"""A ``rope_scaling`` request applied to a model's config, whatever its family.

Every front-end parses requests with ``modeling_longllada.parse_rope_scaling`` (one spec: dicts and CLI strings
such as ``ntk:4``, ``ntk-target:16384``, ``ntk-per-length``, ``yarn:4``, ``longrope:FILE.json``; see its module).
This module applies a parsed request:

- to the diffusion configs of the families whose classes are ours, which take the canonical dict as their
  ``rope_scaling`` (every method: their rotary embedding computes its tables with ``modeling_longllada.rope_tables``);
- to a native family's config (transformers' per-layer-type RoPE), through its entry's hooks
  (``Family.hooks``: ``apply_rope_scaling``), which know which layers see the whole context;
- to a transformers causal LM (the LLaMA-3 baseline), where transformers computes the tables itself:
  ``ntk`` (and UltraLLaDA's ``diffusion_ntk``) multiply its RoPE base by λ, as LongLLaDA does for its
  autoregressive baselines (transformers 5: ``rope_parameters["rope_theta"]``; 4.x: ``rope_theta``), with λ from
  the scaling law for ``target_length``; ``linear``, ``dynamic``, ``yarn``, ``longrope`` and ``llama3`` are
  written as transformers' own ``rope_type`` (5.x: ``rope_parameters``; 4.x: ``rope_scaling``), translated by
  ``modeling_longllada.rope_tables_longllada.transformers_rope_parameters``, the translation the diffusion
  models' tables use.
"""

from __future__ import annotations

from typing import Any

from modeling_longllada import parse_rope_scaling
from modeling_longllada.rope_longllada import (
    BASE_SCALING_TYPES,
    base_scaling_factor,
    check_rope_scaling_for_model,
    method_factor,
    spec_label,
    supported_length,
)
from modeling_longllada.rope_tables_longllada import transformers_rope_parameters

__all__ = [
    "apply_rope_scaling",
    "causal_context_window",
    "causal_rope_theta",
    "causal_trained_length",
    "is_ours",
    "rotary_parameters",
    "scaled_context_length",
    "scaling_factor",
]


def is_ours(config: Any) -> bool:
    """A config of this package's diffusion families (it validates ``rope_scaling`` itself)."""
    return callable(getattr(type(config), "rope_factor_for_length", None))


def apply_rope_scaling(config: Any, request: str | dict[str, Any] | None, trained_length: int | None = None) -> dict:
    """Set the requested scaling on ``config`` in place, before the weights load; return what was applied
    (``scaling`` label, ``factor``, ``rope_theta``, ``effective_rope_theta``, ``config_field``) for a run's record.

    ``trained_length``: a causal LM's trained context (default: its ``max_position_embeddings``), which the
    scaling law reads for ``ntk-target``."""
    hooks = _family_hooks(config)
    if hooks is not None:  # a native family's config: its hooks apply and describe it
        return hooks.apply_rope_scaling(config, request)
    if request is None:  # no request: describe what the checkpoint's config carries
        return (
            _describe_ours(config, explicit=False) if is_ours(config) else {"scaling": _causal_config_scaling(config)}
        )
    spec = parse_rope_scaling(request)
    if is_ours(config):
        config.rope_scaling = spec
        return _describe_ours(config, explicit=True)
    return _apply_to_causal_lm(config, spec, trained_length or causal_trained_length(config))


def _family_hooks(config: Any) -> Any:
    """The hooks of the family whose model type ``config`` has (None: ours, or a model of no family)."""
    from modeling_longllada.families import family_of_model_type

    family = family_of_model_type(getattr(config, "model_type", None))
    return None if family is None else family.tool_hooks()


def _describe_ours(config: Any, explicit: bool) -> dict[str, Any]:
    spec = config.rope_scaling
    if spec is None:
        return {"scaling": None, "rope_theta": float(config.rope_theta)}
    record = {
        "scaling": spec_label(spec) if explicit else f"config:{spec_label(spec)}",
        "factor": scaling_factor(config),
        "rope_theta": float(config.rope_theta),
        "effective_rope_theta": config.rope_effective_base,
        "config_field": "rope_scaling",
    }
    if spec["type"] not in BASE_SCALING_TYPES:
        record["rope_type"] = spec["type"]
    return record


def scaling_factor(config: Any) -> float | str:
    """The factor a run records for our config's scaling: ``"per length"`` when the tables follow each pass, λ of
    the base for the base-multiplying methods, the method's own factor for the frequency-rescaling ones (as the
    causal path records transformers' ``factor``)."""
    spec = config.rope_scaling
    if config.rope_per_length:
        return "per length"
    if spec is not None and spec["type"] not in BASE_SCALING_TYPES:
        return method_factor(spec, config.trained_length)
    return config.rope_scaling_factor


def causal_rope_theta(config: Any) -> float | None:
    """RoPE base of a transformers config (5.x: ``rope_parameters``; 4.x: ``rope_theta``), None without RoPE."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict):
        if "rope_theta" in params:
            return float(params["rope_theta"])
        if any(isinstance(v, dict) for v in params.values()):
            raise ValueError(
                f"rope_scaling: config of type {config.model_type!r} has per-layer-type rope_parameters "
                f"({sorted(params)}); only a single RoPE base is supported"
            )
    theta = getattr(config, "rope_theta", None)
    return float(theta) if theta is not None else None


def causal_trained_length(config: Any) -> int:
    for field in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, field, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(
        f"config of type {config.model_type!r} has none of max_position_embeddings, n_positions, n_ctx; "
        "its trained length is unknown"
    )


def causal_context_window(
    config: Any, spec: dict[str, Any] | None, applied: dict[str, Any], trained_length: int
) -> int:
    """The context a causal LM covers under the parsed scaling ``spec`` that :func:`apply_rope_scaling` applied
    (``applied``: its record, which holds the trained base): :func:`scaled_context_length` with the config's rotary
    dimensions."""
    return scaled_context_length(spec, float(applied["rope_theta"]), _rotary_dim(config), trained_length)


def rotary_parameters(config: Any) -> tuple[int, float]:
    """(rotated dimensions per head, trained RoPE base) of any config: our families' or a causal LM's."""
    if is_ours(config):
        return int(config.rotary_dim), float(config.rope_theta)
    theta = causal_rope_theta(config)
    if theta is None:
        raise ValueError(f"config of type {config.model_type!r} has no rope_theta (or rope_parameters)")
    return _rotary_dim(config), theta


def _rotary_dim(config: Any) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    params = getattr(config, "rope_parameters", None)
    partial = (params or {}).get("partial_rotary_factor") if isinstance(params, dict) else None
    partial = partial or getattr(config, "partial_rotary_factor", None) or 1.0
    return int(head_dim * partial)


def _causal_config_scaling(config: Any) -> str | None:
    """A scaling that a causal LM's own config already applies (e.g. LLaMA-3.1's "llama3"), as a label."""
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, dict):
        params = getattr(config, "rope_scaling", None)
    if not isinstance(params, dict):
        return None
    kind = params.get("rope_type", params.get("type"))
    return None if kind in (None, "default") else f"config:{kind}"


def scaled_context_length(spec: dict[str, Any] | None, rope_theta: float, rotary_dim: int, trained_length: int) -> int:
    """The context a causal LM covers under ``spec``: its target length; for a factor of the base the scaling law's
    inverse; for transformers' methods the original (trained) length times the factor (the one rule the diffusion
    configs use too: ``rope_longllada.supported_length``)."""
    return supported_length(spec, rotary_dim, rope_theta, trained_length)


def _apply_to_causal_lm(config: Any, spec: dict[str, Any] | None, trained_length: int) -> dict[str, Any]:
    label = spec_label(spec)
    theta = causal_rope_theta(config)
    if theta is None:
        raise ValueError(
            f"rope_scaling {label!r} needs a RoPE model; config of type {config.model_type!r} has no rope_theta "
            "(or rope_parameters)"
        )
    v5_style = isinstance(getattr(config, "rope_parameters", None), dict)
    if spec is None:  # "none": drop whatever scaling the config carries
        if v5_style:
            config.rope_parameters = {"rope_type": "default", "rope_theta": theta}
        elif getattr(config, "rope_scaling", None) is not None:
            config.rope_scaling = None
        return {"scaling": "none", "factor": 1, "rope_theta": theta, "effective_rope_theta": theta}
    kind = spec["type"]
    if kind == "ntk_per_length":
        raise ValueError(
            "rope_scaling 'ntk-per-length' applies to this package's diffusion models; for a causal LM use "
            "transformers' per-length rule, 'dynamic:FACTOR', or a fixed 'ntk:FACTOR' / 'ntk-target:LENGTH'"
        )
    rotary_dim = _rotary_dim(config)
    check_rope_scaling_for_model(spec, rotary_dim, theta, trained_length)
    if kind in BASE_SCALING_TYPES:
        factor = base_scaling_factor(spec, rotary_dim, theta, trained_length)
        factor = int(factor) if kind == "ntk" and float(factor).is_integer() else factor
        new_theta = theta * factor
        if v5_style:  # LLaMA-3 style θ·λ: only the base changes; an existing rope_type is kept
            config.rope_parameters = {"rope_type": "default", **config.rope_parameters, "rope_theta": new_theta}
            field = "rope_parameters"
        else:
            config.rope_theta = new_theta
            field = "rope_theta"
        return {"scaling": label, "factor": factor, "rope_theta": theta, "effective_rope_theta": new_theta,
                "config_field": field}  # fmt: skip
    parameters, original = transformers_rope_parameters(spec, trained_length, rope_parameters_style=v5_style)
    if v5_style:
        # The method replaces whatever scaling the config had; its base and rotated share stay.
        kept = {k: v for k, v in config.rope_parameters.items() if k in ("rope_theta", "partial_rotary_factor")}
        config.rope_parameters = {**kept, **parameters}
        field = "rope_parameters"
    elif hasattr(config, "rope_scaling"):
        _check_transformers_4(config, spec, parameters, original, label)
        config.rope_scaling = parameters
        field = "rope_scaling"
    else:
        raise ValueError(
            f"rope_scaling {label!r}: config of type {config.model_type!r} has no rope_scaling field; "
            "allowed for this model: ntk:FACTOR, ntk-target:LENGTH, diffusion-ntk:LENGTH"
        )
    if kind == "dynamic":
        return {"scaling": label, "factor": "per length", "dynamic_factor": spec["factor"], "rope_theta": theta,
                "effective_rope_theta": "per length", "config_field": field}  # fmt: skip
    return {"scaling": label, "factor": parameters["factor"], "rope_theta": theta,
            "effective_rope_theta": "per frequency", "rope_type": kind, "config_field": field}  # fmt: skip


def _check_transformers_4(config: Any, spec: dict[str, Any], parameters: dict, original: int, label: str) -> None:
    """What transformers 4.x cannot say: its YaRN and LongRoPE read the original length from the config's
    ``max_position_embeddings``, and its LLaMA-family LongRoPE applies ``long_factor`` at every length."""
    if spec["type"] in ("yarn", "longrope") and original != config.max_position_embeddings:
        raise ValueError(
            f"rope_scaling {label!r}: original_max_position_embeddings={original} differs from the model's "
            f"max_position_embeddings={config.max_position_embeddings}, which transformers 4.x reads as the original "
            f"length; allowed here: {config.max_position_embeddings} (or transformers 5)"
        )
    if spec["type"] == "longrope" and parameters["short_factor"] != parameters["long_factor"]:
        raise ValueError(
            f"rope_scaling {label!r}: transformers 4.x applies long_factor at every length of a causal LM; allowed "
            "here: long_factor alone (or transformers 5, which uses short_factor within the original length)"
        )
