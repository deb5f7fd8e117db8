"""What a longllada task records of its run in lm-eval's results file (``configs.<task>.metadata``), so that a
plot or table made in another folder, or of a run of lm-eval's own ``--model hf``, knows the model and the grid.

lm-eval records the merged ``--metadata``/``--model_args`` there as given: a relative ``pretrained=`` folder
means nothing once the results are read elsewhere, so the model is recorded under ``longllada_model_path``
resolved against the folder the run started in (a Hub id as given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_PATH_KEY = "longllada_model_path"
# Where the model's name arrives in the merged metadata, in the order lm-eval's own tasks read it.
MODEL_KEYS = ("pretrained", "model", "tokenizer")


def model_path(metadata: dict[str, Any]) -> str | None:
    """The model named in ``metadata``: an existing local folder as an absolute path, anything else as given."""
    for key in MODEL_KEYS:
        name = metadata.get(key)
        if isinstance(name, str) and name:
            local = Path(name).expanduser()
            return str(local.resolve()) if local.is_dir() else name
    return None


def record_run(task: Any, **facts: Any) -> None:
    """Add the model's resolved path and ``facts`` to ``task.config.metadata`` (what the results file keeps)."""
    metadata = task.config.metadata if isinstance(task.config.metadata, dict) else {}
    path = model_path(metadata)
    if path is not None:
        metadata[MODEL_PATH_KEY] = path
    metadata.update(facts)
    task.config.metadata = metadata
