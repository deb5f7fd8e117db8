"""`longllada train-tiny`: train the shipped twins, a tiny masked-diffusion LLaDA and its autoregressive twin.

What the twins are, their data and their objectives: :mod:`longllada.twins`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from longllada.cli import MAX_ROPE_BASE, MAX_SEED, float_arg, int_arg
from longllada.output_lock import OutputLock
from longllada.twins.evaluation import NEEDLE_SETS, evaluate_retrieval
from longllada.twins.model_card import write_model_card
from longllada.twins.models import TWIN_MARKER, is_twin_folder, load_twin
from longllada.twins.plot import plot_logs
from longllada.twins.settings import (
    AR_DIR_NAME,
    AR_LOSS_WEIGHTINGS,
    DIFFUSION_DIR_NAME,
    TWINS,
    TrainSettings,
    parse_keyword_mix,
    parse_mix,
    settings_from_dict,
)
from longllada.twins.training import train_twin

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODELS_DIR = REPO / "longllada" / "models"
DEFAULT_LOG_DIR = REPO / "benchmarks" / "train_logs"
MAX_LEARNING_RATE = 1.0  # AdamW's steps grow with it: past 1 the twins only diverge
MAX_SECONDS = 1e7  # about four months


def parse_multiples(text: str) -> tuple[int, ...]:
    """``--eval-multiples 1,2,4,8`` (``''`` for none) -> (1, 2, 4, 8)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise ValueError(f"--eval-multiples must be integers >= 1 separated by commas (or ''), got {text!r}")
    return tuple(int(part) for part in parts)


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    settings = TrainSettings(
        d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, mlp_hidden_size=args.mlp,
        vocab_size=args.vocab_size, train_length=args.train_length, rope_theta=args.rope_theta, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, warmup_steps=min(args.warmup, args.steps), seed=args.seed,
        eval_prompts=args.eval_prompts, time_limit_s=args.time_limit, time_budget_s=args.time_budget,
        short_batch_share=args.short_batch_share, data_workers=args.data_workers,
        distractor_share=args.distractor_share, sft_response_tokens=args.sft_response_tokens,
        ar_loss_weighting=args.ar_loss_weighting, keyword_mix=parse_keyword_mix(args.keyword_mix),
        phrase_subject_share=args.phrase_subject_share, capitalize_share=args.capitalize_share,
        piece_keyword_share=args.piece_keyword_share, log_every=min(args.log_every, args.steps),
        probe_every=min(args.probe_every, args.steps),
        eval_multiples=parse_multiples(args.eval_multiples),
    )  # fmt: skip
    if args.mix:
        settings.mix = parse_mix(args.mix)
    settings.check()
    return settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-tiny", help="train the shipped tiny diffusion and autoregressive twins (GPU recommended)",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainSettings()
    parser.add_argument("--twin", choices=(*TWINS, "both"), default="both", help="which twin to train (default both)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_MODELS_DIR, help="models folder (default: shipped)")
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR, help="logs folder (benchmarks/train_logs)")
    parser.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    parser.add_argument("--d-model", type=int_arg(1), default=defaults.d_model)
    parser.add_argument("--layers", type=int_arg(1), default=defaults.n_layers)
    parser.add_argument("--heads", type=int_arg(1), default=defaults.n_heads)
    parser.add_argument("--mlp", type=int_arg(1), default=defaults.mlp_hidden_size)
    parser.add_argument("--vocab-size", type=int_arg(1), default=defaults.vocab_size)
    parser.add_argument("--train-length", type=int_arg(64), default=defaults.train_length)
    parser.add_argument("--rope-theta", type=float_arg(1.0, MAX_ROPE_BASE, above=True), default=defaults.rope_theta)
    parser.add_argument("--steps", type=int_arg(1), default=defaults.steps)
    parser.add_argument("--batch-size", type=int_arg(1), default=defaults.batch_size)
    parser.add_argument("--lr", type=float_arg(0.0, MAX_LEARNING_RATE, above=True), default=defaults.lr)
    parser.add_argument("--warmup", type=int_arg(0), default=defaults.warmup_steps)
    parser.add_argument("--seed", type=int_arg(0, MAX_SEED), default=defaults.seed)
    parser.add_argument("--mix", default=None, help="row shares, e.g. report=0.35,retrieval=0.15,sft=0.5")
    parser.add_argument("--log-every", type=int_arg(1), default=defaults.log_every)
    parser.add_argument("--probe-every", type=int_arg(1), default=defaults.probe_every)
    parser.add_argument(
        "--eval-prompts", type=int_arg(1), default=defaults.eval_prompts, help="held-out prompts per length"
    )
    parser.add_argument("--eval-multiples", default=",".join(map(str, defaults.eval_multiples)),
                        help="evaluation lengths as multiples of the trained length ('' for none)")  # fmt: skip
    parser.add_argument("--no-eval", action="store_true", help="skip the final retrieval evaluation")
    parser.add_argument("--eval-sets", default=",".join(NEEDLE_SETS),
                        help="needle sets to evaluate: held-out (the generator's reserved keywords) and/or niah-task "
                             "(lm_eval_tasks/longllada_niah/needles.jsonl)")  # fmt: skip
    parser.add_argument("--eval-only", action="store_true", help="evaluate the saved twins, do not train")
    parser.add_argument("--demo-summary", type=Path, default=None,
                        help="the summary.json of a `longllada demo` run on these very weights (docs/demo/): its "
                             "needle scores go into the model cards")  # fmt: skip
    parser.add_argument(
        "--time-limit",
        type=float_arg(0.0, MAX_SECONDS, above=True),
        default=None,
        help="stop training after this many seconds",
    )
    parser.add_argument("--time-budget", type=float_arg(0.0, MAX_SECONDS, above=True), default=None,
                        help="fix the step count from the speed of the first steps so that training takes about "
                             "this many seconds (the count is logged; --steps N reproduces it)")  # fmt: skip
    parser.add_argument("--keyword-mix", default=",".join(f"{w:g}" for w in defaults.keyword_mix),
                        help="training keyword sources: weights of real words, invented words, numbers")  # fmt: skip
    parser.add_argument("--phrase-subject-share", type=float_arg(0.0, 1.0), default=defaults.phrase_subject_share,
                        help="share of training needles whose subject is a run of report words (default 0.5)")  # fmt: skip
    parser.add_argument("--capitalize-share", type=float_arg(0.0, 1.0), default=defaults.capitalize_share,
                        help="share of capitalised training keywords (default 0.25)")  # fmt: skip
    parser.add_argument("--piece-keyword-share", type=float_arg(0.0, 1.0), default=defaults.piece_keyword_share,
                        help="share of training keywords made of random vocabulary tokens, so that every token is "
                             "learned as a piece to copy (default 0.4; 0 before this option existed)")  # fmt: skip
    parser.add_argument("--sft-response-tokens", type=int_arg(0), default=defaults.sft_response_tokens,
                        help="longest SFT response (answer + EOS padding); 0: any length (default 32)")  # fmt: skip
    parser.add_argument("--ar-loss-weighting", choices=AR_LOSS_WEIGHTINGS, default=defaults.ar_loss_weighting,
                        help="AR loss: 'row' (each row counts the same, default) or 'token' (mean over tokens)")  # fmt: skip
    parser.add_argument("--short-batch-share", type=float_arg(0.0, 1.0), default=defaults.short_batch_share,
                        help="share of batches shorter than the trained length (default 0.1)")  # fmt: skip
    parser.add_argument("--distractor-share", type=float_arg(0.0, 1.0), default=defaults.distractor_share,
                        help="share of needle rows with a second needle about another subject (default 0.3)")  # fmt: skip
    parser.add_argument("--data-workers", type=int_arg(0), default=defaults.data_workers,
                        help="processes building batches (0: a thread of this process, the default); the data "
                             "stream depends on this count")  # fmt: skip


