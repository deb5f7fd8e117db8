"""The paper's needle-in-a-haystack sweep, timed end to end through the real command line.

Each run is one ``longllada eval --model longllada --tasks longllada_niah`` command, as a user types it (two
processes: ``accelerate launch --multi_gpu --num_processes 2 -m longllada.eval_cli ...``; on CPUs, ``--cpu``:
``torchrun`` with ``ACCELERATE_USE_CPU=1``), on the grid of ``--lengths`` × ``--depths`` × ``--repeats`` (the
paper's: 2k-32k × 0..100 step 10 × 10 = 660 answers; LongLLaDA arXiv 2506.14429, NeedleBench "origin"), for
every combination of ``--modes`` (``exact``: no cache; ``prefix``: ``cache=prefix``, Fast-dLLM's prefix cache),
``--processes`` and ``--batch-sizes``. The model is a folder loaded as a user loads one: ``--folder`` (with
``--build-folder``: an LLaDA-8B-shaped folder of random bf16 weights written first, as benchmarks/multi_gpu.py
does), or ``--tiny``, the shipped tiny twin.

From the ``longllada-timing`` lines that ``--model longllada`` and the task log, and lm-eval's own results and
samples, each run records: start-up (process start to the model's constructor: imports, CLI), loading, grid
building and tokenisation, the adapter's tokenisation of the requests, generation per context length (sum of
the batches' seconds, per process), the whole command, the fixed start-up (whole command less loading and
generation), peak GPU memory per process, and every answer (text, score and generated token ids, the last from
``LONGLLADA_LOG_LEVEL=DEBUG``). A run on a subsample of the paper's grid is projected to the whole grid from
its seconds per answer at each length (``projection``). Runs on the same grid are compared answer by answer
with the first run of the same mode (``comparisons``: identical answers and token agreement), which shows
one GPU against two and batch N against batch 1.

    GIT_COMMIT=$(git rev-parse HEAD) python benchmarks/niah_sweep.py --folder /tmp/llada8b-random \\
        --build-folder --modes prefix --processes 1 --batch-sizes 1,8 --out /tmp/out/sweep_prefix.json
    python benchmarks/niah_sweep.py --tiny --cpu --lengths 256,512 --depths 0,100 --repeats 2 \\
        --modes prefix --batch-sizes 1,4 --out /tmp/niah_sweep_tiny.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"
PAPER_LENGTHS = (2000, 4000, 8000, 16000, 24000, 32000)
PAPER_DEPTHS = tuple(range(0, 101, 10))
PAPER_REPEATS = 10
MARKER = "niah_sweep"  # the JSON files this script writes carry {"benchmark": MARKER}
TIMING = re.compile(r"longllada-timing (\{.*\})\s*$")
OUTPUTS = re.compile(r"longllada-outputs (\{.*\})\s*$")


def int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of non-negative integers")
    return values


# -- one run ---------------------------------------------------------------------------------------------------
def command_for(args: argparse.Namespace, folder: Path, mode: str, processes: int, batch_size: int,
                out: Path) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """The command line of one run and the environment it adds."""
    env = {"LONGLLADA_LOG_LEVEL": "DEBUG", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if processes == 1:
        launcher = [sys.executable, "-m", "longllada", "eval"]
    elif args.cpu:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(processes), "-m", "longllada.eval_cli"]  # fmt: skip
        env["ACCELERATE_USE_CPU"] = "1"
    else:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                    str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m", "longllada.eval_cli"]  # fmt: skip
    model_args = f"pretrained={folder}" + (",cache=prefix" if mode == "prefix" else ",cache=none")
    if args.model_args:
        model_args += f",{args.model_args}"
    metadata = {"context_lengths": args.lengths, "depths": args.depths, "num_repeats": args.repeats}
    program = ["--model", "longllada", "--model_args", model_args, "--tasks", "longllada_niah",
               "--metadata", json.dumps(metadata), "--batch_size", str(batch_size),
               "--log_samples", "--output_path", str(out)]  # fmt: skip
    if args.gen_kwargs:
        program += ["--gen_kwargs", args.gen_kwargs]
    if processes == 1:
        program += ["--device", "cpu" if args.cpu else "cuda:0"]
    return launcher + program, env


def parse_log(text: str) -> tuple[list[dict], list[dict]]:
    """The ``longllada-timing`` and ``longllada-outputs`` records of a run's log."""
    timings, outputs = [], []
    for line in text.splitlines():
        if match := TIMING.search(line):
            timings.append(json.loads(match.group(1)))
        elif match := OUTPUTS.search(line):
            outputs.append(json.loads(match.group(1)))
    return timings, outputs


