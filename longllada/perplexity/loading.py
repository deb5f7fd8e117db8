"""Loading of the model to score: a diffusion LM of ours (or an official LLaDA checkpoint), or any transformers
causal LM, across transformers 4.46–5.x; ``--rope-scaling`` applied to its config before the weights load.

Checks that need no weights (the model path, the device) are separate functions, so that the command refuses a
bad request before loading gigabytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")
DIFFUSION_MODEL_TYPES = ("longllada", "llada")
# HF dynamic NTK needs a factor; 1.0 grows the base with the ratio length / trained length (no extra stretch).
HF_DYNAMIC_FACTOR = 1.0
ROPE_SCALING_FORMS = "ntk:FACTOR, ntk-target:LENGTH or dynamic"
# A Hub model id as huggingface_hub accepts it: NAME or ORG/NAME, letters, digits, '-', '_', '.'.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


# -- rope scaling requests -----------------------------------------------------------------------------------
HF_DYNAMIC_FACTOR = 1.0
ROPE_SCALING_FORMS = "ntk:FACTOR, ntk-target:LENGTH or dynamic"


# -- rope scaling requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RopeScalingRequest:
    """A ``--rope-scaling`` value: ``ntk`` (factor λ), ``ntk-target`` (target length T) or ``dynamic``."""

    kind: str
    value: float | int | None = None

    def __str__(self) -> str:
        if self.value is None:
            return self.kind
        return f"{self.kind}:{self.value if isinstance(self.value, int) else repr(float(self.value))}"


def parse_rope_scaling(text: str | None) -> RopeScalingRequest | None:
    """Parse ``ntk:FACTOR`` (FACTOR >= 1), ``ntk-target:LENGTH`` (LENGTH > 0) or ``dynamic``; None/"" -> None."""
    if text is None or text == "":
        return None
    kind, _, value = text.strip().partition(":")
    if kind == "dynamic" and not value:
        return RopeScalingRequest("dynamic")
    if kind == "ntk" and value:
        try:
            factor = float(value)
        except ValueError:
            factor = math.nan
        if not factor >= 1 or math.isinf(factor):
            raise ValueError(f"--rope-scaling ntk:FACTOR needs a number >= 1, got {value!r}")
        return RopeScalingRequest("ntk", int(factor) if factor.is_integer() else factor)
    if kind == "ntk-target" and value:
        if not value.isdigit() or int(value) <= 0:
            raise ValueError(f"--rope-scaling ntk-target:LENGTH needs a positive integer, got {value!r}")
        return RopeScalingRequest("ntk-target", int(value))
    raise ValueError(f"--rope-scaling must be one of {ROPE_SCALING_FORMS}; got {text!r}")


# -- model loading -------------------------------------------------------------------------------------------


# -- checks before loading -----------------------------------------------------------------------------------


def check_model_source(model: str | Path, flag: str = "--model") -> None:
    """Refuse a model that is neither an existing folder with a config.json nor a well-formed Hub id.

    transformers would otherwise report a missing folder as an invalid repo id, in a traceback."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{flag} {str(model)!r}: the folder has no config.json; allowed: a model folder or Hub id")
        return
    if path.exists():
        raise ValueError(f"{flag} {str(model)!r} is a file; allowed: a model folder or a Hub id (ORG/NAME)")
    text = str(model)
    looks_local = text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1
    if looks_local or not _HUB_ID.match(text) or ".." in text or "--" in text:
        raise ValueError(
            f"{flag} {text!r}: no such folder, and not a Hub model id; allowed: a model folder or ORG/NAME"
        )


def check_device(device: str | None, flag: str = "--device") -> str:
    """The torch device to run on ("auto"/None: cuda when available, else cpu), refused when it cannot be used."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{flag} {device!r} is not a device; allowed: auto, cpu, cuda, cuda:N, mps") from None
    if parsed.type == "cpu":
        return str(parsed)
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{flag} {device!r}: no CUDA device is available here; allowed: auto, cpu")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{flag} {device!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return str(parsed)
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{flag} {device!r}: MPS is not available here; allowed: auto, cpu")
        return str(parsed)
    raise ValueError(f"{flag} {device!r}: device type {parsed.type!r} is not supported; allowed: auto, cpu, cuda, mps")


# -- model loading -------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model ready to score, with what the curve's metadata needs to know about it."""

    model: Any
    tokenizer: Any
    name: str  # as given (a local folder is made absolute)
    kind: str  # "diffusion" or "autoregressive"
    model_type: str
    trained_length: int
    rope: dict[str, Any]  # the scaling actually applied: request, factor, base before and after
    position_limit: int | None  # hard limit on positions per pass (learned position embeddings), else None


