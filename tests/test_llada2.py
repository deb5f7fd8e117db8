"""LLaDA2.0 and LLaDA2.1 against the reference written from the official code (tests/oracles/llada2_reference.py).

Two tiny official-format folders (official config keys and state-dict keys, random weights: a dense first layer and
MoE layers) load with our classes through transformers' Auto classes once ``modeling_longllada`` is imported, and,
built into repos by ``longllada upload --dry-run``, as remote code in a process where the project is not importable:

- float32 logits within 1e-4 of the reference under the block-causal mask (given as ``block_causal=`` or as the
  official additive mask), with left padding honoured;
- greedy ``generate`` token-identical to the official ``generate`` of LLaDA2.0 and to LLaDA2.1's editing one, for
  prompts that do not fill their last block (and one that does), row by row and as a left-padded batch, with the
  exact key/value cache and without it (the official recompute);
- the block-diffusion likelihood reads each block from the clean blocks before it, as the bound says;
- NTK scaling on the rotated part of each head; ``ntk_per_length`` with one factor for both paths.

The reference is slow (token by token, expert by expert): its answers are computed once per module.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_isolated
from oracles import llada2_reference as ref
from transformers import AutoModel, AutoModelForCausalLM

import hub_upload
import modeling_longllada
from longllada.tiny_model import build_tiny_model
from modeling_longllada import LLaDA2Config, LLaDA2ModelLM, ntk_scaling_factor
from modeling_longllada import generation_longllada as generation
from modeling_longllada.families import LLADA2

CONFIG = ref.official_config(vocab_size=320)  # room for the tiny tokenizer's 300 tokens
BLOCK = ref.BLOCK_LENGTH
MASK_ID = CONFIG["mask_token_id"]
EOS_ID = ref.EOS_ID
ATOL = 1e-4
NEW = 12
LENGTHS = (13, 5, 16)  # 13 and 5 leave masks in a block with prompt tokens; 16 fills two blocks exactly
# The official `generate` arguments of each version for the tests (small, so that the reference stays quick).
SAMPLERS = {
    "2.0": {"steps": 4, "threshold": 0.5},
    "2.1": {"threshold": 0.5, "editing_threshold": 0.5, "num_to_transfer": 2, "max_post_steps": 3},
}
# (weight seed, noise of the EOS row): chosen so that each version's answers below include some that end early
# at an EOS and some that run the whole length (the `expected` fixture checks that).
WEIGHTS = {"2.0": (1, 0.3), "2.1": (0, 0.3)}


def official_state(seed: int, noise_scale: float) -> dict[str, torch.Tensor]:
    """The reference's random weights, with the EOS row of ``lm_head`` near that of the token the model predicts
    most at masked positions, so that some answers end early (random weights otherwise never predict EOS)."""
    state = ref.random_state_dict(CONFIG, seed=seed)
    probe = torch.cat((ref.random_prompt(8, CONFIG, seed=seed + 7)[0], torch.full((8,), MASK_ID)))[None]
    logits = ref.forward(CONFIG, state, probe, ref.block_diffusion_mask(2, BLOCK, torch.float32))
    frequent = int(logits[0, 8:].argmax(-1).mode().values)
    noise = torch.randn(CONFIG["hidden_size"], generator=torch.Generator().manual_seed(seed + 5))
    state["lm_head.weight"][EOS_ID] = state["lm_head.weight"][frequent] + noise_scale * noise
    return state


STATES = {version: official_state(*weights) for version, weights in WEIGHTS.items()}


def prompts(lengths: tuple[int, ...] = LENGTHS) -> list[torch.Tensor]:
    return [ref.random_prompt(n, CONFIG, seed=n)[0] for n in lengths]


def left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), ref.PAD_ID)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
    return ids, mask


def official_answer(version: str, prompt: torch.Tensor) -> list[int]:
    settings = dict(SAMPLERS[version])
    sampler = ref.generate_editing if version == "2.1" else ref.generate
    answer = sampler(CONFIG, STATES[version], prompt[None], block_length=BLOCK, gen_length=NEW, eos_id=EOS_ID,
                     mask_id=MASK_ID, eos_early_stop=version == "2.1", **settings)  # fmt: skip
    return answer[0].tolist()


@pytest.fixture(scope="module")
def expected() -> dict[str, list[list[int]]]:
    """The official answers (up to the first EOS) of each version for each prompt."""
    answers = {version: [official_answer(version, p) for p in prompts()] for version in SAMPLERS}
    for version, rows in answers.items():  # both kinds of answer are exercised
        assert any(len(a) < NEW for a in rows) and any(len(a) == NEW for a in rows), (version, rows)
    return answers


def as_generated(answer: list[int]) -> list[int]:
    """An official answer as ``generate`` returns it: max_new_tokens long, EOS after the first EOS."""
    return answer + [EOS_ID] * (NEW - len(answer))


@pytest.fixture(scope="module")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """``longllada tiny-model --arch llada2``: its tokenizer (LLaDA2's special tokens) serves the official folders."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llada2", arch="llada2", vocab_size=300)


@pytest.fixture(scope="module")
def official_dirs(tmp_path_factory, tiny_tokenizer_dir) -> dict[str, Path]:
    """An official-format LLaDA2.0 folder and a LLaDA2.1 one (the same format, other weights), each with config.json,
    model.safetensors and the tokenizer files (names without '.': transformers 4.46 needs that for remote code)."""
    folders = {}
    for version, name in (("2.0", "tiny-llada20-official"), ("2.1", "tiny-llada21-official")):
        folder = ref.write_official_folder(tmp_path_factory.mktemp("official") / name, CONFIG, STATES[version])
        for path in tiny_tokenizer_dir.iterdir():
            if path.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copyfile(path, folder / path.name)
        folders[version] = folder
    return folders


@pytest.fixture(scope="module")
def models(official_dirs) -> dict[str, LLaDA2ModelLM]:
    """Each folder loaded through the Auto classes, its blocks (the sampler's default and the likelihood's) those of
    the tiny reference."""
    loaded = {version: AutoModelForCausalLM.from_pretrained(folder).eval() for version, folder in official_dirs.items()}
    for model in loaded.values():
        model.generation_config.block_length = BLOCK
    return loaded


# -- loading ------------------------------------------------------------------------------------------------------


def test_official_folders_load_with_our_classes_and_the_official_keys(official_dirs, models):
    for auto in (AutoModel, AutoModelForCausalLM):
        config_class = modeling_longllada.registered_config_class("llada2_moe")
        assert auto._model_mapping[config_class] is LLaDA2ModelLM
    for version, model in models.items():
        assert type(model) is LLaDA2ModelLM and model.config.model_type == "llada2_moe"
        state = model.state_dict()
        assert set(state) == set(STATES[version])
        assert all(torch.equal(state[k], v) for k, v in STATES[version].items())
        assert type(model.model.layers[0].mlp).__name__ == "SwiGLUMLP"  # first_k_dense_replace
        assert type(model.model.layers[1].mlp).__name__ == "SparseMoE"
    assert type(AutoModel.from_pretrained(official_dirs["2.0"])) is LLaDA2ModelLM
    shapes = LLaDA2Config.from_dict(CONFIG).official_weight_shapes()
    assert set(shapes) == set(STATES["2.0"]) and all(tuple(STATES["2.0"][k].shape) == s for k, s in shapes.items())


def test_unsupported_config_is_refused():
    with pytest.raises(ValueError, match="tie_word_embeddings=True is not supported"):
        LLaDA2ModelLM(LLaDA2Config.from_dict({**CONFIG, "tie_word_embeddings": True}))


# -- the forward pass -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_logits_equal_the_reference_under_the_block_causal_mask(models, backend):
    model = models["2.0"]
    model.config._attn_implementation = backend
    ids = torch.stack([p[:13] for p in prompts((13, 16))])
    ids = torch.cat((ids, torch.full((2, 8), MASK_ID)), 1)  # 21 positions: the last block is not full
    ids[1, 9:12] = MASK_ID
    additive = ref.block_diffusion_mask(3, BLOCK, torch.float32)[..., :21, :21]
    try:
        with torch.no_grad():
            by_length = model(ids, block_causal=BLOCK).logits
            by_mask = model(ids, attention_mask=additive).logits
    finally:
        model.config._attn_implementation = "sdpa"
    expected = ref.forward(CONFIG, STATES["2.0"], ids, additive)
    torch.testing.assert_close(by_length, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(by_mask, expected, atol=ATOL, rtol=0)


def test_left_padding_by_whole_blocks_gives_each_row_its_own_logits(models):
    """A padding mask is honoured (the official forward turns one into a causal mask under sdpa): a row padded by a
    whole block sees, at its own positions, what it sees alone."""
    model = models["2.1"]
    short, long = prompts((13, 21))
    ids = torch.full((2, 21), ref.PAD_ID)
    ids[0, 8:], ids[1] = short, long
    mask = (torch.arange(21)[None] >= torch.tensor([[8], [0]])).long()
    with torch.no_grad():
        ours = model(ids, attention_mask=mask, block_causal=BLOCK).logits
    additive = ref.block_diffusion_mask(3, BLOCK, torch.float32)[..., :21, :21]
    torch.testing.assert_close(ours[0, 8:], ref.forward(CONFIG, STATES["2.1"], short[None], additive[..., :13, :13])[0],
                               atol=ATOL, rtol=0)  # fmt: skip
    torch.testing.assert_close(ours[1], ref.forward(CONFIG, STATES["2.1"], long[None], additive)[0], atol=ATOL, rtol=0)


def test_an_additive_mask_with_biases_is_refused(models):
    bias = torch.zeros(1, 1, 4, 4)
    bias[..., 0, 1] = -2.0
    with pytest.raises(ValueError, match="only 0 .attend. and -inf"):
        models["2.0"](torch.tensor([[5, 6, 7, 8]]), attention_mask=bias)


# -- the samplers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", list(SAMPLERS))
def test_greedy_generate_equals_the_official_generate_row_by_row_and_batched(models, expected, version):
    """Both caches, each prompt alone and the three as one left-padded batch (rows of 1 to 3 blocks, one ending
    at its EOS while the others go on)."""
    model, settings = models[version], {**SAMPLERS[version], "eos_early_stop": version == "2.1"}
    want = [as_generated(a) for a in expected[version]]
    batch, mask = left_pad(prompts())
    for cache in ("prefix", "none"):
        for prompt, answer in zip(prompts(), want):
            out = model.generate(prompt[None], max_new_tokens=NEW, block_length=BLOCK, cache=cache, **settings)
            assert out[0, len(prompt) :].tolist() == answer, (cache, len(prompt))
        out = model.generate(batch, attention_mask=mask, max_new_tokens=NEW, block_length=BLOCK, cache=cache,
                             **settings)  # fmt: skip
        assert out[:, batch.shape[1] :].tolist() == want, cache
        assert torch.equal(out[:, : batch.shape[1]], batch)


def test_the_cache_encodes_a_long_prompt_in_chunks(models, monkeypatch):
    """With passes of one block, a 44-token prompt's 5 whole blocks take 5 passes; the answer is the recompute's."""
    monkeypatch.setattr(generation, "PREFILL_TOKENS", BLOCK)
    (prompt,) = prompts((44,))
    runs = {
        cache: models["2.0"].generate(
            prompt[None],
            max_new_tokens=NEW,
            block_length=BLOCK,
            return_dict_in_generate=True,
            cache=cache,
            **SAMPLERS["2.0"],
        )  # fmt: skip
        for cache in ("prefix", "none")
    }
    assert runs["prefix"].sequences.tolist() == runs["none"].sequences.tolist()
    assert runs["prefix"].num_forward_passes == runs["none"].num_forward_passes + 5


def test_llada21_is_selected_by_the_generation_config(models, expected, tmp_path):
    """A LLaDA2.1 repo's generation_config.json carries editing_threshold: generate runs the editing sampler."""
    model = models["2.1"]
    saved = model.generation_config
    try:
        model.generation_config = copy.deepcopy(saved)
        for name, value in {**SAMPLERS["2.1"], "eos_early_stop": True}.items():
            setattr(model.generation_config, name, value)
        resolve = generation.DiffusionGenerationConfig.resolve
        assert type(generation.rule_for(model, resolve(model, None, {}))) is generation.LLaDA21Rule
        plain = resolve(model, None, {"editing_threshold": None})  # an explicit None: LLaDA2.0's sampler
        assert type(generation.rule_for(model, plain)) is generation.LLaDA2Rule
        (prompt,) = prompts((13,))
        out = model.generate(prompt[None], max_new_tokens=NEW, block_length=BLOCK)
        assert out[0, 13:].tolist() == as_generated(expected["2.1"][0])
    finally:
        model.generation_config = saved


def test_a_model_that_predicts_the_mask_token_never_hangs_the_editing_sampler(tmp_path):
    """The official LLaDA2.1 loop never ends when the model predicts the mask id; ours never predicts it."""
    state = ref.random_state_dict(CONFIG, seed=2)
    state["lm_head.weight"][MASK_ID] = 10 * state["lm_head.weight"].abs().max(0).values
    model = AutoModelForCausalLM.from_pretrained(ref.write_official_folder(tmp_path / "masky", CONFIG, state)).eval()
    out = model.generate(prompts((5,))[0][None], max_new_tokens=8, block_length=BLOCK, **SAMPLERS["2.1"])
    assert out.shape == (1, 13) and not bool((out == MASK_ID).any())


def test_sampling_runs_with_top_k_and_top_p(models):
    generator = torch.Generator().manual_seed(0)
    out = models["2.0"].generate(prompts((5,))[0][None], max_new_tokens=8, block_length=BLOCK, temperature=0.8,
                                 top_k=20, top_p=0.9, generator=generator)  # fmt: skip
    assert out.shape == (1, 13) and not bool((out == MASK_ID).any())


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"cache": "dual"}, "cache='dual' is not allowed with LLaDA2"),
        ({"block_length": None}, "block_length=None is not allowed with LLaDA2"),
        ({"minimal_topk": 20}, r"minimal_topk=20 leaves no step for max_new_tokens=8"),
        (
            {"remasking": "low_confidence"},
            r"LLaDA's rule for a bidirectional model.*allowed: \['confidence_threshold'\]",
        ),
        ({"editing_threshold": 1.5}, "editing_threshold=1.5 is not allowed"),
        ({"max_post_steps": -1}, "max_post_steps=-1 is not allowed"),
        ({"num_to_transfer": 0}, "num_to_transfer=0 is not allowed"),
        ({"eos_early_stop": "yes"}, "eos_early_stop='yes' is not allowed"),
        ({"cfg_scale": 1.0}, "cfg_scale=1.0 is not allowed with LLaDA2"),
        ({"alg_temp": 0.5}, r"alg_temp=0.5 applies to Dream"),
    ],
)
def test_bad_sampler_settings_are_refused_naming_the_field(models, settings, words):
    with pytest.raises(ValueError, match=words):
        models["2.0"].generate(torch.tensor([[5, 6, 7]]), max_new_tokens=8, **settings)


