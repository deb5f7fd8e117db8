"""The family registry (``modeling_longllada/families.py``): every entry is consistent with its classes, the Auto
classes know every model type, and a new family is one entry: a made-up third family (LLaDA's classes under new
model types) flows through ``tiny-model``, the Auto classes, ``upload --dry-run``, its model card and the loading
path without any change to a tool."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

import modeling_longllada
from longllada.cli import main
from longllada.lm_eval_model import SAMPLER_KEYS
from longllada.loading import load_model, load_tokenizer, model_family
from longllada.tiny_model import build_tiny_model
from modeling_longllada import REMOTE_CODE_FILES, families
from modeling_longllada.families import DREAM, FAMILIES, LLADA, family_by_name, family_of_model_type, import_object
from modeling_longllada.registration import register_family, registered_config_class

TEXT = [
    "The aircraft inventory was reviewed in 2021 and again in 2022; the review found the inventory was accurate. " * 20
]


# Families whose classes are this project's (remote code, registered); a native family's entry is checked against
# transformers' own classes below.
OURS = tuple(family for family in FAMILIES if not family.native)
NATIVE_FAMILIES = tuple(family for family in FAMILIES if family.native)


@pytest.mark.parametrize("family", OURS, ids=lambda f: f.name)
def test_entry_matches_its_classes(family):
    config_class, model_class = family.config_cls(), family.model_cls()
    assert config_class.model_type == family.model_type and family.architecture == model_class.__name__
    for path in (family.config_class, family.model_class):
        assert path.split(".")[-2] + ".py" in REMOTE_CODE_FILES
    for model_type in family.model_types:  # registered: loads without remote code
        assert registered_config_class(model_type).model_type == model_type
        for auto in (AutoModel, AutoModelForCausalLM):
            assert auto._model_mapping[registered_config_class(model_type)] is model_class
    assert set(family.sampler_arguments) <= set(SAMPLER_KEYS)
    assert callable(import_object(family.tiny_config_fields)) and callable(import_object(family.weight_shapes))
    spec = family.tokenizer
    assert {spec.bos_token, spec.eos_token, spec.pad_token, spec.mask_token} <= set(spec.special_tokens)
    assert family.is_supported() and family.card.auto_class in family.auto_classes


@pytest.mark.parametrize("family", NATIVE_FAMILIES, ids=lambda f: f.name)
def test_native_entry_matches_transformers_classes(family):
    """A native family: transformers' own classes under its Auto class, nothing of ours registered, no auto_map,
    hooks for what its config class lacks; on an older transformers only the one-line refusal."""
    if not family.is_supported():
        with pytest.raises(ValueError, match=rf"^{family.title} needs transformers >= {family.min_transformers}; "):
            family.check_transformers()
        return
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_class, model_class = family.config_cls(), family.model_cls()
    assert config_class.__module__.startswith("transformers.") and model_class.__module__.startswith("transformers.")
    assert family.model_types == (family.model_type,) and CONFIG_MAPPING[family.model_type] is config_class
    for auto_name in family.auto_classes:
        assert getattr(transformers, auto_name)._model_mapping[config_class] is model_class
    assert family.auto_map == {} and family.card.auto_class in family.auto_classes
    assert set(family.sampler_arguments) <= set(SAMPLER_KEYS)
    hooks = family.tool_hooks()
    for name in ("apply_rope_scaling", "rope_summary", "ntk_factor_for_length", "convert_config",
                 "check_sampler_arguments", "generate_answers", "generation_bytes_per_row"):  # fmt: skip
        assert callable(getattr(hooks, name)), name
    assert callable(import_object(family.tiny_builder)) and callable(import_object(family.weight_shapes))
    assert family.likelihood or family.likelihood_refusal().startswith(f"{family.title} models have no likelihood: ")


@pytest.mark.parametrize("family", OURS, ids=lambda f: f.name)
def test_auto_map_is_what_the_model_class_saves(family, tmp_path):
    """The entry's auto_map (written by tiny-model and upload) equals the one save_pretrained writes."""
    folder = build_tiny_model(tmp_path / "tiny", arch=family.name, n_layers=1, d_model=32, vocab_size=300, texts=TEXT)
    assert json.loads((folder / "config.json").read_text())["auto_map"] == family.auto_map
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model) is family.model_cls() and model.remote_code_auto_map == family.auto_map
    # the greedy rule lm-eval's is_greedy check runs is one the family's sampler takes
    ids = torch.tensor([[5, 9, 14]])
    output = model.generate(ids, max_new_tokens=2, steps=2, block_length=2, remasking=family.greedy_remasking,
                            temperature=0.0, do_sample=False)  # fmt: skip
    assert output.shape == (1, 5)
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["auto_map"] == family.auto_map


def test_lookups():
    assert family_by_name("dream") is DREAM and family_of_model_type("llada") is LLADA
    assert family_of_model_type("longllada_dream") is DREAM and family_of_model_type("llama") is None
    with pytest.raises(ValueError, match=r"family 'gpt' is not known; allowed: \['llada', 'dream'"):
        family_by_name("gpt")
    assert families.model_types()[:4] == ("llada", "longllada", "Dream", "longllada_dream")


