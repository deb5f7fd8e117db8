"""The tiny-model builder and the tokenizer : `longllada tiny-model` writes a folder that
transformers loads as remote code, official-format folders load with our code, the tokenizer has LLaDA's
special tokens and chat template and round-trips on the installed transformers (the suite runs on 4.46 and 5.x).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_isolated
from safetensors.torch import load_file
from transformers import AutoTokenizer

from longllada.tiny_model import MARKER, build_tiny_model, official_state_dict
from longllada.tokenizer import build_tokenizer, save_tokenizer
from modeling_longllada import REMOTE_CODE_FILES, LongLLaDAConfig, LongLLaDAModelLM
from modeling_longllada.configuration_longllada import OFFICIAL_DEFAULTS
from modeling_longllada.families import FAMILIES, LLADA, import_object

OUR_CODE = sorted(REMOTE_CODE_FILES)
TEXT = (REPO / "longllada" / "data" / "gov_report_001.txt").read_text(encoding="utf-8")

# Loads FOLDER through the Auto classes as remote code; prints loading info, logits facts and config facts.
LOAD_AND_RUN = """
import json, sys, torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
folder = {folder!r}
model, info = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
ids = tokenizer(["The aircraft inventory"], return_tensors="pt")["input_ids"]
ids = torch.cat([ids, torch.full((1, 3), model.config.mask_token_id)], dim=1)
with torch.no_grad():
    logits = model(ids).logits
print("RESULT " + json.dumps({{
    "module": type(model).__module__, "class": type(model).__name__,
    "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
    "mismatched": [str(m) for m in info["mismatched_keys"]],
    "shape": list(logits.shape), "finite": bool(torch.isfinite(logits).all()),
    "logits_sum": float(logits.double().abs().sum()),
    "max_position_embeddings": model.config.max_position_embeddings,
}}), flush=True)
"""


def load_in_isolation(folder: Path) -> dict:
    # transformers 5 writes a progress bar to stdout: take the marked line
    out = run_isolated(LOAD_AND_RUN.format(folder=str(folder)))
    return json.loads(next(line[7:] for line in out.splitlines()[::-1] if line.startswith("RESULT ")))


def cli(*argv: str) -> subprocess.CompletedProcess:
    """`python -m longllada ARGV` from the checkout (the console script may not be installed)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "longllada", *argv], env=env, capture_output=True, text=True, timeout=300
    )


# -- the command and the folder ---------------------------------------------------------------------------------


def test_cli_writes_a_folder_that_loads_as_remote_code(tmp_path):
    out = tmp_path / "cli-tiny"
    result = cli("tiny-model", str(out), "--layers", "1", "--d-model", "32", "--heads", "4", "--kv-heads", "2",
                 "--mlp", "48", "--vocab-size", "300", "--train-length", "64", "--rope-theta", "500", "--seed", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    assert set(OUR_CODE) <= names and "__init__.py" not in names
    for name in OUR_CODE:  # the remote code is the project's, byte for byte
        assert (out / name).read_bytes() == (REPO / "modeling_longllada" / name).read_bytes()

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "longllada" and config["architectures"] == ["LongLLaDAModelLM"]
    assert config["auto_map"] == LLADA.auto_map
    assert (config["n_layers"], config["d_model"], config["n_heads"], config["n_kv_heads"]) == (1, 32, 4, 2)
    assert (config["mlp_hidden_size"], config["max_sequence_length"], config["rope_theta"]) == (48, 64, 500.0)
    assert config["vocab_size"] == config["embedding_size"] and config["vocab_size"] % 64 == 0
    for field in OFFICIAL_DEFAULTS:
        assert field in config, field

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert config["vocab_size"] >= len(tokenizer) > config["vocab_size"] - 64
    assert (config["mask_token_id"], config["eos_token_id"], config["pad_token_id"], config["bos_token_id"]) == (
        tokenizer.mask_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id)  # fmt: skip

    loaded = load_in_isolation(out)
    assert loaded["module"].startswith("transformers_modules.") and loaded["class"] == "LongLLaDAModelLM"
    assert loaded["missing"] == [] and loaded["unexpected"] == [] and loaded["mismatched"] == []
    assert loaded["finite"] and loaded["shape"][-1] == config["vocab_size"]
    assert loaded["max_position_embeddings"] == 64


def test_cli_names_a_bad_option(tmp_path):
    result = cli("tiny-model", str(tmp_path / "bad"), "--d-model", "30", "--heads", "4")
    assert result.returncode == 2
    assert "d_model=30" in result.stderr and "n_heads=4" in result.stderr


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(d_model=0), ["d_model", "0", "positive"]),
        (dict(n_heads=3), ["d_model=64", "n_heads=3"]),
        (dict(n_kv_heads=3), ["n_heads=4", "n_kv_heads=3"]),
        (dict(vocab_size=100), ["vocab_size", "100", "262"]),
        (dict(rope_theta=1.0), ["rope_theta", "1.0", "> 1"]),
        (dict(rope_scaling={"type": "longrope", "long_factor": [1.0], "factor": 2}), ["rope_scaling.long_factor", "8"]),
    ],
)
def test_bad_sizes_raise_named_errors(tmp_path, kwargs, words):
    with pytest.raises(ValueError) as err:
        build_tiny_model(tmp_path / "bad", texts=[TEXT[:2000]], **kwargs)
    for word in words:
        assert word in str(err.value)


