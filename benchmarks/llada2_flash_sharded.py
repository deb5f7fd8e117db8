"""LLaDA2.0-flash (103B-parameter MoE) sharded over the visible GPUs with accelerate's ``device_map``: a random bf16
folder of its shape, loaded through the Auto classes (``import modeling_longllada``: our LLaDA2 classes), a 32-token
answer at 4k and 32k with the exact block-diffusion key/value cache, seconds and per-GPU peak memory; the same on one
GPU at half depth against the half-depth model sharded (token agreement); the memory estimate; the ``longllada
eval`` command of a 32k NIAH cell on the sharded model.

    # nvidia-h200-x2, from the repository root (benchmarks/README.md has the whole run):
    python benchmarks/llada2_flash_sharded.py --folder /tmp/llada2-flash --write-only
    python benchmarks/llada2_flash_sharded.py --folder /tmp/llada2-flash --half-depth --out half.json
    python benchmarks/llada2_flash_sharded.py --folder /tmp/llada2-flash --out sharded.json --compare-with half.json
    python benchmarks/llada2_flash_sharded.py --estimate                  # CPU: the memory estimate only
    python benchmarks/llada2_flash_sharded.py --tiny --out benchmarks/results/llada2_flash_sharded_tiny_cpu.json

The shape is the official LLaDA2.0-flash ``config.json`` (as dFactory's ``configs/model_configs/llada2_flash``
copies it): 32 layers of hidden 4096, 32 query / 4 key-value heads of 128 with RoPE on 64 dimensions (θ 600000),
the first layer a dense SwiGLU of 9216, the others 256 experts of 1024 with 8 a token (8 groups, the best 4 kept,
scaling 2.5) and one shared expert, vocabulary 157184, untied head: 102.9B parameters, 191.6 GiB in bf16.
``max_position_embeddings`` is 32768 as in LLaDA2.0-mini's Hub config (the dFactory copy says 16384 for both).

The folder (``--folder ROOT``, written by this script only; its marker ``.longllada_flash_random.json`` lists what
it wrote, and a run interrupted while writing resumes at the first missing shard):

- ``ROOT/half``: the half-depth model (16 layers, 94.1 GiB), complete: config, one safetensors shard per layer and one
  for the embedding, final norm and head, their index, a small tokenizer with LLaDA2's special tokens (trained on the
  shipped report; its mask/EOS ids in the config), generation_config.json, the remote code. Weights N(0, 0.02²),
  norms 1, biases 0, from generators seeded per shard, drawn on the GPU when there is one.
- ``ROOT/full``: the 32-layer model: its own config and index, the half folder's shards linked, and layers 16-31
  written too when the disk holds them (235 GiB machines); on a 128 GiB disk (nvidia-h200-x2) they are absent, and
  ``from_pretrained`` creates them on their GPU from ``_init_weights`` (the same distributions): loading, placement,
  memory and time are the 103B model's, without 97 GiB more on disk. The report says which.

Placements: ``one-gpu`` = ``device_map={"": 0}``; ``sharded`` = ``device_map="auto"`` with ``--max-memory-per-gpu``
on every visible GPU (accelerate's balanced split, whole decoder layers: ``_no_split_modules``). Neither replays CUDA
graphs (a ``device_map`` model has none), so the two differ only by the placement. Each answer: LLaDA2's sampler
with the official defaults (block 32, 32 steps a block, threshold 0.95), ``cache="prefix"``, greedy, after a warm-up
answer (the experts' stacking, kernels); seconds with every GPU synchronised, the forward passes, each GPU's peak
memory (reset before the answer: weights included), and the answer's ids.

``--tiny``: the same code on a 4-layer shape in float32 on the CPU, where "disk" plays the second GPU (``max_memory``
forces the later layers, the final norm and the head to be offloaded; they run through accelerate's hooks as layers
on another GPU do), lengths 256 and 1024: a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import modeling_longllada  # noqa: E402, F401  (our classes behind the Auto classes)
from modeling_longllada import LLaDA2Config  # noqa: E402
from modeling_longllada.families import LLADA2  # noqa: E402
from modeling_longllada.generation_longllada import PREFILL_TOKENS  # noqa: E402

GiB = 2**30
ANSWER = 32  # new tokens; also the block length and the steps a block (the official defaults)
INIT_STD = 0.02
MARKER = ".longllada_flash_random.json"
WRITER = "benchmarks/llada2_flash_sharded.py"
GPU_FOLDER = "/tmp/llada2-flash"  # where benchmarks/README.md's commands write the folder on the GPU machine
DEFAULT_MAX_MEMORY = "120GiB"  # of an H200's 139 GiB: room for the activations, the cache and the experts' stacking
NIAH_LENGTH = 32768
# The official LLaDA2.0-flash config.json's architecture fields (the rest are LLaDA2Config's defaults, which are the
# LLaDA2.0 family's: 256 experts, 8 a token, 8 groups / 4 kept, scaling 2.5, one shared expert, vocabulary 157184).
FLASH_SHAPE = {
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "intermediate_size": 9216,
    "moe_intermediate_size": 1024,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "first_k_dense_replace": 1,
    "num_experts": 256,
    "num_experts_per_tok": 8,
    "n_group": 8,
    "topk_group": 4,
    "routed_scaling_factor": 2.5,
    "num_shared_experts": 1,
    "vocab_size": 157184,
    "rope_theta": 600000.0,
    "partial_rotary_factor": 0.5,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
}
TINY_SIZES = dict(n_layers=4, d_model=64, n_heads=4, n_kv_heads=2, mlp_hidden_size=128, vocab_size=512,
                  trained_length=256, rope_theta=10000.0)  # fmt: skip
SHAPE_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "moe_intermediate_size",
                "num_attention_heads", "num_key_value_heads", "head_dim", "rotary_dim", "num_experts",
                "num_experts_per_tok", "vocab_size")  # fmt: skip
LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.")


# -- the config and the memory estimate ------------------------------------------------------------------------


def model_config(tiny: bool, layers: int | None = None, token_ids: dict | None = None) -> LLaDA2Config:
    """LLaDA2.0-flash's shape (``--tiny``: a 4-layer one), ``layers`` deep if given, with these special ids."""
    fields = LLaDA2Config.fields_from_sizes(**TINY_SIZES) if tiny else dict(FLASH_SHAPE)
    if layers is not None:
        fields["num_hidden_layers"] = layers
    return LLaDA2Config(**fields, **(token_ids or {}), architectures=["LLaDA2ModelLM"], auto_map=LLADA2.auto_map)


