"""`longllada upload` reads every weight file whole before building or pushing (a file cut short is one error
line, not a published repo), and a push that cannot reach the Hub is one error line, not a traceback. The Hub
calls go through real ``HfApi`` objects: in offline mode, and against an endpoint where nothing listens."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import HfApi

import hub_upload
from hub_upload.build import verify_safetensors
from longllada import cli

REPO_ID = "longllada-tests/Tiny-LongLLaDA"
CLOSED_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def one_error_line(capsys, prog: str = "longllada upload") -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def copy_model(tiny_model_dir: Path, dest: Path) -> Path:
    shutil.copytree(tiny_model_dir, dest)
    return dest


def cut(path: Path, n_bytes: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-n_bytes])


def test_verify_safetensors_reads_the_whole_layout(tiny_model_dir, tmp_path):
    keys = verify_safetensors(tiny_model_dir / "model.safetensors")
    assert "model.transformer.wte.weight" in keys
    longer = tmp_path / "longer.safetensors"
    longer.write_bytes((tiny_model_dir / "model.safetensors").read_bytes() + b"\0" * 4)
    with pytest.raises(ValueError, match="longer than its tensors"):
        verify_safetensors(longer)


@pytest.mark.parametrize("n_bytes", [1, 4096])
def test_truncated_safetensors_is_refused_before_building(tiny_model_dir, tmp_path, capsys, n_bytes):
    source = copy_model(tiny_model_dir, tmp_path / "source")
    cut(source / "model.safetensors", n_bytes)
    out = tmp_path / "built"
    assert cli.main(["upload", str(source), "--repo-id", REPO_ID, "--dry-run", "--out", str(out)]) == 2
    assert "model.safetensors is cut short" in one_error_line(capsys)
    assert not out.exists()  # nothing was built


def test_truncated_shard_and_wrong_index_are_refused(tiny_model_dir, tmp_path, capsys):
    from modeling_longllada import LongLLaDAModelLM

    source = tmp_path / "sharded"
    shutil.copytree(tiny_model_dir, source, ignore=shutil.ignore_patterns("*.safetensors"))
    LongLLaDAModelLM.from_pretrained(tiny_model_dir).save_pretrained(source, max_shard_size="100KB")
    shards = sorted(source.glob("model-*.safetensors"))
    assert len(shards) > 1 and (source / "model.safetensors.index.json").is_file()
    args = ["upload", str(source), "--repo-id", REPO_ID, "--dry-run"]
    assert cli.main(args) == 0  # whole: accepted
    capsys.readouterr()
    index = source / "model.safetensors.index.json"
    original_index = index.read_text()
    index.write_text(original_index.replace(f'"{shards[1].name}"', f'"{shards[0].name}"', 1))
    assert cli.main(args) == 2
    assert f"does not match {shards[0].name}" in one_error_line(capsys)
    index.write_text(original_index)
    cut(shards[-1], 100)
    assert cli.main(args) == 2
    assert f"{shards[-1].name} is cut short" in one_error_line(capsys)


def test_truncated_bin_is_one_line(tiny_model_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    source = tmp_path / "bin"
    shutil.copytree(tiny_model_dir, source, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(tiny_model_dir / "model.safetensors"), source / "pytorch_model.bin")
    cut(source / "pytorch_model.bin", 200)
    assert cli.main(["upload", str(source), "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert "pytorch_model.bin is cut short or not a PyTorch checkpoint" in one_error_line(capsys)


def test_offline_push_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", "hf_NotARealToken0123456789")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert cli.main(["upload", str(tiny_model_dir), "--repo-id", REPO_ID]) == 2
    line = one_error_line(capsys)
    assert f"could not reach {REPO_ID} on the Hub (OfflineModeIsEnabled:" in line and "nothing was uploaded" in line


def test_unreachable_hub_is_one_line(tiny_model_dir, monkeypatch, capsys, request):
    monkeypatch.setenv("HF_TOKEN", "hf_NotARealToken0123456789")
    # `make test` runs offline (HF_HUB_OFFLINE=1), which huggingface_hub checks first: lift it for this test
    # only, whose endpoint is a closed port on the loopback address (nothing leaves the machine).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub < 1.0 caches its HTTP session with the offline adapter mounted: a fresh one now, and again
    # (offline) after the test.
    reset_sessions = getattr(huggingface_hub.utils, "reset_sessions", lambda: None)
    reset_sessions()
    request.addfinalizer(reset_sessions)

    def closed_hub(token: str) -> HfApi:
        return HfApi(token=token, endpoint=CLOSED_ENDPOINT)

    assert hub_upload.main([str(tiny_model_dir), "--repo-id", REPO_ID], api_factory=closed_hub) == 2
    line = one_error_line(capsys, "python -m hub_upload")
    # httpx names it ConnectError; requests (older huggingface_hub) ConnectionError
    assert re.search(rf"could not reach {REPO_ID} on the Hub \((ConnectError|ConnectionError):", line), line


def test_hub_source_offline_is_one_line(monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert cli.main(["upload", "no-such-org/no-such-model", "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert "SOURCE 'no-such-org/no-such-model' could not be downloaded from the Hub" in one_error_line(capsys)


@pytest.mark.parametrize("size", ["0.5", "0", "nan", "inf", "-5GB", "1e9"])
def test_shard_size_must_be_a_whole_positive_size(tiny_model_dir, capsys, size):
    assert cli.main(["upload", str(tiny_model_dir), "--repo-id", REPO_ID, "--dry-run", f"--shard-size={size}"]) == 2
    assert f"--shard-size {size!r} is not a size" in one_error_line(capsys)


# -- the sizes of config.json against the weights ----------------------------------------------------------------


def edit_config(folder: Path, **changes) -> None:
    import json

    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("family", "changes", "message"),
    [
        ("llada", {"d_model": 96}, "tensor(s) of other shapes (model.transformer.blocks.0.attn_norm.weight: weights "
                                   "[64], config [96]"),
        ("llada", {"n_layers": 1}, "tensor(s) the model has no place for (model.transformer.blocks.1."),
        ("llada", {"n_layers": 3}, "tensor(s) of the model missing (model.transformer.blocks.2."),
        ("llada", {"mlp_hidden_size": 256}, "model.transformer.blocks.0.ff_out.weight: weights [64, 192], config "
                                            "[64, 256]"),
        ("llada", {"weight_tying": True}, "no place for (model.transformer.ff_out.weight)"),
        ("dream", {"intermediate_size": 100}, "model.layers.0.mlp.down_proj.weight: weights [64, 192], config "
                                              "[64, 100]"),
        ("dream", {"num_key_value_heads": 2}, "model.layers.0.self_attn.k_proj.bias: weights [64], config [32]"),
        ("dream", {"vocab_size": 1024}, "lm_head.weight: weights [512, 64], config [1024, 64]"),
    ],
    ids=["llada-width", "llada-fewer-layers", "llada-more-layers", "llada-mlp", "llada-tied", "dream-mlp",
         "dream-kv-heads", "dream-vocab"],
)  # fmt: skip
def test_config_sizes_that_disagree_with_the_weights_are_refused_before_building(
    request, tmp_path, capsys, family, changes, message
):
    """Only tensor names were checked: a config with other sizes built a repo that from_pretrained refuses."""
    source = copy_model(request.getfixturevalue("tiny_model_dir" if family == "llada" else "tiny_dream_dir"),
                        tmp_path / "source")  # fmt: skip
    edit_config(source, **changes)
    out = tmp_path / "built"
    assert cli.main(["upload", str(source), "--repo-id", REPO_ID, "--dry-run", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "config.json does not match the weights" in line and message in line, line
    assert not out.exists()  # nothing was built


def test_config_sizes_are_checked_against_bin_weights_too(tiny_model_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    source = tmp_path / "bin"
    shutil.copytree(tiny_model_dir, source, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(tiny_model_dir / "model.safetensors"), source / "pytorch_model.bin")
    assert cli.main(["upload", str(source), "--repo-id", REPO_ID, "--dry-run"]) == 0  # sizes agree: built
    capsys.readouterr()
    edit_config(source, n_heads=8, n_kv_heads=8, d_model=128)
    assert cli.main(["upload", str(source), "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert "model.transformer.blocks.0.attn_norm.weight: weights [64], config [128]" in one_error_line(capsys)


def test_two_uploads_into_one_out_folder_are_refused(tiny_model_dir, tmp_path, capsys):
    from longllada.output_lock import OutputLock

    out = tmp_path / "built"
    with OutputLock(out, "longllada upload"):  # another upload building there right now
        assert cli.main(["upload", str(tiny_model_dir), "--repo-id", REPO_ID, "--dry-run", "--out", str(out)]) == 2
        line = one_error_line(capsys)
    assert f"--out {out} is being written by another `longllada upload` (process " in line
    assert not out.exists()
    assert cli.main(["upload", str(tiny_model_dir), "--repo-id", REPO_ID, "--dry-run", "--out", str(out)]) == 0
    assert not (tmp_path / ".built.lock").exists()
