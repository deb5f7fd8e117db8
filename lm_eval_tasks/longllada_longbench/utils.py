"""LongBench for LongLLaDA: lm-eval's LongBench prompts and metrics, with LongBench's middle truncation.

lm-eval loads this file by path (``!function utils.load_longbench`` in the YAMLs). Each task YAML (generated from
lm-eval's own by ``_generate_configs.py``) hands ``load_longbench`` its subset, lm-eval's prompt template, the
Hub dataset lm-eval reads and the task's generation budget, through ``dataset_kwargs``. The metrics are lm-eval's
(``lm_eval.tasks.longbench.metrics``), named directly in the YAMLs.

What differs from lm-eval's ``longbench`` tasks:

- a prompt longer than the model's window is truncated in the middle, as LongBench prescribes: its first and last
  halves are kept, counted in the evaluated model's tokens, to ``max_length`` minus the task's generation budget
  (lm-eval would cut the prompt's start, instruction included);
- ``data_dir`` reads ``<subset>.jsonl`` files in LongBench's own layout (``input``, ``context``, ``answers``,
  ``all_classes``, ...) instead of the Hub dataset, which stays the default.

Metadata keys (``--metadata`` JSON, merged by lm-eval with ``--model_args``): ``max_length`` (default: the model's
window, found as lm-eval's ``--model hf`` finds it), ``data_dir``; the tokenizer comes from ``tokenizer`` /
``pretrained`` / ``model``, as for lm-eval's RULER. A key that is a near miss of a known one (``data_dirs``) is an
error listing the known keys. Every document reports the same metrics (one cell per task), so the tasks run
under data parallelism as they are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lm_eval_tasks.metadata_keys import check_count, check_metadata_keys

logger = logging.getLogger(__name__)

# What each generated task YAML passes in dataset_kwargs.
REPLACEMENT_CHARACTER = "\ufffd"
TASK_KEYS = ("longbench_subset", "longbench_prompt", "longbench_hub_dataset", "longbench_max_gen_toks")


def _positive_int(field: str, value: Any) -> int:
    return check_count(field, value, minimum=1)


def load_tokenizer(kwargs: dict[str, Any]):
    """The evaluated model's tokenizer, found as lm-eval's RULER finds it (``tokenizer``, ``pretrained``, ``model``)
    and loaded with the user's ``trust_remote_code`` (``lm_eval_tasks.model_tokenizer``)."""
    from lm_eval_tasks.model_tokenizer import load_tokenizer as load
    from lm_eval_tasks.model_tokenizer import tokenizer_name, trust_remote_code

    name = tokenizer_name(kwargs)
    if name is None:
        raise ValueError(
            "tokenizer: none given; LongBench's truncation counts the evaluated model's tokens, so pass "
            "--model_args pretrained=<model> (or tokenizer=<name>), got neither tokenizer, pretrained nor model"
        )
    return load(name, trust_remote_code(kwargs))


def _namespace(value: Any) -> Any:
    """A config dict as attributes (nested dicts too), which is all lm-eval's ``resolve_max_length`` reads."""
    if isinstance(value, dict):
        return SimpleNamespace(**{str(key): _namespace(item) for key, item in value.items()})
    return value


def model_window(kwargs: dict[str, Any], tokenizer: Any) -> int:
    """The context window the prompts must fit: ``max_length`` when given, else ``ntk_target`` (``--model
    longllada``'s RoPE override) when given, else what ``--model hf`` would use
    (lm-eval's ``resolve_max_length``: the config's ``n_positions`` / ``max_position_embeddings`` / ``n_ctx``,
    then the tokenizer's ``model_max_length``, then 2048)."""
    if kwargs.get("max_length") is not None:
        return _positive_int("max_length", kwargs["max_length"])
    # --model longllada's NTK override names its target length; the scaled model's window is that length.
    if kwargs.get("ntk_target") is not None:
        return _positive_int("ntk_target", kwargs["ntk_target"])
    from lm_eval.models.utils import resolve_max_length

    config = None
    name = kwargs.get("pretrained") or kwargs.get("model")
    if isinstance(name, str) and name:
        from transformers import PretrainedConfig

        try:  # the raw config.json: reading three numbers needs none of the model's remote code
            config_dict, _ = PretrainedConfig.get_config_dict(name)
        except (OSError, ValueError) as err:  # an API model name, or no config.json to be had
            logger.warning("LongBench: no config for %r (%s); the window comes from the tokenizer.", name, err)
        else:
            config = _namespace(config_dict)
    return resolve_max_length(config, tokenizer)


