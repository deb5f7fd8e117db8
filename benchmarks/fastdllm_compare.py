"""Fast-dLLM's caches beside ours: one LLaDA-8B-shaped random bf16 model, the same weights, the same card.

Fast-dLLM (Wu et al. 2025, arXiv 2505.22618; NVlabs/Fast-dLLM, ``llada/``) is the code a user picks for cached
LLaDA decoding. This script imports its ``llada/generate.py`` and ``llada/model/`` from a checkout given with
``--fastdllm`` (nothing of it is copied into this project), builds one model with random weights on the GPU
(``generate_bench.build_model``: the official LLaDA-8B config, bf16), gives Fast-dLLM's ``LLaDAModelLM`` the very
same parameter tensors (no second copy), and runs, per prompt length (default 4k, 16k, 32k tokens), a 32-token
answer (block 32, 32 steps, greedy, low-confidence remasking) with:

- Fast-dLLM's ``generate_with_prefix_cache`` and ``generate_with_dual_cache``, threshold off and 0.9;
- ours with the same settings: ``generate(cache="prefix" | "dual", threshold=None | 0.9)`` (CUDA graphs and the fast
  path at their defaults).

Per run: seconds per answer (median of ``--repeats`` after ``--warmup`` runs; the host clock around the call, the
device synchronised before and after), peak memory (``torch.cuda.max_memory_allocated``, reset before each run;
the 14.9 GiB of weights included), forward passes, the answer's tokens and their agreement with ours in the same
mode. A run that runs out of memory is recorded as such (Fast-dLLM computes the logits of every position at a
block's first step and a float64 softmax over them: 32k positions x 126,464 tokens x 8 bytes = 33 GB per copy).

Fairness: Fast-dLLM's model switches sdpa's memory-efficient kernel off for the whole process when it is built;
its runs get that setting, ours the process's own. Its attention-bias and RoPE buffers (kept between its calls)
are dropped before our runs, so that they do not count in our peak. Order per length: ours, then Fast-dLLM's.

JSON to ``--out``; a short table is printed last. ``--tiny``: a small model on the CPU (float32, a few hundred
tokens) to check the script against a checkout before a GPU run; its timings mean nothing.

    python benchmarks/fastdllm_compare.py --fastdllm .fastdllm --out benchmarks/results/fastdllm_compare_h200.json
    python benchmarks/fastdllm_compare.py --fastdllm /tmp/fastdllm --tiny --out /tmp/fastdllm_tiny.json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generate_bench import GiB, build_model, environment, random_tokens  # noqa: E402

from modeling_longllada import LongLLaDAConfig  # noqa: E402
from modeling_longllada.configuration_longllada import OFFICIAL_DEFAULTS  # noqa: E402

GEN = 32  # new tokens = block length = steps (the paper's needle setup)
MODES = ("prefix", "dual")
THRESHOLDS = (None, 0.9)
# The files of a Fast-dLLM checkout this script needs (all the GPU machine needs to be given).
FASTDLLM_FILES = (
    "llada/generate.py",
    "llada/model/__init__.py",
    "llada/model/configuration_llada.py",
    "llada/model/modeling_llada.py",
)


# -- Fast-dLLM, imported from its checkout ----------------------------------------------------------------------


class FastDLLM:
    """Fast-dLLM's ``llada/`` code: its generate functions and model classes, imported from a checkout."""

    def __init__(self, checkout: Path):
        root = checkout.resolve()
        llada = root if (root / "generate.py").is_file() else root / "llada"
        missing = [name for name in FASTDLLM_FILES if not (llada.parent / name).is_file()]
        if missing:
            raise SystemExit(f"--fastdllm {checkout}: not a Fast-dLLM checkout (missing {missing})")
        # generate.py imports `model.modeling_llada` as a top-level package: llada/ goes first on the path.
        loaded = sys.modules.get("model")
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").parent != llada / "model":
            raise SystemExit(
                f"a module named 'model' is already imported from {loaded.__file__}; run in a fresh process"
            )
        sys.path.insert(0, str(llada))
        spec = importlib.util.spec_from_file_location("fastdllm_generate", llada / "generate.py")
        self.generate = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.generate)
        import model.configuration_llada as configuration
        import model.modeling_llada as modeling

        self.configuration, self.modeling, self.path = configuration, modeling, llada
        # which Fast-dLLM ran: its git commit when the checkout has one, and the files' own digests in any case
        self.commit = _git_commit(root)
        self.files_sha256 = {
            name: hashlib.sha256((llada.parent / name).read_bytes()).hexdigest() for name in FASTDLLM_FILES
        }

    def build(self, ours) -> torch.nn.Module:
        """Fast-dLLM's ``LLaDAModelLM`` over ``ours``'s parameter tensors (shared, not copied). Its modules are made
        on the meta device (its own constructor would allocate 8B float32 parameters on the CPU first)."""
        config = self.configuration.LLaDAConfig(**{name: getattr(ours.config, name) for name in OFFICIAL_DEFAULTS})
        model_config = self.modeling.create_model_config_from_pretrained_config(config)
        model_config.init_device = "meta"
        flags = sdpa_flags()
        inner = self.modeling.LLaDAModel(model_config, init_params=False)
        self.flags = sdpa_flags()  # the sdpa kernels its constructor left enabled: its runs get them
        set_sdpa_flags(flags)
        model = self.modeling.LLaDAModelLM(config, model=inner)
        model.load_state_dict(ours.state_dict(), strict=True, assign=True)
        shared = {p.data_ptr() for p in ours.parameters()}
        if any(p.data_ptr() not in shared for p in model.parameters()):
            raise RuntimeError("Fast-dLLM's model does not share our parameter tensors")
        return model.eval()

    def drop_buffers(self, model) -> None:
        """Forget the attention bias and RoPE tables its model keeps between calls (rebuilt on demand)."""
        model.model._LLaDAModel__cache.clear()

    def run(self, model, prompt, mode: str, threshold: float | None, mask_id: int):
        function = {"prefix": self.generate.generate_with_prefix_cache, "dual": self.generate.generate_with_dual_cache}
        with sdpa_context(self.flags):
            x, nfe = function[mode](
                model, prompt, steps=GEN, gen_length=GEN, block_length=GEN, temperature=0.0,
                remasking="low_confidence", mask_id=mask_id, threshold=threshold,
            )  # fmt: skip
        return x, int(nfe)


