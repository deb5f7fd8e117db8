"""`--model longllada`: the diffusion-aware lm-eval model and `longllada eval`.

A real lm-eval ``HFLM`` subclass on the tiny model: batched generation with left padding equals one prompt at
a time, loglikelihood is the Monte-Carlo estimator, is_greedy is the sampler's verdict, RoPE overrides reach
the model, and a multiple-choice fixture task is scored through loglikelihood by the real CLI (launched with
``accelerate launch -m longllada.eval_cli``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
import torch  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

from longllada.eval_cli import include_paths, run_eval  # noqa: E402
from longllada.lm_eval_model import LongLLaDALM, left_padding_mask  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MC_TASK_DIR = REPO / "tests" / "fixtures" / "mc_task"
MC_NUM = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> LongLLaDALM:
    return LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", batch_size=3, mc_num=MC_NUM, mc_batch_size=MC_NUM)


def generate_request(context: str, max_gen_toks: int = 8, **extra) -> Instance:
    kwargs = {"until": ["\n\n"], "max_gen_toks": max_gen_toks, "do_sample": False, **extra}
    return Instance(request_type="generate_until", doc={}, arguments=(context, kwargs), idx=0)


def loglikelihood_request(context: str, continuation: str) -> Instance:
    return Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation), idx=0)


# -- options ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"ntk_factor": 14}, {"type": "ntk", "factor": 14}),
        ({"ntk_target": 1024}, {"type": "ntk", "target_length": 1024}),
        ({"rope_scaling": "ntk:4"}, {"type": "ntk", "factor": 4}),
        ({"rope_scaling": "ntk-per-length"}, {"type": "ntk_per_length"}),
        ({"rope_scaling": "none"}, None),
    ],
)
def test_rope_model_args_reach_the_config(tiny_model_dir, kwargs, expected):
    """ntk_factor / ntk_target / rope_scaling (any form of the one parser) set the loaded config's rope_scaling."""
    lm = LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", **kwargs)
    assert lm.model.config.rope_scaling == expected
    assert lm.get_model_info()["longllada_rope_loaded"]["scaling"] == (
        None if expected is None else f"config:{lm._rope_record['scaling']}"
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mc_num": 0}, "mc_num"),
        ({"mc_batch_size": 2.5}, "mc_batch_size"),
        ({"mc_seed": "x"}, "mc_seed"),
        ({"rolling_chunk": -1}, "rolling_chunk"),
        ({"batch_classes": 0}, "batch_classes"),
        ({"batch_classes": 2.5}, "batch_classes"),
        ({"batch_classes": float("nan")}, "batch_classes"),
        ({"ntk_factor": float("nan")}, "ntk_factor"),
        ({"ntk_factor": float("inf")}, "ntk_factor"),
        ({"ntk_factor": 0.5}, "ntk_factor"),
        ({"ntk_target": -1}, "ntk_target"),
        ({"rope_scaling": "linear"}, "rope_scaling"),
        ({"rope_scaling": "none", "ntk_factor": 4}, "give one of them"),
        ({"rope_scaling": "dynamic:0"}, "dynamic"),
        ({"rope_scaling": "dynamic:nan"}, "dynamic"),
        ({"rope_scaling": "yarn:nan"}, "yarn"),
        ({"trust_remote_code": "yes"}, "trust_remote_code"),
        ({"batch_size": "auto"}, "batch_size"),
        ({"batch_size": "0"}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"max_length": 0}, "max_length"),
        ({"max_batch_size": "many"}, "max_batch_size"),
        ({"prefix_token_id": -1}, "prefix_token_id"),
        ({"block_lenght": 32}, r"unknown --model_args \['block_lenght'\].*'block_length'"),
        ({"backend": "seq2seq"}, r"unknown --model_args \['backend'\]"),
    ],
)
def test_bad_model_args_are_named(tiny_model_dir, kwargs, field):
    with pytest.raises(ValueError, match=field):
        LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"block_length": -4}, "block_length"),
        ({"remasking": "lowest"}, "remasking"),
        ({"cache": "kv"}, "cache"),
        ({"threshold": 1.5}, "threshold"),
        ({"cfg_scale": -1.0}, "cfg_scale"),
    ],
)
def test_sampler_options_are_checked_by_the_sampler(tiny_model_dir, kwargs, field):
    """Sampler options are checked by one layer, the sampler's validation, and before the model loads."""
    from longllada.lm_eval_model import check_model_args

    with pytest.raises(ValueError, match=field):
        check_model_args({"pretrained": str(tiny_model_dir), **kwargs})
    with pytest.raises(ValueError, match=field):
        LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", **kwargs)


