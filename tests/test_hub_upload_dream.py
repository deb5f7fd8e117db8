"""`longllada upload` on Dream-v0: an official-format Dream checkpoint (official config fields and keys, official
``auto_map``, custom tokenizer code; tiny random weights from the reference in tests/oracles/dream_reference.py)
becomes a repo that transformers loads as remote code in a process where this project is not importable, with
``AutoModel`` and ``AutoModelForCausalLM``: logits equal to the reference's, greedy ``diffusion_generate`` tokens
identical to the reference sampler, row by row and as a left-padded batch; the model card's demos run on it.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_isolated
from huggingface_hub import ModelCard
from oracles import dream_reference as ref
from test_hub_upload import card_blocks, missing_small_lengths, read_json, run_card_blocks

import hub_upload
from hub_upload.build import source_model_types
from hub_upload.model_card import ntk_table_rows
from longllada.tiny_model import build_tiny_model
from modeling_longllada import REMOTE_CODE_FILES, DreamModel, ntk_scaling_factor
from modeling_longllada.configuration_dream import OFFICIAL_DEFAULTS
from modeling_longllada.families import DREAM

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "longllada-tests/Tiny-LongDream"
OFFICIAL_ID = "Dream-org/Dream-v0-Base-7B"
GREEDY_ALGS = ["maskgit_plus", "topk_margin", "entropy"]
ATOL = 1e-4
# The source's own code must never be copied nor run: executing it fails loudly.
FAKE_OFFICIAL_CODE = 'raise RuntimeError("the official Dream remote code was executed")\n'
OFFICIAL_TOKENIZER_AUTO_MAP = {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]}


def upload(argv: list) -> int:
    return hub_upload.main([str(a) for a in argv])


# -- the official-format source ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dream(tmp_path_factory) -> Path:
    """`longllada tiny-model --arch dream`: its tokenizer (Dream's special tokens) serves the official folder."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-dream", arch="dream")


@pytest.fixture(scope="module")
def official(tiny_dream, tmp_path_factory) -> tuple[Path, dict, dict]:
    """(folder, config, state): an official Dream-v0 folder. config.json from the reference (model_type "Dream",
    the official auto_map, no trained_length) with the tokenizer's ids; random weights under the official keys;
    code files that raise when run; the tokenizer as the official repo ships it (DreamTokenizer, custom code)."""
    ids = read_json(tiny_dream / "config.json")
    config = ref.official_config(
        vocab_size=ids["vocab_size"],
        **{k: ids[k] for k in ("mask_token_id", "bos_token_id", "eos_token_id", "pad_token_id")},
    )
    state = ref.random_state_dict(config, seed=3)
    folder = ref.write_official_folder(tmp_path_factory.mktemp("official") / "dream-official", config, state)
    for code in folder.glob("*.py"):
        code.write_text(FAKE_OFFICIAL_CODE)
    (folder / "tokenization_dream.py").write_text(FAKE_OFFICIAL_CODE)
    for path in tiny_dream.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "added_tokens", "chat_template")):
            shutil.copyfile(path, folder / path.name)
    tokenizer_config = read_json(folder / "tokenizer_config.json")
    tokenizer_config.update(tokenizer_class="DreamTokenizer", auto_map=OFFICIAL_TOKENIZER_AUTO_MAP)
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Dream-v0-Base-7B\n")
    (folder / "LICENSE").write_text("Apache License 2.0 (test copy)\n")
    return folder, config, state


def convert(source: Path, out: Path, *extra: str) -> Path:
    assert upload([source, "--repo-id", REPO_ID, *extra, "--dry-run", "--out", out]) == 0
    return out


@pytest.fixture(scope="module")
def built(official, tmp_path_factory) -> Path:
    return convert(official[0], tmp_path_factory.mktemp("built") / "Tiny-LongDream")


@pytest.fixture(scope="module")
def built_ntk(official, tmp_path_factory) -> Path:
    return convert(official[0], tmp_path_factory.mktemp("built-ntk") / "Tiny-LongDream", "--rope-scaling", "ntk:5")


# -- the converted folder ----------------------------------------------------------------------------------------


