"""The per-setting work of a NIAH sweep that grows with the grid, on the CPU, at the paper's grid (660 prompts).

`longllada eval --model_args A --model_args B ...` runs a sweep's settings in one process; each setting still
tokenises its requests for the model, has lm-eval make its environment report, scores every answer, and builds
and writes every sample (``--log_samples``). This script times those steps as each setting meets them, with the
code on ``PYTHONPATH`` (run it once with the code before a change and once after; the same documents):

- ``requests``: ``--model longllada``'s tokenisation of the prompts (``_encode_once``: the sort key and the
  batches), then its batches' tensors (``tok_batch_encode``, 16 prompts of one length at a time), for a first
  setting and for a second one (a new adapter with the same tokenizer, as the next setting of a sweep);
- ``environment_report``: lm-eval's ``add_env_info`` twice (two settings), inside ``longllada eval``'s own context
  when the code has one;
- ``scoring``: the task's ``process_results`` for every document, with an answer of 28 random words (a random
  model's answers never hold the keyword, so every one is scored by edit distance);
- ``samples``: the sample records as lm-eval's ``evaluate`` builds them (their hashes), and lm-eval's
  ``EvaluationTracker`` writing them.

Wall and CPU seconds (the CPU may be shared: CPU seconds are the steadier number) go to ``--out``.

    PYTHONPATH=$PWD python benchmarks/setting_fixed_part.py --out benchmarks/results/setting_fixed_part_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"
PAPER_GRID = {"context_lengths": [2000, 4000, 8000, 16000, 24000, 32000], "depths": list(range(0, 101, 10)),
              "num_repeats": 10}  # fmt: skip


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}


def requests_part(docs: list[dict], folder: str) -> dict:
    import torch

    from longllada.lm_eval_model import LongLLaDALM, length_buckets

    prompts = [doc["input"] for doc in docs]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}
    for setting in ("first_setting", "second_setting"):
        model, load = timed(lambda: LongLLaDALM(pretrained=folder, batch_size=16, cache="prefix", device=device))
        lengths, encode = timed(lambda model=model: model._encode_once(prompts))

        def batches(model=model, lengths=lengths):
            for bucket in length_buckets(lengths):
                for start in range(0, len(bucket), 16):
                    model.tok_batch_encode([prompts[i] for i in bucket[start : start + 16]])

        _, tensors = timed(batches)
        model._encodings.clear()
        out[setting] = {"load": load, "encode_once": encode, "batch_tensors": tensors, "tokens": sum(lengths)}
        del model
    return out


def environment_part() -> dict:
    from lm_eval.loggers.utils import add_env_info

    try:
        from longllada.eval_cli import _environment_report_once as context
    except ImportError:
        context = nullcontext
    out = {"context": context.__name__}
    with context():
        for setting in ("first_setting", "second_setting"):
            _, out[setting] = timed(lambda: add_env_info({}))
    return out


def random_answers(count: int, seed: int = 0) -> list[str]:
    words = ("the of and to in a is that for it as was with be by on not he this are or his from at which but "
             "have an they you were her she there one all we their").split()  # fmt: skip
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(28)) for _ in range(count)]


def scoring_part(docs: list[dict]) -> dict:
    from lm_eval_tasks.longllada_niah import utils

    answers = random_answers(len(docs))
    scores, seconds = timed(lambda: [utils.process_results(doc, [answer]) for doc, answer in zip(docs, answers)])
    return {"process_results": seconds, "mean_score": sum(s["score"] for s in scores) / len(scores)}


def samples_part(docs: list[dict]) -> dict:
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.utils import handle_non_serializable, hash_string

    cells = sorted({(doc["context_length"], doc["depth_percent"]) for doc in docs})
    names = [f"score_len{length}_depth{depth:g}" for length, depth in cells]
    answers = random_answers(len(docs))
    arguments = {"until": ["\n"], "max_gen_toks": 32, "do_sample": False, "temperature": 0.0}

    def build():  # as lm-eval 0.4.13's evaluate() builds each logged sample
        samples = []
        for index, (doc, answer) in enumerate(zip(docs, answers)):
            metrics = {"score": 0.0, **dict.fromkeys(names)}
            doc_text = json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False)
            sample = {"doc_id": index, "doc": doc, "target": doc["keyword"], "arguments": [(doc["input"], arguments)],
                      "resps": [[answer]], "filtered_resps": [answer], "filter": "none", "metrics": list(metrics),
                      "doc_hash": hash_string(doc_text), "prompt_hash": hash_string(doc["input"]),
                      "target_hash": hash_string(doc["keyword"])}  # fmt: skip
            sample.update(metrics)
            samples.append(sample)
        return samples

    samples, built = timed(build)
    with tempfile.TemporaryDirectory() as folder:
        tracker = EvaluationTracker(output_path=folder)
        tracker.general_config_tracker.model_name_sanitized = "model"
        _, aggregated = timed(lambda: tracker.save_results_aggregated(results={"results": {}, "configs": {}},
                                                                      samples={"longllada_niah": samples}))  # fmt: skip
        _, written = timed(lambda: tracker.save_results_samples("longllada_niah", samples))
        size = sum(path.stat().st_size for path in Path(folder).rglob("samples_*.jsonl"))
    return {"build": built, "save_results_aggregated": aggregated, "save_results_samples": written,
            "samples_mb": round(size / 1e6, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(TWIN), help="model folder (its tokenizer sizes the prompts)")
    parser.add_argument("--parts", default="requests,environment,scoring,samples")
    parser.add_argument("--label", default="", help="what code this run measures (e.g. a commit)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval_tasks.longllada_niah.utils import niah_dataset

    dataset, grid = timed(lambda: niah_dataset(pretrained=args.folder, **PAPER_GRID)["test"])
    docs = dataset.to_list()
    result = {"label": args.label, "grid": PAPER_GRID, "documents": len(docs), "grid_read": grid,
              "prompt_tokens": sum(doc["prompt_tokens"] for doc in docs), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "python": platform.python_version()}  # fmt: skip
    parts = {"requests": lambda: requests_part(docs, args.folder), "environment": environment_part,
             "scoring": lambda: scoring_part(docs), "samples": lambda: samples_part(docs)}  # fmt: skip
    for name in args.parts.split(","):
        result[name] = parts[name]()
        print(name, json.dumps(result[name]), flush=True)
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