def meta_model(config: LLaDA2Config, dtype: torch.dtype):
    """The model on the meta device (no memory): for module sizes and accelerate's placement."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config).to(dtype)


def inferred_placement(config: LLaDA2Config, max_memory: dict, dtype: torch.dtype) -> dict[str, object]:
    """What ``from_pretrained(device_map="auto", max_memory=...)`` would place where: accelerate's balanced budget
    over several devices, then its map (whole decoder layers), computed on the meta device (no GPU needed)."""
    import logging

    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    model = meta_model(config, dtype)
    split = model._no_split_modules
    max_memory = dict(max_memory)  # accelerate converts the sizes in place
    quiet = logging.getLogger("accelerate.utils.modeling")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "device 0 is not available" on a machine without those GPUs
    try:
        if len([d for d in max_memory if d not in ("cpu", "disk")]) > 1:
            max_memory = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=split, dtype=dtype)
        return dict(infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=split, dtype=dtype))
    finally:
        quiet.setLevel(level)


def module_bytes(config: LLaDA2Config, element: int) -> dict[str, int]:
    """Bytes of each top-level module (the embedding, every decoder layer, the final norm, the head), from the
    checkpoint's tensor list (buffers such as ``expert_bias`` included, as accelerate counts them)."""
    sizes: dict[str, int] = {}
    for name, shape in config.official_weight_shapes().items():
        match = LAYER_KEY.match(name)
        owner = f"model.layers.{match.group(1)}" if match else name.rsplit(".", 1)[0]
        sizes[owner] = sizes.get(owner, 0) + math.prod(shape) * element
    return sizes