def grid_length(prompt_tokens: int, lengths: list[int]) -> int:
    """The grid length a prompt of this many tokens was built for (prompts are within 1% below it)."""
    return min((length for length in lengths if prompt_tokens <= length), default=max(lengths))


def summarise(run: dict, timings: list[dict], outputs: list[dict], launched: float, lengths: list[int]) -> None:
    """Fill a run's timing fields from its log records (partial runs too: what finished is counted)."""

    def events(name: str) -> list[dict]:
        return [record for record in timings if record["event"] == name]

    inits, loads, grids = events("init"), events("load"), events("niah_grid")
    requests, generated, batches = events("requests"), events("generated"), events("batch")
    if inits:
        run["startup_s"] = round(min(record["t"] for record in inits) - launched, 2)
    if loads:
        run["load_s"] = max(record["seconds"] for record in loads)
    if grids:
        run["grid_s"] = max(record["build_s"] for record in grids)
        run["grid_dataset_s"] = max(record["dataset_s"] for record in grids)
        run["grid_tokenizer_load_s"] = max(record["tokenizer_s"] for record in grids)
        run["grid_prompt_tokens"] = grids[0]["prompt_tokens"]
        run["grid_from_cache"] = all(record.get("cached", False) for record in grids)
    if requests:
        run["request_tokenisation_s"] = max(record["seconds"] for record in requests)
    if generated:
        run["peak_gib_per_process"] = {
            str(r["rank"]): r["peak_gib"] for r in sorted(generated, key=lambda r: r["rank"])
        }
    per_rank: dict[int, dict[int, list[float]]] = {}
    for record in batches:
        length = grid_length(max(record["prompt_tokens"]), lengths)
        answers_seconds = per_rank.setdefault(record["rank"], {}).setdefault(length, [0, 0.0])
        answers_seconds[0] += record["rows"]
        answers_seconds[1] += record["seconds"]
    per_length = {}
    for length in lengths:
        ranks = [per_rank[rank][length] for rank in per_rank if length in per_rank[rank]]
        if not ranks:
            continue
        answers = sum(answers for answers, _ in ranks)
        wall = max(seconds for _, seconds in ranks)  # the processes run side by side
        per_length[str(length)] = {
            "answers": answers, "generation_s": round(wall, 2),
            "seconds_per_answer": round(wall / answers, 4), "answers_per_s": round(answers / wall, 3),
            "gpu_seconds_per_answer": round(sum(seconds for _, seconds in ranks) / answers, 4),
            "per_process_s": [round(seconds, 2) for _, seconds in ranks],
        }  # fmt: skip
    run["per_length"] = per_length
    run["generation_s"] = round(max((sum(s for _, s in by.values()) for by in per_rank.values()), default=0.0), 2)
    if "wall_s" in run and "load_s" in run:
        run["fixed_s"] = round(run["wall_s"] - run["load_s"] - run["generation_s"], 2)
    run["batches"] = len(batches)
    # Where the fixed part goes: each process's events in seconds from the command's start, and every batch
    # ([rank, width, rows, seconds, ended at]), so that stragglers and uneven processes show.
    timeline: dict[str, dict[str, float]] = {}
    for record in timings:
        if record["event"] in ("init", "load", "niah_grid", "requests", "generated"):
            rank = str(record.get("rank", 0))
            timeline.setdefault(rank, {})[record["event"]] = round(record["t"] - launched, 2)
    for record in batches:
        first = timeline.setdefault(str(record["rank"]), {})
        first["first_batch_end"] = min(first.get("first_batch_end", 1e18), round(record["t"] - launched, 2))
    run["timeline_s"] = timeline
    if generated and "wall_s" in run:
        run["after_generation_s"] = round(run["wall_s"] - max(r["t"] for r in generated) + launched, 2)
    run["batch_records"] = [[record["rank"], record["width"], record["rows"], record["seconds"],
                             round(record["t"] - launched, 2)] for record in batches]  # fmt: skip


