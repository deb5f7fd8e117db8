"""The mixture-of-experts feed-forward (moe_longllada.py): routing rules against a plain per-token reading of them,
the batched experts (grouped products over a stacked copy) against the per-expert loop, the official per-expert keys,
the stacking's memory, and the fast path's values."""

from __future__ import annotations

import pytest
import torch

from modeling_longllada.moe_longllada import RoutingRule, SparseMoE, _group_limited_top_k

HIDDEN, INNER = 32, 16

RULES = {
    "lladamoe": dict(rule=RoutingRule(8, 3, bias_in_weights=True), expert_bias="moe", shared=None),
    "llada2": dict(
        rule=RoutingRule(
            8,
            3,
            score_function="sigmoid",
            logits_in_float32=True,
            n_group=4,
            topk_group=2,
            normalize=True,
            routed_scaling_factor=2.5,
            combine_in_float32=True,
        ),
        expert_bias="gate",
        shared=24,
    ),  # fmt: skip
    "plain_top2": dict(rule=RoutingRule(8, 2), expert_bias=None, shared=24),
}


def build(name: str, seed: int = 0) -> SparseMoE:
    spec = RULES[name]
    torch.manual_seed(seed)
    moe = SparseMoE(HIDDEN, INNER, spec["rule"], expert_bias=spec["expert_bias"],
                    shared_intermediate_size=spec["shared"])  # fmt: skip
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.3)
        for buffer in (moe.expert_bias, moe.gate.expert_bias):
            if buffer is not None:
                buffer.normal_(0, 0.2)
    return moe.eval()


def reference(moe: SparseMoE, x: torch.Tensor) -> torch.Tensor:
    """Token by token, expert by expert, as the rule's docstring reads."""
    rule = moe.rule
    bias = moe.expert_bias if moe.expert_bias is not None else moe.gate.expert_bias
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        logits = x[t] @ moe.gate.weight.T
        scores = logits.softmax(-1) if rule.score_function == "softmax" else logits.sigmoid()
        selection = scores + bias if bias is not None else scores
        weights_from = selection if rule.bias_in_weights else scores
        allowed = torch.ones(rule.num_experts, dtype=torch.bool)
        if rule.n_group is not None:
            groups = selection.view(rule.n_group, -1)
            group_scores = torch.stack([g.sort(descending=True).values[:2].sum() for g in groups])
            best = group_scores.argsort(descending=True)[: rule.topk_group]
            allowed = torch.zeros(rule.n_group, rule.num_experts // rule.n_group, dtype=torch.bool)
            allowed[best] = True
            allowed = allowed.flatten()
        chosen = selection.masked_fill(~allowed, -torch.inf).argsort(descending=True)[: rule.top_k]
        weights = weights_from[chosen]
        if rule.normalize:
            weights = weights / weights.sum()
        weights = weights * rule.routed_scaling_factor
        for e, w in zip(chosen.tolist(), weights):
            expert = moe.experts[e]
            h = torch.nn.functional.silu(x[t] @ expert.gate_proj.weight.T) * (x[t] @ expert.up_proj.weight.T)
            out[t] += w * (h @ expert.down_proj.weight.T)
        if moe.shared_experts is not None:
            s = moe.shared_experts
            out[t] += (torch.nn.functional.silu(x[t] @ s.gate_proj.weight.T) * (x[t] @ s.up_proj.weight.T)) @ (
                s.down_proj.weight.T
            )
    return out


@pytest.mark.parametrize("name", sorted(RULES))
def test_batched_experts_and_the_loop_equal_the_reference(name):
    moe = build(name)
    x = torch.randn(3, 5, HIDDEN, generator=torch.Generator().manual_seed(1))
    expected = reference(moe, x.view(-1, HIDDEN)).view_as(x)
    with torch.no_grad():
        batched = moe(x)
    assert moe._packed is not None  # the grouped products ran
    looped = moe(x)  # autograd on: the per-expert loop, which trains
    looped.sum().backward()
    assert moe.experts[0].gate_proj.weight.grad is not None or moe.experts[1].gate_proj.weight.grad is not None
    torch.testing.assert_close(batched, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(looped.detach(), expected, atol=1e-5, rtol=1e-5)


def test_group_limited_selection_stays_in_the_best_groups():
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.95, 0.0]])  # groups of 2: sums 1.0, 1.5, 0.5, 0.95
    chosen = _group_limited_top_k(scores, 3, 4, 2).sort().values
    assert chosen.tolist() == [[0, 2, 3]]  # groups 1 and 0; expert 6 (0.95) is in group 3, left out


def test_official_per_expert_keys_and_stacking_costs_no_memory():
    moe = build("lladamoe")
    keys = set(moe.state_dict())
    assert {"gate.weight", "expert_bias", "experts.7.gate_proj.weight", "experts.0.down_proj.weight"} <= keys
    state = {k: v.clone() for k, v in moe.state_dict().items()}

    def storage_bytes(module) -> int:
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in module.state_dict().values()}
        return sum(storages.values())

    before = storage_bytes(moe)
    with torch.no_grad():
        moe(torch.randn(4, HIDDEN))
    gate_up, down = moe._packed.gate_up, moe._packed.down
    assert storage_bytes(moe) == before  # the experts' weights now live in the stack, nothing besides
    assert moe.experts[5].up_proj.weight.data_ptr() == gate_up[5, INNER:].data_ptr()
    assert moe.experts[5].down_proj.weight.data_ptr() == down[5].data_ptr()
    for key, value in moe.state_dict().items():
        assert torch.equal(value, state[key]), key
    # A replaced parameter (a load, a device or dtype change) is stacked again, with its new values.
    with torch.no_grad():
        moe.experts[2].gate_proj.weight = torch.nn.Parameter(torch.zeros(INNER, HIDDEN))
        x = torch.randn(6, HIDDEN)
        out = moe(x)
    assert torch.equal(moe._packed.gate_up[2, :INNER], torch.zeros(INNER, HIDDEN))
    torch.testing.assert_close(out, reference(moe, x), atol=1e-5, rtol=1e-5)
    moe.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(moe(x), reference(moe, x), atol=1e-5, rtol=1e-5)
        doubled = moe.double()
        assert moe._packed is None
        assert doubled(x.double()).dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_path_gives_the_plain_values(dtype):
    from modeling_longllada.fast_longllada import FastOps

    moe = build("llada2").to(dtype)
    x = torch.randn(2, 7, HIDDEN).to(dtype)
    with torch.no_grad():
        assert torch.equal(moe(x), moe(x, FastOps))


def test_bad_routing_rules_are_refused():
    with pytest.raises(ValueError, match="score_function='relu'"):
        RoutingRule(8, 2, score_function="relu")
    with pytest.raises(ValueError, match="top_k=9"):
        RoutingRule(8, 9)
    with pytest.raises(ValueError, match="n_group=3"):
        RoutingRule(8, 2, n_group=3, topk_group=1)
    with pytest.raises(ValueError, match="expert_bias='router'"):
        SparseMoE(8, 8, RoutingRule(4, 1), expert_bias="router")
