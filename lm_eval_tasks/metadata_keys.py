"""The ``--metadata`` keys of every longllada task folder, and the one check of them.

One ``--metadata`` goes to every task of a run, so another folder's key is no typo; lm-eval also merges
``--model_args`` in, whose keys no task can list. A key that none of the folders reads is therefore an error
only when it nearly matches one of theirs (a misspelling such as ``context_lenghts``), naming the keys.
"""

from __future__ import annotations

import difflib
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
