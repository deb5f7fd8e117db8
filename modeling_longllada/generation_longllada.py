"""The masked-diffusion sampler of LLaDA, Dream and LLaDA2 as ``model.generate()``, with Fast-dLLM's caches and the
exact block-diffusion cache.

One loop serves every family and every mode. The answer starts as masks and is filled block by block, left to
right; within a block each step predicts every masked position and commits some of the predictions:

- LLaDA (Nie et al. 2025, arXiv 2502.09992, §2.4): ``n // s`` tokens a step (the first ``n % s`` steps one more),
  the most confident first (``remasking="low_confidence"``) or at random (``"random"``); Gumbel-max sampling.
- Dream (Ye et al. 2025, arXiv 2508.15487): Dream's timestep schedule, confidence by ``alg`` (``maskgit_plus``,
  ``topk_margin``, ``entropy``; ``origin`` commits at random); top-p/top-k categorical sampling. Dream's logits
  are shifted (position i predicts token i + 1); the model says so with ``logits_shifted``.
- Fast-dLLM (Wu et al. 2025, arXiv 2505.22618): ``cache="prefix"``/``"dual"`` reuse the block's first pass for
  its later steps; ``threshold`` commits every prediction above it (at least one a step).
- LLaDA2.0 (arXiv 2512.15745) and LLaDA2.1 (arXiv 2602.08676), block diffusion (Arriola et al. 2025, arXiv
  2503.09573): blocks counted from each prompt's first token, attention block-causal; each step commits every
  prediction above ``threshold``, at least the schedule's count; LLaDA2.1 also edits placed tokens. A block never
  sees later ones, so its keys and values are final once it is: ``cache="prefix"`` keeps them, exactly.

Each family's rule is a small object (:class:`LLaDARule`, :class:`DreamRule`, :class:`LLaDA2Rule`: predictions,
confidences, which masks a step commits), chosen once per call from the model class (``sampler_rule``) and the
settings, with its schedule injected (:class:`TransferSchedule`, :class:`TimestepSchedule`, or
:class:`ThresholdSchedule` when a threshold is set). A rule also lays out the sequence it denoises (its canvas:
:class:`AnswerCanvas`, the answer after the prompts; :class:`BlockAlignedCanvas` for block diffusion) and says
what computes its logits. One loop runs every rule and cache mode.

Only the active block's logits are computed (``logits_to_keep``); nothing of size [B, L, V] exists (except for
Dream's hooks, which see every position, as in its official sampler). Settings and their validation live in
:class:`DiffusionGenerationConfig`; the forward passes, caches and CUDA graphs behind one object,
:class:`BlockDenoiser` (:class:`BlockCausalDenoiser` for block diffusion).

Copied flat into Hub model repos: imports only torch and transformers.
"""

from __future__ import annotations

import inspect
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

from .rope_longllada import MAX_COUNT, MAX_SCALE, check_number

logger = logging.get_logger(__name__)

CACHE_MODES = ("none", "prefix", "dual")

# The sampler's own settings and their defaults (LLaDA's; a model class may override them, as Dream's does).
SAMPLER_DEFAULTS: dict[str, Any] = {
    "steps": None,  # None: one token per step (LLaDA's needle setup)
    "block_length": 32,  # None: the whole answer is one block (Dream's diffusion_generate)
    "remasking": "low_confidence",
    "cfg_scale": 0.0,
    "cache": "none",
    "threshold": None,
    "logits_eos_inf": False,
    "confidence_eos_eot_inf": False,
}
_OTHER_FIELDS: dict[str, Any] = {
    "alg_temp": None,
    "eps": 1e-3,
    "eot_token_id": None,
    "mask_token_id": None,
    "cuda_graph": True,
    "output_history": False,
    "progress": None,
}
# The settings of the block-diffusion samplers (LLaDA2.0, LLaDA2.1), the official `generate`'s names; None: not
# given (the other rules refuse them).
BLOCK_DIFFUSION_SETTINGS: dict[str, Any] = {
    "minimal_topk": None,
    "eos_early_stop": None,
    "editing_threshold": None,
    "max_post_steps": None,
    "num_to_transfer": None,
}
_OTHER_FIELDS.update(BLOCK_DIFFUSION_SETTINGS)
# Settings whose None means something (one block, one step per token, no threshold, no editing): an explicit None
# counts.
NULLABLE = frozenset({"steps", "block_length", "threshold", "alg_temp", "editing_threshold"})
# LLaDA2's sampler defaults, the official `generate`'s (block 32, 32 steps a block, threshold 0.95), with the exact
# block-diffusion key/value cache; LLaDA2.1's editing sampler runs when editing_threshold is set (its official
# default 0.9 is written into the generation_config.json of LLaDA2.1 repos).
LLADA2_DEFAULTS: dict[str, Any] = {
    "steps": 32,
    "block_length": 32,
    "remasking": "confidence_threshold",
    "cfg_scale": 0.0,
    "cache": "prefix",
    "threshold": 0.95,
    "logits_eos_inf": False,
    "confidence_eos_eot_inf": False,
    "minimal_topk": 1,
    "eos_early_stop": False,
    "max_post_steps": 16,
    "num_to_transfer": 1,
}
# Dream's diffusion_generate(): the whole answer as one block, Dream's defaults.
DREAM_DEFAULTS: dict[str, Any] = {"steps": 512, "block_length": None, "remasking": "origin", "eps": 1e-3}
# HF generate() arguments with no meaning for a diffusion sampler, accepted and ignored (lm-eval passes some).
IGNORED_HF_KWARGS = frozenset(
    {"use_cache", "num_beams", "output_scores", "output_logits", "output_attentions", "output_hidden_states",
     "synced_gpus", "streamer", "tokenizer", "num_return_sequences", "repetition_penalty"}
)  # fmt: skip
# A progress bar (and a log line) for generations that run more token-positions than this through the model.
PROGRESS_MIN_WORK = 1 << 26


