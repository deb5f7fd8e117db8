"""Every numeric argument of every command, refused in one line naming it when it is NaN, infinite, a bool, negative,
zero where zero is not allowed, or huge: the options of each `longllada` command (found from the parser itself, so
a new option is covered when it is added), `--rope-scaling` specs, `longllada eval`'s lm-eval options and
``--metadata`` numbers, ``--model_args`` of every family (sampler arguments included), and the same sampler
arguments through ``generate`` in Python. Nothing is loaded before the refusal: the eval cases print exactly the
one line, and the Python cases fail before a forward pass.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longllada import cli

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"
HUGE = "1" + "0" * 40  # 1e40: past every bound
# Values refused by every numeric option (each option's minimum is >= 0 and its maximum below 1e40).
ALWAYS_BAD = ["nan", "NaN", "inf", "-inf", "1e400", "True", "true", "-1", HUGE, "", "1,5"]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def numeric_options() -> list[tuple[str, str, argparse.Action]]:
    """(command, flag, action) of every option whose value is a number (its ``type`` carries its bounds)."""
    found = []
    for command, parser in subcommands().items():
        for action in parser._actions:
            if hasattr(action.type, "bounds"):
                found.append((command, action.option_strings[0], action))
    return found


OPTIONS = numeric_options()


def test_the_cli_bounds_are_the_models():
    from lm_eval_tasks import metadata_keys
    from modeling_longllada import rope_longllada

    assert cli.MAX_COUNT == rope_longllada.MAX_COUNT == metadata_keys.MAX_COUNT
    assert cli.MAX_SEED == rope_longllada.MAX_SEED and cli.MAX_ROPE_BASE == rope_longllada.MAX_ROPE_BASE


def test_every_numeric_option_has_bounds():
    """No option parses a number with bare ``int``/``float`` (NaN, inf and any size would pass)."""
    bare = [(command, action.option_strings or [action.dest]) for command, parser in subcommands().items()
            for action in parser._actions if action.type in (int, float)]  # fmt: skip
    assert bare == []
    commands = {command for command, _, _ in OPTIONS}
    assert {"ppl", "niah-plot", "table", "rope-sweep", "tiny-model", "train-tiny", "demo"} <= commands
    assert len(OPTIONS) >= 50


def one_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"longllada {command}: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize(("command", "flag", "action"), OPTIONS, ids=[f"{c} {f}" for c, f, _ in OPTIONS])
def test_a_bad_number_is_one_line_naming_the_option(command, flag, action, capsys):
    minimum, maximum = action.type.bounds
    bad = list(ALWAYS_BAD)
    if minimum > 0 or _above(action):
        bad.append("0")
    if action.type.__name__ == "integer":
        bad += ["1.5", "1e3"]
    bad.append(str(maximum + 1) if isinstance(maximum, int) else repr(maximum * 10))
    for value in bad:
        assert cli.main([command, f"{flag}={value}"]) == 2, (flag, value)  # "-1" would read as an option
        line = one_line(capsys, command)
        assert f"{flag} must be " in line and line.endswith(f"got {value}".rstrip()), line
    # the bounds themselves are allowed
    assert action.type(str(maximum)) == maximum
    if not _above(action):
        assert action.type(str(minimum)) == minimum


def _above(action: argparse.Action) -> bool:
    """Whether the option's minimum itself is refused (``float_arg(..., above=True)``)."""
    try:
        action.type(str(action.type.bounds[0]))
    except argparse.ArgumentTypeError:
        return True
    return False


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "True", "1e400", "100TB", "51GB", ""])
def test_upload_shard_size(value, capsys):
    assert cli.main(["upload", str(TWIN), "--repo-id", "a/b", "--shard-size", value]) == 2
    assert "--shard-size" in one_line(capsys, "upload")


BAD_SPECS = ["ntk:nan", "ntk:inf", "ntk:-1", "ntk:0", "ntk:True", "ntk:1e305", "ntk-target:0", "ntk-target:1e400",
             "ntk-target:-16k", "yarn:nan", "linear:inf", "diffusion-ntk:0", f"ntk:{HUGE}"]  # fmt: skip