def test_weights_have_the_official_keys_and_shapes(tiny_model_dir):
    config = LongLLaDAConfig.from_pretrained(tiny_model_dir)
    state = load_file(tiny_model_dir / "model.safetensors")
    d, v, mlp, kv = config.d_model, config.embedding_size, config.mlp_hidden_size, config.n_kv_heads * config.head_dim
    expected = {"model.transformer.wte.weight": (v, d), "model.transformer.ln_f.weight": (d,),
                "model.transformer.ff_out.weight": (v, d)}  # fmt: skip
    for i in range(config.n_layers):
        shapes = {"attn_norm": (d,), "q_proj": (d, d), "k_proj": (kv, d), "v_proj": (kv, d), "attn_out": (d, d),
                  "ff_norm": (d,), "ff_proj": (mlp, d), "up_proj": (mlp, d), "ff_out": (d, mlp)}  # fmt: skip
        expected.update({f"model.transformer.blocks.{i}.{name}.weight": shape for name, shape in shapes.items()})
    assert {k: tuple(t.shape) for k, t in state.items()} == expected
    assert all(t.dtype == torch.float32 for t in state.values())
    assert torch.equal(state["model.transformer.ln_f.weight"], torch.ones(d))
    assert 0.015 < state["model.transformer.wte.weight"].std().item() < 0.025
    # the model class has exactly these parameters (no buffers or extras persisted)
    assert set(LongLLaDAModelLM(config).state_dict()) == set(expected)
    # seeded: the same seed gives the same tensors, another seed others
    again, other = official_state_dict(config, seed=0), official_state_dict(config, seed=1)
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert not torch.equal(state["model.transformer.wte.weight"], other["model.transformer.wte.weight"])


def test_generation_config_holds_the_sampler_defaults(tiny_model_dir, tiny_tokenizer):
    settings = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert settings["block_length"] == 32 and settings["steps"] is None
    assert settings["remasking"] == "low_confidence" and settings["cache"] == "none"
    assert settings["do_sample"] is False and settings.get("temperature", 0.0) == 0.0
    assert settings["mask_token_id"] == tiny_tokenizer.mask_token_id
    assert settings["eos_token_id"] == settings["pad_token_id"] == tiny_tokenizer.eos_token_id
    model = LongLLaDAModelLM.from_pretrained(tiny_model_dir)
    assert model.generation_config.block_length == 32 and model.generation_config.remasking == "low_confidence"


def test_rope_scaling_is_written_to_the_config(tmp_path):
    out = build_tiny_model(
        tmp_path / "ntk", texts=[TEXT[:5000]], vocab_size=300, rope_scaling={"type": "ntk", "factor": 4}
    )
    config = json.loads((out / "config.json").read_text())
    assert config["rope_scaling"] == {"type": "ntk", "factor": 4}
    assert LongLLaDAConfig.from_pretrained(out).rope_scaling_factor == 4.0