def test_llada2_settings_are_refused_by_the_other_families(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match=r"editing_threshold=0.9 applies to LLaDA2's algorithms"):
        model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=4, editing_threshold=0.9)
    with pytest.raises(ValueError, match="LLaDA2's rule for a block-diffusion model"):
        model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=4, remasking="confidence_threshold")


# -- likelihood: the block-diffusion bound ---------------------------------------------------------------------------


def test_each_noised_block_reads_the_clean_blocks_before_it(models):
    """The likelihood's passes against the reference: block k of a noised copy, run after the clean blocks < k under
    the block-causal mask."""
    model, state = models["2.0"], STATES["2.0"]
    (sequence,) = prompts((22,))  # 13 context tokens (blocks 0-1) and 9 to score (blocks 1-2)
    noisy = sequence.repeat(2, 1)
    noisy[0, [13, 15, 20]] = MASK_ID
    noisy[1, 14:22] = MASK_ID
    with torch.no_grad():
        hidden = model.masked_scorer(sequence, 13, 9, 0)(noisy)
        ours = model.lm_head(hidden).float()
    additive = ref.block_diffusion_mask(3, BLOCK, torch.float32)
    for row in range(2):
        for block in (1, 2):
            start, end = block * BLOCK, min((block + 1) * BLOCK, 22)
            ids = torch.cat((sequence[:start], noisy[row, start:end]))[None]
            logits = ref.forward(CONFIG, state, ids, additive[..., :end, :end])[0, max(start, 13) : end]
            torch.testing.assert_close(ours[row, max(start, 13) - 13 : end - 13], logits, atol=ATOL, rtol=0)


