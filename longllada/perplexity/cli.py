"""`longllada ppl`: the arguments, parsed and handed to :func:`~longllada.perplexity.curve.perplexity_curve`."""

from __future__ import annotations

import argparse

from longllada.cli import MAX_SEED, int_arg
from longllada.perplexity.curve import ESTIMATORS, SAMPLE_TEXT, perplexity_curve
from longllada.perplexity.loading import DTYPES

DESCRIPTION = "perplexity versus context length (the LongLLaDA paper's Figure 1), for diffusion and causal LMs"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ppl`` sub-command."""
    parser = subparsers.add_parser(
        "ppl",
        help="perplexity versus context length (Figure 1) of a diffusion or causal LM",
        description=DESCRIPTION,
        epilog="Diffusion models: chunk i's context is every earlier token. Causal LMs: token cross-entropy; one "
        "pass over the whole text for RoPE models (direct extrapolation, as the paper), a sliding window for "
        "models with learned positions or with --window. Re-running with the same --out resumes.",
    )
    parser.add_argument("--model", required=True, metavar="PATH_OR_ID", help="local folder or Hub id")
    parser.add_argument("--text", metavar="FILE", help=f"UTF-8 text file (default: the package's {SAMPLE_TEXT})")
    parser.add_argument(
        "--max-length", type=int_arg(1), metavar="N", help="tokens of the text to score (default: all of it)"
    )
    parser.add_argument(
        "--chunk", type=int_arg(1), default=64, metavar="N", help="tokens per chunk / curve point (default 64)"
    )
    parser.add_argument(
        "--mc", type=int_arg(1), default=8, metavar="N", help="Monte-Carlo samples per chunk, diffusion (default 8)"
    )
    parser.add_argument(
        "--estimator",
        metavar="NAME",
        help=f"diffusion models: one of {', '.join(ESTIMATORS)} (default longllada, as the paper)",
    )
    parser.add_argument(
        "--rope-scaling",
        metavar="SPEC",
        help="none, ntk:FACTOR, ntk-target:LENGTH (16384 or 16k), ntk-per-length (diffusion models), "
        "diffusion-ntk:LENGTH (UltraLLaDA), linear:FACTOR (position interpolation), yarn:FACTOR, dynamic:FACTOR, "
        "llama3:FACTOR, longrope:FILE.json[:LENGTH] or longrope:MODEL[:LENGTH] (LongDLLM's tables); or a JSON object",
    )
    parser.add_argument("--dtype", default="auto", metavar="NAME", help=f"one of {', '.join(DTYPES)} (default auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument(
        "--seed", type=int_arg(0, MAX_SEED), default=0, metavar="N", help="seed of the masks (with the chunk index)"
    )
    parser.add_argument(
        "--batch-size", type=int_arg(1), default=8, metavar="N", help="Monte-Carlo samples per forward pass (default 8)"
    )
    parser.add_argument(
        "--window", type=int_arg(2), metavar="N", help="causal LMs: sliding-window length (default: see below)"
    )
    parser.add_argument(
        "--stride", type=int_arg(1), metavar="N", help="causal LMs: tokens scored per window (default ~window/2)"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="RESULT.jsonl",
        help="results file (JSON lines); resumed if it holds a partial run",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out instead of resuming it")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let a model outside LongLLaDA's families run the code in its repo (its auto_map); off by default",
    )
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
        trust_remote_code=args.trust_remote_code,
    )
    last = curve.rows[-1]
    print(
        f"{curve.meta['model']}: ppl {last['ppl']:.4f} at {last['length']} tokens ({len(curve.rows)} chunks) -> {args.out}"
    )
    return 0
