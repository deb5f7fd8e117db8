"""Every Python example and every `longllada` command of the README runs, as written, on tiny stand-ins.

The Hub ids of the README are replaced by tiny local folders in the official format (official ``model_type``
and ``auto_map``, no code files: the official code can never run), the causal baseline by the shipped causal
twin. The only other change: ``--max-length 16384`` of the perplexity commands becomes 512 (a CPU budget).
Shell lines that install or launch (``pip``, ``make``, ``accelerate``) are not run here; CI runs ``make test``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modeling_longllada.configuration_dream import OFFICIAL_DEFAULTS as DREAM_FIELDS
from modeling_longllada.configuration_longllada import OFFICIAL_DEFAULTS as LLADA_FIELDS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
CAUSAL_TWIN = REPO / "longllada" / "models" / "tiny-llama-ar"
LLADA_AUTO_MAP = {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM",
                  "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"}  # fmt: skip
DREAM_AUTO_MAP = {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"}
SMALLER = {"--max-length 16384": "--max-length 512"}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def official(source: Path, out: Path, fields: dict, model_type: str, architecture: str, auto_map: dict) -> Path:
    """``source`` (one of our tiny folders) in the official format of its family."""
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("*.py", ".longllada*"))
    ours = json.loads((out / "config.json").read_text())
    config = {k: v for k, v in ours.items() if k in fields or k.endswith("_token_id")}
    config.update(model_type=model_type, architectures=[architecture], auto_map=auto_map)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


@pytest.fixture(scope="module")
def stand_ins(tiny_model_dir, tiny_dream_dir, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hub")
    llada = official(tiny_model_dir, root / "llada", LLADA_FIELDS, "llada", "LLaDAModelLM", LLADA_AUTO_MAP)
    dream = official(tiny_dream_dir, root / "dream", DREAM_FIELDS, "Dream", "DreamModel", DREAM_AUTO_MAP)
    return {
        "GSAI-ML/LLaDA-8B-Base": str(llada),
        "GSAI-ML/LLaDA-8B-Instruct": str(llada),
        "GSAI-ML/LLaDA-1.5": str(llada),
        "Dream-org/Dream-v0-Base-7B": str(dream),
        "Dream-org/Dream-v0-Instruct-7B": str(dream),
        "meta-llama/Meta-Llama-3-8B": str(CAUSAL_TWIN),
        "./LLaDA-8B-Base": str(llada),
    }


def substitute(text: str, stand_ins: dict[str, str]) -> str:
    for hub_id, folder in sorted(stand_ins.items(), key=lambda item: -len(item[0])):
        text = text.replace(hub_id, folder)
    for written, smaller in SMALLER.items():
        text = text.replace(written, smaller)
    return text


def commands() -> list[str]:
    """The README's `longllada ...` shell commands, continuation lines joined."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  # ")[0].strip()
            if line.startswith("longllada "):
                found.append(line)
    return found


def test_the_readme_has_the_examples_this_file_runs():
    assert len(blocks("python")) >= 2 and len(commands()) >= 5
    assert README.startswith("# LongLLaDA\n\n```bash\nmake demo") and "make test" in README.split("\n\n")[1]


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example_runs(index, stand_ins, tmp_path):
    code = substitute(blocks("python")[index], stand_ins)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.e2e
def test_shell_commands_run_in_order(stand_ins, tmp_path):
    """The commands share a working folder, as a user's shell would (the plot reads what the eval wrote)."""
    for command in commands():
        argv = shlex.split(substitute(command, stand_ins))
        result = subprocess.run([sys.executable, "-m", "longllada", *argv[1:]], cwd=tmp_path, capture_output=True,
                                text=True, timeout=900,
                                env={**__import__("os").environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
