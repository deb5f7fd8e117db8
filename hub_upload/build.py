"""Build a LongLLaDA model-repo folder from an official checkpoint of a family (or one of ours).

The families, how their checkpoints are recognised and what their repos get, come from
``modeling_longllada.families`` (read without importing torch).

The folder holds: our remote code (``modeling_longllada.REMOTE_CODE_FILES``, the same files for every family;
none for a family that transformers implements), the converted ``config.json``, ``generation_config.json`` with
the family's sampler defaults (a native family's: the source's own), the tokenizer files, the weights as safetensors (official keys are our keys: copied unchanged), and ``README.md`` (the model
card). The source's own ``.py`` files are never copied: the official modeling code is what this project
replaces.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub_upload.options import RopeScalingChoice, check_repo_id

if TYPE_CHECKING:
    from modeling_longllada.families import Family

# Keys of the source config that the conversion rewrites (rope_parameters: transformers 5's name for rope_scaling).
REWRITTEN_KEYS = ("architectures", "auto_map", "model_type", "rope_scaling", "rope_parameters")


def source_model_types() -> tuple[str, ...]:
    """The ``model_type`` values a source may have: every family's, per family the official ones first."""
    from modeling_longllada.families import model_types

    return model_types()


def family_of(config: dict[str, Any], where: str = "config.json") -> Family:
    """The family of a config.json (by ``model_type``, or the fields by which a family claims it); ValueError
    naming the allowed types otherwise."""
    from modeling_longllada.families import FAMILIES, family_of_config

    model_type = config.get("model_type")
    family = family_of_config(config)
    if family is None:
        examples = ", ".join(f.card.official_repos[0] for f in FAMILIES if f.card.official_repos)
        raise ValueError(
            f"{where}: model_type={model_type!r} is not supported; allowed: {source_model_types()} "
            f"(an official checkpoint of {', '.join(f.title for f in FAMILIES)} such as {examples}, or a LongLLaDA "
            "one of these families)"
        )
    return family


def sampler_defaults(family: Family) -> dict[str, Any]:
    """The sampler defaults of ``family``'s model class (Dream: one block, 512 steps, ``origin``; none for a class
    of transformers' own without ours)."""
    return dict(getattr(family.model_cls(), "sampler_defaults", {}))


TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
    "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja", "chat_template.json",
)  # fmt: skip
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "NOTICE", "NOTICE.txt")
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
# What a Hub-id SOURCE downloads: everything but code (and other frameworks' weights).
SOURCE_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.jinja", "README.md", "LICENSE*"]
DEFAULT_SHARD_SIZE = 5 * 10**9


@dataclass
class Source:
    """A checkpoint to publish: its local folder, its config, and what its model card says."""

    path: Path
    config: dict[str, Any]
    hub_id: str | None = None  # the Hub id it was downloaded from (or whose cache folder it is)
    card_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> Family:
        return family_of(self.config)

    @property
    def is_official(self) -> bool:
        return self.family.is_official(self.config)

    @property
    def variant(self) -> Any:
        """The family's sampler variant this checkpoint is (``Family.variant_of``: by its Hub id, or the settings
        its own ``generation_config.json`` states), or None."""
        path = self.path / "generation_config.json"
        try:
            stated = _read_json(path) if path.is_file() else {}
        except ValueError:
            stated = {}
        return self.family.variant_of(self.hub_id, stated if isinstance(stated, dict) else {})


@dataclass
class BuiltFolder:
    """A built repo folder and the revision it is meant for."""

    path: Path
    revision: str
    rope_scaling: dict[str, Any] | None
    weight_files: list[str]

    def files(self) -> list[tuple[str, int]]:
        """(relative path, size in bytes) of every file, sorted."""
        return sorted(
            (p.relative_to(self.path).as_posix(), p.stat().st_size) for p in self.path.rglob("*") if p.is_file()
        )


# -- the source ----------------------------------------------------------------------------------------------


