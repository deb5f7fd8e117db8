"""Publishing to the Hub: `longllada upload` / `python -m hub_upload`.

The built folder is checked with the real consumers: transformers loads it as remote code in a process where
this project is not importable, every code block of its model card runs against it, huggingface_hub parses the
card, `longllada ppl` runs the card's command. The push is checked with a recording stand-in for ``HfApi`` (the
Hub is unreachable here); it is the only stand-in in this file.
"""

from __future__ import annotations

import filecmp
import fnmatch
import inspect
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import run_isolated
from huggingface_hub import HfApi, ModelCard, ModelCardData
from safetensors.torch import load_file, save_file

import hub_upload
from hub_upload.build import safetensors_keys
from hub_upload.model_card import ntk_table_rows
from hub_upload.options import parse_rope_scaling, parse_size
from hub_upload.push import REPLACED_PATTERNS
from longllada import cli
from modeling_longllada import REMOTE_CODE_FILES, LongLLaDAConfig, LongLLaDAModelLM, ntk_scaling_factor
from modeling_longllada.configuration_longllada import OFFICIAL_DEFAULTS
from modeling_longllada.families import FAMILIES, LLADA

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "longllada-tests/Tiny-LongLLaDA"
OFFICIAL_ID = "GSAI-ML/LLaDA-8B-Base"
SECRET_TOKEN = "hf_NeverPrintedNeverWritten0123456789"
OUR_CODE = sorted(REMOTE_CODE_FILES)
OFFICIAL_AUTO_MAP = {
    "AutoConfig": "configuration_llada.LLaDAConfig",
    "AutoModel": "modeling_llada.LLaDAModelLM",
    "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
}
# The official code must never be copied nor run: importing it fails loudly.
FAKE_OFFICIAL_CODE = 'raise RuntimeError("the official LLaDA remote code was executed")\n'


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def upload(argv: list[str], api=None) -> int:
    """`python -m hub_upload ARGV` in-process, with ``api`` (a recording stand-in) as the HfApi factory."""
    return hub_upload.main([str(a) for a in argv], api_factory=api.factory if api is not None else None)


def trained_length(folder: Path) -> int:
    return int(read_json(folder / "config.json")["max_sequence_length"])


# -- the recording stand-in for HfApi ---------------------------------------------------------------------------


class RecordingHfApi:
    """Records every HfApi call (name, args, kwargs) and plays a remote repo held in memory."""

    def __init__(self, remote_files: dict[str, bytes] | None = None, snapshot_source: Path | None = None):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.remote = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        self.remote.update(remote_files or {})
        self.branches = {"main"}
        self.uploads: list[dict] = []  # per upload_folder: revision and every file's bytes at upload time
        self.snapshot_source = snapshot_source

    def _record(self, name: str, args: tuple, kwargs: dict) -> None:
        self.calls.append((name, args, kwargs))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def factory(self, **kwargs) -> RecordingHfApi:
        self._record("HfApi", (), kwargs)
        return self

    def create_repo(self, *args, **kwargs):
        self._record("create_repo", args, kwargs)
        return f"https://huggingface.co/{args[0]}"

    def list_repo_refs(self, *args, **kwargs):
        self._record("list_repo_refs", args, kwargs)
        return SimpleNamespace(branches=[SimpleNamespace(name=b) for b in sorted(self.branches)])

    def list_repo_files(self, *args, **kwargs):
        self._record("list_repo_files", args, kwargs)
        return sorted(self.remote)

    def hf_hub_download(self, *args, **kwargs):
        self._record("hf_hub_download", args, kwargs)
        path = Path(kwargs["cache_dir"]) / args[1]
        path.write_bytes(self.remote[args[1]])
        return str(path)

    def create_branch(self, *args, **kwargs):
        self._record("create_branch", args, kwargs)
        self.branches.add(kwargs["branch"])

    def upload_folder(self, *args, **kwargs):
        self._record("upload_folder", args, kwargs)
        folder = Path(kwargs["folder_path"])
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.uploads.append({"revision": kwargs.get("revision"), "files": files})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{len(self.uploads):040x}")

    def snapshot_download(self, *args, **kwargs):
        self._record("snapshot_download", args, kwargs)
        dest = Path(kwargs.get("local_dir") or self.snapshot_source.parent / "downloaded")
        dest.mkdir()
        for path in self.snapshot_source.iterdir():
            if any(fnmatch.fnmatch(path.name, pattern) for pattern in kwargs["allow_patterns"]):
                shutil.copyfile(path, dest / path.name)
        return str(dest)