def test_official_format_folder_loads_with_our_code(tiny_model_dir, tmp_path):
    """Official config.json fields (model_type llada, architectures LLaDAModelLM) with auto_map pointing at our
    files: our code reads the official keys with nothing missing or unexpected, and gives our folder's logits."""
    folder = tmp_path / "official-format"
    shutil.copytree(tiny_model_dir, folder)
    ours = json.loads((tiny_model_dir / "config.json").read_text())
    official = {k: ours[k] for k in OFFICIAL_DEFAULTS}
    official.update(model_type="llada", architectures=["LLaDAModelLM"], auto_map=LLADA.auto_map, torch_dtype="float32")
    (folder / "config.json").write_text(json.dumps(official, indent=2))

    loaded, reference = load_in_isolation(folder), load_in_isolation(tiny_model_dir)
    assert loaded["missing"] == [] and loaded["unexpected"] == [] and loaded["mismatched"] == []
    assert loaded["finite"] and loaded["logits_sum"] == pytest.approx(reference["logits_sum"], rel=1e-6)


# The chat template each family's tokenizer renders for one user turn with the generation prompt.
CHATS = {
    "dream": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\n",
    "lladamoe": "<role>HUMAN</role>Hi<|role_end|><role>ASSISTANT</role>",
    "llada2": "<role>SYSTEM</role>detailed thinking off<|role_end|><role>HUMAN</role>Hi<|role_end|>"
    "<role>ASSISTANT</role>",
}


# A native family's folder is written by transformers' own class (tests/test_diffusion_gemma_tools.py runs it).
@pytest.mark.parametrize("family", [f for f in FAMILIES if f is not LLADA and not f.native], ids=lambda f: f.name)
def test_cli_writes_a_folder_of_every_other_family_that_loads_as_remote_code(tmp_path, family):
    """Every family of the registry besides LLaDA (the default, above): the entry's config fields for the sizes,
    its official keys and shapes, its tokenizer's special tokens and chat template, loaded as remote code."""
    out = tmp_path / f"cli-{family.name}"
    result = cli("tiny-model", str(out), "--arch", family.name, "--layers", "2", "--d-model", "32", "--heads", "4",
                 "--kv-heads", "2", "--vocab-size", "300", "--train-length", "128", "--rope-theta", "1e6")  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [family.architecture] and config.get("auto_map", {}) == family.auto_map
    parsed = family.config_cls().from_pretrained(out)
    assert (parsed.head_dim, parsed.trained_length, parsed.rope_theta) == (8, 128, 1e6)
    for name in [] if family.native else OUR_CODE:
        assert (out / name).read_bytes() == (REPO / "modeling_longllada" / name).read_bytes()

    spec, tokenizer = family.tokenizer, AutoTokenizer.from_pretrained(out)
    assert (tokenizer.mask_token, tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        spec.mask_token, spec.bos_token, spec.eos_token, spec.pad_token)  # fmt: skip
    assert (config["mask_token_id"], config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (
        tokenizer.mask_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)  # fmt: skip
    for token in spec.special_tokens:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]
    assert (tokenizer("Hello there")["input_ids"][0] == tokenizer.bos_token_id) == spec.add_bos
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == CHATS[family.name]

    state = load_file(out / "model.safetensors")
    assert {k: tuple(v.shape) for k, v in state.items()} == import_object(family.weight_shapes)(parsed)
    assert set(state) == set(family.model_cls()(parsed).state_dict())
    loaded = load_in_isolation(out)
    assert loaded["class"] == family.architecture and (family.native or loaded["module"].startswith("transformers_"))
    assert loaded["missing"] == [] and loaded["unexpected"] == [] and loaded["mismatched"] == []
    assert loaded["finite"] and loaded["shape"][-1] == config["vocab_size"]


