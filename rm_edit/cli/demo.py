"""``rm-edit demo``: a web page to try a model (Gradio; ``pip install -e ".[demo]"``).

Upload an image or pick an example, type an instruction (or click an example one), optionally paint where
the edit may happen; the page shows the edit beside the source, the region the model chose, the turns as a
strip, forward passes and time, a download button, and refusals as one line. Local and offline by default:
binds 127.0.0.1, no analytics, no share link unless ``--share``; uploads are limited in size and pixels and
edits are queued one at a time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .demo_edit import DEMO_MAX_PIXELS
from .options import PROG, CliError, SubParsers, positive_int, wrap

MAX_UPLOAD = "8mb"
# World images are tiny (64 px): show them filling their box, pixels sharp (the served files stay as edited).
CSS = "#source img, #result img, #overlay img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated}"
EXAMPLE_IMAGES = 3


def add_demo_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="a local web page to try a model (needs the demo extra)",
        description=wrap("Serve a web page to edit images with a model (default: the shipped one). Needs "
                          "Gradio: pip install -e \".[demo]\"."),
    )
    p.add_argument("--model", metavar="DIR", help="a saved pipeline folder or a shipped model's name, e.g. sudoku-rm (default: the model shipped with rm-edit)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=positive_int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public share link (off by default)")
    p.add_argument("--max-pixels", type=positive_int, default=DEMO_MAX_PIXELS, metavar="N",
                   help=f"refuse uploads of more pixels (default {DEMO_MAX_PIXELS:,})")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    return p


def _example_images(folder: Path, world: dict) -> list[str]:
    """A few of the world's own images (fresh test-split sources), written to ``folder``."""
    if world.get("name") != "shapes":
        return []
    from PIL import Image

    from rm_edit.data.shapes import ShapesWorld

    shapes = ShapesWorld(split="test")
    paths = []
    for i in range(EXAMPLE_IMAGES):
        path = folder / f"example_{i}.png"
        Image.fromarray(shapes[40_000 + i].source).save(path)
        paths.append(str(path))
    return paths


def build_app(pipe, model_folder: Path, max_pixels: int = DEMO_MAX_PIXELS, example_dir: Path | None = None):
    """The Gradio Blocks of the demo for ``pipe`` (loaded from ``model_folder``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from .demo_edit import demo_edit, painted_mask
    from .info import model_info

    info = model_info(model_folder, pipe)
    example_dir = Path(example_dir or tempfile.mkdtemp(prefix="rm_edit_demo_"))
    example_dir.mkdir(parents=True, exist_ok=True)
    images = _example_images(example_dir, info["world"])
    prompts = [t for texts in info["examples"].values() for t in texts[:1]]
    reflective = type(pipe.scheduler).__name__ == "ReflectiveMaskingScheduler"
    turns = int(getattr(pipe.scheduler.config, "num_turns", 2) or 2)
    history = bool(pipe.transformer.config.get("history_reference"))

    def on_click(source, instruction, brush, strategy, num_turns, use_history, paste_back):
        mask = painted_mask(brush, source.size) if source is not None else None
        kwargs = dict(strategy=strategy, use_history=use_history, paste_back=paste_back)
        if strategy == "reflective":
            kwargs["num_turns"] = int(num_turns)
        result = demo_edit(pipe, source, instruction, mask, max_pixels=max_pixels, **kwargs)
        download = None
        if result.edit is not None:
            fd, download = tempfile.mkstemp(suffix=".png", prefix="edit_", dir=example_dir)
            os.close(fd)
            result.edit.save(download)
        return result.edit, result.overlay, result.strip, result.message, download

    def on_source(source):
        return None if source is None else {"background": source, "layers": [], "composite": source}

    world = ", ".join(f"{k} {v}" for k, v in info["world"].items()) or "none recorded"
    with gr.Blocks(title="rm-edit demo") as app:
        gr.Markdown(f"## rm-edit: Reflective Masking image editing\nModel `{model_folder.name}` (world: {world}). "
                    "The model re-generates only the region the instruction is about.")
        with gr.Row():
            source = gr.Image(label="source", type="pil", image_mode="RGB", sources=["upload", "clipboard"],
                              format="png", height=300, elem_id="source")
            edit = gr.Image(label="edit", type="pil", format="png", interactive=False, height=300, elem_id="result")
            overlay = gr.Image(label="region the model chose", type="pil", format="png", interactive=False,
                               height=300, elem_id="overlay")
        with gr.Row():
            instruction = gr.Textbox(label="instruction", placeholder=prompts[0] if prompts else "what to change",
                                     scale=4, elem_id="instruction")
            run = gr.Button("Edit", variant="primary", scale=1, elem_id="run")
        status = gr.Markdown(elem_id="status")
        if prompts:
            gr.Examples([[p] for p in prompts], inputs=[instruction], label="example instructions")
        if images:
            gr.Examples([[p] for p in images], inputs=[source], label="example images")
        strip = gr.Image(label="turns: source, re-masked (red), revealed, ...", type="pil", format="png",
                         interactive=False, elem_id="strip")
        download = gr.DownloadButton("download the edit (PNG)", elem_id="download")
        with gr.Accordion("paint where the edit may happen (optional)", open=False):
            brush = gr.ImageEditor(type="numpy", image_mode="RGBA", sources=[], layers=False, format="png",
                                   brush=gr.Brush(colors=["#ff0050"], color_mode="fixed"), elem_id="brush")
        with gr.Accordion("advanced", open=False):
            strategy = gr.Radio(["reflective", "regenerate"], value="reflective" if reflective else "regenerate",
                                label="strategy")
            num_turns = gr.Slider(1, 8, value=turns, step=1, label="turns (reflective)")
            use_history = gr.Checkbox(value=history, label="History Reference")
            paste_back = gr.Checkbox(value=True, label="paste back (pixels outside the chosen region stay the source's)")
        source.change(on_source, source, brush)
        run.click(on_click, [source, instruction, brush, strategy, num_turns, use_history, paste_back],
                  [edit, overlay, strip, status, download], concurrency_limit=1)
        instruction.submit(on_click, [source, instruction, brush, strategy, num_turns, use_history, paste_back],
                           [edit, overlay, strip, status, download], concurrency_limit=1)
    app.queue(default_concurrency_limit=1, max_size=32)
    return app, example_dir


def run_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise CliError('the demo needs Gradio: pip install -e ".[demo]" (or pip install "rm-edit[demo]")') from None
    from .info import default_model_folder
    from .options import load_pipeline

    folder = Path(args.model) if args.model else default_model_folder()
    pipe = load_pipeline(args.model, args.device)
    app, example_dir = build_app(pipe, folder, args.max_pixels)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])  # no web fonts
    print(f"{PROG} demo: {folder} on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD,
               allowed_paths=[str(example_dir)], ssr_mode=False, quiet=True, theme=theme, footer_links=[],
               show_error=False, css=CSS)
    return 0


# The names rm_edit.cli.lazy_command looks for.
add_parser = add_demo_parser
run = run_demo
