"""Lumina-DiMOO's text tokenizer: loading it without remote code, checking it, and a stand-in for tests.

Lumina-DiMOO's inference code runs only the prompt text through the tokenizer (``<system>`` ... ``</user>``
and ``<uncondition>``); the image and answer tags are spliced in as ids (:mod:`rm_edit.layout`).
"""

from __future__ import annotations

import json
from pathlib import Path

from rm_edit.layout import LUMINA_DIMOO, TokenLayout

__all__ = ["LUMINA_STAND_IN_SPECIAL_TOKENS", "build_stand_in_tokenizer", "check_tokenizer_layout", "load_lumina_tokenizer"]

# Special tokens of a word-level stand-in for LLaDA's tokenizer at the ids the layout uses. The names of
# [MASK] and the tags are Lumina-DiMOO's; the end-of-row and pad names, and the ids of the system / user
# tags (which the layout never reads: they are only tokenised), are this project's choices.
LUMINA_STAND_IN_SPECIAL_TOKENS: dict[str, int] = {
    "<|mdm_mask|>": LUMINA_DIMOO.mask_token_id,  # 126336
    "<|eor|>": LUMINA_DIMOO.end_of_row_id,  # 126084
    "<|pad|>": LUMINA_DIMOO.pad_token_id,  # 126339
    "<IMAGE>": LUMINA_DIMOO.image_begin_id,  # 126349
    "</IMAGE>": LUMINA_DIMOO.image_end_id,  # 126350
    "<uncondition>": LUMINA_DIMOO.uncondition_id,  # 126351
    "<answer>": LUMINA_DIMOO.answer_begin_id,  # 126354
    "</answer>": LUMINA_DIMOO.answer_end_id,  # 126355
    "<system>": 126340,
    "</system>": 126341,
    "<user>": 126342,
    "</user>": 126343,
}
_STAND_IN_WORDS = (
    "a", "add", "and", "background", "black", "blue", "cat", "change", "colour", "color", "dog", "green",
    "hat", "it", "make", "of", "red", "remove", "replace", "sky", "the", "to", "turn", "white", "with", "yellow",
)  # fmt: skip



def build_stand_in_tokenizer(extra_words: tuple[str, ...] | list[str] = (), special_tokens: dict[str, int] | None = None):
    """A word-level fast tokenizer whose special tokens sit at Lumina-DiMOO's ids (tests and GPU checks only).

    Ordinary words get ids 1.. (0 is ``<unk>``); the vocabulary is sparse, which WordLevel allows.
    ``special_tokens`` replaces :data:`LUMINA_STAND_IN_SPECIAL_TOKENS` (tests of other tokenizers).
    """
    specials = LUMINA_STAND_IN_SPECIAL_TOKENS if special_tokens is None else special_tokens
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")])
    words = {w for w, _ in split.pre_tokenize_str(LUMINA_DIMOO.system_prompt.lower())}
    words |= set(_STAND_IN_WORDS) | {w.lower() for w in extra_words}
    vocab = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(sorted(words))}}
    if len(vocab) >= 126000:
        raise ValueError("too many stand-in words")
    vocab.update(specials)
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = split
    # Already in the vocabulary, so they keep their ids; normalized=False matches the tags verbatim.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<|pad|>", mask_token="<|mdm_mask|>",
        additional_special_tokens=[t for t in specials if t not in ("<|pad|>", "<|mdm_mask|>")],
    )
    check_tokenizer_layout(tokenizer, LUMINA_DIMOO)
    return tokenizer


def load_lumina_tokenizer(folder: str | Path):
    """The text tokenizer at a checkpoint's root, without remote code.

    ``AutoTokenizer`` first; when the config names a class that needs remote code (``auto_map`` / a custom
    ``tokenizer_class``), fall back to a plain fast tokenizer over ``tokenizer.json``.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # AutoTokenizer reads the root config.json (model_type llada) and warns
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as exc:  # remote-code refusals are ValueError; unknown classes vary by version
        first_error = exc
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer_json = folder / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise ValueError(
            f"{folder}: the tokenizer config needs remote code or cannot be loaded by AutoTokenizer "
            f"({type(first_error).__name__}: {first_error}), and there is no tokenizer.json to fall back on. "
            "Put the checkpoint's fast tokenizer (tokenizer.json, as Lumina-DiMOO ships it) in the folder, or save "
            "a transformers tokenizer there with tokenizer.save_pretrained(folder); remote code is never run."
        ) from first_error
    kwargs = {}
    special_map = folder / "special_tokens_map.json"
    if special_map.is_file():
        for key, value in json.loads(special_map.read_text()).items():
            if key == "additional_special_tokens":
                kwargs[key] = [v["content"] if isinstance(v, dict) else v for v in value]
            else:
                kwargs[key] = value["content"] if isinstance(value, dict) else value
    return PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), **kwargs)


def check_tokenizer_layout(tokenizer, layout: TokenLayout = LUMINA_DIMOO) -> None:
    """Refuse a tokenizer that is not the model's: ``<uncondition>``, the one tag with a known id that
    Lumina-DiMOO's inference code runs through the tokenizer (the no-instruction guidance prompt), must be that
    single id. The image and answer tags are never tokenised (their ids are spliced in), so their spelling in a
    tokenizer is not checked; the system / user tags may tokenise to anything (they are used as tokenised)."""
    expected = {"<uncondition>": layout.uncondition_id}
    wrong = {}
    for text, token_id in expected.items():
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if got != [token_id]:
            wrong[text] = got
    if wrong:
        raise ValueError(
            f"tokenizer does not match the {layout.name!r} layout: expected single ids "
            f"{ {k: expected[k] for k in wrong} }, got {wrong}"
        )
