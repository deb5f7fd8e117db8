"""A plain, slow reference of LLaDA-MoE, written from the official model code (inclusionAI's
``modeling_lladamoe.py`` / ``configuration_lladamoe.py``, as copied in the dllm library) and from LLaDA's official
sampler (``generate.py``), independent of the project's model code. Tests compare our model against it.

The official forward, as read: token embeddings; per layer, RMSNorm (float32, cast back, times the weight), q/k/v
projections, with ``qk_layernorm`` an RMSNorm of size head_dim over each head of q and of k, ``clip_qkv``
clamping, RoPE on the first ``head_dim * partial_rotary_factor`` dimensions (rotate-half within them, inverse
frequencies theta^(-2i/R)), bidirectional attention whose 2-D padding mask masks padded keys only, softmax in
float32, o_proj, residual; RMSNorm, then the feed-forward: in a layer whose ``moe_layer_freq`` entry is 0 a dense
SwiGLU, else the experts (router softmax in float32, ``expert_bias`` added to the softmax weights, the top-k of
the biased weights selecting and weighting the experts, one SwiGLU per expert) plus the shared expert on the same
input; residual; final RMSNorm; lm_head. Positions are 0..L-1 unless given. Everything is computed token by
token and expert by expert where that reads more plainly; speed is no aim.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

OFFICIAL_AUTO_MAP = {
    "AutoConfig": "configuration_lladamoe.LLaDAMoEConfig",
    "AutoModel": "modeling_lladamoe.LLaDAMoEModelLM",
    "AutoModelForCausalLM": "modeling_lladamoe.LLaDAMoEModelLM",
}

# Token ids of the tiny checkpoints (a LLaDA-MoE checkpoint's own come from its config.json and tokenizer).
PAD_ID = EOS_ID = 1


def official_config(
    hidden_size: int = 32,
    num_hidden_layers: int = 3,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    num_experts: int = 8,
    num_experts_per_tok: int = 2,
    expert_intermediate_size: int = 16,
    dense_intermediate_size: int = 48,
    shared_expert_intermediate_size: int | None = 24,
    partial_rotary_factor: float = 0.5,
    vocab_size: int = 160,
    rope_theta: float = 10000.0,
    max_position_embeddings: int = 64,
    **extra: Any,
) -> dict[str, Any]:
    """The fields of an official LLaDA-MoE config.json with tiny sizes: expert layers and a dense one (layer 1),
    q/k norms, partial rotary, a shared expert, the expert bias; the mask token is the last id."""
    config = {
        "architectures": ["LLaDAMoEModelLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "auto_map": dict(OFFICIAL_AUTO_MAP),
        "bos_token_id": None,
        "clip_qkv": None,
        "dense_intermediate_size": dense_intermediate_size,
        "eos_token_id": EOS_ID,
        "expert_intermediate_size": expert_intermediate_size,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "mask_token_id": vocab_size - 1,
        "max_position_embeddings": max_position_embeddings,
        "model_type": "lladamoe",
        "moe_layer_freq": [0 if i == 1 else 1 for i in range(num_hidden_layers)],
        "moe_router_enable_expert_bias": True,
        "moe_router_score_function": "softmax",
        "norm_topk_prob": False,
        "num_attention_heads": num_attention_heads,
        "num_experts": num_experts,
        "num_experts_per_tok": num_experts_per_tok,
        "num_hidden_layers": num_hidden_layers,
        "num_key_value_heads": num_key_value_heads,
        "output_router_logits": False,
        "pad_token_id": PAD_ID,
        "partial_rotary_factor": partial_rotary_factor,
        "qk_layernorm": True,
        "rms_norm_eps": 1e-5,
        "rope_scaling": None,
        "rope_theta": rope_theta,
        "routed_scaling_factor": 1,
        "router_aux_loss_coef": 0.01,
        "router_num_group": -2,
        "router_topk_group": -2,
        "shared_expert_intermediate_size": shared_expert_intermediate_size,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
        "use_cache": False,
        "vocab_size": vocab_size,
    }
    config.update(extra)
    return config


def random_state_dict(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 weights under the official key names. Norm weights, biases and the expert bias are random too
    (so a model that ignored one would differ). The mask token's row of ``lm_head`` is zero: no position ever
    predicts it (parity is defined without the official sampler committing the mask token)."""
    g = torch.Generator().manual_seed(seed)
    d, vocab = config["hidden_size"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = d // heads

    def normal(*shape: int, std: float = 0.08) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def swiglu(prefix: str, inner: int) -> None:
        state[prefix + "gate_proj.weight"] = normal(inner, d, std=0.2)
        state[prefix + "up_proj.weight"] = normal(inner, d, std=0.2)
        state[prefix + "down_proj.weight"] = normal(d, inner, std=0.2)

    state = {"model.embed_tokens.weight": normal(vocab, d, std=1.0)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        state[p + "input_layernorm.weight"] = 1.0 + normal(d, std=0.1)
        for name, rows in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
            state[p + f"self_attn.{name}_proj.weight"] = normal(rows * head_dim, d, std=0.3)
            if config["attention_bias"]:
                state[p + f"self_attn.{name}_proj.bias"] = normal(rows * head_dim, std=0.1)
        state[p + "self_attn.o_proj.weight"] = normal(d, d)
        if config["attention_bias"]:
            state[p + "self_attn.o_proj.bias"] = normal(d, std=0.1)
        if config["qk_layernorm"]:
            state[p + "self_attn.q_norm.weight"] = 1.0 + normal(head_dim, std=0.1)
            state[p + "self_attn.k_norm.weight"] = 1.0 + normal(head_dim, std=0.1)
        state[p + "post_attention_layernorm.weight"] = 1.0 + normal(d, std=0.1)
        if config["moe_layer_freq"][i] == 0:
            swiglu(p + "mlp.", config["dense_intermediate_size"])
            continue
        state[p + "mlp.gate.weight"] = normal(config["num_experts"], d, std=0.5)
        for e in range(config["num_experts"]):
            swiglu(p + f"mlp.experts.{e}.", config["expert_intermediate_size"])
        if config["moe_router_enable_expert_bias"]:
            state[p + "mlp.expert_bias"] = normal(config["num_experts"], std=0.05)
        if config["shared_expert_intermediate_size"] is not None:
            swiglu(p + "shared_expert.", config["shared_expert_intermediate_size"])
    state["model.norm.weight"] = 1.0 + normal(d, std=0.1)
    state["lm_head.weight"] = normal(vocab, d, std=0.5)
    state["lm_head.weight"][config["mask_token_id"]] = 0.0
    return state


def write_official_folder(folder: str | Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> Path:
    """An official-format checkpoint folder: config.json and model.safetensors, without the code its auto_map
    names (the official files are not available here, and a test must never run them by mistake)."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


# -- the forward pass -------------------------------------------------------------------------------------------


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate(x: torch.Tensor, positions: torch.Tensor, theta: float, rotary_dim: int) -> torch.Tensor:
    """RoPE on the first ``rotary_dim`` dimensions of x [B, H, L, D] (rotate-half within them); the rest as is."""
    half = rotary_dim // 2
    out = x.clone()
    for i in range(half):
        angle = positions.double() * theta ** (-2.0 * i / rotary_dim)  # [B, L]
        cos, sin = angle.cos().float()[:, None], angle.sin().float()[:, None]
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * cos - b * sin
        out[..., i + half] = b * cos + a * sin
    return out


def _swiglu(x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    gate = x @ state[prefix + "gate_proj.weight"].T
    up = x @ state[prefix + "up_proj.weight"].T
    return (torch.nn.functional.silu(gate) * up) @ state[prefix + "down_proj.weight"].T


def _experts(x: torch.Tensor, config: dict[str, Any], state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """The official sparse block: x [N, d] -> [N, d], expert by expert over the tokens routed to it."""
    weights = torch.softmax(x @ state[prefix + "gate.weight"].T, dim=-1)
    if prefix + "expert_bias" in state:
        weights = weights + state[prefix + "expert_bias"]
    top_weights, chosen = torch.topk(weights, config["num_experts_per_tok"], dim=-1)
    out = torch.zeros_like(x)
    for e in range(config["num_experts"]):
        token, slot = torch.where(chosen == e)
        if len(token):
            out.index_add_(
                0, token, _swiglu(x[token], state, prefix + f"experts.{e}.") * top_weights[token, slot, None]
            )
    return out


def forward(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    rope_theta: float | None = None,
) -> torch.Tensor:
    """The official LLaDA-MoE forward pass in float32: logits [B, L, V]. ``rope_theta`` overrides the base."""
    theta = config["rope_theta"] if rope_theta is None else rope_theta
    b, length = input_ids.shape
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config["hidden_size"] // heads
    rotary_dim = int(head_dim * config["partial_rotary_factor"])
    eps = config["rms_norm_eps"]
    if position_ids is None:
        position_ids = torch.arange(length).expand(b, length)

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ state[name + ".weight"].T
        return y + state[name + ".bias"] if name + ".bias" in state else y

    x = state["model.embed_tokens.weight"][input_ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        n = _rms_norm(x, state[p + "input_layernorm.weight"], eps)
        q, k, v = (linear(n, p + f"self_attn.{name}_proj") for name in "qkv")
        if config["qk_layernorm"]:
            q = _rms_norm(q.reshape(-1, head_dim), state[p + "self_attn.q_norm.weight"], eps).reshape(q.shape)
            k = _rms_norm(k.reshape(-1, head_dim), state[p + "self_attn.k_norm.weight"], eps).reshape(k.shape)
        if config["clip_qkv"] is not None:
            q, k, v = (t.clamp(-config["clip_qkv"], config["clip_qkv"]) for t in (q, k, v))
        q = _rotate(q.view(b, length, heads, head_dim).transpose(1, 2), position_ids, theta, rotary_dim)
        k = _rotate(k.view(b, length, kv_heads, head_dim).transpose(1, 2), position_ids, theta, rotary_dim)
        v = v.view(b, length, kv_heads, head_dim).transpose(1, 2)
        group = heads // kv_heads
        attended = torch.empty_like(q)
        for h in range(heads):
            scores = q[:, h] @ k[:, h // group].transpose(-1, -2) / math.sqrt(head_dim)  # [B, L, L]
            if attention_mask is not None:  # padded keys masked, every query row kept
                scores = scores.masked_fill(~attention_mask.bool()[:, None, :], float("-inf"))
            attended[:, h] = scores.softmax(-1) @ v[:, h // group]
        x = x + linear(attended.transpose(1, 2).reshape(b, length, -1), p + "self_attn.o_proj")
        m = _rms_norm(x, state[p + "post_attention_layernorm.weight"], eps)
        if config["moe_layer_freq"][i] == 0:
            x = x + _swiglu(m, state, p + "mlp.")
            continue
        y = _experts(m.reshape(-1, m.shape[-1]), config, state, p + "mlp.").view_as(m)
        if p + "shared_expert.gate_proj.weight" in state:
            y = y + _swiglu(m, state, p + "shared_expert.")
        x = x + y
    return linear(_rms_norm(x, state["model.norm.weight"], eps), "lm_head")


# -- LLaDA's official sampler (generate.py), greedy ---------------------------------------------------------------


def llada_generate(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    prompt: torch.Tensor,
    gen_length: int,
    block_length: int,
    steps: int,
) -> torch.Tensor:
    """LLaDA's sampler at temperature 0, low-confidence remasking, no guidance: the answer starts as masks; each
    block in turn gets steps / blocks steps, step j committing n // s of its n masks (the first n % s steps one
    more), the most confident first (the softmax probability of the argmax, positions after the block and
    committed positions excluded); logits from a full pass over the whole sequence each step."""
    mask_id = config["mask_token_id"]
    batch, prompt_len = prompt.shape
    x = torch.cat((prompt, torch.full((batch, gen_length), mask_id, dtype=prompt.dtype)), dim=1)
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    for block in range(num_blocks):
        start, end = prompt_len + block * block_length, prompt_len + (block + 1) * block_length
        n = (x[:, start:end] == mask_id).sum(dim=1)
        for step in range(steps_per_block):
            k = n // steps_per_block + (step < n % steps_per_block).long()
            is_masked = x == mask_id
            logits = forward(config, state, x)
            prediction = logits.argmax(dim=-1)
            confidence = logits.softmax(dim=-1).gather(-1, prediction[..., None]).squeeze(-1)
            confidence[:, end:] = -torch.inf
            prediction = torch.where(is_masked, prediction, x)
            confidence = torch.where(is_masked, confidence, -torch.inf)
            for row in range(batch):
                chosen = confidence[row].topk(int(k[row])).indices
                x[row, chosen] = prediction[row, chosen]
    return x