def check_outputs(out_dir: Path, log_dir: Path, twins: tuple[str, ...]) -> None:
    """Refuse, before training, outputs this command did not write: a twin folder with files but without the
    marker :func:`~longllada.twins.models.save_twin` leaves, a log whose first record is not a twin's ``start``
    record, a summary that is not a twin's (a JSON object naming the twin and its settings), or a file where a
    folder goes."""
    for flag, folder in (("--out-dir", out_dir), ("--log-dir", log_dir)):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{flag} {folder} is a file; allowed: a folder (created if absent)")
    for twin in twins:
        folder = out_dir / (DIFFUSION_DIR_NAME if twin == "diffusion" else AR_DIR_NAME)
        if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not is_twin_folder(folder, twin))):
            raise ValueError(
                f"--out-dir {out_dir}: {folder} holds files that `longllada train-tiny` did not write (no {TWIN_MARKER} "
                f"of the {twin} twin); it is left untouched; allowed: a new folder, or one this command wrote"
            )
        log, summary = log_dir / f"{twin}.jsonl", log_dir / f"{twin}_summary.json"
        first = _json_record(log, first_line=True) if log.exists() else {"event": "start", "twin": twin}
        if first.get("event") != "start" or first.get("twin") != twin:
            raise ValueError(
                f"--log-dir {log_dir}: {log} is not a training log of the {twin} twin; it is left untouched"
            )
        record = _json_record(summary) if summary.exists() else {"twin": twin, "settings": {}}
        if record.get("twin") != twin or "settings" not in record:
            raise ValueError(
                f"--log-dir {log_dir}: {summary} is not a summary of the {twin} twin; it is left untouched"
            )


