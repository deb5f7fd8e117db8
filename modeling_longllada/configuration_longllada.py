"""Configuration of LongLLaDA: the official LLaDA config fields, unchanged, plus NTK RoPE scaling.

This file is copied flat into Hub model repos and loaded with ``trust_remote_code=True``: it imports only
the standard library and transformers.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .rope_longllada import RopeScalingMixin, critical_dimension, ntk_scaling_factor, ntk_supported_length

__all__ = ["LongLLaDAConfig", "critical_dimension", "ntk_scaling_factor", "ntk_supported_length"]

# Fields of the official LLaDA config.json with their values for LLaDA-8B. Every one is accepted
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


class LongLLaDAConfig(RopeScalingMixin, PretrainedConfig):
    r"""Configuration of a LLaDA-architecture masked diffusion model with optional NTK RoPE scaling.

    Accepts every field of the official ``config.json`` (``d_model``, ``n_heads``, ``n_layers``,
    ``max_sequence_length``, ``rope_theta``, ...; see ``OFFICIAL_DEFAULTS``) and writes them back unchanged.
    Adds ``rope_scaling`` (any form of :func:`rope_longllada.parse_rope_scaling`):

    - ``{"type": "ntk", "factor": 4}``: RoPE base ``rope_theta * 4``, as LongLLaDA does;
    - ``{"type": "ntk", "target_length": 16384}``: the factor from the extrapolation scaling law;
    - ``{"type": "ntk_per_length"}``: the scaling law's factor chosen at each forward pass from its length;
    - ``{"type": "diffusion_ntk", "target_length": 131072}``: UltraLLaDA's diffusion-aware NTK (base θ·λ');
    - the frequency-rescaling methods, as transformers computes them: ``linear`` (position interpolation),
      ``yarn``, ``longrope``, ``llama3``, ``dynamic``.

    ``rope_theta`` stays the trained base. ``max_position_embeddings`` (read by lm-eval and others to decide
    truncation) is derived: the context the scaling covers (``rope_longllada.supported_length``: the trained
    length, the target, the scaling law's inverse, or the trained length times a method's factor).
    """

    model_type = "longllada"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(self, rope_scaling: str | dict[str, Any] | None = None, **kwargs: Any):
        # transformers 5 names the field `rope_parameters` (with the trained base in it); accept it for configs
        # written by its tooling.
        rope_parameters = kwargs.pop("rope_parameters", None)
        rope_theta_given = "rope_theta" in kwargs
        kwargs.pop("max_position_embeddings", None)  # derived, see the property below
        fields = {name: kwargs.pop(name, default) for name, default in OFFICIAL_DEFAULTS.items()}
        token_ids = {name: fields[name] for name in ("mask_token_id", "eos_token_id", "pad_token_id")}
        bos_token_id = kwargs.pop("bos_token_id", None)
        super().__init__(bos_token_id=bos_token_id, **token_ids, **kwargs)
        for name, value in fields.items():
            setattr(self, name, value)
        self.bos_token_id = bos_token_id
        if rope_scaling is None and rope_parameters is not None:
            rope_scaling = self._rope_scaling_from_parameters(rope_parameters, rope_theta_given)
        self.rope_scaling = rope_scaling

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def rotary_dim(self) -> int:
        """Rotated dimensions of a head: all of them."""
        return self.head_dim

    @property
    def trained_length(self) -> int:
        """The context length the checkpoint was trained at (the official ``max_sequence_length``)."""
        return self.max_sequence_length

    @property
    def max_position_embeddings(self) -> int:
        return self.rope_supported_length

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

    # -- the family registry's hooks (modeling_longllada/families.py) ------------------------------------------

    @classmethod
    def fields_from_sizes(
        cls,
        *,
        n_layers: int,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        mlp_hidden_size: int,
        vocab_size: int,
        trained_length: int,
        rope_theta: float,
        rope_scaling: str | dict[str, Any] | None = None,
        **token_ids: int | None,
    ) -> dict[str, Any]:
        """The official config fields of a model of these sizes (``longllada tiny-model``): the embedding has
        ``vocab_size`` rows, ``mlp_ratio`` is the integer part of ``mlp_hidden_size / d_model`` (at least 1)."""
        return {
            "n_layers": n_layers,
            "d_model": d_model,
            "n_heads": n_heads,
            "n_kv_heads": n_kv_heads,
            "mlp_hidden_size": mlp_hidden_size,
            "mlp_ratio": max(1, mlp_hidden_size // d_model),
            "vocab_size": vocab_size,
            "embedding_size": vocab_size,
            "max_sequence_length": trained_length,
            "rope_theta": rope_theta,
            "rope_scaling": rope_scaling,
            "init_device": "cpu",
            **token_ids,
        }

    def official_weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of an official LLaDA checkpoint of this config, name to shape, in the official order."""
        d_model, n_heads = int(self.d_model), int(self.n_heads)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        kv_dim = int(self.n_kv_heads or n_heads) * (d_model // n_heads)
        inner, vocab = int(self.intermediate_size), int(self.embedding_size or self.vocab_size)
        shapes = {"model.transformer.wte.weight": (vocab, d_model)}
        for i in range(int(self.n_layers)):
            prefix = f"model.transformer.blocks.{i}."
            for name, shape in (
                ("attn_norm", (d_model,)), ("q_proj", (d_model, d_model)), ("k_proj", (kv_dim, d_model)),
                ("v_proj", (kv_dim, d_model)), ("attn_out", (d_model, d_model)), ("ff_norm", (d_model,)),
                ("ff_proj", (inner, d_model)), ("up_proj", (inner, d_model)), ("ff_out", (d_model, inner)),
            ):  # fmt: skip
                shapes[f"{prefix}{name}.weight"] = shape
        shapes["model.transformer.ln_f.weight"] = (d_model,)
        if not self.weight_tying:
            shapes["model.transformer.ff_out.weight"] = (vocab, d_model)
        return shapes
