"""Word-level text tokenizers for the shapes world's and the Sudoku world's instructions.

A real `transformers` fast tokenizer (so it saves/loads with
``save_pretrained`` / ``AutoTokenizer.from_pretrained``) over the closed
vocabulary of the shapes world. The special-token ids below are part of the
model's token layout and must never change.

Its normalizer reads instructions as people type them: case, punctuation, repeated spaces and the other
English spelling of a world word ("color" for the world's "colour", "centre" for its "center") are folded
onto the world's own words, inside the tokenizer, so training data, ``from_pretrained`` and every caller agree.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
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
    "a", "an", "to", "of", "and", "it", "please", "into", "at", "in", "on", "with", "colour",
)  # fmt: skip
# English spelling pairs (British, American). The normalizer maps the form the vocabulary lacks onto the one
# it has; a pair with neither form (or both) in the vocabulary is left alone.
SPELLING_VARIANTS: tuple[tuple[str, str], ...] = (
    ("colour", "color"), ("colours", "colors"), ("coloured", "colored"), ("recolour", "recolor"),
    ("recoloured", "recolored"), ("centre", "center"), ("centres", "centers"), ("grey", "gray"),
    ("greys", "grays"), ("favourite", "favorite"),
)  # fmt: skip


def spelling_map(words) -> dict[str, str]:
    """{variant a person may type: the vocabulary's own spelling} for the pairs of :data:`SPELLING_VARIANTS`."""
    words = set(words)
    out = {}
    for british, american in SPELLING_VARIANTS:
        if british in words and american not in words:
            out[american] = british
        elif american in words and british not in words:
            out[british] = american
    return out


def instruction_normalizer(words) -> normalizers.Normalizer:
    """Lowercase, punctuation and symbols to spaces ("top-left." -> "top left"), spelling variants onto
    ``words``' own spelling, runs of spaces to one, no surrounding space. Special tokens are matched before
    it runs, so ``<user>`` etc. are untouched."""
    steps = [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]|_"), " ")]
    steps += [normalizers.Replace(Regex(rf"\b{variant}\b"), word) for variant, word in sorted(spelling_map(words).items())]
    steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    return normalizers.Sequence(steps)


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # Split on whitespace, then isolate each punctuation mark (none is left after the normalizer; kept so a
    # tokenizer saved before it existed splits the same).
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )


def shapes_words() -> list[str]:
    """Sorted ordinary (non-special) words of the tokenizer: the world's, the glue words, the system prompt's."""
    return world_words(ShapesWorld.vocabulary())


def add_normalizer(backend: Tokenizer, words=None) -> Tokenizer:
    """Give a word-level ``tokenizers.Tokenizer`` the instruction normalizer for ``words`` (default: its own
    vocabulary). Also updates a tokenizer saved before the normalizer existed, its ids unchanged: pass the
    words its model was trained on when the vocabulary holds both spellings of a pair."""
    if words is None:
        words = [w for w in backend.get_vocab() if w not in SPECIAL_TOKENS]
    backend.normalizer = instruction_normalizer(words)
    return backend


def build_shapes_tokenizer() -> PreTrainedTokenizerFast:
    """Build the fixed-layout word-level tokenizer (specials 0-12, words 13..)."""
    return build_word_tokenizer(shapes_words())


def build_sudoku_tokenizer() -> PreTrainedTokenizerFast:
    """The Sudoku world's tokenizer: the same specials and glue words, the Sudoku instructions' words."""
    from rm_edit.data.sudoku import SudokuWorld

    return build_word_tokenizer(world_words(SudokuWorld.vocabulary()))


def world_words(vocabulary) -> list[str]:
    """Sorted ordinary words of a world's tokenizer: its vocabulary, the glue words, the system prompt's."""
    words = set(vocabulary) | set(COMMON_WORDS)
    system = instruction_normalizer(words).normalize_str(SYSTEM_PROMPT)
    words.update(w for w, _ in _pre_tokenizer().pre_tokenize_str(system))
    return sorted(words)


def build_word_tokenizer(words) -> PreTrainedTokenizerFast:
    """A fixed-layout word-level tokenizer over ``words`` (specials 0-12, then the words in order)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({w: len(SPECIAL_TOKENS) + i for i, w in enumerate(words)})
    if len(vocab) > MAX_VOCAB_SIZE:
        raise ValueError(f"word tokenizer vocabulary has {len(vocab)} tokens > {MAX_VOCAB_SIZE}")

    backend = Tokenizer(WordLevel(vocab, unk_token=UNK))
    add_normalizer(backend)
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
