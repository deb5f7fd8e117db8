"""`longllada_ruler` and `longllada_longbench`: the base-model RULER prompt, LongBench's middle
truncation, local data, and the real lm-eval CLI (`--model hf` and `longllada eval --model longllada`) on the tiny
model, offline, with every network connection refused and recorded."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "lm_eval_tasks"
RULER_DIR = TASKS_DIR / "longllada_ruler"
LONGBENCH_DIR = TASKS_DIR / "longllada_longbench"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SQUAD = FIXTURES / "ruler" / "squad.json"
HOTPOTQA = FIXTURES / "ruler" / "hotpotqa.json"
LONGBENCH_DATA = FIXTURES / "longbench"
CLI_TIMEOUT_S = 300

# The tiny tokenizer spends ~2.4 characters a token: vt's in-context example alone takes ~600 tokens and cwe's
# smallest list ~1400 (vt as a whole too), so every kind fits at 2048 (niah, fwe and qa already at 512).
CLI_LENGTH = 2048
RULER_TASKS = {  # task -> how its prompt ends (the question, nothing after it)
    "longllada_ruler_niah_single_1": "mentioned in the provided text?",
    "longllada_ruler_vt": "in the text above.",
    "longllada_ruler_cwe": "What are the 10 most common words in the above list?",
    "longllada_ruler_fwe": "What are the three most frequently appeared words in the above coded text?",
    "longllada_ruler_qa_squad": "Question: Who was the first keeper of the Harbor Lighthouse?",
}
# lm-eval's answer stubs (its gen_prefix) that the base-model prompt leaves out.
ANSWER_STUBS = ("mentioned in the provided text is", "mentioned in the provided text are", "Answer:")
# The hf run generates 16 tokens a task (one diffusion step each, at ~2k tokens of prompt); the longllada run
# keeps the tasks' own budgets.
HF_GEN_TOKENS = 16
LONGBENCH_WINDOW = 320  # LongBench's budget in the CLI runs (--metadata max_length), far below the fixtures


def load_by_path(name: str, path: Path):
    """A task folder's Python file, loaded by path as lm-eval loads it."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ruler():
    return load_by_path("longllada_ruler_utils_under_test", RULER_DIR / "utils.py")


@pytest.fixture(scope="module")
def longbench():
    return load_by_path("longllada_longbench_utils_under_test", LONGBENCH_DIR / "utils.py")


@pytest.fixture(scope="module")
def generator():
    return load_by_path("longllada_longbench_generator_under_test", LONGBENCH_DIR / "_generate_configs.py")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir, trust_remote_code=True)


def count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


# -- RULER: documents ---------------------------------------------------------------------------------------------
def test_ruler_prompt_ends_at_the_question(ruler, tiny_model_dir):
    args = {"pretrained": str(tiny_model_dir), "max_seq_lengths": [512], "num_samples": 2}
    niah = ruler.niah_multivalue(**args)["test"]
    qa = ruler.qa_hotpot(**args, hotpotqa_path=str(HOTPOTQA))["test"]
    assert "gen_prefix" not in niah.column_names and "gen_prefix" not in qa.column_names
    for doc in niah:
        assert doc["input"].endswith("mentioned in the provided text?")
        assert all(value in doc["input"] for value in doc["outputs"]) and len(doc["outputs"]) == 4
    questions = {record["question"] for record in json.loads(HOTPOTQA.read_text(encoding="utf-8"))}
    for doc in qa:
        assert any(doc["input"].endswith(f"Question: {question}") for question in questions)
    for doc in [*niah, *qa]:
        assert doc["max_length"] == 512 and doc["length"] <= 512
        assert doc["input"] == doc["input"].rstrip() and not doc["input"].endswith(ANSWER_STUBS)


def test_ruler_data_is_seeded_per_task_and_length(ruler, tiny_model_dir):
    args = {"pretrained": str(tiny_model_dir), "max_seq_lengths": [512], "num_samples": 2}
    first, again = ruler.niah_single_1(**args)["test"], ruler.niah_single_1(**args)["test"]
    other = ruler.niah_single_1(**args, seed=7)["test"]
    assert first["input"] == again["input"]
    assert first["outputs"] != other["outputs"]


