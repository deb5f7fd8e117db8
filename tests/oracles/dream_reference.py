"""A plain, slow reference of Dream-v0, written from the published description of the checkpoint and of its
official sampler (Dream, arXiv 2508.15487; the checkpoint's config.json, state-dict keys and
``diffusion_generate``), independent of the project's model code. Tests compare our model against it.

- :func:`official_config` / :func:`random_state_dict` / :func:`write_official_folder`: a tiny Dream checkpoint in
  the official format (``model_type: "Dream"``, the official ``auto_map``, Qwen2 key names, q/k/v biases).
- :func:`forward`: the official forward pass. Positions default to 0..L-1 whatever the mask; a 2-D 0/1 mask
  becomes a boolean [B, 1, L, L] mask in which padded keys and padded query rows are both masked; a mask with
  no zeros means full attention. Returns the unshifted logits (position i predicts token i + 1).
- :func:`diffusion_generate`: the official sampler (algorithms ``origin``, ``maskgit_plus``, ``topk_margin``,
  ``entropy``; ``alg_temp``, ``temperature``, ``top_p``, ``top_k``, ``eps``, ``steps``), with left-padded
  batches handled as the official code does (positions ``cumsum(mask) - 1``, padding positions set to 1).

Everything is computed position by position or head by head where that reads more plainly; speed is no aim.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

REPO_CODE = Path(__file__).resolve().parents[2] / "modeling_longllada"
OFFICIAL_AUTO_MAP = {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"}

# Token ids of the tiny checkpoints (a Dream checkpoint's own come from its config.json and tokenizer).
PAD_ID = EOS_ID = 1
BOS_ID = 2


def official_config(
    hidden_size: int = 32,
    intermediate_size: int = 48,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    vocab_size: int = 160,
    rope_theta: float = 10000.0,
    **extra: Any,
) -> dict[str, Any]:
    """The fields of an official Dream-v0 config.json, with tiny sizes (the mask token is the last id)."""
    config = {
        "architectures": ["DreamModel"],
        "attention_dropout": 0.0,
        "auto_map": dict(OFFICIAL_AUTO_MAP),
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "mask_token_id": vocab_size - 1,
        "max_position_embeddings": 131072,
        "max_window_layers": num_hidden_layers,
        "model_type": "Dream",
        "num_attention_heads": num_attention_heads,
        "num_hidden_layers": num_hidden_layers,
        "num_key_value_heads": num_key_value_heads,
        "pad_token_id": PAD_ID,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": rope_theta,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.46.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }
    config.update(extra)
    return config


def random_state_dict(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 weights under the official key names. Norm weights and biases are random too (so a model
    that ignored them would differ). The mask token's row of ``lm_head`` is zero: its logit is then 0 while the
    best of the others is well above 0, so no position ever predicts the mask token (a case the official sampler
    mishandles; parity is defined without it)."""
    g = torch.Generator().manual_seed(seed)
    d, inner, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = d // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim

    def normal(*shape: int, std: float = 0.08) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    state = {"model.embed_tokens.weight": normal(vocab, d, std=1.0)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        state[p + "input_layernorm.weight"] = 1.0 + normal(d, std=0.1)
        state[p + "self_attn.q_proj.weight"] = normal(d, d, std=0.3)
        state[p + "self_attn.q_proj.bias"] = normal(d, std=0.1)
        state[p + "self_attn.k_proj.weight"] = normal(kv, d, std=0.3)
        state[p + "self_attn.k_proj.bias"] = normal(kv, std=0.1)
        state[p + "self_attn.v_proj.weight"] = normal(kv, d)
        state[p + "self_attn.v_proj.bias"] = normal(kv, std=0.1)
        state[p + "self_attn.o_proj.weight"] = normal(d, d)
        state[p + "post_attention_layernorm.weight"] = 1.0 + normal(d, std=0.1)
        state[p + "mlp.gate_proj.weight"] = normal(inner, d)
        state[p + "mlp.up_proj.weight"] = normal(inner, d)
        state[p + "mlp.down_proj.weight"] = normal(d, inner)
    state["model.norm.weight"] = 1.0 + normal(d, std=0.1)
    state["lm_head.weight"] = normal(vocab, d, std=0.5)
    state["lm_head.weight"][config["mask_token_id"]] = 0.0
    return state


def write_official_folder(
    folder: str | Path, config: dict[str, Any], state: dict[str, torch.Tensor], with_code: bool = True
) -> Path:
    """An official-format checkpoint folder: config.json and model.safetensors and, with ``with_code``, beside
    them the remote code that the official ``auto_map`` names (our ``configuration_dream.py`` /
    ``modeling_dream.py`` and the files they import; the official files are not available here). Without
    code it stands for an official repo given to a converter such as ``longllada upload``."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    for source in sorted(REPO_CODE.glob("*.py")) if with_code else ():
        if source.name != "__init__.py":
            shutil.copyfile(source, out / source.name)
    return out


# -- the forward pass -------------------------------------------------------------------------------------------


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalise each vector by its root mean square, then scale by the weight."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE. x [B, H, L, D], positions [B, L]. Dimension i < D/2 pairs with i + D/2 and turns by the
    angle position · theta^(-2i/D)."""
    d = x.shape[-1]
    half = d // 2
    out = torch.empty_like(x)
    for i in range(half):
        angle = positions.double() * theta ** (-2.0 * i / d)  # [B, L]
        cos, sin = angle.cos().float()[:, None], angle.sin().float()[:, None]  # [B, 1, L]
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * cos - b * sin
        out[..., i + half] = b * cos + a * sin
    return out


def _attention(q, k, v, allowed: torch.Tensor | None) -> torch.Tensor:
    """q [B, H, L, D]; k, v [B, Hkv, L, D] (query head h reads key/value head h // (H / Hkv)); allowed
    [B, L, L] bool or None (everything). A query row with no allowed key gets zeros."""
    heads, kv_heads = q.shape[1], k.shape[1]
    group = heads // kv_heads
    out = torch.zeros_like(q)
    for h in range(heads):
        scores = q[:, h] @ k[:, h // group].transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, L, L]
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.nan_to_num(scores.softmax(-1), nan=0.0)
        out[:, h] = probs @ v[:, h // group]
    return out


def forward(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    rope_theta: float | None = None,
) -> torch.Tensor:
    """The official Dream forward pass in float32: logits [B, L, V] (unshifted). ``rope_theta`` overrides the
    config's base (NTK scaling multiplies it)."""
    theta = config["rope_theta"] if rope_theta is None else rope_theta
    b, length = input_ids.shape
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config["hidden_size"] // heads
    eps = config["rms_norm_eps"]
    if position_ids is None:
        position_ids = torch.arange(length).expand(b, length)
    allowed = None
    if attention_mask is not None and bool((attention_mask == 0).any()):
        real = attention_mask.bool()
        allowed = real[:, None, :] & real[:, :, None]  # [B, query, key]: padded keys and padded query rows masked

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ state[name + ".weight"].T
        return y + state[name + ".bias"] if name + ".bias" in state else y

    x = state["model.embed_tokens.weight"][input_ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        n = _rms_norm(x, state[p + "input_layernorm.weight"], eps)
        q = linear(n, p + "self_attn.q_proj").view(b, length, heads, head_dim).transpose(1, 2)
        k = linear(n, p + "self_attn.k_proj").view(b, length, kv_heads, head_dim).transpose(1, 2)
        v = linear(n, p + "self_attn.v_proj").view(b, length, kv_heads, head_dim).transpose(1, 2)
        q, k = _rotate(q, position_ids, theta), _rotate(k, position_ids, theta)
        attended = _attention(q, k, v, allowed).transpose(1, 2).reshape(b, length, heads * head_dim)
        x = x + linear(attended, p + "self_attn.o_proj")
        m = _rms_norm(x, state[p + "post_attention_layernorm.weight"], eps)
        gate, up = linear(m, p + "mlp.gate_proj"), linear(m, p + "mlp.up_proj")
        x = x + linear(torch.nn.functional.silu(gate) * up, p + "mlp.down_proj")
    return linear(_rms_norm(x, state["model.norm.weight"], eps), "lm_head")


# -- the sampler ------------------------------------------------------------------------------------------------


def _filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep, in each row, the most probable tokens up to and including the first whose cumulative probability
    exceeds top_p; the others get the lowest float."""
    out = logits.clone()
    for row in range(logits.shape[0]):
        order = logits[row].argsort(descending=True)
        cumulative = logits[row][order].softmax(-1).cumsum(-1)
        for rank in range(1, len(order)):
            if cumulative[rank - 1] > top_p:
                out[row, order[rank]] = torch.finfo(logits.dtype).min
    return out


def _filter_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the tokens whose logit is at least the k-th largest of the row; the others get the lowest float."""
    kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)


def sample_tokens(
    logits: torch.Tensor,
    alg: str,
    temperature: float,
    top_p: float | None,
    top_k: int | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [N, V] of N masked positions -> (confidence [N], token [N]) as the official ``sample_tokens``."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = _filter_top_p(logits, top_p)
    if top_k is not None:
        logits = _filter_top_k(logits, top_k)
    probs = logits.softmax(-1)
    if temperature > 0:
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        confidence = probs.gather(-1, token[:, None]).squeeze(-1)
    else:
        confidence, token = probs.max(-1)
    if alg == "topk_margin":
        top2 = probs.topk(2, dim=-1).values
        confidence = top2[:, 0] - top2[:, 1]
    elif alg == "entropy":
        confidence = (probs * torch.log(probs + 1e-10)).sum(-1)  # the negative entropy
    return confidence, token


def diffusion_generate(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 16,
    steps: int = 16,
    eps: float = 1e-3,
    alg: str = "origin",
    alg_temp: float | None = None,
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int | None = None,
    rope_theta: float | None = None,
    generator: torch.Generator | None = None,
    generation_tokens_hook_func=None,
    generation_logits_hook_func=None,
) -> torch.Tensor:
    """The official sampler: [B, P] left-padded prompts -> [B, P + max_new_tokens].

    x = prompt + masks. Timesteps t_i = linspace(1, eps, steps + 1). At step i (t = t_i, s = t_{i+1}) the
    shifted logits of x give, at each masked position, a token and a confidence. ``origin``: each masked position
    takes its token with probability 1 - s/t (1 at the last step). Other algorithms: n = int(mean masked count
    per row × (1 - s/t)) (all remaining at the last step); each row commits its n most confident masked
    positions (drawn from softmax(confidence / alg_temp) when alg_temp > 0). Only masked positions are ever
    chosen (the official code can pick an unmasked one when rows' masked counts differ; that never happens
    here, the mask token never being predicted).

    The official hooks: ``x = generation_tokens_hook_func(None, x, None)`` before the first step; at step i,
    ``logits = generation_logits_hook_func(i, x, logits)`` on the shifted logits of the whole sequence, and
    ``x = generation_tokens_hook_func(i, x, logits)`` after the step's commit. Every step runs (the official loop
    has no early exit), whether masks remain or not.
    """
    tokens_hook = generation_tokens_hook_func or (lambda step, x, logits: x)
    logits_hook = generation_logits_hook_func or (lambda step, x, logits: logits)
    mask_id = config["mask_token_id"]
    b, prompt_len = input_ids.shape
    x = torch.cat((input_ids, torch.full((b, max_new_tokens), mask_id, dtype=input_ids.dtype)), dim=1)
    mask4d, positions = None, None
    if attention_mask is not None and bool((attention_mask == 0).any()):
        full = torch.cat((attention_mask, torch.ones(b, max_new_tokens, dtype=attention_mask.dtype)), dim=1)
        positions = full.long().cumsum(-1) - 1
        positions[full == 0] = 1
        mask4d = full
    timesteps = torch.linspace(1, eps, steps + 1)
    x = tokens_hook(None, x, None)
    for i in range(steps):
        is_masked = x == mask_id
        logits = forward(config, state, x, mask4d, positions, rope_theta)
        logits = torch.cat((logits[:, :1], logits[:, :-1]), dim=1)  # position j now predicts token j
        logits = logits_hook(i, x, logits)
        t, s = timesteps[i], timesteps[i + 1]
        masked_logits = logits[is_masked]  # [N, V], row-major over (batch row, position)
        if alg == "origin":
            p_transfer = float(1 - s / t) if i < steps - 1 else 1.0
            chosen = torch.rand(masked_logits.shape[0], generator=generator) < p_transfer
            tokens = torch.full((masked_logits.shape[0],), mask_id, dtype=x.dtype)
            if bool(chosen.any()):
                _, picked = sample_tokens(masked_logits[chosen], alg, temperature, top_p, top_k, generator)
                tokens[chosen] = picked
            x[is_masked] = tokens
            x = tokens_hook(i, x, logits)
            continue
        confidence, tokens = sample_tokens(masked_logits, alg, temperature, top_p, top_k, generator)
        assert not bool((tokens == mask_id).any()), "the reference is defined for models that never predict mask"
        mean_masked = is_masked.sum() / b
        n = int(mean_masked * (1 - s / t)) if i < steps - 1 else int(mean_masked)
        if n == 0:
            x = tokens_hook(i, x, logits)
            continue
        full_confidence = torch.full(x.shape, float("-inf"))
        full_confidence[is_masked] = confidence
        proposal = torch.full_like(x, mask_id)
        proposal[is_masked] = tokens
        for row in range(b):
            candidates = int(is_masked[row].sum())
            take = min(n, candidates)
            if alg_temp is None or alg_temp == 0:
                picked = full_confidence[row].topk(take).indices
            else:
                weights = (full_confidence[row] / alg_temp).softmax(-1)
                picked = torch.multinomial(weights, take, generator=generator)
            x[row, picked] = proposal[row, picked]
        x = tokens_hook(i, x, logits)
    return x
