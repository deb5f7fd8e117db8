"""Registration of the families (``families.FAMILIES``) with transformers' Auto classes.

For each family that transformers does not implement itself, every model type (ours and the official ones) is
registered with ``AutoConfig`` and the family's Auto model classes, so that a folder or Hub id of any of them loads
with this project's classes and without ``trust_remote_code``: a registered model type is "local code" to
transformers. An official model type gets a config class of its own (a subclass of the family's, differing only in
``model_type``), because transformers maps each model type to one config class and each config class to one model
class. Such a class also honours the families' ``claims``: a ``config.json`` of its type that another family claims
by its fields (LLaDA-MoE's first releases say ``"llada"``) is read by that family's config class, so the Auto
classes load it with that family's model.
"""

from __future__ import annotations

import functools
from typing import Any

import transformers

from .families import FAMILIES, Family, claiming_family

__all__ = ["register_family", "register_families", "registered_config_class"]


@functools.cache
def _config_class_for(config_class: type, model_type: str) -> type:
    """A subclass of ``config_class`` whose ``model_type`` is ``model_type`` (cached: one class per type)."""

    def __init__(self, **kwargs):  # explicit: transformers 5 would generate one that skips the family's own
        config_class.__init__(self, **kwargs)

    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        claimant = claiming_family(config_dict)
        if claimant is not None and not issubclass(cls, claimant.config_cls()):
            claimant.check_transformers()
            # Read as the claimant's first type, so that the config object says which family it is.
            model_type = claimant.model_types[0]
            return registered_config_class(model_type).from_dict({**config_dict, "model_type": model_type}, **kwargs)
        return super(subclass, cls).from_dict(config_dict, **kwargs)

    name = f"{config_class.__name__}As{''.join(part.title() for part in model_type.split('_'))}"
    subclass = type(
        name,
        (config_class,),
        {"model_type": model_type, "__init__": __init__, "from_dict": classmethod(from_dict), "__module__": __name__,
         "__qualname__": name,
         "__doc__": f"A ``config.json`` with ``model_type: {model_type!r}`` read by ``{config_class.__name__}``."},
    )  # fmt: skip
    globals()[name] = subclass  # importable by name, so that configs pickle (data-loader workers, deepcopy)
    return subclass


def register_family(family: Family) -> None:
    """Register every model type of ``family`` with ``AutoConfig`` and its Auto model classes (nothing for a
    native family, or where the installed transformers is older than the family needs)."""
    if family.native or not family.is_supported():
        return
    config_class, model_class = family.config_cls(), family.model_cls()
    for model_type in family.model_types:
        registered = (
            config_class if config_class.model_type == model_type else _config_class_for(config_class, model_type)
        )
        transformers.AutoConfig.register(model_type, registered, exist_ok=True)
        for auto_name in family.auto_classes:
            # The mapping's own register: the public one insists on model_class.config_class being this very class.
            getattr(transformers, auto_name)._model_mapping.register(registered, model_class, exist_ok=True)


def register_families() -> None:
    """:func:`register_family` for every entry of ``FAMILIES``."""
    for family in FAMILIES:
        register_family(family)


def registered_config_class(model_type: str) -> type:
    """The config class transformers maps ``model_type`` to (after registration: ours for our families)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return CONFIG_MAPPING[model_type]