def test_likelihood_of_one_token_is_its_masked_log_probability(models):
    (context,) = prompts((13,))
    bound, stderr = models["2.1"].log_likelihood(context, [42], mc_num=1, batch_size=1)
    additive = ref.block_diffusion_mask(2, BLOCK, torch.float32)[..., :14, :14]
    logits = ref.forward(CONFIG, STATES["2.1"], torch.cat((context, torch.tensor([MASK_ID])))[None], additive)[0, -1]
    assert bound == pytest.approx(torch.log_softmax(logits, -1)[42].item(), abs=1e-4) and stderr == 0.0
    value = models["2.1"].chunk_perplexity(context, list(range(20, 30)), mc_num=4, batch_size=2,
                                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert math.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="cfg_scale=1.0 is not allowed for LLaDA2"):
        models["2.1"].log_likelihood(context, [42], mc_num=1, cfg_scale=1.0)


# -- NTK ---------------------------------------------------------------------------------------------------------------


def test_ntk_scales_the_rotated_part_and_multiplies_the_base(official_dirs):
    sizes = {"hidden_size": 256, "num_attention_heads": 4, "head_dim": 64, "max_position_embeddings": 4096}
    config = LLaDA2Config.from_dict({**CONFIG, **sizes, "rope_scaling": {"type": "ntk", "target_length": 32768}})
    assert config.rotary_dim == 32
    assert config.rope_scaling_factor == ntk_scaling_factor(32, 10000.0, 4096, 32768) == 10  # the full head: 15
    model = AutoModelForCausalLM.from_pretrained(official_dirs["2.0"], rope_scaling={"type": "ntk", "factor": 4})
    (ids,) = prompts((21,))
    additive = ref.block_diffusion_mask(3, BLOCK, torch.float32)[..., :21, :21]
    with torch.no_grad():
        ours = model.eval()(ids[None], block_causal=BLOCK).logits
    expected = ref.forward(CONFIG, STATES["2.0"], ids[None], additive, rope_theta=4 * CONFIG["rope_theta"])
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)