def place_of(name: str, device_map: dict[str, object]) -> object:
    """The device_map entry that holds module ``name`` (the longest prefix)."""
    best, place = -1, None
    for prefix, device in device_map.items():
        if (prefix == "" or name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
            best, place = len(prefix), device
    return place


def layers_per_device(device_map: dict[str, object], layers: int) -> dict[str, list[int]]:
    """Each device's decoder layers (first and last index, and how many)."""
    per: dict[str, list[int]] = {}
    for index in range(layers):
        per.setdefault(str(place_of(f"model.layers.{index}", device_map)), []).append(index)
    return {device: [found[0], found[-1], len(found)] for device, found in per.items()}


def gib(size: float) -> float:
    """Bytes in GiB: two decimals, or the first three significant digits of a tiny model's sizes."""
    value = size / GiB
    return round(value, 2) if value >= 0.1 or value == 0 else float(f"{value:.3g}")


def memory_estimate(config: LLaDA2Config, device_map: dict[str, object], lengths: list[int], element: int) -> dict:
    """Per device of ``device_map``: the weights at rest, the block cache's keys/values at each prompt length,
    the activations of the largest pass, the experts' stacking on a layer's first pass, and their sum.

    - weights: the module sizes (``compute_module_sizes``) of what the map puts there;
    - key/value cache: per layer two buffers [1, kv heads, W, head dim] over the whole canvas W (the prompt and the
      answer, in whole blocks), on the layer's device;
    - activations: the prompt is encoded in passes of at most ``PREFILL_TOKENS`` positions (T); in an expert layer
      the T·k (token, expert) rows go through the grouped products and the weighted sum in float32: about
      12·T·k·hidden bytes alive at once (the routed output and its per-token copy in bf16, their float32 product
      and its source); plus a few [T, hidden] residual-stream tensors, and per query block of the block-causal
      attention its keys and values repeated to every query head (2·heads·S·head dim);
    - stacking: the first pass through an expert layer copies its experts into one stack before their old storage
      is released (3·E·I·hidden), on that layer's device, once, before that pass's grouped products;
    - peak: weights + cache + activations, what an answer after the first measures; the first call's: weights +
      cache + the larger of the activations and the stacking.
    """
    per_device: dict[str, dict] = {}
    for name, size in module_bytes(config, element).items():
        part = per_device.setdefault(str(place_of(name, device_map)), {"weights_bytes": 0, "layers": 0})
        part["weights_bytes"] += size
        part["layers"] += name.startswith("model.layers.")
    hidden, heads, head_dim = config.hidden_size, config.num_attention_heads, config.head_dim
    kv_per_position = 2 * config.num_key_value_heads * head_dim * element  # one layer
    stacking = 3 * config.num_experts * config.moe_intermediate_size * hidden * element
    report: dict = {"devices": {}, "assumptions": {"prefill_tokens": PREFILL_TOKENS, "answer": ANSWER}}
    for device, part in per_device.items():
        row = {"weights_gib": gib(part["weights_bytes"]), "decoder_layers": part["layers"]}
        report["devices"][device] = row
        if device == "disk":  # offloaded weights run on the CPU: its cache and activations are counted there
            continue
        row["stacking_gib"] = gib(stacking) if part["layers"] else 0.0
        for length in lengths:
            width = math.ceil((length + ANSWER) / ANSWER) * ANSWER
            tokens = min(width, PREFILL_TOKENS)
            kv = kv_per_position * width * part["layers"]
            moe = 12 * tokens * config.num_experts_per_tok * hidden
            attention = 2 * heads * width * head_dim * element
            activations = moe + 6 * tokens * hidden * element + attention
            peak = part["weights_bytes"] + kv + activations
            first = part["weights_bytes"] + kv + max(activations, stacking if part["layers"] else 0)
            row[str(length)] = {
                "kv_cache_gib": gib(kv),
                "activations_gib": gib(activations),
                "peak_gib": gib(peak),
                "first_call_peak_gib": gib(first),
            }
    report["kv_cache_gib_whole_model"] = {
        str(length): gib(kv_per_position * math.ceil((length + ANSWER) / ANSWER) * ANSWER * config.num_hidden_layers)
        for length in lengths
    }
    return report


def print_estimate(estimate: dict, title: str) -> None:
    print(f"memory estimate, {title}:")
    for device, row in estimate["devices"].items():
        line = f"  {device}: weights {row['weights_gib']} GiB ({row['decoder_layers']} layers)"
        if row.get("stacking_gib"):
            line += f", stacking a layer's experts {row['stacking_gib']} GiB once"
        for key, value in row.items():
            if isinstance(value, dict):
                line += (f"; {key} tokens: cache {value['kv_cache_gib']}, activations {value['activations_gib']}, "
                         f"peak ≈ {value['peak_gib']} GiB (first call {value['first_call_peak_gib']})")  # fmt: skip
        print(line)
    print(f"  key/value cache of the whole model: {estimate['kv_cache_gib_whole_model']} GiB")


# -- the random folder -----------------------------------------------------------------------------------------


def shard_of(name: str) -> str:
    """The shard a tensor goes to: one a layer, one for the rest."""
    match = LAYER_KEY.match(name)
    return f"layer-{int(match.group(1)):03d}.safetensors" if match else "outer.safetensors"


def random_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """As ``longllada.tiny_model.random_weights``: norm weights 1, biases 0, everything else N(0, 0.02²)."""
    device = generator.device
    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=dtype, device=device)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device).normal_(0.0, INIT_STD, generator=generator)


def read_marker(root: Path) -> dict:
    """Our marker in ``root`` (an empty record for a new or empty folder); refuses a folder we did not write."""
    marker = root / MARKER
    if marker.is_file():
        record = json.loads(marker.read_text(encoding="utf-8"))
        if record.get("writer") == WRITER:
            return record
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"llada2_flash_sharded.py: error: --folder {root} holds files this script did not write "
                         f"(no {MARKER}); allowed: a new or empty folder, or one this script wrote")  # fmt: skip
    return {}


