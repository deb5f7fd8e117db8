"""`longllada ppl`: perplexity versus context length (the LongLLaDA paper's Figure 1), for diffusion and causal LMs.

The document is cut into chunks of ``chunk`` tokens; the curve has one point per chunk, at the context length
reached at the end of that chunk.

Diffusion models (ours: a model with ``chunk_perplexity``; config ``model_type`` ``longllada`` or ``llada``)
    Chunk i is scored with all earlier tokens as its context (spec §3, second part). Estimator ``longllada``
    (default, as the paper): the model's ``chunk_perplexity`` — mean cross-entropy over the masked chunk tokens,
    ``mc`` Monte-Carlo samples. Estimator ``elbo``: the per-token bound ``-log_likelihood / chunk``. The curve at
    chunk i is exp of the mean of the per-chunk values 0..i. Each chunk's random numbers come from a generator
    seeded by (seed, chunk index), so any chunk can be recomputed alone.

Autoregressive models (any other ``AutoModelForCausalLM``)
    Token cross-entropy; the curve at chunk i is exp of the mean cross-entropy of all tokens up to its end. By
    default the whole text is one causal pass, as the paper does for LLaMA-3 (direct extrapolation past the
    trained length is what the curve measures); models with learned absolute positions (no RoPE) cannot take
    more than their window, and for them — or with ``--window N`` — a sliding window is used: windows end every
    ``stride`` tokens (a multiple of ``chunk``, default about half the window), each is at most ``window`` tokens
    long and scores only its last ``stride`` tokens, so every token is scored once with at least
    ``window - stride`` tokens of context. A pass runs in pieces of ``AR_PIECE`` tokens with the key/value
    cache in between, so the LM head never covers more than one piece ([length, vocab] logits are never built).

Output: a JSON-lines file. Line 1 holds the run's metadata; then one line per chunk, written and flushed when
computed. Running again with the same ``--out`` resumes: the metadata must match (else an error asks for a new
``--out`` or ``--overwrite``), finished chunks are kept and the rest computed, giving the same file as a run
that was never interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

ESTIMATORS = ("longllada", "elbo")
AR_ESTIMATOR = "causal-ce"
DTYPES = ("auto", "float32", "bfloat16", "float16")
DIFFUSION_MODEL_TYPES = ("longllada", "llada")
SAMPLE_TEXT = "gov_report_001.txt"
SAMPLE_TEXT_LABEL = f"longllada:data/{SAMPLE_TEXT}"
# Tokens per forward pass on the autoregressive path. Fixed (and recorded in the metadata) because the shape of
# each pass enters the floating-point results, and a resumed run must reproduce them exactly.
AR_PIECE = 512
# HF dynamic NTK needs a factor; 1.0 grows the base with the ratio length / trained length (no extra stretch).
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


def _resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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

    request = parse_rope_scaling(rope_scaling) if not isinstance(rope_scaling, RopeScalingRequest) else rope_scaling
    dtype_kwargs = _dtype_kwargs(dtype)
    device = _resolve_device(device)
    name = _model_label(model)
    load_from = _load_path(model)

    config_dict, _ = PretrainedConfig.get_config_dict(load_from)
    if config_dict.get("model_type") == "llada":
        # An official checkpoint: its own remote code breaks on transformers 5 and lacks our scorers, so it is
        # not run at all; the config fields and weights load unchanged into our classes (spec §1).
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


# -- text ----------------------------------------------------------------------------------------------------


def load_text(text: str | Path | None) -> tuple[str, str]:
    """The document to score and its label: a file, or the report shipped with the package when None."""
    if text is None:
        resource = importlib.resources.files("longllada").joinpath("data").joinpath(SAMPLE_TEXT)
        return resource.read_text(encoding="utf-8"), SAMPLE_TEXT_LABEL
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--text: no such file: {str(text)!r}")
    return path.read_text(encoding="utf-8"), str(path.resolve())


def tokenize_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (the BOS prefix is added separately)."""
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


# -- results file --------------------------------------------------------------------------------------------


@dataclass
class PerplexityCurve:
    """A run: its metadata and one row per finished chunk (``index``, ``length``, ``tokens``, ``value``,
    ``ppl``; ``stderr`` for the ELBO estimator)."""

    meta: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def lengths(self) -> list[int]:
        return [row["length"] for row in self.rows]

    @property
    def ppl(self) -> list[float]:
        return [row["ppl"] for row in self.rows]

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.meta.get("chunks")


