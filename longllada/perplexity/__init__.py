"""`longllada ppl`: perplexity versus context length (the LongLLaDA paper's Figure 1), for diffusion and causal LMs.

The document is cut into chunks of ``chunk`` tokens; the curve has one point per chunk, at the context length
reached at the end of that chunk.

Diffusion models (ours: a model with ``chunk_perplexity``; a ``model_type`` of ``modeling_longllada.families``)
    Chunk i is scored with all earlier tokens as its context (the LongLLaDA paper, arXiv 2506.14429). Estimator ``longllada``
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

Output: a JSON-lines file. Line 1 holds the run's metadata (with a fingerprint of the weights and their
revision); then one line per chunk, written and flushed when computed. Running again with the same ``--out``
resumes: the metadata must match (else an error asks for a new ``--out`` or ``--overwrite``), finished chunks
are kept and the rest computed, giving the same file as a run that was never interrupted. A file that is not
such a results file is never written over.

A model outside our families runs its own code (an ``auto_map``) only with ``--trust-remote-code``.

Modules: ``loading`` (any diffusion or causal LM, across transformers versions), ``scoring`` (the two scorers),
``results`` (the resumable results file), ``fingerprint`` (of the weights), ``curve`` (one run: checks, scorer,
rows), ``cli`` (the ``ppl`` arguments).
"""

from __future__ import annotations

from longllada.perplexity.curve import (
    AR_ESTIMATOR,
    ESTIMATORS,
    SAMPLE_TEXT,
    SAMPLE_TEXT_LABEL,
    load_text,
    perplexity_curve,
    tokenize_text,
)
from longllada.perplexity.loading import (
    DTYPES,
    LoadedModel,
    check_device,
    check_model_source,
    load_model,
    load_tokenizer,
)
from longllada.perplexity.results import PerplexityCurve, ResultsFile, read_run
from longllada.perplexity.scoring import AR_PIECE, chunk_seed

__all__ = [
    "AR_ESTIMATOR", "AR_PIECE", "DTYPES", "ESTIMATORS", "SAMPLE_TEXT", "SAMPLE_TEXT_LABEL",
    "LoadedModel", "PerplexityCurve", "ResultsFile", "check_device", "check_model_source", "chunk_seed",
    "load_model", "load_text", "load_tokenizer", "perplexity_curve", "read_run", "tokenize_text",
]  # fmt: skip
