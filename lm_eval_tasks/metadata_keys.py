"""The ``--metadata`` keys of every longllada task folder, and the one check of them and of their whole numbers.

One ``--metadata`` goes to every task of a run, so another folder's key is no typo; lm-eval also merges
``--model_args`` in, whose keys no task can list. A key that none of the folders reads is therefore an error
only when it nearly matches one of theirs (a misspelling such as ``context_lenghts``), naming the keys.

:func:`check_count` is the tasks' one check of a whole number (lengths, counts, seeds), in the words of
``modeling_longllada``'s ``check_number``, which the task folders do not import (importing that package registers
its model classes, which would change what a plain ``lm_eval --model hf`` run loads).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Any

TASK_KEYS = {
    "longllada_niah": ("context_lengths", "depths", "num_repeats", "haystack", "seed"),
    "longllada_ruler": ("max_seq_lengths", "num_samples", "seed", "essays_path", "squad_path", "hotpotqa_path"),
    "longllada_longbench": ("max_length", "data_dir"),
}
# The tokenizer's name (as lm-eval's RULER finds it), whether its code may run, and the task's own metadata.
SHARED_KEYS = ("tokenizer", "pretrained", "model", "trust_remote_code", "version")
# Model arguments of lm-eval's hf and vllm models and of --model longllada that look like a key above.
MODEL_ARG_KEYS = ("tokenizer_mode", "max_model_len", "max_gen_toks", "seq_length")
TYPO_CUTOFF = 0.8  # difflib similarity from which an unknown key is taken for a misspelt known one
MAX_COUNT = 2**32  # the largest length or count a task takes (modeling_longllada's MAX_COUNT)
SEED_RANGE = (-(2**63), 2**63 - 1)  # Python's random.Random and numpy's SeedSequence take any 64-bit seed


def check_count(field: str, value: Any, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    """``value`` as an int within [minimum, maximum]: an int, a string of digits (``--model_args`` may deliver
    one) or a float with a whole value (JSON's ``1e3``); never a bool, NaN or an infinity. Else a ValueError
    naming the field, the value and what is allowed."""
    number: Any = value
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        number = int(value)
    elif isinstance(value, float) and math.isfinite(value) and value == int(value):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not minimum <= number <= maximum:
        raise ValueError(f"{field}={value!r} is not allowed; allowed: an integer >= {minimum} and <= {maximum}")
    return number


def check_metadata_keys(metadata: dict[str, Any], folder: str, extra: Iterable[str] = ()) -> None:
    """Refuse a key of ``metadata`` that is not known but nearly matches a known one, naming ``folder``'s keys
    (``extra``: keys the folder's YAML files set for themselves)."""
    own = TASK_KEYS[folder]
    known = {*SHARED_KEYS, *extra, *(key for keys in TASK_KEYS.values() for key in keys)}
    for key in metadata:
        if key in known or key in MODEL_ARG_KEYS:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=TYPO_CUTOFF)
        if close:
            raise ValueError(
                f"--metadata key {key!r} is unknown (did you mean {close[0]!r}?); the keys {folder} reads: "
                f"{', '.join(own)}; the tokenizer from tokenizer, pretrained or model"
            )