def test_ntk_per_length_takes_one_factor_for_the_canvas_in_both_paths(official_dirs):
    """A trained length short enough that the canvas needs λ > 1: the cache and the recompute agree."""
    model = AutoModelForCausalLM.from_pretrained(official_dirs["2.0"], max_position_embeddings=16, rope_theta=100.0,
                                                 rope_scaling={"type": "ntk_per_length"}).eval()  # fmt: skip
    assert model.config.rope_factor_for_length(32) > 1
    (prompt,) = prompts((13,))
    runs = [model.generate(prompt[None], max_new_tokens=NEW, block_length=BLOCK, cache=cache, **SAMPLERS["2.0"])
            for cache in ("prefix", "none")]  # fmt: skip
    assert runs[0].tolist() == runs[1].tolist()


# -- tools: the registry entry, tiny-model, upload + trust_remote_code where the project is not importable ----------


def test_tiny_model_writes_llada2_and_its_21_variant(tmp_path):
    folder = build_tiny_model(tmp_path / "tiny21", arch="llada2", n_layers=2, d_model=32, vocab_size=300,
                              variant="2.1")  # fmt: skip
    saved = json.loads((folder / "generation_config.json").read_text())
    assert saved["editing_threshold"] == 0.9 and saved["remasking"] == "confidence_threshold"
    assert saved["cache"] == "prefix" and saved["threshold"] == 0.95
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model) is LLaDA2ModelLM and model.config.model_type == "longllada_llada2"
    out = model.generate(torch.tensor([[5, 9, 14]]), max_new_tokens=4, block_length=4, return_dict_in_generate=True)
    assert out.sequences.shape == (1, 7)
    assert LLADA2.variant_of("inclusionAI/LLaDA2.1-mini", None).title == "LLaDA2.1"
    assert LLADA2.variant_of(None, {"editing_threshold": 0.9}).name == "2.1"
    assert LLADA2.variant_of("inclusionAI/LLaDA2.0-mini", {}) is None
    with pytest.raises(ValueError, match=r"variant '3.0' is not one of LLaDA2's; allowed: \['2.1'\]"):
        build_tiny_model(tmp_path / "bad", arch="llada2", variant="3.0")