def check_calls_match_real_hfapi(api: RecordingHfApi) -> None:
    """Every recorded call binds to the signature of the installed huggingface_hub's HfApi."""
    for name, args, kwargs in api.calls:
        target = HfApi.__init__ if name == "HfApi" else getattr(HfApi, name)
        inspect.signature(target).bind(None, *args, **kwargs)


# -- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model published with NTK factor 2 (dry run into a folder named like the repo)."""
    out = tmp_path_factory.mktemp("built") / "Tiny-LongLLaDA"
    assert upload([tiny_model_dir, "--repo-id", REPO_ID, "--rope-scaling", "ntk:2", "--dry-run", "--out", out]) == 0
    return out


@pytest.fixture(scope="module")
def official_source(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model in the official checkpoint's format: official config.json (model_type llada, official
    auto_map), weights in two safetensors shards with an index, official-looking remote code and a card."""
    source = tmp_path_factory.mktemp("official")
    ours = read_json(tiny_model_dir / "config.json")
    config = {k: v for k, v in ours.items() if k in OFFICIAL_DEFAULTS or k.endswith("_token_id")}
    config.update(model_type="llada", architectures=["LLaDAModelLM"], auto_map=OFFICIAL_AUTO_MAP, torch_dtype="float32")
    (source / "config.json").write_text(json.dumps(config, indent=2))
    state = load_tiny_state(tiny_model_dir)
    names = sorted(state)
    half = len(names) // 2
    halves = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for file, keys in halves.items():
        save_file({k: state[k] for k in keys}, source / file, metadata={"format": "pt"})
    weight_map = {k: file for file, keys in halves.items() for k in keys}
    (source / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for name in ("configuration_llada.py", "modeling_llada.py"):
        (source / name).write_text(FAKE_OFFICIAL_CODE)
    copy_tokenizer(tiny_model_dir, source)
    (source / "README.md").write_text("---\nlicense: mit\nlanguage:\n- en\n- zh\n---\n# LLaDA-8B-Base\n")
    (source / "LICENSE").write_text("MIT License (test copy)\n")
    return source


def load_tiny_state(tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    index = tiny_model_dir / "model.safetensors.index.json"
    if index.is_file():
        state = {}
        for file in sorted(set(read_json(index)["weight_map"].values())):
            state.update(load_file(tiny_model_dir / file))
        return state
    return load_file(tiny_model_dir / "model.safetensors")


def copy_tokenizer(src: Path, dest: Path) -> None:
    for path in src.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "added_tokens", "chat_template")):
            shutil.copyfile(path, dest / path.name)


# -- command-line values -----------------------------------------------------------------------------------------


def test_rope_scaling_specs_and_branches():
    assert parse_rope_scaling("ntk:4").rope_scaling == {"type": "ntk", "factor": 4}
    assert parse_rope_scaling("ntk:4").branch == "ntk-4"
    assert parse_rope_scaling("ntk:2.5").rope_scaling == {"type": "ntk", "factor": 2.5}
    target = parse_rope_scaling("ntk-target:16k")
    assert target.rope_scaling == {"type": "ntk", "target_length": 16384} and target.branch == "ntk-target-16384"
    per_length = parse_rope_scaling("ntk-per-length")
    assert per_length.rope_scaling == {"type": "ntk_per_length"} and per_length.branch == "ntk-per-length"
    assert parse_rope_scaling("none").rope_scaling is None and parse_rope_scaling("none").branch == "main"
    for bad in ("ntk:0.5", "ntk:", "ntk:nan", "bogus:2", "ntk-target:-3", "dynamic:0"):
        with pytest.raises(ValueError, match="rope-scaling"):
            parse_rope_scaling(bad)
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2MiB") == 2 * 2**20 and parse_size("1000") == 1000
    with pytest.raises(ValueError, match="shard-size.*allowed"):
        parse_size("5 parsecs")


def test_bad_arguments_are_named(tiny_model_dir, tmp_path, capsys):
    args = [tiny_model_dir, "--repo-id", REPO_ID, "--dry-run"]
    with pytest.raises(SystemExit):
        upload([tiny_model_dir, "--repo-id", "no-namespace", "--dry-run"])
    assert "--repo-id='no-namespace'" in capsys.readouterr().err
    assert upload([*args, "--rope-scaling", "ntk:2", "--rope-scaling", "ntk-per-length", "--revision", "x"]) == 2
    assert "--revision 'x' applies to a single --rope-scaling" in capsys.readouterr().err
    assert upload([*args, "--rope-scaling", "ntk-target:8"]) == 2
    assert "is below the trained length 256" in capsys.readouterr().err
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "file").write_text("x")
    assert upload([*args, "--out", tmp_path / "occupied"]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    not_llada = tmp_path / "bert"
    not_llada.mkdir()
    (not_llada / "config.json").write_text('{"model_type": "bert"}')
    assert upload([not_llada, "--repo-id", REPO_ID, "--dry-run"]) == 2
    from modeling_longllada.families import model_types

    assert model_types()[:4] == ("llada", "longllada", "Dream", "longllada_dream")  # every family's, ours first
    assert f"model_type='bert' is not supported; allowed: {model_types()}" in capsys.readouterr().err


# -- the built folder --------------------------------------------------------------------------------------------


def test_built_folder_holds_our_code_config_and_weights(built, tiny_model_dir):
    files = {p.name for p in built.iterdir()}
    assert {"config.json", "generation_config.json", "README.md", *OUR_CODE} <= files
    assert "__init__.py" not in files
    for name in OUR_CODE:
        assert (built / name).read_bytes() == (REPO / "modeling_longllada" / name).read_bytes()
    source, config = read_json(tiny_model_dir / "config.json"), read_json(built / "config.json")
    assert config["model_type"] == "longllada" and config["architectures"] == ["LongLLaDAModelLM"]
    assert config["auto_map"] == LLADA.auto_map
    assert config["rope_scaling"] == {"type": "ntk", "factor": 2}
    fields = {k: v for k, v in config.items() if k not in ("auto_map", "architectures", "model_type")}
    assert config["max_position_embeddings"] == LongLLaDAConfig(**fields).max_position_embeddings
    assert config["max_position_embeddings"] > source["max_sequence_length"]
    for key, value in source.items():
        if key not in ("rope_scaling", "max_position_embeddings"):
            assert config[key] == value, key
    generation = read_json(built / "generation_config.json")
    assert generation["block_length"] == 32 and generation["steps"] is None and generation["do_sample"] is False
    assert generation["remasking"] == "low_confidence" and generation["cache"] == "none"
    for name in ("mask_token_id", "eos_token_id", "pad_token_id"):
        assert generation[name] == source[name]
    for path in tiny_model_dir.glob("*.safetensors"):
        assert filecmp.cmp(path, built / path.name, shallow=False)


def test_model_card_metadata_is_valid(built):
    card = ModelCard.load(built / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert data["tags"] == ["llada", "diffusion", "long-context", "ntk", "custom_code"]
    assert data["license"] == "other"  # the tiny model's folder names no license
    assert "base_model" not in data  # a local folder is no Hub id
    # RepoCard.validate() posts the card to the Hub; offline, the metadata round-trips through ModelCardData.
    assert ModelCardData(**data).to_dict() == data
    assert ModelCard(str(card)).data.to_dict() == data
    assert f"# {REPO_ID.split('/')[1]}" in card.text


def test_model_card_ntk_table_comes_from_the_config(built):
    config = read_json(built / "config.json")
    head_dim, theta, trained = config["d_model"] // config["n_heads"], config["rope_theta"], trained_length(built)
    table = re.findall(r"^\| ([\d,]+)(?: \(\d+k\))? \| [\d.]+ \| (\d+) \|", (built / "README.md").read_text(), re.M)
    lengths = [int(length.replace(",", "")) for length, _ in table]
    assert {2 * trained, 32 * trained, 8192, 131072} <= set(lengths) and lengths == sorted(lengths)
    for length, factor in table:
        assert int(factor) == ntk_scaling_factor(head_dim, theta, trained, int(length.replace(",", "")))
    # LLaDA-8B's own numbers (the LongLLaDA paper): λ = 4 for 8k.
    rows = {row["length"]: row["factor"] for row in ntk_table_rows({**OFFICIAL_DEFAULTS, "model_type": "llada"})}
    assert rows[8192] == 4 and rows[16384] > 4 and min(rows) == 8192


# -- every code block of the card runs against the built folder, for every family --------------------------------

# Runs the card's python blocks one after the other in one namespace, as a reader runs a notebook; reports the
# first block's model and shapes, and the shape of the batched example's output.
CARD_DRIVER = """
import json
namespace = {{"__name__": "__main__"}}
for i, code in enumerate(json.loads({blocks!r})):
    print(f"=== block {{i}}", flush=True)
    exec(compile(code, f"<model card block {{i}}>", "exec"), namespace)
    if i == 0:
        model, output, prompt = namespace["model"], namespace["output"], namespace["input_ids"]
        sequences = output.sequences if hasattr(output, "sequences") else output
        report = {{"module": type(model).__module__, "class": type(model).__name__, "prompt": prompt[0].tolist(),
                  "output": list(sequences.shape), "bos": namespace["tokenizer"].bos_token_id,
                  "dtype": str(next(model.parameters()).dtype), "device": str(next(model.parameters()).device)}}
        print("REPORT", json.dumps(report))
    if "batch" in namespace and "batch_output" not in namespace:
        namespace["batch_output"] = namespace["output"]
        print("BATCH", json.dumps(list(namespace["output"].shape)), flush=True)