def write_marker(root: Path, record: dict) -> None:
    path = root / MARKER
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def write_shards(folder: Path, config: LLaDA2Config, shards: list[str], record: dict, root: Path, seed: int,
                 device: torch.device, dtype: torch.dtype) -> None:  # fmt: skip
    """Every tensor of ``shards`` (names from the official key list), each shard from its own seeded generator,
    saved one after the other; the marker notes each shard once it is whole (a rerun skips it)."""
    from safetensors.torch import save_file

    shapes = config.official_weight_shapes()
    done = record.setdefault("shards", {})
    for index, shard in enumerate(sorted(set(shards))):
        path = folder / shard
        key = str(path.relative_to(root))
        if done.get(key) is not None and path.is_file() and path.stat().st_size == done[key]:
            continue
        generator = torch.Generator(device=device).manual_seed(seed * 1000 + index)
        tensors = {
            name: random_tensor(name, shape, dtype, generator).cpu()
            for name, shape in shapes.items()
            if shard_of(name) == shard
        }
        save_file(tensors, str(path.with_suffix(".part")), metadata={"format": "pt"})
        path.with_suffix(".part").replace(path)
        done[key] = path.stat().st_size
        write_marker(root, record)
        print(f"  {key}: {done[key] / GiB:.2f} GiB", flush=True)


def shard_bytes(config: LLaDA2Config, shards: list[str], element: int) -> int:
    """Bytes of the tensors of these shards (their headers aside)."""
    chosen = set(shards)
    return sum(math.prod(shape) * element for name, shape in config.official_weight_shapes().items()
               if shard_of(name) in chosen)  # fmt: skip


def write_index(folder: Path, config: LLaDA2Config, element: int) -> dict[str, str]:
    """``model.safetensors.index.json`` over the shards present in ``folder``: a tensor of a missing shard is
    left out (from_pretrained then initialises it)."""
    shapes = config.official_weight_shapes()
    weight_map = {name: shard_of(name) for name in shapes if (folder / shard_of(name)).exists()}
    total = sum(math.prod(shapes[name]) * element for name in weight_map)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return weight_map


def write_folder(root: Path, tiny: bool, seed: int, layers_on_disk: str, device: torch.device,
                 dtype: torch.dtype) -> dict:  # fmt: skip
    """ROOT/half and ROOT/full (see the module docstring); returns what was written and how."""
    from longllada.tiny_model import copy_remote_code, default_texts, write_generation_config
    from longllada.tokenizer import build_tokenizer, save_tokenizer

    record = read_marker(root)
    if record.get("tiny", tiny) != tiny or record.get("seed", seed) != seed:
        raise SystemExit(f"llada2_flash_sharded.py: error: --folder {root} holds a model of another shape or seed "
                         f"(tiny={record.get('tiny')}, seed={record.get('seed')}); allowed: a new folder")  # fmt: skip
    shards = record.get("shards", {})
    if record.get("complete") and all((root / key).is_file() and (root / key).stat().st_size == size
                                      for key, size in shards.items()):  # fmt: skip
        print(f"folder {root}: complete ({record['weights_gib_on_disk']} GiB of shards), reused", flush=True)
        return record
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    record.update(writer=WRITER, tiny=tiny, seed=seed, complete=False)
    write_marker(root, record)
    full_depth = model_config(tiny).num_hidden_layers
    half_depth = full_depth // 2
    half, full = root / "half", root / "full"
    half.mkdir(exist_ok=True)
    full.mkdir(exist_ok=True)
    tokenizer = build_tokenizer(default_texts(), vocab_size=min(4096, model_config(tiny).vocab_size), family="llada2")
    token_ids = {name: getattr(tokenizer, name) for name in ("mask_token_id", "eos_token_id", "pad_token_id",
                                                             "bos_token_id")}  # fmt: skip
    configs = {half: model_config(tiny, half_depth, token_ids), full: model_config(tiny, full_depth, token_ids)}
    for folder, config in configs.items():
        config.save_pretrained(folder)
        save_tokenizer(tokenizer, folder)
        write_generation_config(folder, token_ids, arch="llada2")
        copy_remote_code(folder)
    half_shards = sorted({shard_of(name) for name in configs[half].official_weight_shapes()})
    written = record.get("shards", {})
    to_write = [shard for shard in half_shards if not (half / shard).is_file() or f"half/{shard}" not in written]
    needed, free = shard_bytes(configs[half], to_write, dtype.itemsize), shutil.disk_usage(root).free
    if needed + 2 * GiB > free:
        raise SystemExit(f"llada2_flash_sharded.py: error: --folder {root}: the half-depth shards need "
                         f"{needed / GiB:.1f} GiB and its disk has {free / GiB:.1f} GiB free; allowed: a folder on a "
                         f"disk with {needed / GiB + 2:.0f} GiB free")  # fmt: skip
    write_shards(half, configs[half], half_shards, record, root, seed, device, dtype)
    write_index(half, configs[half], dtype.itemsize)
    later = sorted({shard_of(name) for name in configs[full].official_weight_shapes()} - set(half_shards))
    if layers_on_disk == "auto":
        enough = shutil.disk_usage(root).free > shard_bytes(configs[full], later, dtype.itemsize) + 4 * GiB
        layers_on_disk = "all" if enough else "half"
    for shard in half_shards:  # the first layers, the embedding and the head: the half folder's own files
        link = full / shard
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(Path("..") / "half" / shard)
    if layers_on_disk == "all":
        write_shards(full, configs[full], later, record, root, seed + 1, device, dtype)
    present = write_index(full, configs[full], dtype.itemsize)
    on_disk = sorted({int(LAYER_KEY.match(name).group(1)) for name in present if LAYER_KEY.match(name)})
    record.update(
        layers_on_disk=layers_on_disk,
        full_depth=full_depth,
        half_depth=half_depth,
        full_layers_from_disk=[on_disk[0], on_disk[-1]] if on_disk else [],
        full_layers_initialised_at_load=[index for index in range(full_depth) if index not in on_disk],
        weights_gib_on_disk=round(
            sum(p.stat().st_size for p in root.rglob("*.safetensors") if not p.is_symlink()) / GiB, 2
        ),  # fmt: skip
        token_ids=token_ids,
        complete=True,
    )
    write_marker(root, record)
    print(f"folder {root}: {record['weights_gib_on_disk']} GiB of shards, written in "
          f"{time.perf_counter() - started:.0f} s; full depth: layers {record['full_layers_from_disk']} from disk, "
          f"{len(record['full_layers_initialised_at_load'])} initialised at load", flush=True)  # fmt: skip
    return record


