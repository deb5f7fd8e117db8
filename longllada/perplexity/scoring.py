"""The two scorers: per-chunk values of a diffusion LM (Monte-Carlo estimates with all earlier tokens as context)
and of a causal LM (token cross-entropy, one pass or a sliding window, in pieces with a key/value cache).

Both yield ``{"index", "tokens", "value"}`` per chunk in order, starting at any chunk (a resumed run), and give
the same numbers as a run that started at chunk 0: each diffusion chunk has its own seeded generator, and the
causal passes have a fixed shape (``AR_PIECE``).
"""

from __future__ import annotations

import hashlib
import inspect
import math
from typing import Any, Iterator, Sequence

# Tokens per forward pass on the autoregressive path. Fixed (and recorded in the metadata) because the shape of
# each pass enters the floating-point results, and a resumed run must reproduce them exactly.
AR_PIECE = 512


def running_ppl(rows: Sequence[dict[str, Any]], token_weighted: bool) -> float:
    """The curve's value after ``rows``: exp of the mean per-chunk value (diffusion) or of the mean per-token
    cross-entropy (``token_weighted``, causal LMs); inf when it overflows."""
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


def diffusion_chunks(
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
    """Per-chunk values of a diffusion LM for chunks ``first``..``n_chunks - 1``: chunk i (``chunk`` tokens after
    ``prefix`` BOS tokens) is scored with every earlier token of ``ids`` ([tokens], int64) as its context, by
    ``chunk_perplexity`` (estimator ``longllada``) or by the ELBO ``-log_likelihood / chunk`` (``elbo``)."""
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


def causal_chunks(
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
