"""Small byte-level BPE tokenizers with a family's special tokens and chat template, trained on the spot.

The real tokenizers (LLaDA's 126k tokens, Dream's Qwen-derived 152k) cannot be downloaded here, and tiny models
need a tiny vocabulary; these have the family's special tokens under the same names, with the tokenizer's own ids.
The tokens, their order, the chat template and whether encoding prepends the BOS come from the family's entry
(``modeling_longllada.families``, ``Family.tokenizer``), for example:

- LLaDA (``family="llada"``, the default): ``<|startoftext|>`` BOS, prepended by default when encoding
  (``add_special_tokens=False`` turns that off, as with LLaDA's tokenizer); ``<|endoftext|>`` EOS and PAD;
  ``<|mdm_mask|>`` MASK; ``<|eot_id|>``, ``<|start_header_id|>``, ``<|end_header_id|>`` for the LLaMA-3-style chat
  template, which writes the BOS itself, so a rendered chat must be encoded with ``add_special_tokens=False``
  (``apply_chat_template(..., tokenize=True)`` does that).
- Dream (``family="dream"``): ``<|endoftext|>`` EOS and PAD; ``<|im_start|>``, ``<|im_end|>`` for ChatML;
  ``<|beginoftext|>`` BOS, not added when encoding (callers prepend it, as the LongLLaDA runs do); ``<|mask|>``.

Training is deterministic: the same texts, vocabulary size and family give the same tokenizer, byte for byte.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from modeling_longllada.families import family_by_name


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024, family: str = "llada") -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (special tokens included) on ``texts``.

    Args:
        texts: training text; any iterable of strings (consumed once).
        vocab_size: total size including the family's special tokens and the 256 byte symbols (at least 262 for
            LLaDA's six, 261 for Dream's five). The result may be smaller when the texts do not contain enough distinct merges.
        family: a family's name (``modeling_longllada.families``): whose special tokens, BOS rule and chat
            template.
    Returns:
        A ``PreTrainedTokenizerFast`` with the family's special tokens and chat template;
        ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` round-trip it on transformers 4.46 and 5.x.
    """
    spec = family_by_name(family).tokenizer
    minimum = spec.min_vocab_size
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be an integer >= {minimum} ({len(spec.special_tokens)} special tokens + 256 bytes), "
            f"got {vocab_size!r}"
        )
    if isinstance(texts, str):
        raise ValueError("texts must be an iterable of strings, got one str; wrap it in a list")
    # Imported here: `tokenizers` is only needed when a tokenizer is trained.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    # GPT-2 style: split on the regex, bytes mapped to printable symbols, no space added in front of the text
    # (so " keyword" after "Answer:" is one token, the same in every context).
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(spec.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((t for t in texts if t), trainer=trainer)
    if spec.add_bos:
        bos_id = tokenizer.token_to_id(spec.bos_token)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos_token} $A",
            pair=f"{spec.bos_token} $A $B:1",
            special_tokens=[(spec.bos_token, bos_id)],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=spec.bos_token,
        eos_token=spec.eos_token,
        pad_token=spec.pad_token,
        mask_token=spec.mask_token,
        additional_special_tokens=spec.additional_special_tokens,
        chat_template=spec.chat_template,
        clean_up_tokenization_spaces=False,
        model_max_length=int(1e30),
        padding_side="left",
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | os.PathLike) -> Path:
    """``tokenizer.save_pretrained(out_dir)``, then make ``tokenizer_config.json`` load on every supported
    transformers (4.46 to 5.x), whichever of them wrote it.

    transformers 5 writes ``tokenizer_class: "TokenizersBackend"`` (unknown to 4.x), ``extra_special_tokens``
    (a list, where 4.x expects ``additional_special_tokens``) and the chat template only as
    ``chat_template.jinja`` (which 4.46 does not read). The rewritten file names the class both know,
    lists the extra special tokens under the old key, and carries the chat template inline as well.
    """
    folder = Path(out_dir)
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, dict):  # transformers 4.47+: named extra tokens; keep them, they are a dict there
        config["extra_special_tokens"] = extra
    elif extra:
        config.setdefault("additional_special_tokens", list(extra))
    config.pop("backend", None)
    if tokenizer.chat_template is not None:
        config["chat_template"] = tokenizer.chat_template
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return folder
