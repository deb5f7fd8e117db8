"""Configuration of Dream-v0 for LongLLaDA: the official Dream config fields, unchanged, plus NTK RoPE scaling.

Dream-v0 (Ye et al. 2025, arXiv 2508.15487) is a Qwen2.5-7B-shaped masked diffusion model. Its checkpoints'
``config.json`` (``model_type: "Dream"``, ``auto_map`` to ``configuration_dream.DreamConfig``) loads with this
class unchanged: every official field is accepted and written back as given.

This file is copied flat into Hub model repos and loaded with ``trust_remote_code=True``: it imports only
the standard library, transformers and the files beside it.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from .rope_longllada import RopeScalingMixin

__all__ = ["DreamConfig", "OFFICIAL_DEFAULTS", "DREAM_TRAINED_LENGTH"]

# The context Dream-v0 was trained at (Dream report). The Qwen-inherited `max_position_embeddings` (131072) is
# not it; the NTK scaling law reads this one.
DREAM_TRAINED_LENGTH = 2048

# Fields of the official Dream-v0 config.json, defaulting to Dream-v0-7B's architecture (the official class's own
# defaults differ; only a checkpoint's config.json counts). Every one is accepted and written back unchanged.
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-6,
    "use_cache": False,
    "tie_word_embeddings": False,
    "rope_theta": 1000000.0,
    "use_sliding_window": False,
    "sliding_window": 131072,
    "max_window_layers": 28,
    "attention_dropout": 0.0,
    "mask_token_id": 151666,
    "pad_token_id": 151643,
    "eos_token_id": 151643,
    "bos_token_id": None,
}


class DreamConfig(RopeScalingMixin, PretrainedConfig):
    r"""Configuration of a Dream-architecture masked diffusion model with optional NTK RoPE scaling.

    Accepts every field of the official ``config.json`` (``hidden_size``, ``num_attention_heads``,
    ``num_key_value_heads``, ``rope_theta``, ``mask_token_id``, ...; see ``OFFICIAL_DEFAULTS``) and writes them
    back unchanged; ``max_position_embeddings`` keeps the checkpoint's value. Adds:

    - ``trained_length``: the context the checkpoint was trained at (default 2048, Dream-v0's), which the
      scaling law reads;
    - ``rope_scaling`` (any form of :func:`rope_longllada.parse_rope_scaling`), exactly as for LLaDA:
      ``{"type": "ntk", "factor": 5}`` multiplies the RoPE base by 5 (the LongLLaDA paper's Dream setting),
      ``{"type": "ntk", "target_length": 4096}`` takes the factor from the scaling law (5 for Dream-v0),
      ``{"type": "ntk_per_length"}`` chooses it at each forward pass from its length,
      ``{"type": "diffusion_ntk", "target_length": T}`` is UltraLLaDA's diffusion-aware NTK, and the
      frequency-rescaling methods (``linear``, ``yarn``, ``longrope``, ``llama3``, ``dynamic``) read the trained
      length as their original one.

    ``rope_theta`` stays the trained base.
    """

    model_type = "longllada_dream"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        rope_scaling: str | dict[str, Any] | None = None,
        trained_length: int = DREAM_TRAINED_LENGTH,
        **kwargs: Any,
    ):
        # transformers 5 names the field `rope_parameters` (with the trained base in it); accept it for configs
        # written by its tooling.
        rope_parameters = kwargs.pop("rope_parameters", None)
        rope_theta_given = "rope_theta" in kwargs
        fields = {name: kwargs.pop(name, default) for name, default in OFFICIAL_DEFAULTS.items()}
        token_ids = {name: fields[name] for name in ("pad_token_id", "eos_token_id", "bos_token_id")}
        super().__init__(tie_word_embeddings=fields["tie_word_embeddings"], **token_ids, **kwargs)
        for name, value in fields.items():
            setattr(self, name, value)
        if isinstance(trained_length, bool) or not isinstance(trained_length, int) or trained_length < 1:
            raise ValueError(f"trained_length={trained_length!r} is not allowed; allowed: an integer >= 1 (tokens)")
        self.trained_length = trained_length
        if rope_scaling is None and rope_parameters is not None:
            rope_scaling = self._rope_scaling_from_parameters(rope_parameters, rope_theta_given)
        self.rope_scaling = rope_scaling

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        """Rotated dimensions of a head: all of them."""
        return self.head_dim

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["rope_scaling"] = self.rope_scaling
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
        """The official config fields of a model of these sizes (``longllada tiny-model``), every layer full
        attention (``max_window_layers`` = ``n_layers``)."""
        return {
            "num_hidden_layers": n_layers,
            "hidden_size": d_model,
            "num_attention_heads": n_heads,
            "num_key_value_heads": n_kv_heads,
            "intermediate_size": mlp_hidden_size,
            "max_window_layers": n_layers,
            "vocab_size": vocab_size,
            "trained_length": trained_length,
            "rope_theta": rope_theta,
            "rope_scaling": rope_scaling,
            **token_ids,
        }

    def official_weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of an official Dream-v0 checkpoint of this config (Qwen2 layout, q/k/v biases, its own
        ``lm_head``), name to shape, in the official order."""
        d, inner, vocab = int(self.hidden_size), int(self.intermediate_size), int(self.vocab_size)
        q_dim = int(self.num_attention_heads) * int(self.head_dim)
        kv_dim = int(self.num_key_value_heads) * int(self.head_dim)
        shapes = {"model.embed_tokens.weight": (vocab, d)}
        for i in range(int(self.num_hidden_layers)):
            prefix = f"model.layers.{i}."
            for name, rows in (("q_proj", q_dim), ("k_proj", kv_dim), ("v_proj", kv_dim)):
                shapes[f"{prefix}self_attn.{name}.weight"] = (rows, d)
                shapes[f"{prefix}self_attn.{name}.bias"] = (rows,)
            shapes[f"{prefix}self_attn.o_proj.weight"] = (d, q_dim)
            for name, shape in (("mlp.gate_proj", (inner, d)), ("mlp.up_proj", (inner, d)),
                                ("mlp.down_proj", (d, inner)), ("input_layernorm", (d,)),
                                ("post_attention_layernorm", (d,))):  # fmt: skip
                shapes[f"{prefix}{name}.weight"] = shape
        shapes.update({"model.norm.weight": (d,), "lm_head.weight": (vocab, d)})
        return shapes
