"""RoPE scaling for every model family: the extrapolation scaling law and the one ``rope_scaling`` parser.

Every front-end (model configs, the ``longllada`` CLIs, lm-eval ``--model_args``, ``longllada upload``) reads
``rope_scaling`` through :func:`parse_rope_scaling`, so the same forms are accepted everywhere:

==========================================  ===============================================  ==========================
canonical dict                              CLI / model_args string                          meaning
==========================================  ===============================================  ==========================
``None``                                    ``none``                                         trained RoPE base
``{"type": "ntk", "factor": 4}``            ``ntk:4``                                        base θ·4 (LongLLaDA)
``{"type": "ntk", "target_length": T}``     ``ntk-target:16384`` (or ``ntk-target:16k``)     λ from the scaling law
``{"type": "ntk_per_length"}``              ``ntk-per-length`` (``ntk-per-length:T`` window)  λ(L) per forward length
``{"type": "dynamic", "factor": 2}``        ``dynamic:2``                                     transformers' dynamic NTK
==========================================  ===============================================  ==========================

``dynamic`` is transformers' ``rope_type`` of that name (Code Llama-style dynamic NTK, causal LMs only); our
per-length scaling-law rule has its own name, ``ntk_per_length``. The old spelling ``{"type": "dynamic"}``
without a factor meant ``ntk_per_length`` and still does, with a deprecation warning.

Copied flat into Hub model repos: imports only the standard library.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

ROPE_SCALING_TYPES = ("ntk", "ntk_per_length", "dynamic")
ROPE_SCALING_KEYS = ("type", "rope_type", "factor", "target_length")
# Keys that transformers 5 writes into `rope_parameters`; they carry no scaling of their own.
_TRANSFORMERS_ROPE_KEYS = ("rope_theta", "partial_rotary_factor")
ROPE_SCALING_STRINGS = ("none", "ntk:FACTOR", "ntk-target:LENGTH", "ntk-per-length[:LENGTH]", "dynamic:FACTOR")


def critical_dimension(head_dim: int, rope_theta: float, train_length: int) -> int:
    """Critical dimension of RoPE extrapolation (Liu et al. 2023, "Scaling Laws of RoPE-based Extrapolation"):
    the number of rotary dimensions whose period fits in the trained length,
    ``2 * ceil(head_dim / 2 * log_theta(train_length / 2π))``."""
    check_number("head_dim", head_dim, minimum=1, integer=True)
    check_number("train_length", train_length, minimum=1, integer=True)
    check_number("rope_theta", rope_theta, minimum=1, inclusive=False)
    return 2 * math.ceil(head_dim / 2 * math.log(train_length / (2 * math.pi), rope_theta))


def ntk_scaling_factor(head_dim: int, rope_theta: float, train_length: int, target_length: int) -> int:
    """Integer NTK factor λ so that the base ``rope_theta * λ`` covers ``target_length``.

    New base θ' = (target_length / 2π) ** (head_dim / critical_dimension); λ = ceil(θ' / θ), at least 1, as the
    LongLLaDA paper rounds it. LLaDA-8B (128, 500000, 4096) -> 8192 gives 4; Dream-v0 (128, 1e6, 2048) -> 4096
    gives 5.
    """
    check_number("target_length", target_length, minimum=1, integer=True)
    d_extra = critical_dimension(head_dim, rope_theta, train_length)
    if target_length <= train_length or d_extra <= 0:
        return 1
    new_base = (target_length / (2 * math.pi)) ** (head_dim / d_extra)
    # Tolerate float noise at exact integers before rounding up.
    return max(1, math.ceil(new_base / rope_theta - 1e-9))


def ntk_supported_length(head_dim: int, rope_theta: float, train_length: int, factor: float) -> int:
    """Inverse of the scaling law: the longest length that the base ``rope_theta * factor`` covers."""
    check_number("factor", factor, minimum=1)
    d_extra = critical_dimension(head_dim, rope_theta, train_length)
    if factor <= 1 or d_extra <= 0:
        return train_length
    return max(train_length, int(2 * math.pi * (rope_theta * factor) ** (d_extra / head_dim)))


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
        bounds.append(f"{'>=' if inclusive else '>'} {minimum}")
    if maximum is not None:
        bounds.append(f"<= {maximum}")
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
    """``16384``, ``16k`` or ``16K`` (×1024) -> a positive number of tokens."""
    match = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", text)
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(f"{field}={text!r} is not allowed; allowed: a positive integer such as 16384 or 16k")
    return int(match.group(1)) * (1024 if match.group(2) else 1)


def _parse_string(text: str, field: str) -> dict[str, Any] | None:
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
    if kind == "dynamic":
        if not value:
            return {"type": "dynamic"}  # the old spelling; parse_rope_scaling warns and renames it
        return {"type": "dynamic", "factor": _parse_factor(value, f"{field} dynamic:FACTOR")}
    raise ValueError(f"{field}={text!r} is not allowed; allowed: {', '.join(ROPE_SCALING_STRINGS)}")


def _parse_factor(text: str, field: str) -> int | float:
    try:
        factor = float(text)
    except ValueError:
        factor = math.nan
    check_number(field, factor, minimum=1)
    return int(factor) if factor.is_integer() else factor


def parse_rope_scaling(value: str | dict[str, Any] | None, field: str = "rope_scaling") -> dict[str, Any] | None:
    """Validate a ``rope_scaling`` given as a dict (``type`` or ``rope_type``) or a CLI string; return the
    canonical dict (``type`` key; see the module docstring) or None for no scaling.

    Unknown keys, unknown types, non-finite or out-of-range numbers are errors that name the field. A dict of
    transformers 5's ``rope_parameters`` with ``rope_type: "default"`` means no scaling.
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
    unknown = sorted(set(value) - set(ROPE_SCALING_KEYS) - set(_TRANSFORMERS_ROPE_KEYS))
    if unknown:
        raise ValueError(f"{field} has unknown keys {unknown}; known keys: {list(ROPE_SCALING_KEYS)}")
    kind, alias = value.get("type"), value.get("rope_type")
    if kind is not None and alias is not None and kind != alias:
        raise ValueError(f"{field} has type={kind!r} and rope_type={alias!r}; give one of them")
    kind = kind if kind is not None else alias
    factor, target = value.get("factor"), value.get("target_length")
    if kind in (None, "default") and factor is None and target is None:
        return None
    if kind == "dynamic" and factor is None:
        warnings.warn(
            f"{field}={{'type': 'dynamic'}} is deprecated: it now reads as the per-length scaling-law rule, "
            "{'type': 'ntk_per_length'}; 'dynamic' with a factor is transformers' dynamic NTK",
            FutureWarning,
            stacklevel=2,
        )
        kind = "ntk_per_length"
    if kind not in ROPE_SCALING_TYPES:
        raise ValueError(f"{field}.type={kind!r} is not allowed; allowed: {list(ROPE_SCALING_TYPES)}")
    if factor is not None:
        check_number(f"{field}.factor", factor, minimum=1)
    if target is not None:
        check_number(f"{field}.target_length", target, minimum=1, integer=True)
    if kind == "ntk" and factor is None and target is None:
        raise ValueError(f"{field} of type 'ntk' needs 'factor' (a number >= 1) or 'target_length' (tokens)")
    if kind == "ntk_per_length" and factor is not None:
        raise ValueError(
            f"{field}.factor={factor!r} is not used with type 'ntk_per_length' (the factor follows each length)"
        )
    if kind == "dynamic" and target is not None:
        raise ValueError(f"{field}.target_length is not used with type 'dynamic'; allowed keys: type, factor")
    canonical: dict[str, Any] = {"type": kind}
    if factor is not None:
        canonical["factor"] = factor
    if target is not None:
        canonical["target_length"] = target
    return canonical


