"""RoPE scaling for every model family: the extrapolation scaling law and the one ``rope_scaling`` parser.

Every front-end (model configs, the ``longllada`` CLIs, lm-eval ``--model_args``, ``longllada upload``) reads
``rope_scaling`` through :func:`parse_rope_scaling`, so the same forms are accepted everywhere:

=================================================  ==============================  =========================
canonical dict (``type`` key)                      CLI / model_args string         meaning
=================================================  ==============================  =========================
``None``                                           ``none``                        trained RoPE base
``{"type": "ntk", "factor": 4}``                   ``ntk:4``                       base θ·4 (LongLLaDA)
``{"type": "ntk", "target_length": T}``            ``ntk-target:16384`` (``16k``)  λ from the scaling law
``{"type": "ntk_per_length"}``                     ``ntk-per-length[:T]``          λ(L) per forward length
``{"type": "diffusion_ntk", "target_length": T}``  ``diffusion-ntk:131072``        UltraLLaDA's NTK
``{"type": "linear", "factor": 4}``                ``linear:4``                    position interpolation
``{"type": "dynamic", "factor": 2}``               ``dynamic:2``                   transformers' dynamic NTK
``{"type": "yarn", "factor": 4}``                  ``yarn:4``                      YaRN
``{"type": "longrope", "long_factor": [...]}``     ``longrope:FILE.json[:T]``      LongRoPE
                                                   ``longrope:MODEL[:T]``
``{"type": "llama3", "factor": 8}``                ``llama3:8``                    LLaMA-3.1's rule
=================================================  ==============================  =========================

A string may also be a JSON object (``'{"type": "yarn", "factor": 4, "beta_fast": 16}'``), which reaches every key.
The keys of each type are :data:`ROPE_SCALING_TYPE_KEYS`; transformers' own names are used where it has the method:

- ``linear`` (Chen et al. 2023, position interpolation): ``factor`` divides every frequency.
- ``dynamic``: transformers' dynamic NTK (Code LLaMA style), ``factor``; the base grows with the pass length.
- ``yarn`` (Peng et al. 2023): ``factor``; ``original_max_position_embeddings`` (default: the trained length),
  ``beta_fast`` (32) and ``beta_slow`` (1) bound the ramp between interpolated and kept frequencies; the attention
  temperature is ``attention_factor``, or from ``mscale`` and ``mscale_all_dim`` (given together), or 0.1·ln(s) + 1.
- ``longrope`` (Ding et al. 2024): ``long_factor``, one rescale factor per rotary frequency (rotary dim / 2 of
  them); ``short_factor`` (default: ``long_factor``) is used for passes within ``original_max_position_embeddings``
  (default: the trained length), ``long_factor`` past it. ``factor`` (or ``target_length``, factor = target /
  original) sets the magnitude scaling: ``attention_factor``, or ``magnitude_scaling`` ``"su"`` (default,
  sqrt(1 + ln s / ln original)) or ``"yarn"`` (0.1·ln s + 1). ``longrope:FILE.json`` reads a JSON list of factors or
  an object of these keys; ``longrope:MODEL`` takes a published table (:data:`LONGROPE_FACTOR_TABLES`: LongDLLM's for
  ``GSAI-ML/LLaDA-8B-Instruct`` and ``apple/DiffuCoder-7B-Instruct``); ``:T`` sets the target length.
- ``llama3`` (LLaMA 3.1): ``factor``, ``low_freq_factor`` (1), ``high_freq_factor`` (4),
  ``original_max_position_embeddings`` (default: the trained length).
- ``diffusion_ntk``: UltraLLaDA's diffusion-aware NTK (He et al. 2025, arXiv 2510.10481, §3). A bidirectional model
  sees relative positions in both directions, so it learned a range of about 2·T_train and must cover 2·T_target:
  the scaling law is read with both lengths doubled, λ' = θ⁻¹·(2·T_target / 2π)^(d / d'_crit) with
  d'_crit = 2·⌈(d/2)·log_θ(2·T_train / 2π)⌉, and the base becomes θ·λ' (not rounded). The definition is the
  paper's as its public summaries give it (T_cap ≈ 2·T_train, T_Ecap ≈ 2·T_target; the paper's own section was
  not readable here); "about 2·T" is taken as exactly 2·T.

``dynamic`` is transformers' ``rope_type`` of that name (dynamic NTK); our per-length scaling-law rule has its own
name, ``ntk_per_length``. The old spelling ``{"type": "dynamic"}`` without a factor meant ``ntk_per_length`` and
still does, with a deprecation warning.

``rope_theta`` and ``partial_rotary_factor`` are refused inside ``rope_scaling``: they are the model's own fields,
not a scaling (transformers 5's ``rope_parameters``, which holds them, is read by the configs: see
:meth:`RopeScalingMixin._rope_scaling_from_parameters`). Every factor is at most :data:`MAX_ROPE_FACTOR` and every
scaled base at most :data:`MAX_ROPE_BASE`, so that the float32 rotary tables stay finite.

Copied flat into Hub model repos: imports only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

ROPE_SCALING_TYPES = ("ntk", "ntk_per_length", "diffusion_ntk", "linear", "dynamic", "yarn", "longrope", "llama3")
# The keys each type takes besides `type` / `rope_type`.
ROPE_SCALING_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "ntk": ("factor", "target_length"),
    "ntk_per_length": ("target_length",),
    "diffusion_ntk": ("target_length",),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "yarn": (
        "factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor", "mscale",
        "mscale_all_dim",
    ),
    "longrope": (
        "long_factor", "short_factor", "factor", "target_length", "original_max_position_embeddings",
        "attention_factor", "magnitude_scaling", "factors_source",
    ),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}  # fmt: skip
ROPE_SCALING_KEYS = ("type", "rope_type", *sorted({key for keys in ROPE_SCALING_TYPE_KEYS.values() for key in keys}))
ROPE_SCALING_STRINGS = (
    "none", "ntk:FACTOR", "ntk-target:LENGTH", "ntk-per-length[:LENGTH]", "diffusion-ntk:LENGTH", "dynamic:FACTOR",
    "linear:FACTOR", "yarn:FACTOR", "llama3:FACTOR", "longrope:FILE.json[:LENGTH]", "longrope:MODEL[:LENGTH]",
    "a JSON object",
)  # fmt: skip
# Types that multiply the RoPE base (our own formula); the others are transformers' ROPE_INIT_FUNCTIONS.
BASE_SCALING_TYPES = ("ntk", "ntk_per_length", "diffusion_ntk")
LONGROPE_MAGNITUDE_SCALINGS = ("su", "yarn")

# Every scaling factor (λ, s, a per-frequency factor) is at most this: λ = 1e12 already stretches LLaDA-8B's base
# to cover about 4e9 tokens by the scaling law, far past any context a model runs.
MAX_ROPE_FACTOR = 1e12
# The largest scaled base θ·λ: the rotary tables are float32 (at most 3.4e38), and the law never asks more than
# about 1e23 for a context of 2^31 tokens from a model with a 16-dimension head.
MAX_ROPE_BASE = 1e30
# The longest length a spec may name (target, original length): 2^32 tokens.
MAX_ROPE_LENGTH = 2**32
# An attention factor multiplies both cos and sin, so it scales the attention logits by its square.
MAX_ATTENTION_FACTOR = 10.0
# Upper bounds of the other numbers the models and tools take, where nothing tighter holds (a larger value is a
# typo, never a run): a count of tokens, steps, samples or batch rows, as long as the longest length above;
MAX_COUNT = MAX_ROPE_LENGTH
# a seed, within numpy's and lm-eval's range;
MAX_SEED = 2**32 - 1
# a temperature, guidance scale or entropy budget (at a temperature of 100 a draw is already near uniform, and
# logits times 1e6 stay finite in float32 and bf16).
MAX_SCALE = 1e6


# -- the extrapolation scaling law (Liu et al. 2023, "Scaling Laws of RoPE-based Extrapolation") -----------------


def critical_dimension(head_dim: int, rope_theta: float, train_length: int) -> int:
    """Critical dimension of RoPE extrapolation (Liu et al. 2023, "Scaling Laws of RoPE-based Extrapolation"):
    the number of rotary dimensions whose period fits in the trained length,
    ``2 * ceil(head_dim / 2 * log_theta(train_length / 2π))``. ``head_dim`` is the rotated part of a head (all
    of it, or ``head_dim * partial_rotary_factor``)."""
    check_number("head_dim", head_dim, minimum=1, integer=True)
    check_number("train_length", train_length, minimum=1, integer=True)
    check_number("rope_theta", rope_theta, minimum=1, inclusive=False)
    return 2 * math.ceil(head_dim / 2 * math.log(train_length / (2 * math.pi), rope_theta))


def _law_factor(
    head_dim: int, rope_theta: float, train_length: int, target_length: int, field: str, doubled: bool = False
) -> float:
    """θ'/θ with θ' = (target / 2π)^(d / d_extra), unrounded and at least 1; refused above MAX_ROPE_FACTOR.
    ``doubled``: the lengths are twice the user's (the diffusion-aware law), which the error states."""
    check_number(field, target_length, minimum=1, integer=True)
    d_extra = critical_dimension(head_dim, rope_theta, train_length)
    if target_length <= train_length or d_extra <= 0:
        return 1.0
    exponent = head_dim / d_extra
    log_factor = exponent * math.log(target_length / (2 * math.pi)) - math.log(rope_theta)
    if log_factor > math.log(MAX_ROPE_FACTOR):
        raise ValueError(
            f"{field}={target_length // 2 if doubled else target_length!r}: the scaling law gives a factor of "
            f"{math.exp(min(log_factor, 700.0)):.3g} (head dim {head_dim}, base {rope_theta:g}, trained length "
            f"{train_length // 2 if doubled else train_length}{', both lengths doubled' if doubled else ''}); allowed: "
            f"a length whose factor is at most {MAX_ROPE_FACTOR:g}"
        )
    return max(1.0, (target_length / (2 * math.pi)) ** exponent / rope_theta)


