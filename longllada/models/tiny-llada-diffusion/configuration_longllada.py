"""Configuration of LongLLaDA: the official LLaDA config fields, unchanged, plus NTK RoPE scaling.

This file is copied flat into Hub model repos and loaded with ``trust_remote_code=True``: it imports only
the standard library and transformers.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PretrainedConfig

ROPE_SCALING_TYPES = ("ntk", "dynamic")

# Fields of the official LLaDA config.json with their values for LLaDA-8B (spec §1). Every one is accepted
# and written back unchanged; those not used at inference are kept only so that configs round-trip.
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "d_model": 4096,
    "n_heads": 32,
    "n_kv_heads": 32,
    "n_layers": 32,
    "mlp_ratio": 4,
    "mlp_hidden_size": 12288,
    "vocab_size": 126464,
    "embedding_size": 126464,
    "max_sequence_length": 4096,
    "rope": True,
    "rope_theta": 500000.0,
    "rope_full_precision": True,
    "layer_norm_type": "rms",
    "rms_norm_eps": 1e-5,
    "layer_norm_with_affine": True,
    "bias_for_layer_norm": False,
    "attention_layer_norm": False,
    "attention_layer_norm_with_affine": True,
    "block_type": "llama",
    "activation_type": "silu",
    "include_bias": False,
    "include_qkv_bias": False,
    "weight_tying": False,
    "scale_logits": False,
    "alibi": False,
    "alibi_bias_max": 8.0,
    "clip_qkv": None,
    "multi_query_attention": None,
    "input_emb_norm": False,
    "block_group_size": 1,
    "flash_attention": False,
    "attention_dropout": 0.0,
    "residual_dropout": 0.0,
    "embedding_dropout": 0.0,
    "init_device": "meta",
    "init_fn": "mitchell",
    "init_std": 0.02,
    "init_cutoff_factor": None,
    "precision": "amp_bf16",
    "use_cache": False,
    "mask_token_id": 126336,
    "eos_token_id": 126081,
    "pad_token_id": 126081,
}


def critical_dimension(head_dim: int, rope_theta: float, train_length: int) -> int:
    """Critical dimension of RoPE extrapolation (Liu et al. 2023): the number of rotary dimensions whose
    period was completed within the trained length, ``2 * ceil(head_dim / 2 * log_theta(train_length / 2π))``."""
    _check_positive("head_dim", head_dim)
    _check_positive("train_length", train_length)
    if rope_theta <= 1:
        raise ValueError(f"rope_theta must be > 1, got {rope_theta!r}")
    return 2 * math.ceil(head_dim / 2 * math.log(train_length / (2 * math.pi), rope_theta))


def ntk_scaling_factor(head_dim: int, rope_theta: float, train_length: int, target_length: int) -> int:
    """Integer NTK factor λ so that base ``rope_theta * λ`` covers ``target_length`` (spec §4).

    New base θ' = (target_length / 2π) ** (head_dim / critical_dimension); λ = ceil(θ' / θ), at least 1.
    LLaDA-8B (128, 500000, 4096) -> 8192 gives 4.
    """
    _check_positive("target_length", target_length)
    d_extra = critical_dimension(head_dim, rope_theta, train_length)
    if target_length <= train_length or d_extra <= 0:
        return 1
    new_base = (target_length / (2 * math.pi)) ** (head_dim / d_extra)
    # Tolerate float noise at exact integers before rounding up (the paper rounds up).
    return max(1, math.ceil(new_base / rope_theta - 1e-9))


def ntk_supported_length(head_dim: int, rope_theta: float, train_length: int, factor: float) -> int:
    """Inverse of the scaling law: the longest length that the base ``rope_theta * factor`` covers."""
    d_extra = critical_dimension(head_dim, rope_theta, train_length)
    if factor <= 1 or d_extra <= 0:
        return train_length
    return max(train_length, int(2 * math.pi * (rope_theta * factor) ** (d_extra / head_dim)))


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def normalize_rope_scaling(rope_scaling: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validate ``rope_scaling`` and return it in canonical form (``type`` key; ``rope_type`` accepted).

    Allowed: None; ``{"type": "ntk", "factor": λ >= 1}``; ``{"type": "ntk", "target_length": T > 0}`` (both
    may be given if they agree); ``{"type": "dynamic"}`` (optionally with ``target_length``, the window the
    config then advertises). transformers 5's ``{"rope_type": "default", "rope_theta": ...}`` means no scaling.
    """
    if rope_scaling is None:
        return None
    if not isinstance(rope_scaling, dict):
        raise ValueError(f"rope_scaling must be a dict or None, got {type(rope_scaling).__name__}: {rope_scaling!r}")
    scaling = {k: v for k, v in rope_scaling.items() if k not in ("rope_theta",)}
    kind = scaling.pop("type", None)
    alias = scaling.pop("rope_type", None)
    if kind is not None and alias is not None and kind != alias:
        raise ValueError(f"rope_scaling has type={kind!r} and rope_type={alias!r}; give one of them")
    kind = kind if kind is not None else alias
    if kind in (None, "default") and not scaling.get("factor") and not scaling.get("target_length"):
        return None
    if kind not in ROPE_SCALING_TYPES:
        raise ValueError(f"rope_scaling.type must be one of {ROPE_SCALING_TYPES}, got {kind!r}")
    factor = scaling.get("factor")
    target = scaling.get("target_length")
    if factor is not None:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
            raise ValueError(f"rope_scaling.factor must be a number >= 1, got {factor!r}")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target <= 0):
        raise ValueError(f"rope_scaling.target_length must be a positive integer, got {target!r}")
    if kind == "ntk" and factor is None and target is None:
        raise ValueError("rope_scaling of type 'ntk' needs 'factor' (>= 1) or 'target_length' (> 0)")
    if kind == "dynamic" and factor is not None:
        raise ValueError(f"rope_scaling.factor is not used with type 'dynamic' (got {factor!r}); remove it")
    return {"type": kind, **scaling}