@pytest.mark.parametrize("command", ["ppl", "upload", "rope-sweep"])
def test_rope_scaling_numbers_are_refused_in_one_line(command, tmp_path, capsys):
    required = {
        "ppl": ["--model", str(TWIN), "--out", str(tmp_path / "r.jsonl")],
        "upload": [str(TWIN), "--repo-id", "a/b", "--dry-run", "--out", str(tmp_path / "b")],
        "rope-sweep": ["--model", str(TWIN), "--out", str(tmp_path / "s")],
    }[command]
    for spec in BAD_SPECS:
        assert cli.main([command, *required, "--rope-scaling", spec]) == 2, spec
        assert "--rope-scaling" in one_line(capsys, command), spec
    assert not any(tmp_path.iterdir())  # refused before anything was written


LISTS = {  # options that take numbers in a list, with a bad list each
    "rope-sweep": {"--factors": ["nan", "2,inf", "0.5", f"2,{HUGE}", "True", "2,2"],
                   "--lengths": ["nan", "128,-1", "0", HUGE, "1.5", "True"],
                   "--depths": ["nan", "-1", "101", "inf", "True"]},
    "train-tiny": {"--eval-multiples": ["nan", "-1", "0", "1.5", "True"],
                   "--keyword-mix": ["nan,1,1", "inf,1,1", "-1,1,1", "0,0,0", "True,1,1", "1,1"]},
}  # fmt: skip


@pytest.mark.parametrize("command", list(LISTS))
def test_numbers_in_lists_are_refused_in_one_line(command, tmp_path, capsys):
    required = {"rope-sweep": ["--model", str(TWIN), "--out", str(tmp_path / "s")],
                "train-tiny": ["--out-dir", str(tmp_path / "m"), "--log-dir", str(tmp_path / "l")]}[command]  # fmt: skip
    for flag, values in LISTS[command].items():
        for value in values:
            assert cli.main([command, *required, f"{flag}={value}"]) == 2, (flag, value)
            line = one_line(capsys, command)
            assert flag in line or flag.lstrip("-").replace("-", "_") in line, line
    assert not any(tmp_path.iterdir())


# -- longllada eval: lm-eval's options, --metadata numbers and --model_args of every family ----------------------

GRID = {"context_lengths": [256], "depths": [0], "num_repeats": 1}


def eval_error(capfd, argv: list[str]) -> str:
    """`longllada eval ...` through the real entry: exit 2 and exactly one line on stderr (lm-eval's logging and
    warnings included: nothing ran before the refusal)."""
    capfd.readouterr()
    assert cli.main(["eval", *argv]) == 2, argv
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("longllada eval: error: "), err
    return lines[0]


def niah_eval(model_args: str, *extra: str, metadata: dict | None = None) -> list[str]:
    return ["--model", "longllada", "--model_args", model_args, "--tasks", "longllada_niah", "--device", "cpu",
            "--metadata", json.dumps(metadata or GRID), *extra]  # fmt: skip


LM_EVAL_OPTIONS = {
    "--limit": ["nan", "inf", "-1", "0", "1.5", "1e400", HUGE, "x"],
    "--num_fewshot": ["nan", "-1", HUGE, "1.5", "True"],
    "--batch_size": ["nan", "inf", "-1", "0", "True", "1.5", HUGE, "auto:0", "auto:x"],
    "--max_batch_size": ["nan", "-1", "0", HUGE, "True"],
    "--seed": ["nan", "-5", HUGE, "1,2,x"],
}


@pytest.mark.parametrize("flag", list(LM_EVAL_OPTIONS))
def test_lm_eval_s_numeric_options(flag, capfd):
    pytest.importorskip("lm_eval")
    for value in LM_EVAL_OPTIONS[flag]:
        line = eval_error(capfd, niah_eval(f"pretrained={TWIN}", flag, value))
        assert flag in line, (value, line)


@pytest.mark.parametrize(
    "gen_kwargs",
    [
        "temperature=nan",
        "top_p=inf",
        "max_gen_toks=-1",
        "max_gen_toks=1e400",
        "top_k=True",
        f"steps={HUGE}",
    ],  # fmt: skip
)
def test_gen_kwargs_numbers(gen_kwargs, capfd):
    pytest.importorskip("lm_eval")
    line = eval_error(capfd, niah_eval(f"pretrained={TWIN}", "--gen_kwargs", gen_kwargs))
    assert f"--gen_kwargs {gen_kwargs.split('=')[0]}" in line


