"""Every Python example and every `longllada` command of the README runs, as written, on tiny stand-ins, and
does what the README says it does; the README's numbers are the ones the code and the committed runs give.

The Hub ids of the README are replaced by tiny local folders in the official format (official ``model_type``
and ``auto_map``, no code files: the official code can never run), the causal baseline by the shipped causal
twin, and the clone's ``longllada/models/`` by this checkout's. The only other changes are ``SMALLER``'s, a CPU
budget: ``--max-length 16384`` of the perplexity commands becomes 512, and each needle grid shrinks to one needle
per context length (the Hub model's 4000 and 8000 tokens becoming 256 and 512), both settings of the first eval
kept. Shell lines that install or launch (``pip``, ``make``,
``accelerate``) are not run here; CI runs ``make test``.
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
ONE_NEEDLE_PER_LENGTH = '"depths": [50], "num_repeats": 1'
SMALLER = {  # written -> run here; each must occur in the README's commands
    "--max-length 16384": "--max-length 512",
    '"context_lengths": [4000, 8000]': '"context_lengths": [256, 512]',
    '"depths": [0, 50, 100], "num_repeats": 1': ONE_NEEDLE_PER_LENGTH,
    '"depths": [0, 50, 100], "num_repeats": 2': ONE_NEEDLE_PER_LENGTH,
}


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
    # the clone's shipped twins first: the stand-ins' own paths may contain the same words
    text = re.sub(r"(?<![\w/])longllada/models/", str(REPO / "longllada" / "models") + "/", text)
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


# What each Python example says it does, checked after it ran (in the same process), by a phrase of the example.
CLAIMS = {
    "answer = tok(": """
assert out.shape[1] == ids.shape[1] + 32 and ids.shape[1] < fast.shape[1] <= ids.shape[1] + 32
assert type(model).__module__.startswith("modeling_longllada")  # our classes, not the repo's code
assert model.config.rope_scaling == {"type": "ntk", "target_length": 16384}
assert answer and answer == tok(" Paris").input_ids[-len(answer):] and tok.bos_token_id not in answer
assert ll <= 0 and stderr >= 0  # a bound on a log-probability
""",
    "diffusion_generate(": """
assert ids[0, 0].item() == tok.bos_token_id and int((ids[0] == tok.bos_token_id).sum()) == 1  # BOS once
assert type(model).__module__.startswith("modeling_longllada") and model.config.rope_scaling_factor == 5
assert out.shape[1] == ids.shape[1] + 32 and blocks.shape[1] == ids.shape[1] + 32
""",
}


def test_the_readme_has_the_examples_this_file_runs():
    assert len(blocks("python")) >= 2 and len(commands()) >= 5
    assert all(any(written in command for command in commands()) for written in SMALLER)  # none left stale
    assert all(any(phrase in block for block in blocks("python")) for phrase in CLAIMS)
    sections = re.findall(r"^## (.+)$", README, flags=re.M)
    assert sections[0] == "The first five minutes, on a CPU"  # after what the package is
    assert README.index("LongLLaDA gives diffusion language models") < README.index("## ")


def test_install_lines_a_user_can_run():
    install = README.split("## Install", 1)[1].split("## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", install, flags=re.S)
    assert "pip install longllada" not in README  # not on PyPI
    user_lines = [line for line in block.splitlines() if line.startswith("pip install")]
    assert user_lines and not any("dev" in line.split("#")[0] for line in user_lines)
    assert "pip install ." in block


def test_the_two_run_picture_is_niah_plot_s():
    """The README's picture of a two-setting sweep is a figure `longllada niah-plot` wrote (its metadata field),
    and its caption gives the command's settings: two --model_args, the grid and the needles per cell."""
    from longllada.figure_files import figure_creator

    (picture,) = re.findall(r"!\[niah-plot of two runs\]\(([^)]+)\)", README)
    assert figure_creator(REPO / picture) == "longllada niah-plot"
    caption = " ".join(README.split(picture, 1)[1].split("*")[1].split())
    assert "two-setting sweep" in caption and caption.count("--model_args") == 1 and ",ntk_target=1024" in caption
    assert '"num_repeats": 2' in caption and "2 needles a cell" in caption


def test_one_spelling_of_the_multi_gpu_command():
    spellings = set(re.findall(r"accelerate launch --multi_gpu --num_processes \d+ -m \S+(?: \w+)?", README))
    assert spellings == {"accelerate launch --multi_gpu --num_processes 2 -m longllada eval"}
    assert README.count("**Several GPUs.**") == 1