def _git_commit(root: Path) -> str | None:
    head = root / ".git" / "HEAD"
    try:
        text = head.read_text().strip()
        if text.startswith("ref: "):
            return (root / ".git" / text[5:]).read_text().strip()
        return text
    except OSError:
        return None


def sdpa_flags() -> dict[str, bool]:
    b = torch.backends.cuda
    return {
        "flash": b.flash_sdp_enabled(),
        "mem_efficient": b.mem_efficient_sdp_enabled(),
        "math": b.math_sdp_enabled(),
    }


def set_sdpa_flags(flags: dict[str, bool]) -> None:
    b = torch.backends.cuda
    b.enable_flash_sdp(flags["flash"])
    b.enable_mem_efficient_sdp(flags["mem_efficient"])
    b.enable_math_sdp(flags["math"])


class sdpa_context:  # noqa: N801 - used as a context manager, like torch's
    def __init__(self, flags: dict[str, bool]):
        self.flags = flags

    def __enter__(self) -> None:
        self.saved = sdpa_flags()
        set_sdpa_flags(self.flags)

    def __exit__(self, *exc) -> None:
        set_sdpa_flags(self.saved)


# -- timing one configuration -------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_runs(call, device: torch.device, warmup: int, repeats: int) -> dict:
    """``call()`` -> (sequences [1, P + 32], forward passes), run ``warmup`` + ``repeats`` times. Out of memory is
    recorded (after the failed run's tensors are released, i.e. outside the except block)."""
    result: dict = {}
    seconds, peaks, tokens, passes = [], [], None, None
    for index in range(warmup + repeats):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        error = None
        sync(device)
        start = time.perf_counter()
        try:
            sequences, passes = call()
            sync(device)
        except torch.OutOfMemoryError as oom:
            error = f"out of memory: {str(oom).splitlines()[0][:300]}"
        elapsed = time.perf_counter() - start
        if error is not None:
            result["error"] = error
            result["failed_at_run"] = index
            break
        if index >= warmup:
            seconds.append(elapsed)
            if device.type == "cuda":
                peaks.append(torch.cuda.max_memory_allocated(device) / GiB)
        if tokens is None:
            tokens = sequences[0, -GEN:].tolist()
        elif sequences[0, -GEN:].tolist() != tokens:
            result["runs_differ"] = True  # a run gave other tokens than the first (non-deterministic kernels)
        del sequences
    if error is not None:  # the failed run's traceback is gone: give its memory back before the next run
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if seconds:
        result.update(s=statistics.median(seconds), all_s=seconds, forward_passes=passes)
        result["peak_gib"] = max(peaks) if peaks else None
    result["tokens"] = tokens
    return result


