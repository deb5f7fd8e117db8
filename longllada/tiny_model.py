"""`longllada tiny-model --out DIR [--arch NAME]`: a tiny random diffusion model, ready for `from_pretrained`.

The folder holds everything a user of a real checkpoint would get: our ``config.json`` (every official field of
the family plus ``rope_scaling``, ``auto_map`` to our remote code), ``model.safetensors`` with the official key
names and shapes, the remote-code files copied beside them, a tokenizer with the family's special tokens and
chat template, and ``generation_config.json`` with the sampler's defaults.

``--arch`` names a family of ``modeling_longllada.families`` (``llada``, the default, or ``dream``, ...): its entry
gives the config fields for the generic sizes, the official tensor names and shapes, and the tokenizer's special
tokens; ``--variant`` one of its sampler variants (LLaDA2.1 for ``llada2``: the same model, its editing sampler's
settings in ``generation_config.json``); a family whose weights transformers' own class writes (``diffusion_gemma``)
has a builder of its own in the entry (``tiny_builder``), given the generic sizes through ``tiny_config_fields``.
LLaDA's keys are ``model.transformer.*`` with its special tokens; Dream-v0's are Qwen2's
(``model.layers.N.self_attn.*`` with q/k/v biases, untied ``lm_head``) with ``<|mask|>``, ``<|beginoftext|>`` as
BOS and ``<|endoftext|>`` as EOS/PAD.

The weights are written directly as a state dict, not through the model class, so the folder also serves as
an "official-format" checkpoint: loading it proves that our model reads official keys.

A folder is only ever written by this command: it refuses an ``--out`` folder holding files it did not write (it
recognises its own folders by the marker file ``.longllada_tiny_model.json``, which lists the files it wrote).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_CODE_DIR = Path(__file__).resolve().parents[1] / "modeling_longllada"
DEFAULT_TEXT = Path(__file__).resolve().parent / "data" / "gov_report_001.txt"
EMBEDDING_MULTIPLE = 64  # vocab rows are padded to a multiple of 64, as LLaDA's 126464 is
INIT_STD = 0.02
MARKER = ".longllada_tiny_model.json"
MARKER_WRITER = "longllada tiny-model"
# The largest sizes `longllada tiny-model` takes: far above a tiny model's, below what takes minutes to build.
MAX_TINY_LAYERS = 64
MAX_TINY_WIDTH = 1 << 14  # hidden and SwiGLU sizes
MAX_TINY_HEADS = 256
MAX_TINY_VOCAB = 1 << 18  # Gemma's 262,144 tokens


def default_texts() -> list[str]:
    """The shipped public-domain report (one string), the default tokenizer training text."""
    return [DEFAULT_TEXT.read_text(encoding="utf-8")]


def round_up(value: int, multiple: int = EMBEDDING_MULTIPLE) -> int:
    return int(math.ceil(value / multiple) * multiple)


def official_state_dict(config: Any, seed: int = 0) -> dict[str, Any]:
    """A random float32 state dict with the official key names and shapes of ``config``'s family (its entry's
    ``weight_shapes``), as :func:`random_weights` fills them; the same ``seed`` gives the same tensors."""
    from modeling_longllada.families import family_of_model_type, import_object

    family = family_of_model_type(getattr(config, "model_type", None))
    if family is None:
        raise ValueError(f"model_type={getattr(config, 'model_type', None)!r} is not a family of this project")
    return random_weights(import_object(family.weight_shapes)(config), seed)


def random_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, Any]:
    """float32 tensors for ``shapes`` (in order): norm weights (``*norm.weight``, ``ln_f.weight``) 1, biases 0, every other weight ~ N(0, 0.02²)
    drawn from one generator seeded with ``seed`` (the same seed gives the same tensors)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith(("norm.weight", "ln_f.weight")):
            state[name] = torch.ones(shape)
        elif name.endswith(".bias"):
            state[name] = torch.zeros(shape)
        else:
            state[name] = torch.randn(*shape, generator=generator) * INIT_STD
    return state


def copy_remote_code(out_dir: str | Path) -> list[Path]:
    """Copy the remote code (``modeling_longllada.REMOTE_CODE_FILES``) flat into ``out_dir``."""
    from modeling_longllada import REMOTE_CODE_FILES

    copied = []
    for name in REMOTE_CODE_FILES:
        target = Path(out_dir) / name
        shutil.copyfile(REPO_CODE_DIR / name, target)
        copied.append(target)
    return copied