def test_a_family_newer_than_the_installed_transformers_says_so_in_one_line(monkeypatch, tmp_path):
    future = dataclasses.replace(LLADA, name="future", model_type="future_llada", official_model_types=(),
                                 min_transformers="99.1")  # fmt: skip
    monkeypatch.setattr(families, "FAMILIES", (*FAMILIES, future))
    register_family(future)  # not registered: transformers does not know the type
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    assert "future_llada" not in CONFIG_MAPPING
    with pytest.raises(ValueError, match=r"^LLaDA needs transformers >= 99\.1; installed: \S+ \(pip install"):
        build_tiny_model(tmp_path / "future", arch="future", texts=TEXT)
    assert not (tmp_path / "future").exists()


# -- a third family, one entry -----------------------------------------------------------------------------------

THIRD = dataclasses.replace(
    LLADA,
    name="third",
    title="Third",
    model_type="third_llada",
    official_model_types=("third_official",),
    card=dataclasses.replace(LLADA.card, tag="third", model="Third-v1"),
)


@pytest.fixture()
def third_family(monkeypatch):
    """THIRD in the registry and registered with the Auto classes (both undone afterwards)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    monkeypatch.setattr(families, "FAMILIES", (*FAMILIES, THIRD))
    register_family(THIRD)
    yield THIRD
    for model_type in THIRD.model_types:
        config_class = CONFIG_MAPPING._extra_content.pop(model_type)
        for auto in (AutoModel, AutoModelForCausalLM):
            auto._model_mapping._extra_content.pop(config_class, None)


def test_a_third_family_flows_through_every_tool(third_family, tiny_model_dir, tmp_path, capsys):
    sizes = dict(n_layers=1, d_model=32, vocab_size=300, texts=TEXT, seed=3)
    # tiny-model: its --arch, config and weights from the entry; the same model as LLaDA's of these sizes
    assert main(["tiny-model", "--out", str(tmp_path / "t"), "--arch", "third", "--layers", "1", "--d-model", "32",
                 "--vocab-size", "300"]) == 0  # fmt: skip
    folder = build_tiny_model(tmp_path / "third", arch="third", **sizes)
    reference = build_tiny_model(tmp_path / "llada", arch="llada", **sizes)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "third_llada" and config["auto_map"] == LLADA.auto_map
    # the Auto classes, after `import modeling_longllada`, for our type and the official one
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model) is modeling_longllada.LongLLaDAModelLM and model.config.model_type == "third_llada"
    ids = torch.tensor([[5, 9, 14, 3, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, AutoModel.from_pretrained(reference)(ids).logits)
    config["model_type"] = "third_official"
    (folder / "config.json").write_text(json.dumps(config))
    assert AutoConfig.from_pretrained(folder).model_type == "third_official"
    assert type(AutoModel.from_pretrained(folder)) is modeling_longllada.LongLLaDAModelLM
    # the loading path of ppl and lm-eval
    assert model_family(folder) == (THIRD, "third_official")
    assert type(load_model(folder)) is modeling_longllada.LongLLaDAModelLM and load_tokenizer(folder) is not None
    # upload --dry-run: converted to our type, the card from the entry
    out = tmp_path / "built"
    assert main(["upload", str(folder), "--repo-id", "me/third", "--rope-scaling", "ntk:4", "--dry-run",
                 "--out", str(out)]) == 0  # fmt: skip
    built = json.loads((out / "config.json").read_text())
    assert built["model_type"] == "third_llada" and built["rope_scaling"] == {"type": "ntk", "factor": 4}
    card = (out / "README.md").read_text()
    assert "- third\n" in card and "the Third-v1 masked-diffusion language model" in card
    assert "The official Third checkpoints' remote code is not used here" in card


# -- a family that transformers implements ------------------------------------------------------------------------


def llama_fields(*, n_layers, d_model, n_heads, n_kv_heads, mlp_hidden_size, vocab_size, trained_length, rope_theta,
                 rope_scaling=None, **token_ids):  # fmt: skip
    """``tiny_config_fields`` of the native stand-in below: transformers' Llama config fields."""
    return dict(num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=n_heads,
                num_key_value_heads=n_kv_heads, intermediate_size=mlp_hidden_size, vocab_size=vocab_size,
                max_position_embeddings=trained_length, rope_theta=rope_theta, **token_ids)  # fmt: skip


def llama_shapes(config) -> dict[str, tuple[int, ...]]:
    """``weight_shapes`` of the native stand-in: the parameters of transformers' own model."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


NATIVE = dataclasses.replace(
    LLADA,
    name="native",
    title="Native",
    model_type="llama",
    official_model_types=(),
    config_class="transformers.LlamaConfig",
    model_class="transformers.LlamaForCausalLM",
    native=True,
    tiny_config_fields=f"{__name__}.llama_fields",
    weight_shapes=f"{__name__}.llama_shapes",
)


def test_a_native_family_ships_no_code_and_registers_nothing(monkeypatch, tmp_path):
    from hub_upload.model_card import card_tags

    monkeypatch.setattr(families, "FAMILIES", (*FAMILIES, NATIVE))
    register_family(NATIVE)  # nothing: transformers has the classes
    assert registered_config_class("llama").__module__.startswith("transformers.") and NATIVE.auto_map == {}
    folder = build_tiny_model(tmp_path / "native", arch="native", n_layers=1, d_model=32, vocab_size=300, texts=TEXT)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "auto_map" not in config and not list(folder.glob("*.py"))
    assert type(load_model(folder)).__name__ == "LlamaForCausalLM"
    assert "custom_code" not in card_tags(NATIVE) and "custom_code" in card_tags(LLADA)