def agreement(a: list[int] | None, b: list[int] | None) -> float | None:
    if not a or not b:
        return None
    return sum(x == y for x, y in zip(a, b)) / len(a)


def run_name(impl: str, mode: str, threshold: float | None) -> str:
    return f"{impl}_{mode}" + ("" if threshold is None else f"_threshold{threshold:g}")


def bench_length(ours, theirs, fastdllm: FastDLLM, length: int, args, device: torch.device) -> dict:
    config = ours.config
    prompt = random_tokens(config, (1, length), length, device)
    out: dict = {"prompt_length": length, "runs": {}}
    fastdllm.drop_buffers(theirs)
    for mode in MODES:
        for threshold in THRESHOLDS:

            def call(mode=mode, threshold=threshold):
                output = ours.generate(
                    prompt, max_new_tokens=GEN, block_length=GEN, steps=GEN, cache=mode, threshold=threshold,
                    return_dict_in_generate=True,
                )  # fmt: skip
                return output.sequences, output.num_forward_passes

            out["runs"][run_name("ours", mode, threshold)] = timed_runs(call, device, args.warmup, args.repeats)
            print(json.dumps({length: {run_name("ours", mode, threshold): _brief(out["runs"])}}), flush=True)
    for mode in MODES:
        for threshold in THRESHOLDS:
            name = run_name("fastdllm", mode, threshold)

            def call(mode=mode, threshold=threshold):
                return fastdllm.run(theirs, prompt, mode, threshold, config.mask_token_id)

            with torch.no_grad():
                run = timed_runs(call, device, args.warmup, args.repeats)
            mine = out["runs"][run_name("ours", mode, threshold)]
            run["token_agreement_with_ours"] = agreement(run.get("tokens"), mine.get("tokens"))
            if run.get("s") and mine.get("s"):
                run["ours_speedup"] = run["s"] / mine["s"]
            if run.get("peak_gib") and mine.get("peak_gib"):
                run["ours_memory_ratio"] = mine["peak_gib"] / run["peak_gib"]
            out["runs"][name] = run
            print(json.dumps({length: {name: _brief(out["runs"], name)}}), flush=True)
    fastdllm.drop_buffers(theirs)
    return out


def _brief(runs: dict, name: str | None = None) -> dict:
    run = runs[name] if name is not None else list(runs.values())[-1]
    return {key: value for key, value in run.items() if key not in ("tokens", "all_s")}


# -- report ----------------------------------------------------------------------------------------------------