def resolve_source(source: str, api_factory: Callable[[], Any] | None = None, revision: str | None = None) -> Source:
    """A local folder, or a Hub model id downloaded with ``HfApi.snapshot_download`` (no ``.py`` files).

    ``api_factory`` makes the ``HfApi`` used for the download (only called for a Hub id).
    """
    path = Path(source).expanduser()
    hub_id = None
    if not path.is_dir():
        if path.exists() or source.count("/") != 1 or source.startswith((".", "/", "~")):
            raise FileNotFoundError(f"SOURCE={source!r} is neither a folder nor a Hub model id (ORG/NAME)")
        hub_id = check_repo_id(source, field="SOURCE")
        if api_factory is None:
            raise ValueError(f"SOURCE={source!r} is a Hub id, but no Hugging Face API was given to download it")
        from hub_upload.push import HubUnreachable, describe_network_error, network_errors

        api = api_factory()
        try:
            path = Path(
                api.snapshot_download(
                    hub_id, revision=revision, repo_type="model", allow_patterns=SOURCE_DOWNLOAD_PATTERNS
                )
            )
        except network_errors() as err:
            raise HubUnreachable(
                f"SOURCE {source!r} could not be downloaded from the Hub ({describe_network_error(err)})"
            ) from None
    config_path = path / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"SOURCE {path} has no config.json; expected a checkpoint folder of a model family")
    config = _read_json(config_path)
    family = family_of(config, str(config_path))
    for name in family.required_fields:
        if name not in config:
            raise ValueError(f"{config_path}: the {family.title} field {name!r} is missing")
    return Source(
        path=path, config=config, hub_id=hub_id or _hub_id_from_cache_path(path), card_metadata=_card_metadata(path)
    )


def _hub_id_from_cache_path(path: Path) -> str | None:
    """``.../models--ORG--NAME/snapshots/<commit>`` (a huggingface_hub cache folder) -> ``ORG/NAME``."""
    resolved = path.resolve()
    if resolved.parent.name == "snapshots":
        match = re.fullmatch(r"models--([^-][^/]*?)--([^/]+)", resolved.parent.parent.name)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    return None