def test_essay_haystack_default_and_own(ruler, tmp_path):
    report = (REPO / "longllada" / "data" / "gov_report_001.txt").read_text(encoding="utf-8")
    words = ruler.essay_haystack(None, 40_000)
    assert len(words) >= 40_000 and " ".join(words[:50]) == " ".join(report.split()[:50])
    (tmp_path / "b.txt").write_text("second essay", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first  essay\n", encoding="utf-8")
    assert ruler.essay_haystack(str(tmp_path), 1) == ["first", "essay", "second", "essay"]
    with pytest.raises(ValueError, match="essays_path"):
        ruler.essay_haystack(str(tmp_path / "missing"), 1)


def test_local_qa_files_in_lm_evals_layout(ruler, tmp_path):
    qas, docs = ruler.read_squad_file(str(SQUAD))
    assert len(docs) == 4 and len(qas) == 5  # the unanswerable question is left out, as lm-eval does
    lighthouse = next(qa for qa in qas if qa["query"].startswith("Who was the first keeper"))
    assert lighthouse["outputs"] == ["Martha Quill"] and "Martha Quill" in docs[lighthouse["context"][0]]
    assert len(lighthouse["more_context"]) == 1  # the other paragraph of its article
    qas, docs = ruler.read_hotpotqa_file(str(HOTPOTQA))
    assert len(qas) == 3 and "Orsa\nOrsa is a market city" in "\n\n".join(docs)
    lines = tmp_path / "hotpot.jsonl"
    lines.write_text(
        "\n".join(json.dumps(r) for r in json.loads(HOTPOTQA.read_text(encoding="utf-8"))), encoding="utf-8"
    )
    assert ruler.read_hotpotqa_file(str(lines)) == (qas, docs)
    with pytest.raises(ValueError, match="hotpotqa_path"):
        ruler.read_hotpotqa_file(str(SQUAD))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"max_seq_lengths": []}, "max_seq_lengths"),
        ({"max_seq_lengths": [512, "x"]}, "max_seq_lengths item"),
        ({"max_seq_lengths": [512, 512]}, "must not repeat"),
        ({"num_samples": 0}, "num_samples=0 is not allowed; allowed: an integer >= 1"),
        ({"seed": True}, "seed"),
        ({"squad_path": 3}, "squad_path"),
    ],
)
def test_bad_ruler_metadata_is_named(ruler, metadata, message):
    with pytest.raises(ValueError, match=message):
        ruler.parse_options(metadata)


@pytest.mark.parametrize("task", ["vt", "cwe"])
def test_lengths_too_short_are_refused_not_looped_on(ruler, tiny_model_dir, task):
    # lm-eval's own generators would spin forever here.
    with pytest.raises(ValueError, match=rf"max_seq_lengths item 512 is too short for {task}"):
        getattr(ruler, task)(pretrained=str(tiny_model_dir), max_seq_lengths=[512], num_samples=1)


def test_missing_tokenizer_is_explained(ruler):
    with pytest.raises(ValueError, match="tokenizer: none given"):
        ruler.fwe(max_seq_lengths=[512])


