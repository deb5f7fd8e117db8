"""The sizes in a checkpoint's config.json checked against its weights, before anything is built or pushed.

A config whose sizes disagree with the weights (a hidden size, a layer count, a vocabulary edited by hand or
copied from another checkpoint) builds a repo that ``from_pretrained`` refuses, or, for a missing or extra
tensor, loads with random or dropped weights. The check is the same for every family: the model class that the
converted config names is built on the meta device (shapes only, no memory), and its state dict is compared
with the tensors of the weight files, read from their headers (safetensors) or memory-mapped (``.bin``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub_upload.build import (
    BIN_FILE,
    BIN_INDEX,
    SAFETENSORS_FILE,
    SAFETENSORS_INDEX,
    _bin_tensors,
    _check_weight_keys,
    _indexed_files,
    family_of,
)

SHOWN = 3  # mismatches named in the message


def weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape in the weight files of ``folder`` (read as ``verify_weights`` finds them);
    no tensor data is read."""
    folder = Path(folder)
    if (folder / SAFETENSORS_INDEX).is_file() or (folder / SAFETENSORS_FILE).is_file():
        from safetensors import safe_open

        files = (
            _indexed_files(folder / SAFETENSORS_INDEX) if (folder / SAFETENSORS_INDEX).is_file() else [SAFETENSORS_FILE]
        )
        shapes: dict[str, tuple[int, ...]] = {}
        for name in files:
            with safe_open(str(folder / name), framework="pt") as weights:
                for key in weights.keys():  # noqa: SIM118  (safe_open has no __iter__)
                    shapes[key] = tuple(weights.get_slice(key).get_shape())
        return shapes
    if (folder / BIN_INDEX).is_file() or (folder / BIN_FILE).is_file():
        files = _indexed_files(folder / BIN_INDEX) if (folder / BIN_INDEX).is_file() else [BIN_FILE]
        return {key: tuple(tensor.shape) for key, tensor in _bin_tensors([folder / name for name in files])}
    return {}


def expected_shapes(config: dict[str, Any]) -> tuple[dict[str, tuple[int, ...]], list[set[str]]]:
    """The state dict's shapes of the model class a (converted) config.json names, built on the meta device, and
    the groups of names that share one tensor (tied weights: a checkpoint holds any one of them)."""
    import torch
    import transformers
    from transformers import AutoConfig

    import modeling_longllada  # noqa: F401  (registers our model types with the Auto classes)

    fields = {key: value for key, value in config.items() if key not in ("model_type", "auto_map", "architectures")}
    model_config = AutoConfig.for_model(config["model_type"], **fields)
    auto_class = getattr(transformers, family_of(config).auto_classes[-1])  # ours: AutoModelForCausalLM
    with torch.device("meta"):
        model = auto_class.from_config(model_config)
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict(keep_vars=True).items()}
    shared: dict[int, set[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        shared.setdefault(id(tensor), set()).add(name)
    return shapes, [names for names in shared.values() if len(names) > 1]


def check_weight_shapes(config: dict[str, Any], folder: Path, where: str = "SOURCE") -> None:
    """Refuse (``ValueError``) weights in ``folder`` that the model built from ``config`` (a converted
    config.json: our ``model_type``) cannot load exactly: a tensor of another shape, a tensor it has no place
    for, or one of its tensors missing (tied ones excepted)."""
    found = weight_shapes(folder)
    if not found:
        return  # no weights: the build reports that
    _check_weight_keys(sorted(found), f"{where} {folder}", family_of(config))  # another family's layout altogether
    expected, tied = expected_shapes(config)
    wrong = [
        f"{name}: weights {list(found[name])}, config {list(expected[name])}"
        for name in sorted(found)
        if name in expected and found[name] != expected[name]
    ]
    extra = sorted(set(found) - set(expected))
    missing = sorted(
        name for name in set(expected) - set(found) if not any(name in group and group & set(found) for group in tied)
    )
    if wrong or extra or missing:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensor(s) of other shapes ({'; '.join(wrong[:SHOWN])})")
        if extra:
            parts.append(f"{len(extra)} tensor(s) the model has no place for ({', '.join(extra[:SHOWN])})")
        if missing:
            parts.append(f"{len(missing)} tensor(s) of the model missing ({', '.join(missing[:SHOWN])})")
        raise ValueError(
            f"{where} {folder}: config.json does not match the weights: {'; '.join(parts)}; the repo would not load "
            "(or load with random weights); allowed: the config.json these weights were saved with"
        )
