"""The one path by which every tool loads a model's config, tokenizer and weights: remote code only when allowed.

``longllada ppl``, lm-eval's ``--model longllada`` and the lm-eval tasks' tokenizers (``longllada_niah``,
``longllada_ruler``, ``longllada_longbench``) load through these functions, with ``trust_remote_code`` off unless
the user passes it (``--trust-remote-code`` on the commands, ``trust_remote_code=True`` in ``--model_args``).

- A model of one of this project's families (``modeling_longllada.families``: our model types and the official
  ones, registered with transformers' Auto classes) loads with this project's classes and never needs the repo's
  code. An official Dream repo's ``DreamTokenizer`` (its entry's ``official_tokenizer_classes``) is read by
  transformers' own classes.
- Any other model loads as transformers loads it, with the caller's ``trust_remote_code``. When it would need its
  own code (an ``auto_map`` in ``config.json`` for a model type that transformers does not know, or in
  ``tokenizer_config.json`` for a tokenizer class it does not know) and that is not allowed, loading stops before
  anything runs with one line (:class:`RemoteCodeNotAllowed`) that says what to pass.

The checks read only JSON files; nothing here runs code from the model's folder unless allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modeling_longllada.families import Family, family_of_config

# How the commands spell the opt-in; lm-eval's models and tasks take the --model_args key.
COMMAND_FLAG = "--trust-remote-code"
MODEL_ARGS_FLAG = "trust_remote_code=True in --model_args"
# Hub-location arguments that every file lookup of one model shares.
LOCATION_KEYS = ("revision", "subfolder", "token", "cache_dir", "local_files_only")


class RemoteCodeNotAllowed(ValueError):
    """A model needs code of its own to load, and the caller did not allow it (one line, naming the flag)."""


def check_trust_remote_code(value: Any, field: str = "trust_remote_code") -> bool:
    """``value`` as a bool: True, False, None (False), or the strings true/false in any case (``--model_args``
    and ``--metadata`` hand strings over); ValueError otherwise."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{field}={value!r} is not allowed; allowed: True or False")


def _location(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs[key] for key in LOCATION_KEYS if kwargs.get(key) is not None}


def _load_path(model: str | Path) -> str:
    path = Path(model).expanduser()
    return str(path) if path.exists() else str(model)


def read_json_file(model: str | Path, name: str, **location: Any) -> dict[str, Any] | None:
    """A JSON file of a model folder or Hub repo (``config.json``, ``tokenizer_config.json``), or None when the
    model has none; read as data, so no code of the model runs."""
    from transformers.utils import cached_file

    path = cached_file(
        _load_path(model), name, _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False, **_location(location),
    )  # fmt: skip
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{model}: {name} is not valid JSON ({err})") from None
    return data if isinstance(data, dict) else None


def model_family(model: str | Path, **location: Any) -> tuple[Family | None, str | None]:
    """``(family, model_type)`` of a model from its ``config.json`` alone (its ``model_type``, or the fields by
    which a family claims it); family None for any other model."""
    config = read_json_file(model, "config.json", **location) or {}
    return family_of_config(config), config.get("model_type")


def _auto_map_entry(auto_map: Any, key: str) -> str | None:
    """The class an ``auto_map`` names for ``key`` (a tokenizer's entry is a [slow, fast] pair)."""
    if isinstance(auto_map, (list, tuple)):  # the legacy tokenizer form: [slow, fast]
        return next((str(name) for name in auto_map if name), None) if key == "AutoTokenizer" else None
    if not isinstance(auto_map, dict) or not auto_map.get(key):
        return None
    entry = auto_map[key]
    if isinstance(entry, (list, tuple)):
        return next((str(name) for name in entry if name), None)
    return str(entry)


def remote_code_needed(
    model: str | Path, parts: tuple[str, ...] = ("config", "tokenizer"), **location: Any
) -> list[str]:
    """What of ``model`` would run the repo's own code if allowed, in words (empty when nothing would): the config
    (and with it the model) when ``config.json``'s ``auto_map`` names a class for a model type that neither
    transformers nor this project knows; the tokenizer when ``tokenizer_config.json``'s ``auto_map`` names one
    and its ``tokenizer_class`` is not transformers' own (nor read by transformers' classes, for our families).
    Where transformers has a class of its own, it loads that one without the code: nothing is refused."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    import modeling_longllada  # noqa: F401  (our families' model types count as known)

    needed = []
    config = read_json_file(model, "config.json", **location) or {}
    family = family_of_config(config)
    if "config" in parts:
        entry = _auto_map_entry(config.get("auto_map"), "AutoConfig")
        if entry and family is None and config.get("model_type") not in CONFIG_MAPPING:
            needed.append(f"config.json's auto_map AutoConfig {entry} (model_type {config.get('model_type')!r})")
    if "tokenizer" in parts:
        settings = read_json_file(model, "tokenizer_config.json", **location) or {}
        entry = _auto_map_entry(settings.get("auto_map"), "AutoTokenizer")
        tokenizer_class = settings.get("tokenizer_class")
        read_as_stock = family is not None and tokenizer_class in family.official_tokenizer_classes
        if entry and not read_as_stock and not known_tokenizer_class(tokenizer_class):
            needed.append(
                f"tokenizer_config.json's auto_map AutoTokenizer {entry} (tokenizer_class {tokenizer_class!r})"
            )
    return needed


def known_tokenizer_class(name: str | None) -> bool:
    """Whether transformers itself defines the tokenizer class ``name`` (or its fast twin): without remote code,
    transformers loads that class even when the repo's ``auto_map`` names code of its own."""
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    if not name:
        return False
    return any(tokenizer_class_from_name(n) is not None for n in (name, name.removesuffix("Fast") + "Fast"))