# -- LongBench: truncation and data ---------------------------------------------------------------------------------
def test_truncate_middle_keeps_first_and_last_halves(longbench, tokenizer):
    text = "The opening line of the report. " + "Filler words fill the middle of it. " * 80 + "The closing line."
    ids = tokenizer(text, add_special_tokens=False).input_ids
    for budget in (64, 65, 200):
        cut = longbench.truncate_middle(text, tokenizer, budget)
        assert count(tokenizer, cut) <= budget
        assert cut.startswith(tokenizer.decode(ids[: budget // 2 - 2]))
        assert cut.endswith(tokenizer.decode(ids[-(budget // 2 - 2) :]))
        assert len(cut) < len(text)
    assert longbench.truncate_middle(text, tokenizer, len(ids)) == text
    with pytest.raises(ValueError, match="budget"):
        longbench.truncate_middle(text, tokenizer, 0)


def test_truncate_middle_drops_a_character_cut_in_two(longbench, tokenizer):
    text = "开头的句子。" + "中间的文字很长。" * 60 + "结尾的句子。"
    for budget in range(40, 48):
        cut = longbench.truncate_middle(text, tokenizer, budget)
        assert count(tokenizer, cut) <= budget and "\ufffd" not in cut
        assert cut.startswith("开头") and cut.endswith("结尾的句子。")


def _dataset_kwargs(generator, task: str) -> dict:
    """The dataset_kwargs of one generated task YAML."""
    content = generator.load_source(LONGBENCH_DIR / f"{task}.yaml")
    return content["dataset_kwargs"]


@pytest.mark.parametrize(
    ("task", "ending"),
    [("longllada_longbench_hotpotqa", "\nAnswer:"), ("longllada_longbench_multifieldqa_zh", "\n回答：")],
)
def test_longbench_prompts_fit_the_window(longbench, generator, tokenizer, tiny_model_dir, task, ending):
    kwargs = _dataset_kwargs(generator, task)
    window = 300
    docs = longbench.load_longbench(
        **kwargs, pretrained=str(tiny_model_dir), max_length=window, data_dir=str(LONGBENCH_DATA), version=5.0
    )["test"]
    assert len(docs) == 2
    budget = window - kwargs["longbench_max_gen_toks"] - len(tokenizer("").input_ids)
    instruction = kwargs["longbench_prompt"].split("{{")[0]
    for doc in docs:
        assert doc["question"] == doc["input"]
        assert count(tokenizer, doc["prompt"]) <= budget < count(tokenizer, doc["context"])
        assert doc["prompt"].startswith(instruction) and doc["prompt"].endswith(doc["question"] + ending)
    # The model's own window when no max_length is given: the tiny config's 256 positions.
    small = longbench.load_longbench(**kwargs, pretrained=str(tiny_model_dir), data_dir=str(LONGBENCH_DATA))["test"]
    assert max(count(tokenizer, doc["prompt"]) for doc in small) <= 256 - kwargs["longbench_max_gen_toks"]


def test_longbench_bad_input_is_named(longbench, generator, tiny_model_dir, tmp_path):
    kwargs = {**_dataset_kwargs(generator, "longllada_longbench_hotpotqa"), "pretrained": str(tiny_model_dir)}
    with pytest.raises(ValueError, match="has no hotpotqa.jsonl"):
        longbench.load_longbench(**kwargs, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="max_length=-4 is not allowed; allowed: an integer >= 1"):
        longbench.load_longbench(**kwargs, data_dir=str(LONGBENCH_DATA), max_length=-4)
    with pytest.raises(ValueError, match="leaves no room"):
        longbench.load_longbench(**kwargs, data_dir=str(LONGBENCH_DATA), max_length=33)
    (tmp_path / "hotpotqa.jsonl").write_text(json.dumps({"context": "c", "answers": ["a"]}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks \['input'\]"):
        longbench.load_longbench(**kwargs, data_dir=str(tmp_path))


def test_generated_yamls_are_lm_evals_and_up_to_date(generator):
    rendered = generator.render_all()
    for name, text in rendered.items():
        assert (LONGBENCH_DIR / name).read_text(encoding="utf-8") == text, f"{name}: re-run _generate_configs.py"
    tasks = {name for name in rendered if not name.startswith("_")}
    assert len(tasks) == 34  # LongBench's 21 (English and Chinese) and LongBench-E's 13, as lm-eval names them
    assert {"longllada_longbench_multifieldqa_zh.yaml", "longllada_longbench_vcsum.yaml"} <= tasks
    group = generator.load_source(LONGBENCH_DIR / "_longllada_longbench.yaml")
    assert group["group"] == "longllada_longbench" and all(t.startswith("longllada_longbench_") for t in group["task"])


# -- the real CLI, offline ------------------------------------------------------------------------------------------
NETWORK_GUARD = """
import os
import socket

_LOG = os.environ["LONGLLADA_NETWORK_LOG"]


def _refuse(what, target):
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(f"{what} {target!r}\\n")
    raise OSError(f"network use refused by the test: {what} {target!r}")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _guarded(original):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse("connect", address)
        return original(self, address)

    return connect


socket.socket.connect = _guarded(_connect)
socket.socket.connect_ex = _guarded(_connect_ex)
socket.getaddrinfo = lambda host, port, *args, **kwargs: _refuse("getaddrinfo", (host, port))
"""


def run_cli(args: list[str], out: Path) -> Path:
    """Run ``python ARGS`` offline with every internet connection refused; return the log of attempts."""
    guard_dir = out / "network_guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(NETWORK_GUARD, encoding="utf-8")
    network_log = out / "network.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="2",
        PYTHONPATH=os.pathsep.join([str(guard_dir), str(REPO)]),
        LONGLLADA_NETWORK_LOG=str(network_log),
    )
    result = subprocess.run(
        [sys.executable, *args], cwd=out, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    assert result.returncode == 0, f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return network_log


def read_run(out: Path) -> tuple[dict, dict[str, list[dict]]]:
    (results_file,) = out.rglob("results_*.json")
    samples = {}
    for file in out.rglob("samples_*.jsonl"):
        task = file.name[len("samples_") :].rsplit("_", 1)[0]
        samples[task] = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
    return json.loads(results_file.read_text(encoding="utf-8")), samples


def prompt_of(sample: dict) -> str:
    return sample["arguments"]["gen_args_0"]["arg_0"]


def cli_metadata(lengths: list[int]) -> str:
    return json.dumps(
        {
            "max_seq_lengths": lengths,
            "num_samples": 1,
            "squad_path": str(SQUAD),
            "data_dir": str(LONGBENCH_DATA),
            "max_length": LONGBENCH_WINDOW,
        }
    )


@pytest.fixture(scope="module")
def hf_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """lm-eval's own CLI, ``--model hf``: one RULER task of each kind at 2048 tokens and one LongBench task."""
    out = tmp_path_factory.mktemp("ruler_longbench_hf")
    # The tiny model's trained length is 256: without max_length hf would cut the prompts to it. The metadata's
    # max_length (320) reaches the tasks only: it is LongBench's truncation window here.
    model_args = f"pretrained={tiny_model_dir},trust_remote_code=True,max_length=4096"
    tasks = ",".join([*RULER_TASKS, "longllada_longbench_hotpotqa"])
    console_script = Path(sys.executable).with_name("lm_eval")  # `lm_eval` itself, run by this interpreter
    command = [str(console_script)] if console_script.is_file() else ["-m", "lm_eval"]
    args = ["--model", "hf", "--model_args", model_args, "--tasks", tasks, "--include_path", str(TASKS_DIR),
            "--metadata", cli_metadata([CLI_LENGTH]), "--limit", "1", "--device", "cpu", "--batch_size", "1",
            "--gen_kwargs", f"max_gen_toks={HF_GEN_TOKENS}", "--log_samples", "--output_path", str(out)]  # fmt: skip
    return out, run_cli([*command, *args], out)


@pytest.fixture(scope="module")
def longllada_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """``longllada eval --model longllada``: a needle task at 512 tokens and a Chinese LongBench task."""
    pytest.importorskip("longllada.eval_cli")
    out = tmp_path_factory.mktemp("ruler_longbench_longllada")
    args = ["-m", "longllada", "eval", "--model", "longllada", "--model_args", f"pretrained={tiny_model_dir}",
            "--tasks", "longllada_ruler_niah_single_1,longllada_longbench_multifieldqa_zh",
            "--metadata", cli_metadata([512]), "--limit", "1", "--device", "cpu", "--batch_size", "1",
            "--log_samples", "--output_path", str(out)]  # fmt: skip
    return out, run_cli(args, out)


@pytest.mark.e2e
def test_lm_eval_cli_model_hf_scores_every_kind(hf_run, tokenizer):
    results, samples = read_run(hf_run[0])
    assert results["config"]["model"] == "hf"
    assert results["configs"]["longllada_ruler_cwe"]["generation_kwargs"]["max_gen_toks"] == HF_GEN_TOKENS
    for task, ending in RULER_TASKS.items():
        metrics = results["results"][task]
        assert 0.0 <= metrics[f"{CLI_LENGTH},none"] <= 1.0, task
        (sample,) = samples[task]
        prompt = prompt_of(sample)
        assert sample["doc"]["max_length"] == CLI_LENGTH and prompt == sample["doc"]["input"]
        assert prompt.endswith(ending) and not prompt.endswith(ANSWER_STUBS), (task, prompt[-120:])
        assert "<|mdm_mask|>" not in sample["filtered_resps"][0]
    assert "The special magic" not in prompt_of(samples["longllada_ruler_niah_single_1"][0])[-200:]
    metrics = results["results"]["longllada_longbench_hotpotqa"]
    assert 0.0 <= metrics["score,none"] == metrics["qa_f1_score,none"] <= 1.0
    (sample,) = samples["longllada_longbench_hotpotqa"]
    prompt = prompt_of(sample)
    assert count(tokenizer, prompt) <= LONGBENCH_WINDOW - 32 < count(tokenizer, sample["doc"]["context"])
    assert prompt.startswith("Answer the question based on the given passages.")
    assert prompt.endswith(f"Question: {sample['doc']['input']}\nAnswer:")


@pytest.mark.e2e
def test_longllada_eval_model_longllada(longllada_run, tokenizer):
    results, samples = read_run(longllada_run[0])
    assert results["config"]["model"] == "longllada"
    assert results["configs"]["longllada_ruler_niah_single_1"]["generation_kwargs"]["max_gen_toks"] == 128
    assert 0.0 <= results["results"]["longllada_ruler_niah_single_1"]["512,none"] <= 1.0
    assert prompt_of(samples["longllada_ruler_niah_single_1"][0]).endswith("mentioned in the provided text?")
    metrics = results["results"]["longllada_longbench_multifieldqa_zh"]
    assert 0.0 <= metrics["score,none"] == metrics["qa_f1_zh_score,none"] <= 1.0
    prompt = prompt_of(samples["longllada_longbench_multifieldqa_zh"][0])
    assert count(tokenizer, prompt) <= LONGBENCH_WINDOW - 64 and prompt.endswith("\n回答：")


@pytest.mark.e2e  # it reads the two CLI runs above
def test_nothing_reaches_the_network(hf_run, longllada_run):
    for out, network_log in (hf_run, longllada_run):
        attempts = network_log.read_text(encoding="utf-8") if network_log.exists() else ""
        assert attempts == "", f"{out.name} tried the network:\n{attempts}"
