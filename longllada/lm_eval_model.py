"""`--model longllada`: lm-evaluation-harness driving a diffusion LM of the family registry the way it is meant to run.

lm-eval's ``hf`` model scores multiple choice with next-token log-probabilities, which a masked diffusion model
does not have; this class keeps everything of lm-eval's ``HFLM`` (loading, tokenisation, batching with left
padding, stop sequences, accelerate data parallelism) and replaces what differs:

- ``generate_until``: the diffusion sampler (``model.generate``), batched with left padding *and* the attention
  mask, with the sampler options of ``--model_args`` (steps, block_length, remasking, cfg_scale, cache,
  threshold; checked by the sampler itself); they override the task's generation kwargs, which override the
  model's generation_config. Sweeps: every prompt is tokenised once (lm-eval would tokenise it twice), and
  ``batch_size`` batches only prompts within 5% of each other's length (a NIAH grid's cells of one length),
  so that a batch never pads a 24k prompt to 32k, and only documents whose ids agree modulo ``batch_classes``
  (8), so that a prompt has the same batch-mates, hence the same tokens, on 1, 2, 4 or 8 data-parallel
  processes (the price: a length with fewer than 8 × ``batch_size`` prompts runs in smaller batches; the paper's
  grid has 110 a length; ``batch_classes=1`` lets any documents share a batch, for single-process runs that
  are never compared with data-parallel ones). On a GPU, a batch is split into parts that fit in free memory by
  the sampler's estimate (``generation_bytes_per_row``); one that still runs out of memory is split in halves.
  With ``LONGLLADA_LOG_LEVEL=DEBUG`` each batch is logged (``longllada-timing`` lines: seconds, rows, lengths)
  with its generated token ids.
- ``loglikelihood``: the Monte-Carlo ELBO of ``model.log_likelihood`` (``mc_num`` samples, seeded per request
  with ``mc_seed`` so that every choice of a question sees the same masks). ``is_greedy`` is computed for real:
  the sampler, greedy, one token per step over one block the length of the continuation, must reproduce it
  (``greedy_check=False`` skips that and reports False).
- ``loglikelihood_rolling``: the document cut in chunks of ``rolling_chunk`` tokens, each scored by the ELBO
  given all earlier tokens (as LongLLaDA's perplexity curve does); the sum bounds the log-likelihood.
- No left truncation unless ``max_length`` is given: the point of the toolkit is to run past the trained window.
- RoPE overrides at load time, for every family: ``ntk_factor=λ``, ``ntk_target=T`` (λ from the scaling law) or
  ``rope_scaling=`` any form of ``modeling_longllada.parse_rope_scaling`` (``ntk:4``, ``ntk-per-length``,
  ``dynamic:2`` for causal LMs, ``none`` to drop the scaling a checkpoint carries), applied to the config by
  ``longllada.rope_scaling.apply_rope_scaling`` before the weights load.

Families (read from ``config.json`` before anything loads; ``modeling_longllada.families``):

- Every family of the registry whose classes are ours (our ``model_type`` and the official ones, and the configs an
  entry claims by their fields): the diffusion path above. Their checkpoints, official ones included, load with
  this project's classes, never their remote code (whose attention ignores the padding mask). A model class with
  shifted logits (position i predicting token i + 1) says so, and the sampler and the likelihood handle it; the
  prompts of a family whose entry says ``bos_prefix`` start with the tokenizer's BOS, as the LongLLaDA paper's
  runs of that family do (added once: not when the tokenizer or the prompt already puts it first). Sampler
  arguments the family does not take (its entry's ``sampler_arguments``) are refused before the model loads.
- A family that transformers implements (the entry says ``native``): loaded with transformers' own classes; its
  entry's hooks (``Family.hooks``) check its sampler's arguments (transformers' names) over its
  generation_config.json, apply the RoPE override to its config, and answer each batch: left-padded, the prompt
  encoded in chunks, each answer cut at its first EOS and to the task's ``max_gen_toks``, seeded per batch with
  ``mc_seed``. A family without a likelihood has its loglikelihood requests refused with the entry's reason.
- Any other transformers causal LM (the paper's LLaMA-3 baseline): lm-eval's ``hf`` model unchanged (next-token
  likelihoods, HF ``generate``), with the RoPE override applied to the config (NTK: base θ·λ). Scaling a causal
  LM also widens lm-eval's context window: without ``max_length`` it is the scaled one (``ntk_target``, else
  the length the scaled base covers by the scaling law), so long prompts are not cut to the trained window.

Loading goes through ``longllada.loading``: a model outside the families, and its tokenizer, run their own code only
with ``trust_remote_code=True`` in ``--model_args`` (else a model that needs it is refused in one line first).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import json
import logging
import os
import time
import weakref
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import _add_special_kwargs, has_bos_prefix  # HFLM's rules for special tokens
from lm_eval.models.utils_hf import stop_sequences_criteria
from tqdm import tqdm

from lm_eval_tasks.longllada_niah.utils import encode_many, tokenizer_fingerprint
from longllada.loading import (
    MODEL_ARGS_FLAG,
    check_remote_code,
    load_config,
    load_tokenizer,
    read_json_file,
)
from longllada.model_args import DIFFUSION_ONLY, SAMPLER_ARGS
from longllada.rope_scaling import (
    apply_rope_scaling,
    causal_context_window,
    causal_rope_theta,
    causal_trained_length,
    is_ours,
)
from modeling_longllada import families, rope_scaling_from_args
from modeling_longllada.generation_longllada import generation_bytes_per_row
from modeling_longllada.rope_longllada import MAX_COUNT, MAX_SEED, check_number

logger = logging.getLogger(__name__)

# Sampler options accepted in --model_args (each family takes those of its entry's sampler_arguments;
# longllada.model_args names and explains every argument); they override a task's generation kwargs and are checked
# by the sampler's DiffusionGenerationConfig. temperature here beats the task's do_sample/temperature.
SAMPLER_KEYS = tuple(SAMPLER_ARGS)
# Model arguments with a meaning for the diffusion families only (a causal LM runs as --model hf does).
DIFFUSION_ONLY_KEYS = DIFFUSION_ONLY
# The results' family label of a model outside the families (run as lm-eval's --model hf runs it).
CAUSAL = "causal"
# Without max_length nothing is truncated; lm-eval still needs a number to subtract from.
NO_TRUNCATION = 2**31 - 1
# A batch holds prompts within this fraction of its longest one (the rest of the batch is left padding).
BATCH_LENGTH_SPREAD = 0.05
# Batches hold documents whose ids agree modulo this by default (batch_classes; see batch_groups): the same
# batches on up to 8 data-parallel GPUs.
PROCESS_CLASSES = 8
# from_pretrained arguments that HFLM hands through to the model's loading.
LOADING_KEYS = (
    "device_map", "attn_implementation", "low_cpu_mem_usage", "local_files_only", "cache_dir", "token", "use_kernels",
)  # fmt: skip
# Every LongLLaDALM and the model it loaded, held weakly: `longllada eval` runs several settings in one process
# and checks between them that the last one's model is gone (a GPU must not hold two 8B models).
_LIVE: weakref.WeakSet = weakref.WeakSet()


# Token ids of prompts, kept between the settings of one process (`longllada eval --model_args A --model_args B`
# evaluates one grid with many settings of a model): the fingerprint of the tokenizer that made them
# (``tokenizer_fingerprint``) and, per (SHA-256 of the prompt, special-tokens choice), its ids.
_SHARED_ENCODINGS: dict[str, Any] = {"fingerprint": None, "ids": {}}


def _shared_encodings(fingerprint: str | None) -> dict[tuple[str, tuple], array]:
    """The kept ids of the tokenizer with this fingerprint; another fingerprint starts afresh (what another tokenizer
    made is dropped); None (a slow tokenizer, no fingerprint): a dict of its own, kept by nobody."""
    if fingerprint is None:
        return {}
    if _SHARED_ENCODINGS["fingerprint"] != fingerprint:
        _SHARED_ENCODINGS.update(fingerprint=fingerprint, ids={})
    return _SHARED_ENCODINGS["ids"]


def live_models() -> int:
    """How many ``--model longllada`` objects and the models they loaded are still alive."""
    return len(_LIVE)


def _positive_int(field: str, value: Any) -> int | None:
    return None if value is None else int(check_number(field, value, minimum=1, maximum=MAX_COUNT, integer=True))


def _integer(field: str, value: Any, minimum: int = 0, maximum: int = MAX_COUNT) -> int | None:
    return None if value is None else int(check_number(field, value, minimum=minimum, maximum=maximum, integer=True))


def _batch_size(field: str, value: Any) -> int:
    """lm-eval's CLI hands ``--batch_size`` over as a string."""
    number = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number <= MAX_COUNT:
        raise ValueError(f"{field}={value!r} is not allowed; allowed: a positive integer <= {MAX_COUNT}")
    return number


