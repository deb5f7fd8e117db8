"""Building a twin from its settings, saving its folder (bfloat16 weights, float32 on load) and reloading it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longllada.twins.settings import TrainSettings

# A twin's folder is ours when this file, written last by save_twin, names this command.
TWIN_MARKER = ".longllada_twin.json"
TWIN_WRITER = "longllada train-tiny"


def diffusion_config(settings: TrainSettings, tokenizer):
    from longllada.tiny_model import round_up
    from modeling_longllada import LongLLaDAConfig
    from modeling_longllada.families import LLADA

    size = round_up(len(tokenizer))
    return LongLLaDAConfig(
        d_model=settings.d_model, n_heads=settings.n_heads, n_kv_heads=settings.n_heads, n_layers=settings.n_layers,
        mlp_hidden_size=settings.mlp_hidden_size, mlp_ratio=max(1, settings.mlp_hidden_size // settings.d_model),
        vocab_size=size, embedding_size=size, max_sequence_length=settings.train_length,
        rope_theta=float(settings.rope_theta), init_device="cpu", architectures=["LongLLaDAModelLM"],
        auto_map=LLADA.auto_map, mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip


def llama_config(settings: TrainSettings, tokenizer):
    from transformers import LlamaConfig

    from longllada.tiny_model import round_up

    return LlamaConfig(
        vocab_size=round_up(len(tokenizer)), hidden_size=settings.d_model, intermediate_size=settings.mlp_hidden_size,
        num_hidden_layers=settings.n_layers, num_attention_heads=settings.n_heads,
        num_key_value_heads=settings.n_heads, max_position_embeddings=settings.train_length,
        rope_theta=float(settings.rope_theta), rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=False,
        mlp_bias=False, hidden_act="silu", initializer_range=0.02, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, architectures=["LlamaForCausalLM"],
    )  # fmt: skip


def build_model(twin: str, settings: TrainSettings, tokenizer):
    import torch

    torch.manual_seed(settings.seed)
    if twin == "diffusion":
        from modeling_longllada import LongLLaDAModelLM

        return LongLLaDAModelLM(diffusion_config(settings, tokenizer))
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(llama_config(settings, tokenizer))


def _portable_config(folder: Path, extra: dict[str, Any]) -> None:
    """Make config.json read the same on transformers 4.46 and 5.x: weights are stored in bfloat16 to keep the
    package small, but the model loads in float32 by default (``torch_dtype`` for 4.x, ``dtype`` for 5.x)."""
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(extra)
    config["torch_dtype"] = config["dtype"] = "float32"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_twin(twin: str, model, tokenizer, folder: Path) -> Path:
    """Write a twin's folder: config.json, model.safetensors (bfloat16), tokenizer, generation_config.json and,
    for the diffusion twin, the remote-code files beside them."""
    import torch
    from safetensors.torch import save_file

    from longllada.tiny_model import copy_remote_code, write_generation_config
    from longllada.tokenizer import save_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    token_ids = {"mask_token_id": tokenizer.mask_token_id, "eos_token_id": tokenizer.eos_token_id,
                 "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id}  # fmt: skip
    save_tokenizer(tokenizer, folder)
    if twin == "diffusion":
        model.config.save_pretrained(folder)
        _portable_config(folder, {})
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        copy_remote_code(folder)
        write_generation_config(folder, token_ids)
    else:
        state.pop("lm_head.weight", None) if model.config.tie_word_embeddings else None
        model.config.save_pretrained(folder)
        _portable_config(folder, {"rope_theta": float(model.config.rope_theta if hasattr(model.config, "rope_theta")
                                                     else model.config.rope_parameters["rope_theta"])})  # fmt: skip
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        generation = {"bos_token_id": token_ids["bos_token_id"], "eos_token_id": token_ids["eos_token_id"],
                      "pad_token_id": token_ids["pad_token_id"], "do_sample": False}  # fmt: skip
        (folder / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
    written = sorted(p.name for p in folder.iterdir() if p.name != TWIN_MARKER)
    marker = {"written_by": TWIN_WRITER, "twin": twin, "files": [*written, "README.md"]}  # the card comes next
    (folder / TWIN_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return folder


def is_twin_folder(folder: Path, twin: str) -> bool:
    """Whether ``folder`` is a twin's folder that ``longllada train-tiny`` wrote (its marker file says so)."""
    try:
        marker = json.loads((folder / TWIN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("written_by") == TWIN_WRITER and marker.get("twin") == twin


def load_twin(twin: str, folder: Path, device: str):
    """Reload a saved twin in float32, as a user would."""
    import torch

    if twin == "diffusion":
        from modeling_longllada import LongLLaDAModelLM

        model = LongLLaDAModelLM.from_pretrained(folder, torch_dtype=torch.float32)
    else:
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    return model.to(device).eval()
