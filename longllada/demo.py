"""`longllada demo`: the paper's three findings on the shipped tiny twins, on a CPU, offline, in minutes.

The twins (`longllada/models/`) are a small LLaDA-architecture diffusion model and its causal LLaMA twin of
the same widths, RoPE base, tokenizer and data, trained by `longllada train-tiny` at a short length. For each
twin the demo runs the unscaled model and, as LongLLaDA (arXiv 2506.14429) does, one NTK-scaled model per
target length T (2x, 4x and 8x the trained length; λ(T) from the RoPE extrapolation scaling law), each over
the whole grid:

  (a) perplexity versus context length to 8x the trained length (`longllada ppl`);
  (b) the needle-in-a-haystack grid through the real lm-eval task `longllada_niah`;

then judges each finding of the paper by the rules of :mod:`longllada.demo_findings` (written before the
run) and writes `report.md` with the heatmap panels, the perplexity curves and the numbers behind them
(:mod:`longllada.demo_report`). `--check` compares the numbers with a committed summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from longllada.demo_findings import cell_means, findings, ntk_target_verdict
from longllada.demo_report import NIAH_ATOL, PPL_RTOL, compare, plot_niah_panels, plot_ppl, write_report

MODELS_DIR = Path(__file__).resolve().parent / "models"
DIFFUSION_TWIN = MODELS_DIR / "tiny-llada-diffusion"
CAUSAL_TWIN = MODELS_DIR / "tiny-llama-ar"
COMMITTED_SUMMARY = Path(__file__).resolve().parent.parent / "docs" / "demo" / "summary.json"
GENERATOR = "longllada demo"  # marks the summaries this command writes
REPEATS = 10  # needles per cell of the unscaled grids
# Needles per cell of the NTK grids: three targets per twin triple the grids; at half the needles the demo stays
# within 10 minutes on 2 CPU cores. They are the first repeats of the unscaled grid's prompts (the task seeds each
# repeat), so that the NTK rule compares the same prompts.
SCALED_REPEATS = 5
# Files this command writes into --out; any other file there is left alone, and these are only replaced when a
# previous demo wrote them.
OUTPUT_FILES = ("summary.json", "report.md", "niah_diffusion.png", "niah_causal.png", "ppl.png")


@dataclass(frozen=True)
class Run:
    """One twin under one RoPE setting."""

    name: str  # e.g. "diffusion", "diffusion+ntk512"
    twin: str  # "diffusion" | "causal"
    path: Path  # the folder lm-eval loads
    target: int | None  # NTK target length T (None: no scaling)
    factor: float  # λ(T), 1 without scaling
    repeats: int  # needles per cell


def _trained_length(path: Path) -> int:
    config = json.loads((path / "config.json").read_text())
    return int(config.get("max_sequence_length") or config["max_position_embeddings"])


def _causal_with_ntk(path: Path, target: int, out_dir: Path) -> tuple[Path, int]:
    """A copy of a causal LM folder whose RoPE base is θ·λ (the paper's LLaMA-3 recipe), λ from the scaling law.
    Written as a folder so that lm-eval's `--model hf` loads it like any checkpoint on either transformers."""
    from transformers import AutoConfig

    from modeling_longllada import ntk_scaling_factor

    config = AutoConfig.from_pretrained(path)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    parameters = getattr(config, "rope_parameters", None)
    theta = float(parameters["rope_theta"]) if parameters else float(config.rope_theta)
    factor = ntk_scaling_factor(head_dim, theta, config.max_position_embeddings, target)
    if parameters:
        parameters["rope_theta"] = theta * factor
    else:
        config.rope_theta = theta * factor
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    for item in path.iterdir():
        if item.name not in ("config.json", "README.md") and item.is_file():
            shutil.copy2(item, out_dir / item.name)
    return out_dir, factor


def _runs(trained: int, targets: list[int], out: Path, repeats: int, scaled_repeats: int) -> list[Run]:
    """Per twin: the unscaled model, then one NTK model per target length."""
    from modeling_longllada import LongLLaDAConfig

    runs = [Run("diffusion", "diffusion", DIFFUSION_TWIN, None, 1, repeats)]
    for target in targets:
        config = LongLLaDAConfig.from_pretrained(DIFFUSION_TWIN, rope_scaling={"type": "ntk", "target_length": target})
        factor = config.rope_scaling_factor
        runs.append(Run(f"diffusion+ntk{target}", "diffusion", DIFFUSION_TWIN, target, factor, scaled_repeats))
    runs.append(Run("causal", "causal", CAUSAL_TWIN, None, 1, repeats))
    for target in targets:
        path, factor = _causal_with_ntk(CAUSAL_TWIN, target, out / "models" / f"tiny-llama-ar-ntk{target}")
        runs.append(Run(f"causal+ntk{target}", "causal", path, target, factor, scaled_repeats))
    return runs


def _ppl_curve(run: Run, out: Path, max_length: int, chunk: int, mc: int, seed: int) -> dict[str, list]:
    from longllada.perplexity import perplexity_curve

    # Scaling is applied by `longllada ppl` itself (for the causal twin through its own RoPE config), so the
    # curve is labelled with it; the rescaled causal folder is only for lm-eval's `--model hf`.
    scaling = f"ntk-target:{run.target}" if run.target else None
    path = CAUSAL_TWIN if run.twin == "causal" else run.path
    file = out / "ppl" / f"{run.name}.jsonl"
    file.parent.mkdir(parents=True, exist_ok=True)
    curve = perplexity_curve(
        str(path), out=file, max_length=max_length, chunk=chunk, mc=mc, rope_scaling=scaling,
        dtype="float32", device="cpu", seed=seed, batch_size=mc, progress=True,
    )  # fmt: skip
    return {"lengths": curve.lengths, "ppl": [round(v, 4) for v in curve.ppl]}


def _niah_samples(
    run: Run, out: Path, lengths: list[int], depths: list[int], gen_tokens: int, seed: int
) -> list[dict[str, Any]]:
    """The needle grid through lm-eval's evaluator and our task folder: one row per sample (length, depth,
    repeat, score, prediction), also written to ``niah/{run}/samples.jsonl``."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    import longllada.lm_eval_model  # noqa: F401  (registers --model longllada)
    from lm_eval_tasks import TASKS_DIR

    window = max(lengths) + 64
    if run.twin == "diffusion":
        args = f"pretrained={run.path},max_length={window},block_length={gen_tokens},steps={gen_tokens}"
        model, args = "longllada", args + (f",ntk_target={run.target}" if run.target else "")
    else:
        model, args = "hf", f"pretrained={run.path},max_length={window}"
    model_args = args + ",dtype=float32,device=cpu"
    # Our own TaskManager (for the include path) must carry the metadata itself: lm-eval merges the model_args
    # into it (the task sizes its prompts with the model's tokenizer) only when it builds the manager.
    metadata = {key: value for key, value in (item.split("=", 1) for item in model_args.split(","))}
    metadata.update(context_lengths=lengths, depths=depths, num_repeats=run.repeats, seed=seed)
    # Only our task's folder is indexed: indexing lm-eval's own thousands of task files costs seconds per run.
    tasks = TaskManager(include_path=str(Path(TASKS_DIR) / "longllada_niah"), include_defaults=False, metadata=metadata)
    results = lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=["longllada_niah"], batch_size=1, log_samples=True,
        task_manager=tasks,
        gen_kwargs=f"max_gen_toks={gen_tokens}",
    )  # fmt: skip
    rows = [
        {
            "length": int(sample["doc"]["context_length"]),
            "depth": int(round(float(sample["doc"]["depth_percent"]))),
            "repeat": int(sample["doc"]["repeat"]),
            "score": float(sample["score"]),
            "prediction": sample["filtered_resps"][0],
        }
        for sample in results["samples"]["longllada_niah"]
    ]
    folder = out / "niah" / run.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_options(out: Path, repeats: int, scaled_repeats: int, seed: int) -> None:
    """Refuse bad options before any model is loaded: counts, and an --out that holds files we did not write."""
    _check_positive_int("--repeats", repeats)
    _check_positive_int("--scaled-repeats", scaled_repeats)
    if scaled_repeats > repeats:
        raise ValueError(
            f"--scaled-repeats {scaled_repeats} is more than --repeats {repeats}; allowed: 1 to {repeats} (the NTK "
            "grids are compared with the unscaled one on the same prompts)"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"--seed must be an integer, got {seed!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; allowed: a folder (created if absent)")
    summary = out / "summary.json"
    ours = False
    if summary.is_file():
        try:
            previous = json.loads(summary.read_text())
            ours = previous.get("generator") == GENERATOR or {"trained_length", "findings"} <= set(previous)
        except (ValueError, AttributeError):
            ours = False
    for name in OUTPUT_FILES:
        if (out / name).exists() and not ours:
            raise ValueError(
                f"--out {out} holds {name}, not written by `longllada demo`; allowed: an empty or new folder, or "
                "one of a previous demo run"
            )


def _read_check(check: Path | None) -> dict[str, Any] | None:
    """The summary ``--check`` names (None when it is not given or absent), refused now when it is no summary,
    not after the demo has run."""
    if check is None or not check.exists():
        return None
    try:
        summary = json.loads(check.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(
            f"--check {check} is not a summary of `longllada demo` ({err}); allowed: a summary.json"
        ) from None
    if not isinstance(summary, dict) or not {"ppl", "niah", "findings"} <= set(summary):
        raise ValueError(
            f"--check {check} is not a summary of `longllada demo` (no ppl, niah and findings); allowed: a summary.json"
        )
    return summary


def run_demo(out: Path, **options: Any) -> dict[str, Any]:
    """Run the whole demo into ``out`` (:func:`demo_into` has the options); one demo at a time writes a folder."""
    from longllada.output_lock import OutputLock

    check_options(out, options.get("repeats", REPEATS), options.get("scaled_repeats", SCALED_REPEATS),
                  options.get("seed", 0))  # fmt: skip
    with OutputLock(out, "longllada demo"):
        return demo_into(out, **options)


def demo_into(
    out: Path,
    *,
    factor_lengths: tuple[int, ...] = (1, 2, 4, 8),
    depths: tuple[int, ...] = (0, 25, 50, 75, 100),
    repeats: int = REPEATS,
    scaled_repeats: int = SCALED_REPEATS,
    gen_tokens: int = 8,
    ppl_chunk: int = 64,
    ppl_mc: int = 4,
    seed: int = 0,
    check: Path | None = None,
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the summary (also written as ``summary.json``). Its folder's lock
    is :func:`run_demo`'s."""
    check_options(out, repeats, scaled_repeats, seed)
    for twin in (DIFFUSION_TWIN, CAUSAL_TWIN):
        if not (twin / "config.json").exists():
            raise FileNotFoundError(
                f"the shipped twin {twin} is missing; reinstall the package or run `longllada train-tiny`"
            )
    import torch

    torch.manual_seed(seed)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    trained = _trained_length(DIFFUSION_TWIN)
    lengths = [trained * f for f in factor_lengths]
    from lm_eval_tasks.grid_bounds import check_grid

    # the needle grids must fit before the first curve is computed (each run builds one of these)
    check_grid("longllada demo", "--repeats", lengths, len(depths) * repeats, {"pretrained": str(DIFFUSION_TWIN)})
    summary_to_check = _read_check(check)
    targets = [n for n in lengths if n > trained]
    runs = _runs(trained, targets, out, repeats, scaled_repeats)
    print(f"[demo] trained length {trained}; lengths {lengths}; NTK per target: "
          + ", ".join(f"{r.name} λ={r.factor:g}" for r in runs if r.target), flush=True)  # fmt: skip
    ppl, samples, seconds = {}, {}, {}
    for run in runs:
        print(f"[demo] {run.name}: (a) perplexity curve", flush=True)
        clock = time.time()
        ppl[run.name] = _ppl_curve(run, out, max(lengths), ppl_chunk, ppl_mc, seed)
        print(f"[demo] {run.name}: (b) needle grid, {run.repeats} needles per cell", flush=True)
        middle = time.time()
        samples[run.name] = _niah_samples(run, out, lengths, list(depths), gen_tokens, seed)
        seconds[run.name] = {"ppl": round(middle - clock, 1), "niah": round(time.time() - middle, 1)}
    # the findings are judged on the numbers the summary holds (rounded), so that they can be re-judged from it
    grids = {name: {cell: round(v, 2) for cell, v in cell_means(rows).items()} for name, rows in samples.items()}
    ntk = {
        twin: [
            ntk_target_verdict(samples[twin], samples[run.name], trained, run.target, run.factor)
            for run in runs
            if run.twin == twin and run.target
        ]
        for twin in ("diffusion", "causal")
    }
    summary = {
        "generator": GENERATOR,
        "models": {"diffusion": DIFFUSION_TWIN.name, "causal": CAUSAL_TWIN.name},
        "trained_length": trained,
        "niah_lengths": lengths,
        # (not the folders: paths of this machine, and the summary is committed)
        "runs": {
            r.name: {k: v for k, v in asdict(r).items() if k != "path"} | {"seconds": seconds[r.name]} for r in runs
        },
        "ppl": ppl,
        "niah": {name: {f"{n}@{d}": v for (n, d), v in grid.items()} for name, grid in grids.items()},
        "ntk": ntk,
        "findings": findings(ppl, grids, ntk, trained, lengths),
        "tolerance": {"ppl_rtol": PPL_RTOL, "niah_atol": NIAH_ATOL},
        "seconds": time.time() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    plot_niah_panels(summary, out)
    plot_ppl(summary, out)
    report = write_report(out, summary)
    print(f"[demo] report: {report} ({summary['seconds']:.0f} s)")
    for finding in summary["findings"]:
        print(f"  {finding['reproduces']!s:>5}  {finding['finding']}: {finding['numbers']}")
    if summary_to_check is not None:
        problems = compare(summary, summary_to_check)
        print(
            f"[demo] numbers vs {check}: "
            + ("reproduced within tolerance" if not problems else f"{len(problems)} differ")
        )
        for problem in problems[:20]:
            print("   ", problem)
    return summary


def register(subparsers: argparse._SubParsersAction) -> None:
    from longllada.cli import MAX_SEED, int_arg

    parser = subparsers.add_parser("demo", help="the paper's three findings on the shipped tiny twins (CPU, offline)")
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (report.md, figures)")
    parser.add_argument(
        "--repeats", type=int_arg(1), default=REPEATS, help="needles per (length, depth) cell, no scaling"
    )
    parser.add_argument("--scaled-repeats", type=int_arg(1), default=SCALED_REPEATS,
                        help="needles per cell of the NTK grids (the first of the unscaled grid's)")  # fmt: skip
    parser.add_argument("--seed", type=int_arg(0, MAX_SEED), default=0, help="grid and sampling seed (default 0)")
    parser.add_argument("--check", type=Path, default=COMMITTED_SUMMARY, help="summary to compare the numbers with")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``longllada demo``."""
    run_demo(args.out, repeats=args.repeats, scaled_repeats=args.scaled_repeats, seed=args.seed, check=args.check)
    return 0