def read_samples(out: Path, outputs: list[dict]) -> tuple[dict, list[dict]]:
    """lm-eval's results for the task and one record per answer, with its generated ids from the log."""
    results_files, samples_files = sorted(out.rglob("results_*.json")), sorted(out.rglob("samples_longllada_niah_*"))
    if not results_files or not samples_files:
        return {}, []
    results = json.loads(results_files[-1].read_text())["results"]["longllada_niah"]
    ids_by_prompt = {}
    for record in outputs:
        ids_by_prompt.update(zip(record["prompt_hashes"], record["outputs"]))
    samples = []
    with samples_files[-1].open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            sample = json.loads(line)
            doc = sample["doc"]
            prompt_hash = sample.get("prompt_hash") or hashlib.sha256(doc["input"].encode()).hexdigest()
            samples.append({
                "doc_id": sample["doc_id"], "context_length": doc["context_length"],
                "depth_percent": doc["depth_percent"], "repeat": doc["repeat"], "prompt_tokens": doc["prompt_tokens"],
                "prompt_hash": prompt_hash, "response": sample["filtered_resps"][0], "score": sample.get("score"),
                "output_ids": ids_by_prompt.get(prompt_hash),
            })  # fmt: skip
    samples.sort(key=lambda sample: sample["doc_id"])
    return {k: v for k, v in results.items() if k in ("score,none", "alias")}, samples


def run_one(args: argparse.Namespace, folder: Path, mode: str, processes: int, batch_size: int,
            deadline: float, gpu: int | None = None) -> dict:  # fmt: skip
    name = f"{mode}_p{processes}_b{batch_size}"
    out = args.work_dir / name
    shutil.rmtree(out, ignore_errors=True)
    command, env_add = command_for(args, folder, mode, processes, batch_size, out)
    if gpu is not None:
        env_add["CUDA_VISIBLE_DEVICES"] = str(gpu)
    run = {"name": name, "mode": mode, "processes": processes, "batch_size": batch_size,
           "command": " ".join(command), "environment_added": env_add}  # fmt: skip
    budget = deadline - time.time()
    if budget < 30:
        run["skipped"] = "the --deadline-s budget was spent"
        return run
    env = {**os.environ, **env_add, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"[sweep] {name}: {' '.join(command)}", flush=True)
    log_path = args.work_dir / f"{name}.log"
    launched = time.time()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, env=env, cwd=args.work_dir, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            run["returncode"] = process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the launcher and its workers, started in their own process group
            process.wait()
            run["returncode"] = None
            run["timed_out_after_s"] = round(budget, 1)
    run["wall_s"] = round(time.time() - launched, 2)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    timings, outputs = parse_log(text)
    summarise(run, timings, outputs, launched, args.lengths)
    if run["returncode"] != 0:
        run["log_tail"] = text[-3000:]
    results, samples = read_samples(out, outputs)
    run["score"] = results.get("score,none")
    run["samples"] = samples
    if not args.keep_samples:
        shutil.rmtree(out, ignore_errors=True)  # lm-eval's samples file holds every prompt (~100 MB at 32k)
    return run


