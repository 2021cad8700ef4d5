"""``rm-edit eval``: evaluate a model (or another tool's images) on a benchmark; ``rm-edit eval compare``.

Registered in ``rm_edit.cli.COMMANDS`` through ``lazy_command`` (``add_parser`` / ``run`` below). Heavy
modules (torch, the pipeline) are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

_EPILOG = """\
benchmarks (--benchmark):
  shapes-test                 the shapes world's test split (exact targets and masks; --n, default 256)
  PATH/                       PIE-Bench (mapping_file.json + annotation_images/), MagicBrush
                              (edit_sessions.json + images/, or one folder per sample), or a folder with
                              manifest.jsonl; prefix pie-bench: / magicbrush: / manifest: to force one
  PATH.jsonl                  an rm-edit manifest (predictions at <id>.png, as `rm-edit batch` writes)
  DATASET/ or hf:NAME         a Hugging Face dataset: save_to_disk folder, parquet folder, or hub name (online);
                              columns by --preset (magicbrush, instructpix2pix, ultraedit; else detected) or --columns

output (--out): images/, samples.jsonl (resumable), per_sample.csv/.json, summary.md/.json, report.html

examples:
  rm-edit eval --benchmark shapes-test --n 64 --model models/shapes-rm-her --history --out runs/eval-her
  rm-edit eval --benchmark shapes-test --n 64 --model models/shapes-rm --turns-sweep 1,2,4,8 --out runs/sweep
  rm-edit eval --benchmark ~/PIE-Bench --predictions ~/other-tool/out --out runs/pie-other
  rm-edit eval compare --models rm_edit/models --n 256 --out runs/compare
  accelerate launch --num_processes 4 -m rm_edit.cli eval --benchmark ~/PIE-Bench --out runs/pie
  rm-edit eval --benchmark data/magicbrush_test --preset magicbrush --out runs/mb --export-dataset runs/mb_ds