print("=== all blocks ran")
"""
# Small lengths for the tiny models on two CPU cores (pattern -> replacement); each must be found in the card.
SMALL_LENGTHS = {
    r"max_new_tokens=64\b": "max_new_tokens=8",
    r"\bsteps=(32|64)\b": "steps=4",  # steps in all (64) or a block's (block diffusion: 32)
    r"block_length=32\b": "block_length=4",
    r"mc_num=128, batch_size=32\b": "mc_num=4, batch_size=4",
}


def missing_small_lengths(code: str) -> list[str]:
    """The patterns of ``SMALL_LENGTHS`` that ``code`` lacks."""
    return [pattern for pattern in SMALL_LENGTHS if not re.search(pattern, code)]


def card_blocks(readme: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", readme, re.M | re.S)


def run_card_blocks(folder: Path, blocks: list[str], cwd: Path, repo_id: str) -> tuple[str, dict]:
    """Run the card's python ``blocks`` on ``folder`` (the repo id ``repo_id`` replaced, lengths made small) where
    this project is not importable; returns the stdout and the first block's report."""
    local = []
    for block in blocks:
        block = block.replace(f'"{repo_id}"', repr(str(folder)))
        for pattern, new in SMALL_LENGTHS.items():
            block = re.sub(pattern, new, block)
        local.append(block)
    stdout = run_isolated(CARD_DRIVER.format(blocks=json.dumps(local)), cwd=cwd)
    assert "=== all blocks ran" in stdout
    return stdout, json.loads(stdout.split("REPORT ", 1)[1].splitlines()[0])


