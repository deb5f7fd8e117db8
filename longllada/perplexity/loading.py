"""Loading of the model to score: a diffusion LM of one of our families (official checkpoints included), or any
transformers causal LM, across transformers 4.46–5.x; ``--rope-scaling`` applied to its config before the weights
load. The config, tokenizer and weights load through ``longllada.loading``: the model's own code runs only with
``--trust-remote-code``.

Checks that need no weights (the model path, the device) are separate functions, so that the command refuses a
bad request before loading gigabytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")
# A Hub model id as huggingface_hub accepts it: NAME or ORG/NAME, letters, digits, '-', '_', '.'.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


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


def check_likelihood(model: str | Path, flag: str = "--model") -> None:
    """Refuse a model of a family without a likelihood (its entry's ``likelihood``), saying why, from its
    ``config.json`` alone: there is no perplexity curve to draw for it."""
    from longllada.loading import model_family

    family, _ = model_family(_load_path(model))
    if family is not None and not family.likelihood:
        raise ValueError(
            f"{flag} {str(model)!r}: {family.likelihood_refusal()}; allowed: a model of a family that defines one, "
            "or a causal LM"
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


def _hf_has_rope(config: Any) -> bool:
    return bool(getattr(config, "rope_parameters", None)) or getattr(config, "rope_theta", None) is not None


def _load_path(model: str | Path) -> str:
    path = Path(model).expanduser()
    return str(path) if path.exists() else str(model)


def load_tokenizer(model: str | Path, trust_remote_code: bool = False) -> Any:
    """The tokenizer saved with a model (folder or Hub id); its own code only with ``trust_remote_code``."""
    from longllada.loading import load_tokenizer as load

    return load(model, trust_remote_code=trust_remote_code)


def load_model(
    model: str | Path,
    rope_scaling: str | dict[str, Any] | None = None,
    dtype: str = "auto",
    device: str | None = None,
    tokenizer: Any = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a model and its tokenizer for scoring, detecting its kind from the loaded objects.

    Our families (official checkpoints included) are diffusion models; any other ``AutoModelForCausalLM`` is
    autoregressive. ``rope_scaling`` (any form of ``parse_rope_scaling``) is applied by
    :func:`longllada.rope_scaling.apply_rope_scaling`. ``tokenizer``: one already loaded for this model (else
    it is loaded). ``trust_remote_code``: whether a model outside our families may run its own code (else a model
    that needs it is refused in one line before anything loads).
    """
    import modeling_longllada
    from longllada.loading import check_remote_code, load_config, model_family
    from longllada.loading import load_model as load_weights
    from longllada.rope_scaling import apply_rope_scaling, causal_trained_length, is_ours

    check_model_source(model)
    modeling_longllada.parse_rope_scaling(rope_scaling)  # a bad request is refused before anything loads
    dtype_kwargs = _dtype_kwargs(dtype)
    device = check_device(device)
    name = _model_label(model)
    load_from = _load_path(model)
    parts = ("config",) if tokenizer is not None else ("config", "tokenizer")
    check_remote_code(load_from, trust_remote_code, parts=parts)  # before any file of the model is used
    check_likelihood(model)
    family, model_type = model_family(load_from)

    # An official checkpoint of our families loads into our classes (its model type is registered); its own remote
    # code is never run: it breaks on transformers 5 and lacks our scorers.
    config = load_config(load_from, trust_remote_code=trust_remote_code)
    ours = is_ours(config)
    trained_length = int(config.trained_length) if ours else causal_trained_length(config)
    rope = apply_rope_scaling(config, rope_scaling, trained_length)
    loaded = load_weights(load_from, trust_remote_code=trust_remote_code, config=config, **dtype_kwargs)
    is_diffusion = callable(getattr(loaded, "chunk_perplexity", None)) and callable(
        getattr(loaded, "log_likelihood", None)
    )
    if ours and not is_diffusion:
        raise ValueError(
            f"model {name!r} has model_type {config.model_type!r} but its class {type(loaded).__name__} has no "
            "chunk_perplexity/log_likelihood; load it with this package's model classes"
        )
    position_limit = None
    if not is_diffusion and not _hf_has_rope(config):
        position_limit = trained_length  # learned absolute positions: nothing past the window exists
    loaded.to(device).eval()
    return LoadedModel(
        model=loaded,
        tokenizer=tokenizer if tokenizer is not None else load_tokenizer(model, trust_remote_code),
        name=name,
        kind="diffusion" if is_diffusion else "autoregressive",
        model_type=str(model_type or config.model_type),
        trained_length=trained_length,
        rope=rope,
        position_limit=position_limit,
    )
