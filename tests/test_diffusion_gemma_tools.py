"""DiffusionGemma in every tool, through its family entry (``modeling_longllada.families.DIFFUSION_GEMMA``) and
transformers' own classes: ``tiny-model``, ``--model longllada`` (NIAH and RULER with NTK on the full-attention
layers, the sampler's arguments under transformers' names), ``ppl`` (refused, with the reason), ``upload`` (config
and weights, NTK branches that transformers alone reads, a card whose demos run), and on a transformers without the
model, one line naming the version each tool needs.

The tiny folder is the test run's (``tiny_gemma_dir``: 2 layers, canvas 8, trained window 256); runs keep to one
canvas and two denoising steps.
"""

from __future__ import annotations

import filecmp
import importlib.metadata
import json
import os
import re
from pathlib import Path

import pytest
import torch

from longllada.cli import main
from modeling_longllada.families import DIFFUSION_GEMMA

REPO = Path(__file__).resolve().parents[1]
needs_diffusion_gemma = pytest.mark.skipif(
    not DIFFUSION_GEMMA.is_supported(),
    reason=f"DiffusionGemma needs transformers >= {DIFFUSION_GEMMA.min_transformers}",
)
# The released 26B-A4B's numbers that the law reads: full-attention layers' θ, head width, rotated dimensions.
RELEASED_TRAINED, RELEASED_THETA, RELEASED_WIDTH, RELEASED_ROTATED = 262144, 1e6, 512, 128


def one_error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    """The one ``longllada COMMAND: error:`` line of a failed command (and nothing else on stderr)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"longllada {command}: error: "), lines
    return lines[0]


def minimal_folder(folder: Path) -> Path:
    """A folder whose config.json says DiffusionGemma and nothing more (no weights): what every tool reads first."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "diffusion_gemma", "text_config": {}}))
    return folder


# -- transformers without DiffusionGemma, and perplexity -----------------------------------------------------------


def test_a_transformers_without_the_model_is_named_in_one_line_by_every_tool(tmp_path, capsys, monkeypatch):
    """On transformers 4.46 (or one that says it is 4.46) loading, evaluating, building and publishing a
    DiffusionGemma folder each stop in one line naming the version the family needs, before anything is written."""
    if DIFFUSION_GEMMA.is_supported():
        installed = importlib.metadata.version
        monkeypatch.setattr(
            importlib.metadata, "version", lambda name: "4.46.3" if name == "transformers" else installed(name)
        )
    version = re.escape(importlib.metadata.version("transformers"))
    expected = rf"DiffusionGemma needs transformers >= 5\.25; installed: {version} \(pip install -U"
    folder = minimal_folder(tmp_path / "gemma")
    from longllada.loading import load_config, load_model

    for call in (lambda: load_model(folder), lambda: load_config(folder)):
        with pytest.raises(ValueError, match=rf"^{expected}"):
            call()
    lm_eval_model = pytest.importorskip("longllada.lm_eval_model")
    with pytest.raises(ValueError, match=rf"^{expected}"):
        lm_eval_model.check_model_args({"pretrained": str(folder)})
    assert main(["tiny-model", "--out", str(tmp_path / "tiny"), "--arch", "diffusion_gemma"]) == 2
    assert re.search(expected, one_error_line(capsys, "tiny-model")) and not (tmp_path / "tiny").exists()
    out = tmp_path / "built"
    assert main(["upload", str(folder), "--repo-id", "me/gemma", "--dry-run", "--out", str(out)]) == 2
    assert re.search(expected, one_error_line(capsys, "upload")) and not out.exists()


def test_ppl_refuses_with_the_reason_before_anything_loads(tmp_path, capsys):
    """No perplexity curve: one line with the family's reason, before a tokenizer or weight is read (the folder has
    neither) and without a results file; on every transformers."""
    folder = minimal_folder(tmp_path / "gemma")
    out = tmp_path / "ppl.jsonl"
    assert main(["ppl", "--model", str(folder), "--out", str(out), "--no-progress"]) == 2
    line = one_error_line(capsys, "ppl")
    assert f"--model {str(folder)!r}: DiffusionGemma models have no likelihood: " in line
    assert "uniform-state diffusion model without a mask token" in line and not out.exists()