# -- loading and answers ---------------------------------------------------------------------------------------


def synchronize() -> None:
    for index in range(torch.cuda.device_count()):
        torch.cuda.synchronize(index)


def load(folder: Path, device_map, max_memory: dict | None, offload: Path | None, dtype: torch.dtype):
    """``AutoModelForCausalLM.from_pretrained`` with this placement (our class: no remote code runs)."""
    import transformers
    from transformers import AutoModelForCausalLM

    from modeling_longllada import LLaDA2ModelLM

    dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the full folder's later layers are missing by design
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, device_map=device_map, max_memory=max_memory, **{dtype_arg: dtype},
            **({"offload_folder": str(offload)} if offload is not None else {}),
        ).eval()  # fmt: skip
    finally:
        transformers.logging.set_verbosity(verbosity)
    if not isinstance(model, LLaDA2ModelLM):
        raise SystemExit(f"llada2_flash_sharded.py: error: {folder} loaded as {type(model).__name__}, not ours")
    return model


def random_prompt(length: int, config: LLaDA2Config, seed: int) -> torch.Tensor:
    """[1, length] ordinary token ids (above the special ones: mask, EOS, pad, BOS), drawn on the CPU: the same ids
    on every device."""
    special = [token for token in (config.mask_token_id, config.eos_token_id, config.pad_token_id,
                                   config.bos_token_id) if token is not None]  # fmt: skip
    high = min(config.vocab_size, 150000)
    low = max(special) + 1 if special and max(special) < high // 2 else 3
    ids = torch.randint(low, high, (1, length), generator=torch.Generator().manual_seed(seed))
    for token in special:
        ids[ids == token] = low
    return ids


def gpu_peaks() -> list[float]:
    return [round(torch.cuda.max_memory_allocated(i) / GiB, 2) for i in range(torch.cuda.device_count())]


def answer(model, prompt: torch.Tensor) -> dict:
    """One 32-token answer with the block cache: seconds, passes, each GPU's peak memory, the answer's ids."""
    from modeling_longllada.generation_longllada import canvas_device

    prompt = prompt.to(canvas_device(model))
    if torch.cuda.is_available():
        synchronize()
        torch.cuda.empty_cache()
        for index in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(index)
    start = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=ANSWER, block_length=ANSWER, steps=ANSWER, cache="prefix",
                         return_dict_in_generate=True)  # fmt: skip
    if torch.cuda.is_available():
        synchronize()
    seconds = time.perf_counter() - start
    length = prompt.shape[1]
    return {
        "prompt_tokens": length,
        "seconds": round(seconds, 3),
        "forward_passes": out.num_forward_passes,
        "peak_gib_per_gpu": gpu_peaks() if torch.cuda.is_available() else None,
        "answer": out.sequences[0, length:].tolist(),
    }