def ntk_scaling_factor(
    head_dim: int, rope_theta: float, train_length: int, target_length: int, field: str = "target_length"
) -> int:
    """Integer NTK factor λ so that the base ``rope_theta * λ`` covers ``target_length``.

    New base θ' = (target_length / 2π) ** (head_dim / critical_dimension); λ = ceil(θ' / θ), at least 1, as the
    LongLLaDA paper rounds it. LLaDA-8B (128, 500000, 4096) -> 8192 gives 4; Dream-v0 (128, 1e6, 2048) -> 4096
    gives 5. A λ above :data:`MAX_ROPE_FACTOR` is refused (``field`` names the length in the error).
    """
    # Tolerate float noise at exact integers before rounding up.
    return max(1, math.ceil(_law_factor(head_dim, rope_theta, train_length, target_length, field) - 1e-9))


def diffusion_ntk_factor(
    head_dim: int, rope_theta: float, train_length: int, target_length: int, field: str = "target_length"
) -> float:
    """UltraLLaDA's diffusion-aware NTK factor λ' (He et al. 2025, arXiv 2510.10481): the scaling law read with the
    relative-position ranges of bidirectional attention, 2·train_length learned and 2·target_length wanted; not
    rounded. LLaDA-8B (128, 500000, 4096) -> 131072 gives λ' ≈ 562 (LongLLaDA's rule: 871)."""
    check_number(field, target_length, minimum=1, integer=True)
    check_number("train_length", train_length, minimum=1, integer=True)
    return _law_factor(head_dim, rope_theta, 2 * train_length, 2 * target_length, field, doubled=True)