@pytest.fixture(scope="module")
def family_built(tiny_family_dir, tmp_path_factory):
    """A function: the tiny model of a family (``tiny-model --arch NAME``) published with NTK factor 2 (dry run),
    built once a module; returns the folder and its repo id."""
    folders: dict[str, tuple[Path, str]] = {}

    def build(family) -> tuple[Path, str]:
        if family.name not in folders:
            repo_id = f"longllada-tests/Tiny-{family.name}"
            out = tmp_path_factory.mktemp(f"built-{family.name}") / repo_id.split("/")[1]
            argv = [tiny_family_dir(family.name), "--repo-id", repo_id, "--rope-scaling", "ntk:2", "--dry-run"]
            assert upload([*argv, "--out", out]) == 0
            folders[family.name] = (out, repo_id)
        return folders[family.name]

    return build


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_card_block_is_python_or_bash(family_built, family):
    built, _ = family_built(family)
    readme = (built / "README.md").read_text()
    fences = re.findall(r"^```(\w*)$", readme, re.M)
    languages = fences[0::2]
    assert set(languages) == {"python", "bash"} and len(fences) % 2 == 0
    assert len(card_blocks(readme, "python")) + len(card_blocks(readme, "bash")) == len(languages)
    assert ModelCard.load(built / "README.md").data.tags[0] == family.card.tag


