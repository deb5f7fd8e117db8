"""A plain, slow reference of LLaDA2.0 / LLaDA2.1, written from the official model file (inclusionAI's Hub repos
``LLaDA2.0-mini`` / ``LLaDA2.1-*``, ``modeling_llada2_moe.py``, as copied in the dllm library:
``dllm/pipelines/llada2/models/`` and ``dllm/pipelines/llada21/models/``), independent of the project's model code.
Tests compare our model and samplers against it.

- :func:`official_config` / :func:`random_state_dict` / :func:`write_official_folder`: a tiny checkpoint in the
  official format (``model_type: "llada2_moe"``, the official ``auto_map`` and state-dict keys: fused
  ``query_key_value``, ``dense``, ``query_layernorm`` / ``key_layernorm``, a dense first layer, MoE layers with
  ``gate.weight`` / ``gate.expert_bias``, ``experts.N.*`` and ``shared_experts.*``, ``word_embeddings``, final
  ``norm``, ``lm_head``). LLaDA2.0 and LLaDA2.1 checkpoints share this format; only their ``generate`` differs.
- :func:`block_diffusion_mask`: the additive block-causal mask exactly as the official ``generate`` builds it
  (``tril(ones(blocks, blocks))`` expanded to tokens, ``.log()``: 0 where allowed, -inf elsewhere; bfloat16).
- :func:`forward`: the official forward pass under an additive 4-D mask (the official code adds it to the
  attention scores as given), logits in float32.
- :func:`generate`: LLaDA2.0's official ``generate`` (batch 1): ``threshold``, ``minimal_topk``,
  ``temperature`` / ``top_k`` / ``top_p``, ``eos_early_stop``, blocks inside the prompt skipped, the window
  ``x[:, :window_end]`` recomputed at every step.
- :func:`generate_editing`: LLaDA2.1's official ``generate`` (batch 1): masked positions committed above
  ``threshold`` (at least ``num_to_transfer`` a step), already placed tokens of the block replaced where the new
  token differs and its probability exceeds ``editing_threshold``, up to ``max_post_steps`` steps after the block
  has no mask left.

Everything is computed token by token, head by head or expert by expert where that reads more plainly; speed is
no aim. The official `generate` casts its mask to bfloat16 whatever the model's dtype (its float32 forward then
fails in SDPA); the mask holds only 0 and -inf, which every float dtype represents exactly, so the reference adds
it in float32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

OFFICIAL_AUTO_MAP = {
    "AutoConfig": "configuration_llada2_moe.LLaDA2MoeConfig",
    "AutoModel": "modeling_llada2_moe.LLaDA2MoeModel",
    "AutoModelForCausalLM": "modeling_llada2_moe.LLaDA2MoeModelLM",
}
VERSIONS = ("2.0", "2.1")

# Token ids of the tiny checkpoints. LLaDA2's own: pad = eos = 156892 (<|endoftext|>), mask = 156895.
PAD_ID = EOS_ID = 1
# A block length that the tiny prompts do not fill: a 13-token prompt leaves 3 masks in its second block.
BLOCK_LENGTH = 8


def official_config(
    hidden_size: int = 32,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    head_dim: int = 16,
    num_hidden_layers: int = 3,
    first_k_dense_replace: int = 1,
    num_experts: int = 8,
    n_group: int = 4,
    topk_group: int = 2,
    num_experts_per_tok: int = 2,
    vocab_size: int = 160,
    rope_theta: float = 10000.0,
    max_position_embeddings: int = 256,
    **extra: Any,
) -> dict[str, Any]:
    """The keys of an official LLaDA2 config.json with tiny sizes: the official class's arguments plus the keys
    that the checkpoints carry and the code never reads (``norm_topk_prob``, ``score_function``, ``rotary_dim``,
    ...). ``head_dim`` (16) differs from ``hidden_size / num_attention_heads`` (8), as the official file allows;
    RoPE turns the first 8 of the 16 dimensions (``partial_rotary_factor`` 0.5).

    Beyond the official keys: ``eos_token_id`` and ``mask_token_id`` (the official ``generate`` takes them as
    arguments, defaulting to LLaDA2's ids, outside a tiny vocabulary; the official config class keeps any extra
    key). The mask token is the last id."""
    partial_rotary_factor = 0.5
    config = {
        "architectures": ["LLaDA2MoeModelLM"],
        "attention_dropout": 0.0,
        "auto_map": dict(OFFICIAL_AUTO_MAP),
        "embedding_dropout": 0.0,
        "eos_token_id": EOS_ID,
        "first_k_dense_replace": first_k_dense_replace,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": 48,
        "mask_token_id": vocab_size - 1,
        "max_position_embeddings": max_position_embeddings,
        "max_window_layers": 28,
        "model_type": "llada2_moe",
        "moe_intermediate_size": 16,
        "moe_router_enable_expert_bias": True,
        "n_group": n_group,
        "norm_head": False,
        "norm_softmax": False,
        "norm_topk_prob": True,
        "num_attention_heads": num_attention_heads,
        "num_experts": num_experts,
        "num_experts_per_tok": num_experts_per_tok,
        "num_hidden_layers": num_hidden_layers,
        "num_key_value_heads": num_key_value_heads,
        "num_shared_experts": 1,
        "output_dropout": 0.0,
        "output_router_logits": False,
        "pad_token_id": PAD_ID,
        "partial_rotary_factor": partial_rotary_factor,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": rope_theta,
        "rotary_dim": int(head_dim * partial_rotary_factor),
        "routed_scaling_factor": 2.5,
        "router_dtype": "fp32",
        "score_function": "sigmoid",
        "tie_word_embeddings": False,
        "topk_group": topk_group,
        "torch_dtype": "float32",
        "transformers_version": "4.52.3",
        "use_bias": False,
        "use_cache": False,
        "use_qk_norm": True,
        "use_qkv_bias": False,
        "use_rmsnorm": True,
        "use_sliding_window": False,
        "using_split_qkv_in_self_attention": False,
        "vocab_size": vocab_size,
    }
    config.update(extra)
    return config


def _head_dim(config: dict[str, Any]) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def _kv_heads(config: dict[str, Any]) -> int:
    return config["num_key_value_heads"] or config["num_attention_heads"]


def _is_moe_layer(config: dict[str, Any], layer: int) -> bool:
    return config.get("num_experts") is not None and layer >= config.get("first_k_dense_replace", 0)


def random_state_dict(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 weights under the official key names, for the official module tree:
    ``model.word_embeddings``, ``model.layers.N.{input_layernorm, attention.{query_key_value, query_layernorm,
    key_layernorm, dense}, post_attention_layernorm, mlp}``, ``model.norm``, ``lm_head``; a dense layer's ``mlp``
    has ``gate_proj`` / ``up_proj`` / ``down_proj``, an MoE layer's has ``gate.weight``, the ``gate.expert_bias``
    buffer, ``experts.N.{gate,up,down}_proj`` and ``shared_experts.{gate,up,down}_proj``.

    Norm weights, biases and the expert bias are random too (a model that ignored one would differ); the expert
    bias is large enough to change which experts are chosen. The mask token's row of ``lm_head`` is zero: its
    logit is then 0 while the best of the others is well above 0, so no position ever predicts the mask token (a
    case in which LLaDA2.1's official loop never ends; parity is defined without it)."""
    g = torch.Generator().manual_seed(seed)
    d, vocab, head_dim = config["hidden_size"], config["vocab_size"], _head_dim(config)
    heads, kv_heads = config["num_attention_heads"], _kv_heads(config)

    def normal(*shape: int, std: float = 0.08) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def swiglu(prefix: str, width: int) -> None:
        state[prefix + "gate_proj.weight"] = normal(width, d, std=0.3)
        state[prefix + "up_proj.weight"] = normal(width, d, std=0.3)
        state[prefix + "down_proj.weight"] = normal(d, width, std=0.3)

    state = {"model.word_embeddings.weight": normal(vocab, d, std=1.0)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        state[p + "input_layernorm.weight"] = 1.0 + normal(d, std=0.1)
        state[p + "attention.query_key_value.weight"] = normal((heads + 2 * kv_heads) * head_dim, d, std=0.3)
        if config.get("use_qkv_bias"):
            state[p + "attention.query_key_value.bias"] = normal((heads + 2 * kv_heads) * head_dim, std=0.1)
        if config.get("use_qk_norm", True):
            state[p + "attention.query_layernorm.weight"] = 1.0 + normal(head_dim, std=0.1)
            state[p + "attention.key_layernorm.weight"] = 1.0 + normal(head_dim, std=0.1)
        state[p + "attention.dense.weight"] = normal(d, heads * head_dim, std=0.2)
        if config.get("use_bias"):
            state[p + "attention.dense.bias"] = normal(d, std=0.1)
        state[p + "post_attention_layernorm.weight"] = 1.0 + normal(d, std=0.1)
        if not _is_moe_layer(config, i):
            swiglu(p + "mlp.", config["intermediate_size"])
            continue
        state[p + "mlp.gate.weight"] = normal(config["num_experts"], d, std=0.5)
        state[p + "mlp.gate.expert_bias"] = normal(config["num_experts"], std=0.1)
        for e in range(config["num_experts"]):
            swiglu(p + f"mlp.experts.{e}.", config["moe_intermediate_size"])
        if config.get("num_shared_experts") is not None:
            swiglu(p + "mlp.shared_experts.", config["moe_intermediate_size"] * config["num_shared_experts"])
    state["model.norm.weight"] = 1.0 + normal(d, std=0.1)
    state["lm_head.weight"] = normal(vocab, d, std=0.5)
    state["lm_head.weight"][config["mask_token_id"]] = 0.0
    return state


def write_official_folder(folder: str | Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> Path:
    """An official-format checkpoint folder: config.json and model.safetensors, as an official LLaDA2.0 or
    LLaDA2.1 repo holds them (their code files, which ``auto_map`` names, are not available here). Give it a
    name without '.' (transformers 4.46 needs that to import a folder's remote code)."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def random_prompt(length: int, config: dict[str, Any], seed: int = 1) -> torch.Tensor:
    """[1, length] token ids drawn from the ordinary tokens (neither pad/eos nor mask)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(EOS_ID + 1, config["mask_token_id"], (1, length), generator=g)


# -- the forward pass -------------------------------------------------------------------------------------------


def block_diffusion_mask(num_blocks: int, block_length: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """[1, 1, T, T] additive mask, T = num_blocks * block_length: 0 where the query's block is at or after the
    key's block, -inf elsewhere (a token sees its own block and every earlier one)."""
    block = torch.arange(num_blocks * block_length) // block_length
    allowed = (block[:, None] >= block[None, :]).float()
    return allowed.log().to(dtype)[None, None]


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalise each vector by its root mean square in float32, then scale by the weight."""
    normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def _inverse_frequencies(rotary_dim: int, theta: float) -> torch.Tensor:
    """The rotation speed of each pair of rotated dimensions: theta^(-2i / rotary_dim), in float32."""
    return 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim))


def _rotate(x: torch.Tensor, positions: torch.Tensor, rotary_dim: int, theta: float) -> torch.Tensor:
    """Partial rotate-half RoPE. x [B, H, L, D], positions [B, L]. Only the first ``rotary_dim`` dimensions turn:
    dimension i < rotary_dim / 2 pairs with i + rotary_dim / 2 and turns by position · theta^(-2i / rotary_dim);
    the others pass unchanged."""
    half = rotary_dim // 2
    out = x.clone()
    inverse = _inverse_frequencies(rotary_dim, theta)
    for i in range(half):
        angle = positions.float() * inverse[i]  # [B, L]
        cos, sin = angle.cos()[:, None], angle.sin()[:, None]  # [B, 1, L]
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * cos - b * sin
        out[..., i + half] = b * cos + a * sin
    return out


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q [B, H, Lq, D]; k, v [B, Hkv, Lk, D] (query head h reads key/value head h // (H / Hkv)); mask: an additive
    [B or 1, 1, Lq, Lk] mask added to the scaled scores as given, or None (everything)."""
    heads, kv_heads = q.shape[1], k.shape[1]
    group = heads // kv_heads
    out = torch.empty_like(q)
    for h in range(heads):
        scores = q[:, h] @ k[:, h // group].transpose(-1, -2) * q.shape[-1] ** -0.5  # [B, Lq, Lk]
        if mask is not None:
            scores = scores + mask[:, 0].float()
        out[:, h] = scores.softmax(-1) @ v[:, h // group]
    return out


def _linear(x: torch.Tensor, state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    y = x @ state[name + ".weight"].T
    return y + state[name + ".bias"] if name + ".bias" in state else y


def _swiglu(x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    gate, up = _linear(x, state, prefix + "gate_proj"), _linear(x, state, prefix + "up_proj")
    return _linear(torch.nn.functional.silu(gate) * up, state, prefix + "down_proj")


def route(config: dict[str, Any], state: dict[str, torch.Tensor], prefix: str, x: torch.Tensor):
    """The official gate for tokens x [N, d] -> (expert ids [N, k], weights [N, k]).

    scores = sigmoid(x · W^T) in float32. Selection reads scores + expert_bias: each of the ``n_group`` groups of
    consecutive experts is scored by the sum of its two best; the best ``topk_group`` groups stay; the best
    ``num_experts_per_tok`` experts inside them are chosen. The weights are the chosen experts' unbiased scores,
    divided by their sum (+1e-20) when more than one is chosen, times ``routed_scaling_factor``."""
    experts, groups = config["num_experts"], config["n_group"]
    top_k, top_groups = config["num_experts_per_tok"], config["topk_group"]
    scores = torch.sigmoid(x.float() @ state[prefix + "gate.weight"].float().T)  # [N, E]
    biased = scores + state[prefix + "gate.expert_bias"].float()
    chosen, weights = [], []
    for token in range(x.shape[0]):
        per_group = biased[token].view(groups, experts // groups)
        group_score = per_group.topk(2, dim=-1).values.sum(-1)
        kept_groups = set(group_score.topk(top_groups).indices.tolist())
        candidates = torch.full_like(biased[token], float("-inf"))
        for e in range(experts):
            if e // (experts // groups) in kept_groups:
                candidates[e] = biased[token, e]
        ids = candidates.topk(top_k).indices
        w = scores[token, ids]
        if top_k > 1:
            w = w / (w.sum() + 1e-20)
        chosen.append(ids)
        weights.append(w * config["routed_scaling_factor"])
    return torch.stack(chosen), torch.stack(weights)


def _moe(config: dict[str, Any], state: dict[str, torch.Tensor], prefix: str, x: torch.Tensor) -> torch.Tensor:
    """x [B, L, d] -> the routed experts' weighted sum plus the shared experts, each token on its own."""
    flat = x.reshape(-1, x.shape[-1])
    ids, weights = route(config, state, prefix, flat)
    out = torch.zeros_like(flat)
    for token in range(flat.shape[0]):
        for slot in range(ids.shape[1]):
            expert = f"{prefix}experts.{int(ids[token, slot])}."
            out[token] += weights[token, slot] * _swiglu(flat[token], state, expert)
    if config.get("num_shared_experts") is not None:
        out = out + _swiglu(flat, state, prefix + "shared_experts.")
    return out.view_as(x)


def forward(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    rope_theta: float | None = None,
) -> torch.Tensor:
    """The official LLaDA2 forward pass in float32: input_ids [B, L] -> logits [B, L, V] (position i predicts
    token i, no shift). ``attention_mask``: an additive [B or 1, 1, L, L] mask (0 / -inf, any float dtype; see
    :func:`block_diffusion_mask`) or None for full bidirectional attention. Positions default to 0..L-1.
    ``rope_theta`` overrides the config's base (NTK scaling multiplies it)."""
    theta = config["rope_theta"] if rope_theta is None else rope_theta
    b, length = input_ids.shape
    heads, kv_heads, head_dim = config["num_attention_heads"], _kv_heads(config), _head_dim(config)
    rotary_dim = int(head_dim * config.get("partial_rotary_factor", 0.5))
    eps = config["rms_norm_eps"]
    if position_ids is None:
        position_ids = torch.arange(length).expand(b, length)

    x = state["model.word_embeddings.weight"][input_ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        n = _rms_norm(x, state[p + "input_layernorm.weight"], eps)
        qkv = _linear(n, state, p + "attention.query_key_value").view(b, length, heads + 2 * kv_heads, head_dim)
        q, k, v = (part.transpose(1, 2) for part in qkv.split([heads, kv_heads, kv_heads], dim=2))
        if config.get("use_qk_norm", True):
            q = _rms_norm(q, state[p + "attention.query_layernorm.weight"], eps)
            k = _rms_norm(k, state[p + "attention.key_layernorm.weight"], eps)
        q, k = _rotate(q, position_ids, rotary_dim, theta), _rotate(k, position_ids, rotary_dim, theta)
        attended = _attention(q, k, v, attention_mask).transpose(1, 2).reshape(b, length, heads * head_dim)
        x = x + _linear(attended, state, p + "attention.dense")
        m = _rms_norm(x, state[p + "post_attention_layernorm.weight"], eps)
        x = x + (_moe(config, state, p + "mlp.", m) if _is_moe_layer(config, i) else _swiglu(m, state, p + "mlp."))
    return _linear(_rms_norm(x, state["model.norm.weight"], eps), state, "lm_head").float()


# -- the samplers -----------------------------------------------------------------------------------------------


def _filter_top_k(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Keep the logits at least as large as the row's k-th largest (None or k <= 0: all); the rest get -inf."""
    if top_k is None or top_k <= 0:
        return logits
    kth = logits.topk(top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _filter_top_p(logits: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Keep, in each row, the most probable tokens up to and including the first whose cumulative probability
    exceeds top_p (None or top_p >= 1: all); the rest get -inf."""
    if top_p is None or top_p >= 1.0:
        return logits
    out = logits.clone()
    for row in range(logits.shape[0]):
        order = logits[row].argsort(descending=True, stable=True)
        cumulative = logits[row][order].softmax(-1).cumsum(-1)
        for rank in range(1, len(order)):
            if cumulative[rank - 1] > top_p:
                out[row, order[rank]] = float("-inf")
    return out


def sample(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    greedy_on_logits: bool,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [N, V] -> (token [N], its probability [N]) as the official sampler draws them.

    temperature 0: the most probable token and its softmax probability (top_k / top_p ignored; LLaDA2.0 takes
    the argmax of the probabilities, LLaDA2.1 of the logits: ``greedy_on_logits``). Otherwise logits /
    temperature (when not 1), then top-k, then top-p, then one draw from the softmax, with its probability under
    that filtered distribution."""
    if temperature == 0.0:
        probs = logits.softmax(-1)
        token = (logits if greedy_on_logits else probs).argmax(-1)
        return token, probs.gather(-1, token[:, None])[:, 0]
    if temperature != 1.0:
        logits = logits / temperature
    probs = _filter_top_p(_filter_top_k(logits, top_k), top_p).softmax(-1)
    token = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return token, probs.gather(-1, token[:, None])[:, 0]


def transfer_schedule(block_length: int, steps: int) -> list[int]:
    """How many masked tokens each of ``steps`` steps commits at least: block_length spread evenly, the
    remainder to the first steps (``[]`` for 0 steps)."""
    if steps == 0:
        return []
    base, remainder = divmod(block_length, steps)
    return [base + (1 if i < remainder else 0) for i in range(steps)]


def _canvas(inputs: torch.Tensor, gen_length: int, block_length: int, mask_id: int) -> tuple[torch.Tensor, int]:
    """The prompt followed by masks up to a whole number of blocks covering prompt + gen_length."""
    prompt_length = inputs.shape[1]
    num_blocks = math.ceil((prompt_length + gen_length) / block_length)
    x = torch.full((1, num_blocks * block_length), mask_id, dtype=torch.long)
    x[:, :prompt_length] = inputs
    return x, num_blocks


def _answer(x: torch.Tensor, prompt_length: int, gen_length: int, eos_id: int) -> torch.Tensor:
    """The official return: the generated tokens up to the first eos (included), at most gen_length of them."""
    generated = x[0, prompt_length : prompt_length + gen_length]
    eos = (generated == eos_id).nonzero()
    end = int(eos[0, 0]) + 1 if len(eos) else gen_length
    return x[:, prompt_length : prompt_length + end]


def generate(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    temperature: float = 0.0,
    block_length: int = 32,
    steps: int = 32,
    gen_length: int = 2048,
    top_p: float | None = None,
    top_k: int | None = None,
    eos_early_stop: bool = False,
    minimal_topk: int = 1,
    threshold: float = 0.95,
    eos_id: int = 156892,
    mask_id: int = 156895,
    rope_theta: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LLaDA2.0's official ``generate`` for one prompt [1, P] -> the answer [1, n] (n <= gen_length).

    steps = min(steps, gen_length // minimal_topk). The canvas is the prompt then masks, ceil((P + gen_length) /
    block_length) whole blocks. Blocks wholly inside the prompt are skipped; for each later block b the window
    x[:, :(b + 1) * block_length] is run under the block-causal mask at every step (positions 0..), and the step
    ends as soon as block b has no mask. Step s samples a token for each position of block b; among the masked
    ones, all whose probability exceeds ``threshold`` are committed if they are at least schedule[s] (see
    :func:`transfer_schedule`), else the schedule[s] most probable (fewer when fewer are masked). With
    ``eos_early_stop``, a step that commits an eos returns at once if the window's first eos has no mask between
    the prompt and it (the answer up to it). After each block, generation stops if the generated part holds an
    eos (whatever ``eos_early_stop``)."""
    steps = min(steps, gen_length // minimal_topk)
    prompt_length = inputs.shape[1]
    x, num_blocks = _canvas(inputs, gen_length, block_length, mask_id)
    mask = block_diffusion_mask(num_blocks, block_length)
    schedule = transfer_schedule(block_length, steps)
    for block in range(prompt_length // block_length, num_blocks):
        end = (block + 1) * block_length
        for step in range(steps):
            masked = x[0, end - block_length : end] == mask_id
            if not bool(masked.any()):
                break
            logits = forward(config, state, x[:, :end], mask[..., :end, :end], rope_theta=rope_theta)
            token, prob = sample(logits[0, -block_length:], temperature, top_k, top_p, False, generator)
            confidence = torch.where(masked, prob, torch.tensor(float("-inf")))
            confident = confidence > threshold
            if int(confident.sum()) >= schedule[step]:
                commit = confident
            else:
                commit = torch.zeros_like(masked)
                commit[confidence.topk(min(schedule[step], int(masked.sum()))).indices] = True
            assert not bool((token[commit] == mask_id).any()), (
                "the reference is defined for models that never predict mask"
            )
            x[0, end - block_length : end][commit] = token[commit]
            if eos_early_stop and bool((token[commit] == eos_id).any()):
                eos = (x[0, :end] == eos_id).nonzero()
                if len(eos):
                    first = int(eos[0, 0])
                    if bool((x[0, prompt_length:first] != mask_id).all()):
                        return x[:, prompt_length : first + 1]
        if bool((x[0, prompt_length:end] == eos_id).any()):
            break
    return _answer(x, prompt_length, gen_length, eos_id)


def generate_editing(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    temperature: float = 0.0,
    block_length: int = 32,
    steps: int = 32,
    gen_length: int = 2048,
    top_p: float | None = None,
    top_k: int | None = None,
    eos_early_stop: bool = False,
    minimal_topk: int = 1,
    threshold: float = 0.95,
    editing_threshold: float = 0.9,
    max_post_steps: int = 16,
    eos_id: int = 156892,
    mask_id: int = 156895,
    num_to_transfer: int = 1,
    rope_theta: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LLaDA2.1's official ``generate`` for one prompt [1, P] -> the answer [1, n] (n <= gen_length).

    The canvas and the skipped prompt blocks are LLaDA2.0's; ``steps`` and ``minimal_topk`` are accepted and
    unused. For each later block b, a loop over steps on the window x[:, :(b + 1) * block_length]:

    1. At the step's start: if block b has no mask, ``post_steps`` += 1; if ``post_steps > max_post_steps``,
       the block is done (before running the model).
    2. Sample a token and its probability at every position of block b (greedy: argmax of the logits).
    3. Masked positions: all whose probability exceeds ``threshold`` if they are at least ``num_to_transfer``,
       else the ``num_to_transfer`` most probable (fewer when fewer are masked).
    4. Editing: positions of block b that were not masked at the step's start and are not prompt tokens take the
       sampled token where it differs from the current one and its probability exceeds ``editing_threshold``.
    5. Both are written; if the block had no mask at the step's start and nothing was edited, the block is done.

    After a block, with ``eos_early_stop``: stop if the generated part has no mask and holds an eos. The answer is
    cut at the first eos as LLaDA2.0's."""
    del steps, minimal_topk  # computed by the official code, never used
    prompt_length = inputs.shape[1]
    x, num_blocks = _canvas(inputs, gen_length, block_length, mask_id)
    mask = block_diffusion_mask(num_blocks, block_length)
    for block in range(prompt_length // block_length, num_blocks):
        start, end = block * block_length, (block + 1) * block_length
        is_prompt = torch.arange(start, end) < prompt_length
        post_steps = 0
        while True:
            current = x[0, start:end].clone()
            masked = current == mask_id
            if not bool(masked.any()):
                post_steps += 1
            if post_steps > max_post_steps:
                break
            logits = forward(config, state, x[:, :end], mask[..., :end, :end], rope_theta=rope_theta)
            token, prob = sample(logits[0, -block_length:], temperature, top_k, top_p, True, generator)
            commit = torch.zeros_like(masked)
            if bool(masked.any()):
                confidence = torch.where(masked, prob, torch.tensor(float("-inf")))
                confident = (confidence > threshold) & masked
                if int(confident.sum()) >= num_to_transfer:
                    commit = confident
                else:
                    commit[confidence.topk(min(num_to_transfer, int(masked.sum()))).indices] = True
            editable = ~masked & ~is_prompt
            edit = editable & (prob > editing_threshold) & (token != current)
            written = commit | edit
            assert not bool((token[written] == mask_id).any()), (
                "the reference is defined for models that never predict mask"
            )
            x[0, start:end][written] = token[written]
            if not bool(masked.any()) and not bool(edit.any()):
                break
        if eos_early_stop:
            generated = x[0, prompt_length:end]
            if not bool((generated == mask_id).any()) and bool((generated == eos_id).any()):
                break
    return _answer(x, prompt_length, gen_length, eos_id)
