"""DiffusionGemma through transformers' own classes: NTK on the full-attention layers only, the scaling law with
p-RoPE, the sampler's arguments, batched and chunked generation, the tiny folder, and transformers 4.46."""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import transformers

from modeling_longllada import diffusion_gemma as dg
from modeling_longllada.rope_longllada import critical_dimension, ntk_scaling_factor

REPO = Path(__file__).resolve().parents[1]
needs_diffusion_gemma = pytest.mark.skipif(
    not dg.transformers_version_ok(),
    reason=f"DiffusionGemma needs transformers >= {dg.MIN_TRANSFORMERS_VERSION} (installed {transformers.__version__})",
)
# Near-zero temperatures make every denoising step take the argmax and accept the whole canvas; with a fixed
# starting canvas the answer is then a function of the prompt alone.
DETERMINISTIC = {"t_min": 0.0, "t_max": 1e-6, "max_denoising_steps": 3}


def inverse_frequencies(theta: float, frequency_dim: int, rotary_dim: int) -> torch.Tensor:
    """RoPE's inverse frequencies as transformers lays them out: one per pair of the head, unrotated pairs 0."""
    pairs = torch.arange(0, rotary_dim, 2, dtype=torch.float) / frequency_dim
    return torch.cat((1.0 / theta**pairs, torch.zeros(frequency_dim // 2 - rotary_dim // 2)))


# -- transformers 4.46 ------------------------------------------------------------------------------------------


def test_an_older_transformers_is_named_in_one_line(monkeypatch):
    installed = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "4.46.3" if name == "transformers" else installed(name)
    )
    assert not dg.transformers_version_ok()
    for call in (dg.require_diffusion_gemma, lambda: dg.load_model("/no/such/folder")):
        with pytest.raises(ImportError) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"DiffusionGemma needs transformers >= {dg.MIN_TRANSFORMERS_VERSION}; ")
        assert "installed: 4.46.3" in message


@pytest.mark.skipif(dg.transformers_version_ok(), reason="this transformers ships DiffusionGemma")
def test_on_transformers_4_46_the_family_is_absent_and_says_so(tmp_path):
    from longllada.tiny_diffusion_gemma import build_tiny_diffusion_gemma

    for call in (lambda: dg.load_model(str(tmp_path)), lambda: build_tiny_diffusion_gemma(tmp_path / "tiny")):
        with pytest.raises(ImportError, match=r"^DiffusionGemma needs transformers >= \S+; installed: 4\.46"):
            call()
    assert not (tmp_path / "tiny").exists()


# -- the scaling law with p-RoPE ----------------------------------------------------------------------------------


def test_the_law_is_unchanged_for_full_rotary_rope():
    # Full rotary RoPE (rotary = frequency width): the law is ntk_scaling_factor's, LLaDA's and Dream's figures.
    assert dg.law_ntk_factor(128, 128, 500000.0, 4096, 8192) == ntk_scaling_factor(128, 500000.0, 4096, 8192) == 4
    assert dg.law_ntk_factor(128, 128, 1e6, 2048, 4096) == 5
    assert dg.law_ntk_factor(128, 128, 1e6, 2048, 2048) == 1
    # A critical dimension past the rotated ones: every rotated pair completes its period in the window.
    assert critical_dimension(512, 1e6, 262144) == 396
    assert dg.law_ntk_factor(512, 128, 1e6, 262144, 524288) == 1
    assert ntk_scaling_factor(512, 1e6, 262144, 524288) == 3  # what ignoring the unrotated dimensions would say
    with pytest.raises(ValueError, match=r"rotary_dim=600 is not allowed; allowed: an integer >= 1 and <= 512"):
        dg.law_ntk_factor(512, 600, 1e6, 262144, 524288)


@needs_diffusion_gemma
def test_the_released_model_needs_no_ntk_at_256k_or_512k():
    config = dg.released_config()
    text = config.text_config
    assert text.max_position_embeddings == 262144 and text.layer_types.count(dg.FULL_ATTENTION) == 5
    assert dg.rope_dimensions(text, dg.FULL_ATTENTION) == (512, 128)  # p-RoPE: a quarter of a 512-wide head
    assert dg.rope_dimensions(text, dg.SLIDING_ATTENTION) == (256, 256)
    longest_period = 2 * math.pi * 1e6 ** (126 / 512)
    assert 188 < longest_period < 189  # every rotated pair turns within a few hundred tokens
    for target in (262144, 524288, 1048576):
        assert dg.ntk_factors_for_length(config, target) == {dg.FULL_ATTENTION: 1}
    record = dg.apply_rope_scaling(config, "ntk-target:512k")
    assert record["factor"] == {dg.FULL_ATTENTION: 1.0} and record["trained_length"] == 262144
    assert dg.rope_theta_by_layer_type(config) == {dg.FULL_ATTENTION: 1e6, dg.SLIDING_ATTENTION: 1e4}


@needs_diffusion_gemma
def test_the_law_scales_full_layers_whose_rotated_pairs_outlast_the_window():
    from transformers import DiffusionGemmaConfig

    text = copy.deepcopy(dg.DIFFUSION_GEMMA_26B_A4B_TEXT_CONFIG)
    text["rope_parameters"] = {
        dg.SLIDING_ATTENTION: {"rope_type": "default", "rope_theta": 10000.0},
        dg.FULL_ATTENTION: {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
    }
    text["max_position_embeddings"] = 4096
    config = DiffusionGemmaConfig(text_config=text)
    # Partial default RoPE rotates 256 of 512 over a 256-wide frequency range, as transformers computes it.
    assert dg.rope_dimensions(config.text_config, dg.FULL_ATTENTION) == (256, 256)
    expected = ntk_scaling_factor(256, 10000.0, 4096, 32768)
    assert expected > 1
    dg.apply_rope_scaling(config, {"type": "ntk", "target_length": 32768})
    assert dg.rope_theta_by_layer_type(config) == {dg.FULL_ATTENTION: 10000.0 * expected, dg.SLIDING_ATTENTION: 1e4}


@needs_diffusion_gemma
@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("ntk-per-length", "caches the prompt's rotated keys"),
        ("dynamic:2", "type 'dynamic' is not supported for DiffusionGemma"),
        ("ntk-target:1000", "target_length=1000 is below the trained window 262144"),
        ({"type": "ntk", "factor": 2, "target_length": 524288}, "the scaling law gives factor 1"),
        ("ntk:0.5", "=0.5 is not allowed; allowed: a finite number >= 1"),
        ({"type": "ntk", "factor": float("nan")}, "factor=nan is not allowed"),
    ],
)
def test_specs_that_cannot_apply_are_named(spec, words):
    config = dg.released_config()
    with pytest.raises(ValueError) as caught:
        dg.apply_rope_scaling(config, spec)
    assert words in str(caught.value)
    assert dg.rope_theta_by_layer_type(config)[dg.FULL_ATTENTION] == 1e6  # nothing was changed