def run_placement(name: str, folder: Path, device_map, max_memory: dict | None, lengths: list[int], seed: int,
                  dtype: torch.dtype, offload: Path | None) -> dict:  # fmt: skip
    """Load with this placement, a warm-up answer, then one answer a length; the model is freed on return."""
    if torch.cuda.is_available():
        synchronize()
    start = time.perf_counter()
    model = load(folder, device_map, max_memory, offload, dtype)
    if torch.cuda.is_available():
        synchronize()
    load_s = time.perf_counter() - start
    config = model.config
    placement = dict(getattr(model, "hf_device_map", None) or {}) or {"": str(model.device)}
    record = {
        "placement": name,
        "folder": str(folder),
        "layers": config.num_hidden_layers,
        "device_map": {
            "argument": device_map if isinstance(device_map, str) else {k: str(v) for k, v in device_map.items()},
            "max_memory": {str(k): v for k, v in (max_memory or {}).items()},
            "layers_per_device": layers_per_device(placement, config.num_hidden_layers),
        },  # fmt: skip
        "load_s": round(load_s, 1),
    }
    if torch.cuda.is_available():
        record["weights_gib_per_gpu"] = [round(torch.cuda.memory_allocated(i) / GiB, 2)
                                         for i in range(torch.cuda.device_count())]  # fmt: skip
    print(f"[{name}] {config.num_hidden_layers} layers loaded in {load_s:.1f} s: {json.dumps(record['device_map'])}",
          flush=True)  # fmt: skip
    answer(model, random_prompt(2 * ANSWER, config, seed))  # warm-up: experts stacked, kernels chosen
    record["runs"] = []
    for length in lengths:
        row = answer(model, random_prompt(length, config, seed + length))
        print(f"[{name}] {json.dumps({k: v for k, v in row.items() if k != 'answer'})}", flush=True)
        record["runs"].append(row)
    record["estimate"] = memory_estimate(config, placement, lengths, dtype.itemsize)
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record


def compare(reference: dict, other: dict) -> list[dict]:
    """Token agreement and time ratio of ``other``'s answers against ``reference``'s, length by length."""
    rows = []
    for mine in other["runs"]:
        theirs = next((r for r in reference["runs"] if r["prompt_tokens"] == mine["prompt_tokens"]), None)
        if theirs is None:
            continue
        same = [a == b for a, b in zip(mine["answer"], theirs["answer"])]
        rows.append({
            "prompt_tokens": mine["prompt_tokens"],
            "reference": f"{reference['placement']} ({reference['layers']} layers)",
            "compared": f"{other['placement']} ({other['layers']} layers)",
            "tokens_agreeing": sum(same),
            "tokens": len(same),
            "identical": all(same) and len(mine["answer"]) == len(theirs["answer"]),
            "seconds_ratio": round(mine["seconds"] / theirs["seconds"], 2),
        })  # fmt: skip
    return rows


def niah_command(folder: Path, tiny: bool, max_memory: str | int, out: Path | str) -> list[str]:
    """``longllada eval`` of one NIAH cell (depth 50%) on ``folder`` loaded by lm-eval's ``parallelize=True``: a
    ``device_map="auto"`` over the GPUs with ``max_memory_per_gpu`` (``--tiny``: a 256-token cell on the CPU, the
    CPU budget as ``max_cpu_memory`` with disk offload)."""
    length = 256 if tiny else NIAH_LENGTH
    grid = json.dumps({"context_lengths": [length], "depths": [50], "num_repeats": 1})
    if tiny:
        model_args = (f"pretrained={folder},dtype=float32,parallelize=True,max_cpu_memory={max_memory},"
                      f"offload_folder={Path(out) / 'offload'}")  # fmt: skip
    else:
        model_args = f"pretrained={folder},dtype=bfloat16,parallelize=True,max_memory_per_gpu={max_memory}"
    return ["python3", "-m", "longllada", "eval", "--model", "longllada", "--model_args", model_args,
            "--tasks", "longllada_niah", "--metadata", grid, "--device", "cpu" if tiny else "cuda",
            "--batch_size", "1", "--log_samples", "--output_path", str(out)]  # fmt: skip


def shell_line(command: list[str]) -> str:
    return "LONGLLADA_LOG_LEVEL=DEBUG " + " ".join(shlex.quote(part) for part in command)