def table(results: dict) -> str:
    def cell(run: dict | None) -> str:
        if run is None:
            return "-"
        if "error" in run and "s" not in run:
            return "OOM" if "out of memory" in run["error"] else "error"
        peak = f" {run['peak_gib']:.1f}G" if run.get("peak_gib") is not None else ""
        return f"{run['s']:.3f}s{peak}"

    lines = ["prompt | mode | ours s, peak | Fast-dLLM s, peak | Fast-dLLM / ours time | tokens agree"]
    for length, r in results["lengths"].items():
        for mode in MODES:
            for threshold in THRESHOLDS:
                mine = r["runs"].get(run_name("ours", mode, threshold))
                theirs = r["runs"].get(run_name("fastdllm", mode, threshold))
                label = mode + ("" if threshold is None else f" thr {threshold:g}")
                ratio = f"{theirs['ours_speedup']:.2f}x" if theirs and theirs.get("ours_speedup") else "-"
                agree = theirs.get("token_agreement_with_ours") if theirs else None
                agree_text = "-" if agree is None else f"{agree:.0%}"
                lines.append(f"{length} | {label} | {cell(mine)} | {cell(theirs)} | {ratio} | {agree_text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fastdllm", required=True, type=Path, help="a checkout of NVlabs/Fast-dLLM (or its llada/)")
    parser.add_argument("--lengths", default="4096,16384,32768", help="prompt lengths in tokens")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (the median is kept)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (compilation, CUDA graphs)")
    parser.add_argument("--tiny", action="store_true", help="a small float32 model on the CPU: checks the script")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline-s", type=float, default=1e9, help="skip lengths that start past this many seconds")
    parser.add_argument("--out", default="benchmarks/results/fastdllm_compare.json")
    args = parser.parse_args(argv)
    for name in ("repeats", "warmup"):
        if getattr(args, name) < (1 if name == "repeats" else 0):
            parser.error(f"--{name} {getattr(args, name)} is not allowed; allowed: >= {1 if name == 'repeats' else 0}")

    run_start = time.perf_counter()
    fastdllm = FastDLLM(args.fastdllm)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    sizes = {}
    if args.tiny:  # init_std 0.2 (the 8B's is 0.02): varied tokens, so that the agreement check means something
        sizes = dict(d_model=128, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=256, vocab_size=512,
                     embedding_size=512, mask_token_id=500, eos_token_id=1, pad_token_id=1, max_sequence_length=256,
                     init_std=0.2)  # fmt: skip
    config = LongLLaDAConfig(**sizes)
    lengths = [int(n) for n in args.lengths.split(",") if n]
    if args.tiny and args.lengths == parser.get_default("lengths"):
        lengths = [96, 320]
    fastdllm_record = {"fastdllm_commit": fastdllm.commit, "fastdllm_path": str(fastdllm.path),
                       "fastdllm_files_sha256": fastdllm.files_sha256}  # fmt: skip
    results: dict = {
        "environment": {**environment(device), **fastdllm_record},
        "config": config.to_diff_dict(),
        "arguments": {key: str(value) for key, value in vars(args).items()},
        "lengths": {},
    }

    def save() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))

    print(json.dumps(results["environment"]), flush=True)
    ours = build_model(config, device, dtype, args.seed)
    theirs = fastdllm.build(ours)
    results["weights_gib"] = sum(p.numel() * p.element_size() for p in ours.parameters()) / GiB
    results["fastdllm_sdpa_flags"] = fastdllm.flags
    print(f"model built: {results['weights_gib']:.2f} GiB, shared with Fast-dLLM's LLaDAModelLM", flush=True)
    for length in lengths:
        if time.perf_counter() - run_start > args.deadline_s:
            results["lengths"][length] = {"prompt_length": length, "runs": {}, "error": "skipped: past --deadline-s"}
            continue
        started = time.perf_counter()
        results["lengths"][length] = bench_length(ours, theirs, fastdllm, length, args, device)
        results["lengths"][length]["wall_s"] = time.perf_counter() - started
        save()
    results["run_s"] = time.perf_counter() - run_start
    save()
    print(table(results))


if __name__ == "__main__":
    main()