METADATA = [
    ("longllada_niah", "context_lengths", [[float("nan")], [math.inf], [-1], [0], [True], [int(HUGE)], [256.5], []]),
    ("longllada_niah", "depths", [[math.nan], [-1], [101], [True], ["x"]]),
    ("longllada_niah", "num_repeats", [math.nan, -1, 0, True, int(HUGE), 1.5]),
    ("longllada_niah", "seed", [math.nan, True, 2**70, 1.5]),
    ("longllada_ruler", "max_seq_lengths", [[math.nan], [-1], [0], [True], [int(HUGE)]]),
    ("longllada_ruler", "num_samples", [math.nan, -1, 0, True, int(HUGE)]),
    ("longllada_ruler", "seed", [math.nan, -1, True, int(HUGE)]),
    ("longllada_longbench_trec", "max_length", [math.nan, -1, 0, True, int(HUGE)]),
]


@pytest.mark.parametrize(("task", "key", "values"), METADATA, ids=[f"{t} {k}" for t, k, _ in METADATA])
def test_metadata_numbers(task, key, values, capfd):
    pytest.importorskip("lm_eval")
    from longllada.eval_cli import check_settings

    for index, value in enumerate(values):
        metadata = {key: value} if task != "longllada_niah" else {**GRID, key: value}
        setting = (f"pretrained={TWIN}", {"pretrained": str(TWIN)})
        with pytest.raises(ValueError, match=rf"\b{key}\b"):
            check_settings([setting], "longllada", [task], metadata)
        if index < 2:  # and through the command (NaN and the next value), one line
            argv = ["--model", "longllada", "--model_args", setting[0], "--tasks", task, "--device", "cpu",
                    "--metadata", json.dumps(metadata)]  # fmt: skip
            assert key in eval_error(capfd, argv)


# --model_args numbers every family takes, and the sampler arguments by family; the value 0 is allowed where
# listed here (a seed, a temperature, a filter or count that 0 switches off).
COMMON_ARGS = ["mc_num", "mc_batch_size", "mc_seed", "rolling_chunk", "batch_classes", "ntk_factor", "ntk_target",
               "batch_size", "max_length", "max_batch_size", "prefix_token_id"]  # fmt: skip
ZERO_ALLOWED = {"mc_seed", "prefix_token_id", "temperature", "alg_temp", "cfg_scale", "top_k", "threshold",
                "editing_threshold", "max_post_steps", "t_min", "stability_threshold"}  # fmt: skip
NOT_NUMBERS = {"remasking", "alg", "cache", "eos_early_stop"}
FAMILIES = ["llada", "dream", "lladamoe", "llada2", "diffusion_gemma"]


def bad_values(key: str) -> list[str]:
    values = ["nan", "inf", "-inf", "-1", "True", HUGE, "1e400"]
    return values if key in ZERO_ALLOWED else [*values, "0"]


@pytest.mark.parametrize("family", FAMILIES)
def test_model_args_numbers_of_every_family(family, tiny_family_dir, capfd):
    """Each numeric --model_args key the family's model takes, its sampler's included (LLaDA2's minimal_topk,
    editing_threshold, max_post_steps, num_to_transfer; DiffusionGemma's max_denoising_steps, t_min, t_max,
    entropy_bound, stability_threshold, confidence_threshold, canvas_length), through `longllada eval`."""
    pytest.importorskip("lm_eval")
    from modeling_longllada.families import family_by_name

    folder = tiny_family_dir(family)
    sampler = [key for key in family_by_name(family).sampler_arguments if key not in NOT_NUMBERS]
    if family == "llada2":
        assert {"minimal_topk", "editing_threshold", "max_post_steps", "num_to_transfer"} <= set(sampler)
    if family == "diffusion_gemma":
        assert {"max_denoising_steps", "t_min", "t_max", "entropy_bound", "stability_threshold",
                "confidence_threshold", "canvas_length"} <= set(sampler)  # fmt: skip
    from lm_eval.utils import simple_parse_args_string

    from longllada.eval_cli import check_settings

    for index, key in enumerate([*sampler, *COMMON_ARGS]):
        values = bad_values(key)
        for value in values:  # the check `longllada eval` makes of every setting before any model loads
            text = f"pretrained={folder},{key}={value}"
            with pytest.raises(ValueError, match=rf"\b{key}\b") as refused:
                check_settings([(text, simple_parse_args_string(text))], "longllada", ["longllada_niah"], GRID)
            assert "allowed" in str(refused.value), (key, value, refused.value)
        # and through the command, one line (a different bad value for each key)
        line = eval_error(capfd, niah_eval(f"pretrained={folder},{key}={values[index % len(values)]}"))
        assert key in line, (key, line)
    # eos_early_stop is a switch: a number is no bool
    if "eos_early_stop" in family_by_name(family).sampler_arguments:
        for value in ("1", "nan", "2"):
            assert "eos_early_stop" in eval_error(capfd, niah_eval(f"pretrained={folder},eos_early_stop={value}"))