def _parse_lines(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    """Parse a results file: (meta or None, chunk rows in order, byte length of the well-formed prefix).

    A line cut short by an interruption (and anything after it) is not part of the prefix."""
    data = path.read_bytes()
    meta, rows, good = None, [], 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        try:
            record = json.loads(raw)
        except ValueError:
            break
        if meta is None:
            if not isinstance(record, dict) or record.get("record") != "meta":
                raise ValueError(f"{path}: the first line is not the metadata of a `longllada ppl` run")
            meta = record
        else:
            if not isinstance(record, dict) or record.get("record") != "chunk" or record.get("index") != len(rows):
                break
            rows.append(record)
        good += len(raw)
    return meta, rows, good


def read_run(path: str | Path) -> PerplexityCurve:
    """Read a ``longllada ppl`` results file (a partly written one too: its finished chunks)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such results file: {str(path)!r}")
    meta, rows, _ = _parse_lines(path)
    if meta is None:
        raise ValueError(f"{path}: empty or not a `longllada ppl` results file (no metadata line)")
    return PerplexityCurve(meta=meta, rows=rows)


def _open_results(out: Path, meta: dict[str, Any], overwrite: bool) -> tuple[list[dict[str, Any]], Any]:
    """Open ``out`` for appending chunk rows: resume a matching run, or start a new file."""
    done: list[dict[str, Any]] = []
    # A file without one whole line was cut while its metadata was being written: start it again.
    if out.exists() and b"\n" in out.read_bytes() and not overwrite:
        old_meta, done, good = _parse_lines(out)
        if old_meta is None:
            raise ValueError(
                f"--out {out}: exists and is not a `longllada ppl` results file; give a new --out or pass --overwrite"
            )
        if old_meta != meta:
            changed = sorted(k for k in set(old_meta) | set(meta) if old_meta.get(k) != meta.get(k))
            detail = "; ".join(f"{k}: file has {old_meta.get(k)!r}, this run {meta.get(k)!r}" for k in changed)
            raise ValueError(
                f"--out {out} holds a different run ({detail}); give a new --out, or pass --overwrite to replace it"
            )
        with out.open("r+b") as handle:
            handle.truncate(good)  # drop a line cut short by the interruption
        return done, out.open("a", encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    handle = out.open("w", encoding="utf-8")
    handle.write(json.dumps(meta) + "\n")
    handle.flush()
    return done, handle


def _running_ppl(rows: Sequence[dict[str, Any]], token_weighted: bool) -> float:
    if token_weighted:
        mean = math.fsum(r["value"] * r["tokens"] for r in rows) / math.fsum(r["tokens"] for r in rows)
    else:
        mean = math.fsum(r["value"] for r in rows) / len(rows)
    try:
        return math.exp(mean)
    except OverflowError:
        return math.inf


def chunk_seed(seed: int, index: int) -> int:
    """Seed of chunk ``index``'s random generator: a hash of (seed, index), so each chunk is reproducible alone."""
    digest = hashlib.sha256(f"longllada-ppl:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# -- scoring -------------------------------------------------------------------------------------------------


def _diffusion_chunks(
    model: Any,
    ids: Any,
    prefix: int,
    chunk: int,
    n_chunks: int,
    first: int,
    estimator: str,
    mc: int,
    batch_size: int,
    seed: int,
) -> Iterator[dict[str, Any]]:
    import torch

    for index in range(first, n_chunks):
        start = prefix + index * chunk
        context, target = ids[:start], ids[start : start + chunk]
        generator = torch.Generator(device="cpu").manual_seed(chunk_seed(seed, index))
        if estimator == "longllada":
            value = model.chunk_perplexity(context, target, mc_num=mc, batch_size=batch_size, generator=generator)
            yield {"index": index, "tokens": chunk, "value": float(value)}
        else:
            ll, stderr = model.log_likelihood(
                context, target, mc_num=mc, batch_size=batch_size, cfg_scale=0.0, generator=generator
            )
            yield {"index": index, "tokens": chunk, "value": -float(ll) / chunk, "stderr": float(stderr) / chunk}


def _forward_arg_names(model: Any) -> tuple[str, str | None]:
    """Names of the key/value cache argument and of the "logits for the last n positions" argument (None when
    the model has none) of ``model.forward``: they changed across transformers releases."""
    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    keep_arg = next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in params), None)
    return cache_arg, keep_arg


def _new_cache(model: Any) -> Any:
    """An empty key/value cache object (transformers 4.46 would otherwise hand back deprecated tuples), or None
    for 4.x models that only take the legacy tuples (their own ``_supports_cache_class`` says so)."""
    from transformers import DynamicCache

    if getattr(model, "_supports_cache_class", True) is False:
        return None
    if "config" in inspect.signature(DynamicCache.__init__).parameters:
        return DynamicCache(config=model.config)
    return DynamicCache()