def known_model_args() -> list[str]:
    """The ``--model_args`` keys that ``--model longllada`` takes: its own, HFLM's (``backend`` is fixed), and
    the loading arguments that HFLM hands to ``from_pretrained``."""
    ours = [name for name in inspect.signature(LongLLaDALM.__init__).parameters if name not in ("self", "kwargs")]
    hflm = [name for name in inspect.signature(HFLM.__init__).parameters if name not in ("self", "kwargs", "backend")]
    return sorted(set(ours) | set(hflm) | set(LOADING_KEYS))


def check_model_args(model_args: dict[str, Any]) -> tuple[families.Family | None, str | None]:
    """Every check of ``--model longllada``'s arguments that needs no weights, the constructor's own: only keys it
    takes (a near miss is named), ``pretrained``, the batch and length numbers, the RoPE arguments, the
    likelihood's numbers, no diffusion-only argument for a causal LM, and the sampler's arguments through the
    sampler's own validation with the defaults of the model's family and its generation_config.json, and that no
    code would run without ``trust_remote_code``. Only the config files are read (no code runs, no weights load),
    so ``longllada eval`` checks every setting of a sweep before the first model loads. Returns ``(family entry or
    None for a causal LM, model_type)``."""
    allowed = known_model_args()
    unknown = sorted(set(model_args) - set(allowed))
    if unknown and isinstance(model_args.get("rope_scaling"), str):
        # a JSON spec cut at its commas by lm-eval's key=value parsing leaves pieces of it as keys: name the cause
        rope_scaling_from_args(rope_scaling=model_args["rope_scaling"])
    if unknown:
        hints = {key: difflib.get_close_matches(key, allowed, n=1) for key in unknown}
        meant = "".join(f" ({key!r}: did you mean {hint[0]!r}?)" for key, hint in hints.items() if hint)
        raise ValueError(f"unknown --model_args {unknown} for --model longllada{meant}; allowed: {allowed}")
    pretrained = model_args.get("pretrained")
    if not isinstance(pretrained, str) or not pretrained:
        raise ValueError(f"pretrained={pretrained!r} is not allowed; allowed: a model name or folder (str)")
    batch_size = model_args.get("batch_size", 1)
    if str(batch_size).startswith("auto"):
        raise ValueError(
            f"batch_size={batch_size!r} is not supported by --model longllada (a diffusion step's memory "
            "depends on the output length and the cache mode); allowed: a positive integer"
        )
    _batch_size("batch_size", batch_size)
    for field in ("max_length", "max_batch_size"):
        if model_args.get(field) is not None:
            _batch_size(field, model_args[field])
    _integer("prefix_token_id", model_args.get("prefix_token_id"))
    for field in ("trust_remote_code", "greedy_check", "use_kernels"):
        if model_args.get(field) is not None and not isinstance(model_args[field], bool):
            raise ValueError(f"{field}={model_args[field]!r} is not allowed; allowed: True or False")
    if model_args.get("use_kernels") is not None and not families.transformers_has_hub_kernels():
        raise ValueError(
            f"use_kernels={model_args['use_kernels']!r} is not allowed with transformers {transformers.__version__}, "
            "which has no Hub kernels; allowed: leave it unset"
        )
    rope_scaling_from_args(model_args.get("ntk_factor"), model_args.get("ntk_target"), model_args.get("rope_scaling"))
    for field in ("mc_num", "mc_batch_size", "rolling_chunk", "batch_classes"):
        _positive_int(field, model_args.get(field))
    _integer("mc_seed", model_args.get("mc_seed"), maximum=MAX_SEED)
    location = model_location(model_args)
    try:
        config = read_json_file(pretrained, "config.json", **location)
    except OSError as err:  # no such folder, no such repo, no access
        reason = " ".join(str(err).split())
        raise ValueError(f"pretrained={pretrained!r}: its config.json could not be read ({reason})") from None
    if config is None:  # a folder without one, or a repo not downloaded while offline
        raise ValueError(
            f"pretrained={pretrained!r}: its config.json could not be read (not in the folder, or not downloaded "
            "and the Hub unreachable); allowed: a model folder or Hub id with a config.json"
        )
    family, model_type = families.family_of_config(config), config.get("model_type")
    trust_remote_code = bool(model_args.get("trust_remote_code"))
    if family is None:
        misplaced = sorted(key for key in DIFFUSION_ONLY_KEYS if model_args.get(key) is not None)
        if misplaced:
            titles = ", ".join(entry.title for entry in families.FAMILIES)
            raise ValueError(
                f"--model_args {misplaced} apply to the diffusion models ({titles}); {pretrained!r} has "
                f"model_type={model_type!r}, a causal LM that runs as lm-eval's --model hf does; allowed "
                "for it: HF's model_args and ntk_factor, ntk_target, rope_scaling"
            )
        check_remote_code(pretrained, trust_remote_code, MODEL_ARGS_FLAG, **location)
        return family, model_type
    family.check_transformers()
    sampler_args = {key: model_args[key] for key in SAMPLER_KEYS if model_args.get(key) is not None}
    misplaced = [f"{key}={sampler_args[key]!r}" for key in sampler_args if key not in family.sampler_arguments]
    if misplaced:
        raise ValueError(
            f"{', '.join(misplaced)} {'does' if len(misplaced) == 1 else 'do'} not apply to {family.title}'s sampler "
            f"({pretrained!r}); allowed: {', '.join(family.sampler_arguments)}"
        )
    parts = () if model_args.get("tokenizer") else ("tokenizer",)
    check_remote_code(pretrained, trust_remote_code, MODEL_ARGS_FLAG, parts, **location)
    if sampler_args:
        check_sampler_args(family, sampler_args, pretrained, location["revision"], location["subfolder"])
    override, scaling = rope_scaling_from_args(
        model_args.get("ntk_factor"), model_args.get("ntk_target"), model_args.get("rope_scaling")
    )
    if override and family.tool_hooks() is not None:  # what a native family's layers refuse, from its config
        config = load_config(pretrained, revision=location["revision"], subfolder=location["subfolder"])
        apply_rope_scaling(config, scaling or "none")
    return family, model_type


