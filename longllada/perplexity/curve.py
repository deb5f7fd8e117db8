"""One perplexity curve (the LongLLaDA paper's Figure 1, arXiv 2506.14429): the text, the checks, the scorer of
the model's kind, and the rows appended to the results file as they come.

Every check that needs no weights (arguments, device, model path, ``--out``, the text's length in tokens, the
weights' fingerprint against a run being resumed) runs before the model is loaded.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from pathlib import Path
from typing import Any

from longllada.perplexity.fingerprint import model_fingerprint, model_folder
from longllada.perplexity.loading import (
    DTYPES,
    LoadedModel,
    check_device,
    check_likelihood,
    check_model_source,
    load_model,
    load_tokenizer,
)
from longllada.perplexity.results import FORMAT, PerplexityCurve, ResultsFile
from longllada.perplexity.scoring import AR_PIECE, causal_chunks, diffusion_chunks, running_ppl

ESTIMATORS = ("longllada", "elbo")
AR_ESTIMATOR = "causal-ce"
SAMPLE_TEXT = "gov_report_001.txt"
SAMPLE_TEXT_LABEL = f"longllada:data/{SAMPLE_TEXT}"


def load_text(text: str | Path | None) -> tuple[str, str]:
    """The document to score and its label: a file, or the report shipped with the package when None."""
    if text is None:
        resource = importlib.resources.files("longllada").joinpath("data").joinpath(SAMPLE_TEXT)
        return resource.read_text(encoding="utf-8"), SAMPLE_TEXT_LABEL
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--text: no such file: {str(text)!r}")
    try:
        return path.read_text(encoding="utf-8"), str(path.resolve())
    except UnicodeDecodeError as err:
        raise ValueError(f"--text {str(text)!r} is not UTF-8 text ({err}); allowed: a UTF-8 text file") from None


def tokenize_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (the BOS prefix is added separately)."""
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _check_int(flag: str, value: Any, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        allowed = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(f"{flag} must be {allowed}, got {value!r}")


def _fingerprint(model: str | Path) -> dict[str, Any] | None:
    folder = model_folder(model)
    return None if folder is None else model_fingerprint(folder)


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
    trust_remote_code: bool = False,
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
        rope_scaling: any form of ``modeling_longllada.parse_rope_scaling`` (``"ntk:FACTOR"``, ``"yarn:4"``, ...).
        seed: seeds each chunk's generator together with the chunk index.
        window, stride: causal LMs: sliding window (tokens per pass) and the tokens scored per window; default:
            one pass over the whole text, or the model's position limit if it has learned positions.
        trust_remote_code: let a model outside this project's families run its own code (config, model,
            tokenizer); without it such a model is refused before anything loads.
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
    _check_int("--seed", seed, 0)
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
    from modeling_longllada import parse_rope_scaling

    parse_rope_scaling(rope_scaling, field="--rope-scaling")  # refused before anything loads
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
    if isinstance(model, LoadedModel):
        if rope_scaling is not None or dtype != "auto" or device is not None:
            raise ValueError("rope_scaling, dtype and device apply when loading; pass them to load_model instead")
    else:
        from longllada.loading import check_remote_code

        device = check_device(device)
        check_model_source(model)
        check_likelihood(model)
        check_remote_code(model, trust_remote_code)
    results = ResultsFile(out, overwrite) if out is not None else None
    content, text_label = load_text(text)

    tokenizer = model.tokenizer if isinstance(model, LoadedModel) else load_tokenizer(model, trust_remote_code)
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
    # The weights' fingerprint: a resume over other weights is refused before they load (a Hub id not yet in
    # the cache is fingerprinted once it has been downloaded, below).
    fingerprint = _fingerprint(model.name if isinstance(model, LoadedModel) else model)
    if results is not None and fingerprint is not None:
        results.check_fingerprint(fingerprint)
    loaded = (
        model
        if isinstance(model, LoadedModel)
        else load_model(model, rope_scaling, dtype, device, tokenizer, trust_remote_code=trust_remote_code)
    )
    if fingerprint is None:
        fingerprint = _fingerprint(loaded.name)

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
        "format": FORMAT,
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
        "fingerprint": fingerprint,
    }
    meta = json.loads(json.dumps(meta))  # the form it has when read back, for the resume comparison

    rows = results.open(meta) if results is not None else []
    bar = tqdm(
        total=n_chunks, initial=len(rows), desc=f"ppl {Path(loaded.name).name}", unit="chunk", disable=not progress
    )
    if rows:
        bar.set_postfix(length=rows[-1]["length"], ppl=f"{rows[-1]['ppl']:.4g}")
    try:
        if len(rows) < n_chunks:
            with torch.no_grad():
                if diffusion:
                    values = diffusion_chunks(
                        loaded.model, ids, len(prefix_ids), chunk, n_chunks, len(rows), estimator, mc, batch_size, seed
                    )
                else:
                    values = causal_chunks(
                        loaded.model, ids, len(prefix_ids), chunk, n_chunks, len(rows), window, stride
                    )
                for value in values:
                    row = {"record": "chunk", "index": value["index"], "length": (value["index"] + 1) * chunk}
                    row.update(value)
                    rows.append(row)
                    row["ppl"] = running_ppl(rows, token_weighted=not diffusion)
                    if results is not None:
                        results.append(row)
                    bar.update(1)
                    bar.set_postfix(length=row["length"], ppl=f"{row['ppl']:.4g}")
    finally:
        bar.close()
        if results is not None:
            results.close()
    return PerplexityCurve(meta=meta, rows=rows)