PYTHON_BAD = [math.nan, math.inf, -1, True, 10**40, 1e300]


@pytest.mark.parametrize("family", ["llada", "dream", "lladamoe", "llada2"])
def test_generate_refuses_bad_sampler_numbers(family, tiny_family_dir):
    """``model.generate(...)`` in Python: the same checks (the sampler's one validation), before any forward."""
    from transformers import AutoModel

    from modeling_longllada.families import family_by_name

    model = AutoModel.from_pretrained(tiny_family_dir(family)).eval()
    ids = torch.tensor([[3, 4, 5, 6]])
    keys = [key for key in family_by_name(family).sampler_arguments if key not in NOT_NUMBERS and key != "cache"]
    keys += ["max_new_tokens"]
    calls = []
    model.forward = lambda *args, **kwargs: calls.append(1)  # never reached
    for key in keys:
        for value in [*PYTHON_BAD, *([] if key in ZERO_ALLOWED else [0])]:
            arguments = {"max_new_tokens": 4, key: value}
            with pytest.raises(ValueError, match=rf"\b{key}="):
                model.generate(ids, **arguments)
    if "eos_early_stop" in family_by_name(family).sampler_arguments:
        with pytest.raises(ValueError, match="eos_early_stop=1 is not allowed"):
            model.generate(ids, max_new_tokens=4, eos_early_stop=1)
    assert calls == []


def test_diffusion_gemma_generate_refuses_bad_sampler_numbers(tiny_family_dir):
    """DiffusionGemma is transformers' own model: this package's ``diffusion_gemma.generate`` checks its sampler
    arguments (entropy_bound and confidence_threshold, which transformers' ``generate`` takes as NaN, included)."""
    folder = tiny_family_dir("diffusion_gemma")
    from transformers import AutoModelForImageTextToText

    from modeling_longllada import diffusion_gemma as dg

    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    ids = torch.tensor([[2, 10, 11, 12]])
    for key in ("max_denoising_steps", "t_min", "t_max", "entropy_bound", "stability_threshold",
                "confidence_threshold", "max_new_tokens"):  # fmt: skip
        for value in [*PYTHON_BAD, *([] if key in ZERO_ALLOWED else [0])]:
            with pytest.raises(ValueError, match=rf"\b{key}="):
                dg.generate(model, ids, **{"max_new_tokens": 4, key: value})
    with pytest.raises(ValueError, match="canvas_length=8 is a field of the model's config"):
        dg.generate(model, ids, max_new_tokens=4, canvas_length=8)


def test_gumbel_scores_stay_finite_at_any_temperature():
    """LLaDA's Gumbel-max draw at a temperature past float64's range for the official quotient (about 19): the
    scores stay finite and the draw is spread over the vocabulary, not piled on the lowest token ids."""
    from modeling_longllada.generation_longllada import add_gumbel_noise

    logits = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for temperature in (50.0, 1e6):
        scores = add_gumbel_noise(logits, temperature, torch.Generator().manual_seed(1))
        assert torch.isfinite(scores).all()
        counts = torch.bincount(scores.argmax(-1), minlength=64)
        assert counts.max() < 3 * 4096 / 64  # near uniform (the quotient gave id 0 most of the time)
    # where the quotient is finite, the same draw
    for temperature in (0.5, 1.0, 2.0):
        u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        official = (logits.exp() / (-torch.log(u)) ** temperature).argmax(-1)
        ours = add_gumbel_noise(logits, temperature, torch.Generator().manual_seed(2)).argmax(-1)
        assert torch.equal(official, ours)


def test_the_installed_entry_prints_one_line_and_nothing_else(tmp_path):
    """`python -m longllada` as a user runs it: stderr is the one error line (no warning of an import, no log line of
    lm-eval), exit code 2, for an lm-eval option and a sampler argument of `eval` and an option of `ppl`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cases = [
        (niah_eval(f"pretrained={TWIN}", "--limit", "nan"), "eval", "--limit"),
        (niah_eval(f"pretrained={TWIN},temperature=inf"), "eval", "temperature"),
        (["--model", str(TWIN), "--out", str(tmp_path / "r.jsonl"), "--chunk=-1"], "ppl", "--chunk"),
    ]
    for argv, command, name in cases:
        result = subprocess.run([sys.executable, "-m", "longllada", command, *argv], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=300)  # fmt: skip
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"longllada {command}: error: ") and name in lines[0]
    assert not any(tmp_path.iterdir())