def check_remote_code(
    model: str | Path,
    trust_remote_code: bool,
    flag: str = COMMAND_FLAG,
    parts: tuple[str, ...] = ("config", "tokenizer"),
    **location: Any,
) -> None:
    """Refuse, in one line naming ``flag``, a model that needs its own code when ``trust_remote_code`` is off."""
    if trust_remote_code:
        return
    needed = remote_code_needed(model, parts, **location)
    if needed:
        raise RemoteCodeNotAllowed(
            f"{model} needs its own code to load ({'; '.join(needed)}), which runs only if you allow it: pass "
            f"{flag} (only for a model whose code you trust)"
        )


def load_config(model: str | Path, trust_remote_code: bool = False, flag: str = COMMAND_FLAG, **kwargs: Any) -> Any:
    """The model's config: our families' with this project's classes, any other as ``AutoConfig`` reads it
    (its own code only with ``trust_remote_code``). ``kwargs``: location (``revision``, ``subfolder``, ...)
    and config overrides, as ``from_pretrained`` takes them."""
    from transformers import AutoConfig

    import modeling_longllada  # noqa: F401  (registers our families, official model types too)

    family, _ = model_family(model, **_location(kwargs))
    if family is not None:
        family.check_transformers()
        return AutoConfig.from_pretrained(_load_path(model), trust_remote_code=False, **kwargs)
    check_remote_code(model, trust_remote_code, flag, ("config",), **_location(kwargs))
    return AutoConfig.from_pretrained(_load_path(model), trust_remote_code=trust_remote_code, **kwargs)


def load_tokenizer(model: str | Path, trust_remote_code: bool = False, flag: str = COMMAND_FLAG, **kwargs: Any) -> Any:
    """The tokenizer saved with a model (folder or Hub id), with transformers' classes unless the caller allows
    the repo's own code. A family's official tokenizer class that only re-implements a standard one (Dream's
    ``DreamTokenizer``) is read with transformers' fast tokenizer from ``tokenizer.json``, else with the family's
    ``stock_tokenizer_class``."""
    import transformers
    from transformers import AutoTokenizer

    import modeling_longllada  # noqa: F401  (transformers 5's AutoTokenizer reads the model's config first)

    location = _location(kwargs)
    family, _ = model_family(model, **location)
    settings = read_json_file(model, "tokenizer_config.json", **location) or {}
    if family is not None and settings.get("tokenizer_class") in family.official_tokenizer_classes:
        has_fast = read_json_file(model, "tokenizer.json", **location) is not None
        stock = (
            "PreTrainedTokenizerFast" if has_fast or not family.stock_tokenizer_class else family.stock_tokenizer_class
        )
        return getattr(transformers, stock).from_pretrained(_load_path(model), **kwargs)
    check_remote_code(model, trust_remote_code, flag, ("tokenizer",), **location)
    return AutoTokenizer.from_pretrained(_load_path(model), trust_remote_code=trust_remote_code, **kwargs)


def model_class(model: str | Path, auto_class: str = "AutoModelForCausalLM", **location: Any) -> Any:
    """The class that :func:`load_model` loads ``model`` with: our family's model class, else the Auto class."""
    import transformers

    family, _ = model_family(model, **location)
    return family.model_cls() if family is not None else getattr(transformers, auto_class)


def load_model(
    model: str | Path,
    trust_remote_code: bool = False,
    flag: str = COMMAND_FLAG,
    auto_class: str = "AutoModelForCausalLM",
    **kwargs: Any,
) -> Any:
    """The model's weights: our families with this project's classes (never the repo's code), any other with the
    Auto class ``auto_class`` (its own code only with ``trust_remote_code``). ``kwargs`` go to
    ``from_pretrained`` (``config``, ``dtype``, location, ...)."""
    import modeling_longllada  # noqa: F401

    location = _location(kwargs)
    family, _ = model_family(model, **location)
    if family is not None:
        family.check_transformers()
        return family.model_cls().from_pretrained(_load_path(model), **family.from_pretrained_kwargs(kwargs))
    check_remote_code(model, trust_remote_code, flag, ("config",), **location)
    return model_class(model, auto_class, **location).from_pretrained(
        _load_path(model), trust_remote_code=trust_remote_code, **kwargs
    )
