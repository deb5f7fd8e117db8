"""Official checkpoints (a Hub id or a folder in the official format) reach this project's classes.

With ``modeling_longllada`` imported, transformers' Auto classes load an official LLaDA or Dream folder with our
classes (a registered model type is local code to transformers), so ``rope_scaling`` works without converting
anything. The folders here are official in every field that matters: ``model_type``, the official ``auto_map``
(to code files that are absent, so the official code can never be run by mistake) and the official keys.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from oracles import dream_reference as ref
from transformers import AutoModel, AutoModelForCausalLM

import modeling_longllada
from modeling_longllada import DreamModel, LongLLaDAModelLM
from modeling_longllada.configuration_longllada import OFFICIAL_DEFAULTS

DREAM = ref.official_config()
DREAM_STATE = ref.random_state_dict(DREAM, seed=0)
LLADA_AUTO_MAP = {
    "AutoConfig": "configuration_llada.LLaDAConfig",
    "AutoModel": "modeling_llada.LLaDAModelLM",
    "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
}


def official_llada_folder(tiny_model_dir: Path, out: Path) -> Path:
    """The tiny LLaDA in the official format: official config fields, model_type "llada", official auto_map,
    no code files."""
    shutil.copytree(tiny_model_dir, out, ignore=shutil.ignore_patterns("*.py", ".longllada*"))
    ours = json.loads((out / "config.json").read_text())
    config = {k: v for k, v in ours.items() if k in OFFICIAL_DEFAULTS or k.endswith("_token_id")}
    config.update(model_type="llada", architectures=["LLaDAModelLM"], auto_map=LLADA_AUTO_MAP)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


@pytest.fixture(scope="module")
def llada_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return official_llada_folder(tiny_model_dir, tmp_path_factory.mktemp("official") / "llada-official")


@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory) -> Path:
    return ref.write_official_folder(tmp_path_factory.mktemp("official") / "dream-official", DREAM, DREAM_STATE)


@pytest.mark.parametrize("auto", [AutoModel, AutoModelForCausalLM])
def test_official_llada_folder_loads_with_our_classes_and_ntk(llada_dir, auto):
    assert modeling_longllada.registered_config_class("llada").model_type == "llada"
    model = auto.from_pretrained(llada_dir, rope_scaling={"type": "ntk", "factor": 4})
    assert type(model) is LongLLaDAModelLM and model.config.rope_scaling_factor == 4
    direct = LongLLaDAModelLM.from_pretrained(llada_dir, rope_scaling="ntk:4")
    ids = torch.tensor([[5, 9, 14, 3, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, direct(ids).logits)
        plain = auto.from_pretrained(llada_dir)
        assert plain.config.rope_scaling is None and not torch.allclose(plain(ids).logits, model(ids).logits)


@pytest.mark.parametrize("auto", [AutoModel, AutoModelForCausalLM])
def test_official_dream_folder_loads_with_our_classes_and_ntk(dream_dir, auto):
    model = auto.from_pretrained(dream_dir, rope_scaling={"type": "ntk", "factor": 5})  # the paper's Dream setting
    assert type(model) is DreamModel and model.config.rope_scaling_factor == 5
    ids = torch.tensor([[5, 9, 14, 3, 7]])
    with torch.no_grad():
        ours = model(ids).logits
    expected = ref.forward(DREAM, DREAM_STATE, ids, rope_theta=DREAM["rope_theta"] * 5)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
