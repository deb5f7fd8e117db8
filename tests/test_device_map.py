"""Sharding with ``device_map`` through accelerate's hooks, on the CPU.

A GPU run of a model too large for one card (LLaDA2.0-flash over two GPUs) loads it with ``device_map="auto"`` and a
``max_memory`` per device: accelerate assigns whole decoder layers to devices and hooks each one so that its inputs
follow it there. On a CPU the same hooks run when ``max_memory`` pushes layers to "disk": those layers rest on the
meta device and are brought to the CPU for their forward, as a layer on a second GPU brings the hidden states to
it. Whatever our code reads outside a module's forward (the sampler's block cache, a norm's weight in the fast
path, a tied head, the canvas's device) must then come from where the layer runs, not from where its weights
rest; these tests hold the tokens and logits of such a split model to the unsharded model's.
"""

from __future__ import annotations

import pytest
import torch

import modeling_longllada  # noqa: F401  (our classes behind the Auto classes)
from modeling_longllada import families
from modeling_longllada.generation_longllada import execution_device

accelerate = pytest.importorskip("accelerate")

OURS = [family.name for family in families.FAMILIES if not family.native]
LOGITS_TOLERANCE = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dtype_kwarg(dtype: torch.dtype) -> dict:
    import transformers

    return {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": dtype}


def split_budget(folder, dtype: torch.dtype = torch.float32) -> tuple[dict[str, int], dict]:
    """A CPU ``max_memory`` that holds the embedding and the first decoder layer but not the second, and the map
    accelerate infers from it (the later layers, the final norm and the head offloaded to disk)."""
    from accelerate import infer_auto_device_map, init_empty_weights
    from accelerate.utils import compute_module_sizes
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config).to(dtype)
    layers = empty.decoder_layers
    prefix = next(name for name, module in empty.named_modules() if module is layers)
    sizes = compute_module_sizes(empty)
    embedding = next(name for name, module in empty.named_modules() if module is empty.get_input_embeddings())
    largest = max(sizes[f"{prefix}.{i}"] for i in range(len(layers)))
    # accelerate keeps room for the largest layer beside what it places, to load offloaded layers into
    budget = {"cpu": sizes[embedding] + sizes[f"{prefix}.0"] + largest + sizes[f"{prefix}.0"] // 8}
    device_map = infer_auto_device_map(empty, max_memory=budget, no_split_module_classes=empty._no_split_modules)
    return budget, device_map


def load_split(folder, tmp_path, dtype: torch.dtype = torch.float32):
    """(unsharded model, model loaded with device_map="auto" under the split budget, the inferred map)."""
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(folder, **dtype_kwarg(dtype)).eval()
    budget, inferred = split_budget(folder, dtype)
    sharded = AutoModelForCausalLM.from_pretrained(
        folder, device_map="auto", max_memory=budget, offload_folder=str(tmp_path / "offload"), **dtype_kwarg(dtype)
    ).eval()
    return plain, sharded, inferred


def prompt(length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(10, 200, (1, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", OURS)
def test_no_split_modules_name_the_decoder_layer(tiny_family_dir, name):
    """accelerate keeps each decoder layer whole on one device only if ``_no_split_modules`` names its class."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_family_dir(name))
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    assert isinstance(model, families.family_by_name(name).model_cls())
    assert set(model._no_split_modules) == {type(layer).__name__ for layer in model.decoder_layers}


@pytest.mark.parametrize("name", OURS)
def test_max_memory_split_gives_the_unsharded_logits_and_tokens(tiny_family_dir, tmp_path, name):
    """``device_map="auto"`` with a ``max_memory`` that fits one decoder layer: the layers split between the CPU
    and disk as accelerate infers, and the logits and the family's answer (its default sampler and cache) are the
    unsharded model's."""
    plain, sharded, inferred = load_split(tiny_family_dir(name), tmp_path)
    assert sharded.hf_device_map == inferred
    first, last = sharded.decoder_layers[0], sharded.decoder_layers[-1]
    assert not any(p.is_meta for p in first.parameters()) and all(p.is_meta for p in last.parameters())
    ids = prompt(24)
    with torch.no_grad():
        expected, got = plain(ids).logits, sharded(ids).logits
    assert (got - expected).abs().max().item() <= LOGITS_TOLERANCE
    answers = [  # seeded: Dream's default ("origin") commits at random
        model.generate(ids, max_new_tokens=8, block_length=8, steps=8, generator=torch.Generator().manual_seed(2))
        for model in (plain, sharded)
    ]
    assert torch.equal(answers[1], answers[0])


def test_llada2_block_cache_lives_where_each_layer_runs(tiny_family_dir, tmp_path):
    """LLaDA2 split across the CPU and disk: the sampler's exact block cache (allocated per layer where the layer
    runs, written in place through the hooks) and the recompute give the unsharded model's tokens; the block
    likelihood bound agrees; the router's ``expert_bias`` of an offloaded layer is the checkpoint's (transformers 5
    initialises modules with offloaded weights: loaded buffers must survive that; 4.x must offload them)."""
    plain, sharded, _ = load_split(tiny_family_dir("llada2"), tmp_path)
    offloaded = sharded.model.layers[1]
    assert sharded.hf_device_map["model.layers.1"] == "disk"
    assert offloaded.attention.query_key_value.weight.is_meta
    assert execution_device(offloaded, torch.device("meta")) == torch.device("cpu")
    bias, resting = plain.model.layers[1].mlp.gate.expert_bias, offloaded.mlp.gate.expert_bias
    assert bias.abs().sum() > 0
    if not resting.is_meta:  # transformers 4.x offloads it with the weights (LongLLaDAPreTrainedModel.from_pretrained)
        assert torch.equal(resting, bias)
    ids = prompt(70, seed=1)  # two whole prompt blocks encoded into the cache, then the block holding its tail
    for cache in ("prefix", "none"):
        settings = dict(max_new_tokens=16, block_length=8, steps=8, cache=cache)
        assert torch.equal(sharded.generate(ids, **settings), plain.generate(ids, **settings)), cache
    with torch.no_grad():
        expected = plain(ids, block_causal=8).logits
        got = sharded(ids, block_causal=8).logits
    assert (got - expected).abs().max().item() <= LOGITS_TOLERANCE
    scores = [
        m.log_likelihood(ids[0, :40], ids[0, 40:], mc_num=2, batch_size=2, generator=torch.Generator().manual_seed(3))
        for m in (plain, sharded)
    ]
    assert scores[1] == pytest.approx(scores[0], abs=LOGITS_TOLERANCE)


def test_fast_path_norms_run_through_their_hooks(tiny_family_dir, tmp_path):
    """The fast path reads a norm's weight itself; an offloaded norm (the final one here) has none at rest, so it
    runs its own forward: bf16 logits as the unsharded fast path's."""
    plain, sharded, _ = load_split(tiny_family_dir("llada2"), tmp_path, torch.bfloat16)
    assert sharded.hf_device_map["model.norm"] == "disk" and sharded.model.norm.weight.is_meta
    ids = prompt(24)
    for model in (plain, sharded):
        model.set_fast_path(True)
    with torch.no_grad():
        expected, got = plain(ids, block_causal=8).logits, sharded(ids, block_causal=8).logits
    assert torch.equal(got, expected)


def test_tied_head_reads_the_embedding_where_it_sits(tmp_path):
    """LLaDA with ``weight_tying``: the head is the embedding's rows, read outside any module's forward; split
    layers give the unsharded logits, and an offloaded embedding is refused in one line."""
    from transformers import AutoModelForCausalLM

    from modeling_longllada import LongLLaDAConfig, LongLLaDAModelLM

    sizes = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=4, mlp_hidden_size=64, vocab_size=256,
                 trained_length=128, rope_theta=10000.0)  # fmt: skip
    config = LongLLaDAConfig(**LongLLaDAConfig.fields_from_sizes(**sizes), weight_tying=True, mask_token_id=255)
    torch.manual_seed(0)
    LongLLaDAModelLM(config).save_pretrained(tmp_path / "tied")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "tied").eval()
    base = {"model.transformer.wte": "cpu", "model.transformer.ln_f": "disk", "rotary_emb": "cpu"}
    split = AutoModelForCausalLM.from_pretrained(
        tmp_path / "tied", offload_folder=str(tmp_path / "offload"),
        device_map=base | {"model.transformer.blocks.0": "cpu", "model.transformer.blocks.1": "disk"},
    ).eval()  # fmt: skip
    ids = prompt(16)
    with torch.no_grad():
        assert (split(ids).logits - plain(ids).logits).abs().max().item() <= LOGITS_TOLERANCE
    offloaded = AutoModelForCausalLM.from_pretrained(
        tmp_path / "tied", offload_folder=str(tmp_path / "offload2"),
        device_map=base | {"model.transformer.wte": "disk", "model.transformer.blocks": "cpu"},
    ).eval()  # fmt: skip
    with pytest.raises(ValueError, match="weight_tying=True with model.transformer.wte offloaded"), torch.no_grad():
        offloaded(ids)


def test_lm_eval_parallelize_reaches_the_loading(tiny_family_dir, tmp_path):
    """``--model longllada`` with lm-eval's ``parallelize=True`` (here ``max_cpu_memory``; on GPUs
    ``max_memory_per_gpu``) loads through ``device_map="auto"`` with that budget, and answers as unsharded."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from longllada.lm_eval_model import LongLLaDALM

    folder = tiny_family_dir("llada2")
    budget, inferred = split_budget(folder)
    request = Instance(request_type="generate_until", doc={}, idx=0,
                       arguments=("The inventory of aircraft", {"until": ["\n\n"], "max_gen_toks": 8}))  # fmt: skip
    plain = LongLLaDALM(pretrained=str(folder), device="cpu", block_length=8)
    sharded = LongLLaDALM(pretrained=str(folder), device="cpu", block_length=8, parallelize=True,
                          max_cpu_memory=budget["cpu"], offload_folder=str(tmp_path / "offload"))  # fmt: skip
    assert sharded.model.hf_device_map == inferred
    assert sharded.generate_until([request]) == plain.generate_until([request])
