"""Refusing what the model cannot read, saying when there is nothing to change, and `rm-edit info`
(issue #24 items 2 and 5)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import rm_edit
from rm_edit.cli import main
from rm_edit.cli.edit import _EDIT_EPILOG
from rm_edit.cli import _MAIN_EPILOG

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "example.png"


@pytest.fixture(scope="module")
def pipe():
    return rm_edit.load_default_pipeline()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rm-edit: error: "), err
    return err[0]


def test_pipeline_refuses_unknown_words_naming_the_nearest(pipe) -> None:
    image = PIL.Image.open(EXAMPLE)
    with pytest.raises(ValueError, match=r"^'sky' is not a word this model knows; nothing close") as exc:
        pipe(image, "make the sky blue")
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match=r"'Colr' is not a word this model knows; did you mean .*'colour'"):
        pipe(image, "change the Colr of the yellow square to purple")
    with pytest.raises(ValueError, match=r"'undo', 'sqare' are not words .* 'square'.* for 'sqare'"):
        pipe(image, ["turn the green square red", "undo the sqare"])
    # A word an edit may not hold is never suggested: "bigger" is nearest "beige", a background's name.
    with pytest.raises(ValueError, match=r"^'bigger' is not a word this model knows; nothing close"):
        pipe(image, "make the green square bigger")
    # A word people type for one of the world's is answered with that word, not its nearest spelling ("bit").
    with pytest.raises(ValueError, match=r"^'Big' is not a word this model knows; did you mean 'large'\? "):
        pipe(image, "make the Big green square red")
    with pytest.raises(ValueError, match=r"^'middle' is not a word this model knows; did you mean 'center'\? "):
        pipe(image, "move the yellow square to the middle")
    for empty in ("   ", "...", " ?! "):
        with pytest.raises(ValueError, match="empty|has no words"):
            pipe(image, empty)
    out = pipe(image, "make the sky blue", allow_unknown_words=True, output_type="latent")
    assert out.images.shape[0] == 1


def test_edit_cli_refuses_and_writes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "out.png"
    assert main(["edit", str(EXAMPLE), "undo", "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "'undo' is not a word this model knows" in line and "--allow-unknown-words" in line
    assert not out.exists()
    assert main(["edit", str(EXAMPLE), " . ", "-o", str(out)]) == 2
    assert "has no words" in _one_error_line(capsys)
    assert main(["edit", str(EXAMPLE), "undo", "-o", str(out), "--allow-unknown-words"]) == 0
    assert out.is_file()


def test_edit_says_nothing_to_change_when_the_region_is_empty(tmp_path, capsys) -> None:
    """An all-black --mask lets nothing change: the region comes back empty and the CLI says so (exit 0)."""
    black = tmp_path / "none.png"
    PIL.Image.new("L", (64, 64), 0).save(black)
    out = tmp_path / "out.png"
    assert main(["edit", str(EXAMPLE), "turn the green square red", "-o", str(out), "--mask", str(black)]) == 0
    printed = capsys.readouterr().out
    assert "0 re-masked, 0 of 64 image codes changed, 0 of 4096 pixels repainted" in printed
    assert "nothing to change" in printed and "wrote them back" not in printed
    assert np.array_equal(np.asarray(PIL.Image.open(out)), np.asarray(PIL.Image.open(EXAMPLE).convert("RGB")))


def test_edit_prints_codes_and_repainted_pixels_matching_the_saved_mask(tmp_path, capsys) -> None:
    out, mask = tmp_path / "out.png", tmp_path / "mask.png"
    assert main(["edit", str(EXAMPLE), "Turn the green square red.", "-o", str(out), "--save-mask", str(mask)]) == 0
    printed = capsys.readouterr().out
    painted = int((np.asarray(PIL.Image.open(mask)) > 0).sum())
    # The large green square is 2x2 cells of 8 px: 4 codes re-masked and changed; the repainted pixels are the
    # saved mask's.
    assert "4 re-masked, 4 of 64 image codes changed" in printed and f", {painted} of 4096 pixels repainted" in printed
    assert "nothing to change" not in printed


def test_codes_written_back_as_they_were_are_no_edit(tmp_path, capsys) -> None:
    """The square is green already: the default re-masks 2 of its codes and writes them back unchanged. That is no
    edit: an empty region, not one pixel repainted (before, the 2 codes' decoded pixels were pasted back)."""
    out = tmp_path / "out.png"
    assert main(["edit", str(EXAMPLE), "make the green square green", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ", 2 re-masked, 0 of 64 image codes changed, 0 of 4096 pixels repainted" in printed
    assert "nothing to change" in printed and "it re-masked 2 code(s) and wrote them back as they were" in printed
    assert np.array_equal(np.asarray(PIL.Image.open(out)), np.asarray(PIL.Image.open(EXAMPLE).convert("RGB")))


def test_batch_writes_an_error_row_for_unknown_words_and_goes_on(tmp_path, capsys) -> None:
    manifest = tmp_path / "m.jsonl"
    rows = [{"id": "good", "source": str(EXAMPLE), "instruction": "Turn the green square red."},
            {"id": "sky", "source": str(EXAMPLE), "instruction": "make the sky blue"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--no-progress"]) == 1
    assert (out / "good.png").is_file() and not (out / "sky.png").exists()
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["sky"] and "'sky' is not a word this model knows" in errors[0]["reason"]


def test_batch_warnings_name_the_item_and_refusals_do_not_stop_it(tmp_path, capsys) -> None:
    """A small image is edited with a warning naming its item (not "image 1" of some call); a non-square one and
    an instruction with a caption-only word are error rows; the batch goes on."""
    small, wide = tmp_path / "small.png", tmp_path / "wide.png"
    PIL.Image.open(EXAMPLE).convert("RGB").resize((32, 32), PIL.Image.Resampling.BICUBIC).save(small)
    PIL.Image.open(EXAMPLE).convert("RGB").crop((0, 0, 64, 40)).save(wide)
    rows = [{"id": "good", "source": str(EXAMPLE), "instruction": "turn the green square red"},
            {"id": "tiny", "source": str(small), "instruction": "turn the green square red"},
            {"id": "wide", "source": str(wide), "instruction": "turn the green square red"},
            {"id": "dark", "source": str(EXAMPLE), "instruction": "turn the green square dark red"},
            {"id": "absent", "source": str(EXAMPLE), "instruction": "remove the blue circle"}]
    manifest, out = tmp_path / "m.jsonl", tmp_path / "out"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["batch", str(manifest), "--out", str(out), "--no-progress"]) == 1
    printed = capsys.readouterr()
    err = printed.err
    assert ("nothing to change in 1 of 3 (written as given): absent: the image holds no blue circle (it holds a green "
            "square, a green triangle and a yellow square)") in printed.out
    assert (out / "absent.png").is_file()
    assert "warning: item 'tiny' is 32x32, smaller than the 64x64 images the shapes model was trained on" in err
    assert (out / "good.png").is_file() and (out / "tiny.png").is_file()
    assert not (out / "wide.png").exists() and not (out / "dark.png").exists()
    errors = {e["id"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert set(errors) == {"wide", "dark"}
    assert "the image reads as 10x6 cells, not the 8x8" in errors["wide"] and "'dark' is a word" in errors["dark"]


def test_info_reads_world_words_and_examples_from_the_folder(capsys) -> None:
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "world: image_size 64, name shapes" in printed
    words = re.search(r"^words \((\d+);.*?: (.*)$", printed, re.M)
    listed = words.group(2).split()
    assert int(words.group(1)) == len(listed) and {"colour", "square", "center", "recolour"} <= set(listed)
    assert "color" not in listed and "." not in listed  # folded by the normalizer, not words of their own
    # The backgrounds' names: known words, refused in an edit, and said so.
    assert ("  of these, only in scene descriptions, never in an edit (refused there): background beige dark gray "
            "light off pale slate white\n") in printed
    assert "  an instruction holds one of its edit verbs: add, change, delete, drag, draw, erase, make, move" in printed
    # Examples of every edit type the shipped models were trained on but the null edit (the language's own four
    # were missing: "make all the triangles red" was nowhere to be read).
    examples = re.findall(r"^  ([a-z-]+) +(.+)$", printed.split("example instructions:\n")[1], re.M)
    assert {kind for kind, _ in examples} == {"recolour", "remove", "add", "replace", "move", "partial-reference",
                                              "plural", "replace-kind-colour", "relative-move"}
    assert all(set(text.split()) <= set(listed) for _, text in examples)
    assert "  refused, naming what to say instead: two edits in one instruction ('... and ...'); " in printed


def test_info_of_a_folder_without_a_world(tmp_path, capsys) -> None:
    from tests.conftest import make_tiny_pipeline

    make_tiny_pipeline().save_pretrained(tmp_path)
    assert main(["info", "--model", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "world: none recorded" in printed and "example instructions" not in printed
    assert main(["info", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_help_examples_are_edits_the_default_model_does(pipe) -> None:
    """Every `rm-edit edit` example of the help, run on its image: all words known, and the model edits."""
    lines = [l for l in (_MAIN_EPILOG + _EDIT_EPILOG).splitlines() if l.strip().startswith("rm-edit edit ")]
    assert len(lines) >= 4
    calls = [shlex.split(l.split("#")[0])[2:4] for l in lines]
    images = [PIL.Image.open(ROOT / path) for path, _ in calls]
    out = pipe(images, [text for _, text in calls], output_type="latent")
    for (path, text), region in zip(calls, out.edit_region_tokens):
        assert region.any(), text


def test_an_instruction_without_an_edit_verb_is_refused_naming_the_nearest(pipe, tmp_path, capsys) -> None:
    """"colour" is a shapes-world word only as a noun ("change the colour of ..."): "colour the red shape blue"
    erased the shape 11 times in 12 before this check. With no edit verb it is refused in one line (the nearest
    verb put in place of its first word), the other spelling too; an instruction holding a verb still edits."""
    image = PIL.Image.open(EXAMPLE)
    with pytest.raises(ValueError, match=r"^'colour the green square red' has no edit verb this model knows; "
                                         r"did you mean 'recolour the green square red'\?"):
        pipe(image, "colour the green square red")
    with pytest.raises(ValueError, match=r"^'green square red' has no edit verb this model knows \(its verbs: add, "):
        pipe(image, "green square red")
    out = tmp_path / "out.png"
    assert main(["edit", str(EXAMPLE), "Color the green square red.", "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "did you mean 'recolour the green square red'?" in line and "--allow-unknown-words" in line
    assert not out.exists()
    assert main(["edit", str(EXAMPLE), "please change the green square to red", "-o", str(out)]) == 0
    assert out.is_file()


def test_sudoku_instructions_need_fix_or_fill() -> None:
    from rm_edit.input_checks import InputChecks, WorldGrammar
    from rm_edit.data.text_tokenizer import build_sudoku_tokenizer

    checks = InputChecks({"name": "sudoku"}, build_sudoku_tokenizer())
    assert checks.grammar.edit_verbs == ("fill", "fix") and checks.grammar.max_edit_verbs == 2
    checks.check_prompts(["Fix the mistakes.", "fill in the empty cells"])
    with pytest.raises(ValueError, match=r"^'the mistakes' has no edit verb this model knows \(its verbs: fill, fix;"):
        checks.check_prompts(["the mistakes"])
    # A folder's world entry may name its verbs itself (then no slots are required).
    own = InputChecks({"name": "sudoku", "edit_verbs": ["fix"]}, build_sudoku_tokenizer())
    assert own.grammar == WorldGrammar(("fix",))  # every other field its default: no slots, no limit
    # Words far from the model's: its three instructions are named.
    with pytest.raises(ValueError, match=r"^'solve', 'puzzle' are not words this model knows; nothing close among its "
                                         r"words \(its instructions: 'fix the mistakes', 'fill in the empty cells', 'fill "
                                         r"in the empty cells and fix the mistakes'\) \(instruction 'solve the puzzle';"):
        checks.check_prompts(["solve the puzzle"])
    with pytest.raises(ValueError, match=r"has no edit verb this model knows \(its verbs: fix;"):
        own.check_prompts(["fill in the empty cells"])


def test_a_verb_without_what_it_always_names_or_two_edits_are_refused_and_every_world_instruction_passes() -> None:
    """Every shapes "add" (and "put a") names a size, colour, kind and place; every "move" names a shape; so an
    instruction so opened that leaves one out is refused (the default added a shape of either size, or nothing, or in
    the wrong place, 7 of 12 times without a size). Each shapes instruction asks one edit, so two at once are refused
    (the default did neither: "nothing to change"). No instruction the world itself writes is refused."""
    from rm_edit.data.shapes import EDIT_TYPES, ShapesWorld, ShapesWorldConfig
    from rm_edit.data.sudoku import INSTRUCTIONS
    from rm_edit.data.text_tokenizer import build_shapes_tokenizer, build_sudoku_tokenizer
    from rm_edit.input_checks import InputChecks

    checks = InputChecks({"name": "shapes"}, build_shapes_tokenizer())
    refused = {
        "add a red circle at the top": r"^'add a red circle at the top' names no size \(large, small\): every 'add a'",
        "put a red circle in the bottom left": r"names no size \(large, small\): every 'put a' instruction",
        "Move it left.": r"^'Move it left\.' names no shape \(blue, circle, circles, .*every 'move'",
        "put a red circle": r"^'put a red circle' names no place \(bottom, center, left, right, top\): every 'put a'",
        "paint the circle": r"names no new colour \(blue, green, orange, purple, red, yellow\): every 'paint the'",
    }
    for text, message in refused.items():
        with pytest.raises(ValueError, match=message):
            checks.check_prompts([text])
    with pytest.raises(ValueError, match=r"^'Turn the green square red and remove the yellow square\.' asks 2 edits at once "
                                         r"\(turn, remove\): each instruction this model knows asks one edit; run them one "
                                         r"after another"):
        checks.check_prompts(["Turn the green square red and remove the yellow square."])
    checks.check_prompts(["Add a small red circle at the top.", "move the circle left", "put the red circle on the left",
                          "remove all the circles", "please take the red circle away"])
    world = ShapesWorld(ShapesWorldConfig(edit_types=EDIT_TYPES), split="test")
    checks.check_prompts([world[i].instruction for i in range(3000)])
    InputChecks({"name": "sudoku"}, build_sudoku_tokenizer()).check_prompts(list(INSTRUCTIONS.values()))


def test_words_known_only_from_scene_descriptions_are_refused(tmp_path, capsys) -> None:
    """The backgrounds' names are words of the captions only, never of an edit: "turn the green square dark red"
    made the square red and painted dark-slate patches beside it (exit 0). Refused in one line, nothing written;
    "grey" (read as "gray") too; "blue" of "pale blue" is a shape colour and still edits."""
    out = tmp_path / "out.png"
    for text, words in [("turn the green square dark red", "'dark' is a word"),
                        ("Make the green square grey.", "'gray' is a word"),
                        ("make the background white", "'background', 'white' are words"),
                        ("turn the green square light blue", "'light' is a word")]:
        assert main(["edit", str(EXAMPLE), text, "-o", str(out)]) == 2, text
        line = _one_error_line(capsys)
        assert line == (f"rm-edit: error: {words} this model knows only from scene descriptions, never in an edit "
                        "(a shape is red, green, blue, yellow, purple or orange; the background (light gray, beige, "
                        f"dark slate, off white, pale blue) is never edited; instruction {text!r}; "
                        "allow_unknown_words=True or --allow-unknown-words edits anyway)"), line
        assert not out.exists()
    assert main(["edit", str(EXAMPLE), "turn the green square blue", "-o", str(out)]) == 0 and out.is_file()


def test_two_requests_joined_by_and_or_two_directions_are_refused(tmp_path, capsys) -> None:
    """No shapes edit holds "and" (only captions do) and every move names one place or one direction. Asked anyway,
    "move the green square left and up" and "move the green square up left" moved the square to the top, smeared a
    small square at the left and moved the triangle too; "turn the green square red and the blue circle yellow" did
    neither (exit 0 each). Refused in one line, nothing written; one place of two words ("the top left") still edits."""
    out = tmp_path / "out.png"
    joined = ("joins two requests with 'and': each instruction this model knows asks one edit of one shape or one "
              "group ('the squares', 'the red shapes'), in one direction; run them one after another, each on the "
              "previous output (allow_unknown_words=True or --allow-unknown-words edits anyway)")
    places = ("which is no one place: a shape goes to one place or one step in one direction (top left, top, top "
              "right, left, center, right, bottom left, bottom, bottom right, up, down) (allow_unknown_words=True or "
              "--allow-unknown-words edits anyway)")
    for text, reason in [("move the green square left and up", joined),
                         ("Turn the green square red and the blue circle yellow.", joined),
                         ("make the red and green squares blue", joined),
                         ("move the green square up left", f"names 'up left', {places}"),
                         ("Move the green square to the right, down.", f"names 'right down', {places}")]:
        assert main(["edit", str(EXAMPLE), text, "-o", str(out)]) == 2, text
        assert _one_error_line(capsys) == f"rm-edit: error: {text!r} {reason}"
        assert not out.exists()
    assert main(["edit", str(EXAMPLE), "move the yellow square to the top right", "-o", str(out)]) == 0
    assert out.is_file()


def test_an_image_that_is_no_scene_of_the_world_is_refused(pipe, tmp_path, capsys) -> None:
    """A shapes model reads any image as shapes of its colours: a grayscale copy of the example, a photo-like image
    and noise were edited with exit 0 ("remove the purple square" removed a gray one). A gray picture (every shape
    of the world has a colour) and an image far from the decoding of its own codes are refused in one line, nothing
    written; a JPEG and a resized copy of a scene edit."""
    import io

    rng = np.random.default_rng(0)
    example = PIL.Image.open(EXAMPLE).convert("RGB")
    smooth = np.linspace(0, 255, 64)[None, :, None] * np.ones((64, 1, 3)) + rng.normal(0, 12, (64, 64, 3))
    out = tmp_path / "out.png"
    read_back = (r"rm-edit: error: image 0 is no shapes scene: decoded from the codes the model reads, it differs from "
                 r"the input by \d+\.\d of 255 a pixel on average \(the world's scenes: under 2, a JPEG of one at "
                 r"quality 10: under 10, the limit: 12\); a photo or a grayscale copy\?")
    gray = re.escape("rm-edit: error: image 0 is gray: every shape of the shapes world has a colour, so its model "
                     "would read gray shapes as colours it guesses; give it the colour picture")
    for name, image, message in [
            ("gray.png", example.convert("L"), gray), ("gray_rgb.png", example.convert("L").convert("RGB"), gray),
            ("photo.png", PIL.Image.fromarray(smooth.clip(0, 255).astype(np.uint8)), read_back),
            ("noise.png", PIL.Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), read_back)]:
        image.save(tmp_path / name)
        assert main(["edit", str(tmp_path / name), "remove the purple square", "-o", str(out)]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert re.fullmatch(message, err[-1]), err
        assert not out.exists()
    buffer = io.BytesIO()
    example.save(buffer, "JPEG", quality=30)
    (tmp_path / "q30.jpg").write_bytes(buffer.getvalue())
    example.resize((200, 200), PIL.Image.BILINEAR).save(tmp_path / "large.png")
    for name in ("q30.jpg", "large.png"):
        assert main(["edit", str(tmp_path / name), "turn the green square red", "-o", str(out)]) == 0, name
        edited = np.asarray(PIL.Image.open(out).convert("RGB").resize((64, 64), PIL.Image.NEAREST)).astype(int)
        assert (np.abs(edited[4, 4] - [220, 30, 30]) < 60).all() and edited[4, 4, 0] > 150, edited[4, 4]  # red now
        out.unlink()
    with pytest.warns(UserWarning, match="image 0 is no shapes scene"):
        pipe(PIL.Image.open(tmp_path / "noise.png"), "remove the purple square", allow_unknown_words=True,
             output_type="latent")


def test_an_add_or_move_to_a_taken_place_or_off_the_picture_is_refused(pipe, tmp_path, capsys) -> None:
    """Every add and move of the world goes to a free place, and a relative move one place over inside the picture.
    Asked otherwise, the default added a small green square at the top right for "add a large green square at the
    top left", moved the square to the top for "move the green square to the top left", and changed 9 codes for
    "move the green square left". The example (read by hand): a large green square at the top left, a small green
    triangle at the center, a large yellow square at the bottom right."""
    from rm_edit.data.shapes_scene import Scene, Shape, read_scene
    from rm_edit.vq import encode_to_codes

    prepared = pipe.image_processor.preprocess([PIL.Image.open(EXAMPLE)])
    codes = encode_to_codes(pipe.vqvae, prepared.pixels)[0]
    assert read_scene(codes) == Scene("beige", (Shape("square", "green", "large", "top left"),
                                                Shape("triangle", "green", "small", "center"),
                                                Shape("square", "yellow", "large", "bottom right")))
    free = "free places: top, top right, left, right, bottom left, bottom"
    refused = {"Add a large green square at the top left.": f"the top left already holds the green square ({free})",
               "move the green square to the top left": f"the top left already holds the green square ({free})",
               "put a small red circle in the center": f"the center already holds the green triangle ({free})",
               "move the green square left": "the green square is at the top left: it cannot go further left",
               "shift the yellow square one step down": "the yellow square is at the bottom right: it cannot go further down"}
    out = tmp_path / "out.png"
    for text, reason in refused.items():
        assert main(["edit", str(EXAMPLE), text, "-o", str(out)]) == 2, text
        assert _one_error_line(capsys) == f"rm-edit: error: {text!r} does not fit image 0: {reason}"
        assert not out.exists()
    # Free places, and a move of an ambiguous reference (two squares: a null edit the model leaves alone), edit.
    for text in ("move the green square right", "add a small red circle at the top", "move the square up"):
        assert main(["edit", str(EXAMPLE), text, "-o", str(out)]) == 0, text
    capsys.readouterr()


def test_no_instruction_the_world_writes_asks_for_a_taken_place() -> None:
    """3,000 test edits of all ten types: only null edits (a shape the scene does not hold) may name a taken place."""
    from rm_edit.data.shapes import EDIT_TYPES, ShapesWorld, ShapesWorldConfig
    from rm_edit.data.shapes_requests import instruction_problem
    from rm_edit.data.text_tokenizer import build_shapes_tokenizer
    from rm_edit.input_checks import normalized_words

    tokenizer, world = build_shapes_tokenizer(), ShapesWorld(ShapesWorldConfig(edit_types=EDIT_TYPES), split="test")
    refused = [(e.edit_type, e.instruction) for e in map(world.__getitem__, range(3000))
               if instruction_problem(world.codes(e.source_scene), normalized_words(tokenizer, e.instruction))]
    assert refused and all(kind == "null" for kind, _ in refused), refused
