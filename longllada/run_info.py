"""The setting of an evaluation run as plots and tables name it: the model, its trained length, its RoPE scaling
(λ, target length T, the context it covers) and the needles per cell, read from what the run recorded.

Sources, the first that has it wins:

1. ``--model longllada``'s record in the results file's ``config`` (``longllada_model_path``,
   ``longllada_trained_length``, ``longllada_context_window``, ``longllada_rope_target``,
   ``longllada_rope_loaded``): the facts of the model as it was loaded;
2. the model folder the task recorded (``longllada_model_path`` in ``configs.<task>.metadata``, absolute), or
   else ``pretrained=`` of ``model_args`` (relative to the current folder): its ``config.json`` is read with this
   package's classes, and the run's RoPE arguments (``ntk_factor``, ``ntk_target``, ``rope_scaling``) applied;
3. nothing: the lengths are unknown (None), and the plot draws no marker for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_PATH_KEY = "longllada_model_path"  # lm_eval_tasks.run_record writes it too


@dataclass(frozen=True)
class RunSetting:
    """What a run evaluated. ``factor``: λ (1.0 without scaling, ``"per length"`` for per-length NTK, None when
    unknown); ``context_window``: the context the (scaled) RoPE covers; ``per_cell``: needles (documents) per
    grid cell, a ``"min–max"`` text when cells differ."""

    model: str = "?"
    model_path: str | None = None
    trained_length: int | None = None
    context_window: int | None = None
    factor: float | str | None = None
    target: int | None = None
    scaling: str | None = None
    per_cell: int | str | None = None

    def scaling_text(self) -> str:
        """``no scaling``, ``NTK λ=3 (T=512)``, ``NTK λ=4``, ``NTK per length``, a frequency-rescaling method by
        its label (``yarn:4``, ``dynamic:2``, ``longrope:GSAI-ML/LLaDA-8B-Instruct``; a JSON spec as ``yarn
        ×8``), or ``RoPE unknown``."""
        method = scaling_method(self.scaling)
        if self.scaling in (None, "none") and self.factor in (None, 1, 1.0):
            return "no scaling" if self.factor is not None or self.scaling == "none" else "RoPE unknown"
        if method in FREQUENCY_METHODS:
            if not self.scaling.startswith("{"):
                return self.scaling
            factor = f" ×{self.factor:g}" if isinstance(self.factor, (int, float)) else ""
            return f"{method}{factor}" + (f" (T={self.target})" if self.target else "")
        if self.factor == "per length" or method == "ntk_per_length":
            return "NTK per length"
        factor = f"λ={self.factor:g}" if isinstance(self.factor, (int, float)) else "λ=?"
        return f"NTK {factor}" + (f" (T={self.target})" if self.target else "")

    def label(self, model: bool = True, per_cell: bool = True) -> str:
        """The setting in words, e.g. ``tiny-llada-diffusion, NTK λ=3 (T=512), 5 needles/cell``."""
        parts = [self.model] if model else []
        parts.append(self.scaling_text())
        if per_cell and self.per_cell is not None:
            parts.append(f"{self.per_cell} needle{'' if self.per_cell == 1 else 's'}/cell")
        return ", ".join(parts)


# The methods that keep the base and rescale frequencies (transformers' rope types), named by their label.
FREQUENCY_METHODS = ("linear", "dynamic", "yarn", "longrope", "llama3")


def scaling_method(label: str | None) -> str | None:
    """The method (``type``) of a scaling label as runs record it (``yarn:4``, ``ntk-target:512``, a JSON spec,
    ``config:`` first for a checkpoint's own), without reading any file it names; None when there is none."""
    if not isinstance(label, str) or label in ("", "none"):
        return None
    label = label.removeprefix("config:")
    if label.startswith("{"):
        try:
            spec = json.loads(label)
        except ValueError:
            return None
        return spec.get("type", spec.get("rope_type")) if isinstance(spec, dict) else None
    head = label.split(":", 1)[0].strip().lower().replace("-", "_")
    return "ntk" if head == "ntk_target" else head


def parse_model_args(value: Any) -> dict[str, Any]:
    """lm-eval's ``config.model_args``: a dict, or an older lm-eval's ``key=value,key2=value2`` text."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        return dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    return {}


def _model_name(path: str | None) -> str:
    if not path:
        return "?"
    local = Path(path)
    return local.name if local.is_absolute() or local.is_dir() else path


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def model_facts(path: str | Path, model_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """``trained_length``, ``context_window``, ``factor``, ``target`` and ``scaling`` of the model in the local
    folder ``path`` with the RoPE arguments of ``model_args`` applied (a config is read, no weights): our
    diffusion families through their config classes, a native family through its hooks, any other model as a
    transformers causal LM. Empty when ``path`` holds no readable config."""
    from modeling_longllada import rope_scaling_from_args
    from modeling_longllada.rope_longllada import spec_label

    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        return {}
    args = model_args or {}
    try:
        override, spec = rope_scaling_from_args(
            args.get("ntk_factor"), args.get("ntk_target"), args.get("rope_scaling")
        )
    except ValueError:  # arguments the run itself would have refused: nothing to say of its RoPE
        return {}
    from transformers import AutoConfig

    import modeling_longllada  # noqa: F401  (registers our model types: no remote code runs)
    from longllada.rope_scaling import (
        apply_rope_scaling,
        causal_context_window,
        causal_trained_length,
        is_ours,
        scaling_factor,
    )

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError):
        return {}
    from modeling_longllada.families import family_of_model_type

    family = family_of_model_type(getattr(config, "model_type", None))
    hooks = family.tool_hooks() if family is not None else None
    if hooks is not None:  # a native family: its hooks apply the RoPE arguments and read the config
        applied = apply_rope_scaling(config, (spec or "none") if override else None)
        summary = hooks.rope_summary(config)
        return {
            "trained_length": summary["trained_length"],
            "context_window": summary["context_window"],
            "factor": summary["factor"],
            "target": summary["target_length"],
            "scaling": spec_label(summary["scaling"]) if override else applied.get("scaling"),
        }
    if is_ours(config):
        if override:
            apply_rope_scaling(config, spec or "none")
        scaling = config.rope_scaling
        return {
            "trained_length": int(config.trained_length),
            "context_window": int(config.rope_supported_length),
            "factor": scaling_factor(config),
            "target": (scaling or {}).get("target_length"),
            "scaling": spec_label(scaling),
        }
    trained = causal_trained_length(config)
    applied = apply_rope_scaling(config, (spec or "none") if override else None, trained)
    spec = spec if override else None
    return {
        "trained_length": trained,
        "context_window": causal_context_window(config, spec, applied, trained),
        "factor": applied.get("factor", 1.0),
        "target": (spec or {}).get("target_length"),
        "scaling": spec_label(spec) if override else applied.get("scaling"),
    }


def run_setting(results: dict[str, Any], task: str, per_cell: int | str | None = None) -> RunSetting:
    """The setting of the run whose lm-eval results JSON is ``results``, for ``task`` (see the module)."""
    config = results.get("config") or {}
    model_args = parse_model_args(config.get("model_args"))
    metadata = ((results.get("configs") or {}).get(task) or {}).get("metadata") or {}
    path = config.get(MODEL_PATH_KEY) or metadata.get(MODEL_PATH_KEY)
    if not path:
        given = model_args.get("pretrained") or config.get("model_name")
        if isinstance(given, str) and given:
            path = str(Path(given).resolve()) if Path(given).is_dir() else given
    if per_cell is None:  # the documents that ran (--limit may stop short of the grid) over the grid's cells
        grid = metadata.get("longllada_grid") or {}
        cells = len(grid.get("context_lengths") or []) * len(grid.get("depths") or [])
        ran = _number(((results.get("n-samples") or {}).get(task) or {}).get("effective"))
        per_cell = ran // cells if cells and ran and ran % cells == 0 else None
    if _number(config.get("longllada_trained_length")):
        rope = config.get("longllada_rope_loaded") or {}
        scaling = rope.get("scaling")
        scaling = scaling.removeprefix("config:") if isinstance(scaling, str) else scaling
        factor = rope.get("factor", 1.0 if scaling is None else None)
        facts = {
            "trained_length": _number(config["longllada_trained_length"]),
            "context_window": _number(config.get("longllada_context_window")),
            "factor": factor,
            "target": _number(config.get("longllada_rope_target")),
            "scaling": scaling,
        }
    else:
        facts = model_facts(path, model_args) if path and Path(path).is_dir() else {}
    return RunSetting(model=_model_name(path), model_path=path, per_cell=per_cell, **facts)


def ppl_setting(meta: dict[str, Any]) -> RunSetting:
    """The setting of a ``longllada ppl`` run from its metadata line."""
    from modeling_longllada import parse_rope_scaling

    scaling = meta.get("rope_scaling")
    label = scaling.removeprefix("config:") if isinstance(scaling, str) else None
    try:
        spec = parse_rope_scaling(label) if label else None
    except ValueError:  # a causal LM's own scaling ("config:llama3"): named, not parsed
        spec = None
    factor = (meta.get("rope") or {}).get("factor", 1.0 if label is None else None)
    return RunSetting(
        model=_model_name(str(meta.get("model") or "")),
        model_path=meta.get("model"),
        trained_length=_number(meta.get("trained_length")),
        factor=factor,
        target=(spec or {}).get("target_length"),
        scaling=label,
    )


def read_results(path: str | Path) -> dict[str, Any]:
    """An lm-eval results JSON file as a dict (ValueError naming the file when it is not one)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not an lm-eval results file (not JSON: {err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{path}: not an lm-eval results file (no 'results' object)")
    return data