# A native family's card (transformers' classes and RoPE fields) is run by its own tests.
@pytest.mark.parametrize("family", [f for f in FAMILIES if not f.native], ids=lambda f: f.name)
def test_card_python_blocks_run_where_our_package_is_not_importable(family_built, family, tmp_path):
    built, repo_id = family_built(family)
    blocks = card_blocks((built / "README.md").read_text(), "python")
    assert len(blocks) >= 5
    joined = "\n".join(blocks)
    assert f'"{repo_id}"' in joined and "rope_scaling={" in joined and '"target_length"' in joined
    assert "log_likelihood(" in joined and f".{family.card.generate.method}(" in joined
    assert missing_small_lengths(joined) == []
    stdout, report = run_card_blocks(built, blocks, tmp_path, repo_id)
    assert report["class"] == family.architecture
    assert family.native or report["module"].startswith("transformers_modules")
    assert report["output"] == [1, len(report["prompt"]) + 8]
    assert report["device"] != "cpu" or report["dtype"] == "torch.float32"  # bf16 matmuls are slow on most CPUs
    # the prompt starts with the BOS where the family's prompts do (the tokenizer or the card's code adds it)
    assert (report["prompt"][0] == report["bos"]) == (family.bos_prefix or family.tokenizer.add_bos)
    assert json.loads(stdout.split("BATCH ", 1)[1].splitlines()[0])[0] == 2
    assert "log p(continuation | context) >=" in stdout


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.likelihood], ids=lambda f: f.name)
def test_card_ppl_command_runs(family_built, family, tmp_path):
    built, repo_id = family_built(family)
    trained = family.config_cls().from_pretrained(built).trained_length
    (command,) = [b for b in card_blocks((built / "README.md").read_text(), "bash") if "longllada ppl" in b]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["longllada", "ppl"] and argv[argv.index("--model") + 1] == repo_id
    assert argv[argv.index("--max-length") + 1] == str(4 * trained)
    small = {"--model": str(built), "--max-length": "64", "--chunk": "32", "--mc": "2",
             "--out": str(tmp_path / "ppl.jsonl")}  # fmt: skip
    for flag, value in small.items():
        argv[argv.index(flag) + 1] = value
    assert cli.main([*argv[1:], "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "ppl.jsonl").read_text().splitlines()]
    assert rows[0]["kind"] == "diffusion" and [r["length"] for r in rows[1:]] == [32, 64]
    assert all(math.isfinite(r["ppl"]) for r in rows[1:])


@pytest.mark.e2e
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_card_lm_eval_command_runs(family_built, family, tmp_path):
    built, repo_id = family_built(family)
    (command,) = [b for b in card_blocks((built / "README.md").read_text(), "bash") if "longllada eval" in b]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:4] == ["longllada", "eval", "--model", "longllada"]
    model_args = argv[argv.index("--model_args") + 1]
    assert model_args.startswith(f"pretrained={repo_id},")
    argv[argv.index("--model_args") + 1] = model_args.replace(repo_id, str(built))
    argv[argv.index("--output_path") + 1] = str(tmp_path / "results")
    metadata = json.loads(argv[argv.index("--metadata") + 1])
    argv[argv.index("--metadata") + 1] = json.dumps({**metadata, "context_lengths": [128], "depths": [50]})
    assert cli.main([*argv[1:], "--limit", "1"]) == 0
    (results,) = (tmp_path / "results").rglob("results_*.json")
    data = json.loads(results.read_text())
    assert "score,none" in data["results"]["longllada_niah"] and data["config"]["longllada_family"] == family.name


# -- sources: official safetensors, .bin, Hub id -----------------------------------------------------------------


def test_official_checkpoint_converts_with_our_code(official_source, tiny_model_dir, tmp_path):
    out = tmp_path / "LongLLaDA-official"
    target = 4 * trained_length(tiny_model_dir)
    args = ["--repo-id", REPO_ID, "--rope-scaling", f"ntk-target:{target}", "--base-model", OFFICIAL_ID]
    assert upload([official_source, *args, "--dry-run", "--out", out]) == 0
    files = {p.name for p in out.iterdir()}
    assert not {"modeling_llada.py", "configuration_llada.py"} & files and set(OUR_CODE) <= files
    assert "LICENSE" in files
    official, config = read_json(official_source / "config.json"), read_json(out / "config.json")
    for key, value in official.items():
        if key not in ("model_type", "architectures", "auto_map"):
            assert config[key] == value, key
    assert config["model_type"] == "longllada" and config["auto_map"] == LLADA.auto_map
    assert config["rope_scaling"] == {"type": "ntk", "target_length": target}
    assert config["max_position_embeddings"] == target
    for name in ["model.safetensors.index.json", *(p.name for p in official_source.glob("*.safetensors"))]:
        assert filecmp.cmp(official_source / name, out / name, shallow=False), name
    data = ModelCard.load(out / "README.md").data.to_dict()
    assert data["license"] == "mit" and data["base_model"] == OFFICIAL_ID and data["language"] == ["en", "zh"]
    model = LongLLaDAModelLM.from_pretrained(out).eval()
    reference = LongLLaDAModelLM.from_pretrained(tiny_model_dir).eval()
    assert model.config.rope_scaling_factor == ntk_scaling_factor(
        model.config.head_dim, model.config.rope_theta, model.config.max_sequence_length, target
    )
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_bin_source_is_converted_and_sharded(tiny_model_dir, tmp_path):
    source = tmp_path / "bin-source"
    source.mkdir()
    state = load_tiny_state(tiny_model_dir)
    torch.save(state, source / "pytorch_model.bin")
    shutil.copyfile(tiny_model_dir / "config.json", source / "config.json")
    copy_tokenizer(tiny_model_dir, source)
    largest = max(t.numel() * t.element_size() for t in state.values())
    shard_size = 2 * largest
    out = tmp_path / "converted"
    assert upload([source, "--repo-id", REPO_ID, "--shard-size", shard_size, "--dry-run", "--out", out]) == 0
    assert not list(out.glob("*.bin"))
    index = read_json(out / "model.safetensors.index.json")
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and set(index["weight_map"]) == set(state)
    assert sorted(set(index["weight_map"].values())) == [p.name for p in shards]
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in state.values())
    for shard in shards:
        assert sum(t.numel() * t.element_size() for t in load_file(shard).values()) <= shard_size
        assert set(safetensors_keys(shard)) == {k for k, f in index["weight_map"].items() if f == shard.name}
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert type(model).__name__ == "LongLLaDAModelLM"
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_hub_id_source_is_downloaded_without_code(official_source, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    api = RecordingHfApi(snapshot_source=official_source)
    out = tmp_path / "from-hub"
    assert upload([OFFICIAL_ID, "--repo-id", REPO_ID, "--dry-run", "--out", out], api) == 0
    assert api.names() == ["HfApi", "snapshot_download"]
    _, args, kwargs = api.calls[1]
    assert args == (OFFICIAL_ID,) and kwargs["repo_type"] == "model"
    assert not any(fnmatch.fnmatch("modeling_llada.py", p) for p in kwargs["allow_patterns"])
    check_calls_match_real_hfapi(api)
    assert ModelCard.load(out / "README.md").data.base_model == OFFICIAL_ID
    assert sorted(p.name for p in out.glob("*.py")) == OUR_CODE


# -- the push ----------------------------------------------------------------------------------------------------


def assert_no_token_anywhere(api: RecordingHfApi, captured) -> None:
    assert SECRET_TOKEN not in captured.out and SECRET_TOKEN not in captured.err
    for upload_record in api.uploads:
        for name, content in upload_record["files"].items():
            assert SECRET_TOKEN.encode() not in content, name


def test_push_call_sequence_for_a_new_repo(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)
    api = RecordingHfApi()
    argv = [tiny_model_dir, "--repo-id", REPO_ID, "--rope-scaling", "ntk:2", "--private", "--commit-message", "v1"]
    assert upload(argv, api) == 0
    captured = capsys.readouterr()
    assert api.names() == ["HfApi", "create_repo", "list_repo_refs", "list_repo_files", "upload_folder"]
    assert api.calls[0][2] == {"token": SECRET_TOKEN}
    assert api.calls[1][1:] == ((REPO_ID,), {"private": True, "exist_ok": True, "repo_type": "model"})
    assert api.calls[3][2]["revision"] == "main"
    upload_kwargs = api.calls[4][2]
    assert upload_kwargs["repo_id"] == REPO_ID and upload_kwargs["revision"] == "main"
    assert upload_kwargs["commit_message"] == "v1" and upload_kwargs["delete_patterns"] == REPLACED_PATTERNS
    uploaded = api.uploads[0]["files"]
    assert {"README.md", "config.json", "generation_config.json", *OUR_CODE} <= set(uploaded)
    assert json.loads(uploaded["config.json"])["rope_scaling"] == {"type": "ntk", "factor": 2}
    assert f"https://huggingface.co/{REPO_ID}/commit/" in captured.out
    assert_no_token_anywhere(api, captured)
    check_calls_match_real_hfapi(api)


def test_push_several_scalings_one_branch_each(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)
    api = RecordingHfApi()
    target = 4 * trained_length(tiny_model_dir)
    specs = ["ntk:2", f"ntk-target:{target}", "ntk-per-length"]
    argv = [tiny_model_dir, "--repo-id", REPO_ID] + [x for spec in specs for x in ("--rope-scaling", spec)]
    assert upload(argv, api) == 0
    # One check of the target before any upload (each new branch starts from main), then a branch and a commit each.
    checks = ["create_repo", "list_repo_refs", "list_repo_files"]
    assert api.names() == ["HfApi", *checks] + ["create_branch", "upload_folder"] * 3
    assert api.calls[3][2]["revision"] == "main"
    branches = ["ntk-2", f"ntk-target-{target}", "ntk-per-length"]
    created = [kwargs for name, _, kwargs in api.calls if name == "create_branch"]
    assert created == [{"branch": b, "exist_ok": True, "repo_type": "model"} for b in branches]
    assert [u["revision"] for u in api.uploads] == branches
    scalings = [json.loads(u["files"]["config.json"])["rope_scaling"] for u in api.uploads]
    assert scalings == [
        {"type": "ntk", "factor": 2},
        {"type": "ntk", "target_length": target},
        {"type": "ntk_per_length"},
    ]
    card = api.uploads[2]["files"]["README.md"].decode()
    assert 'revision="ntk-per-length"' in card and f"pretrained={REPO_ID},revision=ntk-per-length," in card
    assert "| Effective RoPE base | chosen per forward pass from its length |" in card
    (ppl,) = [b for b in card_blocks(card, "bash") if "longllada ppl" in b]
    # `longllada ppl` reads a branch from a local snapshot of it.
    model_arg = shlex.split(ppl)[shlex.split(ppl).index("--model") + 1]
    assert model_arg == f"$(hf download {REPO_ID} --revision ntk-per-length --quiet)"
    weights = [name for name in api.uploads[0]["files"] if name.endswith(".safetensors")]
    assert all(api.uploads[i]["files"][w] == api.uploads[0]["files"][w] for i in (1, 2) for w in weights)
    assert_no_token_anywhere(api, capsys.readouterr())
    check_calls_match_real_hfapi(api)


def test_push_refuses_a_repo_with_other_code_unless_forced(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)
    remote = {"config.json": b"{}", "modeling_llada.py": FAKE_OFFICIAL_CODE.encode(), "README.md": b"# theirs"}
    remote.update({name: b"# an older version\n" for name in OUR_CODE})
    api = RecordingHfApi(remote_files=remote)
    argv = [tiny_model_dir, "--repo-id", REPO_ID]
    assert upload(argv, api) == 1
    captured = capsys.readouterr()
    assert "modeling_llada.py: not part of LongLLaDA's code" in captured.err and "--force" in captured.err
    assert f"{OUR_CODE[0]}: a different version" in captured.err
    assert api.names() == ["HfApi", "create_repo", "list_repo_refs", "list_repo_files"] + ["hf_hub_download"] * len(
        OUR_CODE
    )
    assert not api.uploads
    assert_no_token_anywhere(api, captured)

    several = RecordingHfApi(remote_files=remote)
    assert upload([*argv, "--rope-scaling", "ntk:2", "--rope-scaling", "ntk-per-length"], several) == 1
    assert "create_branch" not in several.names() and not several.uploads  # nothing changed on any branch
    capsys.readouterr()

    forced = RecordingHfApi(remote_files=remote)
    assert upload([*argv, "--force"], forced) == 0
    captured = capsys.readouterr()
    assert forced.names()[-1] == "upload_folder" and "--force: overwriting" in captured.out
    assert_no_token_anywhere(forced, captured)
    check_calls_match_real_hfapi(api)
    check_calls_match_real_hfapi(forced)


def test_push_over_the_same_code_needs_no_force(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)
    remote = {"config.json": b"{}", **{n: (REPO / "modeling_longllada" / n).read_bytes() for n in OUR_CODE}}
    api = RecordingHfApi(remote_files=remote)
    assert upload([tiny_model_dir, "--repo-id", REPO_ID, "--revision", "v2"], api) == 0
    downloads = ["hf_hub_download"] * len(OUR_CODE)
    assert api.names() == ["HfApi", "create_repo", "list_repo_refs", "list_repo_files", *downloads, "create_branch", "upload_folder"]  # fmt: skip
    assert [args[1] for name, args, _ in api.calls if name == "hf_hub_download"] == OUR_CODE
    assert api.uploads[0]["revision"] == "v2"
    assert api.calls[1][2]["private"] is None  # no --private: the account's default visibility
    assert_no_token_anywhere(api, capsys.readouterr())


def test_push_without_a_token_stops_before_any_call(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    api = RecordingHfApi()
    assert upload([tiny_model_dir, "--repo-id", REPO_ID], api) == 2
    assert "no Hugging Face token: set HF_TOKEN" in capsys.readouterr().err
    assert api.calls == []


def test_dry_run_lists_files_and_calls_nothing(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)
    api = RecordingHfApi()
    assert upload([tiny_model_dir, "--repo-id", REPO_ID, "--dry-run"], api) == 0
    out = capsys.readouterr().out
    assert api.calls == []
    assert f"dry run: would upload to {REPO_ID}@main" in out and "removed" in out
    assert re.search(r"^  config\.json +[\d.]+ k?B$", out, re.M)
    assert re.search(r"^  total: \d+ files, [\d.]+ [kMG]?B \(\d+ bytes\)$", out, re.M)


# -- the two entry points ----------------------------------------------------------------------------------------


def test_longllada_upload_has_the_same_arguments(tiny_model_dir, tmp_path, capsys):
    argv = [str(tiny_model_dir), "--repo-id", REPO_ID, "--rope-scaling", "ntk-per-length", "--dry-run", "--out", "x"]
    ours = vars(cli.build_parser().parse_args(["upload", *argv]))
    theirs = vars(hub_upload.build_parser().parse_args(argv))
    assert {k: v for k, v in ours.items() if k not in ("command", "func")} == theirs
    assert (
        cli.main(["upload", str(tiny_model_dir), "--repo-id", REPO_ID, "--dry-run", "--out", str(tmp_path / "a")]) == 0
    )
    assert "dry run: would upload" in capsys.readouterr().out
    result = subprocess.run(
        [sys.executable, "-m", "hub_upload", str(tiny_model_dir), "--repo-id", REPO_ID, "--dry-run",
         "--rope-scaling", "ntk:3", "--out", str(tmp_path / "b")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_json(tmp_path / "b" / "config.json")["rope_scaling"] == {"type": "ntk", "factor": 3}
