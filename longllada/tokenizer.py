"""A small byte-level BPE tokenizer with LLaDA's special tokens, trained on the spot.

LLaDA's own tokenizer (126k tokens) cannot be downloaded here, and tiny models need a tiny vocabulary; this one
has the same special tokens under the same names (spec §1), with the tokenizer's own ids:

==========================  =======================================================
``<|startoftext|>``          BOS, prepended by default when encoding (as LLaDA does)
``<|endoftext|>``            EOS and PAD (LLaDA uses one token for both)
``<|mdm_mask|>``             MASK (``mask_token``): the diffusion model's mask
``<|eot_id|>``               end of a chat turn
``<|start_header_id|>``      chat header start
``<|end_header_id|>``        chat header end
==========================  =======================================================

BOS: ``tokenizer(text)`` returns ``[bos, ...]`` and ``add_special_tokens=False`` turns that off, like LLaDA's
tokenizer. The chat template (LLaMA-3 style, as LLaDA-Instruct's) writes the BOS itself, so a rendered chat
must be encoded with ``add_special_tokens=False`` (``apply_chat_template(..., tokenize=True)`` does that).

Training is deterministic: the same texts and vocabulary size give the same tokenizer, byte for byte.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from transformers import PreTrainedTokenizerFast

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "<|mdm_mask|>"
EOT_TOKEN = "<|eot_id|>"
START_HEADER_TOKEN = "<|start_header_id|>"
END_HEADER_TOKEN = "<|end_header_id|>"
# Order fixes the ids: the special tokens take ids 0..5, before the 256 byte symbols and the merges.
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, MASK_TOKEN, EOT_TOKEN, START_HEADER_TOKEN, END_HEADER_TOKEN)

# LLaMA-3-style template, as LLaDA-8B-Instruct's: each turn is a role header, a blank line, the trimmed
# content and <|eot_id|>; BOS starts the first turn; the generation prompt opens an assistant header.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + (message['content'] | trim) + '<|eot_id|>' -%}"
    "{%- if loop.first -%}{{ bos_token }}{%- endif -%}"
    "{{ content }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)

MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + 256  # every byte must stay encodable


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (special tokens included) on ``texts``.

    Args:
        texts: training text; any iterable of strings (consumed once).
        vocab_size: total size including the 6 special tokens and the 256 byte symbols; at least 262. The
            result may be smaller when the texts do not contain enough distinct merges.
    Returns:
        A ``PreTrainedTokenizerFast`` with LLaDA's special tokens, BOS prepended by default, and a chat template;
        ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` round-trip it on transformers 4.46 and 5.x.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be an integer >= {MIN_VOCAB_SIZE} (6 special tokens + 256 bytes), got {vocab_size!r}"
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
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((t for t in texts if t), trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B:1",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        mask_token=MASK_TOKEN,
        additional_special_tokens=[EOT_TOKEN, START_HEADER_TOKEN, END_HEADER_TOKEN],
        chat_template=CHAT_TEMPLATE,
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