def _card_metadata(path: Path) -> dict[str, Any]:
    readme = path / "README.md"
    if not readme.is_file():
        return {}
    from huggingface_hub import metadata_load

    return metadata_load(readme) or {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- config ----------------------------------------------------------------------------------------------------


def convert_config(source_config: dict[str, Any], choice: RopeScalingChoice) -> dict[str, Any]:
    """The repo's config.json: every source field kept, with our ``model_type``/``architectures``/``auto_map``
    for the source's family and the requested ``rope_scaling`` (``keep_source``: the source's own). The family's
    ``derived_fields`` are dropped from the source and its ``written_fields`` written from our config class (LLaDA's
    ``max_position_embeddings``, derived from the scaling; Dream's ``trained_length``, the length the scaling law
    reads).

    Validated by building the family's config class from it and by the model class's architecture check. A family
    with hooks (a native one) converts with its own ``convert_config``: no ``auto_map``, and the scaling written in
    the form transformers itself reads.
    """
    family = family_of(source_config)
    family.check_transformers()
    hooks = family.tool_hooks()
    if hooks is not None:  # a native family: its hooks write transformers' own config, RoPE scaled in it
        try:
            return hooks.convert_config(source_config, choice.rope_scaling, choice.keep_source)
        except ValueError as err:
            raise ValueError(err if choice.keep_source else f"--rope-scaling {choice.spec}: {err}") from None
    rope: dict[str, Any] = {"rope_scaling": choice.rope_scaling}
    if choice.keep_source:  # transformers 5's `rope_parameters` also holds the base: the config class reads it
        rope = {
            "rope_scaling": source_config.get("rope_scaling"),
            "rope_parameters": source_config.get("rope_parameters"),
        }
    fields = {k: v for k, v in source_config.items() if k not in REWRITTEN_KEYS + family.derived_fields}
    try:
        config = family.config_cls()(**rope, **fields)
    except ValueError as err:
        raise ValueError(f"--rope-scaling {choice.spec}: {err}") from err
    target = (config.rope_scaling or {}).get("target_length")
    if target is not None and target <= config.trained_length:
        raise ValueError(
            f"--rope-scaling {choice.spec}: target_length={target} does not extend the trained length "
            f"{config.trained_length}; allowed: a length above it"
        )
    check_config = getattr(family.model_cls(), "check_config", None)
    if check_config is not None:  # an architecture our model class does not implement stops here
        check_config(config)
    converted = {
        "architectures": [family.architecture],
        **({"auto_map": family.auto_map} if family.auto_map else {}),  # none for transformers' own classes
        "model_type": family.model_type,
        **fields,
        "rope_theta": config.rope_theta,  # the source's, or read from its `rope_parameters`
        "rope_scaling": config.rope_scaling,
    }
    converted.update({name: getattr(config, name) for name in family.written_fields})
    return converted


def published_rope_scaling(config: dict[str, Any]) -> dict[str, Any] | None:
    """The ``rope_scaling`` a converted config.json carries: its own field, or what a native family's hooks read
    from the config (where transformers' own fields hold the scaled base)."""
    family = family_of(config)
    hooks = family.tool_hooks()
    if hooks is None:
        return config.get("rope_scaling")
    from hub_upload.model_card import parse_config

    return hooks.rope_summary(parse_config(config))["scaling"]


def generation_config(config: dict[str, Any], variant: Any = None) -> dict[str, Any]:
    """generation_config.json: the family's sampler defaults, those of its ``variant`` (a
    ``families.SamplerVariant``) over them, and the special-token ids.

    ``do_sample: false`` is what makes the sampler greedy (temperature 0); a ``temperature`` key is left out
    because transformers warns about a temperature without sampling every time the file is loaded.
    """
    data: dict[str, Any] = {"do_sample": False, **sampler_defaults(family_of(config))}
    data.update(variant.settings if variant is not None else ())
    for name in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id"):
        if config.get(name) is not None:
            data[name] = config[name]
    return data


# -- files -------------------------------------------------------------------------------------------------------


def remote_code_files() -> list[Path]:
    """Our remote-code files, ``modeling_longllada.REMOTE_CODE_FILES`` (every repo of every family ships all)."""
    import modeling_longllada

    package_dir = Path(modeling_longllada.__file__).parent
    files = [package_dir / name for name in modeling_longllada.REMOTE_CODE_FILES]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"remote-code files missing from {package_dir}: {missing}")
    return files


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (no copy of multi-GB shards), copying where links are impossible."""
    src = src.resolve()  # huggingface_hub cache snapshots are symlinks to blobs
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def copy_tokenizer_files(source_dir: Path, dest: Path, family: Family) -> list[str]:
    """Copy the tokenizer files. A tokenizer ``auto_map`` (custom tokenizer code) is dropped: no source code is
    published; a ``tokenizer_class`` that only that code defined (Dream's ``DreamTokenizer``) becomes a class of
    transformers that reads the same files: ``PreTrainedTokenizerFast`` beside a ``tokenizer.json``, else the
    family's stock class (Dream: ``Qwen2Tokenizer``, over ``vocab.json`` and ``merges.txt``)."""
    copied = [name for name in TOKENIZER_FILES if (source_dir / name).is_file()]
    if not any(name in copied for name in TOKENIZER_VOCAB_FILES):
        raise FileNotFoundError(
            f"SOURCE {source_dir} has no tokenizer: expected one of {TOKENIZER_VOCAB_FILES} beside config.json"
        )
    for name in copied:
        tokenizer_config = _read_json(source_dir / name) if name == "tokenizer_config.json" else {}
        if tokenizer_config.pop("auto_map", None) is not None:
            print(f"note: dropped auto_map from {name} (the source's tokenizer code is not published)")
            tokenizer_class = tokenizer_config.get("tokenizer_class")
            # A tokenizer.json holds the whole pipeline, which the generic fast class reads as is.
            stock = "PreTrainedTokenizerFast" if "tokenizer.json" in copied else family.stock_tokenizer_class
            if tokenizer_class and stock and not _known_tokenizer_class(tokenizer_class):
                tokenizer_config["tokenizer_class"] = stock
                print(f"note: tokenizer_class {tokenizer_class} -> {stock} (transformers' own)")
            _write_json(dest / name, tokenizer_config)
        else:
            shutil.copyfile(source_dir / name, dest / name)
    return copied


def _known_tokenizer_class(name: str) -> bool:
    """Whether transformers itself defines the tokenizer class ``name`` (or its fast twin)."""
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    return any(tokenizer_class_from_name(n) is not None for n in (name, name.removesuffix("Fast") + "Fast"))


# -- weights -----------------------------------------------------------------------------------------------------


def safetensors_keys(path: Path) -> list[str]:
    """Tensor names from a safetensors header (8-byte little-endian length, then JSON), without loading data."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its header)")
        (length,) = struct.unpack("<Q", prefix)
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError, MemoryError, OverflowError) as err:
            raise ValueError(f"{path} is not a safetensors file: {err}") from err
    return [k for k in header if k != "__metadata__"]


# Bytes per element of each safetensors dtype (the format's own names).
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
MAX_SAFETENSORS_HEADER = 100 * 2**20  # the format's own limit on the header


def verify_safetensors(path: Path) -> list[str]:
    """Check a safetensors file whole, without loading its data; returns its tensor names.

    The header must parse; every tensor's byte span must match its dtype and shape; the spans must tile the
    data without gap or overlap (as the format requires); and the file must hold exactly the header and that
    data, so a file cut short (an interrupted download or copy) is refused, however little is missing."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path} is not a safetensors file ({size} bytes, shorter than its header length)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise ValueError(f"{path} is cut short or not a safetensors file (header of {length} bytes in {size})")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a safetensors file (its header is not JSON: {err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file (its header is not a JSON object)")
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            numel = math.prod(int(d) for d in shape)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name!r} has no valid dtype, shape and data_offsets") from None
        itemsize = SAFETENSORS_DTYPE_BYTES.get(dtype)
        if itemsize is None:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype!r}; allowed: {sorted(SAFETENSORS_DTYPE_BYTES)}")
        if not 0 <= begin <= end or end - begin != numel * itemsize:
            raise ValueError(
                f"{path}: tensor {name!r} ({dtype}, shape {shape}) spans bytes {begin}..{end}, not its "
                f"{numel * itemsize} bytes"
            )
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise ValueError(f"{path}: tensor {name!r} starts at byte {begin} of the data, expected {position}")
        position = end
    expected = 8 + length + position
    if size != expected:
        state = "cut short" if size < expected else "longer than its tensors"
        raise ValueError(f"{path} is {state}: {size} bytes, its header describes {expected}")
    return [name for _, _, name in spans]


