"""Word-level text tokenizer for shapes-world instructions.

A real `transformers` fast tokenizer (so it saves/loads with
``save_pretrained`` / ``AutoTokenizer.from_pretrained``) over the closed
vocabulary of the shapes world. The special-token ids below are part of the
model's token layout and must never change.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from rm_edit.data.shapes import ShapesWorld

PAD, UNK, MASK = "<pad>", "<unk>", "<mask>"
# Fixed ids: index in this tuple == token id.
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD,  # 0
    UNK,  # 1
    MASK,  # 2
    "<eor>",  # 3
    "<IMAGE>",  # 4
    "</IMAGE>",  # 5
    "<uncondition>",  # 6
    "<answer>",  # 7
    "</answer>",  # 8
    "<system>",  # 9
    "</system>",  # 10
    "<user>",  # 11
    "</user>",  # 12
)
SYSTEM_PROMPT = "Edit the image."
MAX_VOCAB_SIZE = 256
# Glue words users commonly add around world instructions.
COMMON_WORDS: tuple[str, ...] = (
    "a", "an", "to", "of", "and", "it", "please", "into", "at", "in", "on", "with", "colour", "color",
)  # fmt: skip


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # Split on whitespace, then isolate each punctuation mark ("image." -> "image", ".").
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )


def shapes_words() -> list[str]:
    """Sorted ordinary (non-special) words of the tokenizer."""
    words = set(ShapesWorld.vocabulary()) | set(COMMON_WORDS)
    words.update(w for w, _ in _pre_tokenizer().pre_tokenize_str(SYSTEM_PROMPT.lower()))
    return sorted(words)


def build_shapes_tokenizer() -> PreTrainedTokenizerFast:
    """Build the fixed-layout word-level tokenizer (specials 0-12, words 13..)."""
    words = shapes_words()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({w: len(SPECIAL_TOKENS) + i for i, w in enumerate(words)})
    if len(vocab) > MAX_VOCAB_SIZE:
        raise ValueError(f"shapes tokenizer vocabulary has {len(vocab)} tokens > {MAX_VOCAB_SIZE}")

    backend = Tokenizer(WordLevel(vocab, unk_token=UNK))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = _pre_tokenizer()
    # Already in the vocab, so they keep their ids; normalized=False makes the
    # tags match verbatim (before lowercasing) and never split.
    backend.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False) for tok in SPECIAL_TOKENS]
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        mask_token=MASK,
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
    )
    _check_layout(tokenizer)
    return tokenizer


def _check_layout(tokenizer: PreTrainedTokenizerFast) -> None:
    """Guard the fixed special ids against library behaviour changes."""
    for expected, tok in enumerate(SPECIAL_TOKENS):
        got = tokenizer.convert_tokens_to_ids(tok)
        if got != expected:
            raise RuntimeError(f"special token {tok!r} got id {got}, expected {expected}")