def test_official_dream_config_and_files_convert(official, built):
    folder, config, _ = official
    files = sorted(p.name for p in built.iterdir())
    assert sorted(p.name for p in built.glob("*.py")) == sorted(REMOTE_CODE_FILES)
    for name in REMOTE_CODE_FILES:
        assert (built / name).read_bytes() == (REPO / "modeling_longllada" / name).read_bytes()
    assert "tokenization_dream.py" not in files and {"LICENSE", "README.md", "generation_config.json"} <= set(files)
    converted = read_json(built / "config.json")
    assert converted["model_type"] == "longllada_dream" and converted["architectures"] == ["DreamModel"]
    assert converted["auto_map"] == DREAM.auto_map and "AutoModelForCausalLM" in converted["auto_map"]
    for key, value in config.items():  # every official field kept (the checkpoint's max_position_embeddings too)
        if key not in ("model_type", "architectures", "auto_map"):
            assert converted[key] == value, key
    assert converted["trained_length"] == 2048 and converted["rope_scaling"] is None
    assert filecmp.cmp(folder / "model.safetensors", built / "model.safetensors", shallow=False)
    generation = read_json(built / "generation_config.json")
    assert {k: generation[k] for k in DreamModel.sampler_defaults} == DreamModel.sampler_defaults
    assert generation["steps"] == 512 and generation["block_length"] is None and generation["remasking"] == "origin"
    assert generation["do_sample"] is False and "temperature" not in generation
    for name in ("mask_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
        assert generation[name] == config[name], name
    tokenizer_config = read_json(built / "tokenizer_config.json")
    assert "auto_map" not in tokenizer_config and tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    data = ModelCard.load(built / "README.md").data.to_dict()
    assert data["license"] == "apache-2.0" and data["tags"][0] == "dream"


def test_rope_scaling_is_validated_with_dream_s_trained_length(official, built_ntk, tmp_path, capsys):
    assert read_json(built_ntk / "config.json")["rope_scaling"] == {"type": "ntk", "factor": 5}
    target = convert(official[0], tmp_path / "target", "--rope-scaling", "ntk-target:8k")
    config = read_json(target / "config.json")
    assert config["rope_scaling"] == {"type": "ntk", "target_length": 8192}
    assert config["max_position_embeddings"] == 131072  # Dream keeps the checkpoint's value
    assert upload([official[0], "--repo-id", REPO_ID, "--rope-scaling", "ntk-target:1024", "--dry-run"]) == 2
    assert "below the trained length 2048" in capsys.readouterr().err
    assert upload([official[0], "--repo-id", REPO_ID, "--rope-scaling", "ntk-target:2048", "--dry-run"]) == 2
    assert "target_length=2048 does not extend the trained length 2048" in capsys.readouterr().err


def test_the_paper_s_dream_factor_is_in_the_ntk_table():
    """Dream-v0-7B (d 128, θ 1e6, trained 2048): twice the trained length needs λ = 5, the LongLLaDA setting."""
    rows = {row["length"]: row["factor"] for row in ntk_table_rows({**OFFICIAL_DEFAULTS, "model_type": "Dream"})}
    assert rows[4096] == 5 == ntk_scaling_factor(128, 1e6, 2048, 4096) and min(rows) == 4096
    assert rows[8192] == ntk_scaling_factor(128, 1e6, 2048, 8192)


def test_bad_dream_sources_are_refused_with_the_field(official, tmp_path, capsys):
    folder = official[0]
    bad = tmp_path / "no-heads"
    shutil.copytree(folder, bad)
    config = read_json(bad / "config.json")
    del config["num_key_value_heads"]
    (bad / "config.json").write_text(json.dumps(config))
    assert upload([bad, "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert "the Dream field 'num_key_value_heads' is missing" in capsys.readouterr().err
    config.update(num_key_value_heads=2, use_sliding_window=True)
    (bad / "config.json").write_text(json.dumps(config))
    assert upload([bad, "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert "use_sliding_window=True is not supported" in capsys.readouterr().err
    other = tmp_path / "qwen"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "qwen2"}')
    assert upload([other, "--repo-id", REPO_ID, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"model_type='qwen2' is not supported; allowed: {source_model_types()}" in err
    assert source_model_types()[:4] == ("llada", "longllada", "Dream", "longllada_dream")
    llada_keys = tmp_path / "llada-keys"
    shutil.copytree(folder, llada_keys)
    from safetensors.torch import save_file

    save_file({"model.transformer.wte.weight": torch.zeros(4, 4)}, str(llada_keys / "model.safetensors"))
    assert upload([llada_keys, "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert "not in Dream's layout (expected 'model.embed_tokens.weight'" in capsys.readouterr().err


def test_our_tiny_dream_republishes(tiny_dream, tmp_path):
    out = convert(tiny_dream, tmp_path / "ours", "--rope-scaling", "ntk-per-length")
    config, source = read_json(out / "config.json"), read_json(tiny_dream / "config.json")
    assert config["rope_scaling"] == {"type": "ntk_per_length"} and config["trained_length"] == source["trained_length"]
    assert config["model_type"] == "longllada_dream" and config["auto_map"] == DREAM.auto_map


def test_bin_dream_source_is_converted_to_safetensors(official, tmp_path):
    from safetensors.torch import load_file

    folder, _, state = official
    source = tmp_path / "bin-dream"
    shutil.copytree(folder, source, ignore=shutil.ignore_patterns("*.safetensors", "*.py"))
    torch.save(state, source / "pytorch_model.bin")
    out = convert(source, tmp_path / "converted")
    assert not list(out.glob("*.bin"))
    loaded = load_file(out / "model.safetensors")
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())


# -- loaded as remote code where the project is not importable: logits and sampler against the reference ----------

# Loads the folder with both Auto classes; for each, the logits of IDS and greedy diffusion_generate per algorithm,
# row by row (ROWS) and as the left-padded batch (BATCH, MASK).
PARITY = """
import json, torch
from transformers import AutoModel, AutoModelForCausalLM
spec = json.loads({spec!r})
report = {{}}
for auto in (AutoModel, AutoModelForCausalLM):
    model = auto.from_pretrained(spec["folder"], trust_remote_code=True, torch_dtype=torch.float32).eval()
    entry = {{"class": type(model).__name__, "module": type(model).__module__, "scaling": model.config.rope_scaling}}
    with torch.no_grad():
        entry["logits"] = model(torch.tensor(spec["ids"])).logits.tolist()
    for alg in spec["algs"]:
        settings = dict(alg=alg, temperature=0.0, alg_temp=None, top_p=None, top_k=None, eps=1e-3)
        rows = []
        for row in spec["rows"]:
            ids = torch.tensor([row])
            rows.append(model.diffusion_generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=spec["new"],
                                                 steps=spec["new"], **settings)[0].tolist())
        batch = model.diffusion_generate(torch.tensor(spec["batch"]), attention_mask=torch.tensor(spec["mask"]),
                                         max_new_tokens=spec["new"], steps=spec["batch_steps"], **settings)
        entry[alg] = {{"rows": rows, "batch": batch.tolist()}}
    report[auto.__name__] = entry
print("RESULT " + json.dumps(report))
"""


def prompt_ids(config: dict, lengths: tuple[int, ...], seed: int = 1) -> list[list[int]]:
    """Random prompts of ordinary tokens: the BOS first, then no special token."""
    special = {config[k] for k in ("mask_token_id", "bos_token_id", "eos_token_id", "pad_token_id")}
    ordinary = torch.tensor([i for i in range(config["vocab_size"]) if i not in special])
    g = torch.Generator().manual_seed(seed)
    return [
        [config["bos_token_id"]] + ordinary[torch.randint(len(ordinary), (n - 1,), generator=g)].tolist()
        for n in lengths
    ]


def left_pad(config: dict, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), config["pad_token_id"])
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids, mask


@pytest.mark.parametrize("variant", ["plain", "ntk:5"])
def test_converted_repo_matches_the_reference_as_remote_code(official, built, built_ntk, variant):
    _, config, state = official
    folder, factor = (built, 1) if variant == "plain" else (built_ntk, 5)
    theta = config["rope_theta"] * factor
    rows = prompt_ids(config, (5, 8))
    batch, mask = left_pad(config, prompt_ids(config, (4, 7, 6), seed=2))
    ids = prompt_ids(config, (11,), seed=3)
    ids[0][6:8] = [config["mask_token_id"]] * 2
    new, batch_steps = 6, 4
    spec = {"folder": str(folder), "ids": ids, "rows": rows, "batch": batch.tolist(), "mask": mask.tolist(),
            "algs": GREEDY_ALGS, "new": new, "batch_steps": batch_steps}  # fmt: skip
    out = run_isolated(PARITY.format(spec=json.dumps(spec)))
    report = json.loads(next(line[7:] for line in out.splitlines()[::-1] if line.startswith("RESULT ")))
    expected_logits = ref.forward(config, state, torch.tensor(ids), rope_theta=theta)
    if factor != 1:  # the scaling changes the logits beyond the tolerance
        assert (expected_logits - ref.forward(config, state, torch.tensor(ids))).abs().max() > 1e-3
    expected = {}
    for alg in GREEDY_ALGS:
        settings = dict(alg=alg, alg_temp=None, temperature=0.0, top_p=None, top_k=None, eps=1e-3, rope_theta=theta)
        one = [ref.diffusion_generate(config, state, torch.tensor([r]), max_new_tokens=new, steps=new, **settings)
               for r in rows]  # fmt: skip
        padded = ref.diffusion_generate(config, state, batch, mask, max_new_tokens=new, steps=batch_steps, **settings)
        assert not bool((padded[:, batch.shape[1] :] == config["mask_token_id"]).any())
        expected[alg] = {"rows": [r[0].tolist() for r in one], "batch": padded.tolist()}
    assert set(report) == {"AutoModel", "AutoModelForCausalLM"}
    for auto, entry in report.items():
        assert entry["class"] == "DreamModel" and entry["module"].startswith("transformers_modules"), auto
        assert entry["scaling"] == (None if factor == 1 else {"type": "ntk", "factor": 5})
        torch.testing.assert_close(torch.tensor(entry["logits"]), expected_logits, atol=ATOL, rtol=0)
        for alg in GREEDY_ALGS:
            assert entry[alg]["rows"] == expected[alg]["rows"], (auto, alg)
            assert entry[alg]["batch"] == expected[alg]["batch"], (auto, alg)


# -- a Hub id source (read from a local Hub cache, offline) --------------------------------------------------------


def test_hub_id_source_from_the_hub_cache(official, tmp_path, monkeypatch):
    """The real HfApi, offline, finds the source in a Hub cache folder (models--ORG--NAME/snapshots/COMMIT)."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_cache = tmp_path / "hub" / f"models--{OFFICIAL_ID.replace('/', '--')}"
    shutil.copytree(official[0], repo_cache / "snapshots" / commit)
    (repo_cache / "refs").mkdir()
    (repo_cache / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    out = convert(OFFICIAL_ID, tmp_path / "from-hub", "--rope-scaling", "ntk:5")
    assert ModelCard.load(out / "README.md").data.base_model == OFFICIAL_ID
    assert sorted(p.name for p in out.glob("*.py")) == sorted(REMOTE_CODE_FILES)
    assert read_json(out / "config.json")["rope_scaling"] == {"type": "ntk", "factor": 5}
    assert filecmp.cmp(official[0] / "model.safetensors", out / "model.safetensors", shallow=False)


# -- the model card's demos run on the built repo ------------------------------------------------------------------


def test_card_python_blocks_run_where_our_package_is_not_importable(official, built_ntk, tmp_path):
    config = official[1]
    readme = (built_ntk / "README.md").read_text()
    blocks = card_blocks(readme, "python")
    joined = "\n".join(blocks)
    assert f'"{REPO_ID}"' in joined and "AutoModel.from_pretrained(" in joined
    assert "AutoModelForCausalLM.from_pretrained(" in joined and ".diffusion_generate(" in joined
    assert 'cache="prefix"' in joined and "tokenizer.bos_token + " in joined and "log_likelihood(" in joined
    assert '"target_length": 8192' in joined  # four times Dream's trained length
    assert missing_small_lengths(joined) == []
    stdout, report = run_card_blocks(built_ntk, blocks, tmp_path, REPO_ID)
    assert report["module"].startswith("transformers_modules") and report["class"] == "DreamModel"
    assert report["prompt"][0] == report["bos"] == config["bos_token_id"]  # the BOS is prepended
    assert report["output"] == [1, len(report["prompt"]) + 8]
    batch_shape = json.loads(stdout.split("BATCH ", 1)[1].splitlines()[0])
    assert batch_shape[0] == 2 and "log p(continuation | context) >=" in stdout


def test_card_for_a_base_model_without_chat_template_runs(official, tmp_path):
    """A base checkpoint's tokenizer has no chat template: the demo prompts with plain text after the BOS."""
    folder, config, _ = official
    source = tmp_path / "no-chat"
    shutil.copytree(folder, source, ignore=shutil.ignore_patterns("chat_template.*"))
    tokenizer_config = read_json(source / "tokenizer_config.json")
    tokenizer_config.pop("chat_template", None)
    (source / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    out = convert(source, tmp_path / "Tiny-LongDream")
    first = card_blocks((out / "README.md").read_text(), "python")[0]
    assert "apply_chat_template" not in first and 'text = "The sky is blue because"' in first
    _, report = run_card_blocks(out, [first], tmp_path, REPO_ID)
    assert report["class"] == "DreamModel" and report["prompt"][0] == config["bos_token_id"]
    assert report["output"] == [1, len(report["prompt"]) + 8]


def test_card_states_the_dream_scaling_law(built_ntk):
    readme = (built_ntk / "README.md").read_text()
    assert "| Trained context (`trained_length`) | 2,048 tokens |" in readme
    assert "λ = " in readme and '`{"type": "ntk", "factor": 5}`' in readme
    # the demo factor is the law's for twice the trained length of this (tiny) config
    config = read_json(built_ntk / "config.json")
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    factor = max(2, ntk_scaling_factor(head_dim, config["rope_theta"], 2048, 4096))
    assert f'rope_scaling={{"type": "ntk", "factor": {factor}}}' in readme


def test_official_slow_tokenizer_loads_as_qwen2_tokenizer(official, tiny_dream, tmp_path):
    """The official repos ship vocab.json and merges.txt read by their own DreamTokenizer code (Qwen2.5's
    byte-level BPE with Dream's special tokens): the converted repo names transformers' Qwen2Tokenizer."""
    from transformers import AutoTokenizer

    folder, config, _ = official
    source = tmp_path / "slow-tokenizer"
    source.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(folder / name, source / name)
    fast = read_json(tiny_dream / "tokenizer.json")
    (source / "vocab.json").write_text(json.dumps(fast["model"]["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in fast["model"]["merges"]]
    (source / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    fields = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    tokenizer_config = read_json(folder / "tokenizer_config.json")
    tokenizer_config["added_tokens_decoder"] = {
        str(token["id"]): {k: token[k] for k in fields} for token in fast["added_tokens"]
    }
    (source / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    out = convert(source, tmp_path / "converted")
    assert read_json(out / "tokenizer_config.json")["tokenizer_class"] == "Qwen2Tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.mask_token) == (
        "<|beginoftext|>",
        "<|endoftext|>",
        "<|mask|>",
    )
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id) == (
        config["bos_token_id"],
        config["eos_token_id"],
        config["mask_token_id"],
    )
    text = "The sky is blue because of Rayleigh scattering."
    ids = tokenizer(tokenizer.bos_token + text, add_special_tokens=False).input_ids
    assert ids[0] == config["bos_token_id"] and tokenizer.decode(ids) == tokenizer.bos_token + text


# lm-eval's `--model hf` (HFLM) loads with AutoModelForCausalLM: the converted repo's auto_map must name it.
LM_EVAL_HF = """
import json
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
lm = HFLM(pretrained={folder!r}, trust_remote_code=True, dtype="float32", batch_size=1, device="cpu")
request = Instance(request_type="generate_until", doc={{}}, idx=0,
                   arguments=({context!r}, {{"until": ["never"], "max_gen_toks": 6, "steps": 6, "alg": "entropy", "do_sample": False}}))
(answer,) = lm.generate_until([request])
print("RESULT " + json.dumps({{"class": type(lm.model).__name__, "module": type(lm.model).__module__,
                               "answer": answer}}))
"""


def test_lm_eval_hf_loads_the_converted_repo(built, official):
    """Where the project is not importable: HFLM finds our DreamModel through the auto_map and generates."""
    from transformers import AutoTokenizer

    context = "<|beginoftext|>The capital of France is"
    out = run_isolated(LM_EVAL_HF.format(folder=str(built), context=context))
    result = json.loads(next(line[7:] for line in out.splitlines()[::-1] if line.startswith("RESULT ")))
    assert result["class"] == "DreamModel" and result["module"].startswith("transformers_modules")
    # the answer of our sampler, greedy (entropy confidence), with Dream's defaults for the rest
    tokenizer = AutoTokenizer.from_pretrained(built)
    model = DreamModel.from_pretrained(built).eval()
    ids = tokenizer(context, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        output = model.generate(ids, max_new_tokens=6, steps=6, alg="entropy", do_sample=False)
    assert result["answer"] == tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)
