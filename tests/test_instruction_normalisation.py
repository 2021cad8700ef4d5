"""The text tokenizer reads instructions as people type them (issue #24 item 1): case, punctuation, repeated
spaces and the other English spelling of a world word never change the token ids, so never change an edit."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer
from transformers import AutoTokenizer

import rm_edit
from rm_edit.data import shapes_language
from rm_edit.data.text_tokenizer import add_normalizer, build_shapes_tokenizer, spelling_map

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "rm_edit" / "models").glob("shapes-*/tokenizer"))


@pytest.fixture(scope="module")
def tokenizer():
    return build_shapes_tokenizer()


def _tokens(tok, text):
    return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])


def test_normalised_by_hand(tokenizer) -> None:
    assert _tokens(tokenizer, "  Put a LARGE blue circle,   at the Top-Left. ") == \
        ["put", "a", "large", "blue", "circle", "at", "the", "top", "left"]
    assert _tokens(tokenizer, "Change the color of the yellow square to purple!") == \
        ["change", "the", "colour", "of", "the", "yellow", "square", "to", "purple"]
    assert _tokens(tokenizer, "move it to the centre") == ["move", "it", "to", "the", "center"]
    # a word containing a variant is not rewritten: "colorful" stays one unknown word
    assert _tokens(tokenizer, "colorful") == ["<unk>"]


def test_spelling_map_goes_to_the_vocabularys_own_spelling() -> None:
    assert spelling_map({"colour", "center"}) == {"color": "colour", "centre": "center"}
    assert spelling_map({"color", "centre"}) == {"colour": "color", "center": "centre"}
    assert spelling_map({"colour", "color"}) == {}  # both spellings known: nothing to fold
    assert spelling_map({"red"}) == {}


# Slot values that make sense on assets/example.png (a large green square, a small green triangle, a large
# yellow square on beige; an add makes a shape of a new colour and kind); any other placeholder the world adds
# takes its first value.
FILL = {"ref": "green square", "group": "squares", "colour": "green", "kind": "circle", "new_colour": "red",
        "new_kind": "circle", "size": "large", "anchor": "bottom left", "direction": "down"}


def _filled(template: str) -> str:
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    return template.format(**{f: FILL.get(f) or shapes_language._SLOT_VALUES[f][0] for f in fields})


def _world_instructions() -> list[str]:
    """Every instruction template of the world, filled (captions are not instructions)."""
    return [_filled(t) for kind, templates in shapes_language.TEMPLATES.items() if kind != "caption" for t in templates]


def _readable(tok, texts: list[str]) -> list[str]:
    """The texts every word of which ``tok`` knows (a folder trained before the world grew knows fewer)."""
    return [t for t in texts if tok.unk_token_id not in tok(t, add_special_tokens=False)["input_ids"]]


def _variants(text: str) -> list[str]:
    return [text, text[:1].upper() + text[1:] + ".", text.upper() + ".", text.title() + "!", f"  {text}  "]


def test_every_template_with_capitals_and_full_stop_same_ids(tokenizer, tmp_path) -> None:
    tokenizer.save_pretrained(tmp_path)
    loaded = [tokenizer, AutoTokenizer.from_pretrained(tmp_path)]
    loaded += [AutoTokenizer.from_pretrained(folder) for folder in SHIPPED]
    assert len(loaded) == 2 + 4
    texts = _world_instructions()
    assert len(_readable(loaded[0], texts)) == len(texts)  # the builder knows every word of its world
    for tok in loaded:
        readable = _readable(tok, texts)
        assert len(readable) >= 21  # the classic five edit types' templates, at least
        for text in readable:
            ids = [tok(f"<system>Edit the image.</system><user>{v}</user>")["input_ids"] for v in _variants(text)]
            assert all(i == ids[0] for i in ids), text


def test_every_template_with_capitals_and_full_stop_same_edit() -> None:
    """The shipped default's codes on a fixed scene: each template plain, capitalised with a full stop, shouted."""
    pipe = rm_edit.load_default_pipeline()
    image = Image.open(ROOT / "assets" / "example.png")
    texts = _readable(pipe.tokenizer, _world_instructions())
    assert len(texts) >= 21
    prompts = [v for t in texts for v in _variants(t)[:3]]
    out = pipe([image] * len(prompts), prompts, generator=[torch.Generator().manual_seed(0)] * len(prompts))
    for k, text in enumerate(texts):
        a, b, c = (out.codes[3 * k + j] for j in range(3))
        assert torch.equal(a, b) and torch.equal(a, c), text


def test_updating_a_saved_tokenizer_keeps_its_ids(tmp_path) -> None:
    """The shipped folders were updated by add_normalizer: ids of every word unchanged."""
    for folder in SHIPPED:
        saved = Tokenizer.from_file(str(folder / "tokenizer.json"))
        vocab = saved.get_vocab()
        again = add_normalizer(Tokenizer.from_file(str(folder / "tokenizer.json")))
        assert again.get_vocab() == vocab
        assert saved.encode("Recolor the red square green.").ids == [vocab[w] for w in
                                                                     ("recolour", "the", "red", "square", "green")]
