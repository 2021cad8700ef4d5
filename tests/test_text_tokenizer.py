from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from rm_edit.data import text_tokenizer
from rm_edit.data.shapes import ShapesWorld
from rm_edit.data.text_tokenizer import SPECIAL_TOKENS, build_shapes_tokenizer, shapes_words

EXPECTED_SPECIALS = [
    "<pad>", "<unk>", "<mask>", "<eor>", "<IMAGE>", "</IMAGE>", "<uncondition>",
    "<answer>", "</answer>", "<system>", "</system>", "<user>", "</user>",
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return build_shapes_tokenizer()


def test_fixed_special_ids_and_vocab_layout(tokenizer) -> None:
    assert list(SPECIAL_TOKENS) == EXPECTED_SPECIALS
    for i, tok in enumerate(EXPECTED_SPECIALS):
        assert tokenizer.convert_tokens_to_ids(tok) == i
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.mask_token_id) == (0, 1, 2)
    assert set(tokenizer.all_special_tokens) == set(EXPECTED_SPECIALS)

    vocab = tokenizer.get_vocab()
    words = sorted(w for w in vocab if w not in EXPECTED_SPECIALS)
    assert [vocab[w] for w in words] == list(range(13, 13 + len(words)))  # sorted order from 13
    assert len(vocab) == len(tokenizer) <= 256
    for word in ("edit", "the", "image", "please", "colour", "an", "on"):
        assert word in vocab
    for word in (".", "color", "Edit"):  # punctuation, the other spelling and capitals are normalised away
        assert word not in vocab


def test_prompt_tags_are_single_tokens(tokenizer) -> None:
    text = "<system>Edit the image.</system><user>make the red circle blue</user>"
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    assert tokens == [
        "<system>", "edit", "the", "image", "</system>",
        "<user>", "make", "the", "red", "circle", "blue", "</user>",
    ]  # fmt: skip
    ids = tokenizer("<IMAGE></IMAGE><answer></answer><eor><uncondition><mask><pad>")["input_ids"]
    assert ids == [4, 5, 7, 8, 3, 6, 2, 0]


def test_unknown_words_map_to_unk(tokenizer) -> None:
    ids = tokenizer("Make the RED zebra blue!")["input_ids"]
    vocab = tokenizer.get_vocab()
    assert ids == [vocab["make"], vocab["the"], vocab["red"], 1, vocab["blue"]]  # "!" is normalised away


def test_world_instructions_have_no_unk(tokenizer) -> None:
    vocab = tokenizer.get_vocab()
    assert set(ShapesWorld.vocabulary()) <= set(vocab)
    world = ShapesWorld(split="test")
    for i in range(200):
        ids = tokenizer(world[i].instruction)["input_ids"]
        assert tokenizer.unk_token_id not in ids, world[i].instruction
        assert len(ids) == len(world[i].instruction.split())


def test_save_and_autotokenizer_round_trip(tokenizer, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.all_special_tokens == tokenizer.all_special_tokens
    assert (loaded.pad_token, loaded.unk_token, loaded.mask_token) == ("<pad>", "<unk>", "<mask>")
    texts = [
        "<system>Edit the image.</system><user>please paint the purple diamond orange</user>",
        "MOVE the green square to the bottom right, please",
        "unknown words here <IMAGE>",
    ]
    for text in texts:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    batch = loaded(texts[1:], padding=True)
    assert batch["input_ids"] == tokenizer(texts[1:], padding=True)["input_ids"]
    assert 0 in batch["input_ids"][1]  # shorter text padded with <pad> id 0


def test_vocabulary_limit_enforced(monkeypatch) -> None:
    extra = tuple(f"word{i:03d}" for i in range(300))
    monkeypatch.setattr(text_tokenizer, "COMMON_WORDS", text_tokenizer.COMMON_WORDS + extra)
    assert len(shapes_words()) > 256
    with pytest.raises(ValueError, match="256"):
        build_shapes_tokenizer()
