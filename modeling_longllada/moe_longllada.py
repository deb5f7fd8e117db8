"""The mixture-of-experts feed-forward of the MoE diffusion families (LLaDA-MoE, LLaDA2): a router and batched
SwiGLU experts, in the feed-forward slot of :class:`modeling_longllada.DecoderLayer`.

Routing (Shazeer et al. 2017; the variants of OLMoE, Muennighoff et al. 2024, and DeepSeek-V3, 2024): scores from
the router's logits (softmax or sigmoid); an optional per-expert bias shifts the scores used to select the experts
(and, in LLaDA-MoE, the weights too); selection limited to the best groups of experts (a group scored by the sum
of its top two); the chosen weights optionally normalised and scaled; shared experts on every token.

The experts run batched: the (token, expert) pairs are sorted by expert and two grouped matrix products
(``torch._grouped_mm``) compute every expert at once, from one stacked copy of the expert weights whose slices the
per-expert parameters then are (so the official per-expert keys, ``mlp.experts.N.gate_proj.weight``, load as they
are, and the stacking costs no memory). No Python loop over experts and no [tokens × experts × hidden] tensor on
that path; a loop over the experts (the official code's way) remains for autograd and for a torch, device or dtype
without grouped products.

Copied flat into Hub model repos: imports only torch and the files beside it.

Shapes: T tokens, H hidden size, E experts, k experts per token, I expert inner size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .modeling_longllada import PlainOps, SwiGLUMLP

logger = logging.getLogger(__name__)

SCORE_FUNCTIONS = ("softmax", "sigmoid")
# Tokens per pass of the batched experts: bounds the [chunk × k, 2I] temporaries at long contexts.
EXPERT_TOKENS_PER_CHUNK = 16384
# (device type, dtype) pairs where torch._grouped_mm failed once: the loop runs there from then on.
_GROUPED_MM_FAILED: set[tuple[str, torch.dtype]] = set()


@dataclass(frozen=True)
class RoutingRule:
    """How a router turns its logits into (experts, weights) per token.

    num_experts, top_k: experts, and experts per token. score_function: ``softmax`` (over the experts) or
    ``sigmoid`` (each expert on its own). logits_in_float32: the router's product in float32 (LLaDA2) or in the
    hidden dtype (LLaDA-MoE). bias_in_weights: the expert bias shifts the weights as well as the selection
    (LLaDA-MoE) rather than the selection only (LLaDA2, DeepSeek-V3). n_group, topk_group: group-limited
    selection (experts split into n_group groups, each scored by the sum of its two best; the top-k is taken
    within the best topk_group groups). normalize: the chosen weights divided by their sum (with more than one
    expert). routed_scaling_factor: multiplies the weights. combine_in_float32: the experts' outputs weighted and
    summed in float32 (LLaDA2) rather than the hidden dtype (LLaDA-MoE)."""

    num_experts: int
    top_k: int
    score_function: str = "softmax"
    logits_in_float32: bool = False
    bias_in_weights: bool = False
    n_group: int | None = None
    topk_group: int | None = None
    normalize: bool = False
    routed_scaling_factor: float = 1.0
    combine_in_float32: bool = False

    def __post_init__(self) -> None:
        if self.score_function not in SCORE_FUNCTIONS:
            raise ValueError(f"score_function={self.score_function!r} is not allowed; allowed: {list(SCORE_FUNCTIONS)}")
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"top_k={self.top_k} is not allowed; allowed: 1 to num_experts={self.num_experts}")
        if self.n_group is not None:
            if self.num_experts % self.n_group or self.topk_group is None or not 1 <= self.topk_group <= self.n_group:
                raise ValueError(
                    f"n_group={self.n_group}, topk_group={self.topk_group} are not allowed with "
                    f"num_experts={self.num_experts}; allowed: n_group dividing num_experts, 1 <= topk_group <= n_group"
                )
            if self.top_k > self.topk_group * (self.num_experts // self.n_group):
                raise ValueError(
                    f"top_k={self.top_k} exceeds the experts of topk_group={self.topk_group} groups of "
                    f"{self.num_experts // self.n_group}"
                )


class Router(nn.Module):
    """The gate: ``weight`` [E, H] (the checkpoints' ``mlp.gate.weight``) and, where the checkpoint keeps it
    there, the ``expert_bias`` [E] buffer (LLaDA2's ``mlp.gate.expert_bias``)."""

    def __init__(self, hidden_size: int, rule: RoutingRule, expert_bias: bool = False):
        super().__init__()
        self.rule = rule
        self.weight = nn.Parameter(torch.empty(rule.num_experts, hidden_size))
        if expert_bias:
            self.register_buffer("expert_bias", torch.zeros(rule.num_experts))
        else:
            self.expert_bias = None

    def forward(self, x: torch.Tensor, expert_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, H] -> (experts [T, k] int64, weights [T, k]: float32, or x's dtype unless ``combine_in_float32``).
        ``expert_bias`` [E]: a bias held outside the router (LLaDA-MoE's ``mlp.expert_bias``)."""
        rule = self.rule
        if rule.logits_in_float32:
            logits = nn.functional.linear(x.float(), self.weight.float())
        else:
            logits = nn.functional.linear(x, self.weight)
        if rule.score_function == "softmax":
            scores = logits.softmax(dim=-1, dtype=torch.float32)
        else:
            scores = logits.float().sigmoid()
        bias = expert_bias if expert_bias is not None else self.expert_bias
        selection = scores + bias if bias is not None else scores
        if rule.bias_in_weights:
            scores = selection
        if rule.n_group is not None:
            experts = _group_limited_top_k(selection, rule.top_k, rule.n_group, rule.topk_group)
        else:
            experts = selection.topk(rule.top_k, dim=-1).indices
        weights = scores.gather(-1, experts)
        if rule.normalize and rule.top_k > 1:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        if rule.routed_scaling_factor != 1.0:
            weights = weights * rule.routed_scaling_factor
        return experts, weights if rule.combine_in_float32 else weights.to(x.dtype)


def _group_limited_top_k(scores: torch.Tensor, top_k: int, n_group: int, topk_group: int) -> torch.Tensor:
    """The top_k experts [T, k] within the topk_group best of n_group groups, a group scored by the sum of its
    two best experts (DeepSeek-V3's node-limited routing)."""
    tokens, experts = scores.shape
    grouped = scores.view(tokens, n_group, experts // n_group)
    group_scores = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(dim=-1)  # [T, n_group]
    best_groups = group_scores.topk(topk_group, dim=-1, sorted=False).indices
    # The other groups' experts out, the group mask broadcast over each group's experts (no [T, E] mask).
    dropped = torch.ones_like(group_scores, dtype=torch.bool)[..., None].scatter_(1, best_groups[..., None], False)
    masked = grouped.masked_fill(dropped, float("-inf")).view(tokens, experts)
    return masked.topk(top_k, dim=-1).indices


class _Packed(NamedTuple):
    """The stacked expert weights, and where each expert projection stood when its weight became a view of them:
    (its owner's module dict, its name there, the projection, the weight's data pointer)."""

    gate_up: torch.Tensor  # [E, 2I, H]: each expert's gate_proj rows, then its up_proj rows
    down: torch.Tensor  # [E, H, I]
    slots: tuple[tuple[dict, str, nn.Module, int], ...]

    def still_views(self) -> bool:
        """No projection and no weight was replaced since (a few dict lookups per expert: cheap per forward)."""
        return all(
            modules.get(name) is linear and linear._parameters["weight"].data_ptr() == pointer
            for modules, name, linear, pointer in self.slots
        )


class SparseMoE(nn.Module):
    """A mixture-of-experts SwiGLU feed-forward (``mlp`` of an MoE layer): ``gate`` (:class:`Router`),
    ``experts.N.{gate,up,down}_proj`` (:class:`SwiGLUMLP` each), optionally ``expert_bias`` (LLaDA-MoE keeps it
    here: ``expert_bias="moe"``; LLaDA2 in the gate: ``"gate"``) and ``shared_experts`` (a SwiGLU every token
    goes through, added to the routed output)."""

    def __init__(
        self,
        hidden_size: int,
        expert_intermediate_size: int,
        rule: RoutingRule,
        *,
        expert_bias: str | None = None,
        shared_intermediate_size: int | None = None,
    ):
        super().__init__()
        if expert_bias not in (None, "moe", "gate"):
            raise ValueError(f"expert_bias={expert_bias!r} is not allowed; allowed: None, 'moe' or 'gate'")
        self.rule = rule
        self.gate = Router(hidden_size, rule, expert_bias=expert_bias == "gate")
        self.experts = nn.ModuleList(SwiGLUMLP(hidden_size, expert_intermediate_size) for _ in range(rule.num_experts))
        if expert_bias == "moe":
            self.register_buffer("expert_bias", torch.zeros(rule.num_experts))
        else:
            self.expert_bias = None
        if shared_intermediate_size is not None:
            self.shared_experts = SwiGLUMLP(hidden_size, shared_intermediate_size)
        else:
            self.shared_experts = None
        self._packed: _Packed | None = None

    def forward(self, x: torch.Tensor, ops: type[PlainOps] = PlainOps) -> torch.Tensor:
        """x [..., H] (normalised) -> [..., H]."""
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        experts, weights = self.gate(tokens, self.expert_bias)
        y = None
        if self._batched_experts_apply(tokens):
            gate_up, down = self.stacked_weights()
            try:
                y = grouped_experts(tokens, experts, weights, gate_up, down, ops)
            except RuntimeError:  # no grouped product for this device/dtype (remembered): the loop below
                y = None
        if y is None:
            y = self._experts_one_by_one(tokens, experts, weights, ops)
        if self.shared_experts is not None:
            y = y + self.shared_experts(tokens, ops)
        return y.view(shape)

    # -- the batched experts ---------------------------------------------------------------------------------

    def _batched_experts_apply(self, x: torch.Tensor) -> bool:
        """Grouped products apply: no autograd (the stacked copy is no parameter), weights materialised (not
        offloaded to meta), a torch with ``_grouped_mm`` that worked here before, 16-byte aligned rows."""
        if torch.is_grad_enabled() or not hasattr(torch, "_grouped_mm"):
            return False
        if (x.device.type, x.dtype) in _GROUPED_MM_FAILED:
            return False
        first = self.experts[0]
        weight = first.gate_proj.weight
        if weight.is_meta or weight.device != x.device or weight.dtype != x.dtype:
            return False
        if self._packed is None and not all(
            type(linear) is nn.Linear and linear.bias is None
            for expert in self.experts
            for linear in (expert.gate_proj, expert.up_proj, expert.down_proj)
        ):
            return False  # e.g. quantised projections: only their own forward knows their weights
        hidden, inner = weight.shape[1], weight.shape[0]
        return (hidden * x.element_size()) % 16 == 0 and (inner * x.element_size()) % 16 == 0

    def stacked_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(gate_up [E, 2I, H], down [E, H, I]): the expert weights stacked, the expert parameters being views of
        them. Stacked on first use, and again whenever a parameter was replaced (a load, a device or dtype
        change): each expert's weights are copied in, then its parameters point into the stack, so the memory
        at rest is that of the experts alone (one layer's expert weights more while it is stacked)."""
        packed = self._packed
        if packed is not None and packed.still_views():
            return packed.gate_up, packed.down
        self._packed = None
        first = self.experts[0].gate_proj.weight
        inner, hidden = first.shape
        count = len(self.experts)
        gate_up = torch.empty(count, 2 * inner, hidden, dtype=first.dtype, device=first.device)
        down = torch.empty(count, hidden, inner, dtype=first.dtype, device=first.device)
        with torch.no_grad():
            for i, expert in enumerate(self.experts):
                gate_up[i, :inner].copy_(expert.gate_proj.weight)
                gate_up[i, inner:].copy_(expert.up_proj.weight)
                down[i].copy_(expert.down_proj.weight)
                expert.gate_proj.weight.data = gate_up[i, :inner]
                expert.up_proj.weight.data = gate_up[i, inner:]
                expert.down_proj.weight.data = down[i]
        slots = tuple(
            (expert._modules, name, expert._modules[name], expert._modules[name].weight.data_ptr())
            for expert in self.experts
            for name in ("gate_proj", "up_proj", "down_proj")
        )
        self._packed = _Packed(gate_up, down, slots)
        return gate_up, down

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .half() give every parameter new storage: the stack is rebuilt at the next forward.
        self._packed = None
        return super()._apply(fn, *args, **kwargs)

    def _experts_one_by_one(
        self, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, ops: type[PlainOps]
    ) -> torch.Tensor:
        """The official code's way: each expert over the tokens routed to it (differentiable; any device)."""
        out = torch.zeros(x.shape, dtype=weights.dtype if self.rule.combine_in_float32 else x.dtype, device=x.device)
        for index in experts.unique().tolist():
            token, choice = (experts == index).nonzero(as_tuple=True)
            y = self.experts[index](x[token], ops) * weights[token, choice, None]
            out.index_add_(0, token, y.to(out.dtype))
        return out.to(x.dtype)


def grouped_experts(
    x: torch.Tensor,
    experts: torch.Tensor,
    weights: torch.Tensor,
    gate_up: torch.Tensor,
    down: torch.Tensor,
    ops: type[PlainOps] = PlainOps,
) -> torch.Tensor:
    """Every token through its k experts with two grouped products, then the weighted sum over its k.

    x [T, H]; experts [T, k]; weights [T, k] (float32: combined in float32); gate_up [E, 2I, H]; down [E, H, I].
    The (token, choice) rows are sorted by expert, so each expert's rows are one contiguous run of the grouped
    product; tokens go in chunks of :data:`EXPERT_TOKENS_PER_CHUNK`. Returns [T, H] in x's dtype."""
    if x.shape[0] > EXPERT_TOKENS_PER_CHUNK:
        return torch.cat([
            grouped_experts(x[i : i + EXPERT_TOKENS_PER_CHUNK], experts[i : i + EXPERT_TOKENS_PER_CHUNK],
                            weights[i : i + EXPERT_TOKENS_PER_CHUNK], gate_up, down, ops)
            for i in range(0, x.shape[0], EXPERT_TOKENS_PER_CHUNK)
        ])  # fmt: skip
    tokens, k = experts.shape
    inner = down.shape[-1]
    by_expert, order = experts.flatten().sort(stable=True)  # (token, choice) rows by expert
    # Run ends per expert: how many rows have an expert up to each one, searched on the device (bincount would read
    # its size back to the host, which a CUDA graph cannot record).
    expert_ids = torch.arange(gate_up.shape[0], device=x.device, dtype=by_expert.dtype)
    ends = torch.searchsorted(by_expert, expert_ids, right=True, out_int32=True)
    rows = x.index_select(0, order // k)  # [T·k, H]
    projected = _grouped_mm(rows, gate_up.transpose(1, 2), ends)  # [T·k, 2I]
    del rows
    hidden = ops.swiglu(projected[:, :inner], projected[:, inner:])
    del projected
    out = _grouped_mm(hidden, down.transpose(1, 2), ends)  # [T·k, H]
    del hidden
    by_token = torch.empty_like(out)
    by_token[order] = out
    by_token = by_token.view(tokens, k, -1)
    if weights.dtype == torch.float32 and x.dtype != torch.float32:
        # bf16 × float32 is computed in float32 (type promotion): the products of by_token.float(), with no copy of it
        return (by_token * weights[..., None]).sum(dim=1).to(x.dtype)
    return (by_token * weights[..., None].to(x.dtype)).sum(dim=1)


def _grouped_mm(a: torch.Tensor, b: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """``torch._grouped_mm(a [N, K], b [E, K, M], offs=ends)`` -> [N, M]: rows ends[e-1]:ends[e] of a times b[e].
    A device/dtype where it fails once (e.g. float32 on CUDA) is remembered and raises, so the caller falls back."""
    try:
        return torch._grouped_mm(a, b, offs=ends)
    except RuntimeError as error:
        _GROUPED_MM_FAILED.add((a.device.type, a.dtype))
        logger.warning(
            "torch._grouped_mm failed on %s %s (%s); the experts run one by one there", a.device.type, a.dtype, error
        )
        raise