def _causal_windows(
    total: int, prefix: int, chunk: int, window: int | None, stride: int | None
) -> list[tuple[int, int, int]]:
    """Passes of the autoregressive path as (begin, end, first scored position), positions in the full ids."""
    first_scorable = max(prefix, 1)  # position 0 has nothing to be predicted from
    if window is None or total <= window:
        return [(0, total, first_scorable)]
    plan = []
    for score_from in range(prefix, total, stride):
        end = min(score_from + stride, total)
        plan.append((max(0, end - window), end, max(score_from, first_scorable)))
    return plan


def _causal_chunks(
    model: Any, ids: Any, prefix: int, chunk: int, n_chunks: int, first: int, window: int | None, stride: int | None
) -> Iterator[dict[str, Any]]:
    """Token cross-entropy per chunk, for chunks ``first``.. in order, from causal passes over the ids."""
    import torch
    import torch.nn.functional as F

    device = model.device
    cache_arg, keep_arg = _forward_arg_names(model)
    total = prefix + n_chunks * chunk
    sums: dict[int, list[float]] = {}
    first_needed = prefix + first * chunk  # first full position whose loss a resumed run still needs
    for begin, end, score_from in _causal_windows(total, prefix, chunk, window, stride):
        if end <= first_needed:
            continue
        cache = _new_cache(model)
        for piece_begin in range(begin, end, AR_PIECE):
            piece_end = min(piece_begin + AR_PIECE, end)
            keep_from = max(piece_begin, score_from - 1)  # logits at q predict position q + 1
            wanted = keep_from < piece_end and piece_end > first_needed - 1
            n_keep = piece_end - keep_from if wanted else 1
            kwargs: dict[str, Any] = {cache_arg: cache, "use_cache": True}
            if keep_arg is not None:
                kwargs[keep_arg] = n_keep
            piece = ids[piece_begin:piece_end].to(device)[None]
            output = model(input_ids=piece, **kwargs)
            cache = output.cache if getattr(output, "cache", None) is not None else output.past_key_values
            if not wanted:
                continue
            logits = output.logits[0, -n_keep:]
            n_scored = min(piece_end, end - 1) - keep_from  # the last position of a pass predicts nothing inside it
            if n_scored <= 0:
                continue
            targets = ids[keep_from + 1 : keep_from + 1 + n_scored].to(device)
            losses = F.cross_entropy(logits[:n_scored].float(), targets, reduction="none").double().cpu()
            del logits, output
            chunk_of = (torch.arange(keep_from + 1, keep_from + 1 + n_scored) - prefix) // chunk
            for index in chunk_of.unique().tolist():
                if index < first:
                    continue
                selected = losses[chunk_of == index]
                entry = sums.setdefault(index, [0.0, 0])
                entry[0] += float(selected.sum())
                entry[1] += int(selected.numel())
            completed = keep_from + n_scored + 1  # positions below this are scored
            for index in sorted(sums):
                if prefix + (index + 1) * chunk <= completed:
                    loss_sum, count = sums.pop(index)
                    yield {"index": index, "tokens": count, "value": loss_sum / count}


