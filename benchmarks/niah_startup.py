"""The fixed start-up of a NIAH sweep on the CPU: building the grid, and tokenising the requests, before and after.

Grid: ``build_docs`` of one or more versions of ``lm_eval_tasks/longllada_niah/utils.py`` (``--utils``; an
earlier one from git: ``git show REV:lm_eval_tasks/longllada_niah/utils.py > /tmp/old/utils.py`` with
``needles.jsonl`` beside it) on the paper's grid, checked to give the same documents. Requests: the prompts
tokenised as HFLM's ``generate_until`` does (each prompt twice, one at a time: its sort key, then its batch)
against ``--model longllada``'s single batched pass (``encode_many``). Wall and CPU seconds (the CPU may be
shared: CPU seconds are the steadier number), written to ``--out``.

    python benchmarks/niah_startup.py --utils /tmp/old/utils.py --utils lm_eval_tasks/longllada_niah/utils.py \\
        --out benchmarks/results/niah_startup_cpu.json

``--train-tokenizer DIR`` first writes a tokenizer of LLaDA's size (126,464 tokens, LLaMA-3's split pattern,
byte-level BPE, LLaDA's special tokens) trained on the Python standard library's source, with no download,
and measures with it: LLaDA's own tokenizer has the same shape.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# LLaMA-3's pre-tokenizer pattern (contractions, letters with one leading non-letter, numbers of up to three
# digits, punctuation runs, newlines, spaces), which LLaDA's tokenizer shares.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)
LLADA_VOCABULARY = 126464


def train_large_tokenizer(folder: Path) -> Path:
    """A LLaDA-sized byte-level BPE trained on the standard library's .py files (see the module docstring)."""
    import sysconfig

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from modeling_longllada.families import LLADA

    spec = LLADA.tokenizer

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=LLADA_VOCABULARY, min_frequency=2, special_tokens=list(spec.special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
    texts = (path.read_text(encoding="utf-8", errors="replace") for path in files)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos = tokenizer.token_to_id(spec.bos_token)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{spec.bos_token} $A", special_tokens=[(spec.bos_token, bos)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=spec.bos_token, eos_token=spec.eos_token,
                                   pad_token=spec.pad_token, mask_token=spec.mask_token, clean_up_tokenization_spaces=False)  # fmt: skip
    fast.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utils", type=Path, action="append", required=True, help="versions of the task's utils.py")
    parser.add_argument("--tokenizer", default=str(TWIN), help="tokenizer folder")
    parser.add_argument("--lengths", default="2000,4000,8000,16000,24000,32000")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--train-tokenizer", type=Path, help="write a LLaDA-sized tokenizer here and use it")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.train_tokenizer:
        _, wall, _ = timed(lambda: train_large_tokenizer(args.train_tokenizer))
        print(f"trained {args.train_tokenizer} in {wall} s", flush=True)
        args.tokenizer = str(args.train_tokenizer)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer, trust_remote_code=True)
    grid = {"context_lengths": [int(n) for n in args.lengths.split(",")], "num_repeats": args.repeats}
    result = {"tokenizer": args.tokenizer, "vocabulary": len(tokenizer), "grid": grid, "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "python": platform.python_version(), "builds": []}  # fmt: skip
    docs = None
    for index, path in enumerate(args.utils):
        module = load(path, f"niah_utils_{index}")
        built, wall, cpu = timed(lambda module=module: module.build_docs(tokenizer, **grid))
        same = docs is None or built == docs
        docs = docs or built
        result["builds"].append({"utils": str(path), "documents": len(built), "wall_s": wall, "cpu_s": cpu,
                                 "same_documents_as_first": same})  # fmt: skip
        print(result["builds"][-1], flush=True)
    prompts = [doc["input"] for doc in docs]
    result["prompt_tokens"] = sum(doc["prompt_tokens"] for doc in docs)
    _, wall, cpu = timed(lambda: [len(tokenizer.encode(p)) for p in prompts + prompts])
    result["requests_hflm_twice_one_at_a_time"] = {"wall_s": wall, "cpu_s": cpu}
    encode_many = load(Path(args.utils[-1]), "niah_utils_last").encode_many
    _, wall, cpu = timed(lambda: encode_many(tokenizer, prompts, special=True))
    result["requests_longllada_once_batched"] = {"wall_s": wall, "cpu_s": cpu}
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