def write_generation_config(
    out_dir: str | Path, token_ids: dict[str, int | None], arch: str = "llada", variant: str | None = None
) -> Path:
    """``generation_config.json``: the sampler defaults of the family's model class (LLaDA: block 32, steps null =
    one token per step, low-confidence remasking; Dream: one block, 512 steps, "origin"), those of the family's
    ``variant`` over them (LLaDA2.1's editing settings), greedy via ``do_sample: false``, and the special token
    ids."""
    from modeling_longllada.families import family_by_name

    family = family_by_name(arch)
    # (a family that transformers implements may have none of ours: its model's own defaults then apply)
    settings: dict[str, Any] = dict(getattr(family.model_cls(), "sampler_defaults", {}))
    chosen = family.variant(variant)
    settings.update(chosen.settings if chosen is not None else ())
    # Greedy (temperature 0) is said by do_sample=false alone: an explicit "temperature": 0.0 beside it makes
    # transformers warn that the file is mis-parameterised, and 4.46 then refuses to save_pretrained the model.
    settings["do_sample"] = False
    settings.update(token_ids)
    path = Path(out_dir) / "generation_config.json"
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def build_tiny_model(
    out_dir: str | Path,
    *,
    arch: str = "llada",
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int | None = None,
    mlp_hidden_size: int | None = None,
    vocab_size: int = 512,
    max_sequence_length: int = 256,
    rope_theta: float | None = None,
    rope_scaling: dict[str, Any] | None = None,
    seed: int = 0,
    texts: Iterable[str] | None = None,
    variant: str | None = None,
) -> Path:
    """Write a tiny random model folder (see the module docstring) and return its path.

    Args:
        out_dir: the folder: created, empty, or one this function wrote before (its files are then replaced);
            any other content is refused with ValueError before anything is written.
        arch: a family's name (``modeling_longllada.families``): the architecture, checkpoint format and
            tokenizer.
        n_layers, d_model, n_heads: transformer sizes; ``d_model`` must be a multiple of ``n_heads``.
        n_kv_heads: key/value heads (grouped-query attention); None = ``n_heads``.
        mlp_hidden_size: SwiGLU inner size; None = ``3 * d_model`` (LLaDA-8B's ratio, 12288 / 4096).
        vocab_size: BPE vocabulary size to train; the embedding has it rounded up to a multiple of 64.
        max_sequence_length: the "trained" length written to the config (the family's field for it: LLaDA's
            ``max_sequence_length``, Dream's ``trained_length``).
        rope_theta, rope_scaling: RoPE base (None: 10000, or the family's own bases; a family with several refuses
            one) and optional NTK scaling (validated by the config class).
        seed: seeds the weights (the tokenizer is deterministic in ``texts``).
        texts: tokenizer training text; default the shipped report ``longllada/data/gov_report_001.txt``.
        variant: a sampler variant of the family (its entry's ``variants``, e.g. LLaDA2.1 of ``llada2``): its
            settings go into ``generation_config.json``; None: the family's own.
    """
    from modeling_longllada.families import family_by_name

    try:
        family = family_by_name(arch)
    except ValueError:
        raise ValueError(f"arch={arch!r} is not allowed; allowed: {list(archs())}") from None
    family.check_transformers()
    family.variant(variant)  # an unknown variant is refused here, naming the allowed ones
    for name, value in (("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads),
                        ("vocab_size", vocab_size), ("max_sequence_length", max_sequence_length)):  # fmt: skip
        _check_positive_int(name, value)
    n_kv_heads = n_heads if n_kv_heads is None else _check_positive_int("n_kv_heads", n_kv_heads)
    mlp_hidden_size = (
        3 * d_model if mlp_hidden_size is None else _check_positive_int("mlp_hidden_size", mlp_hidden_size)
    )
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
    if (d_model // n_heads) % 2:
        raise ValueError(f"head_dim=d_model/n_heads={d_model // n_heads} must be even for RoPE")
    if n_heads % n_kv_heads:
        raise ValueError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads}")
    if rope_theta is not None and (
        isinstance(rope_theta, bool) or not isinstance(rope_theta, (int, float)) or not 1 < rope_theta < math.inf
    ):
        raise ValueError(f"rope_theta must be a finite number > 1, got {rope_theta!r}")
    builder_keywords = None
    if family.tiny_builder is not None:  # the family's own builder, its keywords from the generic sizes
        from modeling_longllada.families import import_object

        builder_keywords = import_object(family.tiny_config_fields)(
            n_layers=n_layers, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads,
            mlp_hidden_size=mlp_hidden_size, vocab_size=vocab_size, trained_length=max_sequence_length,
            rope_theta=rope_theta, rope_scaling=rope_scaling,
        )  # fmt: skip
    out = Path(out_dir)
    _files_we_may_replace(out)  # a folder of someone else's is refused as such, before locking
    from longllada.output_lock import OutputLock

    with OutputLock(out, "longllada tiny-model", "OUT_DIR"):  # one writer at a time
        if builder_keywords is not None:
            import_object(family.tiny_builder)(out, **builder_keywords, seed=seed, texts=texts)
        else:
            _build_into(out, arch, n_layers, d_model, n_heads, n_kv_heads, mlp_hidden_size, vocab_size,
                        max_sequence_length, 10000.0 if rope_theta is None else rope_theta, rope_scaling, seed,
                        texts, variant)  # fmt: skip
    return out


def _build_into(out: Path, arch: str, n_layers: int, d_model: int, n_heads: int, n_kv_heads: int,
                mlp_hidden_size: int, vocab_size: int, max_sequence_length: int, rope_theta: float,
                rope_scaling: dict[str, Any] | None, seed: int, texts: Iterable[str] | None,
                variant: str | None = None) -> None:  # fmt: skip
    ours = _files_we_may_replace(out)

    from longllada.tokenizer import build_tokenizer, save_tokenizer
    from modeling_longllada.families import family_by_name

    family = family_by_name(arch)

    sizes = dict(n_layers=n_layers, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads,
                 mlp_hidden_size=mlp_hidden_size, trained_length=max_sequence_length,
                 rope_theta=float(rope_theta), rope_scaling=rope_scaling)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tiny-model-", dir=out.parent) as scratch:
        staging = Path(scratch)
        texts = default_texts() if texts is None else texts
        tokenizer = build_tokenizer(texts, vocab_size=vocab_size, family=arch)
        save_tokenizer(tokenizer, staging)
        token_ids = {
            "mask_token_id": tokenizer.mask_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
        }
        config, state = _config_and_weights(family, sizes, round_up(len(tokenizer)), token_ids, seed)
        config.save_pretrained(staging)
        from safetensors.torch import save_file

        save_file(state, staging / "model.safetensors", metadata={"format": "pt"})
        if not family.native:  # transformers' own classes need no code beside the weights
            copy_remote_code(staging)
        write_generation_config(staging, token_ids, arch, variant)
        _install(staging, out, ours, arch)


def archs() -> tuple[str, ...]:
    """The ``--arch`` values: the families' names."""
    from modeling_longllada.families import FAMILIES

    return tuple(family.name for family in FAMILIES)


def _config_and_weights(family: Any, sizes: dict[str, Any], vocab: int, token_ids: dict, seed: int):
    """The family's config (official fields for the sizes, our ``model_type`` and ``auto_map``) and a random state
    dict under its official keys."""
    from transformers import AutoConfig

    import modeling_longllada  # noqa: F401  (registers the families' model types with AutoConfig)
    from modeling_longllada.families import import_object

    fields = import_object(family.tiny_config_fields)(vocab_size=vocab, **sizes, **token_ids)
    remote = {"auto_map": family.auto_map} if family.auto_map else {}
    config = AutoConfig.for_model(family.model_type, architectures=[family.architecture], **remote, **fields)
    return config, random_weights(import_object(family.weight_shapes)(config), seed)


def _files_we_may_replace(out: Path) -> set[str]:
    """The files of ``out`` that this command wrote (from its marker); ValueError if ``out`` holds anything
    else: a file where the folder should be, or files without our marker."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; allowed: a new or empty folder, or one tiny-model wrote")
    if not out.exists():
        return set()
    present = sorted(p.name for p in out.iterdir())
    if not present:
        return set()
    marker = out / MARKER
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        ours = set(record["files"]) if record.get("written_by") == MARKER_WRITER else None
    except (OSError, ValueError, KeyError, TypeError):
        ours = None
    if ours is None:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise ValueError(
            f"--out {str(out)!r} already holds files that tiny-model did not write ({shown}); "
            "allowed: a new or empty folder, or one tiny-model wrote (it has the marker file "
            f"{MARKER}); nothing was written"
        )
    return ours | {MARKER}


def _install(staging: Path, out: Path, ours: set[str], arch: str) -> None:
    """Move the staged files into ``out``; refuse (before moving anything) to replace a file not ours."""
    names = sorted(p.name for p in staging.iterdir())
    foreign = [n for n in names if (out / n).exists() and n not in ours]
    if foreign:
        raise ValueError(
            f"--out {str(out)!r} holds {foreign}, which tiny-model did not write; allowed: a new or empty "
            "folder, or one tiny-model wrote; nothing was written"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        (staging / name).replace(out / name)
    record = {"written_by": MARKER_WRITER, "arch": arch, "files": names}
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


# -- command line ---------------------------------------------------------------------------------------------


class _FamilyNames:
    """``--arch`` choices, read from the family registry only when argparse needs them (reading it imports
    transformers, which ``longllada --help`` should not wait for)."""

    def __contains__(self, name: object) -> bool:
        return name in archs()

    def __iter__(self):
        return iter(archs())


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tiny-model",
        help="write a tiny random diffusion model of a family (config, official-format weights, remote code, "
        "tokenizer)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, nargs="?", help="folder to write (the same as --out)")
    parser.add_argument("--out", type=Path, default=None, help="folder to write: new, empty, or one tiny-model wrote")
    parser.add_argument(
        "--arch", choices=_FamilyNames(), default="llada", metavar="NAME",
        help="model family, one of %(choices)s (default %(default)s)",
    )  # fmt: skip
    from longllada.cli import MAX_ROPE_BASE, MAX_SEED, float_arg, int_arg

    layers, width, heads = int_arg(1, MAX_TINY_LAYERS), int_arg(1, MAX_TINY_WIDTH), int_arg(1, MAX_TINY_HEADS)
    parser.add_argument("--layers", type=layers, default=2, help="transformer blocks (default 2)")
    parser.add_argument("--d-model", type=width, default=64, help="hidden size (default 64)")
    parser.add_argument("--heads", type=heads, default=4, help="attention heads (default 4)")
    parser.add_argument("--kv-heads", type=heads, default=None, help="key/value heads (default: --heads)")
    parser.add_argument("--mlp", type=width, default=None, help="SwiGLU inner size (default 3 x d-model)")
    parser.add_argument(
        "--vocab-size", type=int_arg(1, MAX_TINY_VOCAB), default=512, help="BPE vocabulary to train (default 512)"
    )
    parser.add_argument(
        "--train-length", type=int_arg(1), default=256,
        help="trained length: max_sequence_length / trained_length (256)",
    )  # fmt: skip
    parser.add_argument(
        "--rope-theta", type=float_arg(1.0, MAX_ROPE_BASE, above=True), default=None,
        help="RoPE base (default 10000; a family with several: its own)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int_arg(0, MAX_SEED), default=0, help="weight seed (default 0)")
    parser.add_argument(
        "--variant", default=None, metavar="NAME",
        help="a release of the family that differs only in its sampler's defaults (its registry entry's variants: "
        "2.1 for llada2), written into generation_config.json",
    )  # fmt: skip
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.out_dir is not None and args.out is not None and args.out_dir != args.out:
        raise ValueError(f"OUT_DIR {str(args.out_dir)!r} and --out {str(args.out)!r} disagree; give one of them")
    out_dir = args.out if args.out is not None else args.out_dir
    if out_dir is None:
        raise ValueError("the folder to write is missing; allowed: --out DIR (or OUT_DIR)")
    out = build_tiny_model(
        out_dir,
        arch=args.arch,
        n_layers=args.layers,
        d_model=args.d_model,
        n_heads=args.heads,
        n_kv_heads=args.kv_heads,
        mlp_hidden_size=args.mlp,
        vocab_size=args.vocab_size,
        max_sequence_length=args.train_length,
        rope_theta=args.rope_theta,
        seed=args.seed,
        variant=args.variant,
    )
    print(f"wrote {out}")
    return 0