def spec_label(spec: dict[str, Any] | None) -> str:
    """The CLI form of a canonical spec: ``none``, ``ntk:4``, ``ntk-target:16384``, ``ntk-per-length``,
    ``dynamic:2``."""
    if spec is None:
        return "none"
    kind, factor, target = spec["type"], spec.get("factor"), spec.get("target_length")
    if kind == "ntk":
        return f"ntk:{factor:g}" if factor is not None else f"ntk-target:{target}"
    if kind == "ntk_per_length":
        return "ntk-per-length" + (f":{target}" if target is not None else "")
    return f"dynamic:{factor:g}"


def branch_name(spec: dict[str, Any] | None) -> str:
    """A Hub branch for a model repo published with this scaling: ``main`` without, else e.g. ``ntk-4``."""
    return "main" if spec is None else spec_label(spec).replace(":", "-")


def rope_scaling_from_args(
    ntk_factor: float | None = None, ntk_target: int | None = None, rope_scaling: str | dict | None = None
) -> tuple[bool, dict[str, Any] | None]:
    """The ``rope_scaling`` that model arguments ask for (lm-eval ``--model_args``, Python keywords):
    ``(override?, canonical dict or None)``. ``ntk_factor`` / ``ntk_target`` are shorthands for ``ntk:λ`` /
    ``ntk-target:T`` (both may be given if they agree; the model config checks that); ``rope_scaling`` takes any
    form of :func:`parse_rope_scaling`, ``none`` dropping the scaling a checkpoint carries."""
    if ntk_factor is not None:
        check_number("ntk_factor", ntk_factor, minimum=1)
    if ntk_target is not None:
        check_number("ntk_target", ntk_target, minimum=1, integer=True)
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
    return True, parse_rope_scaling(rope_scaling)


