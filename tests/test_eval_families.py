"""`longllada eval --model longllada` on every family of the registry and a causal LM, each with NTK scaling.

The real CLI (``longllada.cli.main(["eval", ...])``, in-process) runs ``longllada_niah`` on a small grid for a tiny
model of every family of the registry (Dream also with the paper's sampler settings) and a tiny causal LM (a
``LlamaForCausalLM``, standing in for the LLaMA-3 baseline). Each run must report every cell of the grid, and the
results JSON must record the RoPE scaling of the loaded model: the requested factor on the diffusion configs, the
base θ·λ on the causal LM (with lm-eval's context window widened to what the scaled base covers, so the 512-token
prompts are not cut to the trained 256). For Dream, every prompt the sampler sees starts with the tokenizer's BOS,
once.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from unittest import mock

import pytest

pytest.importorskip("lm_eval")

from longllada.cli import main  # noqa: E402
from modeling_longllada import ntk_supported_length  # noqa: E402
from modeling_longllada.families import FAMILIES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_LLAMA = REPO / "longllada" / "models" / "tiny-llama-ar"
LENGTHS, DEPTHS = [256, 512], [0, 100]
GRID = json.dumps({"context_lengths": LENGTHS, "depths": DEPTHS, "num_repeats": 1})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Records(logging.Handler):
    """The ``longllada.lm_eval_model`` log records of one run."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def timing(self, event: str) -> list[dict]:
        prefix = "longllada-timing "
        records = [json.loads(m[len(prefix) :]) for m in self.messages if m.startswith(prefix)]
        return [record for record in records if record["event"] == event]


def run_niah(tmp_path: Path, model_args: str) -> tuple[dict, Records]:
    """``longllada eval --model longllada`` on the grid; the results JSON and the run's log records."""
    records = Records()
    logger = logging.getLogger("longllada.lm_eval_model")
    logger.addHandler(records)
    try:
        with mock.patch.dict(os.environ, {"LONGLLADA_LOG_LEVEL": "DEBUG"}):  # the timing lines are DEBUG
            code = main(["eval", "--model", "longllada", "--model_args", model_args, "--tasks", "longllada_niah",
                         "--include_path", str(REPO / "lm_eval_tasks"), "--metadata", GRID, "--limit", "4",
                         "--device", "cpu", "--batch_size", "2", "--output_path", str(tmp_path)])  # fmt: skip
    finally:
        logger.removeHandler(records)
    assert code == 0
    (results_file,) = tmp_path.rglob("results_*.json")
    return json.loads(results_file.read_text(encoding="utf-8")), records


def check_cells(results: dict) -> None:
    metrics = results["results"]["longllada_niah"]
    assert 0 <= metrics["score,none"] <= 100
    for length in LENGTHS:
        for depth in DEPTHS:
            assert 0 <= metrics[f"score_len{length}_depth{depth},none"] <= 100


def test_dream_with_ntk_and_the_papers_sampler_settings(tiny_dream_dir, tmp_path):
    """Dream-v0 as the paper runs it: NTK λ=5, 8 steps, alg entropy, temperature 0.2, top_p 0.95, BOS first."""
    from transformers import AutoTokenizer

    args = f"pretrained={tiny_dream_dir},ntk_factor=5,steps=8,alg=entropy,temperature=0.2,top_p=0.95"
    results, records = run_niah(tmp_path, args)
    check_cells(results)
    config = results["config"]
    assert config["longllada_family"] == "dream"
    loaded = config["longllada_rope_loaded"]
    assert loaded["factor"] == 5 and loaded["effective_rope_theta"] == pytest.approx(5 * loaded["rope_theta"])
    bos = AutoTokenizer.from_pretrained(tiny_dream_dir).bos_token_id
    assert bos is not None and config["longllada_bos_prefix"] is True
    batches = records.timing("batch")
    assert sum(batch["rows"] for batch in batches) == len(LENGTHS) * len(DEPTHS)
    assert all(first == bos for batch in batches for first in batch["first_token_ids"])
    assert any("prompts start with BOS" in message for message in records.messages)


# A short run whatever the sampler: its step count under each name a family's sampler uses for it.
FEW_STEPS = {"steps": 8, "max_denoising_steps": 8}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_with_ntk(tiny_family_dir, tmp_path, family):
    few_steps = ",".join(f"{name}={value}" for name, value in FEW_STEPS.items() if name in family.sampler_arguments)
    results, _ = run_niah(tmp_path, f"pretrained={tiny_family_dir(family.name)},ntk_factor=4,{few_steps}")
    check_cells(results)
    config = results["config"]
    assert config["longllada_family"] == family.name and config["longllada_bos_prefix"] is family.bos_prefix
    assert config["longllada_rope_applied"]["scaling"] == "ntk:4"
    loaded = config["longllada_rope_loaded"]
    assert loaded["factor"] == 4 and loaded["effective_rope_theta"] == pytest.approx(4 * loaded["rope_theta"])
    assert config["longllada_max_length"] is None  # diffusion models: no truncation unless max_length is given


