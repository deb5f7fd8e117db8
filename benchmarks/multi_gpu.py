"""Evaluation over several GPUs: lm-eval's data parallelism and device_map sharding, timed.

Parts (``--parts``):

- ``folder``: writes an LLaDA-8B-shaped model with random bf16 weights (no download) as a Hub-style folder in
  ``--folder``: our remote code, config with ``auto_map``, sharded safetensors, generation_config, and the shipped
  diffusion twin's tokenizer (its special ids are written into the config; the 126464-row embedding stays).
- ``lm-eval``: ``longllada_niah`` on the grid of ``--metadata``, once per (model kind, process count): model kind
  ``hf`` runs ``lm_eval --model hf --model_args pretrained=<folder>,trust_remote_code=True``, kind ``longllada``
  runs ``longllada eval --model longllada``; one process is a plain run, N > 1 processes run under
  ``accelerate launch --multi_gpu --num_processes N`` (on CPUs, ``--cpu``: ``torchrun`` with
  ``ACCELERATE_USE_CPU=1``). Wall time of each whole command (model loading included), and each N-process run's
  per-sample outputs compared with the one-process run's (``filtered_resps`` by ``doc_id``) and its cells.
- ``sharded``: the folder loaded with ``AutoModelForCausalLM.from_pretrained(..., device_map="auto")`` over every
  visible GPU: the tokens of a 32-token exact-mode answer at ``--compare-length`` against the same model on one
  GPU, then a 1-step exact ``generate`` at each ``--sharded-lengths`` (one forward pass over the whole sequence),
  with wall time and each GPU's peak memory.

Everything goes to the JSON file ``--out`` (with GPU, torch, transformers and ``GIT_COMMIT``); the last lines
printed are a short table. ``--cpu --tiny`` checks the script on a CPU in a minute with the shipped tiny twin.

    GIT_COMMIT=$(git rev-parse HEAD) python benchmarks/multi_gpu.py --folder /tmp/llada8b \\
        --parts folder,lm-eval,sharded --out benchmarks/results/h200x2_multi_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generate_bench import GiB, build_model, environment, random_tokens  # noqa: E402

from longllada.tiny_model import copy_remote_code, write_generation_config  # noqa: E402
from modeling_longllada import LongLLaDAConfig  # noqa: E402
from modeling_longllada.families import LLADA  # noqa: E402

TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
DEFAULT_METADATA = {"context_lengths": [2000, 4000], "depths": [0, 50, 100], "num_repeats": 2}
GEN = 32  # new tokens, block length and steps: the paper's needle setup


# -- the model folder ------------------------------------------------------------------------------------------


def make_folder(folder: Path, seed: int, layers: int | None = None) -> dict:
    """Random-weight LLaDA-8B-shaped folder that loads through ``trust_remote_code`` (see the module docstring);
    ``layers``: that many blocks instead of 32 (the same width, embedding and head: a cheaper model for
    measuring what is not the model's own time)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TWIN, trust_remote_code=True)
    token_ids = {
        "mask_token_id": tokenizer.mask_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    shape = {"n_layers": layers} if layers else {}
    config = LongLLaDAConfig(architectures=["LongLLaDAModelLM"], auto_map=LLADA.auto_map, **shape, **token_ids)
    start = time.perf_counter()
    model = build_model(config, torch.device("cuda", 0), torch.bfloat16, seed)
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, max_shard_size="4GB")
    del model
    torch.cuda.empty_cache()
    for name in TOKENIZER_FILES:
        if (TWIN / name).is_file():
            shutil.copyfile(TWIN / name, folder / name)
    copy_remote_code(folder)
    write_generation_config(folder, token_ids)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return {"folder": str(folder), "seconds": round(time.perf_counter() - start, 1), "weights_gib": size / GiB}


# -- lm-eval data parallelism ----------------------------------------------------------------------------------


def eval_command(kind: str, folder: Path, processes: int, cpu: bool, metadata: dict, extra_args: str,
                 out: Path) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """The command line (and environment additions) of one lm-eval run."""
    env: dict[str, str] = {}
    if processes == 1:
        launcher = [sys.executable, "-m"]
    elif cpu:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(processes), "-m"]  # fmt: skip
        env["ACCELERATE_USE_CPU"] = "1"
    else:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                    str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m"]  # fmt: skip
    model_args = f"pretrained={folder},max_length=8192" + (f",{extra_args}" if extra_args else "")
    if kind == "hf":
        program = ["lm_eval", "--model", "hf", "--model_args", model_args + ",trust_remote_code=True",
                   "--include_path", str(REPO / "lm_eval_tasks")]  # fmt: skip
    else:
        program = ["longllada", "eval", "--model", "longllada", "--model_args", model_args]
    program += ["--tasks", "longllada_niah", "--metadata", json.dumps(metadata), "--batch_size", "1",
                "--log_samples", "--output_path", str(out)]  # fmt: skip
    if processes == 1:
        program += ["--device", "cpu" if cpu else "cuda:0"]
    return launcher + program, env