@needs_diffusion_gemma
def test_unknown_layer_types_and_rope_types_are_refused():
    config = dg.released_config()
    config.text_config.layer_types = [*config.text_config.layer_types[:-1], "chunked_attention"]
    with pytest.raises(ValueError, match=r"layer_types has \['chunked_attention'\]; rope_scaling applies to"):
        dg.apply_rope_scaling(config, "ntk:4")
    config = dg.released_config()
    config.text_config.rope_parameters[dg.FULL_ATTENTION] = {"rope_type": "yarn", "rope_theta": 1e6, "factor": 2.0}
    with pytest.raises(ValueError, match=r"rope_type='yarn' already rescales RoPE"):
        dg.apply_rope_scaling(config, "ntk:4")


# -- NTK read back from a loaded model ---------------------------------------------------------------------------


@needs_diffusion_gemma
def test_scaled_theta_is_read_back_per_layer_type(tiny_gemma_dir, tmp_path):
    model = dg.load_model(str(tiny_gemma_dir), rope_scaling="ntk:4")
    assert dg.rope_theta_by_layer_type(model) == {dg.FULL_ATTENTION: 4e6, dg.SLIDING_ATTENTION: 1e4}
    text = model.config.text_config
    full_dims, sliding_dims = (
        dg.rope_dimensions(text, dg.FULL_ATTENTION),
        dg.rope_dimensions(text, dg.SLIDING_ATTENTION),
    )
    assert full_dims == (16, 4) and sliding_dims == (8, 8)
    for rotary in (model.model.encoder.language_model.rotary_emb, model.model.decoder.rotary_emb):
        torch.testing.assert_close(rotary.full_attention_inv_freq, inverse_frequencies(4e6, *full_dims))
        torch.testing.assert_close(rotary.sliding_attention_inv_freq, inverse_frequencies(1e4, *sliding_dims))
    # Saved and scaled again: from the trained θ, not the scaled one; "none" restores it.
    model.save_pretrained(tmp_path / "scaled")
    saved = json.loads((tmp_path / "scaled" / "config.json").read_text())["text_config"]
    assert saved[dg.ROPE_SCALING_RECORD]["trained_rope_theta"] == {dg.FULL_ATTENTION: 1e6}
    assert saved["rope_parameters"][dg.FULL_ATTENTION]["rope_theta"] == 4e6
    again = dg.load_config(str(tmp_path / "scaled"), rope_scaling="ntk:2")
    assert dg.rope_theta_by_layer_type(again) == {dg.FULL_ATTENTION: 2e6, dg.SLIDING_ATTENTION: 1e4}
    restored = dg.load_model(str(tmp_path / "scaled"), rope_scaling="none")
    assert dg.rope_theta_by_layer_type(restored) == {dg.FULL_ATTENTION: 1e6, dg.SLIDING_ATTENTION: 1e4}
    assert not hasattr(restored.config.text_config, dg.ROPE_SCALING_RECORD)
    torch.testing.assert_close(
        restored.model.decoder.rotary_emb.full_attention_inv_freq, inverse_frequencies(1e6, *full_dims)
    )