def longrope_law_factors(rotary_dim: int, rope_theta: float, train_length: int, target_length: int) -> list[float]:
    """LongRoPE rescale factors (one per rotary frequency, dividing it) taken from the extrapolation scaling law
    rather than searched: below the critical dimension (frequencies whose period fits in the trained length), NTK's
    own per-frequency factors λ^(2i/d), λ = :func:`ntk_scaling_factor` for ``target_length``; from the critical
    dimension on, at least the interpolation factor s = target / trained, so that no frequency's angle over the
    target exceeds what it reached in training (LongRoPE's non-uniform rescaling, Ding et al. 2024, with the
    law's λ in place of its evolutionary search). Non-decreasing, as LongRoPE requires; the first factor is 1."""
    check_number("target_length", target_length, minimum=train_length, maximum=MAX_ROPE_LENGTH, integer=True)
    factor = ntk_scaling_factor(rotary_dim, rope_theta, train_length, target_length)
    d_crit = critical_dimension(rotary_dim, rope_theta, train_length)
    interpolation = target_length / train_length
    factors = []
    for i in range(rotary_dim // 2):
        ntk = float(factor) ** (2 * i / rotary_dim)
        factors.append(ntk if 2 * i < d_crit else max(interpolation, ntk))
    return factors


def ntk_supported_length(head_dim: int, rope_theta: float, train_length: int, factor: float) -> int:
    """Inverse of the scaling law: the longest length that the base ``rope_theta * factor`` covers."""
    check_number("factor", factor, minimum=1, maximum=MAX_ROPE_FACTOR)
    d_extra = critical_dimension(head_dim, rope_theta, train_length)
    if factor <= 1 or d_extra <= 0:
        return train_length
    return max(train_length, int(2 * math.pi * (rope_theta * factor) ** (d_extra / head_dim)))


def check_scaled_base(field: str, rope_theta: float, factor: float) -> float:
    """Return the scaled base ``rope_theta * factor``, refused above :data:`MAX_ROPE_BASE` (float32 tables)."""
    base = float(rope_theta) * float(factor)
    if not base <= MAX_ROPE_BASE:
        raise ValueError(
            f"{field}: the scaled RoPE base {rope_theta:g} x {factor:g} = {base:.3g} is above the limit "
            f"{MAX_ROPE_BASE:g} (the rotary tables are float32); allowed: a factor up to "
            f"{MAX_ROPE_BASE / rope_theta:.3g} for this base"
        )
    return base


def base_scaling_factor(
    spec: dict[str, Any] | None, rotary_dim: int, rope_theta: float, trained_length: int, seq_len: int | None = None
) -> float:
    """The factor λ that multiplies the RoPE base for a forward pass spanning ``seq_len`` positions: ``ntk``'s
    factor (or the law's for its target), ``ntk_per_length``'s λ(seq_len) (1 when ``seq_len`` is None or within
    the trained length), ``diffusion_ntk``'s λ'; 1 for no scaling and for the frequency-rescaling methods."""
    kind = None if spec is None else spec["type"]
    if kind == "ntk":
        if spec.get("factor") is not None:
            return float(spec["factor"])
        field = "rope_scaling.target_length"
        return float(ntk_scaling_factor(rotary_dim, rope_theta, trained_length, spec["target_length"], field))
    if kind == "ntk_per_length":
        length = max(int(seq_len or 0), 1)
        factor = ntk_scaling_factor(
            rotary_dim, rope_theta, trained_length, length, "rope_scaling ntk_per_length at length"
        )
        check_scaled_base("rope_scaling ntk_per_length", rope_theta, factor)
        return float(factor)
    if kind == "diffusion_ntk":
        field = "rope_scaling.target_length"
        return diffusion_ntk_factor(rotary_dim, rope_theta, trained_length, spec["target_length"], field)
    return 1.0


def method_factor(spec: dict[str, Any], trained_length: int) -> float:
    """The extension factor s that a frequency-rescaling method names (``linear``, ``dynamic``, ``yarn``,
    ``llama3``: its ``factor``; ``longrope``: its ``factor`` or target / original length)."""
    if spec["type"] == "longrope" and spec.get("factor") is None:
        return spec["target_length"] / spec.get("original_max_position_embeddings", trained_length)
    return float(spec["factor"])


def supported_length(spec: dict[str, Any] | None, rotary_dim: int, rope_theta: float, trained_length: int) -> int:
    """The context a model trained at ``trained_length`` covers under ``spec``: the trained length without
    scaling (and for ``ntk_per_length`` without a target, whose factor follows the pass); the target length when
    the spec names one; for a factor of the base the scaling law's inverse (:func:`ntk_supported_length`); for
    the frequency-rescaling methods the original length times their factor (:func:`method_factor`), as
    transformers reads them."""
    if spec is None:
        return trained_length
    if spec.get("target_length") is not None:
        return int(spec["target_length"])
    kind = spec["type"]
    if kind == "ntk_per_length":
        return trained_length
    if kind in BASE_SCALING_TYPES:
        factor = base_scaling_factor(spec, rotary_dim, rope_theta, trained_length)
        return ntk_supported_length(rotary_dim, rope_theta, trained_length, factor)
    original = int(spec.get("original_max_position_embeddings", trained_length))
    return max(trained_length, int(original * method_factor(spec, trained_length)))


def rope_scaling_per_length(spec: dict[str, Any] | None) -> bool:
    """True when the rotary tables of ``spec`` follow each forward pass's length: ``ntk_per_length``, ``dynamic``,
    and ``longrope`` with a ``short_factor`` of its own."""
    kind = None if spec is None else spec["type"]
    return kind in ("ntk_per_length", "dynamic") or (kind == "longrope" and "short_factor" in spec)


def check_rope_scaling_for_model(
    spec: dict[str, Any] | None, rotary_dim: int, rope_theta: float, trained_length: int, field: str = "rope_scaling"
) -> None:
    """Checks of a canonical spec that need the model: a factor table of rotary_dim / 2 numbers, a target at or
    above the trained (or original) length, a scaled base within :data:`MAX_ROPE_BASE`. ValueError naming the
    field otherwise."""
    if spec is None:
        return
    check_number("rotary_dim", rotary_dim, minimum=2, integer=True)
    if rotary_dim % 2:
        raise ValueError(f"rotary_dim={rotary_dim!r} is not allowed; allowed: an even number (pairs rotate)")
    check_number("rope_theta", rope_theta, minimum=1, inclusive=False)
    check_number("trained_length", trained_length, minimum=1, integer=True)
    kind, target = spec["type"], spec.get("target_length")
    if kind == "dynamic" and rotary_dim <= 2:
        raise ValueError(f"{field} of type 'dynamic' needs a rotary dim above 2 (its base exponent is d / (d - 2))")
    if kind in BASE_SCALING_TYPES and target is not None and target < trained_length:
        raise ValueError(
            f"{field}.target_length={target!r} is below the trained length {trained_length}; "
            f"allowed: a length >= {trained_length} (no scaling is needed below it)"
        )
    if kind in ("ntk", "diffusion_ntk"):
        factor = base_scaling_factor(spec, rotary_dim, rope_theta, trained_length)
        check_scaled_base(field, rope_theta, factor)
    if kind == "ntk_per_length" and target is not None:
        # the window a per-length rule reaches: its largest factor
        factor = ntk_scaling_factor(rotary_dim, rope_theta, trained_length, target, f"{field}.target_length")
        check_scaled_base(field, rope_theta, factor)
    if kind == "longrope":
        for key in ("long_factor", "short_factor"):
            if key in spec and len(spec[key]) != rotary_dim // 2:
                raise ValueError(
                    f"{field}.{key} has {len(spec[key])} numbers; allowed: {rotary_dim // 2}, one per rotary "
                    f"frequency (rotary dim {rotary_dim} / 2)"
                )
        original = spec.get("original_max_position_embeddings", trained_length)
        if target is not None and target < original:
            raise ValueError(
                f"{field}.target_length={target!r} is below the original length {original}; allowed: a length "
                f">= {original}"
            )


# -- numbers and lengths ---------------------------------------------------------------------------------------


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and abs(value) >= 1e6 else str(value)


def check_number(
    field: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    inclusive: bool = True,
    optional: bool = False,
) -> int | float | None:
    """Return ``value`` if it is a finite number (an int when ``integer``) in range, or None when ``optional``;
    else ValueError naming the field, the value and what is allowed. bool is refused (``True`` is not a count)."""
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>=' if inclusive else '>'} {_bound(minimum)}")
    if maximum is not None:
        bounds.append(f"<= {_bound(maximum)}")
    allowed = kind + (" " + " and ".join(bounds) if bounds else "") + (" or None" if optional else "")
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok and not integer:
        ok = math.isfinite(value)
    if ok and minimum is not None:
        ok = value >= minimum if inclusive else value > minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        raise ValueError(f"{field}={value!r} is not allowed; allowed: {allowed}")
    return value


def parse_length(text: str, field: str) -> int:
    """``16384``, ``16k`` or ``16K`` (×1024) -> a positive number of tokens (at most :data:`MAX_ROPE_LENGTH`)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", text)
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(f"{field}={text!r} is not allowed; allowed: a positive integer such as 16384 or 16k")
    length = int(match.group(1)) * (1024 if match.group(2) else 1)
    return check_number(field, length, minimum=1, maximum=MAX_ROPE_LENGTH, integer=True)


def _factor(field: str, value: Any) -> int | float:
    return check_number(field, value, minimum=1, maximum=MAX_ROPE_FACTOR)


def _length(field: str, value: Any) -> int:
    return check_number(field, value, minimum=1, maximum=MAX_ROPE_LENGTH, integer=True)


def _positive(field: str, value: Any, maximum: float | None = None) -> int | float:
    return check_number(field, value, minimum=0, maximum=maximum, inclusive=False)


def _factor_table(field: str, value: Any) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            f"{field}={value!r} is not allowed; allowed: a non-empty list of numbers, one per rotary frequency"
        )
    return [float(_positive(f"{field}[{i}]", x, MAX_ROPE_FACTOR)) for i, x in enumerate(value)]


# -- the parser ------------------------------------------------------------------------------------------------


def _parse_string(text: str, field: str) -> dict[str, Any] | None:
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{field}={text!r} is not valid JSON ({err.msg}); allowed: a JSON object") from None
        if not isinstance(value, dict):
            raise ValueError(f"{field}={text!r} is not allowed; allowed: a JSON object")
        return value
    kind, sep, value = text.strip().partition(":")
    kind = kind.strip().lower().replace("_", "-")
    if kind in ("none", "") and not sep:
        return None
    if kind == "ntk" and value:
        return {"type": "ntk", "factor": _parse_factor(value, f"{field} ntk:FACTOR")}
    if kind == "ntk-target" and value:
        return {"type": "ntk", "target_length": parse_length(value, f"{field} ntk-target:LENGTH")}
    if kind == "ntk-per-length":
        if not value:
            return {"type": "ntk_per_length"}
        return {"type": "ntk_per_length", "target_length": parse_length(value, f"{field} ntk-per-length:LENGTH")}
    if kind == "diffusion-ntk" and value:
        return {"type": "diffusion_ntk", "target_length": parse_length(value, f"{field} diffusion-ntk:LENGTH")}
    if kind == "dynamic":
        if not value:
            return {"type": "dynamic"}  # the old spelling; parse_rope_scaling warns and renames it
        return {"type": "dynamic", "factor": _parse_factor(value, f"{field} dynamic:FACTOR")}
    if kind in ("linear", "yarn", "llama3") and value:
        return {"type": kind, "factor": _parse_factor(value, f"{field} {kind}:FACTOR")}
    if kind == "longrope" and value:
        return _parse_longrope_source(value.strip(), field)
    raise ValueError(f"{field}={text!r} is not allowed; allowed: {', '.join(ROPE_SCALING_STRINGS)}")


def _parse_factor(text: str, field: str) -> int | float:
    try:
        factor = float(text)
    except ValueError:
        factor = math.nan
    _factor(field, factor)
    return int(factor) if factor.is_integer() else factor


def _published_table(name: str) -> tuple[str, dict[str, Any]] | None:
    for key, table in LONGROPE_FACTOR_TABLES.items():
        if key.lower() == name.lower():
            return key, table
    return None


def _parse_longrope_source(text: str, field: str) -> dict[str, Any]:
    """``longrope:SOURCE[:LENGTH]``: a published table (by Hub model id) or a JSON file, and a target length."""
    source, target = text, None
    head, sep, tail = text.rpartition(":")
    if sep and re.fullmatch(r"\s*\d+\s*[kK]?\s*", tail):
        source, target = head.strip(), parse_length(tail, f"{field} longrope:SOURCE:LENGTH")
    published = _published_table(source)
    if published is not None:
        name, table = published
        spec: dict[str, Any] = {
            "type": "longrope",
            "long_factor": list(table["long_factor"]),
            "original_max_position_embeddings": table["original_max_position_embeddings"],
            "target_length": table["target_length"],
            "factors_source": name,
        }
    elif source.lower().endswith(".json"):
        spec = {"type": "longrope", **_read_factor_file(Path(source).expanduser(), field)}
    else:
        raise ValueError(
            f"{field} longrope:SOURCE={source!r} is not allowed; allowed: a JSON file (*.json) or a published table "
            f"{sorted(LONGROPE_FACTOR_TABLES)}"
        )
    if target is not None:
        spec.pop("factor", None)
        spec["target_length"] = target
    return spec


def _read_factor_file(path: Path, field: str) -> dict[str, Any]:
    """A JSON list of factors (``long_factor``) or an object of ``longrope`` keys."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{field} longrope:{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{field} longrope:{path}: not a readable JSON file ({err})") from None
    if isinstance(data, list):
        return {"long_factor": data}
    if isinstance(data, dict):
        kind = data.get("type", data.get("rope_type", "longrope"))
        if kind != "longrope":
            raise ValueError(f"{field} longrope:{path}: the file names type {kind!r}; allowed: 'longrope' or none")
        return {k: v for k, v in data.items() if k not in ("type", "rope_type")}
    raise ValueError(f"{field} longrope:{path}: allowed: a JSON list of factors or an object of longrope keys")