class RopeScalingMixin:
    """``rope_scaling`` for a model config that defines ``head_dim``, ``rope_theta`` and ``trained_length``.

    Keeps the user's dict as given (validated, canonical) under its own attribute: transformers 5 turns
    ``rope_scaling`` into an alias of ``rope_parameters`` that rewrites the dict. Diffusion models apply NTK by
    multiplying the base (``ntk``, ``ntk_per_length``); transformers' ``dynamic`` belongs to causal LMs.
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

    def _check_rope_scaling(self, scaling: dict[str, Any]) -> None:
        if scaling["type"] == "dynamic":
            raise ValueError(
                "rope_scaling type 'dynamic' (transformers' dynamic NTK, for causal LMs) is not supported by a "
                "diffusion model; allowed: 'ntk' (factor or target_length) or 'ntk_per_length'"
            )
        factor, target = scaling.get("factor"), scaling.get("target_length")
        if target is not None and target < self.trained_length:
            raise ValueError(
                f"rope_scaling.target_length={target!r} is below the trained length {self.trained_length}; "
                f"allowed: a length >= {self.trained_length} (no scaling is needed below it)"
            )
        if factor is not None and target is not None:
            expected = ntk_scaling_factor(self.head_dim, self.rope_theta, self.trained_length, target)
            if expected != factor:
                raise ValueError(
                    f"rope_scaling.factor={factor!r} disagrees with rope_scaling.target_length={target!r}: the "
                    f"scaling law gives factor {expected} for that length; give one of the two, or matching values"
                )

    @property
    def rope_scaling_factor(self) -> float:
        """Static NTK factor λ (1.0 without scaling; for ``ntk_per_length`` see :meth:`rope_factor_for_length`)."""
        scaling = self.rope_scaling
        if scaling is None or scaling["type"] != "ntk":
            return 1.0
        if scaling.get("factor") is not None:
            return float(scaling["factor"])
        return float(ntk_scaling_factor(self.head_dim, self.rope_theta, self.trained_length, scaling["target_length"]))

    @property
    def rope_per_length(self) -> bool:
        """True when the factor is chosen at each forward pass from its length (``ntk_per_length``)."""
        return (self.rope_scaling or {}).get("type") == "ntk_per_length"

    def rope_factor_for_length(self, seq_len: int) -> float:
        """The NTK factor applied to a forward pass over ``seq_len`` positions."""
        if self.rope_per_length:
            return float(ntk_scaling_factor(self.head_dim, self.rope_theta, self.trained_length, max(seq_len, 1)))
        return self.rope_scaling_factor

    @property
    def rope_supported_length(self) -> int:
        """The context the RoPE base covers: the trained length, the target, or the scaling law's inverse."""
        scaling = self.rope_scaling
        if scaling is None:
            return self.trained_length
        if scaling.get("target_length") is not None:
            return int(scaling["target_length"])
        if scaling["type"] == "ntk_per_length":
            return self.trained_length
        return ntk_supported_length(self.head_dim, self.rope_theta, self.trained_length, self.rope_scaling_factor)

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