def model_location(model_args: dict[str, Any]) -> dict[str, Any]:
    """Where ``pretrained``'s files are: revision, subfolder and the Hub options among the model arguments."""
    return {
        "revision": model_args.get("revision") or "main",
        "subfolder": model_args.get("subfolder") or "",
        **{key: model_args[key] for key in ("token", "cache_dir", "local_files_only") if key in model_args},
    }


def _sampler_class_defaults(family: families.Family) -> dict[str, Any]:
    return dict(getattr(family.model_cls(), "sampler_defaults", {}))


def check_sampler_args(
    family: families.Family, sampler_args: dict[str, Any], pretrained: str, revision: str | None = None,
    subfolder: str | None = None,
) -> None:  # fmt: skip
    """The sampler options of ``--model_args`` checked by the sampler's own validation
    (``DiffusionGenerationConfig``; a native family's hooks, ``check_sampler_arguments``) over what generation
    will start from: the family's defaults and the model's generation_config.json (when it can be read without
    downloading). A task's generation kwargs come between the two at run time, but the options here override
    them."""
    from modeling_longllada.generation_longllada import DiffusionGenerationConfig

    def as_remasking(settings: dict[str, Any]) -> dict[str, Any]:  # Dream's name for it
        if "alg" in settings and "remasking" not in settings:
            settings = {**settings, "remasking": settings["alg"]}
            del settings["alg"]
        return settings

    data: dict[str, Any] = {}
    try:
        from transformers.utils import cached_file

        path = cached_file(pretrained, "generation_config.json", revision=revision or "main", subfolder=subfolder or "",
                           local_files_only=True, _raise_exceptions_for_missing_entries=False)  # fmt: skip
        if path:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    hooks = family.tool_hooks()
    if hooks is not None:  # a native family's sampler, checked by its own rules over the saved file
        hooks.check_sampler_arguments(dict(sampler_args), data if isinstance(data, dict) else {})
        return
    saved = {key: value for key, value in data.items() if key in SAMPLER_KEYS and value is not None}
    settings = {**_sampler_class_defaults(family), **as_remasking(saved), **as_remasking(dict(sampler_args))}
    DiffusionGenerationConfig(**settings)


def length_buckets(lengths: Sequence[int], spread: float = BATCH_LENGTH_SPREAD) -> list[list[int]]:
    """Indices of ``lengths`` grouped longest first, each group within ``spread`` of its longest length."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        if groups and lengths[index] >= (1.0 - spread) * lengths[groups[-1][0]]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def batch_groups(
    lengths: Sequence[int], doc_ids: Sequence[int | None], classes: int = PROCESS_CLASSES
) -> list[list[int]]:
    """Indices of the requests that may share a batch: the same document id modulo ``classes``, then
    :func:`length_buckets` within. A data-parallel lm-eval run hands process r of W the documents r, r + W,
    r + 2W, ...; with W dividing ``classes``, every prompt meets the same batch-mates on W processes as on one,
    and so gets the same tokens (bf16 matrix products round differently for other batch-mates)."""
    by_class: dict[int, list[int]] = {}
    for index, doc_id in enumerate(doc_ids):
        by_class.setdefault((doc_id or 0) % classes, []).append(index)
    return [
        [members[i] for i in bucket]
        for _, members in sorted(by_class.items())
        for bucket in length_buckets([lengths[i] for i in members])
    ]


def prompt_digest(text: str) -> str:
    """The digest lm-eval's samples file gives a prompt (``prompt_hash``): SHA-256 of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ids_digest(ids: Sequence[int]) -> str:
    return hashlib.sha1(array("q", ids).tobytes()).hexdigest()