def verify_weights(folder: Path) -> None:
    """Check every weight file the build would read from ``folder``, whole, before anything is built: each
    safetensors file (:func:`verify_safetensors`) and that an index names exactly the tensors of its shards, or
    each ``.bin`` file loaded (its zip directory, at the end of the file, is read)."""
    folder = Path(folder)
    if (folder / SAFETENSORS_INDEX).is_file():
        index = folder / SAFETENSORS_INDEX
        weight_map = _read_json(index).get("weight_map") or {}
        for name in _indexed_files(index):
            keys = set(verify_safetensors(folder / name))
            listed = {key for key, file in weight_map.items() if file == name}
            if keys != listed:
                missing, extra = sorted(listed - keys)[:3], sorted(keys - listed)[:3]
                raise ValueError(
                    f"{index} does not match {name}: tensors listed but absent {missing}, present but not listed "
                    f"{extra}"
                )
    elif (folder / SAFETENSORS_FILE).is_file():
        verify_safetensors(folder / SAFETENSORS_FILE)
    elif (folder / BIN_INDEX).is_file() or (folder / BIN_FILE).is_file():
        files = _indexed_files(folder / BIN_INDEX) if (folder / BIN_INDEX).is_file() else [BIN_FILE]
        for _ in _bin_tensors([folder / name for name in files]):
            pass