@needs_diffusion_gemma
def test_offline_loads_leave_the_hubs_kernels_off_unless_asked(tiny_gemma_dir, monkeypatch):
    # transformers 5 kernelizes its own classes by default, fetching kernels from the Hub: offline on a GPU the
    # load itself fails. Offline, every loading path asks for no Hub kernels unless the caller chooses.
    from huggingface_hub import constants

    from longllada.loading import load_model
    from modeling_longllada.families import family_by_name

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert dg.load_model(str(tiny_gemma_dir)).use_kernels is False
    assert load_model(str(tiny_gemma_dir)).use_kernels is False
    assert load_model(str(tiny_gemma_dir), use_kernels=True).use_kernels is True
    assert family_by_name("llada").from_pretrained_kwargs({"dtype": "auto"}) == {"dtype": "auto"}  # our classes: none
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert family_by_name("diffusion_gemma").from_pretrained_kwargs({}) == {}  # online: transformers' own default
    assert family_by_name("diffusion_gemma").from_pretrained_kwargs({"local_files_only": True})["use_kernels"] is False


# -- the sampler's arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"max_denoising_steps": 0}, "max_denoising_steps=0 is not allowed; allowed: an integer >= 1"),
        ({"max_denoising_steps": 2.5}, "max_denoising_steps=2.5 is not allowed"),
        ({"max_new_tokens": True}, "max_new_tokens=True is not allowed"),
        ({"canvas_length": "256"}, "canvas_length='256' is not allowed"),
        ({"t_min": -0.1}, "t_min=-0.1 is not allowed; allowed: a finite number >= 0"),
        ({"t_max": float("inf")}, "t_max=inf is not allowed"),
        ({"t_max": float("nan")}, "t_max=nan is not allowed"),
        ({"t_min": 0.8, "t_max": 0.4}, "t_max=0.4 with t_min=0.8 is not allowed; allowed: t_max > t_min"),
        ({"entropy_bound": 0}, "entropy_bound=0 is not allowed; allowed: a finite number > 0"),
        ({"stability_threshold": -1}, "stability_threshold=-1 is not allowed; allowed: an integer >= 0"),
        ({"confidence_threshold": 0.0}, "confidence_threshold=0.0 is not allowed"),
        ({"temperature": 0.5}, "unknown DiffusionGemma sampler arguments ['temperature']; allowed: ["),
    ],
)
def test_sampler_arguments_are_checked(arguments, words):
    with pytest.raises(ValueError) as caught:
        dg.DiffusionGemmaSamplerArgs.from_mapping(arguments)
    assert words in str(caught.value)