@pytest.fixture(scope="module")
def built(official_dirs, tmp_path_factory) -> dict[str, Path]:
    """``longllada upload --dry-run`` of each official folder."""
    out = {}
    for version, folder in official_dirs.items():
        dest = tmp_path_factory.mktemp("built") / f"Tiny-LongLLaDA2-{version.replace('.', '')}"
        argv = [str(folder), "--repo-id", "longllada-tests/Tiny-LongLLaDA2", "--dry-run", "--out", str(dest)]
        assert hub_upload.main(argv) == 0
        out[version] = dest
    return out


# For each built folder: the logits of IDS under the block mask, and greedy generate of each prompt alone and of
# the left-padded batch, with both caches, at its version's settings; loaded with trust_remote_code.
PARITY = """
import json, torch
from transformers import AutoModelForCausalLM
spec = json.loads({spec!r})
report = {{}}
for version, folder in spec["folders"].items():
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, torch_dtype=torch.float32).eval()
    settings = dict(spec["settings"][version], max_new_tokens=spec["new"], block_length=spec["block"])
    entry = {{"class": type(model).__name__, "module": type(model).__module__}}
    with torch.no_grad():
        entry["logits"] = model(torch.tensor(spec["ids"]), block_causal=spec["block"]).logits.tolist()
    for cache in ("prefix", "none"):
        rows = [model.generate(torch.tensor([row]), cache=cache, **settings)[0].tolist() for row in spec["rows"]]
        batch = model.generate(torch.tensor(spec["batch"]), attention_mask=torch.tensor(spec["mask"]), cache=cache,
                               **settings)
        entry[cache] = {{"rows": rows, "batch": batch.tolist()}}
    report[version] = entry
print("RESULT " + json.dumps(report))
"""


