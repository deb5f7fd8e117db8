"""Small byte-level BPE tokenizers with LLaDA's, Dream's or DiffusionGemma's special tokens, trained on the spot.

The real tokenizers (LLaDA's 126k tokens, Dream's Qwen-derived 152k, Gemma's 262k) cannot be downloaded here, and
tiny models
need a tiny vocabulary; these have the same special tokens under the same names, with the tokenizer's own ids.

LLaDA (``family="llada"``, the default):

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

Dream (``family="dream"``):

==========================  =======================================================
``<|endoftext|>``            EOS and PAD
``<|im_start|>``             chat turn start (ChatML, as Qwen's and Dream-Instruct's)
``<|im_end|>``               end of a chat turn
``<|beginoftext|>``          BOS; not added when encoding (callers prepend it, as the LongLLaDA runs do)
``<|mask|>``                 MASK (``mask_token``)
==========================  =======================================================

DiffusionGemma (``family="diffusion_gemma"``; Gemma 4's tokens, the first five at Gemma's ids 0-4):

==========================  =======================================================
``<pad>``                    PAD (id 0)
``<eos>``                    EOS (id 1)
``<bos>``                    BOS (id 2), prepended when encoding (as Gemma's tokenizer does)
``<unk>``, ``<mask>``        ids 3 and 4 (DiffusionGemma's sampler uses no mask token)
``<|turn>``, ``<turn|>``     chat turn start and end (``<turn|>`` is also an EOS of the generation config)
``<|channel>``, ``<channel|>``  thought channel start and end
``<|image>``, ``<image|>``, ``<|image|>``  image start, end and placeholder (the config's image token ids)
==========================  =======================================================

Training is deterministic: the same texts, vocabulary size and family give the same tokenizer, byte for byte.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
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

DREAM_EOS_TOKEN = "<|endoftext|>"
DREAM_IM_START_TOKEN = "<|im_start|>"
DREAM_IM_END_TOKEN = "<|im_end|>"
DREAM_BOS_TOKEN = "<|beginoftext|>"
DREAM_MASK_TOKEN = "<|mask|>"
# Qwen's order: end of text and the chat tokens first; Dream appended BOS and MASK.
DREAM_SPECIAL_TOKENS = (DREAM_EOS_TOKEN, DREAM_IM_START_TOKEN, DREAM_IM_END_TOKEN, DREAM_BOS_TOKEN, DREAM_MASK_TOKEN)

# ChatML, as Qwen2.5's and Dream-Instruct's: a default system turn when none is given, each turn
# "<|im_start|>role\ncontent<|im_end|>\n", and the generation prompt opens an assistant turn.
DREAM_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)


GEMMA_PAD_TOKEN = "<pad>"
GEMMA_EOS_TOKEN = "<eos>"
GEMMA_BOS_TOKEN = "<bos>"
GEMMA_UNK_TOKEN = "<unk>"
GEMMA_MASK_TOKEN = "<mask>"
GEMMA_TURN_START_TOKEN = "<|turn>"
GEMMA_TURN_END_TOKEN = "<turn|>"
GEMMA_CHANNEL_START_TOKEN = "<|channel>"
GEMMA_CHANNEL_END_TOKEN = "<channel|>"
GEMMA_IMAGE_START_TOKEN = "<|image>"
GEMMA_IMAGE_END_TOKEN = "<image|>"
GEMMA_IMAGE_TOKEN = "<|image|>"
# Gemma's order for the first five (pad 0, eos 1, bos 2, unk 3, mask 4), then Gemma 4's chat and image tokens.
GEMMA_SPECIAL_TOKENS = (
    GEMMA_PAD_TOKEN, GEMMA_EOS_TOKEN, GEMMA_BOS_TOKEN, GEMMA_UNK_TOKEN, GEMMA_MASK_TOKEN, GEMMA_TURN_START_TOKEN,
    GEMMA_TURN_END_TOKEN, GEMMA_CHANNEL_START_TOKEN, GEMMA_CHANNEL_END_TOKEN, GEMMA_IMAGE_START_TOKEN,
    GEMMA_IMAGE_END_TOKEN, GEMMA_IMAGE_TOKEN,
)  # fmt: skip

# Gemma 4's turn format, as DiffusionGemma's instruction-tuned checkpoint uses it: BOS, optional system turn,
# "<|turn>role\ncontent<turn|>\n" per turn (assistant as "model"); the generation prompt opens a model turn and,
# unless enable_thinking is set, closes an empty thought channel so that the answer follows directly.
GEMMA_CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{- '<|turn>' + role + '\n' + (message['content'] | trim) + '<turn|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|turn>model\n' -}}"
    "{%- if not (enable_thinking | default(false)) -%}{{- '<|channel>thought\n<channel|>' -}}{%- endif -%}"
    "{%- endif -%}"
)


@dataclass(frozen=True)
class TokenizerFamily:
    """The special tokens of one model family and how its tokenizer uses them."""

    special_tokens: tuple[str, ...]  # in id order: they take ids 0..n-1, before the 256 byte symbols
    bos_token: str
    eos_token: str
    pad_token: str
    mask_token: str
    chat_template: str
    add_bos: bool  # prepend the BOS when encoding with add_special_tokens=True

    @property
    def min_vocab_size(self) -> int:
        return len(self.special_tokens) + 256  # every byte must stay encodable

    @property
    def additional_special_tokens(self) -> list[str]:
        named = {self.bos_token, self.eos_token, self.pad_token, self.mask_token}
        return [t for t in self.special_tokens if t not in named]


FAMILIES = {
    "llada": TokenizerFamily(SPECIAL_TOKENS, BOS_TOKEN, EOS_TOKEN, EOS_TOKEN, MASK_TOKEN, CHAT_TEMPLATE, True),
    "dream": TokenizerFamily(
        DREAM_SPECIAL_TOKENS, DREAM_BOS_TOKEN, DREAM_EOS_TOKEN, DREAM_EOS_TOKEN, DREAM_MASK_TOKEN,
        DREAM_CHAT_TEMPLATE, False,
    ),
    "diffusion_gemma": TokenizerFamily(
        GEMMA_SPECIAL_TOKENS, GEMMA_BOS_TOKEN, GEMMA_EOS_TOKEN, GEMMA_PAD_TOKEN, GEMMA_MASK_TOKEN,
        GEMMA_CHAT_TEMPLATE, True,
    ),
}  # fmt: skip


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024, family: str = "llada") -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (special tokens included) on ``texts``.

    Args:
        texts: training text; any iterable of strings (consumed once).
        vocab_size: total size including the family's special tokens and the 256 byte symbols (at least 262 for
            LLaDA, 261 for Dream). The result may be smaller when the texts do not contain enough distinct merges.
        family: ``"llada"`` or ``"dream"``: whose special tokens, BOS rule and chat template (module docstring).
    Returns:
        A ``PreTrainedTokenizerFast`` with the family's special tokens and chat template;
        ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` round-trip it on transformers 4.46 and 5.x.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not allowed; allowed: {sorted(FAMILIES)}")
    spec = FAMILIES[family]
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
