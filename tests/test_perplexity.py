"""Perplexity curves: `longllada ppl` for diffusion and causal LMs, resume, rope overrides, `ppl-plot`."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from longllada import cli
from longllada.perplexity import (
    chunk_seed,
    load_model,
    load_text,
    perplexity_curve,
    read_run,
    tokenize_text,
)
from longllada.ppl_plot import TRAINED_LENGTH_GID, plot_curves
from longllada.rope_scaling import causal_rope_theta
from modeling_longllada import LongLLaDAModelLM, ntk_scaling_factor, parse_rope_scaling
from modeling_longllada.rope_longllada import spec_label

REPO = Path(__file__).resolve().parents[1]
LLAMA_THETA = 10000.0
LLAMA_TRAINED = 128


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as in the CLI subprocesses below: the same kernels give bit-identical numbers (and
    two threads on two busy cores are slower, not faster, for models this small)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _save_causal_lm(model, tiny_model_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def llama_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A tiny random LlamaForCausalLM (RoPE, trained length 128) with the tiny model's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=LLAMA_TRAINED, rope_theta=LLAMA_THETA,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return _save_causal_lm(LlamaForCausalLM(config), tiny_model_dir, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def gpt2_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A tiny GPT-2: learned absolute positions (64), so no RoPE and a hard window."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return _save_causal_lm(GPT2LMHeadModel(config), tiny_model_dir, tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def diffusion(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def llama(llama_dir):
    return load_model(llama_dir, device="cpu")


def _ids(loaded, n_tokens: int) -> torch.Tensor:
    """What the curve scores: BOS (when the tokenizer has one) + the first n tokens of the shipped report."""
    tokens = tokenize_text(loaded.tokenizer, load_text(None)[0])[:n_tokens]
    bos = loaded.tokenizer.bos_token_id
    return torch.tensor(([] if bos is None else [bos]) + tokens)


def _ppl_args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["ppl", "--model", str(model_dir), "--out", str(out), "--device", "cpu", "--no-progress", *extra]


# -- diffusion models ----------------------------------------------------------------------------------------


def test_diffusion_curve_is_finite_and_seeded(diffusion, tiny_model_dir, tmp_path):
    kwargs = dict(max_length=100, chunk=20, mc=4, batch_size=2, progress=False)
    first = perplexity_curve(diffusion, out=tmp_path / "a.jsonl", seed=7, **kwargs)
    again = perplexity_curve(diffusion, out=tmp_path / "b.jsonl", seed=7, **kwargs)
    other = perplexity_curve(diffusion, seed=8, **kwargs)

    assert first.lengths == [20, 40, 60, 80, 100]
    assert all(math.isfinite(p) and p > 1 for p in first.ppl)
    assert first.rows == again.rows  # same seed, same numbers
    assert [r["value"] for r in other.rows] != [r["value"] for r in first.rows]
    values = [r["value"] for r in first.rows]
    assert first.ppl[-1] == pytest.approx(math.exp(sum(values) / len(values)))  # exp of the running mean
    meta = read_run(tmp_path / "a.jsonl").meta
    assert meta["kind"] == "diffusion" and meta["estimator"] == "longllada" and meta["chunks"] == 5
    assert meta["trained_length"] == diffusion.model.config.max_sequence_length
    assert read_run(tmp_path / "a.jsonl").rows == first.rows


def test_diffusion_elbo_estimator(diffusion):
    curve = perplexity_curve(diffusion, max_length=60, chunk=20, mc=4, batch_size=4, estimator="elbo", progress=False)
    assert curve.meta["estimator"] == "elbo" and len(curve.rows) == 3
    assert all(math.isfinite(r["value"]) and r["stderr"] >= 0 for r in curve.rows)
    # the per-token bound -log p / L, chunk by chunk, with each chunk's own generator
    model, ids = diffusion.model, _ids(diffusion, 60)
    prefix = len(ids) - 60
    generator = torch.Generator().manual_seed(chunk_seed(0, 1))
    ll, _ = model.log_likelihood(ids[: prefix + 20], ids[prefix + 20 : prefix + 40], 4, 4, 0.0, generator)
    assert curve.rows[1]["value"] == pytest.approx(-ll / 20)


def test_killed_run_resumes_to_the_same_file(tiny_model_dir, tmp_path):
    args = ["--max-length", "640", "--chunk", "16", "--mc", "2", "--batch-size", "2", "--seed", "3"]
    killed, whole = tmp_path / "killed.jsonl", tmp_path / "whole.jsonl"
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "longllada", *_ppl_args(tiny_model_dir, killed, *args)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while not (killed.exists() and killed.read_bytes().count(b"\n") >= 4):  # metadata + 3 chunks
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the ppl subprocess wrote no chunk in time"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    lines_at_kill = killed.read_bytes().count(b"\n")
    assert 4 <= lines_at_kill < 41, "the run should have been stopped midway"

    assert cli.main(_ppl_args(tiny_model_dir, killed, *args)) == 0  # resumes
    assert cli.main(_ppl_args(tiny_model_dir, whole, *args)) == 0  # never interrupted
    assert killed.read_bytes() == whole.read_bytes()
    assert len(read_run(whole).rows) == 40

    # an interruption in the middle of writing a line: the cut line is dropped and recomputed
    reference = whole.read_bytes()
    cut = reference.index(b"\n", len(reference) // 2) - 10
    killed.write_bytes(reference[:cut])
    assert cli.main(_ppl_args(tiny_model_dir, killed, *args)) == 0
    assert killed.read_bytes() == reference


def test_resume_refuses_a_different_run(diffusion, tmp_path):
    out = tmp_path / "run.jsonl"
    perplexity_curve(diffusion, out=out, max_length=40, chunk=20, mc=2, seed=0, progress=False)
    with pytest.raises(ValueError, match=r"seed: file has 0, this run 1.*--overwrite"):
        perplexity_curve(diffusion, out=out, max_length=40, chunk=20, mc=2, seed=1, progress=False)
    perplexity_curve(diffusion, out=out, max_length=40, chunk=20, mc=2, seed=1, overwrite=True, progress=False)
    assert read_run(out).meta["seed"] == 1


def test_a_run_resumes_from_another_folder_of_the_same_files(tiny_model_dir, tmp_path):
    """The same model files in another folder (a moved checkout, a committed file whose model path was made
    relative) continue the run; other files in that folder do not."""
    first, moved, changed = (tmp_path / name for name in ("first", "moved", "changed"))
    for folder in (first, moved, changed):
        shutil.copytree(tiny_model_dir, folder)
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, "rope_theta": 20000.0}))
    out = tmp_path / "run.jsonl"
    args = dict(out=out, max_length=40, chunk=20, mc=1, seed=0, progress=False)
    perplexity_curve(str(first), **args)
    whole = out.read_bytes()
    out.write_bytes(whole[: whole.rindex(b"\n", 0, len(whole) - 1) + 1])  # the last chunk's row lost
    perplexity_curve(str(moved), **args)
    assert out.read_bytes() == whole and read_run(out).meta["model"] == str(first.resolve())
    with pytest.raises(ValueError, match=r"other weights|different run"):
        perplexity_curve(str(changed), **args)


def test_official_llada_config_loads_into_our_class(diffusion, tiny_model_dir, tmp_path):
    # an official-style folder: model_type "llada", auto_map to remote code that is not there (never run)
    official = tmp_path / "official"
    shutil.copytree(tiny_model_dir, official)
    config = json.loads((official / "config.json").read_text())
    config.update(
        model_type="llada",
        architectures=["LLaDAModelLM"],
        auto_map={"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM"},
    )
    (official / "config.json").write_text(json.dumps(config))
    loaded = load_model(official, "ntk:2", device="cpu")
    assert type(loaded.model) is LongLLaDAModelLM and loaded.kind == "diffusion" and loaded.model_type == "llada"
    assert loaded.model.config.rope_scaling == {"type": "ntk", "factor": 2}
    kwargs = dict(max_length=40, chunk=20, mc=2, progress=False)
    plain = perplexity_curve(load_model(official, device="cpu"), **kwargs)
    assert [r["value"] for r in plain.rows] == [r["value"] for r in perplexity_curve(diffusion, **kwargs).rows]


def test_diffusion_rope_scaling_overrides(tiny_model_dir):
    config = load_model(tiny_model_dir, "ntk:4", device="cpu").model.config
    assert config.rope_scaling == {"type": "ntk", "factor": 4}
    target = load_model(tiny_model_dir, "ntk-target:4096", device="cpu")
    assert target.model.config.rope_scaling == {"type": "ntk", "target_length": 4096}
    assert target.rope["factor"] == target.model.config.rope_scaling_factor
    per_length = load_model(tiny_model_dir, "ntk-per-length", device="cpu")
    assert per_length.model.config.rope_scaling == {"type": "ntk_per_length"}
    assert per_length.rope["factor"] == "per length"
    dynamic = load_model(tiny_model_dir, "dynamic:2", device="cpu")  # transformers' dynamic NTK, every family
    assert dynamic.model.config.rope_scaling == {"type": "dynamic", "factor": 2}
    assert dynamic.rope["factor"] == "per length"
    with pytest.raises(ValueError, match="dynamic"):
        load_model(tiny_model_dir, "dynamic:nan", device="cpu")


# -- autoregressive models -----------------------------------------------------------------------------------


def test_causal_curve_matches_direct_loss(llama, tmp_path):
    # 640 tokens: past the trained length (128, one causal pass all the same) and over two 512-token pieces
    curve = perplexity_curve(llama, out=tmp_path / "ar.jsonl", max_length=640, chunk=64, progress=False)
    assert curve.meta["kind"] == "autoregressive" and curve.meta["window"] is None and len(curve.rows) == 10
    ids = _ids(llama, 640)
    with torch.no_grad():
        output = llama.model(ids[None], labels=ids[None])
    assert curve.ppl[-1] == pytest.approx(math.exp(output.loss.item()), rel=1e-4)
    token_ce = F.cross_entropy(output.logits[0, :-1].float(), ids[1:], reduction="none")
    prefix = len(ids) - 640
    for row in curve.rows:
        end = prefix + row["length"] - 1  # token_ce[t - 1] is the loss of position t
        start = max(end - 64, 0)  # without BOS the first token has no prediction
        assert row["tokens"] == end - start
        assert row["value"] == pytest.approx(token_ce[start:end].mean().item(), rel=1e-4)
        assert row["ppl"] == pytest.approx(math.exp(token_ce[:end].mean().item()), rel=1e-4)


def test_causal_sliding_window(llama):
    window, stride, chunk = 96, 32, 16
    curve = perplexity_curve(llama, max_length=320, chunk=chunk, window=window, stride=stride, progress=False)
    assert curve.meta["window"] == window and curve.meta["stride"] == stride and len(curve.rows) == 20
    # every token scored once, in the window ending at the next multiple of the stride (text positions)
    ids = _ids(llama, 320)
    prefix = len(ids) - 320
    losses = []
    with torch.no_grad():
        for t in range(max(prefix, 1), len(ids)):
            end = min(prefix + ((t - prefix) // stride + 1) * stride, len(ids))
            begin = max(0, end - window)
            logits = llama.model(ids[None, begin:end]).logits[0, t - 1 - begin]
            losses.append(F.cross_entropy(logits[None].float(), ids[t : t + 1]).item())
    losses = [math.nan] * (len(ids) - prefix - len(losses)) + losses  # no BOS: the first token is not scored
    for row in curve.rows:
        piece = [x for x in losses[row["length"] - chunk : row["length"]] if not math.isnan(x)]
        assert row["value"] == pytest.approx(sum(piece) / len(piece), rel=1e-4)


def test_causal_resume_is_exact(llama, tmp_path):
    out = tmp_path / "ar.jsonl"
    perplexity_curve(llama, out=out, max_length=640, chunk=64, progress=False)
    reference = out.read_bytes()
    lines = reference.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:10]))  # metadata + 9 of 10 chunks: the last one is in the second piece
    perplexity_curve(llama, out=out, max_length=640, chunk=64, progress=False)
    assert out.read_bytes() == reference
    out.write_bytes(b"".join(lines[:4]))
    perplexity_curve(llama, out=out, max_length=640, chunk=64, progress=False)
    assert out.read_bytes() == reference


def test_causal_rope_scaling_overrides(llama_dir):
    head_dim = 32 // 4
    scaled = load_model(llama_dir, "ntk:4", device="cpu")
    assert causal_rope_theta(scaled.model.config) == 4 * LLAMA_THETA
    inv_freq = scaled.model.model.rotary_emb.inv_freq
    assert inv_freq[1].item() == pytest.approx((4 * LLAMA_THETA) ** (-2 / head_dim), rel=1e-5)
    assert scaled.rope["factor"] == 4 and scaled.rope["effective_rope_theta"] == 4 * LLAMA_THETA

    factor = ntk_scaling_factor(head_dim, LLAMA_THETA, LLAMA_TRAINED, 4096)
    assert factor > 1
    target = load_model(llama_dir, "ntk-target:4096", device="cpu")
    assert target.rope["factor"] == factor and causal_rope_theta(target.model.config) == factor * LLAMA_THETA

    with pytest.raises(ValueError, match="ntk-per-length"):  # the diffusion rule has no causal form here
        load_model(llama_dir, "ntk-per-length", device="cpu")
    dynamic = load_model(llama_dir, "dynamic:1", device="cpu")
    config = dynamic.model.config
    params = getattr(config, "rope_parameters", None) or config.rope_scaling
    assert params.get("rope_type", params.get("type")) == "dynamic"
    rotary = dynamic.model.model.rotary_emb
    assert rotary.inv_freq[1].item() == pytest.approx(LLAMA_THETA ** (-2 / head_dim), rel=1e-5)
    curve = perplexity_curve(dynamic, max_length=256, chunk=64, progress=False)
    assert len(curve.rows) == 4 and all(math.isfinite(p) for p in curve.ppl)
    assert rotary.inv_freq[1].item() < 0.99 * LLAMA_THETA ** (-2 / head_dim)  # the base grew past 128 tokens


def test_learned_positions_use_a_sliding_window(gpt2_dir):
    curve = perplexity_curve(gpt2_dir, max_length=160, chunk=16, device="cpu", progress=False)
    assert curve.meta["window"] == 64 and curve.meta["stride"] == 32
    assert len(curve.rows) == 10 and all(math.isfinite(p) for p in curve.ppl)
    with pytest.raises(ValueError, match="needs a RoPE model"):
        load_model(gpt2_dir, "ntk:2", device="cpu")


# -- plot ----------------------------------------------------------------------------------------------------


def test_plot_has_one_curve_per_run(diffusion, llama, tmp_path, capsys):
    runs = [tmp_path / "diffusion.jsonl", tmp_path / "llama.jsonl", tmp_path / "llama-window.jsonl"]
    perplexity_curve(diffusion, out=runs[0], max_length=60, chunk=20, mc=2, progress=False)
    perplexity_curve(llama, out=runs[1], max_length=60, chunk=20, progress=False)
    perplexity_curve(llama, out=runs[2], max_length=60, chunk=20, window=50, stride=20, progress=False)

    figure = plot_curves(runs, log=True, title="tiny")
    (axes,) = figure.axes
    curves = [line for line in axes.get_lines() if line.get_gid() != TRAINED_LENGTH_GID]
    markers = [line for line in axes.get_lines() if line.get_gid() == TRAINED_LENGTH_GID]
    # one marker per trained length (the two llama runs share theirs), in the colour of its first curve
    assert len(curves) == 3 and len(markers) == 2
    assert list(curves[1].get_xdata()) == [20, 40, 60]
    labels = [line.get_label() for line in curves]
    assert len(set(labels)) == 3 and all("no scaling" in label for label in labels)
    assert markers[0].get_xdata()[0] == diffusion.model.config.max_sequence_length
    assert markers[0].get_color() == curves[0].get_color()
    assert "Monte-Carlo bounds" in figure.get_supxlabel()  # the diffusion curve's word
    ticks = [tick for tick in axes.get_yticks() if axes.get_ylim()[0] <= tick <= axes.get_ylim()[1]]
    assert len(ticks) >= 2  # the log axis is labelled whatever the curves' span

    png = tmp_path / "figure.png"
    assert cli.main(["ppl-plot", *map(str, runs), "--out", str(png), "--log"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).ndim == 3
    assert cli.main(["ppl-plot", str(tmp_path / "missing.jsonl"), "--out", str(png)]) == 2
    assert "no such results file" in capsys.readouterr().err


# -- bad input -----------------------------------------------------------------------------------------------


def test_rope_scaling_labels_round_trip_through_the_one_parser():
    for text in ("none", "ntk:4", "ntk:2.5", "ntk-target:16384", "ntk-per-length", "dynamic:2", "linear:4", "yarn:8",
                 "llama3:8", "diffusion-ntk:131072", "longrope:GSAI-ML/LLaDA-8B-Instruct"):  # fmt: skip
        assert spec_label(parse_rope_scaling(text)) == text
    assert spec_label(parse_rope_scaling("ntk-target:16k")) == "ntk-target:16384"
    for bad in ("bogus:2", "ntk", "ntk:0.5", "ntk:x", "ntk:nan", "ntk-target:-5", "ntk-target:1.5", "dynamic:0"):
        with pytest.raises(ValueError, match="--rope-scaling"):
            parse_rope_scaling(bad, field="--rope-scaling")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", "{short}"], r"short\.txt has \d tokens, fewer than one chunk \(--chunk 64\)"),
        (["--max-length", "10000000"], r"--max-length 10000000 is beyond the text: .* has \d+ tokens"),
        (["--estimator", "exact"], r"--estimator must be one of \('longllada', 'elbo'\), got 'exact'"),
        (["--rope-scaling", "bogus:4"], r"--rope-scaling='bogus:4' is not allowed; allowed: none, ntk:FACTOR"),
        (["--rope-scaling", "longrope:GSAI-ML/LLaDA-8B-Instruct"], r"long_factor has 64 numbers; allowed: 8"),
        (["--rope-scaling", "ntk:inf"], r"--rope-scaling ntk:FACTOR=inf is not allowed"),
        (["--chunk", "0"], "--chunk must be an integer >= 1 and <= 4294967296, got 0"),
        (["--text", "{missing}"], "--text: no such file"),
    ],
)
def test_bad_input_is_a_clear_error(tiny_model_dir, tmp_path, capsys, extra, message):
    short = tmp_path / "short.txt"
    short.write_text("hello world", encoding="utf-8")
    extra = [arg.format(short=short, missing=tmp_path / "missing.txt") for arg in extra]
    assert cli.main(_ppl_args(tiny_model_dir, tmp_path / "out.jsonl", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("longllada ppl: error: ")
    assert re.search(message, err), err


def test_estimator_is_for_diffusion_models_only(llama):
    with pytest.raises(ValueError, match="--estimator elbo applies to diffusion models"):
        perplexity_curve(llama, max_length=64, chunk=64, estimator="elbo", progress=False)


def test_results_file_format(tmp_path):
    out = tmp_path / "x.jsonl"
    out.write_text(json.dumps({"record": "chunk"}) + "\n")
    with pytest.raises(ValueError, match="not the metadata"):
        read_run(out)