@needs_diffusion_gemma
def test_one_temperature_is_checked_against_the_checkpoints_other(tiny_gemma_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_gemma_dir)
    assert model.generation_config.t_min == 0.4
    with pytest.raises(ValueError, match=r"t_max=0.3 with t_min=0.4 is not allowed"):
        dg.DiffusionGemmaSamplerArgs(t_max=0.3).apply(model)


@needs_diffusion_gemma
def test_sampler_arguments_reach_transformers_generate(tiny_gemma_dir):
    sampler = dg.DiffusionGemmaSamplerArgs.from_mapping(
        {
            "max_new_tokens": 12,
            "max_denoising_steps": 2,
            "canvas_length": 4,
            "t_min": 0,
            "t_max": 1,
            "entropy_bound": 2,
            "stability_threshold": 1,
            "confidence_threshold": 0.001,
        }  # fmt: skip
    )
    assert dg.DiffusionGemmaSamplerArgs.names() == tuple(
        "max_new_tokens max_denoising_steps t_min t_max entropy_bound stability_threshold confidence_threshold "
        "canvas_length".split()
    )
    model = dg.load_model(str(tiny_gemma_dir), sampler=sampler)
    generation = model.generation_config
    assert type(generation).__name__ == "DiffusionGemmaGenerationConfig"
    assert (generation.max_new_tokens, generation.max_denoising_steps, generation.t_min, generation.t_max) == (
        12,
        2,
        0.0,
        1.0,
    )
    assert (generation.stability_threshold, generation.confidence_threshold) == (1, 0.001)
    assert generation.sampler_config.entropy_bound == 2.0 and model.config.canvas_length == 4
    assert generation.eos_token_id == [1, 6]  # the folder's own settings stay

    decoder_passes = []
    model.model.decoder.register_forward_hook(lambda module, args, output: decoder_passes.append(1))
    prompt = torch.tensor([[2, 40, 41, 42, 43]])
    out = model.generate(prompt)
    answer = out.sequences.shape[-1] - prompt.shape[-1]
    assert answer in (4, 8, 12)  # whole canvases of 4; fewer than 3 only if a canvas held an EOS
    assert len(decoder_passes) == 2 * (answer // 4)  # max_denoising_steps per canvas


# -- batches and long prompts ------------------------------------------------------------------------------------


@needs_diffusion_gemma
def test_left_padded_batch_and_chunked_prompts_give_each_row_its_own_answer(tiny_gemma_dir):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(tiny_gemma_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    texts = [
        "The report says that the program",
        "Hi",
        (REPO / "longllada" / "data" / "gov_report_001.txt").read_text()[:300],
    ]
    canvas = torch.randint(10, 500, (1, 8), generator=torch.Generator().manual_seed(1))
    alone = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids
        alone.append(model.generate(ids, decoder_input_ids=canvas.clone(), **DETERMINISTIC).sequences[0, -8:])
    assert len({tuple(a.tolist()) for a in alone}) == 3  # the answer depends on the prompt
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    assert batch.attention_mask[1, 0] == 0  # left padding
    padded = model.generate(
        batch.input_ids, attention_mask=batch.attention_mask, decoder_input_ids=canvas.repeat(3, 1), **DETERMINISTIC
    )
    chunked = dg.generate(
        model, batch.input_ids, batch.attention_mask, prefill_chunk_size=7, decoder_input_ids=canvas.repeat(3, 1),
        **DETERMINISTIC,
    )  # fmt: skip
    assert batch.input_ids.shape[-1] > 7 * 10 > model.config.text_config.sliding_window  # chunks cross the window
    for row in range(3):
        assert torch.equal(padded.sequences[row, -8:], alone[row])
        assert torch.equal(chunked.sequences[row, -8:], alone[row])


@needs_diffusion_gemma
def test_encode_prompt_refuses_a_mask_of_the_wrong_length(tiny_gemma_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_gemma_dir)
    with pytest.raises(ValueError, match=r"attention_mask covers 5 positions; it must cover .* 0 \+ 6"):
        dg.encode_prompt(model, torch.ones(1, 6, dtype=torch.long), torch.ones(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"chunk_size=0 is not allowed"):
        dg.encode_prompt(model, torch.ones(1, 6, dtype=torch.long), chunk_size=0)


def test_there_is_no_chunk_perplexity_and_the_reason_is_given():
    with pytest.raises(ValueError, match=r"uniform-state diffusion model without a mask token"):
        dg.chunk_perplexity(None, [1, 2], [3, 4])


# -- the tiny folder -------------------------------------------------------------------------------------------


@needs_diffusion_gemma
def test_tiny_folder_loads_with_transformers_alone(tiny_gemma_dir, run_isolated):
    files = sorted(p.name for p in tiny_gemma_dir.iterdir())
    assert not [name for name in files if name.endswith(".py")]  # native: no remote code
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= set(files)
    code = f"""
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer
model = AutoModelForImageTextToText.from_pretrained({str(tiny_gemma_dir)!r})
tokenizer = AutoTokenizer.from_pretrained({str(tiny_gemma_dir)!r})
chat = tokenizer.apply_chat_template([{{"role": "user", "content": "Hello"}}], add_generation_prompt=True, tokenize=False)
ids = tokenizer(chat, add_special_tokens=False, return_tensors="pt").input_ids
out = model.generate(ids, max_denoising_steps=2)
print(type(model).__name__, model.config.canvas_length, out.sequences.shape[-1] - ids.shape[-1])
print(repr(chat))
"""
    lines = run_isolated(code).strip().splitlines()
    assert lines[0] == "DiffusionGemmaForBlockDiffusion 8 8"  # one canvas, the folder's max_new_tokens
    assert lines[1] == repr("<bos><|turn>user\nHello<turn|>\n<|turn>model\n<|channel>thought\n<channel|>")


@needs_diffusion_gemma
def test_tiny_folder_has_gemma_tokens_and_the_checkpoints_sampler(tiny_gemma_dir):
    config = json.loads((tiny_gemma_dir / "config.json").read_text())
    text = config["text_config"]
    assert config["model_type"] == "diffusion_gemma" and config["architectures"] == ["DiffusionGemmaForBlockDiffusion"]
    assert text["layer_types"] == [dg.SLIDING_ATTENTION, dg.FULL_ATTENTION]
    assert text["rope_parameters"][dg.FULL_ATTENTION]["rope_type"] == "proportional"
    assert (text["pad_token_id"], text["eos_token_id"], text["bos_token_id"]) == (0, 1, 2)
    assert config["image_token_id"] < text["vocab_size"]
    generation = json.loads((tiny_gemma_dir / "generation_config.json").read_text())
    assert generation["max_denoising_steps"] == 48 and generation["sampler_config"]["entropy_bound"] == 0.1
    assert (generation["t_min"], generation["t_max"], generation["max_new_tokens"]) == (0.4, 0.8, 8)


@needs_diffusion_gemma
def test_tiny_builder_never_overwrites_files_it_did_not_write(tmp_path):
    from longllada.tiny_diffusion_gemma import build_tiny_diffusion_gemma

    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="already holds files that tiny-model did not write"):
        build_tiny_diffusion_gemma(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    with pytest.raises(ValueError, match=r"global_head_dim=15 is not allowed; allowed: an even number"):
        build_tiny_diffusion_gemma(tmp_path / "odd", global_head_dim=15)


# -- the benchmark's model ---------------------------------------------------------------------------------------


@needs_diffusion_gemma
def test_benchmark_model_is_built_on_meta_with_ties_and_buffers_as_transformers_builds_them():
    spec = importlib.util.spec_from_file_location(
        "diffusion_gemma_bench", REPO / "benchmarks" / "diffusion_gemma_bench.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from transformers import DiffusionGemmaForBlockDiffusion

    config = bench.model_config(tiny=True)
    model = bench.build_random_model(config, torch.device("cpu"), torch.bfloat16)
    reference = DiffusionGemmaForBlockDiffusion(config)
    assert len({p.data_ptr() for p in model.parameters()}) == len(list(reference.parameters()))
    encoder_experts = model.model.encoder.language_model.layers[0].experts.gate_up_proj
    assert encoder_experts is model.model.decoder.layers[0].experts.gate_up_proj  # tied, allocated once
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    expected = dict(reference.named_buffers())
    for name, buffer in model.named_buffers():
        assert buffer.dtype == expected[name].dtype and torch.equal(buffer, expected[name]), name
    out = model.generate(torch.randint(10, 500, (1, 20)), max_new_tokens=8, max_denoising_steps=1)
    assert out.sequences.shape == (1, 28)