def _model_label(model: str | Path) -> str:
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def _dtype_kwargs(dtype: str) -> dict[str, Any]:
    import torch
    import transformers

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
    value: Any = dtype if dtype == "auto" else getattr(torch, dtype)
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    # `dtype` replaced `torch_dtype` in transformers 4.56; older releases only know the old name.
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": value}


def _hf_rope_theta(config: Any) -> float | None:
    """RoPE base of a transformers config (5.x: ``rope_parameters``; 4.x: ``rope_theta``), None without RoPE."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict):
        if "rope_theta" in params:
            return float(params["rope_theta"])
        if any(isinstance(v, dict) for v in params.values()):
            raise ValueError(
                f"--rope-scaling: config of type {config.model_type!r} has per-layer-type rope_parameters "
                f"({sorted(params)}); only a single RoPE base is supported"
            )
    theta = getattr(config, "rope_theta", None)
    return float(theta) if theta is not None else None


def _hf_has_rope(config: Any) -> bool:
    return bool(getattr(config, "rope_parameters", None)) or getattr(config, "rope_theta", None) is not None


def _hf_trained_length(config: Any) -> int:
    for field in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, field, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(
        f"config of type {config.model_type!r} has none of max_position_embeddings, n_positions, n_ctx; "
        "its trained length is unknown"
    )


def _hf_rotary_dim(config: Any) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    params = getattr(config, "rope_parameters", None)
    partial = (params or {}).get("partial_rotary_factor") if isinstance(params, dict) else None
    partial = partial or getattr(config, "partial_rotary_factor", None) or 1.0
    return int(head_dim * partial)


def _apply_hf_rope_scaling(config: Any, request: RopeScalingRequest, trained_length: int) -> dict[str, Any]:
    """Set the requested scaling on a transformers causal-LM config in place; returns what was applied."""
    from modeling_longllada import ntk_scaling_factor

    theta = _hf_rope_theta(config)
    if theta is None:
        raise ValueError(
            f"--rope-scaling {request} needs a RoPE model; config of type {config.model_type!r} has no rope_theta "
            "(or rope_parameters)"
        )
    v5_style = isinstance(getattr(config, "rope_parameters", None), dict)
    if request.kind == "dynamic":
        if v5_style:
            config.rope_parameters = {
                **config.rope_parameters,
                "rope_type": "dynamic",
                "factor": HF_DYNAMIC_FACTOR,
            }
            field = "rope_parameters"
        else:
            if not hasattr(config, "rope_scaling"):
                raise ValueError(
                    f"--rope-scaling dynamic: config of type {config.model_type!r} has no rope_scaling field; "
                    f"allowed for this model: ntk:FACTOR, ntk-target:LENGTH"
                )
            config.rope_scaling = {"type": "dynamic", "factor": HF_DYNAMIC_FACTOR}
            field = "rope_scaling"
        return {
            "scaling": str(request),
            "factor": "dynamic",
            "dynamic_factor": HF_DYNAMIC_FACTOR,
            "rope_theta": theta,
            "effective_rope_theta": "per length",
            "config_field": field,
        }
    if request.kind == "ntk":
        factor = request.value
    else:
        factor = ntk_scaling_factor(_hf_rotary_dim(config), theta, trained_length, int(request.value))
    new_theta = theta * factor
    if v5_style:
        # LLaMA-3 style θ·λ: only the base changes; an existing rope_type is kept.
        config.rope_parameters = {"rope_type": "default", **config.rope_parameters, "rope_theta": new_theta}
        field = "rope_parameters"
    else:
        config.rope_theta = new_theta
        field = "rope_theta"
    return {
        "scaling": str(request),
        "factor": factor,
        "rope_theta": theta,
        "effective_rope_theta": new_theta,
        "config_field": field,
    }


def _our_rope_description(config: Any, request: RopeScalingRequest | None) -> dict[str, Any]:
    """What our config applies: the request, or a scaling already saved in the model's config.json."""
    scaling = config.rope_scaling
    if scaling is None:
        return {"scaling": None, "rope_theta": float(config.rope_theta)}
    dynamic = scaling["type"] == "dynamic"
    if request is not None:
        label = str(request)
    elif dynamic:
        label = "config:dynamic"
    elif scaling.get("factor") is not None:
        label = f"config:ntk:{scaling['factor']:g}"
    else:
        label = f"config:ntk-target:{scaling['target_length']}"
    return {
        "scaling": label,
        "factor": "dynamic" if dynamic else config.rope_scaling_factor,
        "rope_theta": float(config.rope_theta),
        "effective_rope_theta": "per length" if dynamic else config.rope_theta * config.rope_scaling_factor,
        "config_field": "rope_scaling",
    }


def _hf_config_scaling(config: Any) -> str | None:
    """A RoPE scaling that a causal LM's own config already applies (e.g. LLaMA-3.1's "llama3"), as a label."""
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, dict):
        params = getattr(config, "rope_scaling", None)
    if not isinstance(params, dict):
        return None
    kind = params.get("rope_type", params.get("type"))
    return None if kind in (None, "default") else f"config:{kind}"