def left_padding_mask(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """[B, L] mask, 0 on the leading run of ``pad_token_id`` of each row (left padding), 1 elsewhere."""
    if pad_token_id is None:
        return torch.ones_like(input_ids)
    return (input_ids != pad_token_id).long().cummax(dim=-1).values


@register_model("longllada")
class LongLLaDALM(HFLM):
    """lm-eval model ``longllada``: see the module docstring. Model arguments: HFLM's (``pretrained``, ``dtype``,
    ``device``, ``batch_size``, ``max_length``, ``tokenizer``, ...) and those of ``longllada.model_args.MODEL_ARGS``
    (their defaults and meanings; the sampler and likelihood ones apply to the diffusion families only, the RoPE
    ones to every family, see ``modeling_longllada.rope_scaling_from_args``).
    """

    def __init__(
        self,
        pretrained: str,
        steps: int | None = None,
        block_length: int | None = None,
        remasking: str | None = None,
        alg: str | None = None,
        alg_temp: float | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        eps: float | None = None,
        cfg_scale: float | None = None,
        cache: str | None = None,
        threshold: float | None = None,
        minimal_topk: int | None = None,
        eos_early_stop: bool | None = None,
        editing_threshold: float | None = None,
        max_post_steps: int | None = None,
        num_to_transfer: int | None = None,
        max_denoising_steps: int | None = None,
        t_min: float | None = None,
        t_max: float | None = None,
        entropy_bound: float | None = None,
        stability_threshold: int | None = None,
        confidence_threshold: float | None = None,
        canvas_length: int | None = None,
        mc_num: int | None = None,
        mc_batch_size: int | None = None,
        mc_seed: int | None = None,
        greedy_check: bool | None = None,
        rolling_chunk: int | None = None,
        batch_classes: int | None = None,
        ntk_factor: float | None = None,
        ntk_target: int | None = None,
        rope_scaling: str | dict | None = None,
        trust_remote_code: bool | None = None,
        batch_size: int | str = 1,
        **kwargs: Any,
    ) -> None:
        parameters = locals()  # first: only the arguments are bound yet
        given = {key: parameters[key] for key in SAMPLER_KEYS}
        own = {"mc_num": mc_num, "mc_batch_size": mc_batch_size, "mc_seed": mc_seed, "greedy_check": greedy_check,
               "rolling_chunk": rolling_chunk, "batch_classes": batch_classes, "ntk_factor": ntk_factor,
               "ntk_target": ntk_target, "rope_scaling": rope_scaling, "trust_remote_code": trust_remote_code}  # fmt: skip
        arguments = {"pretrained": pretrained, **given, **own, "batch_size": batch_size, **kwargs}
        family, self.model_type = check_model_args({k: v for k, v in arguments.items() if v is not None})
        batch_size = _batch_size("batch_size", batch_size)
        for field in ("max_length", "max_batch_size"):
            if kwargs.get(field) is not None:
                kwargs[field] = _batch_size(field, kwargs[field])
        self._rope_override = rope_scaling_from_args(ntk_factor, ntk_target, rope_scaling)
        self._ntk_target = ntk_target
        # Checked by the sampler's own validation (check_model_args); handed over as given.
        self._sampler_args = {key: value for key, value in given.items() if value is not None}
        self._family = family
        self.family = family.name if family is not None else CAUSAL
        # Recorded in the results: a relative folder means nothing to a plot made elsewhere.
        local = Path(pretrained).expanduser()
        self._model_path = str(local.resolve()) if local.is_dir() else pretrained
        self.mc_num = _positive_int("mc_num", 128 if mc_num is None else mc_num)
        self.mc_batch_size = _positive_int("mc_batch_size", 32 if mc_batch_size is None else mc_batch_size)
        self.mc_seed = _integer("mc_seed", 1234 if mc_seed is None else mc_seed, maximum=MAX_SEED)
        self.greedy_check = True if greedy_check is None else greedy_check
        self.rolling_chunk = _positive_int("rolling_chunk", 64 if rolling_chunk is None else rolling_chunk)
        self.batch_classes = _positive_int("batch_classes", PROCESS_CLASSES if batch_classes is None else batch_classes)
        # A family whose entry says so gets its prompts with BOS first (the LongLLaDA paper's runs prepend it).
        self._bos_prefix = self._family is not None and self._family.bos_prefix
        self._rope_record: dict[str, Any] = {}
        self._scaled_window: int | None = None
        self._encodings: dict[tuple[str, Any], array] = {}
        self._tokenised = 0
        self._prompt_names: dict[str, str] = {}
        self._row_limits: list[tuple[int, int]] = []  # (prompt width, rows that fit) after out-of-memory batches
        self._rank = int(os.environ.get("RANK", "0"))  # HFLM sets it later; the first timing lines come before
        self._timing("init")
        start = time.perf_counter()
        super().__init__(
            pretrained=pretrained,
            backend="causal",
            trust_remote_code=bool(trust_remote_code),
            batch_size=batch_size,
            **kwargs,
        )
        load_seconds = time.perf_counter() - start
        _LIVE.add(self)
        _LIVE.add(self._model)
        accelerator = getattr(self, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1 and self._world_size == 1:
            # HFLM splits the requests over processes only when it sees several GPUs; CPU processes
            # (ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N) get their share too.
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
        placement: dict[str, int] = {}  # a device_map model (parallelize=True): its entries per device
        for place in (getattr(self._model, "hf_device_map", None) or {}).values():
            placement[str(place)] = placement.get(str(place), 0) + 1
        self._timing("load", seconds=round(load_seconds, 3), device=str(self.device), world_size=self._world_size,
                     device_map_entries=placement or None)  # fmt: skip
        if self._family is None:
            if self._scaled_window and not self._max_length:
                scaling = self._rope_override[1]
                reason = (
                    f"ntk_target={scaling['target_length']}" if scaling.get("target_length") else
                    "the length the scaled RoPE base covers by the scaling law" if scaling["type"] == "ntk" else
                    f"trained length x dynamic factor {scaling['factor']:g}"
                )  # fmt: skip
                logger.info(
                    "longllada: max_length not given, so lm-eval's context window is the scaled one: %s tokens (%s; "
                    "trained %s)", self._scaled_window, reason, self.model.config.max_position_embeddings,
                )  # fmt: skip
            logger.info(
                "longllada: %s (model_type %r) runs as lm-eval's --model hf; RoPE %s; context window %s tokens",
                type(self.model).__name__, self.model_type, self._rope_record, self.max_length,
            )  # fmt: skip
            return
        config = self.model.config
        hooks = self._family.tool_hooks()
        summary = hooks.rope_summary(config) if hooks is not None else {}  # a native family's config, read by it
        logger.info(
            "longllada: %s, trained length %s, rope_scaling %s, window %s; sampler overrides %s; "
            "likelihood mc_num=%s; truncation %s%s",
            type(self.model).__name__,
            summary.get(
                "trained_length", getattr(config, "trained_length", getattr(config, "max_sequence_length", None))
            ),
            summary.get("scaling", getattr(config, "rope_scaling", None)),
            summary.get("context_window", getattr(config, "max_position_embeddings", None)),
            self._sampler_args or "none (generation_config)",
            self.mc_num,
            f"to {self._max_length} tokens" if self._max_length else "none",
            f"; prompts start with BOS id {self.tokenizer.bos_token_id}" if self._bos_prefix else "",
        )
        if not self.greedy_check:
            logger.info("longllada: greedy_check=False, so every loglikelihood reports is_greedy=False")

    # -- loading ---------------------------------------------------------------------------------------------
    def _get_config(self, pretrained: str, **kwargs: Any) -> None:
        # The family from config.json itself: a family's checkpoint (official ones included) loads with this
        # project's classes, never the repo's code (official code ignores the attention mask, has no likelihood).
        location = {"revision": kwargs.get("revision") or "main", "subfolder": kwargs.get("subfolder") or ""}
        if self._family is not None:
            self._config = load_config(pretrained, **location)
            self.AUTO_MODEL_CLASS = self._family.model_cls()
        else:
            import modeling_longllada  # noqa: F401  (our model types, should a causal folder name one)

            super()._get_config(pretrained, **kwargs)
        override, scaling = self._rope_override
        self._rope_record = apply_rope_scaling(self._config, (scaling or "none") if override else None)
        if self._family is None and override and scaling is not None:
            self._scaled_window = self._causal_window(scaling)

    def _create_tokenizer(self, pretrained: Any, tokenizer: Any, **kwargs: Any) -> None:
        # Through the one loading path: transformers' classes unless trust_remote_code (an official Dream repo's
        # DreamTokenizer, Qwen2.5's byte-level BPE, read by transformers' own classes).
        source = tokenizer if isinstance(tokenizer, str) else pretrained if not tokenizer else None
        if isinstance(source, str) and kwargs.get("gguf_file") is None:
            options = {"revision": kwargs.get("revision") or "main", "subfolder": kwargs.get("subfolder") or ""}
            if kwargs.get("add_bos_token") is not None:
                options["add_bos_token"] = kwargs["add_bos_token"]
            tokenizer = load_tokenizer(
                source, trust_remote_code=bool(kwargs.get("trust_remote_code")), flag=MODEL_ARGS_FLAG, **options
            )
            logger.info("longllada: tokenizer of %s: %s", source, type(tokenizer).__name__)
        super()._create_tokenizer(pretrained, tokenizer, **kwargs)

    def _causal_window(self, scaling: dict[str, Any]) -> int:
        """The context a scaled causal LM covers (see ``causal_context_window``)."""
        trained = int(self._config.max_position_embeddings)
        return causal_context_window(self._config, scaling, self._rope_record, trained)

    def _create_model(self, pretrained: str, **kwargs: Any) -> None:
        # Hand over the config carrying the RoPE override (HFLM would otherwise reload it from the folder;
        # transformers 5's from_pretrained takes no rope_theta=). A family's model class is this project's own.
        if self._family is not None:
            kwargs = self._family.from_pretrained_kwargs({**kwargs, "trust_remote_code": False})
        super()._create_model(pretrained, config=self._config, **kwargs)

    @property
    def max_length(self) -> int:
        """Diffusion models: prompts are cut from the left only when ``max_length`` is given. Causal LMs: lm-eval's
        window (``max_length``, the scaled window, or the model's own)."""
        if self._family is None:
            return self._max_length or self._scaled_window or super().max_length
        return self._max_length or NO_TRUNCATION

    def get_model_info(self) -> dict[str, Any]:
        """HFLM's model record (results JSON ``config``) plus the family, the RoPE override applied at load time,
        the loaded model's RoPE, the truncation window and whether prompts start with BOS; and what plots and
        tables read from any folder: the model's resolved path, its trained length, the context its RoPE covers
        (``longllada_context_window``) and the NTK target length (None without one)."""
        info = super().get_model_info()
        config = self.model.config
        hooks = self._family.tool_hooks() if self._family is not None else None
        if is_ours(config):
            loaded = apply_rope_scaling(config, None)
            trained, window = int(config.trained_length), int(config.rope_supported_length)
            target = (config.rope_scaling or {}).get("target_length")
        elif hooks is not None:  # a native family: its hooks read the config
            loaded = apply_rope_scaling(config, None)
            summary = hooks.rope_summary(config)
            trained, window, target = summary["trained_length"], summary["context_window"], summary["target_length"]
        else:
            loaded = {"rope_theta": causal_rope_theta(config), **apply_rope_scaling(config, None)}
            trained = causal_trained_length(config)
            window = self._scaled_window or trained
            target = (self._rope_override[1] or {}).get("target_length") if self._rope_override[0] else None
        info.update(
            longllada_family=self.family,
            longllada_model_type=self.model_type,
            longllada_model_path=self._model_path,
            longllada_rope_applied=self._rope_record if self._rope_override[0] else None,
            longllada_rope_loaded=loaded,
            longllada_trained_length=trained,
            longllada_context_window=window,
            longllada_rope_target=target,
            longllada_max_length=None if self.max_length == NO_TRUNCATION else self.max_length,
            longllada_bos_prefix=self._bos_prefix,
        )
        return info

    # -- generation ------------------------------------------------------------------------------------------
    def _timing(self, event: str, **fields: Any) -> None:
        """One ``longllada-timing {json}`` log line at DEBUG (``LONGLLADA_LOG_LEVEL=DEBUG``; the benchmarks that
        read them, such as benchmarks/niah_sweep.py, set it)."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        record = {"event": event, "rank": getattr(self, "_rank", 0), "pid": os.getpid(), "t": round(time.time(), 3),
                  **fields}  # fmt: skip
        logger.debug("longllada-timing %s", json.dumps(record))

    def _special_tokens_kwargs(self, string: str, batch: bool) -> dict[str, bool]:
        """The ``add_special_tokens`` argument HFLM's ``tok_encode`` (batch False) or ``tok_batch_encode``
        (batch True, for a batch starting with ``string``) would pass."""
        if batch:
            if has_bos_prefix(string, getattr(self.tokenizer, "bos_token", None)):
                return {"add_special_tokens": False}
            return {} if self.add_bos_token is None else {"add_special_tokens": self.add_bos_token}
        kwargs = _add_special_kwargs(None, self.add_bos_token)
        if has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            kwargs["add_special_tokens"] = False
        return kwargs

    @functools.cached_property
    def _tokenizer_fingerprint(self) -> str | None:
        return tokenizer_fingerprint(self.tokenizer)

    def _encode_once(self, contexts: Sequence[str]) -> list[int]:
        """Tokenise every prompt once, in threaded batches (see ``encode_many``), for both of HFLM's uses (its
        sort key and its batches); returns the token counts. The ids are kept for the next settings of the process
        (:func:`_shared_encodings`): a sweep's later settings tokenise nothing again."""
        shared = _shared_encodings(self._tokenizer_fingerprint)
        self._tokenised = 0  # prompts tokenised by this call (the rest came from an earlier setting)
        groups: dict[tuple, list[str]] = {}
        for text in dict.fromkeys(contexts):
            kwargs = self._special_tokens_kwargs(text, batch=False)
            if kwargs == self._special_tokens_kwargs(text, batch=True):
                groups.setdefault(tuple(sorted(kwargs.items())), []).append(text)
        for key, texts in groups.items():
            special = dict(key).get("add_special_tokens", True)
            digests = [prompt_digest(text) for text in texts]
            missing = [i for i, digest in enumerate(digests) if (digest, key) not in shared]
            self._tokenised += len(missing)
            for i, ids in zip(missing, encode_many(self.tokenizer, [texts[i] for i in missing], special=special)):
                shared[(digests[i], key)] = array("q", ids)  # 8 bytes a token, not a Python int's 36
            for text, digest in zip(texts, digests):
                self._encodings[(text, key)] = shared[(digest, key)]
                if logger.isEnabledFor(logging.DEBUG):  # names the rows of the logged outputs
                    self._prompt_names[_ids_digest(shared[(digest, key)])] = digest
        first = contexts[0]
        if super().tok_encode(first) != self._raw_encode(first):  # a tokenizer whose batches differ: no cache
            self._encodings.clear()
            shared.clear()
        return [self._token_count(text) for text in contexts]

    def _token_count(self, string: str) -> int:
        """``len(self.tok_encode(string))``, from the cache of ``_encode_once`` without a list of its ids."""
        if not self._bos_prefix and self._encodings:
            key = (string, tuple(sorted(self._special_tokens_kwargs(string, batch=False).items())))
            encoding = self._encodings.get(key)
            if encoding is not None:
                return len(encoding)
        return len(self.tok_encode(string))

    def _raw_encode(self, string: str) -> list[int]:
        """HFLM's encoding of ``string`` (from the cache of ``_encode_once`` when it holds it), before any BOS."""
        key = (string, tuple(sorted(self._special_tokens_kwargs(string, batch=False).items())))
        encoding = self._encodings.get(key) if self._encodings else None
        return super().tok_encode(string) if encoding is None else encoding.tolist()

    def _with_bos(self, ids: list[int], left_truncate_len: int | None) -> list[int]:
        """``bos_prefix`` families: ``ids`` with the tokenizer's BOS first (once), cut from the left to ``left_truncate_len``
        keeping the BOS."""
        bos = self.tokenizer.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        if left_truncate_len and len(ids) > left_truncate_len:
            ids = ids[:1] + ids[len(ids) - left_truncate_len + 1 :] if bos is not None else ids[-left_truncate_len:]
        return ids

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None, **kwargs: Any
    ) -> list[int]:
        if add_special_tokens is not None or kwargs:  # an explicit choice of special tokens is HFLM's as given
            return super().tok_encode(string, add_special_tokens, left_truncate_len, **kwargs)
        ids = self._raw_encode(string)
        if self._bos_prefix:
            return self._with_bos(ids, left_truncate_len)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_batch_encode(
        self,
        strings: list[str],
        padding_side: str = "left",
        left_truncate_len: int | None = None,
        truncation: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id
        if self._bos_prefix and pad_id is not None and not truncation:
            rows = [self.tok_encode(text, left_truncate_len=left_truncate_len) for text in strings]
        elif self._encodings and padding_side == "left" and pad_id is not None and not truncation:
            special = tuple(sorted(self._special_tokens_kwargs(strings[0], batch=True).items()))
            cached = [self._encodings.get((text, special)) for text in strings]
            if any(ids is None for ids in cached):
                return super().tok_batch_encode(strings, padding_side, left_truncate_len, truncation)
            rows = cached
            width = max(len(ids) for ids in rows)
            if left_truncate_len and width > left_truncate_len:
                logger.warning("left truncation of prompts of %s tokens to the last %s", width, left_truncate_len)
                rows = [ids[-left_truncate_len:] for ids in rows]
        else:
            return super().tok_batch_encode(strings, padding_side, left_truncate_len, truncation)
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):
            span = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
            # cached ids (int64 arrays) are copied from their buffer, without a Python int per token
            cached_ids = isinstance(ids, array) and len(ids) > 0
            input_ids[row, span] = torch.frombuffer(ids, dtype=torch.long) if cached_ids else torch.tensor(ids)
            attention_mask[row, span] = 1
        return input_ids, attention_mask

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """HFLM's ``generate_until`` over groups of prompts of similar length (each prompt tokenised once), so
        that ``batch_size`` batches a length's prompts together and never pads one length to another. A causal
        LM: HFLM's own."""
        if self._family is None:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        if not requests:
            return []
        start = time.perf_counter()
        contexts = [request.args[0] for request in requests]
        lengths = self._encode_once(contexts)
        if int(self.batch_size) > 1:
            doc_ids = [getattr(request, "doc_id", None) for request in requests]
            groups = batch_groups(lengths, doc_ids, self.batch_classes)
        else:
            groups = [list(range(len(requests)))]
        self._timing("requests", count=len(requests), tokens=sum(lengths), groups=len(groups),
                     tokenised=self._tokenised, seconds=round(time.perf_counter() - start, 3))  # fmt: skip
        gpus = self._model_gpus()
        for gpu in gpus:
            torch.cuda.reset_peak_memory_stats(gpu)
        results: list[str | None] = [None] * len(requests)
        try:
            for group in groups:
                outputs = super().generate_until([requests[i] for i in group], disable_tqdm=disable_tqdm)
                for index, output in zip(group, outputs):
                    results[index] = output
        finally:
            self._encodings.clear()
            self._prompt_names.clear()
        peaks = [round(torch.cuda.max_memory_allocated(gpu) / 2**30, 2) for gpu in gpus]
        self._timing("generated", count=len(requests), seconds=round(time.perf_counter() - start, 3),
                     peak_gib=max(peaks, default=None), peak_gib_per_gpu=peaks if len(gpus) > 1 else None)  # fmt: skip
        return results

    def _model_gpus(self) -> list[torch.device]:
        """The CUDA devices the model runs on: every GPU of its ``device_map`` (``parallelize=True`` or a
        ``device_map`` model argument), else this process's GPU; none on a CPU."""
        placement = getattr(self.model, "hf_device_map", None) or {}
        gpus = {torch.device(place) for place in placement.values() if place not in ("cpu", "disk")}
        if not gpus and self.device.type == "cuda":
            gpus = {self.device}
        gpus = {gpu for gpu in gpus if gpu.type == "cuda"}
        return sorted(gpus, key=lambda gpu: gpu.index or 0)

    def _model_generate(
        self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any
    ) -> torch.Tensor:
        if self._family is None:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        attention_mask = generation_kwargs.pop("attention_mask", None)
        if attention_mask is None:
            attention_mask = left_padding_mask(context, self.tokenizer.pad_token_id)
        attention_mask = attention_mask.to(context.device)
        rows, width = context.shape
        # Rows that fit at this width: the sampler's memory estimate, and what earlier out-of-memory batches at
        # this width or less taught.
        limit = min((fit for known, fit in self._row_limits if width >= known), default=rows)
        limit = min(limit, self._rows_that_fit(width + max(max_length - width, 0)) or rows)
        if rows > limit:
            return self._generate_in_parts(context, attention_mask, limit, max_length, stop, generation_kwargs)
        start = time.perf_counter()
        output = None
        try:
            output = self._sample(context, attention_mask, max_length, stop, generation_kwargs)
        except torch.cuda.OutOfMemoryError:
            if rows == 1:
                raise
        if output is None:
            # Retried only here, after the except block: until it ends, the error's traceback keeps the failed
            # attempt's tensors (its caches) alive, and the halves would run out of memory too.
            # A long prompt's cache may not fit a whole batch (the prefix cache keeps 0.5 MB of keys/values per
            # position of an 8B model): the halves, one after the other, give the same tokens.
            logger.warning("longllada: a batch of %s prompts of %s tokens ran out of GPU memory; splitting it "
                           "(and batches at least as wide from now on)", rows, width)  # fmt: skip
            self._row_limits.append((width, rows // 2))
            torch.cuda.empty_cache()
            return self._generate_in_parts(context, attention_mask, rows // 2, max_length, stop, generation_kwargs)
        if output.device.type == "cuda":
            torch.cuda.synchronize(output.device)
        real = attention_mask.sum(-1).tolist()
        first = context.gather(1, (attention_mask.shape[1] - attention_mask.sum(-1, keepdim=True)).clamp(max=width - 1))
        self._timing("batch", rows=context.shape[0], width=context.shape[1], prompt_tokens=real,
                     first_token_ids=first[:, 0].tolist(),
                     new_tokens=output.shape[1] - context.shape[1], seconds=round(time.perf_counter() - start, 4))  # fmt: skip
        if logger.isEnabledFor(logging.DEBUG):
            rows = [ids[len(ids) - n :] for ids, n in zip(context.tolist(), real)]
            record = {
                "rank": self._rank,
                "prompt_hashes": [self._prompt_names.get(_ids_digest(ids)) for ids in rows],
                "outputs": output[:, context.shape[1] :].tolist(),
            }
            logger.debug("longllada-outputs %s", json.dumps(record))
        return output

    def _generate_in_parts(
        self, context: torch.Tensor, attention_mask: torch.Tensor, rows: int, max_length: int, stop: list[str],
        generation_kwargs: dict[str, Any],
    ) -> torch.Tensor:  # fmt: skip
        """The batch as consecutive parts of at most ``rows`` rows, one after the other (the same tokens)."""
        return torch.cat([
            self._model_generate(context[i : i + rows], max_length, stop, attention_mask=attention_mask[i : i + rows],
                                 **generation_kwargs)
            for i in range(0, context.shape[0], rows)
        ])  # fmt: skip

    def _rows_that_fit(self, length: int) -> int | None:
        """Rows of ``length`` positions that the GPU's free memory holds by the sampler's estimate
        (``generation_bytes_per_row``, with a 10% margin), or None off CUDA and for a model spread over devices
        (``device_map``), whose memory is not one GPU's."""
        placement = getattr(self.model, "hf_device_map", None) or {}
        if self.device.type != "cuda" or len(set(placement.values())) > 1:
            return None
        hooks = self._family.tool_hooks()
        if hooks is not None:  # a native family's own estimate
            per_row = hooks.generation_bytes_per_row(self.model.config, length, self.model.dtype.itemsize)
        else:
            settings = {**self.model.generation_config.to_dict(), **self._sampler_args}
            cached = settings.get("cache") not in (None, "none")
            rows_per_prompt = 2 if (settings.get("cfg_scale") or 0) > 0 else 1  # guidance runs a doubled batch
            per_row = rows_per_prompt * generation_bytes_per_row(
                self.model.config, length, cached, self.model.dtype.itemsize
            )
        free = torch.cuda.mem_get_info(self.device)[0]
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return max(1, int(0.9 * free) // per_row)

    def _sample(
        self, context: torch.Tensor, attention_mask: torch.Tensor, max_length: int, stop: list[str],
        generation_kwargs: dict[str, Any],
    ) -> torch.Tensor:  # fmt: skip
        hooks = self._family.tool_hooks()
        if hooks is not None:
            # A native family's sampler (its arguments from --model_args; the task's temperature and do_sample do
            # not apply to it), seeded per batch since it draws at random; the task's stop strings cut the decoded
            # answers afterwards, as HFLM does for every model.
            answers = hooks.generate_answers(
                self.model, context, attention_mask, max_length - context.shape[1], self._sampler_args,
                self.tokenizer.pad_token_id, self.mc_seed,
            )  # fmt: skip
            return torch.cat([context, answers.to(context.device)], dim=1)
        settings = dict(generation_kwargs)
        temperature = float(settings.pop("temperature", 0.0) or 0.0)
        do_sample = settings.pop("do_sample", None)
        if do_sample is None:
            do_sample = temperature > 0
        if do_sample and temperature == 0.0:
            temperature = 1.0  # HF's meaning of do_sample without a temperature
        sampling: dict[str, Any] = {"temperature": temperature if do_sample else 0.0, "do_sample": bool(do_sample)}
        overrides = dict(self._sampler_args)
        if "temperature" in overrides:  # --model_args beat the task: sample at that temperature (0: greedy)
            sampling = {"temperature": overrides.pop("temperature")}
        settings.update(overrides)
        # Seeded always: sampling draws, and Dream's "origin" commits positions at random even when greedy.
        generator = torch.Generator(device=self.device).manual_seed(self.mc_seed)
        stopping_criteria = stop_sequences_criteria(self.tokenizer, stop, context.shape[1], context.shape[0])
        return self.model.generate(
            input_ids=context,
            attention_mask=attention_mask,
            max_new_tokens=max_length - context.shape[1],
            stopping_criteria=stopping_criteria,
            pad_token_id=self.tokenizer.pad_token_id,
            generator=generator,
            **sampling,
            **settings,
        )

    # -- likelihoods -----------------------------------------------------------------------------------------
    def _require_likelihood(self) -> None:
        if not self._family.likelihood:
            raise ValueError(
                f"{self._family.likelihood_refusal()}; so loglikelihood tasks cannot score them; allowed: generation "
                "tasks (longllada_niah, longllada_ruler, longllada_longbench)"
            )

    def _generator(self) -> torch.Generator:
        # The estimator draws its masks on the CPU; one seed per request makes scores independent of order.
        return torch.Generator(device="cpu").manual_seed(self.mc_seed)

    def _elbo(self, context: list[int], continuation: list[int]) -> float:
        if self._max_length:
            if len(continuation) >= self._max_length:
                raise ValueError(
                    f"a continuation of {len(continuation)} tokens does not fit max_length={self._max_length}; "
                    "allowed: raise max_length or leave it unset (no truncation)"
                )
            context = context[-(self._max_length - len(continuation)) :]
        log_likelihood, _ = self.model.log_likelihood(
            context,
            continuation,
            mc_num=self.mc_num,
            batch_size=self.mc_batch_size,
            cfg_scale=self._sampler_args.get("cfg_scale", 0.0),
            generator=self._generator(),
        )
        return log_likelihood

    def _is_greedy(self, context: list[int], continuation: list[int]) -> bool:
        """Whether greedy decoding reproduces the continuation: the sampler at temperature 0, one token per
        step, low-confidence remasking, over one block exactly as long as the continuation."""
        n = len(continuation)
        output = self.model.generate(
            torch.tensor([context], dtype=torch.long, device=self.device),
            attention_mask=torch.ones(1, len(context), dtype=torch.long, device=self.device),
            max_new_tokens=n,
            steps=n,
            block_length=n,
            remasking=self._family.greedy_remasking,  # the most confident position first
            temperature=0.0,
            do_sample=False,
            cfg_scale=self._sampler_args.get("cfg_scale", 0.0),
            cache="none",
            threshold=None,
        )
        return output[0, len(context) :].tolist() == list(continuation)

    def _loglikelihood_tokens(
        self,
        requests: list[tuple[tuple[str, str] | None, list[int], list[int]]],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        if self._family is None:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        self._require_likelihood()
        results: list[tuple[float, bool]] = []
        seen: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[float, bool]] = {}
        for key, context, continuation in tqdm(
            requests, disable=disable_tqdm or self.rank != 0, desc="Running loglikelihood requests (diffusion)"
        ):
            if not continuation:
                raise ValueError(f"an empty continuation cannot be scored (request {key!r}); give at least one token")
            signature = (tuple(context), tuple(continuation))
            if signature not in seen:
                greedy = self._is_greedy(context, continuation) if self.greedy_check else False
                seen[signature] = (self._elbo(context, continuation), greedy)
            results.append(seen[signature])
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, seen[signature])
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Chunked ELBO: chunks of ``rolling_chunk`` tokens, each given every earlier token (and the prefix
        token), summed. Each term bounds its chunk's log-likelihood from below, so the sum bounds the document's.
        A causal LM: HFLM's own (exact next-token likelihoods over rolling windows)."""
        if self._family is None:
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        self._require_likelihood()
        totals = []
        for request in tqdm(requests, disable=disable_tqdm or self.rank != 0, desc="Running rolling loglikelihood"):
            (text,) = request.args
            tokens = self.tok_encode(text, add_special_tokens=False)
            total = 0.0
            for start in range(0, len(tokens), self.rolling_chunk):
                chunk = tokens[start : start + self.rolling_chunk]
                total += self._elbo([self.prefix_token_id] + tokens[:start], chunk)
            totals.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return totals