def test_upload_dry_run_repos_match_the_official_code_as_remote_code(built, expected):
    for folder in built.values():
        assert json.loads((folder / "config.json").read_text())["model_type"] == "longllada_llada2"
        assert json.loads((folder / "generation_config.json").read_text())["cache"] == "prefix"
    rows = [p.tolist() for p in prompts()]
    batch, mask = left_pad(prompts())
    ids = torch.cat((prompts((13,))[0], torch.full((8,), MASK_ID)))[None]
    settings = {v: {**s, "eos_early_stop": v == "2.1"} for v, s in SAMPLERS.items()}
    spec = {"folders": {v: str(f) for v, f in built.items()}, "settings": settings, "new": NEW, "block": BLOCK,
            "ids": ids.tolist(), "rows": rows, "batch": batch.tolist(), "mask": mask.tolist()}  # fmt: skip
    out = run_isolated(PARITY.format(spec=json.dumps(spec)))
    report = json.loads(next(line[7:] for line in out.splitlines()[::-1] if line.startswith("RESULT ")))
    additive = ref.block_diffusion_mask(3, BLOCK, torch.float32)[..., :21, :21]
    for version, entry in report.items():
        assert entry["class"] == "LLaDA2ModelLM" and entry["module"].startswith("transformers_modules"), version
        torch.testing.assert_close(torch.tensor(entry["logits"]), ref.forward(CONFIG, STATES[version], ids, additive),
                                   atol=ATOL, rtol=0)  # fmt: skip
        want = [as_generated(a) for a in expected[version]]
        for cache in ("prefix", "none"):
            assert [r[len(p) :] for r, p in zip(entry[cache]["rows"], rows)] == want, (version, cache)
            assert [r[batch.shape[1] :] for r in entry[cache]["batch"]] == want, (version, cache)


