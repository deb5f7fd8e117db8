"""How large a task's grid of prompts may be, checked before it is built: what this machine's memory can hold
while building it, and what the evaluated model can hold for its longest prompt.

- The grid: every prompt is held as text and as token ids while it is built and evaluated, about
  ``GRID_BYTES_PER_TOKEN`` bytes a token in all, so the prompt tokens of the whole grid must fit in this machine's
  memory. (Measured: building a NIAH grid of 2.64 M prompt tokens kept 58 bytes a token and peaked at 84, before
  lm-eval's own copies of the prompts.)
- The model: one forward pass over a prompt of L tokens holds at least ``ACTIVATION_COPIES`` activations of
  [L, hidden] (the diffusion sampler refuses a generation on the same estimate), at 2 bytes a number at the
  least (bf16), so L is bounded by the largest memory a model can run in here (a GPU, or the CPU's memory).

Both bounds estimate from below what the grid as requested needs, so a refusal here is no close call.
``check_task_options`` runs the checks of every requested task of ours without building anything (``longllada
eval`` calls it for every setting before the first model loads); the task folders call :func:`check_grid`
themselves too, so that a plain ``lm_eval`` run is bounded as well.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

GRID_BYTES_PER_TOKEN = 64  # prompt text and token ids while the grid is built, cached and batched (measured 58-84)
ACTIVATION_COPIES = 4  # [L, hidden] activations a forward pass holds at least (as the sampler estimates)
SMALLEST_ELEMENT_BYTES = 2  # bf16
HIDDEN_SIZE_KEYS = ("hidden_size", "d_model", "n_embd", "dim")  # config.json's name of the width, by family
MODEL_KEYS = ("pretrained", "model")


def physical_memory() -> int | None:
    """Bytes of this machine's memory (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def largest_device_memory() -> tuple[int | None, str]:
    """The most memory one device here offers a model: the largest GPU's or the machine's, and which."""
    memory, where = physical_memory(), "the CPU's memory"
    try:
        import torch

        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                total = torch.cuda.get_device_properties(index).total_memory
                if memory is None or total > memory:
                    memory, where = total, f"GPU {index}"
    except ImportError:
        pass
    return memory, where


def model_width(metadata: dict[str, Any]) -> tuple[int, str] | None:
    """The evaluated model's hidden size from its config.json (a local folder, or one in the Hugging Face cache:
    nothing is downloaded and no code runs), and its name; None when it cannot be read."""
    name = next((metadata[key] for key in MODEL_KEYS if isinstance(metadata.get(key), str) and metadata[key]), None)
    if name is None:
        return None
    try:
        from transformers import PretrainedConfig

        location = {key: metadata[key] for key in ("revision", "subfolder") if isinstance(metadata.get(key), str)}
        config, _ = PretrainedConfig.get_config_dict(name, local_files_only=True, **location)
    except Exception:  # noqa: BLE001  (no config to be had here: the model's own loading reports that)
        return None
    for key in HIDDEN_SIZE_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, name
    return None


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.1f} GiB"


def check_grid(
    task: str, field: str, lengths: Sequence[int], prompts_per_length: int, metadata: dict[str, Any]
) -> None:
    """Refuse (``ValueError``, with the numbers) a grid of ``prompts_per_length`` prompts at each of ``lengths``
    tokens (the lengths given as ``field``) that this machine cannot hold, or whose longest prompt the model named
    in ``metadata`` cannot run here."""
    if not lengths:
        return
    longest, total = max(lengths), sum(lengths) * prompts_per_length
    memory = physical_memory()
    if memory is not None and total * GRID_BYTES_PER_TOKEN > memory:
        allowed = memory // GRID_BYTES_PER_TOKEN
        raise ValueError(
            f"{task}: the grid of {len(lengths)} length(s) up to {longest} tokens with {prompts_per_length} "
            f"prompt(s) each holds {total} prompt tokens, about {_gib(total * GRID_BYTES_PER_TOKEN)} to build; "
            f"this machine has {_gib(memory)}; allowed: at most {allowed} prompt tokens in all (fewer or shorter "
            f"{field}, or fewer prompts per length)"
        )
    width = model_width(metadata)
    device_memory, where = largest_device_memory()
    if width is None or device_memory is None:
        return
    hidden, name = width
    per_token = ACTIVATION_COPIES * hidden * SMALLEST_ELEMENT_BYTES
    if longest * per_token > device_memory:
        raise ValueError(
            f"{task}: {field} holds {longest}; one prompt of {longest} tokens needs at least "
            f"{_gib(longest * per_token)} of activations in {name} (hidden size {hidden}) and the largest memory "
            f"here is {where}'s {_gib(device_memory)}; allowed: lengths up to {device_memory // per_token}"
        )


def check_task_options(task_names: Sequence[str], metadata: dict[str, Any]) -> None:
    """Every check our task folders make of ``metadata`` (merged ``--metadata`` and model arguments) before
    building, for the requested tasks of ours (names starting ``longllada_niah``, ``longllada_ruler``,
    ``longllada_longbench``); other names are left to lm-eval."""
    if any(name.startswith("longllada_niah") for name in task_names):
        from lm_eval_tasks.longllada_niah.utils import grid_settings

        grid_settings(metadata)
    if any(name.startswith("longllada_ruler") for name in task_names):
        from lm_eval_tasks.longllada_ruler.utils import parse_options

        parse_options(metadata)
    if any(name.startswith("longllada_longbench") for name in task_names):
        from lm_eval_tasks.longllada_longbench.utils import check_options

        check_options(metadata)