def _our_rope_scaling(request: RopeScalingRequest) -> dict[str, Any]:
    if request.kind == "ntk":
        return {"type": "ntk", "factor": request.value}
    if request.kind == "ntk-target":
        return {"type": "ntk", "target_length": request.value}
    return {"type": "dynamic"}


def _load_path(model: str | Path) -> str:
    path = Path(model).expanduser()
    return str(path) if path.exists() else str(model)


def load_tokenizer(model: str | Path) -> Any:
    """The tokenizer saved with a model (folder or Hub id)."""
    from transformers import AutoTokenizer

    import modeling_longllada  # noqa: F401  (registered first: AutoTokenizer reads the model's config too)

    return AutoTokenizer.from_pretrained(_load_path(model), trust_remote_code=True)


def load_model(
    model: str | Path,
    rope_scaling: str | RopeScalingRequest | None = None,
    dtype: str = "auto",
    device: str | None = None,
    tokenizer: Any = None,
) -> LoadedModel:
    """Load a model and its tokenizer for scoring, detecting its kind from the loaded objects.

    ``model_type`` ``longllada``/``llada`` configs, and any loaded model that has ``chunk_perplexity``, are
    diffusion models; any other ``AutoModelForCausalLM`` is autoregressive. ``rope_scaling`` (see
    :func:`parse_rope_scaling`) goes to our config's ``rope_scaling``; for a causal LM, ``ntk``/``ntk-target``
    multiply its RoPE base by λ (transformers 5: ``rope_parameters["rope_theta"]``; 4.x: ``rope_theta``) and
    ``dynamic`` selects transformers' dynamic NTK (factor ``HF_DYNAMIC_FACTOR``). ``tokenizer``: one already
    loaded for this model (else it is loaded).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

    import modeling_longllada  # registers our classes with the Auto factories

    check_model_source(model)
    request = parse_rope_scaling(rope_scaling) if not isinstance(rope_scaling, RopeScalingRequest) else rope_scaling
    dtype_kwargs = _dtype_kwargs(dtype)
    device = check_device(device)
    name = _model_label(model)
    load_from = _load_path(model)

    config_dict, _ = PretrainedConfig.get_config_dict(load_from)
    if config_dict.get("model_type") == "llada":
        # An official checkpoint: its own remote code breaks on transformers 5 and lacks our scorers, so it is
        # not run at all; its config fields and weights load unchanged into our classes (the same architecture,
        # LLaDA arXiv 2502.09992).
        official = {k: v for k, v in config_dict.items() if k not in ("model_type", "auto_map")}
        config = modeling_longllada.LongLLaDAConfig.from_dict(official)
    else:
        config = AutoConfig.from_pretrained(load_from, trust_remote_code=True)
    rope: dict[str, Any] = {"scaling": None}
    if config.model_type in DIFFUSION_MODEL_TYPES:
        if config_dict.get("model_type") == "llada":
            model_class: Any = modeling_longllada.LongLLaDAModelLM
        else:
            model_class = AutoModelForCausalLM
        if request is not None:
            config.rope_scaling = _our_rope_scaling(request)
        remote = {"trust_remote_code": True} if model_class is AutoModelForCausalLM else {}
        loaded = model_class.from_pretrained(load_from, config=config, **remote, **dtype_kwargs)
        trained_length = int(config.max_sequence_length)
        rope = _our_rope_description(config, request)
    else:
        trained_length = _hf_trained_length(config)
        if request is not None:
            rope = _apply_hf_rope_scaling(config, request, trained_length)
        else:
            rope = {"scaling": _hf_config_scaling(config)}
        loaded = AutoModelForCausalLM.from_pretrained(load_from, config=config, trust_remote_code=True, **dtype_kwargs)
    is_diffusion = callable(getattr(loaded, "chunk_perplexity", None)) and callable(
        getattr(loaded, "log_likelihood", None)
    )
    if config.model_type in DIFFUSION_MODEL_TYPES and not is_diffusion:
        raise ValueError(
            f"model {name!r} has model_type {config.model_type!r} but its class {type(loaded).__name__} has no "
            "chunk_perplexity/log_likelihood; load it with this package's LongLLaDAModelLM"
        )
    position_limit = None
    if not is_diffusion and not _hf_has_rope(config):
        position_limit = trained_length  # learned absolute positions: nothing past the window exists
    loaded.to(device).eval()
    return LoadedModel(
        model=loaded,
        tokenizer=tokenizer if tokenizer is not None else load_tokenizer(model),
        name=name,
        kind="diffusion" if is_diffusion else "autoregressive",
        model_type=str(config_dict.get("model_type", config.model_type)),
        trained_length=trained_length,
        rope=rope,
        position_limit=position_limit,
    )