def parse_rope_scaling(value: str | dict[str, Any] | None, field: str = "rope_scaling") -> dict[str, Any] | None:
    """Validate a ``rope_scaling`` given as a dict (``type`` or ``rope_type``) or a CLI string; return the
    canonical dict (``type`` key first; see the module docstring) or None for no scaling.

    Unknown keys (per type), unknown types, non-finite or out-of-range numbers, factors above
    :data:`MAX_ROPE_FACTOR`, ``rope_theta`` / ``partial_rotary_factor`` inside the dict are errors that name the
    field. A dict with ``rope_type: "default"`` and nothing else means no scaling. Checks that need the model
    (a factor table's length, the scaled base) are :func:`check_rope_scaling_for_model`'s.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_string(value, field)
        if value is None:
            return None
    if not isinstance(value, dict):
        raise ValueError(
            f"{field}={value!r} is not allowed; allowed: None, a dict with keys {ROPE_SCALING_KEYS}, "
            f"or a string {ROPE_SCALING_STRINGS}"
        )
    for own, hint in (("rope_theta", "; to scale the base use e.g. ntk:FACTOR"), ("partial_rotary_factor", "")):
        if own in value:
            raise ValueError(
                f"{field}.{own}={value[own]!r} is not allowed: it is the model's own `{own}` (set it on the config), "
                f"not a scaling{hint}"
            )
    kind, alias = value.get("type"), value.get("rope_type")
    if kind is not None and alias is not None and kind != alias:
        raise ValueError(f"{field} has type={kind!r} and rope_type={alias!r}; give one of them")
    kind = kind if kind is not None else alias
    keys = set(value) - {"type", "rope_type"}
    unknown = sorted(keys - set(ROPE_SCALING_KEYS))
    if unknown:
        raise ValueError(f"{field} has unknown keys {unknown}; known keys: {list(ROPE_SCALING_KEYS)}")
    if kind in (None, "default") and not keys:
        return None
    if kind == "dynamic" and value.get("factor") is None:
        warnings.warn(
            f"{field}={{'type': 'dynamic'}} is deprecated: it now reads as the per-length scaling-law rule, "
            "{'type': 'ntk_per_length'}; 'dynamic' with a factor is transformers' dynamic NTK",
            FutureWarning,
            stacklevel=2,
        )
        kind = "ntk_per_length"
        keys.discard("factor")
    if not isinstance(kind, str) or kind not in ROPE_SCALING_TYPES:
        raise ValueError(f"{field}.type={kind!r} is not allowed; allowed: {list(ROPE_SCALING_TYPES)}")
    if kind == "ntk_per_length" and value.get("factor") is not None:
        raise ValueError(
            f"{field}.factor={value['factor']!r} is not used with type 'ntk_per_length' (the factor follows each "
            "length)"
        )
    misplaced = sorted(keys - set(ROPE_SCALING_TYPE_KEYS[kind]))
    if misplaced:
        raise ValueError(
            f"{field} has unknown keys {misplaced} for type {kind!r}; allowed keys: "
            f"{['type', *ROPE_SCALING_TYPE_KEYS[kind]]}"
        )
    return _CANONICAL[kind](value, field)


def _ntk(value: dict[str, Any], field: str) -> dict[str, Any]:
    factor, target = value.get("factor"), value.get("target_length")
    if factor is None and target is None:
        raise ValueError(f"{field} of type 'ntk' needs 'factor' (a number >= 1) or 'target_length' (tokens)")
    spec: dict[str, Any] = {"type": "ntk"}
    if factor is not None:
        spec["factor"] = _factor(f"{field}.factor", factor)
    if target is not None:
        spec["target_length"] = _length(f"{field}.target_length", target)
    return spec


def _target_only(kind: str, required: bool):
    def canonical(value: dict[str, Any], field: str) -> dict[str, Any]:
        target = value.get("target_length")
        if target is None and required:
            raise ValueError(f"{field} of type {kind!r} needs 'target_length' (the length to reach, in tokens)")
        spec: dict[str, Any] = {"type": kind}
        if target is not None:
            spec["target_length"] = _length(f"{field}.target_length", target)
        return spec

    return canonical


def _with_factor(kind: str):
    def canonical(value: dict[str, Any], field: str) -> dict[str, Any]:
        if value.get("factor") is None:
            raise ValueError(f"{field} of type {kind!r} needs 'factor' (a number >= 1)")
        return {"type": kind, "factor": _factor(f"{field}.factor", value["factor"])}

    return canonical


def _yarn(value: dict[str, Any], field: str) -> dict[str, Any]:
    spec = _with_factor("yarn")(value, field)
    if value.get("original_max_position_embeddings") is not None:
        key = "original_max_position_embeddings"
        spec[key] = _length(f"{field}.{key}", value[key])
    for key in ("beta_fast", "beta_slow"):
        if value.get(key) is not None:
            spec[key] = _positive(f"{field}.{key}", value[key])
    if spec.get("beta_fast", 32) <= spec.get("beta_slow", 1):
        raise ValueError(
            f"{field}.beta_fast={spec.get('beta_fast', 32)!r} is not above beta_slow={spec.get('beta_slow', 1)!r}; "
            "allowed: beta_fast > beta_slow (defaults 32 and 1)"
        )
    mscales = [key for key in ("mscale", "mscale_all_dim") if value.get(key) is not None]
    if value.get("attention_factor") is not None:
        if mscales:
            raise ValueError(f"{field} has attention_factor and {mscales}; give the attention factor or the mscales")
        spec["attention_factor"] = _positive(
            f"{field}.attention_factor", value["attention_factor"], MAX_ATTENTION_FACTOR
        )
    elif mscales:
        if len(mscales) == 1:
            raise ValueError(f"{field}.{mscales[0]} needs its pair; give mscale and mscale_all_dim together")
        for key in mscales:
            spec[key] = check_number(f"{field}.{key}", value[key], minimum=0, maximum=MAX_ATTENTION_FACTOR)
    return spec


def _longrope(value: dict[str, Any], field: str) -> dict[str, Any]:
    if value.get("long_factor") is None:
        raise ValueError(f"{field} of type 'longrope' needs 'long_factor' (one factor per rotary frequency)")
    spec: dict[str, Any] = {
        "type": "longrope",
        "long_factor": _factor_table(f"{field}.long_factor", value["long_factor"]),
    }
    if value.get("short_factor") is not None:
        spec["short_factor"] = _factor_table(f"{field}.short_factor", value["short_factor"])
        if len(spec["short_factor"]) != len(spec["long_factor"]):
            raise ValueError(
                f"{field}.short_factor has {len(spec['short_factor'])} numbers and long_factor "
                f"{len(spec['long_factor'])}; allowed: the same count, one per rotary frequency"
            )
    factor, target = value.get("factor"), value.get("target_length")
    if (factor is None) == (target is None):
        raise ValueError(
            f"{field} of type 'longrope' needs one of 'factor' (target / original length) or 'target_length' "
            "(tokens): the magnitude scaling reads it"
        )
    if factor is not None:
        spec["factor"] = _factor(f"{field}.factor", factor)
    else:
        spec["target_length"] = _length(f"{field}.target_length", target)
    if value.get("original_max_position_embeddings") is not None:
        key = "original_max_position_embeddings"
        spec[key] = _length(f"{field}.{key}", value[key])
    if value.get("attention_factor") is not None and value.get("magnitude_scaling") is not None:
        raise ValueError(f"{field} has attention_factor and magnitude_scaling; give one of them")
    if value.get("attention_factor") is not None:
        spec["attention_factor"] = _positive(
            f"{field}.attention_factor", value["attention_factor"], MAX_ATTENTION_FACTOR
        )
    if value.get("magnitude_scaling") is not None:
        if value["magnitude_scaling"] not in LONGROPE_MAGNITUDE_SCALINGS:
            raise ValueError(
                f"{field}.magnitude_scaling={value['magnitude_scaling']!r} is not allowed; allowed: "
                f"{list(LONGROPE_MAGNITUDE_SCALINGS)}"
            )
        spec["magnitude_scaling"] = value["magnitude_scaling"]
    if value.get("factors_source") is not None:
        if not isinstance(value["factors_source"], str) or len(value["factors_source"]) > 200:
            raise ValueError(
                f"{field}.factors_source={value['factors_source']!r} is not allowed; allowed: a name (a string)"
            )
        spec["factors_source"] = value["factors_source"]
    return spec


def _llama3(value: dict[str, Any], field: str) -> dict[str, Any]:
    spec = _with_factor("llama3")(value, field)
    for key in ("low_freq_factor", "high_freq_factor"):
        if value.get(key) is not None:
            spec[key] = _positive(f"{field}.{key}", value[key], MAX_ROPE_FACTOR)
    if spec.get("high_freq_factor", 4) <= spec.get("low_freq_factor", 1):
        raise ValueError(
            f"{field}.high_freq_factor={spec.get('high_freq_factor', 4)!r} is not above low_freq_factor="
            f"{spec.get('low_freq_factor', 1)!r}; allowed: high_freq_factor > low_freq_factor (defaults 4 and 1)"
        )
    if value.get("original_max_position_embeddings") is not None:
        key = "original_max_position_embeddings"
        spec[key] = _length(f"{field}.{key}", value[key])
    return spec


_CANONICAL = {
    "ntk": _ntk,
    "ntk_per_length": _target_only("ntk_per_length", required=False),
    "diffusion_ntk": _target_only("diffusion_ntk", required=True),
    "linear": _with_factor("linear"),
    "dynamic": _with_factor("dynamic"),
    "yarn": _yarn,
    "longrope": _longrope,
    "llama3": _llama3,
}


# -- labels ----------------------------------------------------------------------------------------------------


def _number(value: float) -> str:
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def _short_label(spec: dict[str, Any]) -> str | None:
    kind, factor, target = spec["type"], spec.get("factor"), spec.get("target_length")
    if kind == "ntk":
        return f"ntk:{_number(factor)}" if factor is not None else f"ntk-target:{target}"
    if kind == "ntk_per_length":
        return "ntk-per-length" + (f":{target}" if target is not None else "")
    if kind == "diffusion_ntk":
        return f"diffusion-ntk:{target}"
    if kind in ("linear", "dynamic", "yarn", "llama3"):
        return f"{kind}:{_number(factor)}"
    if kind == "longrope" and spec.get("factors_source") in LONGROPE_FACTOR_TABLES:
        source = spec["factors_source"]
        published = LONGROPE_FACTOR_TABLES[source]["target_length"]
        return f"longrope:{source}" + ("" if target == published else f":{target}")
    return None


def spec_label(spec: dict[str, Any] | None) -> str:
    """The CLI form of a canonical spec (``none``, ``ntk:4``, ``ntk-target:16384``, ``yarn:4``,
    ``longrope:GSAI-ML/LLaDA-8B-Instruct``, ...) when one says all of it, else its compact JSON; either parses back
    to the same spec."""
    if spec is None:
        return "none"
    short = _short_label(spec)
    if short is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if parse_rope_scaling(short) == spec:
                return short
    return json.dumps(spec, separators=(",", ":"))


def branch_name(spec: dict[str, Any] | None) -> str:
    """A Hub branch for a model repo published with this scaling: ``main`` without, else e.g. ``ntk-4``; a spec
    without a short label gets its type and a digest of its JSON (``yarn-3f2a9c01d4``)."""
    if spec is None:
        return "main"
    label = spec_label(spec)
    if label.startswith("{"):
        return f"{spec['type'].replace('_', '-')}-{hashlib.sha256(label.encode()).hexdigest()[:10]}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", label)


def rope_scaling_from_args(
    ntk_factor: float | None = None, ntk_target: int | None = None, rope_scaling: str | dict | None = None
) -> tuple[bool, dict[str, Any] | None]:
    """The ``rope_scaling`` that model arguments ask for (lm-eval ``--model_args``, Python keywords):
    ``(override?, canonical dict or None)``. ``ntk_factor`` / ``ntk_target`` are shorthands for ``ntk:λ`` /
    ``ntk-target:T`` (both may be given if they agree; the model config checks that); ``rope_scaling`` takes any
    form of :func:`parse_rope_scaling`, ``none`` dropping the scaling a checkpoint carries."""
    if ntk_factor is not None:
        _factor("ntk_factor", ntk_factor)
    if ntk_target is not None:
        _length("ntk_target", ntk_target)
    shorthand = ntk_factor is not None or ntk_target is not None
    if rope_scaling is None:
        if not shorthand:
            return False, None
        scaling: dict[str, Any] = {"type": "ntk"}
        if ntk_factor is not None:
            scaling["factor"] = ntk_factor
        if ntk_target is not None:
            scaling["target_length"] = ntk_target
        return True, scaling
    if shorthand:
        raise ValueError(
            f"rope_scaling={rope_scaling!r} and ntk_factor={ntk_factor!r} / ntk_target={ntk_target!r} both set the "
            "RoPE scaling; give one of them"
        )
    if isinstance(rope_scaling, (list, tuple)):
        raise ValueError(
            f"rope_scaling={list(rope_scaling)!r} is a list, which says no target length; allowed: "
            f"longrope:FILE.json[:LENGTH] (the list in a JSON file), longrope:MODEL[:LENGTH], or the dict "
            '{"type": "longrope", "long_factor": [...], "target_length": T}' + MODEL_ARGS_JSON_HINT
        )
    if isinstance(rope_scaling, str) and rope_scaling.lstrip().startswith("{"):
        try:
            json.loads(rope_scaling)
        except json.JSONDecodeError:
            raise ValueError(
                f"rope_scaling={rope_scaling!r} is not a whole JSON object: key=value model arguments end a value "
                f"at its first comma; allowed: a string form ({', '.join(ROPE_SCALING_STRINGS[:-1])})"
                + MODEL_ARGS_JSON_HINT
            ) from None
    return True, parse_rope_scaling(rope_scaling)


# How a spec that only a dict can say reaches lm-eval: the whole --model_args as one JSON object.
MODEL_ARGS_JSON_HINT = (
    "; in lm-eval's --model_args a dict is given by making the whole --model_args one JSON object: "
    """'{"pretrained": "...", "rope_scaling": {"type": "yarn", "factor": 4, "beta_fast": 16}}'"""
)


# -- the configs' side -----------------------------------------------------------------------------------------


class RopeScalingMixin:
    """``rope_scaling`` for a model config that defines ``rotary_dim``, ``rope_theta`` and ``trained_length``.

    ``rotary_dim`` is the number of rotated dimensions of a head (``head_dim`` for LLaDA and Dream; ``head_dim *
    partial_rotary_factor`` where only part of each head is rotated): the scaling law counts the critical dimension
    among the rotated ones, and its exponent is rotary_dim / critical dimension.

    Keeps the user's dict as given (validated, canonical) under its own attribute: transformers 5 turns
    ``rope_scaling`` into an alias of ``rope_parameters`` that rewrites the dict. Every type of the parser applies
    (the models' rotary embedding takes its tables from ``rope_tables_longllada.rope_tables``); the checks that
    need the model (a factor table of ``rotary_dim / 2`` numbers, a target at or above the trained length, the
    scaled base) run when the scaling is set.
    """

    @property
    def rope_scaling(self) -> dict[str, Any] | None:
        return self.__dict__.get("rope_scaling")

    @rope_scaling.setter
    def rope_scaling(self, value: str | dict[str, Any] | None) -> None:
        scaling = parse_rope_scaling(value)
        if scaling is not None:
            self._check_rope_scaling(scaling)
        self.__dict__["rope_scaling"] = scaling

    @property
    def rotary_dim(self) -> int:
        """Rotated dimensions per head: ``head_dim`` times ``partial_rotary_factor`` (1 unless the config has one)."""
        return int(self.head_dim * getattr(self, "partial_rotary_factor", 1.0))

    def _rope_scaling_from_parameters(self, rope_parameters: Any, rope_theta_given: bool) -> Any:
        """The scaling in transformers 5's ``rope_parameters``, which also holds this config's own ``rope_theta``
        and ``partial_rotary_factor``. Its ``rope_theta`` is the trained base: honoured when the config gives none
        of its own, else it must agree; its ``partial_rotary_factor`` must agree with the config's."""
        if not isinstance(rope_parameters, dict):
            return rope_parameters  # the parser refuses it, naming it
        scaling = dict(rope_parameters)
        theta = scaling.pop("rope_theta", None)
        if theta is not None:
            check_number("rope_parameters.rope_theta", theta, minimum=1, inclusive=False)
            if rope_theta_given and float(theta) != float(self.rope_theta):
                raise ValueError(
                    f"rope_parameters.rope_theta={theta!r} disagrees with rope_theta={self.rope_theta!r}: both name "
                    "the trained RoPE base; give one of them (to scale the base use rope_scaling, e.g. ntk:FACTOR)"
                )
            self.rope_theta = float(theta)
        partial = scaling.pop("partial_rotary_factor", None)
        own = getattr(self, "partial_rotary_factor", 1.0)
        if partial is not None and partial != own:
            raise ValueError(
                f"rope_parameters.partial_rotary_factor={partial!r} disagrees with this config's rotated share "
                f"{own!r}; allowed: {own!r}"
            )
        return scaling

    def _check_rope_scaling(self, scaling: dict[str, Any]) -> None:
        kind = scaling["type"]
        check_rope_scaling_for_model(scaling, self.rotary_dim, self.rope_theta, self.trained_length)
        factor, target = scaling.get("factor"), scaling.get("target_length")
        if kind == "ntk" and factor is not None and target is not None:
            expected = ntk_scaling_factor(self.rotary_dim, self.rope_theta, self.trained_length, target)
            if expected != factor:
                raise ValueError(
                    f"rope_scaling.factor={factor!r} disagrees with rope_scaling.target_length={target!r}: the "
                    f"scaling law gives factor {expected} for that length; give one of the two, or matching values"
                )

    @property
    def rope_scaling_factor(self) -> float:
        """Static factor λ of the RoPE base: 1.0 without scaling, for ``ntk_per_length`` (see
        :meth:`rope_factor_for_length`) and for the methods that keep the base and rescale frequencies
        (``linear``, ``dynamic``, ``yarn``, ``longrope``, ``llama3``: their own factor is
        ``rope_scaling["factor"]``)."""
        if self.rope_per_length:
            return 1.0
        return base_scaling_factor(self.rope_scaling, self.rotary_dim, self.rope_theta, self.trained_length)

    @property
    def rope_per_length(self) -> bool:
        """True when the rotary tables follow each forward pass's length (``ntk_per_length``, ``dynamic``,
        ``longrope`` with a ``short_factor``: :func:`rope_scaling_per_length`)."""
        return rope_scaling_per_length(self.rope_scaling)

    @property
    def rope_effective_base(self) -> float | str:
        """What the model's RoPE base is in effect: θ·λ for no scaling and the methods that multiply the base,
        ``"per length"`` when it follows each pass, ``"per frequency"`` for the methods that rescale frequencies
        and keep θ."""
        if self.rope_per_length:
            return "per length"
        if self.rope_scaling is not None and self.rope_scaling["type"] not in BASE_SCALING_TYPES:
            return "per frequency"
        return self.rope_theta * self.rope_scaling_factor

    def rope_factor_for_length(self, seq_len: int) -> float:
        """The factor of the RoPE base applied to a forward pass over ``seq_len`` positions (1.0 for the methods
        that rescale frequencies)."""
        return base_scaling_factor(self.rope_scaling, self.rotary_dim, self.rope_theta, self.trained_length, seq_len)

    @property
    def rope_supported_length(self) -> int:
        """The context the scaled RoPE covers (:func:`supported_length`): the trained length, the target, the
        scaling law's inverse for a factor of the base, or the original length times a method's factor."""
        return supported_length(self.rope_scaling, self.rotary_dim, self.rope_theta, self.trained_length)

    @property
    def n_positions(self) -> int:
        """The positions a prompt and its answer may fill together: the context window (the larger of
        ``max_position_embeddings`` and :attr:`rope_supported_length`) plus the trained length.

        A diffusion model denoises its answer in the positions right after the prompt, so a prompt that fills the
        context window needs room beyond it for the answer; an answer longer than the trained length is not one
        the model has learnt to write. lm-eval's ``--model hf`` reads this field (before
        ``max_position_embeddings``) as the model's window and cuts prompts to it minus the answer's tokens: with
        it, no prompt that fits the context window is cut. Derived; a value stored in a config is ignored.
        """
        window = max(int(getattr(self, "max_position_embeddings", 0) or 0), self.rope_supported_length)
        return window + self.trained_length

    @n_positions.setter
    def n_positions(self, value: int) -> None:
        pass


# -- published LongRoPE factor tables (data) --------------------------------------------------------------------

# Read by `longrope:MODEL` (`longrope:GSAI-ML/LLaDA-8B-Instruct`). Kept in this file: transformers 4.46 copies, from
# a local folder, only the files the loaded module imports itself, so the parser imports no file of its own.
#
# Source: LongDLLM (Ge et al. 2025, "Long-Context Extension for Language Diffusion Models up to 128k Tokens";
# https://github.com/lbertge/longdllm, MIT licence), package ``longdllm`` 0.1.5 on PyPI. The factors are the files
# ``longdllm/data/llada_rescale_factors.csv`` (sha256 35e86778...f464d22cf) and
# ``longdllm/data/diffucoder_rescale_factors.csv`` (sha256 1446c6cc...45691067) of its wheel, one float per line,
# the i-th dividing the i-th inverse frequency (LongRoPE, Ding et al. 2024). Its ``adapt_for_long_context`` scales
# from the model's ``max_position_embeddings`` (4096 for LLaDA) or, for DiffuCoder, from 16384, which it sets
# because DiffuCoder performed well up to 16k; its README extends both models to 131072 tokens, the target used here
# by default (the "su" magnitude scaling reads target / original). Its attention temperature is LongRoPE's "su"
# rule by default, sqrt(1 + ln(s) / ln(original)) with s = target / original.

# Hub model id -> the table (one factor per rotary frequency) and the lengths it was made for.
# fmt: off
LONGROPE_FACTOR_TABLES: dict[str, dict] = {
    "GSAI-ML/LLaDA-8B-Instruct": {
        "original_max_position_embeddings": 4096,
        "target_length": 131072,
        "long_factor": (
            1.0, 1.113270186164619, 1.2393705074030055, 1.3797542355034822, 1.5360392546203832, 1.7100267069473964,
            1.9037217503897985, 2.1193566674620854, 2.359416591734742, 2.6266681483204275, 2.9241913384733573,
            3.2554150357632006, 3.6241565029071983, 4.034665384681211, 4.491672683915996, 5.0004452850136945,
            5.5668466533531875, 6.197404410128389, 6.899385561401062, 7.6808802483624445, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
            1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 34.519999999999996, 37.19999999999998, 37.399999999999956,
            37.41999999999998, 37.58999999999997, 37.61999999999997, 37.629999999999995, 37.72999999999999,
            37.75999999999999, 37.89999999999999, 38.00999999999998, 38.019999999999996, 38.329999999999956,
            38.35999999999999, 38.45999999999999, 38.489999999999995, 38.51, 38.73, 38.839999999999975,
            38.92999999999999, 38.949999999999996, 39.259999999999934, 39.38999999999997, 39.49999999999995,
            39.519999999999996, 39.629999999999974, 39.649999999999984, 39.67999999999999, 39.73999999999999, 39.8,
        ),
    },
    "apple/DiffuCoder-7B-Instruct": {
        "original_max_position_embeddings": 16384,
        "target_length": 131072,
        "long_factor": (
            1.0, 1.0683669073217414, 1.1414078486602226, 1.2194423732658843, 1.3028118769831574, 1.391881095834529,
            1.4870397017163322, 1.5887040071873226, 1.6973187868083777, 1.8133592230015567, 1.9373329849415293,
            2.0697824495743795, 2.211287074480598, 2.362465932963378, 2.523980422453057, 2.6965371580767945,
            2.8808910640526633, 3.077848676432785, 3.2882716716448095, 3.513080636268858, 3.7532590945424555,
            4.009857811213523, 4.2839993885661185, 4.576883177730616, 4.889790525764963, 5.224090381462665,
            5.581245284412524, 5.962817763511862, 6.370477172926311, 6.806006995403034, 7.2713126448888765,
            7.768429802589401, 8.299533322938485, 8.866946748441526, 9.473152475019043, 10.120802612323397,
            10.812730586541749, 11.551963536446808, 12.341735556927205, 13.185501847937088, 14.086953830765653,
            15.050035297759258, 16.078959666150105, 17.178228411475807, 18.35265076123488, 19.607364734936514,
            20.947859622593498, 22.3800000000002, 24.050000000000047, 24.280000000000037, 24.34000000000001,
            24.470000000000013, 24.540000000000045, 24.610000000000017, 24.690000000000012, 24.77000000000001,
            24.790000000000003, 24.980000000000008, 25.080000000000016, 25.090000000000003, 25.14000000000001,
            25.350000000000023, 25.360000000000024, 29.190000000000598,
        ),
    },
}
# fmt: on