def truncate_middle(text: str, tokenizer: Any, budget: int) -> str:
    """``text`` cut to at most ``budget`` tokens (special tokens not counted) by keeping its first and last halves.

    As LongBench does: the first ``budget // 2`` and the last ``budget // 2`` tokens, each decoded without special
    tokens, joined (less the stray bytes of a character cut in two). Encoding the join can merge or split tokens
    at the seam, so the halves shrink until the join measures within the budget.
    """
    budget = _positive_int("budget", budget)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) <= budget:
        return text
    keep = budget // 2
    while keep > 0:
        # A byte-level cut can split a character: its stray bytes decode to U+FFFD, which is dropped.
        head = tokenizer.decode(ids[:keep], skip_special_tokens=True).rstrip(REPLACEMENT_CHARACTER)
        tail = tokenizer.decode(ids[-keep:], skip_special_tokens=True).lstrip(REPLACEMENT_CHARACTER)
        joined = head + tail
        excess = len(tokenizer(joined, add_special_tokens=False).input_ids) - budget
        if excess <= 0:
            return joined
        keep -= max(1, (excess + 1) // 2)
    return ""


def read_local_subset(data_dir: str, subset: str) -> list[dict[str, Any]]:
    """``<data_dir>/<subset>.jsonl`` in LongBench's layout, one record per line."""
    path = Path(data_dir).expanduser() / f"{subset}.jsonl"
    if not path.is_file():
        raise ValueError(
            f"data_dir {data_dir!r} has no {subset}.jsonl; allowed: a folder of LongBench's <subset>.jsonl files "
            "(LongBench's data.zip unpacked)"
        )
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"data_dir file {path} line {number} is not JSON ({err})") from None
    return records


def _check_record(record: dict[str, Any], subset: str) -> None:
    missing = [field for field in ("context", "answers") if field not in record]
    if "question" not in record and "input" not in record:
        missing.append("input")
    if missing:
        raise ValueError(
            f"LongBench {subset} record {record.get('_id', '?')!r} lacks {missing}; allowed: LongBench's layout "
            "(input, context, answers, all_classes, ...)"
        )


def check_options(metadata: dict[str, Any]) -> None:
    """This folder's checks of ``metadata`` (merged ``--metadata`` and model arguments) that need no data: its keys
    and the numbers ``max_length`` and ``ntk_target`` that set the window."""
    check_metadata_keys(metadata, "longllada_longbench", TASK_KEYS)
    for field in ("max_length", "ntk_target"):
        if metadata.get(field) is not None:
            _positive_int(field, metadata[field])


def load_longbench(**kwargs: Any) -> dict[str, Any]:
    """custom_dataset of every ``longllada_longbench_*`` task: the subset's documents, each with ``prompt``, lm-eval's
    prompt for it truncated in the middle to the window minus the generation budget."""
    import datasets
    from lm_eval.utils import apply_template

    check_metadata_keys(kwargs, "longllada_longbench", TASK_KEYS)
    missing = [key for key in TASK_KEYS if key not in kwargs]
    if missing:
        raise ValueError(
            f"dataset_kwargs lacks {missing}; the task YAML must set {list(TASK_KEYS)} (see _generate_configs.py)"
        )
    subset, template = kwargs["longbench_subset"], kwargs["longbench_prompt"]
    max_gen_toks = _positive_int("longbench_max_gen_toks", kwargs["longbench_max_gen_toks"])
    tokenizer = load_tokenizer(kwargs)
    window = model_window(kwargs, tokenizer)
    # The model may prepend special tokens (BOS) to the prompt; they share the window.
    special = len(tokenizer("").input_ids)
    budget = window - max_gen_toks - special
    if budget < 2:
        raise ValueError(
            f"max_length {window} leaves no room for a {subset} prompt after {max_gen_toks} generated tokens; "
            f"allowed: max_length > {max_gen_toks + special + 1}"
        )

    data_dir = kwargs.get("data_dir")
    if data_dir:
        records = read_local_subset(str(data_dir), subset)
    else:
        records = list(datasets.load_dataset(kwargs["longbench_hub_dataset"], name=subset, split="test"))
    docs = []
    for record in records:
        _check_record(record, subset)
        doc = dict(record)
        # lm-eval's prompts name LongBench's "input" field "question" (as its Hub copy does).
        doc.setdefault("question", doc.get("input"))
        doc["prompt"] = truncate_middle(apply_template(template, doc), tokenizer, budget)
        docs.append(doc)
    logger.info("LongBench %s: %d documents, prompts truncated to %d tokens.", subset, len(docs), budget)
    return {"test": datasets.Dataset.from_list(docs, split=datasets.Split.TEST)}
