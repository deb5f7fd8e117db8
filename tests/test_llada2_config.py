"""LLaDA2.0 / LLaDA2.1 configuration: an official-format config.json (tests/oracles/llada2_reference.py) read and
written back unchanged, the values resolved as the official class resolves them, the rotary dimension and the
trained length that the NTK scaling law reads, and clear errors for the architectures we cannot run."""

from __future__ import annotations

import json
import logging

import pytest
from oracles import llada2_reference as ref

from modeling_longllada.configuration_llada2 import OFFICIAL_DEFAULTS, LLaDA2Config

CONFIG = ref.official_config()
# Keys that transformers itself rewrites when it saves a config (the class's own model_type, its version, and
# transformers 5's name for torch_dtype).
REWRITTEN = {"model_type", "transformers_version", "torch_dtype"}


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory: pytest.TempPathFactory):
    state = ref.random_state_dict(CONFIG)
    return ref.write_official_folder(tmp_path_factory.mktemp("llada2") / "tiny-llada2-official", CONFIG, state)


def test_official_config_json_round_trips_unchanged(official_dir, tmp_path):
    config = LLaDA2Config.from_pretrained(official_dir)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key, value in CONFIG.items():
        if key not in REWRITTEN:
            assert saved[key] == value, key
    # Keys the official code never reads are kept as the checkpoint has them, rotary_dim among them.
    assert (saved["norm_topk_prob"], saved["score_function"], saved["rotary_dim"]) == (True, "sigmoid", 8)
    assert saved["model_type"] == "longllada_llada2" and saved["rope_scaling"] is None
    again = LLaDA2Config.from_pretrained(tmp_path)
    assert {f: getattr(again, f) for f in OFFICIAL_DEFAULTS} == {f: getattr(config, f) for f in OFFICIAL_DEFAULTS}


def test_official_fields_are_read_as_the_checkpoint_gives_them(official_dir):
    config = LLaDA2Config.from_pretrained(official_dir)
    for field in OFFICIAL_DEFAULTS.keys() & CONFIG.keys():
        assert getattr(config, field) == CONFIG[field], field
    assert config.sliding_window == 4096  # a field the checkpoint leaves out takes the official default
    assert config.head_dim == 16 != config.hidden_size // config.num_attention_heads
    assert config.rotary_dim == 8  # head_dim x partial_rotary_factor, not the hidden size's share
    assert config.num_dense_layers == 1 and config.shared_expert_intermediate_size == 16
    assert config.trained_length == config.max_position_embeddings == 256
    assert (config.mask_token_id, config.eos_token_id, config.pad_token_id) == (159, ref.EOS_ID, ref.PAD_ID)


def test_defaults_are_llada2_mini_and_the_official_sampler_ids():
    config = LLaDA2Config()
    assert (config.hidden_size, config.num_hidden_layers, config.num_experts, config.num_experts_per_tok) == (
        2048, 20, 256, 8,
    )  # fmt: skip
    assert (config.head_dim, config.rotary_dim, config.rope_theta, config.trained_length) == (128, 64, 600000.0, 32768)
    assert (config.mask_token_id, config.eos_token_id) == (156895, 156892)


def test_unset_head_dim_and_zero_kv_heads_resolve_as_the_official_class():
    config = LLaDA2Config.from_dict({**CONFIG, "head_dim": None, "num_key_value_heads": 0})
    assert config.head_dim == 8 and config.num_key_value_heads == 4 and config.rotary_dim == 4


def test_no_experts_means_every_layer_dense():
    config = LLaDA2Config.from_dict({**CONFIG, "num_experts": None, "moe_intermediate_size": None})
    assert config.num_dense_layers == 3 and config.shared_expert_intermediate_size == 0


def test_a_rotary_dim_key_that_disagrees_is_kept_and_named(caplog):
    with caplog.at_level(logging.WARNING, logger="modeling_longllada.configuration_llada2"):
        config = LLaDA2Config.from_dict({**CONFIG, "rotary_dim": 6})
    assert config.rotary_dim == 8 and config.to_dict()["rotary_dim"] == 6
    assert "rotary_dim=6" in caplog.text


def test_rope_scaling_forms_and_the_trained_length():
    assert LLaDA2Config(rope_scaling="ntk:4").rope_scaling == {"type": "ntk", "factor": 4}
    config = LLaDA2Config(rope_scaling={"type": "ntk", "target_length": 131072})
    assert config.rope_supported_length == 131072 and config.rope_scaling_factor == 7  # rotary 64 or head 128
    assert LLaDA2Config(rope_scaling="ntk-per-length").rope_factor_for_length(32768) == 1
    assert LLaDA2Config(rope_parameters={"rope_type": "default", "rope_theta": 600000.0}).rope_scaling is None
    with pytest.raises(ValueError, match="below the trained length 32768"):
        LLaDA2Config(rope_scaling={"type": "ntk", "target_length": 16384})
    assert LLaDA2Config(rope_scaling={"type": "yarn", "factor": 2.0}).rope_supported_length == 65536


@pytest.mark.parametrize(
    "change, words",
    [
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
        ({"num_key_value_heads": 3}, "num_attention_heads=4 must be a multiple of num_key_value_heads=3"),
        ({"partial_rotary_factor": 0.25, "head_dim": 12}, "rotates 3 dimensions"),
        ({"partial_rotary_factor": 0.0}, "partial_rotary_factor=0.0"),
        ({"num_experts": 6}, "num_experts=6 must be a multiple of n_group=4"),
        ({"num_experts": 4}, "leaves 1 expert per group"),
        ({"topk_group": 5}, "topk_group=5"),
        ({"num_experts_per_tok": 5}, "num_experts_per_tok=5"),
        ({"moe_intermediate_size": None}, "moe_intermediate_size=None"),
        ({"intermediate_size": None}, "intermediate_size=None"),
        ({"vocab_size": True}, "vocab_size=True"),
        ({"hidden_size": "32"}, "hidden_size='32'"),
        ({"rms_norm_eps": float("nan")}, "rms_norm_eps=nan"),
        ({"rope_theta": 1.0}, "rope_theta=1.0"),
        ({"routed_scaling_factor": float("inf")}, "routed_scaling_factor=inf"),
        ({"use_qk_norm": "yes"}, "use_qk_norm='yes'"),
        ({"mask_token_id": -1}, "mask_token_id=-1"),
    ],
)
def test_architectures_we_cannot_run_are_refused_naming_the_field(change, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        LLaDA2Config.from_dict({**CONFIG, **change})