def test_tiny_model_never_overwrites_files_it_did_not_write(tmp_path):
    foreign = tmp_path / "someone-elses"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"mine": true}')
    with pytest.raises(ValueError, match="did not write.*config.json"):
        build_tiny_model(foreign, texts=[TEXT[:3000]], vocab_size=300)
    assert (foreign / "config.json").read_text() == '{"mine": true}' and len(list(foreign.iterdir())) == 1

    ours = build_tiny_model(tmp_path / "ours", texts=[TEXT[:3000]], vocab_size=300)
    marker = json.loads((ours / MARKER).read_text())
    assert marker["written_by"] == "longllada tiny-model" and "config.json" in marker["files"]
    (ours / "notes.txt").write_text("kept")
    again = build_tiny_model(ours, arch="dream", texts=[TEXT[:3000]], vocab_size=300)  # our own folder: replaced
    assert json.loads((again / "config.json").read_text())["architectures"] == ["DreamModel"]
    assert (ours / "notes.txt").read_text() == "kept"  # files it did not write are left alone

    # a file of ours that the marker does not list (written by someone else since) is refused
    marker = json.loads((ours / MARKER).read_text())
    marker["files"].remove("tokenizer.json")
    (ours / MARKER).write_text(json.dumps(marker))
    before = (ours / "config.json").read_bytes()
    with pytest.raises(ValueError, match="tokenizer.json"):
        build_tiny_model(ours, texts=[TEXT[:3000]], vocab_size=300)
    assert (ours / "config.json").read_bytes() == before  # nothing was written

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = cli("tiny-model", str(a_file))
    assert result.returncode == 2 and a_file.read_text() == "x"
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("longllada tiny-model: error:")
    result = cli("tiny-model", str(foreign))
    assert result.returncode == 2 and "did not write" in result.stderr


def test_the_folder_is_given_with_out_as_everywhere_else(tmp_path, capsys):
    """`tiny-model --out DIR` (as every other command names its output), the positional form still accepted; both
    at once must agree, and a missing folder is one error line."""
    from longllada.cli import main

    small = ["--layers", "1", "--d-model", "32", "--vocab-size", "300"]
    assert main(["tiny-model", "--arch", "dream", "--out", str(tmp_path / "a"), *small]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model_type"] == "longllada_dream"
    assert main(["tiny-model", str(tmp_path / "b"), *small]) == 0 and (tmp_path / "b" / "config.json").is_file()
    assert main(["tiny-model", str(tmp_path / "b"), "--out", str(tmp_path / "b"), *small]) == 0
    capsys.readouterr()
    assert main(["tiny-model", str(tmp_path / "c"), "--out", str(tmp_path / "d"), *small]) == 2
    assert "disagree" in capsys.readouterr().err and not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
    assert main(["tiny-model", *small]) == 2
    err = capsys.readouterr().err
    assert err.startswith("longllada tiny-model: error:") and "--out DIR" in err and err.count("\n") == 1
    assert main(["tiny-model", "--arch", "gpt", "--out", str(tmp_path / "e")]) == 2
    assert "'llada', 'dream'" in capsys.readouterr().err


def test_isolated_process_cannot_import_the_project():
    out = run_isolated(
        "import importlib.util as u; print([u.find_spec(m) is None for m in ('longllada', 'modeling_longllada')])"
    )
    assert out.strip() == "[True, True]"


# -- the tokenizer ------------------------------------------------------------------------------------------------


def test_tokenizer_has_llada_special_tokens_and_adds_bos(tiny_tokenizer):
    tok = tiny_tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.mask_token) == (
        "<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|mdm_mask|>")  # fmt: skip
    assert set(LLADA.tokenizer.special_tokens) <= set(tok.all_special_tokens)
    for token in LLADA.tokenizer.special_tokens:  # each one is a single, unsplittable id
        assert tok(token, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(token)]
    text = "The special code of the harbor is amber.\n\nQuestion: What is it?\nAnswer: amber"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok(text, add_special_tokens=False)["input_ids"] == ids[1:]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (
        tok.decode(tok("x\u00e9\u4e2d\U0001f600 y", add_special_tokens=False)["input_ids"])
        == "x\u00e9\u4e2d\U0001f600 y"
    )
    # the answer word after "Answer:" is the same ids in every context (no prefix space is added)
    answer = tok(" amber", add_special_tokens=False)["input_ids"]
    assert ids[-len(answer) :] == answer


