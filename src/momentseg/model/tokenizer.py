"""Tokenizers: the tiny preset's word-level tokenizer, and the [SEG]/[FIND] special tokens for every preset.

All presets use a ``transformers.PreTrainedTokenizerFast`` (the real presets load Qwen2.5-VL's from a local
directory; no remote code). Token ids the model needs are read from the tokenizer by :func:`token_ids`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

SEG_TOKEN = "[SEG]"
FIND_TOKEN = "[FIND]"
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
END_OF_TEXT = "<|endoftext|>"

#: Special tokens of the word-level tokenizer, in id order (ids 0..10).
WORD_SPECIAL_TOKENS = (
    PAD_TOKEN,
    UNK_TOKEN,
    END_OF_TEXT,
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    IMAGE_PAD,
    VIDEO_PAD,
    SEG_TOKEN,
    FIND_TOKEN,
)

#: Words of the chat structure (role names, default system prompt) always in the word vocabulary.
CHAT_WORDS = ("system", "user", "assistant", "you", "are", "a", "helpful")


def split_words(text: str) -> list[str]:
    """How the word tokenizer splits text: lower-cased, on whitespace, every punctuation mark on its own."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def build_word_tokenizer(words: Iterable[str], extra_texts: Iterable[str] = ()):
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` plus the words of ``extra_texts`` (e.g. the prompt
    templates) and the chat words. Lower-cases; splits on whitespace and punctuation; unknown words → [UNK].
    Special tokens: :data:`WORD_SPECIAL_TOKENS` (ids 0..10, never split, never lower-cased)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {tok: i for i, tok in enumerate(WORD_SPECIAL_TOKENS)}
    pieces: list[str] = []
    for w in words:
        pieces.extend(split_words(str(w)))
    for text in (*extra_texts, *CHAT_WORDS):
        # template placeholders like {q} are not words
        pieces.extend(split_words(re.sub(r"\{\w*\}", " ", str(text))))
    for piece in pieces:
        if piece not in vocab:
            vocab[piece] = len(vocab)

    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        additional_special_tokens=[t for t in WORD_SPECIAL_TOKENS if t not in (UNK_TOKEN, PAD_TOKEN, IM_END)],
    )


def add_task_tokens(tokenizer) -> int:
    """Add [SEG] and [FIND] as special tokens if missing (Qwen tokenizers). Returns how many were added."""
    missing = [t for t in (SEG_TOKEN, FIND_TOKEN) if t not in tokenizer.get_vocab()]
    if not missing:
        return 0
    return tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)


def token_ids(tokenizer) -> dict[str, int]:
    """Ids of the structural tokens the model uses: seg, find, im_start, im_end, vision_start, vision_end,
    image_pad, video_pad. Raises ``KeyError`` naming a token the tokenizer lacks."""
    vocab = tokenizer.get_vocab()
    names = {
        "seg": SEG_TOKEN,
        "find": FIND_TOKEN,
        "im_start": IM_START,
        "im_end": IM_END,
        "vision_start": VISION_START,
        "vision_end": VISION_END,
        "image_pad": IMAGE_PAD,
        "video_pad": VIDEO_PAD,
    }
    out = {}
    for key, tok in names.items():
        if tok not in vocab:
            raise KeyError(f"tokenizer has no {tok} token")
        out[key] = vocab[tok]
    return out


def load_tokenizer(path: str | Path):
    """A tokenizer saved with ``save_pretrained`` (tokenizer.json + tokenizer_config.json), from a local folder."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    for key in ("local_files_only", "is_local"):  # how it was loaded, not what it is: a re-save must not record it
        tokenizer.init_kwargs.pop(key, None)
    return tokenizer
