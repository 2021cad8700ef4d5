"""``rm-edit info [--model DIR]``: what a model folder understands, read from the folder itself: its world
(``model_index.json``'s ``world`` entry), the words of its tokenizer, and example instructions per edit type
(the folder's ``world.examples`` when it records them, else fresh edits of the world it names, kept only when
every word is one its tokenizer knows)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import CliError, SubParsers, wrap

EXAMPLES_PER_TYPE = 3


def add_info_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info", help="what a model understands: its world, its words, example instructions",
        description=wrap("Print a model folder's world, the words its tokenizer knows and a few example "
                          "instructions per edit type, read from the folder (default: the shipped model)."),
    )
    p.add_argument("--model", metavar="DIR", help="a saved pipeline folder or a shipped model's name, e.g. sudoku-rm (default: the model shipped with rm-edit)")
    return p


def default_model_folder() -> Path:
    import rm_edit
    from rm_edit.pipelines.default_model import DEFAULT_MODEL

    return Path(rm_edit.__file__).parent / "models" / DEFAULT_MODEL


def model_info(folder: Path, pipe=None) -> dict:
    """{"folder", "world", "words", "examples": {edit type: [instruction, ...]}} of a pipeline folder (read from
    its files), or of ``pipe`` already loaded from it (any folder ``from_pretrained`` takes, adapters included)."""
    from rm_edit.input_checks import known_words, unknown_words

    if pipe is not None:
        world, tokenizer = dict(pipe.config.get("world") or {}), pipe.tokenizer
    else:
        from transformers import AutoTokenizer

        index = folder / "model_index.json"
        if not index.is_file():
            raise CliError(f"model folder {folder} {'does not exist' if not folder.exists() else 'has no model_index.json'}")
        world = json.loads(index.read_text(encoding="utf-8")).get("world") or {}
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    examples = {k: list(v) for k, v in (world.get("examples") or {}).items()}
    if not examples and world.get("name") == "shapes":
        from rm_edit.data.shapes import EDIT_TYPES, ShapesWorld, ShapesWorldConfig  # what the shipped models know

        # Every edit type but the null edit (an instruction naming nothing is no example to follow).
        shown = tuple(t for t in EDIT_TYPES if t != "null")
        shapes = ShapesWorld(ShapesWorldConfig(edit_types=shown), split="test")
        examples = {t: [] for t in shown}
        for i in range(600):
            ex = shapes[i]
            chosen = examples.setdefault(ex.edit_type, [])
            if len(chosen) < EXAMPLES_PER_TYPE and ex.instruction not in chosen and not unknown_words(tokenizer, ex.instruction):
                chosen.append(ex.instruction)
    if not examples and world.get("name") == "sudoku":
        from rm_edit.data.sudoku import INSTRUCTIONS

        examples = {task: [text] for task, text in INSTRUCTIONS.items()}
    words = known_words(tokenizer) if len(tokenizer) <= 5000 else []  # an open vocabulary is not listed
    # A word the normalizer folds onto another (the other spelling) is not a word the model reads.
    words = [w for w in words if tokenizer.convert_ids_to_tokens(tokenizer(w, add_special_tokens=False)["input_ids"]) == [w]]
    return {"folder": str(folder), "world": {k: v for k, v in world.items() if k != "examples"}, "words": words,
            "vocabulary_size": len(tokenizer), "examples": examples}


def run_info(args: argparse.Namespace) -> int:
    from .options import model_folder

    info = model_info(model_folder(args.model) if args.model else default_model_folder())
    world = info["world"]
    print(f"model: {info['folder']}")
    if world:
        print("world: " + ", ".join(f"{k} {v}" for k, v in world.items()))
    else:
        print("world: none recorded (a general model: no image or word checks beyond its tokenizer)")
    words = info["words"]
    if words:
        print(f"words ({len(words)}; capitals, punctuation and the other English spelling are read as these): "
              + " ".join(words))
        from rm_edit.input_checks import world_grammar

        grammar = world_grammar(world)
        only = [w for w in words if w in grammar.description_only_words]
        if only:
            print(f"  of these, only in scene descriptions, never in an edit (refused there): {' '.join(only)}")
        if grammar.edit_verbs:
            print(f"  an instruction holds one of its edit verbs: {', '.join(grammar.edit_verbs)}")
        if world.get("name") == "shapes":
            from rm_edit.data.shapes_language import OUTSIDE_THE_LANGUAGE

            print(f"  refused, naming what to say instead: {'; '.join(OUTSIDE_THE_LANGUAGE)}")
    else:
        print(f"words: an open vocabulary ({info['vocabulary_size']:,} tokens)")
    if info["examples"]:
        print("example instructions:")
        width = max(map(len, info["examples"]))  # the kinds' column, as wide as the longest
        for kind, texts in info["examples"].items():
            for text in texts:
                print(f"  {kind:<{width}} {text}")
    return 0


# The names rm_edit.cli.lazy_command looks for.
add_parser = add_info_parser
run = run_info