# -- across runs -----------------------------------------------------------------------------------------------
def compare(run: dict, reference: dict) -> dict:
    """Answer-by-answer agreement of two runs on the same grid."""
    theirs = {sample["prompt_hash"]: sample for sample in reference["samples"]}
    shared = [(s, theirs[s["prompt_hash"]]) for s in run["samples"] if s["prompt_hash"] in theirs]
    same_text = sum(a["response"] == b["response"] for a, b in shared)
    with_ids = [(a["output_ids"], b["output_ids"]) for a, b in shared if a["output_ids"] and b["output_ids"]]
    same_ids = sum(a == b for a, b in with_ids)
    tokens = sum(len(a) for a, _ in with_ids)
    agree = sum(x == y for a, b in with_ids for x, y in zip(a, b))
    return {
        "run": run["name"], "reference": reference["name"], "answers": len(shared),
        "identical_text": same_text, "identical_ids": same_ids, "compared_ids": len(with_ids),
        "token_agreement": round(agree / tokens, 5) if tokens else None,
    }  # fmt: skip


def projection(run: dict, grid: dict) -> dict | None:
    """The paper's whole grid (6 lengths × 11 depths × 10 repeats) from this run's seconds per answer at each
    length, with this run's process count and on one GPU (the processes' summed seconds per answer), plus the
    fixed start-up and loading as measured; None if a paper length was not measured."""
    per_length = run.get("per_length", {})
    if any(str(length) not in per_length for length in PAPER_LENGTHS):
        return None
    answers_per_length = len(PAPER_DEPTHS) * PAPER_REPEATS
    fixed = run.get("fixed_s", 0.0) + run.get("load_s", 0.0)
    this_run = sum(per_length[str(n)]["seconds_per_answer"] * answers_per_length for n in PAPER_LENGTHS)
    one_gpu = sum(per_length[str(n)]["gpu_seconds_per_answer"] * answers_per_length for n in PAPER_LENGTHS)
    measured = len(grid["depths"]) * grid["repeats"]
    return {
        "answers": answers_per_length * len(PAPER_LENGTHS),
        "generation_s": round(this_run, 1),
        "total_s": round(this_run + fixed, 1),
        "one_gpu_generation_s": round(one_gpu, 1),
        "one_gpu_total_s": round(one_gpu + fixed, 1),
        "from_answers_per_length": measured,
        "measured_whole_grid": measured == answers_per_length,
        "note": "seconds per answer at each length × 110 answers per length (one GPU: the processes' seconds "
        "summed), plus this run's fixed start-up and loading",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/llada8b-random"), help="the model folder")
    parser.add_argument("--build-folder", action="store_true", help="write the random LLaDA-8B-shaped folder first")
    parser.add_argument("--tiny", action="store_true", help="the shipped tiny twin instead of --folder")
    parser.add_argument("--cpu", action="store_true", help="run on CPU processes (checks the script)")
    parser.add_argument("--modes", default="prefix", help="exact and/or prefix, comma-separated")
    parser.add_argument("--processes", type=int_list, default=[1], help="process (GPU) counts")
    parser.add_argument("--batch-sizes", type=int_list, default=[1], help="lm-eval --batch_size values")
    parser.add_argument("--lengths", type=int_list, default=list(PAPER_LENGTHS))
    parser.add_argument("--depths", type=int_list, default=list(PAPER_DEPTHS))
    parser.add_argument("--repeats", type=int, default=PAPER_REPEATS)
    parser.add_argument("--model-args", default="", help="extra --model_args (e.g. dtype=bfloat16)")
    parser.add_argument("--gen-kwargs", default="", help="lm-eval --gen_kwargs (e.g. max_gen_toks=8 for a check)")
    parser.add_argument(
        "--parallel-single", action="store_true", help="one-process runs side by side, one per visible GPU"
    )
    parser.add_argument(
        "--compare-with",
        type=Path,
        action="append",
        default=[],
        help="a JSON file of an earlier invocation: its answers are compared with these",
    )
    parser.add_argument("--deadline-s", type=float, default=1e9, help="stop starting runs after this many seconds")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/niah_sweep_runs"))
    parser.add_argument("--keep-samples", action="store_true", help="keep lm-eval's output folders")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (--build-folder)")
    parser.add_argument("--note", default="", help="a line stored in the JSON (what this invocation is for)")
    parser.add_argument("--out", type=Path, help="the JSON file written")
    parser.add_argument("--markdown", type=Path, nargs="+", help="print the table of these JSON files and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown([json.loads(path.read_text()) for path in args.markdown]))
        return 0
    if args.out is None:
        parser.error("--out is required (the JSON file written)")
    modes = [mode for mode in args.modes.split(",") if mode]
    if not modes or any(mode not in ("exact", "prefix") for mode in modes):
        parser.error(f"--modes {args.modes!r}: allowed: exact, prefix (comma-separated)")
    if any(n < 1 for n in args.processes + args.batch_sizes) or args.repeats < 1:
        parser.error("--processes, --batch-sizes and --repeats must be positive")
    if args.out.exists():
        try:
            ours = json.loads(args.out.read_text()).get("benchmark") == MARKER
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            parser.error(f"--out {args.out} exists and was not written by this script; choose another path")
    deadline = time.time() + args.deadline_s
    args.work_dir.mkdir(parents=True, exist_ok=True)

    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from generate_bench import environment

    device = torch.device("cpu" if args.cpu else "cuda")
    results: dict = {
        "benchmark": MARKER, "note": args.note, "argv": sys.argv if argv is None else argv,
        "environment": environment(device),
        "grid": {"lengths": args.lengths, "depths": args.depths, "repeats": args.repeats},
        "runs": [], "comparisons": [],
    }  # fmt: skip
    if device.type == "cuda":
        results["environment"]["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")

    folder = (TWIN if args.tiny else args.folder).resolve()
    if args.build_folder and not args.tiny:
        from multi_gpu import make_folder

        results["folder"] = make_folder(folder, args.seed)
        print(f"[sweep] folder {json.dumps(results['folder'])}", flush=True)
    results["folder_path"] = str(folder)
    save()
    plan = [(mode, processes, batch_size) for mode in modes for processes in args.processes
            for batch_size in args.batch_sizes]  # fmt: skip
    slots = torch.cuda.device_count() if args.parallel_single and device.type == "cuda" else 1
    lock = threading.Lock()

    def finished(run: dict) -> None:
        run["projection"] = projection(run, results["grid"]) if "skipped" not in run else None
        with lock:
            results["runs"].append(run)
            save()  # after every run: a command stopped at its time limit keeps what finished

    runs = run_plan(args, folder, plan, deadline, slots, finished)
    others = [run for path in args.compare_with for run in json.loads(path.read_text())["runs"] if run.get("samples")]
    first_of_mode: dict[str, dict] = {}
    results["runs"] = runs  # in plan order
    for run in runs:
        if run.get("samples"):
            reference = first_of_mode.setdefault(run["mode"], run)
            if reference is not run:
                results["comparisons"].append(compare(run, reference))
            for other in others:
                if other["mode"] == run["mode"] and other["name"] != run["name"]:
                    results["comparisons"].append({**compare(run, other), "reference_file": True})
    save()
    print(table(results), flush=True)
    return 0 if all(run.get("returncode") == 0 for run in results["runs"] if "skipped" not in run) else 1


def run_plan(args: argparse.Namespace, folder: Path, plan: list[tuple[str, int, int]], deadline: float,
             slots: int, finished: Callable[[dict], None]) -> list[dict]:  # fmt: skip
    """Run the plan in order (``finished`` is called with each run as it ends); with several GPU slots,
    one-process runs go side by side, one per GPU, before the others."""

    def report(run: dict) -> dict:
        summary = {k: run.get(k) for k in ("name", "returncode", "wall_s", "startup_s", "load_s", "grid_s",
                                            "request_tokenisation_s", "generation_s", "fixed_s", "score")}  # fmt: skip
        print(f"[sweep] {json.dumps(summary)}", flush=True)
        finished(run)
        return run

    if slots <= 1:
        return [report(run_one(args, folder, *item, deadline)) for item in plan]
    import queue
    from concurrent.futures import ThreadPoolExecutor

    free: queue.Queue[int] = queue.Queue()
    for gpu in range(slots):
        free.put(gpu)

    def on_free_gpu(item: tuple[str, int, int]) -> dict:
        gpu = free.get()
        try:
            return report(run_one(args, folder, *item, deadline, gpu=gpu))
        finally:
            free.put(gpu)

    runs: list[dict] = []
    single = [item for item in plan if item[1] == 1]
    with ThreadPoolExecutor(max_workers=slots) as pool:
        runs += list(pool.map(on_free_gpu, single))
    runs += [report(run_one(args, folder, *item, deadline)) for item in plan if item[1] > 1]
    return runs


def markdown(files: list[dict]) -> str:
    """benchmarks/README.md's table: per run, seconds per answer and answers per second at each length, the
    whole command, and the paper grid projected (or measured); then the answer comparisons."""
    lengths = sorted({int(n) for f in files for run in f["runs"] for n in run.get("per_length", {})})
    label = lambda n: f"{n // 1000}k" if n % 1000 == 0 else str(n)  # noqa: E731
    head = ["run", "mode", "GPUs", "batch", "answers"] + [f"{label(n)} s/answer (answers/s)" for n in lengths]
    lines = ["| " + " | ".join(head + ["whole command, s", "fixed, s", "load, s", "paper grid, s"]) + " |"]
    lines.append("|" + " --- |" * (len(head) + 4))
    for f in files:
        for run in f["runs"]:
            if "skipped" in run:
                continue
            cells = []
            for n in lengths:
                row = run.get("per_length", {}).get(str(n))
                cells.append(f"{row['seconds_per_answer']:.3f} ({row['answers_per_s']:.2f})" if row else "–")
            grid = run.get("projection") or {}
            paper = "–"
            if grid:
                paper = f"{grid['total_s']:.0f}" + ("" if grid["measured_whole_grid"] else " (projected)")
                paper += f"; one GPU {grid['one_gpu_total_s']:.0f}"
            lines.append("| " + " | ".join([run["name"], run["mode"], str(run["processes"]), str(run["batch_size"]),
                                            str(len(run.get("samples", [])))] + cells +
                                           [str(run.get("wall_s")), str(run.get("fixed_s")), str(run.get("load_s")),
                                            paper]) + " |")  # fmt: skip
    comparisons = [c for f in files for c in f.get("comparisons", [])]
    if comparisons:
        lines += [
            "",
            "| run | against | answers | identical ids | token agreement |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [f"| {c['run']} | {c['reference']} | {c['answers']} | {c['identical_ids']}/{c['compared_ids']} | "
                  f"{c['token_agreement']} |" for c in comparisons]  # fmt: skip
    return "\n".join(lines)


def table(results: dict) -> str:
    lines = ["run | answers | wall s | fixed s | load s | generation s | per length: s/answer"]
    for run in results["runs"]:
        if "skipped" in run:
            lines.append(f"{run['name']} | skipped: {run['skipped']}")
            continue
        per = ", ".join(f"{k}: {v['seconds_per_answer']:.3f}" for k, v in run.get("per_length", {}).items())
        lines.append(f"{run['name']} | {len(run.get('samples', []))} | {run.get('wall_s')} | {run.get('fixed_s')} | "
                     f"{run.get('load_s')} | {run.get('generation_s')} | {per}")  # fmt: skip
        if run.get("projection"):
            lines.append(f"  projected paper grid: {run['projection']['total_s']} s")
    lines += [json.dumps(c) for c in results["comparisons"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