def _check_weight_keys(keys: list[str], where: str, family: Family) -> None:
    """The official key layout of ``family`` (ours is the same): its embedding, every key under its prefixes."""
    prefixes = family.key_prefixes
    if family.embedding_key not in keys or not all(k.startswith(prefixes) for k in keys):
        strange = [k for k in keys if not k.startswith(prefixes)][:3]
        raise ValueError(
            f"{where}: the weights are not in {family.title}'s layout (expected {family.embedding_key!r} and every "
            f"key under {' or '.join(repr(p) for p in prefixes)}; found e.g. {strange or keys[:3]})"
        )


def _indexed_files(index_path: Path) -> list[str]:
    weight_map = _read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path}: 'weight_map' must be a non-empty object of tensor name -> file")
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not (index_path.parent / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{index_path} lists shard files that are missing: {missing}")
    return files


def write_weights(source_dir: Path, dest: Path, family: Family, shard_size: int = DEFAULT_SHARD_SIZE) -> list[str]:
    """Put the weights in ``dest`` as safetensors; returns the file names written (shards and index).

    Safetensors are linked untouched (their sharding kept); ``pytorch_model.bin`` (sharded or not) is converted,
    in shards of at most ``shard_size`` bytes with a ``model.safetensors.index.json`` when it does not fit in one.
    """
    if (source_dir / SAFETENSORS_INDEX).is_file():
        files = _indexed_files(source_dir / SAFETENSORS_INDEX)
        _check_weight_keys([k for f in files for k in verify_safetensors(source_dir / f)], str(source_dir), family)
        for name in [*files, SAFETENSORS_INDEX]:
            link_or_copy(source_dir / name, dest / name)
        return [*files, SAFETENSORS_INDEX]
    if (source_dir / SAFETENSORS_FILE).is_file():
        _check_weight_keys(
            verify_safetensors(source_dir / SAFETENSORS_FILE), str(source_dir / SAFETENSORS_FILE), family
        )
        link_or_copy(source_dir / SAFETENSORS_FILE, dest / SAFETENSORS_FILE)
        return [SAFETENSORS_FILE]
    if (source_dir / BIN_INDEX).is_file():
        bin_files = _indexed_files(source_dir / BIN_INDEX)
    elif (source_dir / BIN_FILE).is_file():
        bin_files = [BIN_FILE]
    else:
        raise FileNotFoundError(
            f"SOURCE {source_dir} has no weights; expected one of {SAFETENSORS_FILE}, {SAFETENSORS_INDEX}, "
            f"{BIN_FILE}, {BIN_INDEX}"
        )
    print(f"converting {', '.join(bin_files)} to safetensors (shards of at most {shard_size} bytes)")
    return _convert_bin([source_dir / f for f in bin_files], dest, shard_size, family)


def _bin_tensors(paths: list[Path]) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of every pickled state dict in turn, memory-mapped, loaded with ``weights_only``."""
    import torch

    for path in paths:
        try:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):
                    raise
                # Files written with torch's legacy (pre-zip) format cannot be memory-mapped.
                state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise ValueError(f"{path} is cut short or not a PyTorch checkpoint ({first.strip()})") from None
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
        yield from state.items()
        del state


def _convert_bin(paths: list[Path], dest: Path, shard_size: int, family: Family) -> list[str]:
    from safetensors.torch import save_file

    seen_storages: set[int] = set()
    shards: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    current_bytes = 0
    total = 0
    keys: list[str] = []

    def flush() -> None:
        nonlocal current, current_bytes
        if current:
            save_file(current, dest / f"shard-{len(shards):05d}.tmp", metadata={"format": "pt"})
            shards.append({name: None for name in current})
            current, current_bytes = {}, 0

    for name, tensor in _bin_tensors(paths):
        tensor = tensor.contiguous()
        # safetensors refuses tensors that share memory (tied weights): store such a tensor as its own copy.
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen_storages:
            tensor = tensor.clone()
        seen_storages.add(tensor.untyped_storage().data_ptr())
        size = tensor.numel() * tensor.element_size()
        if current and current_bytes + size > shard_size:
            flush()
        current[name] = tensor
        current_bytes += size
        total += size
        keys.append(name)
    flush()
    _check_weight_keys(keys, ", ".join(str(p) for p in paths), family)

    if len(shards) == 1:
        os.replace(dest / "shard-00000.tmp", dest / SAFETENSORS_FILE)
        return [SAFETENSORS_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for i, (shard, name) in enumerate(zip(shards, names)):
        os.replace(dest / f"shard-{i:05d}.tmp", dest / name)
        weight_map.update({key: name for key in shard})
    _write_json(
        dest / SAFETENSORS_INDEX, {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    )
    return [*names, SAFETENSORS_INDEX]


# -- the folder --------------------------------------------------------------------------------------------------


def resolve_base_model(source: Source, override: str | None = None) -> str | None:
    """``base_model`` of the card: ``--base-model``; else the Hub id of the source; else, for a LongLLaDA source
    (a repo of ours, republished), its card's ``base_model``; else unknown (a local path is not a Hub id)."""
    if override:
        return check_repo_id(override, field="--base-model")
    if source.hub_id:
        return source.hub_id
    inherited = source.card_metadata.get("base_model")
    if not source.is_official and isinstance(inherited, str):
        return inherited
    return None


def build_repo_folder(
    source: Source,
    dest: Path,
    repo_id: str,
    choice: RopeScalingChoice,
    revision: str = "main",
    shard_size: int = DEFAULT_SHARD_SIZE,
    base_model: str | None = None,
    weights_from: BuiltFolder | None = None,
) -> BuiltFolder:
    """Write the repo folder for one rope-scaling variant into ``dest`` (created; must be empty if it exists).

    ``weights_from``: an already built folder of the same source whose weight files are linked instead of
    converted again (several variants of one checkpoint).
    """
    from hub_upload.model_card import render_model_card

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"output folder {dest} is not empty; allowed: a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    config = convert_config(source.config, choice)
    variant = source.variant
    _write_json(dest / "config.json", config)
    if source.family.native and (source.path / "generation_config.json").is_file():
        # transformers' own generation config class reads it: the source's sampler settings, as they are
        shutil.copyfile(source.path / "generation_config.json", dest / "generation_config.json")
    else:
        _write_json(dest / "generation_config.json", generation_config(config, variant))
    for code in [] if source.family.native else remote_code_files():
        shutil.copyfile(code, dest / code.name)
    copy_tokenizer_files(source.path, dest, source.family)
    for name in LICENSE_FILES:
        if (source.path / name).is_file():
            shutil.copyfile(source.path / name, dest / name)
    if weights_from is not None:
        weight_files = list(weights_from.weight_files)
        for name in weight_files:
            link_or_copy(weights_from.path / name, dest / name)
    else:
        weight_files = write_weights(source.path, dest, source.family, shard_size)
    card = render_model_card(
        repo_id=repo_id,
        config=config,
        revision=revision,
        license=_license(source),
        base_model=base_model,
        source_metadata=source.card_metadata,
        has_chat_template=_has_chat_template(dest),
        variant=variant,
    )
    (dest / "README.md").write_text(card, encoding="utf-8")
    return BuiltFolder(
        path=dest, revision=revision, rope_scaling=published_rope_scaling(config), weight_files=weight_files
    )


def _license(source: Source) -> str:
    """The source card's ``license``, else config.json's, else ``"other"``."""
    for value in (source.card_metadata.get("license"), source.config.get("license")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "other"


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    tokenizer_config = folder / "tokenizer_config.json"
    return tokenizer_config.is_file() and bool(_read_json(tokenizer_config).get("chat_template"))