def _json_record(path: Path, first_line: bool = False) -> dict:
    """The JSON object that the file is (or that its first line is), else an empty dict."""
    try:
        text = path.read_text(encoding="utf-8")
        record = json.loads(text.partition("\n")[0] if first_line else text)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def run(args: argparse.Namespace) -> int:
    twins = TWINS if args.twin == "both" else (args.twin,)
    settings = settings_from_args(args)
    check_outputs(args.out_dir, args.log_dir, twins)
    folders = [args.out_dir / (DIFFUSION_DIR_NAME if twin == "diffusion" else AR_DIR_NAME) for twin in twins]
    with contextlib.ExitStack() as locks:  # one run at a time writes these (checked again under the locks)
        for folder in folders:
            locks.enter_context(OutputLock(folder, "longllada train-tiny", "--out-dir"))
        locks.enter_context(OutputLock(args.log_dir, "longllada train-tiny", "--log-dir"))
        check_outputs(args.out_dir, args.log_dir, twins)
        return _train_and_evaluate(args, settings, twins)


def _train_and_evaluate(args: argparse.Namespace, settings: TrainSettings, twins: tuple[str, ...]) -> int:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    command = "longllada train-tiny " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["train-tiny"] else sys.argv[1:])
    args.log_dir.mkdir(parents=True, exist_ok=True)
    demo = json.loads(args.demo_summary.read_text(encoding="utf-8")) if args.demo_summary else None
    for twin in twins:
        folder = args.out_dir / (DIFFUSION_DIR_NAME if twin == "diffusion" else AR_DIR_NAME)
        summary_path = args.log_dir / f"{twin}_summary.json"
        if args.eval_only:
            summary = json.loads(summary_path.read_text())
        else:
            summary = train_twin(twin, settings, args.out_dir, args.log_dir, device)
            summary["device_name"] = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
            summary["command"] = command
        # the settings the saved twin was trained with (an --eval-only run may be given other ones)
        trained = settings_from_dict(summary["settings"]) if "settings" in summary else settings
        eval_settings = replace(trained, eval_multiples=settings.eval_multiples, eval_prompts=settings.eval_prompts)
        if not args.no_eval:
            from longllada.loading import load_tokenizer

            model = load_twin(twin, folder, device)
            tokenizer = load_tokenizer(folder)
            sets = [name.strip() for name in args.eval_sets.split(",") if name.strip()]
            fresh = evaluate_retrieval(twin, model, tokenizer, eval_settings, device, needle_set_names=sets)
            # --eval-only adds to (or replaces cells of) the saved results instead of dropping the others
            kept = summary.get("retrieval", []) if args.eval_only else []
            cell = lambda r: (r.get("needles", "held-out"), r["prompt_length"], r["ntk"])  # noqa: E731
            new_cells = {cell(r) for r in fresh}
            summary["retrieval"] = sorted([r for r in kept if cell(r) not in new_cells] + fresh,
                                          key=lambda r: (r["prompt_length"], r.get("needles", "held-out"), r["ntk"]))  # fmt: skip
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        write_model_card(twin, folder, trained, summary, summary.get("command", command), args.log_dir,
                         summary.get("card_note", ""), demo)  # fmt: skip
    plot_logs(args.log_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longllada.twins.cli", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
