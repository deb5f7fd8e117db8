"""`longllada eval --help` is ours: --model longllada's arguments from the one place they are defined, sweeps,
resume, an example per family whose arguments `--model longllada` takes; lm-eval's own help stays one command
away. Without --device, the results record the device the model ran on."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import pytest

from longllada import cli
from longllada.eval_help import FAMILY_EXAMPLES
from longllada.model_args import MODEL_ARGS, SAMPLER_ARGS
from modeling_longllada.families import FAMILIES

pytestmark = pytest.mark.version_independent

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["eval", "--help"], ["eval", "-h"], ["eval"], ["eval", "--model", "longllada", "-h"]])
def test_eval_help_is_ours(argv, capsys):
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: longllada eval") and "gpt2" not in text
    for name in MODEL_ARGS:
        assert f"\n  {name} " in text, name
    assert "--model_args once per setting" in text and "longllada_settings.json" in text and "--use_cache" in text
    for _, family, _, model_args in FAMILY_EXAMPLES:
        assert family in text and model_args in text
    names = [name for name, *_ in FAMILY_EXAMPLES]
    assert names == [family.name for family in FAMILIES if family.card.official_repos] + [None]
    assert "longllada eval run --help" in text


def test_the_model_args_are_those_the_model_takes():
    lm_eval_model = pytest.importorskip("longllada.lm_eval_model")
    from lm_eval.models.huggingface import HFLM

    hflm = inspect.signature(HFLM.__init__).parameters
    ours = [name for name in inspect.signature(lm_eval_model.LongLLaDALM.__init__).parameters
            if name in MODEL_ARGS or (name not in hflm and name not in ("self", "kwargs"))]  # fmt: skip
    assert ours == list(MODEL_ARGS)  # the same names, in the signature's order (HFLM's trust_remote_code too)
    assert lm_eval_model.SAMPLER_KEYS == tuple(SAMPLER_ARGS)


def test_every_example_is_a_setting_model_longllada_takes(tiny_family_dir):
    """Each example's arguments, on a tiny model of its family (the causal LM's on the shipped tiny LLaMA)."""
    pytest.importorskip("lm_eval")
    from lm_eval.utils import simple_parse_args_string

    from longllada.eval_cli import check_settings

    for name, _, _, model_args in FAMILY_EXAMPLES:
        local = tiny_family_dir(name) if name else REPO / "longllada" / "models" / "tiny-llama-ar"
        model_args = re.sub(r"^pretrained=[^,]*", f"pretrained={local}", model_args)
        check_settings([(model_args, simple_parse_args_string(model_args))], "longllada")  # parsed as lm-eval does


def test_lm_eval_help_is_one_command_away(capsys):
    pytest.importorskip("lm_eval")
    assert cli.main(["eval", "run", "--help"]) == 0
    assert "--model_args" in capsys.readouterr().out


def test_without_device_the_real_one_is_recorded():
    import torch

    from longllada.eval_cli import resolve_device

    args = argparse.Namespace(device=None)
    resolve_device(args)
    assert args.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    given = argparse.Namespace(device="cpu")
    resolve_device(given)
    assert given.device == "cpu"