# Runs the card's python blocks one after the other in one namespace, as a reader runs a notebook.
CARD_DRIVER = """
import json
namespace = {{"__name__": "__main__"}}
for i, code in enumerate(json.loads({blocks!r})):
    exec(compile(code, f"<model card block {{i}}>", "exec"), namespace)
    if i == 0:
        model, output = namespace["model"], namespace["output"]
        print("REPORT " + json.dumps({{"module": type(model).__module__, "class": type(model).__name__,
                                      "prompt": namespace["input_ids"].shape[1], "output": list(output.shape)}}))
print("=== all blocks ran")
"""
# Small lengths for the tiny model on two CPU cores; each must be found in the card.
SMALL_LENGTHS = {"max_new_tokens=64": "max_new_tokens=8", "block_length=32": "block_length=4", "steps=32": "steps=4",
                 "mc_num=128, batch_size=32": "mc_num=2, batch_size=2"}  # fmt: skip


def test_card_of_a_llada21_repo_names_it_and_its_demos_run(tmp_path):
    """tiny-model --variant 2.1, published: generation_config.json keeps the editing sampler, the card says LLaDA2.1,
    and its python blocks run where the project is not importable."""
    from test_hub_upload import card_blocks

    source = build_tiny_model(tmp_path / "tiny21", arch="llada2", n_layers=2, d_model=32, vocab_size=300,
                              variant="2.1")  # fmt: skip
    out = tmp_path / "Tiny-LongLLaDA21"
    assert hub_upload.main([str(source), "--repo-id", "t/Tiny", "--dry-run", "--out", str(out)]) == 0
    assert json.loads((out / "generation_config.json").read_text())["editing_threshold"] == 0.9
    readme = (out / "README.md").read_text()
    assert "the LLaDA2.1 masked-diffusion language model ([paper](https://arxiv.org/abs/2602.08676))" in readme
    assert "(rotated dims of a 8-dim head d = 4," in readme  # λ from the rotated part of the head
    blocks = card_blocks(readme, "python")
    joined = "\n".join(blocks)
    for old in SMALL_LENGTHS:
        assert old in joined, old
    local = []
    for block in blocks:
        block = block.replace('"t/Tiny"', repr(str(out)))
        for old, new in SMALL_LENGTHS.items():
            block = block.replace(old, new)
        local.append(block)
    stdout = run_isolated(CARD_DRIVER.format(blocks=json.dumps(local)), cwd=tmp_path)
    assert "=== all blocks ran" in stdout and "log p(continuation | context) >=" in stdout
    report = json.loads(stdout.split("REPORT ", 1)[1].splitlines()[0])
    assert report["class"] == "LLaDA2ModelLM" and report["module"].startswith("transformers_modules")
    assert report["output"] == [1, report["prompt"] + 8]


def test_longllada_ppl_draws_the_llada2_curve(tmp_path):
    from longllada import cli

    folder = build_tiny_model(tmp_path / "tiny-llada2", arch="llada2", n_layers=2, d_model=32, vocab_size=300)
    argv = ["ppl", "--model", str(folder), "--max-length", "64", "--chunk", "32", "--mc", "2",
            "--out", str(tmp_path / "p.jsonl"), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["length"] for r in rows[1:]] == [32, 64] and all(math.isfinite(r["ppl"]) for r in rows[1:])


def test_longllada_eval_runs_niah_on_a_tiny_llada2_with_ntk(tmp_path):
    pytest.importorskip("lm_eval")
    from test_eval_families import check_cells, run_niah

    folder = build_tiny_model(tmp_path / "tiny-llada2", arch="llada2")
    results, records = run_niah(tmp_path / "results", f"pretrained={folder},ntk_factor=4")
    check_cells(results)
    config = results["config"]
    assert config["longllada_family"] == "llada2" and config["longllada_rope_applied"]["scaling"] == "ntk:4"
    loaded = config["longllada_rope_loaded"]
    assert loaded["factor"] == 4 and loaded["effective_rope_theta"] == pytest.approx(4 * loaded["rope_theta"])
    assert sum(batch["rows"] for batch in records.timing("batch")) == 4