def test_the_readme_numbers():
    """λ from the scaling law, the windows the scaled bases cover, the demo's findings and the sweep's times."""
    from modeling_longllada import ntk_scaling_factor, ntk_supported_length

    text = " ".join(README.split())
    stated = re.findall(r"\((\d+), ([\d.e]+), (\d+)\) → (\d+) needs λ = (\d+)", text)
    assert len(stated) == 2
    for head_dim, theta, trained, target, factor in stated:
        assert ntk_scaling_factor(int(head_dim), float(theta), int(trained), int(target)) == int(factor)
    assert "`,ntk_factor=4` / `14` / `31` / `55` (8k / 16k / 24k / 32k)" in text
    assert [ntk_scaling_factor(128, 500000.0, 4096, k * 1024) for k in (8, 16, 24, 32)] == [4, 14, 31, 55]
    assert "`,ntk_factor=4` / `13` (16k / 32k)" in text and "λ 4 → 17,541, λ 13 → 33,418" in text
    assert [ntk_scaling_factor(128, 500000.0, 8192, n) for n in (16384, 32768)] == [4, 13]
    assert [ntk_supported_length(128, 500000.0, 8192, f) for f in (4, 13)] == [17541, 33418]
    assert "λ(T) = 3, 12, 56" in text
    assert [ntk_scaling_factor(32, 10000.0, 256, n) for n in (512, 1024, 2048)] == [3, 12, 56]
    summary = json.loads((REPO / "docs" / "demo" / "summary.json").read_text())
    ratio = {twin: summary["ppl"][twin]["ppl"][-1] / summary["ppl"][twin]["ppl"][3] for twin in ("diffusion", "causal")}
    assert summary["ppl"]["diffusion"]["lengths"][3] == 256 and summary["ppl"]["diffusion"]["lengths"][-1] == 2048
    assert f"reaches {ratio['diffusion']:.0f}× its trained-length value, against {ratio['causal']:.0f}×" in text
    benchmarks = (REPO / "benchmarks" / "README.md").read_text()
    assert "514 s on one H200 and 286 s on two" in text and "285.9 s" in benchmarks and "513.8 s" in benchmarks


def test_the_newer_families_figures_are_the_committed_gpu_results():
    """The README's table of the newer families on one H100: each figure from benchmarks/results."""
    results = REPO / "benchmarks" / "results"

    def load(name: str) -> dict:
        return json.loads((results / name).read_text(encoding="utf-8"))

    text = " ".join(README.split())
    cache = {(r["prompt_tokens"], r["cache"]): r for r in load("llada2_block_cache_h100.json")["runs"]}
    profile = load("llada2_step_profile_h100.json")["runs"]["after"]["families"]
    llada2, moe = profile["llada2"], profile["lladamoe"]
    ratio = next(c for c in load("llada2_block_cache_h100.json")["comparisons"] if c["prompt_tokens"] == 32768)
    assert (
        f"| {llada2['4096']['generate_prefix_s']:.2f} s (steady; first {cache[4096, 'prefix']['seconds']:.2f} s) / "
        f"{llada2['4096']['generate_none_s']:.2f} s | {cache[32768, 'prefix']['seconds']:.2f} s / "
        f"{cache[32768, 'none']['seconds']:.1f} s ({ratio['recompute_over_cache']:.1f}×) | "
        f"{cache[131072, 'prefix']['seconds']:.1f} s, {cache[131072, 'prefix']['peak_gib']:.1f} GiB |"
    ) in text
    assert f"| {moe['4096']['generate_prefix_s']:.2f} s | {moe['32768']['generate_prefix_s']:.2f} s |" in text
    assert f"replays from a CUDA graph in {llada2['4096']['graph_ms']:.2f} ms" in text
    gemma = {
        r["prompt_tokens"]: r
        for name in ("diffusion_gemma_h100.json", "diffusion_gemma_256k_h100.json")
        for r in load(name)["rows"]
        if r["mode"] == "chunked"
    }
    cells = " | ".join(f"{gemma[n]['total_s']:.1f} s, {gemma[n]['peak_gib']:.1f} GiB" for n in (32768, 131072, 262144))
    assert cells in text
    settings = load("settings_one_process_h100.json")["summary"]
    assert f"costs {settings['fixed_per_setting_s']:.2f} s a setting" in text