# -- tiny-model ----------------------------------------------------------------------------------------------------


@needs_diffusion_gemma
def test_tiny_model_builds_it_through_the_entry_from_the_generic_sizes(tmp_path, capsys):
    from transformers import AutoModelForImageTextToText

    from longllada.loading import load_model

    out = tmp_path / "cli"
    assert main(["tiny-model", "--out", str(out), "--arch", "diffusion_gemma", "--layers", "1", "--d-model", "32",
                 "--heads", "2", "--kv-heads", "1", "--mlp", "48", "--vocab-size", "300",
                 "--train-length", "128"]) == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    text = config["text_config"]
    assert config["model_type"] == "diffusion_gemma" and "auto_map" not in config and not list(out.glob("*.py"))
    sizes = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
             "intermediate_size", "moe_intermediate_size", "max_position_embeddings", "sliding_window")  # fmt: skip
    assert [text[name] for name in sizes] == [1, 32, 2, 1, 16, 48, 16, 128, 8]
    assert text["per_layer_config"]["0"]["head_dim"] == 32  # the full-attention layer: twice the sliding head
    model = load_model(out)  # the one loading path: transformers' own class, no code of ours
    assert type(model) is DIFFUSION_GEMMA.model_cls() and type(model) is type(
        AutoModelForImageTextToText.from_pretrained(out)
    )
    capsys.readouterr()  # the build's progress bars
    assert main(["tiny-model", "--out", str(tmp_path / "theta"), "--arch", "diffusion_gemma", "--rope-theta",
                 "500000"]) == 2  # fmt: skip
    line = one_error_line(capsys, "tiny-model")
    assert "rope_theta=500000.0 (--rope-theta) is not allowed for DiffusionGemma: it has two RoPE bases" in line
    assert not (tmp_path / "theta").exists()


# -- --model longllada ---------------------------------------------------------------------------------------------


@needs_diffusion_gemma
def test_sampler_arguments_are_its_own_and_checked_before_loading(tiny_gemma_dir, tiny_model_dir, tmp_path, capsys):
    lm_eval_model = pytest.importorskip("longllada.lm_eval_model")
    check = lm_eval_model.check_model_args
    family, model_type = check({"pretrained": str(tiny_gemma_dir), "max_denoising_steps": 2, "t_min": 0.1,
                                "t_max": 0.9, "entropy_bound": 0.5, "stability_threshold": 2,
                                "confidence_threshold": 0.01, "canvas_length": 16, "ntk_factor": 4})  # fmt: skip
    assert family is DIFFUSION_GEMMA and model_type == "diffusion_gemma"
    refused = {
        "steps": ("steps=8 does not apply to DiffusionGemma's sampler", "allowed: max_denoising_steps"),
        "max_denoising_steps": ("max_denoising_steps=8 does not apply to LLaDA's sampler", "allowed: steps"),
    }
    for key, words in refused.items():
        pretrained = tiny_gemma_dir if key == "steps" else tiny_model_dir
        with pytest.raises(ValueError) as caught:
            check({"pretrained": str(pretrained), key: 8})
        assert all(word in str(caught.value) for word in words), str(caught.value)
    bad = [
        ({"t_max": 0.3}, "t_max=0.3 with t_min=0.4 is not allowed"),  # the folder's saved t_min
        ({"max_denoising_steps": 0}, "max_denoising_steps=0 is not allowed; allowed: an integer >= 1"),
        ({"canvas_length": 2.5}, "canvas_length=2.5 is not allowed"),
        ({"rope_scaling": "ntk-per-length"}, "caches the prompt's rotated keys"),
        ({"rope_scaling": "yarn:4"}, "type 'yarn' is not supported for DiffusionGemma"),
    ]
    for arguments, words in bad:
        with pytest.raises(ValueError, match=re.escape(words)):
            check({"pretrained": str(tiny_gemma_dir), **arguments})
    # The command line: one line, before the model loads.
    assert main(["eval", "--model", "longllada", "--model_args", f"pretrained={tiny_gemma_dir},steps=8",
                 "--tasks", "longllada_niah", "--output_path", str(tmp_path / "out")]) == 2  # fmt: skip
    assert "does not apply to DiffusionGemma" in one_error_line(capsys, "eval") and not (tmp_path / "out").exists()