def run_niah(command: list[str], out: Path) -> dict:
    """Run the NIAH cell (our interpreter, the repository first on the path); its seconds, exit status, score and
    the ``longllada-timing`` records of the load and the generation (per-GPU peak memory)."""
    env = {**os.environ, "LONGLLADA_LOG_LEVEL": "DEBUG", "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *command[1:]], cwd=REPO, env=env, capture_output=True, text=True)
    record: dict = {"exit": done.returncode, "seconds": round(time.perf_counter() - start, 1)}
    log = done.stdout + done.stderr
    (out / "niah.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "niah.log").write_text(log, encoding="utf-8")
    events = [json.loads(m.group(1)) for m in re.finditer(r"longllada-timing (\{.*\})\s*$", log, re.MULTILINE)]
    for event in events:
        if event.get("event") in ("load", "generated"):
            record[event["event"]] = {k: v for k, v in event.items() if k not in ("event", "rank", "pid", "t")}
    results = sorted(out.rglob("results_*.json"))
    if results:
        record["score"] = json.loads(results[-1].read_text())["results"]["longllada_niah"].get("score,none")
    if done.returncode:
        lines = [line for line in log.splitlines() if "Error" in line or "error:" in line] or log.splitlines()
        record["error"] = lines[-1][:500] if lines else "no output"
    print(f"[niah] {json.dumps(record)}", flush=True)
    return record


def environment() -> dict:
    import accelerate
    import transformers

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = os.environ.get("GIT_COMMIT")
    return {
        "commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu": platform.processor() or platform.machine(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- the command line ------------------------------------------------------------------------------------------


def positive_lengths(text: str) -> list[int]:
    try:
        lengths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; allowed: comma-separated positive integers"
        ) from None
    if not lengths or any(length < 1 for length in lengths):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: comma-separated positive integers")
    return lengths


def memory_size(text: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?(GiB|GB|MiB|MB)", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: a size such as 120GiB or 130GB")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--folder", type=Path, help="the random model's root folder (written if absent)")
    parser.add_argument("--out", type=Path, help="JSON report to write")
    parser.add_argument("--write-only", action="store_true", help="write the folder, run nothing")
    parser.add_argument(
        "--half-depth",
        action="store_true",
        help="the 16-layer model on one GPU, then sharded over the visible GPUs (token agreement)",
    )
    parser.add_argument("--estimate", action="store_true", help="print the memory estimate only (no GPU needed)")
    parser.add_argument("--tiny", action="store_true", help="a 4-layer shape in float32 on the CPU (a check)")
    parser.add_argument("--lengths", type=positive_lengths, default=None, help="prompt lengths (default 4096,32768)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs to shard over (default: every visible one)")
    parser.add_argument("--max-memory-per-gpu", type=memory_size, default=DEFAULT_MAX_MEMORY)
    parser.add_argument("--layers-on-disk", choices=("auto", "half", "all"), default="auto",
                        help="the full folder's later layers on disk (all) or initialised at load (half); auto: "
                             "all when the disk holds them")  # fmt: skip
    parser.add_argument("--compare-with", type=Path, help="a --half-depth report: the full model's times against it")
    parser.add_argument(
        "--niah",
        action="store_true",
        help="then run the NIAH cell through longllada eval (needs lm-eval) and record it",
    )
    parser.add_argument("--niah-only", action="store_true", help="the NIAH cell only (no answers of this script)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lengths = args.lengths or ([256, 1024] if args.tiny else [4096, 32768])
    if args.estimate:
        gpus = args.gpus or 2
        max_memory = {index: args.max_memory_per_gpu for index in range(gpus)}
        report = {}
        for layers in (FLASH_SHAPE["num_hidden_layers"], FLASH_SHAPE["num_hidden_layers"] // 2):
            config = model_config(False, layers)
            for name, memory in (("sharded", max_memory), ("one-gpu", {0: "139GiB"})):
                if layers == FLASH_SHAPE["num_hidden_layers"] and name == "one-gpu":
                    continue  # 191.6 GiB: no one GPU holds it
                placement = inferred_placement(config, memory, torch.bfloat16)
                estimate = memory_estimate(config, placement, lengths, 2)
                title = f"{layers} layers, {name}, max_memory {memory}"
                print_estimate(estimate, title)
                report[f"{layers}_layers_{name}"] = {"max_memory": {str(k): v for k, v in memory.items()},
                                                      "layers_per_device": layers_per_device(placement, layers),
                                                      **estimate}  # fmt: skip
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "shape": FLASH_SHAPE,
                                            "estimate": report}, indent=1) + "\n", encoding="utf-8")  # fmt: skip
        return 0
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
    else:
        if not torch.cuda.is_available():
            parser.error("needs CUDA GPUs (or --tiny for the CPU check, --estimate for the memory estimate)")
        device, dtype = torch.device("cuda", 0), torch.bfloat16
    if args.folder is None and not args.tiny:
        parser.error("--folder is required (a scratch disk: 94 GiB or more are written; never the repository)")
    if args.out is None and not args.write_only:
        parser.error("--out is required (the JSON report)")
    if args.out is not None and args.out.exists() and not args.out.is_file():
        parser.error(f"--out {args.out} is not a file")
    gpus = args.gpus if args.gpus is not None else torch.cuda.device_count()
    if not args.tiny and not 1 <= gpus <= torch.cuda.device_count():
        parser.error(f"--gpus {gpus} is not allowed; allowed: 1 to {torch.cuda.device_count()} (the visible GPUs)")
    scratch = None
    if args.folder is None:
        scratch = Path(tempfile.mkdtemp(prefix="llada2-flash-tiny-"))
        root = scratch / "model"
    else:
        root = args.folder.expanduser().resolve()
    try:
        folder_record = write_folder(root, args.tiny, args.seed, "half" if args.tiny else args.layers_on_disk,
                                     device, dtype)  # fmt: skip
        if args.write_only:
            return 0
        offload = (scratch or root) / "offload" if args.tiny else None
        if args.tiny:  # "disk" plays the second GPU: the later layers, norm and head offloaded
            one_map, one_memory = {"": "cpu"}, None
            sharded_map, sharded_memory = "auto", {"cpu": tiny_cpu_budget(root / "half")}
        else:
            one_map, one_memory = {"": 0}, None
            sharded_map = "auto"
            sharded_memory = {index: args.max_memory_per_gpu for index in range(gpus)}
        placements, comparisons = [], []
        if (args.half_depth or args.tiny) and not args.niah_only:
            one = run_placement("one-gpu", root / "half", one_map, one_memory, lengths, args.seed, dtype, offload)
            placements.append(one)
            if gpus > 1 or args.tiny:
                half_sharded = run_placement("sharded", root / "half", sharded_map, sharded_memory, lengths,
                                             args.seed, dtype, offload)  # fmt: skip
                placements.append(half_sharded)
                comparisons += compare(one, half_sharded)
        if not args.half_depth and not args.niah_only:
            if args.tiny:
                # the full folder's later layers are initialised at load on their device, and transformers cannot
                # offload to disk what the folder lacks: here the layers stay on the CPU and the head goes to disk
                sharded_map = {"model.word_embeddings": "cpu", "model.layers": "cpu", "model.norm": "cpu",
                               "lm_head": "disk", "rotary_emb": "cpu"}  # fmt: skip
                sharded_memory = None
            full = run_placement("sharded", root / "full", sharded_map, sharded_memory, lengths, args.seed, dtype,
                                 offload)  # fmt: skip
            placements.append(full)
            reference = None
            if args.compare_with is not None:
                earlier = json.loads(args.compare_with.read_text(encoding="utf-8"))
                reference = next((p for p in earlier["placements"] if p["placement"] == "one-gpu"), None)
            elif args.tiny:
                reference = placements[0]
            if reference is not None:
                comparisons += [{**row, "note": "different models (depth): seconds and memory only"}
                                for row in compare(reference, full)]  # fmt: skip
        niah_out = (scratch or root) / "niah" if args.tiny else args.out.parent / "llada2_flash_niah"
        if args.tiny:  # the half folder, split by the budget: disk offload cannot take the full one's missing layers
            command = niah_command(root / "half", True, tiny_cpu_budget(root / "half"), niah_out)
        else:
            command = niah_command(root / "full", False, args.max_memory_per_gpu, niah_out)
        niah = run_niah(command, niah_out) if args.niah or args.niah_only else None
        report = {
            "command": " ".join(["python", *sys.argv]),
            **environment(),
            "dtype": str(dtype),
            "shape": {name: getattr(model_config(args.tiny), name) for name in SHAPE_FIELDS},
            "parameters": sum(math.prod(s) for s in model_config(args.tiny).official_weight_shapes().values()),
            "folder": {k: v for k, v in folder_record.items() if k != "shards"},
            "sampler": {
                "max_new_tokens": ANSWER,
                "block_length": ANSWER,
                "steps": ANSWER,
                "threshold": 0.95,
                "cache": "prefix",
                "prefill_tokens": PREFILL_TOKENS,
            },  # fmt: skip
            "placements": placements,
            "comparisons": comparisons,
            "niah_command": shell_line(command),
            "gpu_niah_command": shell_line(
                niah_command(Path(GPU_FOLDER) / "full", False, DEFAULT_MAX_MEMORY, "$OUT/llada2_flash_niah")
            ),  # fmt: skip
            "niah": niah,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        for row in comparisons:
            print(json.dumps(row))
        for placement in placements:
            print_estimate(placement["estimate"], f"{placement['placement']}, {placement['layers']} layers")
        print(f"NIAH cell on the sharded model:\n  {shell_line(command)}")
        print(f"wrote {args.out}")
        return 0
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def tiny_cpu_budget(folder: Path) -> int:
    """A CPU budget for ``--tiny`` that holds the embedding and the first decoder layer: accelerate offloads the
    rest (the later layers, the final norm, the head) to disk."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    sizes = module_bytes(config, torch.float32.itemsize)
    layers = [sizes[f"model.layers.{i}"] for i in range(config.num_hidden_layers)]
    # accelerate keeps room for the largest layer beside what it places (to load offloaded layers into)
    return sizes["model.word_embeddings"] + layers[0] + max(layers) + layers[0] // 8


if __name__ == "__main__":
    sys.exit(main())