def read_run(out: Path) -> tuple[dict, dict[int, list]]:
    (results_file,) = out.rglob("results_*.json")
    (samples_file,) = out.rglob("samples_longllada_niah_*.jsonl")
    results = json.loads(results_file.read_text())["results"]["longllada_niah"]
    samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()]
    return results, {s["doc_id"]: s["filtered_resps"] for s in samples}


def lm_eval_runs(args: argparse.Namespace, folder: Path, work: Path) -> list[dict]:
    rows = []
    for kind in args.models.split(","):
        extra = args.longllada_args if kind == "longllada" else args.hf_args
        reference = None
        for processes in [int(n) for n in args.processes.split(",")]:
            out = work / f"{kind}_{processes}"
            shutil.rmtree(out, ignore_errors=True)
            command, env_add = eval_command(kind, folder, processes, args.cpu, args.metadata, extra, out)
            env = {**os.environ, **env_add, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            print(f"[lm-eval] {kind} x{processes}: {' '.join(command)}", flush=True)
            start = time.perf_counter()
            done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
            wall = time.perf_counter() - start
            (work / f"{kind}_{processes}.log").write_text(done.stdout + done.stderr)
            row = {"model": kind, "processes": processes, "wall_s": round(wall, 1), "returncode": done.returncode,
                   "model_args_extra": extra}  # fmt: skip
            if done.returncode != 0:
                row["error_tail"] = (done.stdout + done.stderr)[-3000:]
                print(row["error_tail"], flush=True)
                rows.append(row)
                continue
            results, outputs = read_run(out)
            ranks = re.findall(r"Building contexts for longllada_niah on rank (\d+)", done.stdout + done.stderr)
            row.update(samples=len(outputs), score=results.get("score,none"), ranks=sorted(set(map(int, ranks))))
            if reference is None:
                reference = (results, outputs)
            else:
                same = [doc for doc in reference[1] if outputs.get(doc) == reference[1][doc]]
                cells = {k: v for k, v in results.items() if k.startswith("score")}
                ref_cells = {k: v for k, v in reference[0].items() if k.startswith("score")}
                row.update(same_outputs_as_one_process=f"{len(same)}/{len(reference[1])}",
                           same_cells=cells == ref_cells)  # fmt: skip
            print(f"[lm-eval] {json.dumps(row)}", flush=True)
            rows.append(row)
    return rows


# -- device_map sharding ---------------------------------------------------------------------------------------


def load(folder: Path, device_map):
    import transformers
    from transformers import AutoModelForCausalLM

    # transformers 5 calls the argument dtype; 4.x calls it torch_dtype
    dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return AutoModelForCausalLM.from_pretrained(
        folder, trust_remote_code=True, device_map=device_map, **{dtype_arg: torch.bfloat16}
    ).eval()


def timed(fn):
    for i in range(torch.cuda.device_count()):
        torch.cuda.synchronize(i)
    start = time.perf_counter()
    out = fn()
    for i in range(torch.cuda.device_count()):
        torch.cuda.synchronize(i)
    return out, time.perf_counter() - start


def peaks_reset() -> None:
    for i in range(torch.cuda.device_count()):
        torch.cuda.synchronize(i)
        torch.cuda.reset_peak_memory_stats(i)


def peaks() -> list[float]:
    return [round(torch.cuda.max_memory_allocated(i) / GiB, 1) for i in range(torch.cuda.device_count())]


def ordinary_tokens(config: LongLLaDAConfig, length: int, seed: int) -> torch.Tensor:
    """[1, length] random ids above the special ones: below LLaDA's specials (generate_bench's choice) or, with
    the tiny tokenizer's low special ids, between them and the 3000th row."""
    if config.mask_token_id > 2000:
        return random_tokens(config, (1, length), seed=seed, device="cpu")
    return torch.randint(10, 3000, (1, length), generator=torch.Generator().manual_seed(seed))


def sharded_runs(args: argparse.Namespace, folder: Path) -> dict:
    result: dict = {"gpus": torch.cuda.device_count()}
    config = LongLLaDAConfig.from_pretrained(folder)
    answer = dict(max_new_tokens=GEN, block_length=GEN, steps=GEN)
    prompt = ordinary_tokens(config, args.compare_length, seed=1)

    def one_gpu_answer() -> tuple[torch.Tensor, float, float]:
        single, load_s = timed(lambda: load(folder, {"": 0}))
        tokens, seconds = timed(lambda: single.generate(prompt.to("cuda:0"), **answer))
        return tokens, load_s, seconds  # the one-GPU model is freed on return

    expected, load_s, one_gpu_s = one_gpu_answer()
    torch.cuda.empty_cache()
    result["one_gpu"] = {"load_s": round(load_s, 1), "answer_s": round(one_gpu_s, 2), "length": args.compare_length}

    model, load_s = timed(lambda: load(folder, "auto"))
    placement: dict[str, int] = {}
    for name, device in model.hf_device_map.items():
        placement[str(device)] = placement.get(str(device), 0) + (".blocks." in name)
    result["device_map_blocks_per_device"] = placement
    result["weights_gib_per_gpu"] = [round(torch.cuda.memory_allocated(i) / GiB, 1) for i in range(result["gpus"])]
    got, sharded_s = timed(lambda: model.generate(prompt.to(model.device), **answer))
    result["sharded"] = {"load_s": round(load_s, 1), "answer_s": round(sharded_s, 2), "length": args.compare_length,
                         "same_tokens_as_one_gpu": bool(torch.equal(got.cpu(), expected.cpu()))}  # fmt: skip
    print(f"[sharded] {json.dumps(result)}", flush=True)
    result["long"] = []
    for length in [int(n) for n in args.sharded_lengths.split(",") if n]:
        ids = ordinary_tokens(config, length, seed=2).to(model.device)
        peaks_reset()
        try:
            _, seconds = timed(lambda ids=ids: model.generate(ids, max_new_tokens=GEN, block_length=GEN, steps=1))
            row = {"length": length, "generate_1_step_s": round(seconds, 1), "peak_gib_per_gpu": peaks()}
        except torch.OutOfMemoryError as err:
            row = {"length": length, "error": f"out of memory: {str(err)[:200]}"}
        del ids
        torch.cuda.empty_cache()
        print(f"[sharded] {json.dumps(row)}", flush=True)
        result["long"].append(row)
    return result


# -- report ----------------------------------------------------------------------------------------------------


def table(results: dict) -> str:
    lines = []
    for row in results.get("lm_eval", []):
        lines.append(f"lm-eval {row['model']:9s} x{row['processes']}: {row['wall_s']:7.1f} s  "
                     f"samples {row.get('samples')}  score {row.get('score')}  "
                     f"same outputs {row.get('same_outputs_as_one_process', '-')}")  # fmt: skip
    sharded = results.get("sharded")
    if sharded:
        lines.append(f"one GPU: {sharded['one_gpu']}")
        lines.append(f"device_map=auto: {sharded['sharded']} blocks {sharded['device_map_blocks_per_device']}")
        lines += [f"  {row}" for row in sharded["long"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/llada8b-random"), help="the model folder")
    parser.add_argument("--parts", default="folder,lm-eval,sharded")
    parser.add_argument("--models", default="hf,longllada", help="lm-eval model kinds: hf and/or longllada")
    parser.add_argument("--processes", default="1,2", help="process counts; the first is the reference")
    parser.add_argument("--metadata", type=json.loads, default=DEFAULT_METADATA, help="longllada_niah grid (JSON)")
    parser.add_argument("--hf-args", default="", help="extra --model_args for the hf runs")
    parser.add_argument("--longllada-args", default="cache=prefix", help="extra --model_args for longllada runs")
    parser.add_argument("--compare-length", type=int, default=8192, help="prompt of the one-GPU/sharded check")
    parser.add_argument("--sharded-lengths", default="262144", help="1-step exact generate, sharded model")
    parser.add_argument("--cpu", action="store_true", help="lm-eval part on CPU processes (checks the script)")
    parser.add_argument("--tiny", action="store_true", help="use the shipped tiny twin as the model folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/multi_gpu_runs"))
    parser.add_argument("--out", default="benchmarks/results/multi_gpu.json")
    args = parser.parse_args(argv)

    parts = set(args.parts.split(","))
    folder = TWIN if args.tiny else args.folder
    device = torch.device("cpu" if args.cpu else "cuda")
    results: dict = {"environment": environment(device), "arguments": {k: str(v) for k, v in vars(args).items()}}
    if device.type == "cuda":
        results["environment"]["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    args.work_dir.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str) + "\n")

    if "folder" in parts and not args.tiny:
        results["folder"] = make_folder(folder, args.seed)
        print(f"[folder] {json.dumps(results['folder'])}", flush=True)
        save()
    if "lm-eval" in parts:
        results["lm_eval"] = lm_eval_runs(args, folder, args.work_dir)
        save()
    if "sharded" in parts:
        results["sharded"] = sharded_runs(args, folder)
        save()
    print(table(results), flush=True)


if __name__ == "__main__":
    main()