def test_chat_template_is_llama3_style(tiny_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  Hello  "}]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tiny_tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]  # one BOS, from the template
    assert ids.count(tiny_tokenizer.bos_token_id) == 1


def test_tokenizer_is_deterministic_and_round_trips(tmp_path):
    texts = [TEXT[:20000]]
    first, second = build_tokenizer(texts, vocab_size=400), build_tokenizer(texts, vocab_size=400)
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    save_tokenizer(first, tmp_path)
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    # loadable by every supported transformers, whichever wrote it
    assert saved["tokenizer_class"] == "PreTrainedTokenizerFast" and "chat_template" in saved
    assert saved["additional_special_tokens"] == ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    sample = TEXT[20000:21000]
    assert loaded(sample)["input_ids"] == first(sample)["input_ids"]
    assert loaded.chat_template == first.chat_template and loaded.mask_token_id == first.mask_token_id
    assert len(loaded) == len(first) <= 400


def test_tokenizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 262.*got 10"):
        build_tokenizer(["text"], vocab_size=10)
    with pytest.raises(ValueError, match="texts must be an iterable of strings"):
        build_tokenizer("just one string")


# -- the training data and command of the shipped twins --------------------------------------------------------


def test_training_rows_have_the_needle_format():
    import random

    from longllada.twins.data import DocumentBuilder
    from longllada.twins.needles import is_held_out

    tokenizer = build_tokenizer([TEXT], vocab_size=1024)
    builder = DocumentBuilder(tokenizer, TEXT, 128, random.Random(0), sft_response_tokens=32)
    eos = tokenizer.eos_token_id
    for kind in ("report", "retrieval", "sft"):
        for _ in range(20):
            ids, region = builder.row(kind)
            assert len(ids) == len(region) == 128, kind
            if kind == "sft":  # prompt unscored, then " keyword." and EOS padding, at most 32 tokens
                start = region.index(True)
                assert all(region[start:]) and 0 < 128 - start <= 32
                prompt, response = tokenizer.decode(ids[:start]), tokenizer.decode(ids[start:])
                assert prompt.endswith("\nAnswer:") and response.endswith(tokenizer.eos_token)
                keyword = response.split(tokenizer.eos_token)[0][1:-1]
                assert f" is {keyword}." in prompt and not is_held_out(keyword)
                assert ids[-1] == eos
            else:
                assert all(region)
    held_out = DocumentBuilder(tokenizer, TEXT, 128, random.Random(1), held_out=True)
    assert all(is_held_out(held_out.needles().keyword) for _ in range(50))


def test_piece_keywords_cover_the_vocabulary():
    import random

    from longllada.twins.data import DocumentBuilder, vocabulary_pieces
    from longllada.twins.needles import NeedleGenerator, is_held_out

    tokenizer = build_tokenizer([TEXT], vocab_size=1024)
    starts, continuations = vocabulary_pieces(tokenizer)
    assert starts and continuations and all(p.isalpha() for p in starts + continuations)
    builder = DocumentBuilder(tokenizer, TEXT, 128, random.Random(0), piece_keyword_share=1.0, capitalize_share=0.0)
    first_tokens = set()
    for _ in range(600):
        keyword = builder.needles.keyword()
        assert not is_held_out(keyword) and any(keyword.startswith(p) for p in starts), keyword
        first_tokens.add(tokenizer(" " + keyword, add_special_tokens=False)["input_ids"][0])
    # uniform draws over the word starts: most of them turn up as a keyword's first token within 600 draws
    start_ids = {tokenizer(" " + p, add_special_tokens=False)["input_ids"][0] for p in starts}
    assert len(first_tokens & start_ids) > 0.5 * min(len(start_ids), 600)
    with pytest.raises(ValueError, match="piece_keyword_share > 0 needs the tokenizer's pieces"):
        NeedleGenerator(TEXT, random.Random(0), piece_keyword_share=0.5)


def test_batch_stream_with_worker_processes_is_reproducible():
    import itertools
    import random

    import torch

    from longllada.twins.data import DocumentBuilder, batch_stream
    from longllada.twins.settings import TrainSettings

    tokenizer = build_tokenizer([TEXT], vocab_size=1024)
    settings = TrainSettings(train_length=96, batch_size=3, data_workers=2, short_batch_share=0.5)

    def first_batches(workers: int) -> list:
        builder = DocumentBuilder(tokenizer, TEXT, 96, random.Random(0), sft_response_tokens=32)
        stream = batch_stream(builder, replace(settings, data_workers=workers))
        return list(itertools.islice(stream, 6))

    one, again, threaded = first_batches(2), first_batches(2), first_batches(0)
    assert all(torch.equal(a.input_ids, b.input_ids) and a.kinds == b.kinds for a, b in zip(one, again))
    assert all(b.input_ids.shape[0] == 3 and b.loss_region.shape == b.input_ids.shape for b in one)
    # the two workers have streams of their own: batches 0 and 1 differ, and differ from the thread's stream
    assert not torch.equal(one[0].input_ids, one[1].input_ids)
    assert not all(
        torch.equal(a.input_ids, b.input_ids) for a, b in zip(one, threaded) if a.input_ids.shape == b.input_ids.shape
    )
    with pytest.raises(ValueError, match="data_workers must be an integer >= 0"):
        replace(settings, data_workers=-1).check()


def test_train_tiny_writes_both_twins(tmp_path):
    from longllada.twins.cli import main

    out, logs = tmp_path / "models", tmp_path / "logs"
    argv = ["--out-dir", str(out), "--log-dir", str(logs), "--d-model", "32", "--layers", "1", "--heads", "2",
            "--mlp", "64", "--vocab-size", "512", "--train-length", "96", "--steps", "3", "--batch-size", "4",
            "--warmup", "1", "--log-every", "1", "--probe-every", "3", "--eval-prompts", "2", "--eval-multiples", "1",
            "--eval-sets", "held-out"]  # fmt: skip
    assert main(argv) == 0
    for twin, name in (("diffusion", "tiny-llada-diffusion"), ("ar", "tiny-llama-ar")):
        folder = out / name
        records = [json.loads(line) for line in (logs / f"{twin}.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if "step" in r and "loss" in r] == [1, 2, 3]
        assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
        summary = json.loads((logs / f"{twin}_summary.json").read_text())
        assert [r["prompt_length"] for r in summary["retrieval"]] == [64, 96]
        card = (folder / "README.md").read_text()
        assert "longllada train-tiny" in card and "| held-out | 96 | none |" in card
        assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
            p.name for p in folder.iterdir()
        }
    assert set(OUR_CODE) <= {p.name for p in (out / "tiny-llada-diffusion").iterdir()}
    assert (logs / "loss_curves.png").is_file()


SHIPPED = REPO / "longllada" / "models"


@pytest.mark.skipif(not (SHIPPED / "tiny-llada-diffusion").is_dir(), reason="the trained twins are not shipped yet")
def test_shipped_twins_load_as_users_load_them():
    diffusion, ar = SHIPPED / "tiny-llada-diffusion", SHIPPED / "tiny-llama-ar"
    for name in OUR_CODE:  # the shipped remote code is the project's current code
        assert (diffusion / name).read_bytes() == (REPO / "modeling_longllada" / name).read_bytes(), (
            f"{diffusion / name} is stale: run longllada.tiny_model.copy_remote_code on the folder"
        )
    code = f"""
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
facts = {{}}
for folder in ({str(diffusion)!r}, {str(ar)!r}):
    model, info = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    ids = tokenizer(["The aircraft"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    facts[folder] = {{"class": type(model).__name__, "dtype": str(model.dtype),
                      "keys": sorted(info["missing_keys"]) + sorted(info["unexpected_keys"]),
                      "finite": bool(torch.isfinite(logits).all()), "mask": tokenizer.mask_token}}
print("RESULT " + json.dumps(facts), flush=True)
"""
    out = run_isolated(code)
    facts = json.loads(next(line[7:] for line in out.splitlines()[::-1] if line.startswith("RESULT ")))
    assert facts[str(diffusion)]["class"] == "LongLLaDAModelLM" and facts[str(ar)]["class"] == "LlamaForCausalLM"
    for fact in facts.values():
        assert fact["keys"] == [] and fact["finite"] and fact["dtype"] == "torch.float32"
        assert fact["mask"] == "<|mdm_mask|>"
    config = json.loads((diffusion / "config.json").read_text())
    assert config["auto_map"] == LLADA.auto_map and config["max_sequence_length"] == 256
    assert json.loads((ar / "config.json").read_text())["rope_theta"] == config["rope_theta"]
    assert (diffusion / "tokenizer.json").read_bytes() == (ar / "tokenizer.json").read_bytes()