@needs_diffusion_gemma
def test_answers_are_seeded_cut_at_the_first_eos_and_as_long_as_asked(tiny_gemma_dir):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from modeling_longllada import diffusion_gemma as dg

    model = AutoModelForImageTextToText.from_pretrained(tiny_gemma_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    batch = tokenizer(["The report says that the program", "Hi"], return_tensors="pt", padding=True)
    assert batch.attention_mask[1, 0] == 0  # left padding
    sampler = dg.DiffusionGemmaSamplerArgs(max_denoising_steps=2)
    pad = tokenizer.pad_token_id
    state = torch.get_rng_state()
    first = dg.generate_answers(model, batch.input_ids, batch.attention_mask, 5, sampler, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    assert first.shape == (2, 5)  # one canvas of 8, cut to what was asked
    assert torch.equal(dg.generate_answers(model, batch.input_ids, batch.attention_mask, 5, sampler, seed=7), first)
    # An EOS: the token at position 2 of row 0 made one; it and all after it become padding, in every row.
    eos = int(first[0, 2])
    model.generation_config.eos_token_id = [eos]
    cut = dg.generate_answers(model, batch.input_ids, batch.attention_mask, 5, sampler, seed=7)
    for row in range(2):
        tokens = first[row].tolist()
        end = tokens.index(eos) if eos in tokens else 5
        assert cut[row].tolist() == tokens[:end] + [pad] * (5 - end)
    # Longer than asked is cut; shorter (every row ended in an earlier canvas) is padded to the length asked.
    assert dg.generate_answers(model, batch.input_ids, batch.attention_mask, 12, sampler, seed=7).shape == (2, 12)


@pytest.mark.e2e
@needs_diffusion_gemma
def test_eval_runs_niah_and_ruler_with_ntk_on_the_full_attention_layers(tiny_gemma_dir, tmp_path):
    """``longllada eval --model longllada`` on a small NIAH grid and a RULER task, batched, with NTK λ = 4 and the
    sampler's arguments: every cell scored, answers as long as the tasks ask, the scaled base read back per layer
    type from the loaded model (full-attention layers θ·4, sliding-window layers unchanged)."""
    import logging
    from unittest import mock

    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("longllada.lm_eval_model")
    logger.addHandler(handler)
    metadata = {"context_lengths": [256, 512], "depths": [0, 100], "num_repeats": 1, "max_seq_lengths": [512],
                "num_samples": 1}  # fmt: skip
    model_args = f"pretrained={tiny_gemma_dir},ntk_factor=4,max_denoising_steps=2,canvas_length=32,batch_classes=1"
    try:
        with mock.patch.dict(os.environ, {"LONGLLADA_LOG_LEVEL": "DEBUG"}):
            code = main(["eval", "--model", "longllada", "--model_args", model_args,
                         "--tasks", "longllada_niah,longllada_ruler_niah_single_1",
                         "--include_path", str(REPO / "lm_eval_tasks"), "--metadata", json.dumps(metadata),
                         "--device", "cpu", "--batch_size", "2", "--log_samples",
                         "--output_path", str(tmp_path)])  # fmt: skip
    finally:
        logger.removeHandler(handler)
    assert code == 0
    (results_file,) = tmp_path.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    niah = results["results"]["longllada_niah"]
    for length in (256, 512):
        for depth in (0, 100):
            assert 0 <= niah[f"score_len{length}_depth{depth},none"] <= 100
    assert 0 <= results["results"]["longllada_ruler_niah_single_1"]["512,none"] <= 1
    config = results["config"]
    assert config["longllada_family"] == "diffusion_gemma" and config["longllada_trained_length"] == 256
    applied, loaded = config["longllada_rope_applied"], config["longllada_rope_loaded"]
    assert applied["scaling"] == "ntk:4" and loaded["scaling"] == "config:ntk:4"
    assert (loaded["factor"], loaded["rope_theta"], loaded["effective_rope_theta"]) == (4.0, 1e6, 4e6)
    assert loaded["rope_theta_by_layer_type"] == {"full_attention": 4e6, "sliding_attention": 1e4}
    timing = [json.loads(m.removeprefix("longllada-timing ")) for m in records if m.startswith("longllada-timing")]
    batches = [t for t in timing if t["event"] == "batch"]
    assert sum(b["rows"] for b in batches) == 5 and max(b["rows"] for b in batches) == 2  # batched
    assert sorted({b["new_tokens"] for b in batches}) == [32, 128]  # NIAH's and RULER's max_gen_toks, exactly
    assert any("sampler overrides {'max_denoising_steps': 2, 'canvas_length': 32}" in m for m in records)
    for samples_file in tmp_path.rglob("samples_*.jsonl"):
        for line in samples_file.read_text().splitlines():
            answer = json.loads(line)["resps"][0][0]
            assert "<pad>" not in answer and "<eos>" not in answer


# -- upload and the model card ---------------------------------------------------------------------------------------

# Runs the card's python blocks in one namespace, as a reader runs a notebook, then reports what loaded.
CARD_DRIVER = """
import json
import torch
from transformers import AutoModelForImageTextToText

report = {{}}
for revision in ("main", "ntk-4"):  # the built branches, loaded by transformers alone
    model = AutoModelForImageTextToText.from_pretrained({out!r} + "/" + revision)
    text = model.config.text_config
    rotary = model.model.decoder.rotary_emb
    output = model.generate(torch.tensor([[2, 40, 41, 42, 43]]), max_new_tokens=8, max_denoising_steps=2)
    report[revision] = {{
        "class": type(model).__module__ + "." + type(model).__name__,
        "theta": {{kind: p["rope_theta"] for kind, p in text.rope_parameters.items()}},
        "full_inv_freq": rotary.full_attention_inv_freq.tolist(),
        "sliding_inv_freq": rotary.sliding_attention_inv_freq.tolist(),
        "answer": list(output.sequences.shape),
    }}
namespace = {{"__name__": "__main__"}}
for i, code in enumerate(json.loads({blocks!r})):
    exec(compile(code, f"<model card block {{i}}>", "exec"), namespace)
    if i == 0:
        report["card_answer"] = [namespace["input_ids"].shape[1], list(namespace["output"].sequences.shape)]
report["card_ntk_theta"] = {{k: p["rope_theta"] for k, p in namespace["model"].config.text_config.rope_parameters.items()}}
print("REPORT", json.dumps(report))
"""
SMALL = {"max_new_tokens=256": "max_new_tokens=8", "max_denoising_steps=48": "max_denoising_steps=2",
         "max_denoising_steps=24": "max_denoising_steps=2", ', revision="ntk-4"': ""}  # fmt: skip


def card_blocks(readme: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", readme, flags=re.DOTALL)


@needs_diffusion_gemma
def test_upload_publishes_config_and_weights_that_transformers_alone_loads(tiny_gemma_dir, tmp_path, run_isolated):
    """``upload --dry-run`` with NTK branches: no code and no auto_map, the weights and generation config as they
    are, the full-attention layers' base scaled in ``config.json`` (sliding layers' unchanged), read back per
    layer type in a fresh process where this project is not importable; there each branch generates, and the
    model card's demos run."""
    out = tmp_path / "built"
    assert main(["upload", str(tiny_gemma_dir), "--repo-id", "me/tiny-gemma", "--rope-scaling", "none",
                 "--rope-scaling", "ntk:4", "--dry-run", "--out", str(out)]) == 0  # fmt: skip
    for revision in ("main", "ntk-4"):
        folder = out / revision
        config = json.loads((folder / "config.json").read_text())
        assert not list(folder.glob("*.py")) and "auto_map" not in config
        assert config["architectures"] == ["DiffusionGemmaForBlockDiffusion"]
        assert filecmp.cmp(tiny_gemma_dir / "model.safetensors", folder / "model.safetensors", shallow=False)
        assert filecmp.cmp(tiny_gemma_dir / "generation_config.json", folder / "generation_config.json")
    scaled = json.loads((out / "ntk-4" / "config.json").read_text())["text_config"]
    assert scaled["rope_parameters"]["full_attention"]["rope_theta"] == 4e6
    assert scaled["rope_parameters"]["sliding_attention"]["rope_theta"] == 1e4
    assert scaled["longllada_rope_scaling"]["trained_rope_theta"] == {"full_attention": 1e6}
    assert "longllada_rope_scaling" not in json.loads((out / "main" / "config.json").read_text())["text_config"]

    readme = (out / "ntk-4" / "README.md").read_text()
    assert "trust_remote_code" not in readme and "custom_code" not in readme and "log_likelihood" not in readme
    assert '| `rope_scaling` of this revision (`ntk-4`) | `{"type": "ntk", "factor": 4}` |' in readme
    assert "| Full-attention layers' RoPE base | 4,000,000 (factor 4 of 1,000,000) |" in readme
    assert "longllada ppl" not in readme and "DiffusionGemma models have no likelihood" in readme
    blocks = card_blocks(readme, "python")
    joined = "\n".join(blocks)
    assert "AutoModelForImageTextToText.from_pretrained(" in joined and "AutoModelForCausalLM" not in joined
    for old in SMALL:
        assert old in joined, old
    for old, new in SMALL.items():
        blocks = [block.replace(old, new) for block in blocks]
    blocks = [block.replace('"me/tiny-gemma"', repr(str(out / "ntk-4"))) for block in blocks]
    stdout = run_isolated(CARD_DRIVER.format(out=str(out), blocks=json.dumps(blocks)))
    report = json.loads(stdout.split("REPORT ", 1)[1].splitlines()[0])

    def inverse_frequencies(theta: float, width: int, rotated: int) -> list[float]:  # transformers' layout
        pairs = torch.arange(0, rotated, 2, dtype=torch.float) / width
        return torch.cat((1.0 / theta**pairs, torch.zeros(width // 2 - rotated // 2))).tolist()

    for revision, full_theta in (("main", 1e6), ("ntk-4", 4e6)):
        loaded = report[revision]
        assert loaded["class"].startswith("transformers.") and loaded["class"].endswith("ForBlockDiffusion")
        assert loaded["theta"] == {"full_attention": full_theta, "sliding_attention": 1e4}
        assert loaded["full_inv_freq"] == pytest.approx(inverse_frequencies(full_theta, 16, 4))
        assert loaded["sliding_inv_freq"] == pytest.approx(inverse_frequencies(1e4, 8, 8))
        assert loaded["answer"] == [1, 5 + 8]
    prompt, shape = report["card_answer"]
    assert shape == [1, prompt + 8]
    # the card's NTK demo on the ntk-4 branch starts from the trained base it records: 1e6 x 2, not 4e6 x 2
    assert report["card_ntk_theta"] == {"full_attention": 2e6, "sliding_attention": 1e4}
    (command,) = [block for block in card_blocks(readme, "bash") if "longllada eval" in block]
    assert "pretrained=me/tiny-gemma,revision=ntk-4,dtype=bfloat16,max_denoising_steps=48" in command


@needs_diffusion_gemma
def test_card_of_the_released_model_says_the_law_gives_no_scaling():
    """The released 26B-A4B's config (no weights needed): the card's NTK table has λ = 1 at every length, and says
    why (critical dimension 396 of 512, beyond the 128 rotated dimensions)."""
    from hub_upload.build import convert_config
    from hub_upload.model_card import ntk_table_rows, render_model_card
    from hub_upload.options import parse_rope_scaling
    from modeling_longllada import diffusion_gemma as dg

    source = {"model_type": "diffusion_gemma", **dg.released_config().to_dict()}
    config = convert_config(source, parse_rope_scaling("ntk-target:512k"))
    rows = ntk_table_rows(config)
    assert {row["factor"] for row in rows} == {1} and rows[0]["length"] == 2 * RELEASED_TRAINED
    readme = render_model_card("me/diffusion-gemma", config, revision="ntk-target-524288")
    assert f"frequencies over d = {RELEASED_WIDTH} dimensions, {RELEASED_ROTATED} of them rotated" in readme
    assert f"θ = {RELEASED_THETA:,.0f}, trained window {RELEASED_TRAINED:,}" in readme
    assert "= 396 ([scaling law]" in readme and "the law asks for no scaling (λ = 1)" in readme
    assert "| 524,288 (512k) | 2 | 1 | 1,000,000 | `1` / `ntk:1` |" in readme
    assert "| Full-attention layers' RoPE base | 1,000,000 (factor 1 of 1,000,000) |" in readme