def test_the_lambda_table_is_the_law_s():
    """Each row of the README's λ table (one per family): λ at 2×, 4× and 8× the trained length, by the law over
    the rotated dimensions; the half-rotated LLaDA-MoE alternative too."""
    from modeling_longllada import ntk_scaling_factor

    rows = re.findall(
        r"^\| ([^|]+?) \| (\d+) \((\d+)\) \| ([\d,]+) \| ([\d,]+) \| (\d+) \| (\d+) \| (\d+) \|$", README, re.M
    )
    assert [row[0] for row in rows][:4] == [
        "LLaDA-8B",
        "Dream-v0-7B",
        "LLaDA-MoE-7B-A1B †",
        "LLaDA2.0-mini, LLaDA2.1-mini",
    ]
    for _, rotary, _, theta, trained, *factors in rows:
        theta, trained = float(theta.replace(",", "")), int(trained.replace(",", ""))
        law = [ntk_scaling_factor(int(rotary), theta, trained, k * trained) for k in (2, 4, 8)]
        assert law == [int(f) for f in factors]
    assert "would give 2 / 6 / 18" in README
    assert [ntk_scaling_factor(64, 50000.0, 4096, k * 4096) for k in (2, 4, 8)] == [2, 6, 18]
    from modeling_longllada.diffusion_gemma import law_ntk_factor

    assert "the critical dimension is 396 > 128" in README and "the law gives λ = 1 at 2×, 4× and 8×" in README
    assert [law_ntk_factor(512, 128, 1e6, 262144, k * 262144) for k in (2, 4, 8)] == [1, 1, 1]


def test_the_rope_comparison_table_is_the_committed_sweep():
    """The README's table of context-extension methods on the twins: each number is the committed sweep's mean
    NIAH score of the method's setting for that target length (docs/rope_comparison/*/rope_comparison.csv)."""
    import csv

    columns = {"unscaled": "none", "NTK": "ntk ×{s}", "interpolation": "linear ×{s}", "YaRN": "yarn ×{s}",
               "LongRoPE": "longrope-law ×{s}", "per length": {"diffusion": "ntk-per-length", "causal": "dynamic ×{s}"}}  # fmt: skip
    rows = {
        twin: cells.split(" | ")
        for twin, cells in re.findall(
            r"^\| (diffusion|causal) \| ((?:[\d.]+ / [\d.]+ / [\d.]+(?: \| )?)+) \|$", README, re.M
        )
    }
    assert set(rows) == {"diffusion", "causal"}
    for twin, cells in rows.items():
        folder = REPO / "docs" / "rope_comparison" / twin
        table = {row["setting"]: row for row in csv.DictReader((folder / "rope_comparison.csv").open(encoding="utf-8"))}
        assert (folder / "rope_comparison.png").is_file() and len(cells) == len(columns)
        for cell, setting in zip(cells, columns.values()):
            setting = setting[twin] if isinstance(setting, dict) else setting
            for stated, s in zip(cell.split(" / "), (2, 4, 8)):
                row = table[setting.format(s=s)]
                assert stated == f"{float(row[f'niah_{256 * s}']):.1f}", (twin, setting, s)


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example_runs(index, stand_ins, tmp_path):
    code = substitute(blocks("python")[index], stand_ins)
    code += "".join(check for phrase, check in CLAIMS.items() if phrase in code)
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
    # what the first five minutes say they make
    from longllada.figure_files import figure_creator

    assert len(list((tmp_path / "results").rglob("results_*.json"))) >= 2  # the two settings, and more after
    assert figure_creator(tmp_path / "niah.png") == "longllada niah-plot"
    assert figure_creator(tmp_path / "ppl.png") == "longllada ppl-plot"
    niah_table = (tmp_path / "tables" / "niah.md").read_text()
    assert "tiny-llada-diffusion, no scaling" in niah_table and "tiny-llada-diffusion, NTK λ=3 (T=512)" in niah_table
    # what the later sections say their commands make
    assert figure_creator(tmp_path / "heatmap.png") == "longllada niah-plot"
    assert figure_creator(tmp_path / "figure1.png") == "longllada ppl-plot"
    ppl_rows = [row for row in (tmp_path / "tables" / "ppl.md").read_text().splitlines() if row.startswith("| ")]
    assert any("NTK" in row and "T=16384" in row for row in ppl_rows) and len(ppl_rows) >= 2 + 3  # header, 3 runs
    built = json.loads((tmp_path / "build" / "config.json").read_text())
    assert built["rope_scaling"] == {"type": "ntk", "target_length": 16384} and "auto_map" in built
