"""A token given as a model argument (``token=hf_...``, ``use_auth_token=hf_...``) is used to reach the Hub, and
is in no file, no log line and no error: the real commands run with a fake token, and every file they leave and
everything they print is searched for it."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.file_download
import pytest

from longllada import cli
from longllada.eval_cli import SETTINGS_FILE, run_eval
from longllada.redaction import REDACTED, hub_token_environment, redact, split_secrets

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "longllada" / "models" / "tiny-llada-diffusion"
FAKE_TOKEN = "hf_FakeTokenForLongLLaDATests0123456789"
GRID = json.dumps({"context_lengths": [128], "depths": [0], "num_repeats": 1})


def files_holding(folder: Path, secret: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``secret``."""
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes())


def eval_argv(out: Path, *settings: str) -> list[str]:
    given = [arg for setting in settings for arg in ("--model_args", setting)]
    return ["--model", "longllada", *given, "--tasks", "longllada_niah", "--metadata", GRID, "--batch_size", "1",
            "--device", "cpu", "--output_path", str(out), "--log_samples"]  # fmt: skip


def test_split_and_redact_the_secret_keys():
    public, secrets = split_secrets({"pretrained": "x", "token": FAKE_TOKEN, "Use_Auth_Token": True, "dtype": "f"})
    assert public == {"pretrained": "x", "dtype": "f"} and secrets == {"token": FAKE_TOKEN, "Use_Auth_Token": True}
    nested = {"hf_hub_log_args": {"hub_results_org": "o", "token": FAKE_TOKEN}, "wandb_args": [{"api_key": "k"}]}
    assert redact(nested) == {"hf_hub_log_args": {"hub_results_org": "o", "token": REDACTED},
                              "wandb_args": [{"api_key": REDACTED}]}  # fmt: skip


def test_the_token_reaches_the_hub_client_only_while_its_setting_runs(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", "/nonexistent/token")  # no stored login to fall back to
    before = huggingface_hub.get_token()
    with hub_token_environment(FAKE_TOKEN):
        assert huggingface_hub.get_token() == FAKE_TOKEN
    assert huggingface_hub.get_token() == before


@pytest.mark.e2e
def test_eval_with_a_token_writes_it_nowhere(tmp_path, monkeypatch, capfd):
    """Two settings (the sweep path: progress file, `setting i/n` lines, lm-eval's results and samples of each)
    and then one setting (lm-eval's own path), each with a token: no output file and no printed line holds it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LONGLLADA_LOG_LEVEL", "DEBUG")
    out = tmp_path / "out"
    argv = eval_argv(out, f"pretrained={TWIN},token={FAKE_TOKEN}",
                     f"pretrained={TWIN},use_auth_token={FAKE_TOKEN},ntk_factor=2")  # fmt: skip
    assert run_eval(argv) == 0
    printed = capfd.readouterr()
    assert "setting 1/2: " in printed.err and f"token={REDACTED}" in printed.err
    progress = json.loads((out / SETTINGS_FILE).read_text())
    assert [entry["setting"] for entry in progress["finished"]] == [
        f"pretrained={TWIN},token={REDACTED}",
        f"pretrained={TWIN},use_auth_token={REDACTED},ntk_factor=2",
    ]
    assert len(list(out.rglob("results_*.json"))) == 2 and len(list(out.rglob("samples_*.jsonl"))) == 2
    assert FAKE_TOKEN not in printed.out + printed.err
    assert files_holding(tmp_path, FAKE_TOKEN) == []

    # the same sweep again: the token is no part of what a finished setting is recorded with
    assert run_eval(argv) == 0
    printed = capfd.readouterr()
    assert "setting 2/2: finished in an earlier run, skipped" in printed.err
    assert FAKE_TOKEN not in printed.out + printed.err

    single = tmp_path / "single"
    assert run_eval(eval_argv(single, f"pretrained={TWIN},token={FAKE_TOKEN}")) == 0
    printed = capfd.readouterr()
    assert len(list(single.rglob("results_*.json"))) == 1
    assert FAKE_TOKEN not in printed.out + printed.err
    assert files_holding(tmp_path, FAKE_TOKEN) == []


def test_a_refused_setting_with_a_token_names_it_redacted(tmp_path, capfd):
    argv = eval_argv(tmp_path / "out", f"pretrained={TWIN},token={FAKE_TOKEN}",
                     f"pretrained={TWIN},token={FAKE_TOKEN},steps=0")  # fmt: skip
    assert run_eval(argv) == 2
    printed = capfd.readouterr()
    (line,) = [line for line in printed.err.splitlines() if "error" in line]
    assert line.startswith("longllada eval: error: setting 2/2 (--model_args ") and f"token={REDACTED}" in line
    assert "steps=0 is not allowed" in line
    assert FAKE_TOKEN not in printed.out + printed.err and not (tmp_path / "out").exists()


class RecordingHub(http.server.BaseHTTPRequestHandler):
    """A Hub endpoint on the loopback address that knows no repo and records each request's Authorization."""

    authorizations: list[str | None] = []

    def _not_found(self) -> None:
        type(self).authorizations.append(self.headers.get("Authorization"))
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _not_found

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def recording_hub(monkeypatch, tmp_path):
    """huggingface_hub pointed at a local :class:`RecordingHub` (online, an empty cache, no stored login)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RecordingHub.authorizations = []
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"  # huggingface_hub < 1 builds URLs from it
    for module in (huggingface_hub.constants, huggingface_hub.file_download):
        monkeypatch.setattr(module, "HUGGINGFACE_CO_URL_TEMPLATE", template, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    import transformers.utils.hub

    monkeypatch.setattr(transformers.utils.hub, "HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", False, raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    reset_sessions = getattr(huggingface_hub.utils, "reset_sessions", lambda: None)
    reset_sessions()
    yield RecordingHub
    server.shutdown()
    reset_sessions()


def test_the_token_is_used_for_a_hub_model_and_kept_out_of_the_error(recording_hub, tmp_path, capfd):
    """A private Hub model: its config.json is read (before any model loads) with the token as the credential,
    and the error that the repo is not there does not quote it."""
    argv = eval_argv(tmp_path / "out", f"pretrained=longllada-tests/private-model,token={FAKE_TOKEN}")
    assert run_eval(argv) == 2
    printed = capfd.readouterr()
    assert f"Bearer {FAKE_TOKEN}" in recording_hub.authorizations
    (line,) = [line for line in printed.err.splitlines() if "error" in line]
    assert line.startswith("longllada eval: error: pretrained='longllada-tests/private-model'")
    assert FAKE_TOKEN not in printed.out + printed.err
    assert files_holding(tmp_path, FAKE_TOKEN) == []


def test_upload_keeps_the_token_out_of_its_error(tiny_model_dir, recording_hub, monkeypatch, capfd):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    assert cli.main(["upload", str(tiny_model_dir), "--repo-id", "longllada-tests/Tiny-LongLLaDA"]) == 2
    printed = capfd.readouterr()
    (line,) = [line for line in printed.err.splitlines() if line.strip()]
    assert line.startswith("longllada upload: error: ") and FAKE_TOKEN not in printed.out + printed.err
