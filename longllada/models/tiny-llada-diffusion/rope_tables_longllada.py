"""Rotary tables of a RoPE scaling spec: the inverse frequencies and the attention factor, for every method.

:func:`rope_tables` is what a model's rotary embedding calls. Where transformers computes a method (``linear``,
``dynamic``, ``yarn``, ``longrope``, ``llama3``: its ``ROPE_INIT_FUNCTIONS``, in 4.46 as in 5.x), this module
only says the spec in the installed version's config shape (4.x: ``rope_scaling`` beside ``rope_theta``; 5.x:
``rope_parameters``) on a small throwaway config and calls it. The methods that multiply the base (the LongLLaDA
paper's ``ntk`` and ``ntk_per_length``, UltraLLaDA's ``diffusion_ntk``) use the plain RoPE formula with the base
θ·λ. :func:`transformers_rope_parameters` is the same translation for a real transformers config (causal LMs).

Copied flat into Hub model repos: imports only the standard library, torch, transformers and the files beside it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from transformers import PretrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from .rope_longllada import (
    BASE_SCALING_TYPES,
    base_scaling_factor,
    check_number,
    check_rope_scaling_for_model,
    check_scaled_base,
    parse_rope_scaling,
)

__all__ = ["ROPE_PARAMETERS_STYLE", "RopeTables", "rope_tables", "transformers_rope_parameters"]

# transformers 5 keeps a model's RoPE settings, base included, in `rope_parameters`; 4.x in `rope_scaling` with
# `rope_theta` beside it.
ROPE_PARAMETERS_STYLE = hasattr(PretrainedConfig, "standardize_rope_params")


class RopeTables(NamedTuple):
    """What a rotary embedding needs for one pass.

    inv_freq: [rotary_dim // 2] float32, the angle of position p for frequency i being p · inv_freq[i].
    attention_factor: multiplies cos and sin (transformers' ``attention_scaling``): 1.0 except for YaRN and LongRoPE.
    """

    inv_freq: torch.Tensor
    attention_factor: float


def rope_tables(
    rope_scaling: str | dict[str, Any] | None,
    rotary_dim: int,
    rope_theta: float,
    trained_length: int,
    seq_len: int | None = None,
    device: torch.device | str | None = None,
) -> RopeTables:
    """The rotary tables of ``rope_scaling`` for a model's rotated dimensions.

    Args:
        rope_scaling: any form of :func:`rope_longllada.parse_rope_scaling` (None: no scaling).
        rotary_dim: the rotated dimensions per head (head_dim × partial_rotary_factor), even. The frequencies are
            θ^(-2i / rotary_dim) for i in [0, rotary_dim / 2), before scaling.
        rope_theta: the trained RoPE base θ (> 1).
        trained_length: the context the checkpoint was trained at: the scaling law's and the defaults' reference
            (YaRN's, LongRoPE's and llama3's ``original_max_position_embeddings``, dynamic NTK's length).
        seq_len: the number of positions the forward pass spans (its largest position id + 1). Read only by the
            per-length methods (:func:`rope_longllada.rope_scaling_per_length`: ``ntk_per_length``, ``dynamic``,
            ``longrope`` with a ``short_factor``); None reads as a pass within the trained length.
        device: where ``inv_freq`` is made.

    Returns:
        :class:`RopeTables`: ``inv_freq`` [rotary_dim // 2] float32 on ``device`` and the ``attention_factor``
        (a float). cos/sin of position p are cos(p · inv_freq) · attention_factor and sin(...) · attention_factor,
        each half of the split-halves angle table (concat(angles, angles)) as in LLaMA.

    Raises:
        ValueError naming the field: a bad spec, a factor table that is not rotary_dim / 2 long, a target below the
        trained length, a scaled base above ``MAX_ROPE_BASE``.
    """
    spec = parse_rope_scaling(rope_scaling)
    check_rope_scaling_for_model(spec, rotary_dim, rope_theta, trained_length)
    check_number("rotary_dim", rotary_dim, minimum=2, integer=True)
    check_number("rope_theta", rope_theta, minimum=1, inclusive=False)
    check_number("seq_len", seq_len, minimum=1, integer=True, optional=True)
    kind = None if spec is None else spec["type"]
    if kind is None or kind in BASE_SCALING_TYPES:
        factor = base_scaling_factor(spec, rotary_dim, rope_theta, trained_length, seq_len)
        base = check_scaled_base("rope_scaling", rope_theta, factor)
        exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float32, device=device) / rotary_dim
        return RopeTables(1.0 / (base**exponents), 1.0)
    parameters, original = transformers_rope_parameters(spec, trained_length)
    if kind == "longrope":
        # The table of this pass, chosen here: transformers 4.x picks it from the config alone, 5.x from seq_len.
        table = parameters["long_factor"] if seq_len is not None and seq_len > original else parameters["short_factor"]
        parameters = {**parameters, "long_factor": table, "short_factor": table}
    config = _rope_config(parameters, rotary_dim, rope_theta, original)
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[kind](config, device, seq_len=seq_len)
    return RopeTables(inv_freq.to(device=device, dtype=torch.float32), float(attention_factor))


def transformers_rope_parameters(
    spec: dict[str, Any], trained_length: int, rope_parameters_style: bool = ROPE_PARAMETERS_STYLE
) -> tuple[dict[str, Any], int]:
    """A canonical spec of one of transformers' methods as transformers names it (``rope_type`` and its keys, our
    defaults filled in), and the original length it reads. For the 4.x shape (``rope_parameters_style`` False) the
    original length of ``yarn`` / ``longrope`` / ``dynamic`` is not in the dict: 4.x reads it from the config's
    ``max_position_embeddings``, which must then be that length."""
    kind = spec["type"]
    original = int(spec.get("original_max_position_embeddings", trained_length))
    parameters: dict[str, Any] = {"rope_type": kind}
    if kind in ("linear", "dynamic"):
        parameters["factor"] = float(spec["factor"])
    elif kind == "llama3":
        parameters.update(
            factor=float(spec["factor"]),
            low_freq_factor=float(spec.get("low_freq_factor", 1.0)),
            high_freq_factor=float(spec.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=original,
        )
    elif kind == "yarn":
        factor = float(spec["factor"])
        parameters.update(
            factor=factor, beta_fast=float(spec.get("beta_fast", 32)), beta_slow=float(spec.get("beta_slow", 1))
        )
        if "attention_factor" in spec:
            parameters["attention_factor"] = float(spec["attention_factor"])
        elif "mscale" in spec and rope_parameters_style:
            parameters.update(mscale=float(spec["mscale"]), mscale_all_dim=float(spec["mscale_all_dim"]))
        elif "mscale" in spec:  # 4.x has no mscale: the ratio transformers 5 takes (DeepSeek-V2's rule)
            parameters["attention_factor"] = _yarn_mscale(factor, spec["mscale"]) / _yarn_mscale(
                factor, spec["mscale_all_dim"]
            )
        if rope_parameters_style:
            parameters["original_max_position_embeddings"] = original
    elif kind == "longrope":
        factor = float(spec["factor"]) if "factor" in spec else spec["target_length"] / original
        parameters.update(
            long_factor=list(spec["long_factor"]),
            short_factor=list(spec.get("short_factor", spec["long_factor"])),
            factor=factor,
        )
        if "attention_factor" in spec:
            parameters["attention_factor"] = float(spec["attention_factor"])
        elif spec.get("magnitude_scaling") == "yarn":  # not one of transformers' rules: YaRN's temperature
            parameters["attention_factor"] = _yarn_mscale(factor)
        if rope_parameters_style:
            parameters["original_max_position_embeddings"] = original
    else:
        raise ValueError(f"rope_scaling.type={kind!r} is not one of transformers' methods; allowed: {_TRANSFORMERS}")
    return parameters, original


_TRANSFORMERS = ["linear", "dynamic", "yarn", "longrope", "llama3"]


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature (Peng et al. 2023, eq. 21): 0.1 · mscale · ln(scale) + 1, 1 for scale <= 1."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _rope_config(parameters: dict[str, Any], rotary_dim: int, rope_theta: float, original: int) -> PretrainedConfig:
    """A throwaway config that says one rotary table in the installed transformers' shape: a single head of
    ``rotary_dim`` dimensions, all rotated, trained at ``original`` positions."""
    config = PretrainedConfig()
    config.head_dim = config.hidden_size = rotary_dim
    config.num_attention_heads = 1
    config.max_position_embeddings = original
    if ROPE_PARAMETERS_STYLE:
        config.rope_parameters = {"rope_theta": float(rope_theta), **parameters}
    else:
        config.rope_theta = float(rope_theta)
        config.rope_scaling = dict(parameters)
    return config
