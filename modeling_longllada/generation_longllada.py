"""The LLaDA diffusion sampler as ``model.generate()`` (spec §2), with Fast-dLLM caches and threshold decoding.

Copied flat into Hub model repos: imports only torch and transformers.

The algorithm, per block of ``block_length`` masked positions, left to right:
  1. x = prompt + masks; the block's masks are committed over ``steps_per_block`` steps, n // s per step
     (the first n % s steps one more);
  2. each step predicts every masked position of the block (argmax of the logits, Gumbel-perturbed when
     ``temperature > 0``; classifier-free guidance when ``cfg_scale > 0``);
  3. and commits the k most confident predictions (``low_confidence``: softmax probability of the prediction;
     ``random``: uniform), or, with ``threshold``, every prediction above it (at least one).
Only the active block's logits are computed (``logits_to_keep``); nothing of size [B, L, V] exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import GenerationConfig
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

logger = logging.get_logger(__name__)

REMASKING = ("low_confidence", "random")
CACHE_MODES = ("none", "prefix", "dual")

# Sampler defaults, written to generation_config.json (LongLLaDA's needle setup: block 32, one token a step).
SAMPLER_DEFAULTS = {
    "steps": None,  # None: one token per step (steps = output length)
    "block_length": 32,
    "remasking": "low_confidence",
    "cfg_scale": 0.0,
    "cache": "none",
    "threshold": None,
    "logits_eos_inf": False,
    "confidence_eos_eot_inf": False,
}
# HF generate() arguments that have no meaning for the diffusion sampler and are accepted silently.
IGNORED_HF_KWARGS = frozenset(
    {"use_cache", "num_beams", "output_scores", "output_logits", "output_attentions", "output_hidden_states",
     "synced_gpus", "streamer", "tokenizer", "num_return_sequences", "repetition_penalty", "top_k", "top_p"}
)  # fmt: skip


@dataclass
class DiffusionGenerateOutput(ModelOutput):
    """``generate(..., return_dict_in_generate=True)``: sequences [B, prompt + new] and the number of model
    forward passes it took (a classifier-free-guidance pass over the doubled batch counts once)."""

    sequences: torch.LongTensor | None = None
    num_forward_passes: int | None = None


def transfer_schedule(n_masked: int, steps: int) -> list[int]:
    """Tokens to commit at each of ``steps`` steps for ``n_masked`` masks: n // s each, the first n % s one more."""
    base, extra = divmod(n_masked, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def add_gumbel_noise(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """exp(logits) / (-log u) ** temperature in float64 (Gumbel-max sampling at ``temperature``); identity at 0."""
    if temperature == 0:
        return logits
    device = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape, generator=generator, device=device, dtype=torch.float64).to(logits.device)
    return logits.to(torch.float64).exp() / (-torch.log(u)) ** temperature


class LongLLaDASamplerMixin:
    """``generate()`` for :class:`LongLLaDAModelLM`. Needs ``self(...)`` with ``logits_to_keep``,
    ``past_key_values`` and ``use_cache`` as that class defines them."""

    def _init_generation_config(self) -> None:
        config = getattr(self, "generation_config", None) or GenerationConfig()
        for name, value in SAMPLER_DEFAULTS.items():
            if getattr(config, name, None) is None and value is not None:
                setattr(config, name, value)
        for name in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id"):
            if getattr(config, name, None) is None:
                setattr(config, name, getattr(self.config, name, None))
        config.do_sample = False
        self.generation_config = config

    def _sampler_settings(self, generation_config: GenerationConfig | None, kwargs: dict) -> dict:
        """Merge defaults < model generation_config < argument generation_config < keyword arguments."""
        settings = dict(SAMPLER_DEFAULTS)
        settings.update(
            temperature=0.0, do_sample=False, max_new_tokens=None, max_length=None, eot_token_id=None,
            mask_token_id=self.config.mask_token_id, eos_token_id=self.config.eos_token_id,
            pad_token_id=self.config.pad_token_id, return_dict_in_generate=False, cuda_graph=True,
        )  # fmt: skip
        for source in (getattr(self, "generation_config", None), generation_config):
            if source is None:
                continue
            for name in settings:
                value = getattr(source, name, None)
                if value is not None:
                    settings[name] = value
        # A model's generation_config.json may carry HF's default max_length (20); only explicit lengths count.
        settings["max_length"] = generation_config.max_length if generation_config is not None else None
        settings["max_new_tokens"] = generation_config.max_new_tokens if generation_config is not None else None
        unknown = set(kwargs) - set(settings) - IGNORED_HF_KWARGS
        if unknown:
            raise ValueError(
                f"generate() got unsupported arguments {sorted(unknown)}; the diffusion sampler takes "
                f"{sorted(settings)} (and ignores {sorted(IGNORED_HF_KWARGS)})"
            )
        settings.update({k: v for k, v in kwargs.items() if k in settings and v is not None})
        # HF convention: greedy unless sampling is asked for. An explicit temperature without do_sample samples
        # (the official sampler's convention); do_sample=False always means greedy.
        if kwargs.get("do_sample") is False or ("temperature" not in kwargs and not settings["do_sample"]):
            settings["temperature"] = 0.0
        for name in ("eos_token_id", "pad_token_id"):
            if isinstance(settings[name], (list, tuple)):
                settings[name] = settings[name][0] if settings[name] else None
        return settings

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        stopping_criteria: Callable | None = None,
        generator: torch.Generator | None = None,
        step_callback: Callable[[int, int, torch.LongTensor], None] | None = None,
        **kwargs,
    ) -> torch.LongTensor | DiffusionGenerateOutput:
        """Generate with the LLaDA sampler. Returns [B, prompt + new tokens] (HF shape).

        Args:
            input_ids: [B, P] prompts, left-padded. Without ``attention_mask`` a leading run of
                ``pad_token_id`` is taken as padding (lm-eval passes no mask, and LLaDA's pad equals its EOS).
            attention_mask: [B, P], 1 for real tokens.
            max_new_tokens / max_length: output length (``max_length`` counts the prompt). A length that is not a
                multiple of ``block_length`` is rounded up for sampling and the extra trimmed.
            steps: total denoising steps (default: one token per step); capped at the (rounded) output length.
                Steps are split evenly over blocks, rounded up to a whole number per block.
            block_length, remasking ("low_confidence" | "random"), temperature / do_sample, cfg_scale,
            logits_eos_inf, confidence_eos_eot_inf (with ``eot_token_id``), mask_token_id, eos_token_id,
            pad_token_id: as in the official sampler (spec §2).
            cache: "none" (exact), "prefix" (keys/values before the active block computed once per block),
                "dual" (the masked suffix too). threshold: commit every candidate with confidence above it (at
                least one per step). Both approximate the exact sampler (Fast-dLLM).
            cuda_graph: on a single CUDA device, replay a block's cached steps from a CUDA graph (default True):
                the same kernels on the same inputs, without the host cost of launching ~1,400 kernels a step.
            stopping_criteria: HF-style callables ``(input_ids, scores) -> BoolTensor[B]``; with EOS they end
                generation early once every row has stopped inside finished blocks (the rest is EOS).
            generator: makes temperature sampling and random remasking reproducible.
            step_callback: called as ``step_callback(block, step, x)`` after every step (streaming, progress).
            return_dict_in_generate: return :class:`DiffusionGenerateOutput` with ``num_forward_passes``.
        """
        s = self._sampler_settings(generation_config, kwargs)
        mask_id, eos_id, pad_id = s["mask_token_id"], s["eos_token_id"], s["pad_token_id"]
        if s["remasking"] not in REMASKING:
            raise ValueError(f"remasking={s['remasking']!r} is not supported; allowed: {REMASKING}")
        if s["cache"] not in CACHE_MODES:
            raise ValueError(f"cache={s['cache']!r} is not supported; allowed: {CACHE_MODES}")
        if s["threshold"] is not None and not 0.0 <= s["threshold"] <= 1.0:
            raise ValueError(f"threshold={s['threshold']!r} must be a probability in [0, 1], or None")
        if s["cfg_scale"] < 0:
            raise ValueError(f"cfg_scale={s['cfg_scale']!r} must be >= 0")
        if s["temperature"] < 0:
            raise ValueError(f"temperature={s['temperature']!r} must be >= 0")

        device = self.device
        input_ids = input_ids.to(device)
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(
                f"input_ids must be a non-empty [batch, length] tensor, got shape {tuple(input_ids.shape)}"
            )
        batch, prompt_len = input_ids.shape
        if attention_mask is None:
            if pad_id is None:
                attention_mask = torch.ones_like(input_ids)
            else:  # a leading run of pad tokens is left padding
                attention_mask = (input_ids != pad_id).long().cummax(dim=-1).values
        attention_mask = attention_mask.to(device=device, dtype=torch.long)
        real = attention_mask.bool()
        if not bool(real.any(-1).all()):
            raise ValueError("a prompt is empty (all padding); every row needs at least one real token")
        if bool((input_ids[real] == mask_id).any()):
            raise ValueError(
                f"a prompt contains the mask token (id {mask_id}); the sampler would regenerate it — remove it"
            )

        if s["max_new_tokens"] is not None:
            gen_length = int(s["max_new_tokens"])
        elif s["max_length"] is not None:
            gen_length = int(s["max_length"]) - prompt_len
        else:
            raise ValueError("give max_new_tokens (or max_length, which counts the prompt) for the output length")
        if gen_length <= 0:
            raise ValueError(
                f"the output length must be positive, got {gen_length} "
                f"(max_new_tokens={s['max_new_tokens']}, max_length={s['max_length']}, prompt length {prompt_len})"
            )
        block_length = int(s["block_length"])
        if block_length <= 0:
            raise ValueError(f"block_length must be positive, got {block_length}")
        num_blocks = math.ceil(gen_length / block_length)
        padded_length = num_blocks * block_length
        steps = min(int(s["steps"] or padded_length), padded_length)
        if steps <= 0:
            raise ValueError(f"steps must be positive, got {s['steps']}")
        steps_per_block = math.ceil(steps / num_blocks)

        x = torch.cat((input_ids, input_ids.new_full((batch, padded_length), mask_id)), dim=1)
        full_mask = torch.cat((attention_mask, attention_mask.new_ones(batch, padded_length)), dim=1)
        position_ids = (full_mask.cumsum(-1) - 1).clamp_min(0)
        rope_seq_len = int(position_ids.max()) + 1
        if s["cfg_scale"] > 0:  # one doubled batch: (conditional rows, rows with the prompt masked)
            full_mask = full_mask.repeat(2, 1)
            position_ids = position_ids.repeat(2, 1)
        # Without padding no mask is passed: the model then needs no device-to-host check of it every pass.
        pass_mask = None if bool(real.all()) else full_mask
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        forward_passes = 0
        step_index = 0

        def model_inputs(tokens: torch.Tensor) -> torch.Tensor:
            if s["cfg_scale"] == 0:
                return tokens
            unconditional = tokens.clone()
            unconditional[:, :prompt_len] = mask_id
            return torch.cat((tokens, unconditional))

        def guided(logits: torch.Tensor) -> torch.Tensor:
            if s["cfg_scale"] == 0:
                return logits
            cond, uncond = logits.chunk(2)
            return uncond + (s["cfg_scale"] + 1) * (cond - uncond)

        for block in range(num_blocks):
            start = prompt_len + block * block_length
            end = start + block_length
            schedule = transfer_schedule(block_length, steps_per_block)
            cache_kv = None
            # Cached steps recompute [start, L) (prefix) or [start, end) (dual); the rest comes from the block's
            # first, full pass, whose keys/values are kept as whole-sequence buffers that each cached step
            # overwrites at the recomputed positions (no copy of the cache per step).
            q_start, q_end = (start, x.shape[1]) if s["cache"] == "prefix" else (start, end)
            graph = None
            step = 0
            while bool((x[:, start:end] == mask_id).any()) if s["threshold"] is not None else step < len(schedule):
                if s["cache"] == "none" or step == 0:
                    # Full pass; with a cache it also yields every position's keys/values for this block.
                    out = self(
                        model_inputs(x), attention_mask=pass_mask, position_ids=position_ids,
                        use_cache=s["cache"] != "none", logits_to_keep=slice(start, end), rope_seq_len=rope_seq_len,
                    )  # fmt: skip
                    cache_kv = out.present_key_values
                    logits = out.logits
                else:

                    def cached_step(tokens, q_start=q_start, q_end=q_end, cache_kv=cache_kv, start=start, end=end):
                        return self(
                            tokens, attention_mask=pass_mask, position_ids=position_ids[:, q_start:q_end],
                            past_key_values=cache_kv, cache_slot=slice(q_start, q_end),
                            logits_to_keep=slice(start - q_start, end - q_start), rope_seq_len=rope_seq_len,
                        ).logits  # fmt: skip

                    tokens = model_inputs(x)[:, q_start:q_end]
                    if graph is not None:
                        logits = graph(tokens)
                    elif step == 1 and s["cuda_graph"] and _graphs_possible(self, x):
                        graph, logits = _CachedStepGraph.capture(cached_step, tokens)
                    else:
                        logits = cached_step(tokens)
                forward_passes += 1
                logits = logits.to(x.device)  # no-op on one device; a device_map model's head may sit elsewhere
                k = schedule[min(step, len(schedule) - 1)]
                x[:, start:end] = self._commit(x[:, start:end], guided(logits), k, s, generator)
                step += 1
                step_index += 1
                if step_callback is not None:
                    step_callback(block, step, x)

            # Early stop: every row has EOS (or met a stop criterion) in the finished blocks.
            if eos_id is not None:
                done |= (x[:, prompt_len:end] == eos_id).any(-1)
            if stopping_criteria is not None:
                for pos in range(start + 1, end + 1):
                    done |= torch.as_tensor(stopping_criteria(x[:, :pos], None), device=device).bool()
            if block + 1 < num_blocks and bool(done.all()):
                x[:, end:] = eos_id if eos_id is not None else pad_id
                break

        sequences = x[:, : prompt_len + gen_length]
        if s["return_dict_in_generate"]:
            return DiffusionGenerateOutput(sequences=sequences, num_forward_passes=forward_passes)
        return sequences

    def _commit(
        self, x_block: torch.Tensor, logits: torch.Tensor, k: int, s: dict, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One denoising step on the active block. x_block [B, N] tokens, logits [B, N, V]; returns x_block with
        the chosen masked positions filled."""
        mask_id, eos_id = s["mask_token_id"], s["eos_token_id"]
        if s["logits_eos_inf"] and eos_id is not None:
            logits = logits.clone()
            logits[..., eos_id] = -torch.inf
        # The mask token is never a prediction: the official code can commit it, leaving a mask in the output.
        scores = add_gumbel_noise(logits, s["temperature"], generator)
        if mask_id < scores.shape[-1]:  # (torch.full makes the index on the device: no host-to-device copy)
            scores = scores.index_fill(-1, torch.full((1,), mask_id, device=scores.device), -torch.inf)
        prediction = scores.argmax(dim=-1)  # [B, N]
        if s["remasking"] == "low_confidence":
            probs = torch.softmax(logits, dim=-1)
            confidence = probs.gather(-1, prediction[..., None]).squeeze(-1)
        else:
            device = generator.device if generator is not None else x_block.device
            confidence = torch.rand(x_block.shape, generator=generator, device=device).to(x_block.device)
        if s["confidence_eos_eot_inf"]:
            for token in (eos_id, s["eot_token_id"]):
                if token is not None:
                    confidence = confidence.masked_fill(prediction == token, -torch.inf)
        is_masked = x_block == mask_id
        confidence = torch.where(is_masked, confidence, -torch.inf)
        if s["threshold"] is None:
            chosen = torch.zeros_like(is_masked)
            chosen.scatter_(1, confidence.topk(k, dim=-1).indices, True)
        else:  # every candidate above the threshold, and at least the best one of each row that has masks
            chosen = confidence > s["threshold"]
            best = torch.zeros_like(is_masked).scatter_(1, confidence.argmax(dim=-1, keepdim=True), True)
            chosen |= best
        chosen &= is_masked
        return torch.where(chosen, prediction, x_block)


def _graphs_possible(model, x: torch.Tensor) -> bool:
    """CUDA graphs need one CUDA device and no hooks moving tensors between devices (accelerate's device_map)."""
    return x.is_cuda and getattr(model, "hf_device_map", None) is None and not torch.cuda.is_current_stream_capturing()


class _CachedStepGraph:
    """A block's cached step recorded once as a CUDA graph and replayed for the block's later steps.

    A cached step moves little data (32 positions) but launches ~40 kernels per layer; eagerly, the host's launch
    cost (~30 ms a step on an H200's host) exceeds the device's work (~10 ms). The graph replays the same kernels
    on the same buffers (the input tokens are copied into a fixed tensor; the cache buffers and positions stay
    in place during a block), so the logits are bit for bit those of the eager step."""

    def __init__(self, graph, tokens: torch.Tensor, logits: torch.Tensor):
        self.graph, self.tokens, self.logits = graph, tokens, logits

    @classmethod
    def capture(cls, step_fn, tokens: torch.Tensor):
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
        except RuntimeError as error:  # e.g. an operation that cannot be captured on this torch version
            logger.warning("cached steps run eagerly: CUDA graph capture failed (%s)", error)
            main.wait_stream(side)
            return None, logits
        main.wait_stream(side)
        return cls(graph, static_tokens, graph_logits), logits

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.graph.replay()
        return self.logits


def _split_cache(kv_per_layer, full_mask: torch.Tensor, start: int, end: int, mode: str):
    """From a full pass's keys/values, the cache a block's later steps reuse and the query span they recompute,
    in the concatenating form of ``forward(past_key_values=...)`` (the sampler itself keeps whole-sequence
    buffers and passes ``cache_slot`` instead; both give the same keys and values).

    prefix: cache positions [0, start), recompute [start, L); dual: cache [0, start) and [end, L), recompute
    [start, end). Returns (per-layer (k, v), the cached positions' mask [B, C], (query start, query end))."""
    length = full_mask.shape[1]
    if mode == "prefix":
        cache = tuple((k[:, :, :start], v[:, :, :start]) for k, v in kv_per_layer)
        return cache, full_mask[:, :start], (start, length)
    cache = tuple(
        (torch.cat((k[:, :, :start], k[:, :, end:]), 2), torch.cat((v[:, :, :start], v[:, :, end:]), 2))
        for k, v in kv_per_layer
    )
    return cache, torch.cat((full_mask[:, :start], full_mask[:, end:]), 1), (start, end)