class DiffusionGenerationConfig(GenerationConfig):
    """Settings of the diffusion sampler: transformers' ``GenerationConfig`` plus

    steps (total denoising steps; None: one per token; LLaDA2: steps a block), block_length (None: one block),
    remasking (LLaDA's ``low_confidence``/``random``, Dream's ``origin``/``maskgit_plus``/``topk_margin``/
    ``entropy``, LLaDA2's ``confidence_threshold``; ``alg`` is Dream's name for it), alg_temp, eps (Dream's final
    timestep), cfg_scale, cache (``none``/``prefix``/``dual``), threshold, logits_eos_inf,
    confidence_eos_eot_inf, eot_token_id, mask_token_id, cuda_graph, output_history, progress (None: a bar when
    the work is long); LLaDA2's minimal_topk, eos_early_stop, editing_threshold (LLaDA2.1's editing sampler when
    set), max_post_steps and num_to_transfer. ``temperature``, ``top_p``, ``top_k``, ``max_new_tokens`` and
    ``max_length`` are transformers' own fields.

    :meth:`validate` checks every field's type, range and finiteness, naming the field, the value and what is
    allowed; it runs when the config is built.
    """

    def __init__(self, **kwargs: Any):
        alg = kwargs.pop("alg", None)
        if alg is not None:
            if kwargs.get("remasking") not in (None, alg):
                raise ValueError(f"alg={alg!r} and remasking={kwargs['remasking']!r} disagree; give one of them")
            kwargs["remasking"] = alg
        for name, default in {**SAMPLER_DEFAULTS, **_OTHER_FIELDS}.items():
            setattr(self, name, kwargs.pop(name, default))
        # transformers 4 fills temperature 1.0, top_p 1.0, top_k 50 and max_length 20 in; the sampler takes only
        # what is given.
        sampling = {name: kwargs.get(name) for name in ("temperature", "top_p", "top_k", "max_length")}
        self._ready = False
        super().__init__(**kwargs)
        self.__dict__.update(sampling, _ready=True)
        self.validate()

    @property
    def alg(self) -> str:
        """Dream's name for ``remasking``."""
        return self.remasking

    def validate(self, *args: Any, **kwargs: Any) -> None:
        """Check the sampler's fields (transformers' other fields are not used by the sampler)."""
        if not self.__dict__.get("_ready", True):  # called by transformers' __init__ before our fields are final
            return
        _choice("remasking", self.remasking, REMASKING)
        _choice("cache", self.cache, CACHE_MODES)
        for name in ("steps", "block_length", "max_new_tokens", "max_length", "minimal_topk", "num_to_transfer"):
            check_number(name, getattr(self, name), minimum=1, maximum=MAX_COUNT, integer=True, optional=True)
        for name in ("top_k", "max_post_steps"):
            check_number(name, getattr(self, name), minimum=0, maximum=MAX_COUNT, integer=True, optional=True)
        for name in ("temperature", "alg_temp"):
            check_number(name, getattr(self, name), minimum=0, maximum=MAX_SCALE, optional=True)
        check_number("cfg_scale", self.cfg_scale, minimum=0, maximum=MAX_SCALE)
        for name in ("threshold", "editing_threshold"):
            check_number(name, getattr(self, name), minimum=0, maximum=1, optional=True)
        check_number("top_p", self.top_p, minimum=0, maximum=1, inclusive=False, optional=True)
        check_number("eps", self.eps, minimum=0, maximum=1, inclusive=False)
        if self.eos_early_stop is not None and not isinstance(self.eos_early_stop, bool):
            raise ValueError(f"eos_early_stop={self.eos_early_stop!r} is not allowed; allowed: True, False or None")
        for name in ("mask_token_id", "eos_token_id", "pad_token_id", "eot_token_id"):
            value = getattr(self, name, None)
            if not isinstance(value, (list, tuple)):
                check_number(name, value, minimum=0, maximum=MAX_COUNT, integer=True, optional=True)
        for name in ("logits_eos_inf", "confidence_eos_eot_inf", "cuda_graph", "output_history"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed; allowed: True or False")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ValueError(f"progress={self.progress!r} is not allowed; allowed: None, True or False")
        rule_implementing(self.remasking).validate(self)

    @classmethod
    def resolve(cls, model: Any, generation_config: GenerationConfig | None, kwargs: dict) -> DiffusionGenerationConfig:
        """The settings of one call: the model class's defaults < the model's generation_config < the argument
        ``generation_config`` < keyword arguments. Only values set explicitly in a config count, so transformers'
        defaults (temperature 1.0, top_k 50 on 4.x) never leak in.

        transformers' convention decides sampling: ``do_sample=False`` is greedy; an explicit ``temperature``
        without ``do_sample`` samples (the official samplers' convention)."""
        known = {*SAMPLER_DEFAULTS, *_OTHER_FIELDS, "alg", "temperature", "top_p", "top_k", "do_sample",
                 "max_new_tokens", "max_length", "eos_token_id", "pad_token_id", "return_dict_in_generate"}  # fmt: skip
        unknown = set(kwargs) - known - IGNORED_HF_KWARGS
        if unknown:
            raise ValueError(
                f"generate() got unsupported arguments {sorted(unknown)}; the diffusion sampler takes "
                f"{sorted(known)} (and ignores {sorted(IGNORED_HF_KWARGS)})"
            )
        kwargs = _alg_as_remasking(kwargs)
        settings: dict[str, Any] = {**getattr(model, "sampler_defaults", SAMPLER_DEFAULTS)}
        for name in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id"):
            settings[name] = getattr(model.config, name, None)
        model_config = getattr(model, "generation_config", None)
        for source in (model_config, generation_config):
            if source is None:
                continue
            explicit = _alg_as_remasking(source.to_diff_dict())
            if source is model_config:  # HF's default output length of 20 is no request for one
                explicit.pop("max_length", None)
            settings.update({k: v for k, v in explicit.items() if k in known and (v is not None or k in NULLABLE)})
        settings.update({k: v for k, v in kwargs.items() if k in known and (v is not None or k in NULLABLE)})
        if kwargs.get("do_sample") is False or ("temperature" not in kwargs and not settings.get("do_sample")):
            settings["temperature"] = 0.0
        elif settings.get("temperature") is None:  # do_sample=True alone: transformers' default temperature
            settings["temperature"] = 1.0
        settings.pop("do_sample", None)
        for name in ("eos_token_id", "pad_token_id"):
            if isinstance(settings.get(name), (list, tuple)):
                settings[name] = settings[name][0] if settings[name] else None
        if settings.get("mask_token_id") is None:
            raise ValueError("mask_token_id is not set: give it, or set it in the model config")
        if settings.get("remasking") in REMASKING:  # before the rule's own checks, which would name a symptom
            _check_rule_kind(model, settings["remasking"])
        return cls(**settings)


def _alg_as_remasking(settings: dict) -> dict:
    """Dream's ``alg`` under its name here, ``remasking``."""
    if settings.get("alg") is None:
        return {k: v for k, v in settings.items() if k != "alg"}
    if settings.get("remasking") not in (None, settings["alg"]):
        raise ValueError(f"alg={settings['alg']!r} and remasking={settings['remasking']!r} disagree; give one of them")
    return {**{k: v for k, v in settings.items() if k != "alg"}, "remasking": settings["alg"]}


def _choice(field: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not allowed; allowed: {list(allowed)}")


@dataclass
class DiffusionGenerateOutput(ModelOutput):
    """``generate(..., return_dict_in_generate=True)``: sequences [B, prompt + new], the number of model forward
    passes (a classifier-free-guidance pass over the doubled batch counts once) and, with ``output_history``,
    the sequences after every step."""

    sequences: torch.LongTensor | None = None
    num_forward_passes: int | None = None
    history: tuple[torch.LongTensor, ...] | None = None


# -- schedules: what each step of a block commits ---------------------------------------------------------------


def transfer_schedule(n_masked: int, steps: int) -> list[int]:
    """LLaDA: tokens to commit at each of ``steps`` steps for ``n_masked`` masks, n // s each, the first n % s
    one more."""
    base, extra = divmod(n_masked, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def timestep_schedule(n_masked: int, steps: int, eps: float) -> tuple[list[int], list[float]]:
    """Dream: timesteps t_i = linspace(1, eps, steps + 1); step i commits int(remaining × (1 − s/t)) masks (all
    that remain at the last step), computed in float32 as Dream's sampler does. Returns those counts and the
    ratios 1 − s/t (1 at the last step), which are also ``alg="origin"``'s per-position commit probabilities."""
    t = torch.linspace(1, eps, steps + 1)
    counts, probabilities, remaining = [], [], n_masked
    for i in range(steps):
        ratio = 1 - t[i + 1] / t[i]
        last = i == steps - 1
        n = remaining if last else int(torch.tensor(remaining, dtype=torch.float32) * ratio)
        counts.append(n)
        probabilities.append(1.0 if last else float(ratio))
        remaining -= n
    return counts, probabilities


@dataclass(frozen=True)
class BlockSchedule:
    """The plan of one block's steps. counts: masks each step commits (the most confident, or drawn); ratios:
    Dream's 1 − s/t per step (``origin`` commits each mask with that probability); threshold: instead of counts,
    every prediction whose confidence exceeds it, at least the most confident one, until the block is full (the
    steps then stop early)."""

    counts: tuple[int, ...]
    ratios: tuple[float, ...] | None = None
    threshold: float | None = None

    @property
    def steps(self) -> int:
        return len(self.counts)


class TransferSchedule:
    """LLaDA's schedule (Nie et al. 2025, §2.4): ``steps`` capped at the output length and split evenly over the
    blocks (rounded up); within a block n // s tokens a step, the first n % s steps one more."""

    def __init__(self, steps: int | None):
        self.steps = steps

    def block(self, block_length: int, num_blocks: int) -> BlockSchedule:
        total = num_blocks * block_length
        steps = min(self.steps or total, total)
        return BlockSchedule(tuple(transfer_schedule(block_length, math.ceil(steps / num_blocks))))


class TimestepSchedule:
    """Dream's schedule (Ye et al. 2025): ``steps`` split evenly over the blocks, each block's steps following
    the timesteps linspace(1, eps, steps + 1) (see :func:`timestep_schedule`)."""

    def __init__(self, steps: int | None, eps: float):
        self.steps, self.eps = steps, eps

    def block(self, block_length: int, num_blocks: int) -> BlockSchedule:
        per_block = max(1, (self.steps or num_blocks * block_length) // num_blocks)
        counts, ratios = timestep_schedule(block_length, per_block, self.eps)
        return BlockSchedule(tuple(counts), tuple(ratios))


class ThresholdSchedule:
    """Fast-dLLM's confidence-threshold parallel decoding (Wu et al. 2025): each step commits every prediction
    whose confidence exceeds ``threshold``, at least the most confident one, so a block takes at most
    ``block_length`` steps and stops as soon as it is full. It replaces the rule's own schedule (``steps`` then
    does not apply)."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def block(self, block_length: int, num_blocks: int) -> BlockSchedule:
        return BlockSchedule((1,) * block_length, threshold=self.threshold)


# -- the canvas: the sequence a generation denoises, its blocks and its output ------------------------------


class AnswerCanvas:
    """The sequence a bidirectional sampler denoises (LLaDA, Dream): the left-padded prompts, then the answer as masks
    rounded up to whole blocks. Every row's answer starts at the same column (the prompts' width) and the blocks are
    counted from there. x [B, P + blocks × block_length]; attention_mask covers it (1 past the prompts)."""

    def __init__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, gen_length: int,
        s: DiffusionGenerationConfig,
    ):  # fmt: skip
        # A block longer than the answer would only add masks that are never answered: clip it.
        self.block_length = min(s.block_length or gen_length, gen_length)
        self.num_blocks = math.ceil(gen_length / self.block_length)
        rows = input_ids.shape[0]
        self.x = torch.cat(
            (input_ids, input_ids.new_full((rows, self.num_blocks * self.block_length), s.mask_token_id)), 1
        )
        self.attention_mask = torch.cat(
            (attention_mask, attention_mask.new_ones(rows, self.x.shape[1] - prompt_len)), 1
        )
        self.prompt_len, self.gen_length = prompt_len, gen_length

    def span(self, block: int) -> tuple[int, int]:
        """The columns [start, end) of ``block``."""
        return self.prompt_len + block * self.block_length, self.prompt_len + (block + 1) * self.block_length

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """The sequences as ``generate`` returns them (here the canvas itself, blocks' rounding included)."""
        return x

    def stopped(self, x: torch.Tensor, block: int, s: DiffusionGenerationConfig, stopping_criteria) -> torch.Tensor:
        """Rows [B] whose answer so far holds EOS or met a stopping criterion at a position of ``block``."""
        start, end = self.span(block)
        stopped = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        if s.eos_token_id is not None:
            stopped |= (x[:, self.prompt_len : end] == s.eos_token_id).any(-1)
        if stopping_criteria is not None:
            for pos in range(start + 1, end + 1):
                stopped |= torch.as_tensor(stopping_criteria(x[:, :pos], None), device=x.device).bool()
        return stopped

    def finish_early(self, x: torch.Tensor, block: int, s: DiffusionGenerationConfig) -> None:
        """Every row has stopped after ``block``: the rest of the canvas becomes EOS (or PAD)."""
        x[:, self.span(block)[1] :] = s.eos_token_id if s.eos_token_id is not None else s.pad_token_id

    def output(self, x: torch.Tensor, s: DiffusionGenerationConfig) -> torch.Tensor:
        """[B, P + gen_length]: the prompts and the answers."""
        return x[:, : self.prompt_len + self.gen_length]


class BlockAlignedCanvas:
    """The sequence a block-diffusion sampler denoises (LLaDA2), each row as the official ``generate`` lays it out
    alone: its prompt, then masks up to a whole number of blocks covering prompt + answer, blocks counted from the
    row's first token (the blocks wholly inside the prompt are never denoised; the one holding the prompt's tail
    is).

    Left-padded rows are re-padded by whole blocks: with blocks of b positions, row i (P_i real tokens) starts at
    column b·(K − ⌊P_i/b⌋), K the most whole prompt blocks of any row, so that every row's first block with an answer
    position starts at column K·b, and each row keeps its own block boundaries and positions (0 at its first
    token). Rows may need different numbers of blocks; a row past its last block is frozen. Padding columns are
    masked keys.

    x, attention_mask, position_ids: [B, W], W = b·(K + num_blocks); answer_start [B]: each row's first answer
    column."""

    def __init__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, gen_length: int,
        s: DiffusionGenerationConfig,
    ):  # fmt: skip
        block = self.block_length = int(s.block_length)
        real_prompt = attention_mask.bool()
        lengths = real_prompt.sum(-1)  # [B]
        whole = lengths // block
        prompt_blocks = int(whole.max())
        self.pad = block * (prompt_blocks - whole)  # [B]
        self.row_blocks = (lengths + gen_length + block - 1) // block - whole  # [B] blocks each row denoises
        self.num_blocks = int(self.row_blocks.max())
        self.first_column = prompt_blocks * block
        width = block * (prompt_blocks + self.num_blocks)
        columns = torch.arange(width, device=input_ids.device)[None]
        self.answer_start = self.pad + lengths
        real = columns >= self.pad[:, None]
        x = input_ids.new_full((input_ids.shape[0], width), s.mask_token_id)
        x[real & (columns < self.answer_start[:, None])] = input_ids[real_prompt]
        padding = next((t for t in (s.pad_token_id, s.eos_token_id) if t is not None), 0)
        self.x = x.masked_fill(~real, padding)
        self.attention_mask = real.long()
        self.position_ids = (columns - self.pad[:, None]).clamp_min(0)
        self.input_ids, self.prompt_len, self.gen_length = input_ids, prompt_len, gen_length
        self._answer_index = self.answer_start[:, None] + torch.arange(gen_length, device=input_ids.device)

    def span(self, block: int) -> tuple[int, int]:
        """The columns [start, end) of the ``block``-th block denoised (the same for every row)."""
        start = self.first_column + block * self.block_length
        return start, start + self.block_length

    def active_rows(self, block: int, done: torch.Tensor) -> torch.Tensor:
        """Rows [B] that denoise ``block``: not stopped, and not past their last block."""
        return ~done & (block < self.row_blocks)

    def answer_positions(self, start: int, end: int) -> torch.Tensor:
        """[B, end - start]: which columns of [start, end) belong to each row's answer (not its prompt)."""
        return torch.arange(start, end, device=self.x.device)[None] >= self.answer_start[:, None]

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """[B, P + gen_length]: the prompts as given (left-padded), then each row's answer so far."""
        return torch.cat((self.input_ids, x.gather(1, self._answer_index)), 1)

    def stopped(self, x: torch.Tensor, block: int, s: DiffusionGenerationConfig, stopping_criteria) -> torch.Tensor:
        """Rows [B] whose answer up to the end of ``block`` holds EOS (the official rule: after a block whose
        generated part holds an EOS), or met a stopping criterion at an answer position of ``block``."""
        start, end = self.span(block)
        stopped = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        if s.eos_token_id is not None:
            columns = torch.arange(end, device=x.device)[None]
            in_answer = columns >= self.answer_start[:, None]
            stopped |= ((x[:, :end] == s.eos_token_id) & in_answer).any(-1)
        if stopping_criteria is not None:
            before = (start - self.answer_start).clamp(0, self.gen_length)  # [B] answer tokens before the block
            after = (end - self.answer_start).clamp(0, self.gen_length)
            view = self.view(x)
            for n in range(int(before.min()) + 1, int(after.max()) + 1):
                hit = torch.as_tensor(stopping_criteria(view[:, : self.prompt_len + n], None), device=x.device).bool()
                stopped |= hit & (before < n) & (n <= after)
        return stopped

    def finish_early(self, x: torch.Tensor, block: int, s: DiffusionGenerationConfig) -> None:
        """Every row has stopped: :meth:`output` fills what was left undecoded."""

    def output(self, x: torch.Tensor, s: DiffusionGenerationConfig) -> torch.Tensor:
        """[B, P + gen_length]: the prompts as given, then each answer as the official ``generate`` returns it (up to
        its first EOS), filled up with EOS (or PAD) after it and where a stopped row was never decoded."""
        answer = x.gather(1, self._answer_index)
        fill = s.eos_token_id if s.eos_token_id is not None else s.pad_token_id
        if fill is not None:
            if s.eos_token_id is not None:
                is_eos = answer == s.eos_token_id
                answer = answer.masked_fill(is_eos.cumsum(-1) - is_eos.long() > 0, fill)
            answer = answer.masked_fill(answer == s.mask_token_id, fill)
        return torch.cat((self.input_ids, answer), 1)


# -- the rules: predictions, confidences, and which masks a step commits --------------------------------------


def add_gumbel_noise(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """LLaDA's sampling scores, whose argmax is the draw: the official exp(logits) / (-log u) ** temperature, taken
    as its logarithm logits - temperature * log(-log u) in float64 (the same argmax; the official quotient
    overflows or underflows to inf past a temperature of about 19, or logits past 709, and its argmax then picks
    the lowest token id among the infinities). Identity at temperature 0."""
    if temperature == 0:
        return logits
    u = _rand(logits.shape, generator, logits.device, torch.float64)
    return logits.to(torch.float64) - temperature * torch.log(-torch.log(u))


def _rand(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    """Uniform draws on the generator's device, moved to ``device`` (reproducible on CPU and GPU alike)."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source, dtype=dtype).to(device)


def top_p_top_k(logits: torch.Tensor, top_p: float | None, top_k: int | None) -> torch.Tensor:
    """Dream's filtering: keep the smallest set of tokens whose probability reaches ``top_p``, then the ``top_k``
    largest; the rest get -inf. logits [..., V]."""
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative > top_p
        drop[..., 1:] = drop[..., :-1].clone()  # keep the token that crosses top_p
        drop[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -torch.inf)
    if top_k:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    return logits


def _ranking(confidence: torch.Tensor, is_masked: torch.Tensor) -> torch.Tensor:
    """The order in which masked positions commit: their confidence, unmasked positions last of all. A masked
    position whose confidence is -inf (``confidence_eos_eot_inf``) or NaN still ranks before every unmasked one,
    so a step commits the masks it promises, never an already committed position in their place."""
    floor = torch.finfo(confidence.dtype).min
    masked = torch.nan_to_num(confidence, nan=floor, neginf=floor)
    return masked.masked_fill(~is_masked, -torch.inf)


class SamplerRule(ABC):
    """One family's rule for a denoising step: the predictions and their confidences (:meth:`predict`) and which
    masked positions of the block a step commits (:meth:`choose`), with the schedule (how many, or by threshold)
    injected. ``algorithms`` are the ``remasking`` values (Dream: ``alg``) it implements; a threshold applies to
    those in ``threshold_algorithms`` (confidences in [0, 1])."""

    name: str = ""
    algorithms: tuple[str, ...] = ()
    threshold_algorithms: tuple[str, ...] = ()
    # Settings that belong to another rule, refused here (named with the rule's algorithms in the error).
    foreign_settings: tuple[str, ...] = ()
    # A block-diffusion rule: the block-aligned canvas and block-causal passes. A model runs the rules of its own
    # kind only (its ``sampler_rule`` names one): bidirectional models and block-diffusion ones do not mix.
    block_diffusion: bool = False

    def __init__(self, settings: DiffusionGenerationConfig, schedule: Any):
        self.s, self.schedule = settings, schedule

    @classmethod
    @abstractmethod
    def own_schedule(cls, s: DiffusionGenerationConfig) -> Any:
        """The rule's schedule for these settings (a threshold replaces it: see :meth:`for_settings`)."""

    @classmethod
    def for_settings(cls, s: DiffusionGenerationConfig) -> SamplerRule:
        """This rule with its schedule, or Fast-dLLM's :class:`ThresholdSchedule` when ``threshold`` is set."""
        schedule = ThresholdSchedule(s.threshold) if s.threshold is not None else cls.own_schedule(s)
        return cls(s, schedule)

    @classmethod
    def validate(cls, s: DiffusionGenerationConfig) -> None:
        for name in cls.foreign_settings:
            if getattr(s, name) is not None:
                owner = _rule_owning(name)
                raise ValueError(
                    f"{name}={getattr(s, name)!r} applies to {owner.name}'s algorithms {list(owner.algorithms)}, not "
                    f"to remasking={s.remasking!r}; allowed with it: None"
                )
        if s.threshold is not None and s.remasking not in cls.threshold_algorithms:
            raise ValueError(
                f"threshold={s.threshold!r} needs a confidence in [0, 1], which remasking={s.remasking!r} does "
                f"not give; allowed with threshold: {list(THRESHOLD_REMASKING)}"
            )

    # -- the generation's layout, plan and passes (a block-diffusion rule has its own) ---------------------------

    def canvas(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, gen_length: int):
        """The sequence this rule denoises: the prompts then the answer (:class:`AnswerCanvas`)."""
        return AnswerCanvas(input_ids, attention_mask, prompt_len, gen_length, self.s)

    def plan(self, canvas: Any) -> BlockSchedule:
        """The plan of every block's steps, from the schedule."""
        return self.schedule.block(canvas.block_length, canvas.num_blocks)

    def denoiser(self, model: Any, canvas: Any) -> Any:
        """What computes each step's logits (:class:`BlockDenoiser`)."""
        return BlockDenoiser(model, self.s, canvas.attention_mask, canvas.prompt_len)

    def begin_block(self, canvas: Any, block: int, done: torch.Tensor) -> None:  # noqa: B027 (a hook; no state here)
        """Called before a block's first step; ``done`` [B]: rows that have stopped (they run on here)."""

    def block_finished(self, x_block: torch.Tensor, plan: BlockSchedule) -> bool:
        """After a step: whether the block needs no further one (with a threshold, once it has no mask)."""
        return plan.threshold is not None and not bool((x_block == self.s.mask_token_id).any())

    # -- a step ----------------------------------------------------------------------------------------------

    @abstractmethod
    def predict(self, logits: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """logits [B, N, V] of the block -> (predictions [B, N], confidences [B, N])."""

    def choose(
        self, confidence: torch.Tensor, is_masked: torch.Tensor, k: int, plan: BlockSchedule, step: int, generator
    ) -> torch.Tensor:
        """Which masked positions [B, N] this step commits: every one above the threshold (at least the best),
        or the k most confident."""
        ranking = _ranking(confidence, is_masked)
        chosen = torch.zeros_like(is_masked)
        if plan.threshold is not None:
            chosen.scatter_(1, ranking.argmax(-1, keepdim=True), True)  # at least the best one
            return is_masked & (chosen | (confidence > plan.threshold))
        if k == 0:
            return chosen
        return is_masked & chosen.scatter(1, ranking.topk(k, dim=-1).indices, True)

    def count(self, x_block: torch.Tensor, plan: BlockSchedule, step: int) -> int:
        """Masks to commit at ``step`` (the schedule's; Dream recounts where hooks may have changed the masks)."""
        return plan.counts[step]

    def step(
        self, x_block: torch.Tensor, logits: torch.Tensor, plan: BlockSchedule, step: int, generator
    ) -> torch.Tensor:
        """One denoising step on the active block: x_block [B, N] with some masked positions filled."""
        s = self.s
        k = self.count(x_block, plan, step)
        prediction, confidence = self.predict(logits, generator)
        if s.confidence_eos_eot_inf:
            for token in (s.eos_token_id, s.eot_token_id):
                if token is not None:
                    confidence = confidence.masked_fill(prediction == token, -torch.inf)
        chosen = self.choose(confidence, x_block == s.mask_token_id, k, plan, step, generator)
        return torch.where(chosen, prediction, x_block)

    def _never_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """logits with EOS forbidden when ``logits_eos_inf``; the mask id for index_fill."""
        if self.s.logits_eos_inf and self.s.eos_token_id is not None:
            logits = logits.index_fill(-1, torch.full((1,), self.s.eos_token_id, device=logits.device), -torch.inf)
        return logits


class LLaDARule(SamplerRule):
    """LLaDA's rule (Nie et al. 2025, §2.4 and Appendix B): predictions by Gumbel-max at ``temperature`` (argmax
    at 0), confidence the softmax probability of the prediction (``low_confidence``) or uniform noise
    (``random``); :class:`TransferSchedule`. The mask token is never a prediction (the official code can commit
    it, leaving a mask in the answer)."""

    name = "LLaDA"
    algorithms = ("low_confidence", "random")
    threshold_algorithms = ("low_confidence",)
    foreign_settings = ("top_p", "top_k", "alg_temp", *BLOCK_DIFFUSION_SETTINGS)

    @classmethod
    def own_schedule(cls, s: DiffusionGenerationConfig) -> TransferSchedule:
        return TransferSchedule(s.steps)

    def predict(self, logits: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self._never_mask(logits)
        never_mask = torch.full((1,), self.s.mask_token_id, device=logits.device)
        scores = add_gumbel_noise(logits, self.s.temperature, generator)
        prediction = scores.index_fill(-1, never_mask, -torch.inf).argmax(-1)
        if self.s.remasking == "random":
            return prediction, _rand(prediction.shape, generator, logits.device)
        return prediction, logits.softmax(-1).gather(-1, prediction[..., None]).squeeze(-1)


class DreamRule(SamplerRule):
    """Dream's rule (Ye et al. 2025; its ``diffusion_generate``): top-p/top-k filtering, then a categorical draw at
    ``temperature`` (argmax at 0); confidence by ``alg``: the probability (``maskgit_plus``), top1 − top2
    (``topk_margin``) or Σ p log p (``entropy``); ``origin`` commits each mask with probability 1 − s/t.
    :class:`TimestepSchedule`; with ``alg_temp`` the positions are drawn by softmax(confidence / alg_temp). The
    mask token is never a prediction."""

    name = "Dream"
    algorithms = ("origin", "maskgit_plus", "topk_margin", "entropy")
    threshold_algorithms = ("maskgit_plus", "topk_margin")
    foreign_settings = tuple(BLOCK_DIFFUSION_SETTINGS)

    def __init__(self, settings: DiffusionGenerationConfig, schedule: Any, recount: bool = False):
        super().__init__(settings, schedule)
        self.recount = recount

    @classmethod
    def own_schedule(cls, s: DiffusionGenerationConfig) -> TimestepSchedule:
        return TimestepSchedule(s.steps, s.eps)

    def count(self, x_block: torch.Tensor, plan: BlockSchedule, step: int) -> int:
        """With hooks that may change the tokens, Dream's own count: int(mean masks per row × (1 − s/t)), all at the
        last step (equal to the schedule's when nothing else changes the masks)."""
        if not self.recount or plan.ratios is None:
            return plan.counts[step]
        remaining = (x_block == self.s.mask_token_id).sum() / x_block.shape[0]
        return int(remaining) if step == plan.steps - 1 else int(remaining * plan.ratios[step])

    def predict(self, logits: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.s
        logits = self._never_mask(logits)
        never_mask = torch.full((1,), s.mask_token_id, device=logits.device)
        logits = logits.float() / s.temperature if s.temperature > 0 else logits.float()
        probs = top_p_top_k(logits, s.top_p, s.top_k).softmax(-1)
        candidates = probs.index_fill(-1, never_mask, 0.0)
        if s.temperature > 0:
            flat = candidates.flatten(0, -2)
            source = generator.device if generator else flat.device
            prediction = torch.multinomial(flat.to(source), 1, generator=generator)
            prediction = prediction.to(logits.device).view(probs.shape[:-1])
        else:
            prediction = candidates.argmax(-1)
        confidence = probs.gather(-1, prediction[..., None]).squeeze(-1)
        if s.remasking == "topk_margin":
            top2 = probs.topk(2, dim=-1).values
            confidence = top2[..., 0] - top2[..., 1]
        elif s.remasking == "entropy":
            confidence = (probs * (probs + 1e-10).log()).sum(-1)  # Σ p log p, the negative entropy
        return prediction, confidence

    def choose(
        self, confidence: torch.Tensor, is_masked: torch.Tensor, k: int, plan: BlockSchedule, step: int, generator
    ) -> torch.Tensor:
        """``origin``: each mask with probability 1 − s/t; with ``alg_temp``: k masks drawn by their weights (the
        k most confident where the weights of fewer than k masks are positive, as at a small alg_temp where they
        underflow: a draw would then pick committed positions and leave masks); else :meth:`SamplerRule.choose`."""
        s = self.s
        if s.remasking == "origin":
            return is_masked & (_rand(is_masked.shape, generator, is_masked.device) < plan.ratios[step])
        if plan.threshold is not None or k == 0 or not s.alg_temp:
            return super().choose(confidence, is_masked, k, plan, step, generator)
        ranking = _ranking(confidence, is_masked)
        weights = (confidence.masked_fill(~is_masked, -torch.inf) / s.alg_temp).softmax(-1)
        drawable = ((weights > 0) & is_masked).sum(-1) >= k  # [B]: enough positive weights for k draws
        picked = ranking.topk(k, dim=-1).indices
        if bool(drawable.any()):
            rows = drawable.nonzero().squeeze(-1)
            source = generator.device if generator is not None else weights.device
            drawn = torch.multinomial(weights[rows].to(source), k, generator=generator).to(weights.device)
            picked = picked.index_copy(0, rows, drawn)
        return is_masked & torch.zeros_like(is_masked).scatter(1, picked, True)


class LLaDA2Rule(SamplerRule):
    """LLaDA2.0's sampler, as its official ``generate`` (inclusionAI's model file; arXiv 2512.15745), on the
    block-aligned canvas (:class:`BlockAlignedCanvas`) with block-causal passes (:class:`BlockCausalDenoiser`).

    Each block takes at most ``steps`` steps (capped at ``max_new_tokens // minimal_topk``; ``minimal_topk`` does
    nothing else); the schedule spreads the block over them (n // s a step, the first n % s one more). A step
    predicts every position of the block (the argmax at ``temperature`` 0, else a draw after top-k then top-p
    filtering) and commits every masked prediction whose probability exceeds ``threshold`` if they are at least
    the schedule's count, else that many of the most probable. A row stops after a block whose answer holds EOS;
    with ``eos_early_stop``, as soon as a step commits EOS with no mask left before the first EOS of its answer.
    The mask token is never a prediction (the official code could commit it, and LLaDA2.1's loop would then never
    end); greedy picks the argmax of the logits (the official LLaDA2.0 code takes that of the probabilities: the
    same token but for exact ties). In a batch every row takes the steps it would take alone (a row whose block is
    done is frozen while the others finish theirs).

    ``editing_threshold`` selects LLaDA2.1's editing sampler (:class:`LLaDA21Rule`)."""

    name = "LLaDA2"
    algorithms = ("confidence_threshold",)
    threshold_algorithms = ("confidence_threshold",)
    foreign_settings = ("alg_temp",)
    block_diffusion = True

    def __init__(self, settings: DiffusionGenerationConfig, schedule: Any = None):
        super().__init__(settings, schedule)
        self.active: torch.Tensor | None = None  # [B] rows that take the current block's steps
        self.answer: torch.Tensor | None = None  # [B, N] the block's answer positions (the others are prompt)

    @classmethod
    def own_schedule(cls, s: DiffusionGenerationConfig) -> None:
        """None: the plan comes from the canvas (the output length caps the steps; see :meth:`plan`)."""

    @classmethod
    def for_settings(cls, s: DiffusionGenerationConfig) -> LLaDA2Rule:
        """LLaDA2.0's rule, or LLaDA2.1's when ``editing_threshold`` is set; ``threshold`` is part of both (it
        does not replace their schedules as Fast-dLLM's does)."""
        return (LLaDA21Rule if s.editing_threshold is not None else LLaDA2Rule)(s)

    @classmethod
    def validate(cls, s: DiffusionGenerationConfig) -> None:
        super().validate(s)
        if s.block_length is None:
            raise ValueError(
                "block_length=None is not allowed with LLaDA2's block diffusion; allowed: a positive integer (the "
                "block the model was trained with: 32 for the official checkpoints)"
            )
        if s.cache == "dual":
            raise ValueError(
                "cache='dual' is not allowed with LLaDA2's block diffusion (a block never attends to later blocks: "
                "there is no suffix to cache); allowed: 'prefix' (exact, the default) or 'none' (the official "
                "recompute)"
            )
        if s.cfg_scale:
            raise ValueError(f"cfg_scale={s.cfg_scale!r} is not allowed with LLaDA2's sampler; allowed: 0")
        for name in ("logits_eos_inf", "confidence_eos_eot_inf"):
            if getattr(s, name):
                raise ValueError(f"{name}=True is not supported by LLaDA2's sampler; allowed: False")

    # -- layout, plan, passes ----------------------------------------------------------------------------------

    def canvas(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, gen_length: int):
        return BlockAlignedCanvas(input_ids, attention_mask, prompt_len, gen_length, self.s)

    def plan(self, canvas: BlockAlignedCanvas) -> BlockSchedule:
        s = self.s
        steps = min(s.steps or canvas.block_length, canvas.gen_length // (s.minimal_topk or 1))
        if steps < 1:
            raise ValueError(
                f"minimal_topk={s.minimal_topk} leaves no step for max_new_tokens={canvas.gen_length} (steps are "
                "capped at max_new_tokens // minimal_topk); allowed: minimal_topk <= max_new_tokens"
            )
        return BlockSchedule(tuple(transfer_schedule(canvas.block_length, steps)), threshold=s.threshold)

    def denoiser(self, model: Any, canvas: BlockAlignedCanvas) -> BlockCausalDenoiser:
        return BlockCausalDenoiser(model, self.s, canvas)

    def begin_block(self, canvas: BlockAlignedCanvas, block: int, done: torch.Tensor) -> None:
        self.active = canvas.active_rows(block, done)
        self.answer = canvas.answer_positions(*canvas.span(block))

    def block_finished(self, x_block: torch.Tensor, plan: BlockSchedule) -> bool:
        """No active row has a mask left in the block (the official loop ends at the next step's start)."""
        return not bool(((x_block == self.s.mask_token_id) & self.active[:, None]).any())

    # -- a step ----------------------------------------------------------------------------------------------

    def predict(self, logits: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, their probabilities): at temperature 0 the argmax and its softmax probability; else logits
        / temperature, top-k, then top-p (the official order), one draw, and its probability under that filtered
        distribution. The mask token is never drawn."""
        s = self.s
        logits = logits.float()
        never_mask = torch.full((1,), s.mask_token_id, device=logits.device)
        if s.temperature == 0:
            probs = logits.softmax(-1)
            prediction = logits.index_fill(-1, never_mask, -torch.inf).argmax(-1)
        else:
            if s.temperature != 1:
                logits = logits / s.temperature
            probs = top_p_top_k(top_p_top_k(logits, None, s.top_k), s.top_p, None).softmax(-1)
            flat = probs.index_fill(-1, never_mask, 0.0).flatten(0, -2)
            source = generator.device if generator is not None else flat.device
            prediction = torch.multinomial(flat.to(source), 1, generator=generator)
            prediction = prediction.to(logits.device).view(probs.shape[:-1])
        return prediction, probs.gather(-1, prediction[..., None]).squeeze(-1)

    @staticmethod
    def commit(confidence: torch.Tensor, is_masked: torch.Tensor, count: int, threshold: float | None) -> torch.Tensor:
        """[B, N]: the masked positions to fill: every one whose confidence exceeds ``threshold`` if they are at
        least ``count``, else the ``count`` most confident (all of them where fewer are masked)."""
        masked = is_masked.sum(-1)
        n = torch.full_like(masked, count)
        if threshold is not None:
            n = torch.maximum(n, (is_masked & (confidence > threshold)).sum(-1))
        n = torch.minimum(n, masked)
        rank = torch.argsort(_ranking(confidence, is_masked), dim=-1, descending=True, stable=True).argsort(-1)
        return is_masked & (rank < n[:, None])

    def step(
        self, x_block: torch.Tensor, logits: torch.Tensor, plan: BlockSchedule, step: int, generator
    ) -> torch.Tensor:
        s = self.s
        is_masked = (x_block == s.mask_token_id) & self.active[:, None]
        prediction, confidence = self.predict(logits, generator)
        chosen = self.commit(confidence, is_masked, plan.counts[step], plan.threshold)
        out = torch.where(chosen, prediction, x_block)
        if s.eos_early_stop and s.eos_token_id is not None:
            self._stop_at_committed_eos(out, chosen & (prediction == s.eos_token_id))
        return out

    def _stop_at_committed_eos(self, x_block: torch.Tensor, committed_eos: torch.Tensor) -> None:
        """``eos_early_stop``: a row that committed EOS at this step stops if no mask lies before the first EOS of
        its answer (earlier blocks are full: a row stops after a block with an EOS)."""
        rows = committed_eos.any(-1)
        if not bool(rows.any()):
            return
        s = self.s
        is_eos = (x_block == s.eos_token_id) & self.answer
        first = is_eos.int().argmax(-1)
        before = self.answer & (torch.arange(x_block.shape[1], device=x_block.device)[None] < first[:, None])
        clear = ~((x_block == s.mask_token_id) & before).any(-1)
        self.active &= ~(rows & is_eos.any(-1) & clear)


class LLaDA21Rule(LLaDA2Rule):
    """LLaDA2.1's editing sampler, as its official ``generate`` (arXiv 2602.08676: token-to-token editing beside
    mask-to-token decoding), chosen by ``editing_threshold``; ``steps`` and ``minimal_topk`` are not used.

    Each block runs until it is done: at a step's start, a row whose block has no mask counts a post step, and
    stops before its pass once it has counted more than ``max_post_steps``. A step fills the masked positions
    whose probability exceeds ``threshold`` if they are at least ``num_to_transfer``, else that many of the most
    probable (greedy: the argmax of the logits), and replaces every already placed answer token (never a prompt
    token) where the new prediction differs and its probability exceeds ``editing_threshold``. A row whose block had
    no mask at the step's start and took no edit is done. Blocks are never edited once left, so a row stops after
    a block whose answer holds EOS: the answer up to its first EOS is final (the official loop runs its remaining
    blocks, which the answer cut at the first EOS never shows)."""

    name = "LLaDA2.1"

    def __init__(self, settings: DiffusionGenerationConfig, schedule: Any = None):
        super().__init__(settings, schedule)
        self.post_steps: torch.Tensor | None = None  # [B] steps a row's block began without a mask

    def plan(self, canvas: BlockAlignedCanvas) -> BlockSchedule:
        """At most block_length steps with masks (each fills at least one) and ``max_post_steps`` after."""
        s = self.s
        return BlockSchedule((s.num_to_transfer,) * (canvas.block_length + s.max_post_steps), threshold=s.threshold)

    def begin_block(self, canvas: BlockAlignedCanvas, block: int, done: torch.Tensor) -> None:
        super().begin_block(canvas, block, done)
        self.post_steps = torch.zeros_like(done, dtype=torch.long)

    def block_finished(self, x_block: torch.Tensor, plan: BlockSchedule) -> bool:
        """Every active row will stop at the next step's start (no mask, post steps used up), or none is active."""
        no_mask = ~(x_block == self.s.mask_token_id).any(-1)
        stops = no_mask & (self.post_steps + 1 > self.s.max_post_steps)
        return not bool((self.active & ~stops).any())

    def step(
        self, x_block: torch.Tensor, logits: torch.Tensor, plan: BlockSchedule, step: int, generator
    ) -> torch.Tensor:
        s = self.s
        is_masked = x_block == s.mask_token_id
        no_mask = ~is_masked.any(-1)
        self.post_steps += (self.active & no_mask).long()
        self.active &= self.post_steps <= s.max_post_steps  # the official loop ends here, before its pass
        prediction, confidence = self.predict(logits, generator)
        chosen = self.commit(confidence, is_masked & self.active[:, None], s.num_to_transfer, plan.threshold)
        edited = (
            self.active[:, None] & ~is_masked & self.answer & (confidence > s.editing_threshold)
            & (prediction != x_block)
        )  # fmt: skip
        self.active &= ~(no_mask & ~edited.any(-1))
        return torch.where(chosen | edited, prediction, x_block)


# The families' rules; a model class names its default with ``sampler_rule``.
SAMPLER_RULES: dict[str, type[SamplerRule]] = {"llada": LLaDARule, "dream": DreamRule, "llada2": LLaDA2Rule}
LLADA_REMASKING = LLaDARule.algorithms
DREAM_ALGS = DreamRule.algorithms
REMASKING = tuple(alg for rule in SAMPLER_RULES.values() for alg in rule.algorithms)
# Confidences that are probabilities or margins of them, which a threshold in [0, 1] can cut (Fast-dLLM).
THRESHOLD_REMASKING = tuple(alg for rule in SAMPLER_RULES.values() for alg in rule.threshold_algorithms)


def rule_implementing(remasking: str) -> type[SamplerRule]:
    """The rule whose algorithms include ``remasking``."""
    return next(rule for rule in SAMPLER_RULES.values() if remasking in rule.algorithms)


def _rule_owning(setting: str) -> type[SamplerRule]:
    """The rule a rule-specific setting (top_p, top_k, alg_temp) belongs to."""
    return next(rule for rule in SAMPLER_RULES.values() if setting not in rule.foreign_settings)


def _check_rule_kind(model: Any, remasking: str) -> None:
    """A model runs the rules of its own kind only: a bidirectional model (LLaDA, Dream) never a block-diffusion
    rule, a block-diffusion model (LLaDA2) never a bidirectional one."""
    own, rule = SAMPLER_RULES[getattr(model, "sampler_rule", "llada")], rule_implementing(remasking)
    if rule.block_diffusion != own.block_diffusion:
        kinds = ("a bidirectional", "a block-diffusion")
        allowed = [alg for other in SAMPLER_RULES.values() if other.block_diffusion == own.block_diffusion
                   for alg in other.algorithms]  # fmt: skip
        raise ValueError(
            f"remasking={remasking!r} is {rule.name}'s rule for {kinds[rule.block_diffusion]} model; "
            f"{type(model).__name__} is {kinds[own.block_diffusion]} model; allowed: {allowed}"
        )


def rule_for(model: Any, s: DiffusionGenerationConfig, recount: bool = False) -> SamplerRule:
    """The rule of one generate() call: the one implementing ``s.remasking`` (the model's own rule,
    ``model.sampler_rule``, supplies the default), with its schedule or the threshold's."""
    own = SAMPLER_RULES[getattr(model, "sampler_rule", "llada")]
    rule = own if s.remasking in own.algorithms else rule_implementing(s.remasking)
    _check_rule_kind(model, s.remasking)
    chosen = rule.for_settings(s)
    if isinstance(chosen, DreamRule):
        chosen.recount = recount
    return chosen


# -- the model's side: one object for full passes, cached passes and CUDA graphs ------------------------------


class BlockDenoiser:
    """The logits of the active block [B, N, V] for each step, however they are computed.

    Step 0 of a block (and every step without a cache) is a full pass; with a cache it also returns every
    position's keys/values, kept as whole-sequence buffers. Later steps recompute only [start, L) (``prefix``)
    or [start, end) (``dual``) and overwrite the buffers there in place (Fast-dLLM); on one CUDA device they are
    replayed from a CUDA graph recorded at step 1. A shifted model's block logits come from one position
    earlier, which the cached span then includes. Classifier-free guidance runs the doubled batch and combines.
    The RoPE tables of a block's cached span are made once, at its first cached step, and handed to the model
    (``position_embeddings``) at every later one, outside the graph.
    """

    def __init__(self, model, s: DiffusionGenerationConfig, attention_mask: torch.Tensor, prompt_len: int):
        self.model, self.s, self.prompt_len = model, s, prompt_len
        self.shift = int(getattr(model, "logits_shifted", False))
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        self.rope_seq_len = int(position_ids.max()) + 1
        if s.cfg_scale > 0:  # one doubled batch: (conditional rows, rows with the prompt masked)
            attention_mask, position_ids = attention_mask.repeat(2, 1), position_ids.repeat(2, 1)
        self.position_ids = position_ids
        # Without padding no mask is passed: the model then never reads it back to the host.
        self.mask = None if bool(attention_mask.all()) else attention_mask
        self.cache_kv = self.graph = self.span_tables = None
        # Models that take their RoPE tables from the caller get one block's once (see the class docstring).
        self.keeps_tables = _takes_rope_tables(model)
        self.forward_passes = 0

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.s.cfg_scale == 0:
            return x
        unconditional = x.clone()
        unconditional[:, : self.prompt_len] = self.s.mask_token_id
        return torch.cat((x, unconditional))

    def __call__(self, x: torch.Tensor, start: int, end: int, step: int) -> torch.Tensor:
        keep = slice(start - self.shift, end - self.shift)
        if self.s.cache == "none" or step == 0:
            out = self.model(
                self.inputs(x), attention_mask=self.mask, position_ids=self.position_ids,
                use_cache=self.s.cache != "none", logits_to_keep=keep, rope_seq_len=self.rope_seq_len,
            )  # fmt: skip
            self.cache_kv, self.graph, self.span_tables, logits = out.present_key_values, None, None, out.logits
        else:
            span = slice(keep.start, x.shape[1] if self.s.cache == "prefix" else end)
            tokens = self.inputs(x)[:, span]
            if self.keeps_tables and self.span_tables is None:
                self.span_tables = self.model.rotary_emb(self.position_ids[:, span], self.rope_seq_len)
            if self.graph is not None:
                logits = self.graph(tokens)
            elif step == 1 and self.s.cuda_graph and _graphs_possible(self.model, x):
                self.graph, logits = CachedStepGraph.capture(lambda t: self._cached_step(t, span, keep), tokens)
            else:
                logits = self._cached_step(tokens, span, keep)
        self.forward_passes += 1
        logits = logits.to(x.device)  # a device_map model's head may sit on another device
        if self.s.cfg_scale > 0:
            cond, uncond = logits.chunk(2)
            logits = uncond + (self.s.cfg_scale + 1) * (cond - uncond)
        return logits

    def every_position(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of every position [B, L, V] (guided, shifted so that position i's predict token i), from a
        full pass: what Dream's hooks see."""
        out = self.model(self.inputs(x), attention_mask=self.mask, position_ids=self.position_ids,
                         rope_seq_len=self.rope_seq_len)  # fmt: skip
        self.forward_passes += 1
        logits = out.logits.to(x.device)
        if self.s.cfg_scale > 0:
            cond, uncond = logits.chunk(2)
            logits = uncond + (self.s.cfg_scale + 1) * (cond - uncond)
        if self.shift:
            logits = torch.cat((logits[:, :1], logits[:, :-1]), dim=1)
        return logits

    def _cached_step(self, tokens: torch.Tensor, span: slice, keep: slice) -> torch.Tensor:
        tables = {"position_embeddings": self.span_tables} if self.span_tables is not None else {}
        return self.model(
            tokens, attention_mask=self.mask, position_ids=self.position_ids[:, span], past_key_values=self.cache_kv,
            cache_slot=span, logits_to_keep=slice(keep.start - span.start, keep.stop - span.start),
            rope_seq_len=self.rope_seq_len, **tables,
        ).logits  # fmt: skip


# Positions a pass of the prompt's encoding covers (whole blocks; divided among the rows of a batch): bounds its
# activations at long prompts.
PREFILL_TOKENS = 8192


class BlockCausalDenoiser:
    """The active block's logits [B, N, V] under block diffusion's block-causal attention (LLaDA2), on a
    :class:`BlockAlignedCanvas`.

    ``cache="none"``: every step runs the window up to the block's end, as the official ``generate`` does (the LM
    head on the block only). ``cache="prefix"``, exact: the prompt's whole blocks are encoded once, in passes of
    about :data:`PREFILL_TOKENS` positions, into key/value buffers as long as the canvas; each step then runs only
    the active block against them (the block holding the prompt's tail is the first active one), and a block's
    first step also runs the block before it, final by then, so that its keys and values are kept from its final
    tokens. Under the block-causal mask a block never sees later ones, so the kept keys and values are the
    recompute's and the logits agree to rounding. One RoPE length for every pass (``ntk_per_length``: the canvas's).

    A block's later steps run the same positions over the same buffers: their RoPE tables are made once, at the
    block's second step, and handed to the model (``position_embeddings``); on one CUDA device the step is recorded
    at the block's second step as a CUDA graph (:class:`CachedStepGraph`) and replayed at the next ones, as
    :class:`BlockDenoiser` does (eagerly, a step calls some 60 to 80 operations a layer from Python).
    """

    def __init__(self, model, s: DiffusionGenerationConfig, canvas: BlockAlignedCanvas):
        self.model, self.s = model, s
        self.block_length, self.first_column = canvas.block_length, canvas.first_column
        self.position_ids = canvas.position_ids
        self.rope_seq_len = int(canvas.position_ids.max()) + 1
        # Without padding no mask is passed: the model then never reads it back to the host.
        self.mask = None if bool(canvas.attention_mask.all()) else canvas.attention_mask
        self.cache_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.graph: CachedStepGraph | None = None
        self.block_tables: tuple[torch.Tensor, torch.Tensor] | None = None  # the active block's RoPE tables
        self.keeps_tables = _takes_rope_tables(model)
        self.forward_passes = 0  # every pass, the prompt's encoding included
        self.prompt_passes = 0  # of which the prompt's encoding

    def __call__(self, x: torch.Tensor, start: int, end: int, step: int) -> torch.Tensor:
        if self.s.cache == "none":
            logits = self.model(
                x[:, :end], attention_mask=self.mask[:, :end] if self.mask is not None else None,
                position_ids=self.position_ids[:, :end], logits_to_keep=slice(start, end),
                rope_seq_len=self.rope_seq_len, block_causal=self.block_length,
            ).logits  # fmt: skip
        elif step == 0:
            if self.cache_kv is None:
                self._encode_prompt(x)
            self.graph = self.block_tables = None
            # A block's first step also writes the final keys/values of the block before it.
            low = start - self.block_length if start > self.first_column else start
            logits = self._step(x[:, low:end], low, start, end)
        else:
            tokens = x[:, start:end]
            if self.keeps_tables and self.block_tables is None:
                self.block_tables = self.model.rotary_emb(self.position_ids[:, start:end], self.rope_seq_len)
            if self.graph is not None:
                logits = self.graph(tokens)
            elif step == 1 and self.s.cuda_graph and _graphs_possible(self.model, x):
                self.graph, logits = CachedStepGraph.capture(lambda t: self._step(t, start, start, end), tokens)
            else:
                logits = self._step(tokens, start, start, end)
        self.forward_passes += 1
        return logits.to(x.device)  # a device_map model's head may sit on another device

    def _step(self, tokens: torch.Tensor, low: int, start: int, end: int) -> torch.Tensor:
        """Positions [low, end) against the cache buffers (their keys/values written there), the logits of
        [start, end); the kept RoPE tables when they are those positions'."""
        tables = {"position_embeddings": self.block_tables} if low == start and self.block_tables is not None else {}
        return self.model(
            tokens, attention_mask=self.mask, position_ids=self.position_ids[:, low:end],
            past_key_values=self.cache_kv, cache_slot=slice(low, end), logits_to_keep=slice(start - low, end - low),
            rope_seq_len=self.rope_seq_len, block_causal=self.block_length, **tables,
        ).logits  # fmt: skip

    def _encode_prompt(self, x: torch.Tensor) -> None:
        """Whole-canvas key/value buffers per layer [B, Hkv, W, D] (on the layer's device), the prompt's whole blocks
        [0, first_column) written into them pass by pass."""
        model, config = self.model, self.model.config
        rows, width = x.shape
        shape = (rows, config.num_key_value_heads, width, config.head_dim)
        self.cache_kv = []
        for layer in model.decoder_layers:
            device = execution_device(layer, x.device)
            self.cache_kv.append(tuple(torch.empty(shape, dtype=model.dtype, device=device) for _ in range(2)))
        chunk = max(self.block_length, PREFILL_TOKENS // rows // self.block_length * self.block_length)
        for low in range(0, self.first_column, chunk):
            high = min(low + chunk, self.first_column)
            model.encode(
                x[:, low:high], attention_mask=self.mask, position_ids=self.position_ids[:, low:high],
                past_key_values=self.cache_kv, cache_slot=slice(low, high), rope_seq_len=self.rope_seq_len,
                hidden_to_keep=1, block_causal=self.block_length,
            )  # fmt: skip
            self.forward_passes += 1
            self.prompt_passes += 1


def execution_device(module: torch.nn.Module, default: torch.device) -> torch.device:
    """The device ``module``'s forward runs on. Under accelerate's dispatch (``device_map``) that is its hook's
    execution device, which for a layer offloaded to the CPU or disk is not where its weights rest (they are on the
    meta device between passes); otherwise the device of its weights; ``default`` for a module without either. A
    layer's cache lives there, so that the hook hands the layer its own buffers and the in-place writes land in them."""
    for part in module.modules():
        hook = getattr(part, "_hf_hook", None)
        for one in getattr(hook, "hooks", (hook,)):  # accelerate's SequentialHook holds several
            device = getattr(one, "execution_device", None)
            if device is not None:
                return torch.device(device)
        for tensor in part.parameters(recurse=False):
            if tensor.device.type != "meta":
                return tensor.device
    return default


def canvas_device(model) -> torch.device:
    """Where the sampler keeps its tokens and draws its random numbers: the device the input embedding runs on
    (``model.device``, unless a ``device_map`` offloads the embedding: then its hook's execution device)."""
    return execution_device(model.get_input_embeddings(), model.device)


def _takes_rope_tables(model) -> bool:
    """The model makes its RoPE tables with ``rotary_emb(position_ids, seq_len)`` and takes them back as
    ``position_embeddings`` (its own ``forward`` names it, or hands its keyword arguments on to one that does)."""
    if not callable(getattr(model, "rotary_emb", None)):
        return False
    for cls in type(model).__mro__:
        forward = cls.__dict__.get("forward")
        if forward is None:
            continue
        parameters = inspect.signature(forward).parameters
        if "position_embeddings" in parameters:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return False
    return False


def _graphs_possible(model, x: torch.Tensor) -> bool:
    """CUDA graphs need one CUDA device and no hooks moving tensors between devices (accelerate's device_map)."""
    return x.is_cuda and getattr(model, "hf_device_map", None) is None and not torch.cuda.is_current_stream_capturing()


class CachedStepGraph:
    """A block's cached step recorded once as a CUDA graph and replayed for the block's later steps.

    A cached step moves little data but launches dozens of kernels per layer: eagerly the host's launch cost
    exceeds the device's work (benchmarks/NOTES.md). The graph replays the same kernels on the same buffers (the
    tokens are copied into a fixed tensor; cache buffers and positions stay in place during a block), so the
    logits are bit for bit those of the eager step."""

    def __init__(self, graph, tokens: torch.Tensor, logits: torch.Tensor):
        self.graph, self.tokens, self.logits = graph, tokens, logits

    @classmethod
    def capture(cls, step_fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor):
        """Run ``step_fn(tokens)`` once (the warm-up is this step's real result), then record it. Returns the
        graph (None if this torch cannot capture it: eager steps then) and the logits of this step."""
        static_tokens = tokens.clone()
        main = torch.cuda.current_stream(tokens.device)
        side = torch.cuda.Stream(tokens.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):  # warm-up off the main stream, as CUDA graph capture asks
            logits = step_fn(static_tokens)
        main.wait_stream(side)
        logits.record_stream(main)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(side):
                graph.capture_begin()
                try:
                    graph_logits = step_fn(static_tokens)
                finally:
                    graph.capture_end()
        except RuntimeError as error:  # an operation this torch cannot capture
            logger.warning("cached steps run eagerly: CUDA graph capture failed (%s)", error)
            main.wait_stream(side)
            return None, logits
        main.wait_stream(side)
        return cls(graph, static_tokens, graph_logits), logits

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.graph.replay()
        return self.logits


# -- the sampler ----------------------------------------------------------------------------------------------


class DiffusionSamplerMixin:
    """``generate()`` and Dream's ``diffusion_generate()`` for a model whose forward takes ``logits_to_keep``,
    ``past_key_values``/``cache_slot``, ``use_cache`` and ``rope_seq_len`` and returns ``logits`` and
    ``present_key_values``, and whose ``logits_shifted`` says whether logits at i predict token i + 1."""

    sampler_defaults: dict[str, Any] = SAMPLER_DEFAULTS
    # The family's sampler rule (a key of SAMPLER_RULES): it supplies the default ``remasking``; a call naming
    # another rule's algorithm runs that rule.
    sampler_rule: str = "llada"
    logits_shifted: bool = False

    def _init_generation_config(self) -> None:
        config = getattr(self, "generation_config", None) or GenerationConfig()
        for name, value in self.sampler_defaults.items():
            if getattr(config, name, None) is None and value is not None:
                setattr(config, name, value)
        for name in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id"):
            if getattr(config, name, None) is None:
                setattr(config, name, getattr(self.config, name, None))
        config.do_sample = False
        self.generation_config = config

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        stopping_criteria: Callable | None = None,
        generator: torch.Generator | None = None,
        step_callback: Callable[[int, int, torch.LongTensor], None] | None = None,
        generation_tokens_hook_func: Callable[[int | None, torch.Tensor, torch.Tensor | None], torch.Tensor]
        | None = None,
        generation_logits_hook_func: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> torch.LongTensor | DiffusionGenerateOutput:
        """Generate by masked diffusion. Returns [B, prompt + new tokens] (HF shape).

        Args:
            input_ids: [B, P] prompts, left-padded. Without ``attention_mask`` a leading run of ``pad_token_id``
                is padding (lm-eval passes no mask, and LLaDA's pad equals its EOS).
            attention_mask: [B, P], 1 for real tokens.
            generation_config / keyword arguments: :class:`DiffusionGenerationConfig` fields. The output length
                (``max_new_tokens``, or ``max_length`` counting the prompt) is rounded up to whole blocks for
                sampling and the extra trimmed; LLaDA's ``steps`` are capped at that length and split evenly over
                the blocks, rounded up. LLaDA2 (block diffusion): blocks counted from each prompt's first token,
                ``steps`` per block, each answer cut after its first EOS (EOS after it), as the official
                ``generate``; ``editing_threshold`` runs LLaDA2.1's editing sampler.
            stopping_criteria: HF-style callables ``(input_ids, scores) -> BoolTensor[B]``; with EOS they end
                generation after a block once every row has stopped (the rest is EOS).
            generator: makes sampling and random remasking reproducible.
            step_callback: ``step_callback(block, step, x)`` after every step (streaming, progress).
            generation_tokens_hook_func, generation_logits_hook_func: Dream's hooks, as its official sampler calls
                them: ``x = tokens_hook(None, x, None)`` once before the first step, ``logits = logits_hook(i, x,
                logits)`` on each step's logits, ``x = tokens_hook(i, x, logits)`` after each step's commit, where
                i counts the steps of the whole generation, x is the whole sequence [B, P + answer] and logits are
                [B, P + answer, V] (shifted for a model with ``logits_shifted``). The logits of every position are
                computed for them, and no cache is used (``cache`` must be ``"none"``).
        """
        tokens_hook, logits_hook = generation_tokens_hook_func, generation_logits_hook_func
        for name, hook in (("generation_tokens_hook_func", tokens_hook), ("generation_logits_hook_func", logits_hook)):
            if hook is not None and not callable(hook):
                raise ValueError(f"{name}={hook!r} is not allowed; allowed: a callable (step, x, logits) or None")
        hooks = tokens_hook is not None or logits_hook is not None
        s = DiffusionGenerationConfig.resolve(self, generation_config, kwargs)
        if hooks and s.cache != "none":
            raise ValueError(
                f"cache={s.cache!r} is not allowed with generation_tokens_hook_func / generation_logits_hook_func; "
                "allowed: 'none' (the hooks see and may change every position, which a cache would not recompute)"
            )
        x, attention_mask, prompt_len, gen_length = self._start(input_ids, attention_mask, s, generator)
        rule = rule_for(self, s, recount=tokens_hook is not None)  # chosen once
        if hooks and rule.block_diffusion:
            raise ValueError(
                f"generation_tokens_hook_func / generation_logits_hook_func are Dream's hooks over every position; "
                f"{rule.name}'s block diffusion does not take them; allowed: None"
            )
        canvas = rule.canvas(x, attention_mask, prompt_len, gen_length)
        x, num_blocks = canvas.x, canvas.num_blocks
        plan = rule.plan(canvas)
        denoise = rule.denoiser(self, canvas)
        history, progress = [], _progress_bar(s, x, num_blocks * plan.steps)
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        if tokens_hook is not None:
            x = _hooked_tokens(tokens_hook, None, x, None)
        step_index = 0

        for block in range(num_blocks):
            start, end = canvas.span(block)
            rule.begin_block(canvas, block, done)
            for step in range(plan.steps):
                if hooks:
                    all_logits = denoise.every_position(x)
                    if logits_hook is not None:
                        all_logits = logits_hook(step_index, x, all_logits)
                    logits = all_logits[:, start:end]
                else:
                    logits = denoise(x, start, end, step)
                x[:, start:end] = rule.step(x[:, start:end], logits, plan, step, generator)
                if tokens_hook is not None:
                    x = _hooked_tokens(tokens_hook, step_index, x, all_logits)
                step_index += 1
                history += [canvas.view(x).clone()] if s.output_history else []
                progress.update()
                if step_callback is not None:
                    step_callback(block, step + 1, canvas.view(x))
                if rule.block_finished(x[:, start:end], plan):
                    break
            done |= canvas.stopped(x, block, s, stopping_criteria)
            if block + 1 < num_blocks and bool(done.all()):
                canvas.finish_early(x, block, s)
                break

        progress.close()
        sequences = canvas.output(x, s)
        if s.return_dict_in_generate:
            return DiffusionGenerateOutput(sequences, denoise.forward_passes, tuple(history) or None)
        return sequences

    @torch.no_grad()
    def diffusion_generate(
        self,
        inputs: torch.LongTensor | None = None,
        generation_config: GenerationConfig | None = None,
        **kwargs: Any,
    ) -> torch.LongTensor | DiffusionGenerateOutput:
        """Dream's sampler with its official signature: the whole answer as one block, ``steps`` (default 512),
        ``alg`` (default ``"origin"``), ``alg_temp``, ``eps``, ``temperature``, ``top_p``, ``top_k``,
        ``output_history``, ``return_dict_in_generate``; ``attention_mask`` for left-padded batches."""
        input_ids = kwargs.pop("input_ids", inputs)
        if input_ids is None:
            raise ValueError("diffusion_generate() needs the prompt ids (inputs or input_ids)")
        explicit = {*kwargs, *(generation_config.to_diff_dict() if generation_config is not None else {})}
        if "alg" in explicit:
            explicit.add("remasking")
        kwargs.update({name: value for name, value in DREAM_DEFAULTS.items() if name not in explicit})
        return self.generate(input_ids, generation_config=generation_config, **kwargs)

    # -- pieces of generate() -------------------------------------------------------------------------------

    def _start(self, input_ids, attention_mask, s: DiffusionGenerationConfig, generator=None):
        """Checked prompts on the model's device, their mask, the prompt length and the output length (every
        input is checked before anything runs: :func:`check_generate_inputs`)."""
        check_generate_inputs(self, input_ids, attention_mask, s, generator)
        device = canvas_device(self)
        input_ids = input_ids.to(device=device, dtype=torch.long)
        batch, prompt_len = input_ids.shape
        if attention_mask is None:  # a leading run of pad tokens is left padding
            pad = s.pad_token_id
            attention_mask = torch.ones_like(input_ids) if pad is None else (input_ids != pad).long().cummax(-1).values
        attention_mask = attention_mask.to(device=device, dtype=torch.long)
        real = attention_mask.bool()
        if not bool(real.any(-1).all()):
            raise ValueError("a prompt is empty (all padding); every row needs at least one real token")
        if bool((input_ids[real] == s.mask_token_id).any()):
            raise ValueError(
                f"a prompt contains the mask token (id {s.mask_token_id}); the sampler would regenerate it — remove it"
            )
        if s.max_new_tokens is not None:
            gen_length = s.max_new_tokens
        elif s.max_length is not None:
            gen_length = s.max_length - prompt_len
        else:
            raise ValueError("give max_new_tokens (or max_length, which counts the prompt) for the output length")
        if gen_length <= 0:
            raise ValueError(
                f"the output length must be positive, got {gen_length} "
                f"(max_new_tokens={s.max_new_tokens}, max_length={s.max_length}, prompt length {prompt_len})"
            )
        _check_fits(self, batch * (2 if s.cfg_scale > 0 else 1), prompt_len + gen_length)
        return input_ids, attention_mask, prompt_len, gen_length


def _hooked_tokens(hook: Callable, step: int | None, x: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
    """``hook(step, x, logits)``, checked to return a token tensor of x's shape (it replaces x)."""
    out = hook(step, x, logits)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"generation_tokens_hook_func returned {shape}; it must return the token tensor x of shape {tuple(x.shape)}"
        )
    return out.to(device=x.device, dtype=x.dtype)


# -- input checks: every input of generate() and of the likelihoods, before anything runs ----------------------


def embedding_rows(model) -> int:
    """Token ids the model can embed: the rows of its input embedding (LLaDA pads its vocabulary to them)."""
    return int(model.get_input_embeddings().num_embeddings)


def check_token_ids(field: str, ids: torch.Tensor, rows: int) -> None:
    """``ids`` must be an integer tensor of ids in [0, rows); else ValueError naming the field, the value (and
    where it is) and what is allowed."""
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"{field} has dtype {ids.dtype}; allowed: an integer tensor of token ids")
    if ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= rows:
        value = low if low < 0 else high
        where = tuple(int(i) for i in (ids == value).nonzero()[0].tolist())
        raise ValueError(
            f"{field} holds {value} at {list(where)}; allowed: token ids in [0, {rows}) (the model's embedding has "
            f"{rows} rows)"
        )


def check_attention_mask(attention_mask: Any, shape: tuple[int, int]) -> None:
    """An ``attention_mask`` of generate(): a tensor of ``shape`` holding only 0 and 1 (bool or integer)."""
    if not isinstance(attention_mask, torch.Tensor):
        raise ValueError(f"attention_mask is a {type(attention_mask).__name__}; allowed: a tensor of 0/1 (or bool)")
    if tuple(attention_mask.shape) != shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; it must match input_ids {shape}")
    if attention_mask.dtype != torch.bool and (attention_mask.is_floating_point() or attention_mask.is_complex()):
        raise ValueError(
            f"attention_mask has dtype {attention_mask.dtype}; allowed: bool or an integer tensor of 0 and 1 "
            "(1 for real tokens)"
        )
    if attention_mask.dtype != torch.bool and attention_mask.numel():
        odd = (attention_mask != 0) & (attention_mask != 1)
        if bool(odd.any()):
            where = odd.nonzero()[0].tolist()
            raise ValueError(
                f"attention_mask holds {int(attention_mask[tuple(where)])} at {where}; allowed: only 0 and 1 (bool or "
                "integer; 1 for real tokens, 0 for padding)"
            )


def check_generator(generator: Any, device: torch.device, cpu_only: bool = False) -> None:
    """A ``torch.Generator`` on the CPU, or (``cpu_only`` False) on the model's device: draws on the CPU give the
    same numbers on every device; a generator of another device cannot draw for this model."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator is a {type(generator).__name__}; allowed: a torch.Generator or None")
    place, here = _indexed(torch.device(generator.device)), _indexed(torch.device(device))
    if place.type != "cpu" and (cpu_only or place != here):
        if cpu_only:
            allowed = "a CPU generator (the masks are drawn on the CPU)"
        else:
            allowed = "a generator on cpu" + (f" or {here}" if here.type != "cpu" else "")
        raise ValueError(f"generator is on {place} and the model on {here}; allowed: {allowed}")


def _indexed(device: torch.device) -> torch.device:
    """``device`` with its index: ``cuda`` (a generator made with ``torch.Generator("cuda")``) is the current one."""
    if device.type == "cpu" or device.index is not None:
        return device
    current = torch.cuda.current_device() if device.type == "cuda" and torch.cuda.is_available() else 0
    return torch.device(device.type, current)


def check_generate_inputs(model, input_ids: Any, attention_mask: Any, s: DiffusionGenerationConfig, generator) -> None:
    """Every input of ``generate()`` against the model: the prompt ids (integer, in the embedding's range), the
    mask (0/1 of the prompts' shape), the special token ids of the settings, the generator's device; and, as
    transformers' generate does, a warning when both max_new_tokens and max_length are given (max_new_tokens
    wins)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a non-empty [batch, length] tensor, got {shape}")
    rows = embedding_rows(model)
    check_token_ids("input_ids", input_ids, rows)
    if attention_mask is not None:
        check_attention_mask(attention_mask, tuple(input_ids.shape))
    for name in ("mask_token_id", "eos_token_id", "pad_token_id", "eot_token_id"):
        value = getattr(s, name, None)
        if value is not None and value >= rows:
            raise ValueError(
                f"{name}={value} is not allowed; allowed: a token id in [0, {rows}) (the embedding's rows)"
            )
    check_generator(generator, canvas_device(model))
    if s.max_new_tokens is not None and s.max_length is not None:
        logger.warning(
            "Both `max_new_tokens` (=%s) and `max_length` (=%s) seem to have been set. `max_new_tokens` will take "
            "precedence.", s.max_new_tokens, s.max_length,
        )  # fmt: skip


def _check_fits(
    model, rows: int, length: int, advice: str = "ask for fewer new tokens (max_new_tokens) or a shorter prompt"
) -> None:
    """Refuse, before any allocation, a pass whose hidden states alone cannot fit in the device's memory
    (a pass holds at least a few [rows, length, hidden] activations); ``advice`` says what to ask for instead."""
    hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "d_model", 0)
    element = torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 4
    needed = 4 * rows * length * hidden * element
    device = model.device
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[1]
    else:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return
    if needed > available:
        raise ValueError(
            f"the sequence of {length} tokens × {rows} rows cannot fit: its activations alone need about "
            f"{needed / 2**30:.1f} GiB and the {device.type} device has {available / 2**30:.1f} GiB; {advice}"
        )


def generation_bytes_per_row(config, length: int, cached: bool, element_bytes: int) -> int:
    """About the device memory one row of ``length`` positions (prompt and answer) adds at a generation's peak:
    with a cache, every layer's whole-sequence key/value buffers (2 · layers · kv heads · head dim per position;
    0.5 MB per position for LLaDA-8B), plus one layer's activations (hidden-size and feed-forward-size
    temporaries). Measured on an H200 (LLaDA-8B, prefix cache, 12 rows of 16,032 positions): 133.66 GiB at the
    peak with 14.93 GiB of weights, 9.89 GiB a row; this estimate: 9.91 GiB. Used to size batches before they
    run out of memory."""
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim if cached else 0
    activations = 8 * config.hidden_size + 3 * config.intermediate_size
    return (kv + activations) * length * element_bytes


def _progress_bar(s: DiffusionGenerationConfig, x: torch.Tensor, total_steps: int):
    """A transformers-style progress bar over the steps when the work is long (or ``progress=True``)."""
    work = total_steps * x.shape[0] * x.shape[1]
    show = s.progress if s.progress is not None else work >= PROGRESS_MIN_WORK
    if show and s.progress is None:
        logger.warning(
            "generating %d tokens × %d rows in %d steps over %d positions: this takes a while",
            x.shape[1], x.shape[0], total_steps, x.shape[1],
        )  # fmt: skip
    return logging.tqdm(total=total_steps, desc="diffusion steps", disable=not show)
