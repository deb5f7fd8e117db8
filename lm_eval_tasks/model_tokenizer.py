"""The evaluated model's tokenizer, which the longllada tasks size their prompts with.

lm-eval hands every task the ``--model_args`` merged into its metadata, so a task finds the model under
``tokenizer``, ``pretrained`` or ``model`` (as lm-eval's RULER does) and the user's ``trust_remote_code`` beside it.
The tokenizer loads through ``longllada.loading`` with that choice: a tokenizer whose repo holds its own code runs
it only with ``trust_remote_code=True`` in ``--model_args`` (or ``--metadata``); without it, one error line says so.
"""

from __future__ import annotations

import functools
from typing import Any

# Where the model name arrives in the merged metadata/model_args (lm-eval's RULER reads the same keys).
TOKENIZER_KEYS = ("tokenizer", "pretrained", "model")


def tokenizer_name(metadata: dict[str, Any]) -> str | None:
    """The first non-empty string under ``tokenizer``, ``pretrained`` or ``model``."""
    for key in TOKENIZER_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def trust_remote_code(metadata: dict[str, Any]) -> bool:
    """The user's ``trust_remote_code`` from the merged metadata (False when absent)."""
    from longllada.loading import check_trust_remote_code

    return check_trust_remote_code(metadata.get("trust_remote_code"))


@functools.cache
def load_tokenizer(name: str, allow_remote_code: bool = False) -> Any:
    """The tokenizer of a model name or local folder, its repo's code only if ``allow_remote_code``. A tokenizer
    that encodes text to no tokens (a repo without tokenizer files) is refused: prompts could not be sized."""
    from longllada.loading import MODEL_ARGS_FLAG
    from longllada.loading import load_tokenizer as load

    tokenizer = load(name, trust_remote_code=allow_remote_code, flag=MODEL_ARGS_FLAG)
    if not tokenizer("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"]:
        raise ValueError(
            f"tokenizer {name!r} encodes text to 0 tokens, so prompt lengths cannot be measured; give a model or "
            "tokenizer with tokenizer files (--model_args tokenizer=<name>)"
        )
    return tokenizer


def metadata_tokenizer(metadata: dict[str, Any]) -> Any | None:
    """The tokenizer the metadata names (an object under one of the keys is returned as it is), or None."""
    for key in TOKENIZER_KEYS:
        value = metadata.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str) or hasattr(value, "__fspath__"):
            return load_tokenizer(str(value), trust_remote_code(metadata))
        return value
    return None