class LongLLaDAConfig(PretrainedConfig):
    r"""Configuration of a LLaDA-architecture masked diffusion model with optional NTK RoPE scaling.

    Accepts every field of the official ``config.json`` (``d_model``, ``n_heads``, ``n_layers``,
    ``max_sequence_length``, ``rope_theta``, ...; see ``OFFICIAL_DEFAULTS``) and writes them back unchanged.
    Adds ``rope_scaling``:

    - ``{"type": "ntk", "factor": 4}``: RoPE base ``rope_theta * 4``, as LongLLaDA does;
    - ``{"type": "ntk", "target_length": 16384}``: the factor from the extrapolation scaling law;
    - ``{"type": "dynamic"}``: the factor chosen at each forward pass from the sequence length.

    ``rope_theta`` stays the trained base. ``max_position_embeddings`` (read by lm-eval and others to decide
    truncation) is derived: the trained length, or the length the scaled base covers.
    """

    model_type = "longllada"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(self, rope_scaling: dict[str, Any] | None = None, **kwargs: Any):
        # transformers 5 names the field `rope_parameters`; accept it for configs written by its tooling.
        rope_parameters = kwargs.pop("rope_parameters", None)
        if rope_scaling is None and rope_parameters is not None:
            rope_scaling = dict(rope_parameters)
        kwargs.pop("max_position_embeddings", None)  # derived, see the property below
        fields = {name: kwargs.pop(name, default) for name, default in OFFICIAL_DEFAULTS.items()}
        token_ids = {name: fields[name] for name in ("mask_token_id", "eos_token_id", "pad_token_id")}
        bos_token_id = kwargs.pop("bos_token_id", None)
        super().__init__(bos_token_id=bos_token_id, **token_ids, **kwargs)
        for name, value in fields.items():
            setattr(self, name, value)
        self.bos_token_id = bos_token_id
        self.rope_scaling = rope_scaling

    # -- rope scaling ----------------------------------------------------------------------------------------
    # A property of our own: transformers 5 turns `rope_scaling` into an alias of `rope_parameters` that
    # rewrites the dict; ours keeps the user's dict as given (validated) and serialises it under its own key.
    @property
    def rope_scaling(self) -> dict[str, Any] | None:
        return self.__dict__.get("rope_scaling")

    @rope_scaling.setter
    def rope_scaling(self, value: dict[str, Any] | None) -> None:
        scaling = normalize_rope_scaling(value)
        if scaling is not None:
            self._check_factor_and_target(scaling)
        self.__dict__["rope_scaling"] = scaling

    def _check_factor_and_target(self, scaling: dict[str, Any]) -> None:
        factor, target = scaling.get("factor"), scaling.get("target_length")
        if scaling["type"] == "ntk" and factor is not None and target is not None:
            expected = ntk_scaling_factor(self.head_dim, self.rope_theta, self.max_sequence_length, target)
            if expected != factor:
                raise ValueError(
                    f"rope_scaling.factor={factor!r} disagrees with rope_scaling.target_length={target!r}: the "
                    f"scaling law gives factor {expected} for that length; give one of the two, or matching values"
                )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def rope_scaling_factor(self) -> float:
        """Static NTK factor λ (1.0 without scaling; for ``dynamic`` see :meth:`rope_factor_for_length`)."""
        scaling = self.rope_scaling
        if scaling is None or scaling["type"] != "ntk":
            return 1.0
        if scaling.get("factor") is not None:
            return float(scaling["factor"])
        return float(
            ntk_scaling_factor(self.head_dim, self.rope_theta, self.max_sequence_length, scaling["target_length"])
        )

    def rope_factor_for_length(self, seq_len: int) -> float:
        """The NTK factor applied to a forward pass over ``seq_len`` positions."""
        scaling = self.rope_scaling
        if scaling is not None and scaling["type"] == "dynamic":
            return float(ntk_scaling_factor(self.head_dim, self.rope_theta, self.max_sequence_length, seq_len))
        return self.rope_scaling_factor

    @property
    def max_position_embeddings(self) -> int:
        scaling = self.rope_scaling
        if scaling is None:
            return self.max_sequence_length
        if scaling.get("target_length") is not None:
            return int(scaling["target_length"])
        if scaling["type"] == "dynamic":
            return self.max_sequence_length
        return ntk_supported_length(self.head_dim, self.rope_theta, self.max_sequence_length, self.rope_scaling_factor)

    @max_position_embeddings.setter
    def max_position_embeddings(self, value: int) -> None:
        # Derived from max_sequence_length and rope_scaling; a stored value (from config.json) is ignored.
        pass

    # HF-standard names, read by generic tools (lm-eval, accelerate, model cards).
    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def num_key_value_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def intermediate_size(self) -> int:
        return self.mlp_hidden_size if self.mlp_hidden_size is not None else self.mlp_ratio * self.d_model

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["rope_scaling"] = self.rope_scaling
        output["max_position_embeddings"] = self.max_position_embeddings
        output.pop("rope_parameters", None)
        return output