scores follow each benchmark's own script: PIE-Bench crops a side-by-side [source | edit] prediction to its
bottom-right corner; MagicBrush L1/L2 on [0, 1] images at the ground truth's size (single-turn setting: each
turn from its given input). Metric weights: --*-weights files, else each library's download-and-cache
(torchvision / open_clip / timm on the Hugging Face cache); --offline or HF_HUB_OFFLINE=1 uses caches only;
a weight that cannot be had is n/a with its reason.
"""


def _turns(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"turn counts must be >= 1, got {text!r}")
    return values


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    from rm_edit.cli.options import add_sampler_options, positive_int

    p = subparsers.add_parser(
        "eval", help="evaluate a model or another tool's edits on a benchmark (or `eval compare`)",
        description="Edit every sample of a benchmark with --model (default: the shipped model) and score "
                    "the edits, or score images made by any tool with --predictions DIR (same relative paths "
                    "as the benchmark's images, any image suffix). `rm-edit eval compare --models DIR --n N "
                    "--out DIR` runs the shapes comparison (base, SFT, RM, RM+HER, decay, paste-back) on "
                    "pipeline folders shapes-base, shapes-sft, shapes-rm, shapes-rm-her. Interrupted runs "
                    "resume in the same --out.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", choices=("compare",), metavar="compare",
                   help="run the shapes comparison instead (needs --models, --n, --out)")
    p.add_argument("--benchmark", metavar="NAME|PATH", help="shapes-test or a benchmark path (see below)")
    p.add_argument("--predictions", type=Path, metavar="DIR", help="score these images instead of running a model")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created; resumable)")
    p.add_argument("--n", type=positive_int, metavar="N", help="first N samples (shapes-test default 256)")
    p.add_argument("--models", type=Path, metavar="DIR", help="compare: folder with the shapes-* pipelines")
    p.add_argument("--turns-sweep", type=_turns, metavar="1,2,3",
                   help="test-time scaling: run with each number of reflective turns and plot")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                   help="images per model call (default 8); results do not depend on it")
    p.add_argument("--use-benchmark-masks", action="store_true",
                   help="let only the benchmark's mask change (default: the model chooses the region)")
    m = p.add_argument_group("metric weights (local files only; missing ones are reported n/a)")
    m.add_argument("--clip-weights", metavar="FILE", help="CLIP ViT-L/14 (CLIP score); or $RM_EDIT_CLIP_WEIGHTS")
    m.add_argument("--clip-i-weights", metavar="FILE", help="CLIP ViT-B/32 (CLIP-I); or $RM_EDIT_CLIP_I_WEIGHTS")
    m.add_argument("--dino-weights", metavar="FILE", help="DINO ViT-S/16 (MagicBrush DINO); or $RM_EDIT_DINO_WEIGHTS")
    m.add_argument("--structure-weights", metavar="FILE",
                   help="DINO ViT-B/8 (PIE-Bench structure distance); or $RM_EDIT_STRUCTURE_WEIGHTS")
    d = p.add_argument_group("Hugging Face datasets")
    d.add_argument("--preset", choices=("magicbrush", "instructpix2pix", "ultraedit"),
                   help="column preset of a dataset benchmark (default: detected from its columns)")
    d.add_argument("--columns", metavar="ROLE=COL,...",
                   help="dataset columns by role: source, instruction, target, mask, id, edit_type, "
                        "source_caption, target_caption, turn (overrides the preset)")
    d.add_argument("--split", metavar="NAME", help="dataset split (default: test, else train)")
    d.add_argument("--export-dataset", type=Path, metavar="DIR",
                   help="also write the results as a datasets dataset (source, instruction, edit, region, metrics)")
    d.add_argument("--export-format", choices=("disk", "parquet"), default="disk",
                   help="save_to_disk folder (default) or DIR/data.parquet")
    p.add_argument("--offline", action="store_true",
                   help="never use the network (also: HF_HUB_OFFLINE=1): metric weights and datasets from caches only")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_sampler_options(p, refuse_unknown=False)  # scores every item as the benchmark words it
    return p


def metric_network_mode(flag: bool) -> bool:
    """Offline for metric weights and datasets: ``--offline`` / ``HF_HUB_OFFLINE``, or a host that cannot reach
    the hub in 2 s (said once, here, instead of every library's retries)."""
    from rm_edit.metrics.weights import network_reachable, offline_mode

    if offline_mode(flag):
        return True
    if not network_reachable():
        print("rm-edit: note: the Hugging Face hub is unreachable (2 s): metric weights and datasets from "
              "caches only (as with --offline)", file=sys.stderr)
        return True
    return False


def run_eval(args: argparse.Namespace) -> int:
    from rm_edit.cli.options import CliError, load_pipeline, resolve_device, sampler_kwargs

    progress = not args.no_progress
    offline = metric_network_mode(args.offline)
    if args.action == "compare":
        if args.models is None or args.n is None:
            raise CliError("eval compare needs --models DIR and --n N")
        if args.benchmark or args.predictions or args.model:
            raise CliError("eval compare takes --models, not --benchmark / --predictions / --model")
        from ..distributed import launched_world_size

        if launched_world_size() > 1:
            raise CliError("eval compare runs in one process; drop accelerate launch")
        from .compare import compare_shapes

        from .runner import build_metrics
        from .summary import metrics_reported

        device = resolve_device(args.device)
        metrics, _, _ = build_metrics(args.clip_weights, args.clip_i_weights, args.dino_weights, device=device,
                                      download=True, offline=offline, only=metrics_reported("shapes"))
        result = compare_shapes(args.models, args.n, args.out, metrics=metrics, batch_size=args.batch_size,
                                seed=args.seed, progress=progress, device=device)
        print(result["markdown"])
        print(f"wrote {args.out / 'compare.md'}, {args.out / 'index.html'}")
        return 0

    if args.benchmark is None:
        raise CliError("--benchmark NAME|PATH is required")
    if args.models is not None:
        raise CliError("--models is for `eval compare`; use --model DIR")
    from ..distributed import Shard
    from .benchmarks import load_benchmark
    from .runner import build_metrics, run_model, score, turns_sweep
    from .sharded import run_sharded

    benchmark = load_benchmark(args.benchmark, args.n, columns=args.columns, preset=args.preset, split=args.split,
                               offline=offline)
    device = resolve_device(args.device)
    shard = Shard.from_env()
    from .summary import metrics_reported

    metrics, structure, reasons = build_metrics(args.clip_weights, args.clip_i_weights, args.dino_weights,
                                                args.structure_weights, device=device, download=True, offline=offline,
                                                only=metrics_reported(benchmark.kind))
    common: dict[str, Any] = dict(metrics=metrics, structure=structure, structure_reason=reasons.get("structure_x1e3"),
                                  progress=progress)
    if shard.active and args.turns_sweep:
        raise CliError("--turns-sweep runs in one process; drop accelerate launch")
    if args.predictions is not None:
        if args.model is not None or args.turns_sweep:
            raise CliError("--predictions scores existing images: drop --model / --turns-sweep")
        run_sharded(lambda b, o, **kw: score(b, args.predictions, o, **kw), benchmark, args.out, shard=shard,
                    predictions_dir=args.predictions, report=not args.no_report, **common)
    else:
        options = sampler_kwargs(args)
        if args.turns_sweep and args.strategy == "regenerate":
            raise CliError("--turns-sweep needs --strategy reflective")
        if args.turns_sweep:  # a sweep of reflective turns (the pipeline refuses a model not RM post-trained)
            options["strategy"] = "reflective"
        if args.turns_sweep and args.num_turns is not None:
            raise CliError("--turns-sweep sets the number of turns; drop --num-turns")
        pipe = load_pipeline(args.model, args.device, options, args.compile)
        model = args.model or "shipped default"
        if args.turns_sweep:
            turns_sweep(pipe, benchmark, args.out, options, args.turns_sweep, report=not args.no_report,
                        batch_size=args.batch_size, seed=args.seed, use_benchmark_masks=args.use_benchmark_masks,
                        model=model, **common)
            print((args.out / "turns_sweep.md").read_text(encoding="utf-8"))
            return 0
        run_sharded(lambda b, o, **kw: run_model(pipe, b, o, options, **kw), benchmark, args.out, shard=shard,
                    batch_size=args.batch_size, seed=args.seed, use_benchmark_masks=args.use_benchmark_masks,
                    report=not args.no_report, model=model, label=f"{Path(model).name} ({args.strategy or 'its sampler'}, "
                          f"paste-back {'on' if options['paste_back'] else 'off'})", **common)
    if not shard.is_main:
        return 0
    if args.export_dataset is not None:
        from rm_edit.data.hf_export import export_eval

        print(f"wrote {export_eval(benchmark, args.out, args.export_dataset, args.predictions, args.export_format)}")
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    if benchmark.errors:
        print(f"{len(benchmark.errors)} sample(s) skipped: see {args.out / 'errors.jsonl'}")
    return 0


# The names rm_edit.cli.lazy_command looks for.
add_parser = add_eval_parser
run = run_eval