def perplexity_curve(
    model: str | Path | LoadedModel,
    *,
    out: str | Path | None = None,
    text: str | Path | None = None,
    max_length: int | None = None,
    chunk: int = 64,
    mc: int = 8,
    estimator: str | None = None,
    rope_scaling: str | None = None,
    dtype: str = "auto",
    device: str | None = None,
    seed: int = 0,
    batch_size: int = 8,
    window: int | None = None,
    stride: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PerplexityCurve:
    """Perplexity versus context length of ``model`` on ``text`` (the package's report when None).

    Args:
        model: a local folder or Hub id, or a :class:`LoadedModel` (then ``rope_scaling``, ``dtype`` and
            ``device`` must be left at their defaults).
        out: JSON-lines results file, written chunk by chunk and resumed if it holds a matching partial run;
            None keeps the results in memory only.
        max_length: tokens of the text to score (default: all); only whole chunks are scored.
        chunk: tokens per chunk (one curve point each).
        mc, batch_size: Monte-Carlo samples per chunk and samples per forward pass (diffusion models).
        estimator: diffusion models: ``"longllada"`` (default) or ``"elbo"``; leave None for causal LMs.
        rope_scaling: ``"ntk:FACTOR"``, ``"ntk-target:LENGTH"`` or ``"dynamic"``.
        seed: seeds each chunk's generator together with the chunk index.
        window, stride: causal LMs: sliding window (tokens per pass) and the tokens scored per window; default:
            one pass over the whole text, or the model's position limit if it has learned positions.
    Returns:
        :class:`PerplexityCurve` with one row per chunk.
    """
    import torch
    import transformers
    from tqdm.auto import tqdm

    import longllada

    _check_int("--chunk", chunk, 1)
    _check_int("--mc", mc, 1)
    _check_int("--batch-size", batch_size, 1)
    _check_int("--seed", seed, None)
    if max_length is not None:
        _check_int("--max-length", max_length, 1)
        if max_length < chunk:
            raise ValueError(f"--max-length {max_length} is shorter than one chunk (--chunk {chunk})")
    if estimator is not None and estimator not in ESTIMATORS:
        raise ValueError(f"--estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if window is not None:
        _check_int("--window", window, 2)
    if stride is not None:
        _check_int("--stride", stride, 1)
    request = parse_rope_scaling(rope_scaling)
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
    content, text_label = load_text(text)

    if isinstance(model, LoadedModel):
        if request is not None or dtype != "auto" or device is not None:
            raise ValueError("rope_scaling, dtype and device apply when loading; pass them to load_model instead")
        tokenizer = model.tokenizer
    else:
        tokenizer = load_tokenizer(model)
    # The text is checked before the model is loaded: a wrong length should not cost loading 16 GB of weights.
    tokens = tokenize_text(tokenizer, content)
    if len(tokens) < chunk:
        raise ValueError(
            f"the text {text_label} has {len(tokens)} tokens, fewer than one chunk (--chunk {chunk}); give a longer "
            "text or a smaller --chunk"
        )
    if max_length is not None and max_length > len(tokens):
        raise ValueError(
            f"--max-length {max_length} is beyond the text: {text_label} has {len(tokens)} tokens with this "
            f"model's tokenizer; ask for at most {len(tokens)}"
        )
    loaded = model if isinstance(model, LoadedModel) else load_model(model, request, dtype, device, tokenizer)

    if loaded.kind == "diffusion":
        if window is not None or stride is not None:
            raise ValueError(
                f"--window/--stride apply to autoregressive models; {loaded.name} is a diffusion model (every chunk "
                "sees all earlier tokens)"
            )
        estimator = estimator or "longllada"
    else:
        if estimator is not None:
            raise ValueError(
                f"--estimator {estimator} applies to diffusion models; {loaded.name} is autoregressive "
                f"(scored by token cross-entropy): leave --estimator out"
            )
        estimator = AR_ESTIMATOR
        window = window or loaded.position_limit
        if window is None and stride is not None:
            raise ValueError(f"--stride {stride} needs --window (the sliding window it steps through)")
        if window is not None:
            stride = stride or max(chunk, (window // 2) // chunk * chunk)
            if stride % chunk or stride >= window:
                raise ValueError(
                    f"sliding window: --stride {stride} must be a multiple of --chunk {chunk} and smaller than the "
                    f"window ({window} tokens; set with --window)"
                )

    n_chunks = (max_length or len(tokens)) // chunk
    bos = loaded.tokenizer.bos_token_id
    prefix_ids = [] if bos is None else [int(bos)]
    ids = torch.tensor(prefix_ids + tokens[: n_chunks * chunk], dtype=torch.long)
    diffusion = loaded.kind == "diffusion"

    first_param = next(loaded.model.parameters())
    meta = {
        "record": "meta",
        "format": 1,
        "model": loaded.name,
        "kind": loaded.kind,
        "model_type": loaded.model_type,
        "trained_length": loaded.trained_length,
        "rope_scaling": loaded.rope.get("scaling"),
        "rope": loaded.rope,
        "estimator": estimator,
        "chunk": chunk,
        "mc": mc if diffusion else None,
        "batch_size": batch_size if diffusion else None,
        "seed": seed,
        "text": text_label,
        "text_sha256": hashlib.sha256(content.encode("utf-8")).hexdigest(),
        "text_tokens": len(tokens),
        "tokens": n_chunks * chunk,
        "chunks": n_chunks,
        "bos_prefix": bool(prefix_ids),
        "window": None if diffusion else window,
        "stride": None if diffusion else stride,
        "ar_piece": None if diffusion else AR_PIECE,
        "dtype": str(first_param.dtype).removeprefix("torch."),
        "device": first_param.device.type,
        "versions": {
            "longllada": longllada.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    meta = json.loads(json.dumps(meta))  # the form it has when read back, for the resume comparison

    handle = None
    rows: list[dict[str, Any]] = []
    if out is not None:
        rows, handle = _open_results(Path(out), meta, overwrite)
    bar = tqdm(
        total=n_chunks, initial=len(rows), desc=f"ppl {Path(loaded.name).name}", unit="chunk", disable=not progress
    )
    if rows:
        bar.set_postfix(length=rows[-1]["length"], ppl=f"{rows[-1]['ppl']:.4g}")
    try:
        if len(rows) < n_chunks:
            with torch.no_grad():
                if diffusion:
                    values = _diffusion_chunks(
                        loaded.model, ids, len(prefix_ids), chunk, n_chunks, len(rows), estimator, mc, batch_size, seed
                    )
                else:
                    values = _causal_chunks(
                        loaded.model, ids, len(prefix_ids), chunk, n_chunks, len(rows), window, stride
                    )
                for value in values:
                    row = {"record": "chunk", "index": value["index"], "length": (value["index"] + 1) * chunk}
                    row.update(value)
                    rows.append(row)
                    row["ppl"] = _running_ppl(rows, token_weighted=not diffusion)
                    if handle is not None:
                        handle.write(json.dumps(row) + "\n")
                        handle.flush()
                    bar.update(1)
                    bar.set_postfix(length=row["length"], ppl=f"{row['ppl']:.4g}")
    finally:
        bar.close()
        if handle is not None:
            handle.close()
    return PerplexityCurve(meta=meta, rows=rows)


def _check_int(flag: str, value: Any, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        allowed = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(f"{flag} must be {allowed}, got {value!r}")


# -- command line --------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ppl`` sub-command."""
    parser = subparsers.add_parser(
        "ppl",
        help="perplexity versus context length (Figure 1) of a diffusion or causal LM",
        description=__doc__.split("\n\n")[0],
        epilog="Diffusion models: chunk i's context is every earlier token. Causal LMs: token cross-entropy; one "
        "pass over the whole text for RoPE models (direct extrapolation, as the paper), a sliding window for "
        "models with learned positions or with --window. Re-running with the same --out resumes.",
    )
    parser.add_argument("--model", required=True, metavar="PATH_OR_ID", help="local folder or Hub id")
    parser.add_argument("--text", metavar="FILE", help=f"UTF-8 text file (default: the package's {SAMPLE_TEXT})")
    parser.add_argument("--max-length", type=int, metavar="N", help="tokens of the text to score (default: all of it)")
    parser.add_argument(
        "--chunk", type=int, default=64, metavar="N", help="tokens per chunk / curve point (default 64)"
    )
    parser.add_argument(
        "--mc", type=int, default=8, metavar="N", help="Monte-Carlo samples per chunk, diffusion (default 8)"
    )
    parser.add_argument(
        "--estimator",
        metavar="NAME",
        help=f"diffusion models: one of {', '.join(ESTIMATORS)} (default longllada, as the paper)",
    )
    parser.add_argument("--rope-scaling", metavar="SPEC", help=f"one of {ROPE_SCALING_FORMS}")
    parser.add_argument("--dtype", default="auto", metavar="NAME", help=f"one of {', '.join(DTYPES)} (default auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the masks (with the chunk index)")
    parser.add_argument(
        "--batch-size", type=int, default=8, metavar="N", help="Monte-Carlo samples per forward pass (default 8)"
    )
    parser.add_argument(
        "--window", type=int, metavar="N", help="causal LMs: sliding-window length (default: see below)"
    )
    parser.add_argument(
        "--stride", type=int, metavar="N", help="causal LMs: tokens scored per window (default ~window/2)"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="RESULT.jsonl",
        help="results file (JSON lines); resumed if it holds a partial run",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out instead of resuming it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``longllada ppl``; prints the final perplexity."""
    curve = perplexity_curve(
        args.model,
        out=args.out,
        text=args.text,
        max_length=args.max_length,
        chunk=args.chunk,
        mc=args.mc,
        estimator=args.estimator,
        rope_scaling=args.rope_scaling,
        dtype=args.dtype,
        device=None if args.device == "auto" else args.device,
        seed=args.seed,
        batch_size=args.batch_size,
        window=args.window,
        stride=args.stride,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    last = curve.rows[-1]
    print(
        f"{curve.meta['model']}: ppl {last['ppl']:.4f} at {last['length']} tokens ({len(curve.rows)} chunks) -> {args.out}"
    )
    return 0