def test_causal_lm_with_ntk_runs_as_hf_with_the_scaled_window(tmp_path):
    """A LlamaForCausalLM through lm-eval's HF path, base θ·4 set on the config before the weights load, and the
    context window the scaling law gives for that base (not the trained 256, which would cut the 512 prompts)."""
    trained = json.loads((TINY_LLAMA / "config.json").read_text(encoding="utf-8"))
    theta, head_dim = trained["rope_parameters"]["rope_theta"], trained["head_dim"]
    results, records = run_niah(tmp_path, f"pretrained={TINY_LLAMA},ntk_factor=4")
    check_cells(results)
    config = results["config"]
    assert config["longllada_family"] == "causal" and config["longllada_model_type"] == "llama"
    assert config["longllada_rope_loaded"]["rope_theta"] == pytest.approx(4 * theta)  # the loaded model's base
    window = ntk_supported_length(head_dim, theta, trained["max_position_embeddings"], 4)
    assert config["longllada_max_length"] == window > max(LENGTHS) + 32
    assert any(f"context window is the scaled one: {window} tokens" in message for message in records.messages)
    assert records.timing("batch") == []  # HF's generate, not the diffusion sampler


def test_official_dream_folder_loads_with_our_classes_and_bos_once(tiny_dream_dir, tmp_path):
    """An official-format Dream folder (model_type "Dream", the official auto_map and DreamTokenizer, code files
    that raise) loads with this package's DreamModel and transformers' Qwen2Tokenizer, takes NTK, prepends BOS once (not again when the prompt has it), and
    scores loglikelihood requests with the shifted Monte-Carlo likelihood."""
    import math
    import shutil

    from lm_eval.api.instance import Instance

    from longllada.lm_eval_model import LongLLaDALM
    from modeling_longllada import DreamModel

    official = tmp_path / "dream-official"
    shutil.copytree(tiny_dream_dir, official, ignore=shutil.ignore_patterns("*.py", ".longllada*"))
    config = json.loads((official / "config.json").read_text(encoding="utf-8"))
    config.update(model_type="Dream", architectures=["DreamModel"],
                  auto_map={"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"})  # fmt: skip
    (official / "config.json").write_text(json.dumps(config), encoding="utf-8")
    # The official tokenizer names its own code; running any official code file fails the test.
    for code in ("configuration_dream.py", "modeling_dream.py", "tokenization_dream.py"):
        (official / code).write_text("raise RuntimeError('official remote code was run')\n", encoding="utf-8")
    tokenizer_config = json.loads((official / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config.update(tokenizer_class="DreamTokenizer",
                            auto_map={"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]})  # fmt: skip
    (official / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    lm = LongLLaDALM(pretrained=str(official), device="cpu", ntk_factor=5, mc_num=2, mc_batch_size=2, steps=4)
    assert type(lm.model) is DreamModel and lm.model.config.rope_scaling_factor == 5
    # transformers' own fast class from tokenizer.json (transformers 5 names it TokenizersBackend), no remote code
    assert type(lm.tokenizer).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    bos = lm.tokenizer.bos_token_id
    plain = lm.tokenizer.encode("Where is the needle?")
    assert plain[0] != bos  # Dream's tokenizer adds no BOS itself
    assert lm.tok_encode("Where is the needle?") == [bos, *plain]
    assert lm.tok_encode(lm.tokenizer.bos_token + "Where is the needle?") == [bos, *plain]
    ids, mask = lm.tok_batch_encode(["Where is the needle?", "Needle?"])
    assert ids[mask.bool()].tolist().count(bos) == 2 and ids[1, mask[1].argmax()].item() == bos
    request = Instance(request_type="loglikelihood", doc={}, arguments=("The needle is", " here"), idx=0)
    ((score, greedy),) = lm.loglikelihood([request])
    assert math.isfinite(score) and score < 0 and isinstance(greedy, bool)


@pytest.mark.parametrize(
    ("model_args", "rope_type", "factor", "window"),
    [
        ({"ntk_target": 1024}, "default", "law", 1024),
        ({"rope_scaling": "ntk:4", "max_length": 300}, "default", 4, 300),  # a given max_length wins
        ({"rope_scaling": "dynamic:2"}, "dynamic", 1, 512),
        ({"rope_scaling": "yarn:4"}, "yarn", 1, 1024),  # transformers' YaRN: the trained length x factor
        ({}, "default", 1, 256),  # no scaling: lm-eval's own window, the trained length
    ],
)
def test_causal_lm_rope_requests_and_windows(model_args, rope_type, factor, window):
    from longllada.lm_eval_model import LongLLaDALM
    from modeling_longllada import ntk_scaling_factor

    lm = LongLLaDALM(pretrained=str(TINY_LLAMA), device="cpu", **model_args)
    params = lm.model.config.rope_parameters
    if factor == "law":
        factor = ntk_scaling_factor(32, 10000.0, 256, 1024)
        assert factor > 1
    assert params["rope_type"] == rope_type and params["rope_theta"] == pytest.approx(10000.0 * factor)
    assert lm.max_length == window


def test_diffusion_args_on_a_causal_lm_are_one_cli_error(capsys, tmp_path):
    code = main(["eval", "--model", "longllada", "--model_args", f"pretrained={TINY_LLAMA},ntk_factor=4,steps=8",
                 "--tasks", "longllada_niah", "--metadata", GRID, "--device", "cpu", "--output_path", str(tmp_path)])  # fmt: skip
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("longllada eval: error:")]
    assert len(errors) == 1 and "['steps'] apply to the diffusion models" in errors[0]
    assert not list(tmp_path.rglob("results_*.json"))