def test_causal_lm_refuses_diffusion_args_and_rope_scaling_without_rope(tmp_path):
    """A causal LM runs as --model hf does: diffusion-only arguments are errors, found from config.json before any
    weights load (the folder has none), and an NTK request needs a RoPE model."""
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"\['mc_num', 'steps'\] apply to the diffusion models.*model_type='gpt2'"):
        LongLLaDALM(pretrained=str(tmp_path), device="cpu", steps=4, mc_num=8)
    with pytest.raises(ValueError, match="needs a RoPE model"):
        LongLLaDALM(pretrained=str(tmp_path), device="cpu", ntk_factor=4)


def test_left_padding_mask():
    ids = torch.tensor([[1, 1, 5, 1, 7], [4, 1, 6, 7, 8]])
    assert left_padding_mask(ids, 1).tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert left_padding_mask(ids, None).tolist() == [[1] * 5] * 2


# -- generation -------------------------------------------------------------------------------------------------
def test_batched_generation_with_padding_equals_one_at_a_time(lm):
    contexts = ["The inventory of aircraft", "Sustainment", "Question: what does the policy require?\nAnswer:"]
    batched = lm.generate_until([generate_request(c) for c in contexts])
    assert len(batched) == 3 and all(isinstance(text, str) for text in batched)
    single = []
    for context in contexts:
        ids = lm.tokenizer(context, return_tensors="pt")["input_ids"]
        output = lm.model.generate(ids, max_new_tokens=8, do_sample=False)
        single.append(lm.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).split("\n\n")[0])
    assert batched == single


def test_sampler_settings_from_model_args(tiny_model_dir):
    lm = LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", steps=4, block_length=8, remasking="random")
    assert lm._sampler_args == {"steps": 4, "block_length": 8, "remasking": "random"}
    passes = []
    handle = lm.model.register_forward_hook(lambda *_: passes.append(1))
    try:
        lm.generate_until([generate_request("The report", max_gen_toks=8)])
    finally:
        handle.remove()
    assert len(passes) == 4  # one block of 8 over 4 steps (a task's own steps would be overridden too)


def test_ntk_override_reaches_the_model(tiny_model_dir):
    lm = LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", ntk_target=1024)
    config = lm.model.config
    assert config.rope_scaling == {"type": "ntk", "target_length": 1024}
    assert config.max_position_embeddings == 1024
    assert lm.model.rope_base(1024) > config.rope_theta
    assert lm.max_length > 10**9  # no truncation unless max_length is given
    with pytest.raises(ValueError, match="disagrees"):
        LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", ntk_target=1024, ntk_factor=1000)


def test_official_llada_checkpoint_loads_with_our_classes(tiny_model_dir, tmp_path):
    official = tmp_path / "llada-official"
    shutil.copytree(tiny_model_dir, official)
    for remote in official.glob("*.py"):
        remote.unlink()  # an official repo carries its own code, which must not be needed
    config = json.loads((official / "config.json").read_text())
    config.update(model_type="llada", architectures=["LLaDAModelLM"])
    config.pop("auto_map")
    (official / "config.json").write_text(json.dumps(config))
    lm = LongLLaDALM(pretrained=str(official), device="cpu", mc_num=2, mc_batch_size=2)
    assert type(lm.model).__name__ == "LongLLaDAModelLM"
    assert lm.generate_until([generate_request("The report", max_gen_toks=4)])[0] is not None


# -- likelihoods ------------------------------------------------------------------------------------------------
def test_loglikelihood_is_the_monte_carlo_estimator(lm):
    context, continuation = "The inventory totaled", " 2,823 aircraft"
    ((score, greedy),) = lm.loglikelihood([loglikelihood_request(context, continuation)])
    context_ids, continuation_ids = lm._encode_pair(context, continuation)
    expected, _ = lm.model.log_likelihood(
        context_ids, continuation_ids, mc_num=MC_NUM, batch_size=MC_NUM,
        generator=torch.Generator().manual_seed(lm.mc_seed),
    )  # fmt: skip
    assert score == pytest.approx(expected) and score < 0 and math.isfinite(score)
    assert isinstance(greedy, bool)


def test_is_greedy_is_the_samplers_verdict(lm):
    context = lm.tokenizer("The selected aircraft", add_special_tokens=True)["input_ids"]
    n = 3
    output = lm.model.generate(torch.tensor([context]), max_new_tokens=n, steps=n, block_length=n, do_sample=False)
    greedy_continuation = output[0, len(context) :].tolist()
    other = [(token + 7) % 200 + 10 for token in greedy_continuation]
    results = lm._loglikelihood_tokens([(None, context, greedy_continuation), (None, context, other)])
    assert [greedy for _, greedy in results] == [True, False]


def test_loglikelihood_rolling_sums_chunk_bounds(tiny_model_dir):
    lm = LongLLaDALM(pretrained=str(tiny_model_dir), device="cpu", mc_num=2, mc_batch_size=2, rolling_chunk=8)
    text = "The Air Force and the Navy also have guidance that implements the requirements."
    request = Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=0)
    (total,) = lm.loglikelihood_rolling([request])
    tokens = lm.tok_encode(text, add_special_tokens=False)
    expected = sum(
        lm.model.log_likelihood([lm.prefix_token_id] + tokens[:start], tokens[start : start + 8], mc_num=2,
                                batch_size=2, generator=torch.Generator().manual_seed(lm.mc_seed))[0]
        for start in range(0, len(tokens), 8)
    )  # fmt: skip
    assert total == pytest.approx(expected) and total < 0


# -- the command line -------------------------------------------------------------------------------------------
def test_include_paths_put_ours_first(tmp_path):
    ours = REPO / "lm_eval_tasks"
    assert include_paths(None, ours) == [str(ours)]
    joined = f"{tmp_path}{os.pathsep}{MC_TASK_DIR}"
    assert include_paths(joined, ours) == [str(ours), str(tmp_path), str(MC_TASK_DIR)]
    assert include_paths([str(ours), str(tmp_path)], ours) == [str(ours), str(tmp_path)]


def test_builtin_task_index_skipped_only_when_every_task_is_ours():
    """lm-eval's CLI indexes its ~15,000 built-in task files on every start; `longllada eval` skips that when
    the requested tasks are all in our folder, and indexes as lm-eval does otherwise."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    from lm_eval_tasks import TASKS_DIR
    from longllada.eval_cli import _index_without_builtin_tasks, requested_task_names

    assert requested_task_names(["longllada_niah,longllada_ruler", "x"]) == ["longllada_niah", "longllada_ruler", "x"]
    with _index_without_builtin_tasks(["longllada_niah,longllada_ruler_niah_single_1"], TASKS_DIR) as skipped:
        assert skipped
        manager = lm_eval.tasks.TaskManager(include_path=[str(TASKS_DIR)])
        assert "longllada_niah" in manager.all_tasks and "hellaswag" not in manager.all_tasks
        assert all(name.startswith("longllada") for name in manager.all_tasks)
    assert lm_eval.tasks.TaskManager is TaskManager  # put back
    for tasks in (
        ["hellaswag"],
        ["longllada_niah", "arc_easy"],
        [str(MC_TASK_DIR / "longllada_mc_fixture.yaml")],
        None,
    ):
        with _index_without_builtin_tasks(tasks, TASKS_DIR) as skipped:
            assert not skipped and lm_eval.tasks.TaskManager is TaskManager


def test_eval_help_exits_cleanly(capsys):
    assert run_eval(["--help"]) == 0
    assert "run" in capsys.readouterr().out


@pytest.mark.e2e
def test_multiple_choice_task_through_accelerate_launch(lm, tmp_path):
    """The fixture task scored by `--model longllada` through loglikelihood, launched as a user would run a
    data-parallel evaluation; the logged scores are the estimator's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))  # fmt: skip
    model_args = f"pretrained={lm.pretrained},mc_num={MC_NUM},mc_batch_size={MC_NUM}"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "longllada.eval_cli",
        "--model", "longllada", "--model_args", model_args, "--tasks", "longllada_mc_fixture",
        "--include_path", str(MC_TASK_DIR), "--output_path", str(tmp_path), "--log_samples", "--limit", "2",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    (results_file,) = tmp_path.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    assert results["config"]["model"] == "longllada"
    assert 0.0 <= results["results"]["longllada_mc_fixture"]["acc,none"] <= 1.0
    (samples_file,) = tmp_path.rglob("samples_longllada_mc_fixture_*.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line]
    assert len(samples) == 2
    for sample in samples:
        pairs = [(args["arg_0"], args["arg_1"]) for args in sample["arguments"].values()]
        requests = [loglikelihood_request(*pair) for pair in pairs]
        expected = lm.loglikelihood(requests)
        logged = [(float(score), greedy == "True") for ((score, greedy),) in sample["resps"]]
        assert [score for score, _ in logged] == pytest.approx([score for score, _ in expected], rel=1e-5)
        assert [greedy for _, greedy in logged] == [greedy for _, greedy in expected]
