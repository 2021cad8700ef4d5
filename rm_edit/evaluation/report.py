"""A self-contained HTML report of an evaluation run, for reading in a browser.

``report.html`` plus ``report_files/`` (PNG thumbnails, plots) next to it; no external assets, a few lines
of inline JavaScript to sort the per-sample table by any column (click a header; again to reverse). Top:
the summary table and plots; then one row per sample: source, edit, difference heat map, ground-truth mask
overlay, change map coloured by agreement with the mask (TP green, FP red, FN blue, TN grey), the region
the model chose (when known) and the metrics. A line under the title reports how many images loaded.
"""

from __future__ import annotations

import html
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..metrics import DEFAULT_THRESHOLD, change_map
from .benchmarks import fit_prediction
from .scaling_plots import agg_pyplot, save_figure
from .success_table import success_by_type_html

SUCCESS_DEFINITION = (
    "Edit success: inside the pixels where the target differs from the source, the edit is at least 4x closer to "
    "the target than the source was (mean |edit - target| <= 0.25 x mean |source - target|), and at most 1% of the "
    "pixels more than 2 px from that change (5x5 dilation) differ from the source by more than 0.15 (0-1 scale, "
    "any channel). Per sample: yes / no, with both figures (changed error ratio, far changed fraction).")

_TARGET_CELL = "<target-cell>"  # a placeholder no escaped text can hold ("<" is escaped)
THUMB_MAX = 256  # thumbnails are downscaled to this side at most; small images are shown enlarged
TP, FP, FN = (30, 190, 60), (230, 40, 40), (40, 100, 255)
MASK_TINT = (255, 170, 0)

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:middle}
th{white-space:normal;max-width:7em;overflow-wrap:break-word}
td.t,th.t{text-align:left;min-width:7em;max-width:22em;overflow-wrap:break-word}
td.inst{min-width:16em}
.scroll{overflow-x:auto;max-width:100%;border:1px solid #eee}
dl.glossary dt{font-weight:bold;margin-top:.4em}
dl.glossary dd{margin-left:1.5em;max-width:60em}
th.s{cursor:pointer;background:#f2f2f2;user-select:none}
th.s:hover{background:#e4e4ff}
th[data-dir=asc]::after{content:" \\25B2"}
th[data-dir=desc]::after{content:" \\25BC"}
td.img{padding:1px}
img.px{image-rendering:pixelated;width:72px;height:auto;display:block;cursor:zoom-in}
img.px.big{width:288px;cursor:zoom-out}
.na{color:#999}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
#img-status.bad{color:#c00;font-weight:bold}
.plots img{max-width:100%;margin:6px 0}
"""

_JS = """
function cellKey(td){const v=td.getAttribute('data-v');if(v===null||v===''){return null;}
  const x=Number(v);return isNaN(x)?v.toLowerCase():x;}
function sortTable(th){
  const table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex;
  const dir=th.getAttribute('data-dir')==='asc'?'desc':'asc';
  for(const h of th.parentNode.cells){h.removeAttribute('data-dir');}
  th.setAttribute('data-dir',dir);
  const rows=Array.from(body.rows),sign=dir==='asc'?1:-1;
  rows.sort(function(a,b){const x=cellKey(a.cells[col]),y=cellKey(b.cells[col]);
    if(x===null&&y===null){return 0;} if(x===null){return 1;} if(y===null){return -1;}
    if(typeof x===typeof y){return (x<y?-1:x>y?1:0)*sign;} return (typeof x==='number'?-1:1)*sign;});
  for(const r of rows){body.appendChild(r);}
}
document.addEventListener('DOMContentLoaded',function(){
  for(const th of document.querySelectorAll('th.s')){th.addEventListener('click',function(){sortTable(th);});}
  for(const im of document.querySelectorAll('img.px')){im.addEventListener('click',function(){im.classList.toggle('big');});}
});
window.addEventListener('load',function(){
  const imgs=Array.from(document.images),ok=imgs.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;
  const el=document.getElementById('img-status');
  el.setAttribute('data-total',imgs.length);el.setAttribute('data-loaded',ok);
  el.textContent=ok+' of '+imgs.length+' images loaded';
  if(imgs.length>ok){el.className='bad';}
});
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


# What each column means and which script's convention it follows (shown for the columns a report has).
GLOSSARY: dict[str, str] = {
    "edit_success": SUCCESS_DEFINITION,
    "structure_x1e3": "PIE-Bench structure distance x1e3: MSE between DINO ViT-B/8 key self-similarity matrices "
                      "(block 11, CLS included) of source and edit; images as 0-255 values, short side resized to "
                      "224 (aspect kept), ImageNet mean/std - as PIE-Bench's script.",
    "pie_psnr": "PIE-Bench background PSNR: both images zeroed inside the mask (its 1-px border included), PSNR "
                "of the whole images. Predictions wider than high are first cropped to their bottom-right corner "
                "([source | edit] side by side), as PIE-Bench's evaluate.py does for every metric.",
    "pie_lpips_x1e3": "PIE-Bench background LPIPS (SqueezeNet) x1e3 on the mask-zeroed images.",
    "pie_mse_x1e4": "PIE-Bench background MSE x1e4 on the mask-zeroed images (0-1 scale).",
    "pie_ssim_x1e2": "PIE-Bench background SSIM x1e2 on the mask-zeroed images.",
    "clip_score": "CLIP score: 100 x max(cosine, 0), CLIP ViT-L/14, edit vs the target caption (else the "
                  "instruction) - torchmetrics / PIE-Bench units.",
    "clip_score_edit_region": "CLIP score of the edit multiplied by the mask (PIE-Bench's 'edited' CLIP).",
    "target_l1": "L1 to the target: mean |edit - target| over pixels and channels on 0-1 images; the prediction "
                 "resized (bicubic) to the target's size first - MagicBrush's convention.",
    "target_l2": "L2 to the target: mean squared error on 0-1 images (MagicBrush's L2 is this MSE).",
    "target_psnr": "PSNR of the edit against the target (0-1 range).",
    "clip_i": "MagicBrush CLIP-I: cosine of OpenAI CLIP ViT-B/32 image embeddings (CLIP's own preprocessing) of "
              "edit and target.",
    "dino": "MagicBrush DINO: cosine of DINO ViT-S/16 CLS features (bicubic resize 256, centre crop 224, ImageNet "
            "mean/std) of edit and target.",
    "clip_t": "MagicBrush CLIP-T: raw cosine (not x100) between the edit's CLIP ViT-B/32 embedding and the "
              "target caption. Scores are per turn from the turn's given input (MagicBrush's single-turn setting).",
    "loc_iou": "Pixel localization: |edit - source| > 0.1 (max over channels) against the mask.",
    "tok_precision": "Token localization: the re-masked tokens against the tokens that truly change.",
    "tok_edit_accuracy": "Share of the truly changed tokens the edit got exactly right.",
    # The rest of the columns a report can show (shapes / manifest runs, the verdict's figures, cost).
    "changed_error_ratio": "Edit success, first figure: mean |edit - target| / mean |source - target| over the "
                           "pixels where the target differs from the source; success needs <= 0.25.",
    "far_changed_fraction": "Edit success, second figure: share of the pixels more than 2 px from the true change "
                            "(5x5 dilation) that differ from the source by more than 0.15; success needs <= 0.01.",
    "loc_precision": f"Pixel localization precision: of the pixels the edit changed (|edit - source| > "
                     f"{DEFAULT_THRESHOLD:g}, max over channels), the share inside the ground-truth mask.",
    "loc_recall": f"Pixel localization recall: of the mask's pixels, the share the edit changed (> {DEFAULT_THRESHOLD:g}).",
    "loc_leakage": f"Leakage: share of the pixels outside the mask that the edit changed (> {DEFAULT_THRESHOLD:g}).",
    "bg_psnr": "Background PSNR (dB, 0-1 images) over the pixels outside the mask only (area-normalised; "
               "PIE-Bench's own convention is pie_psnr).",
    "bg_ssim": "Background SSIM over the pixels outside the mask only.",
    "bg_lpips": "Background LPIPS over the pixels outside the mask only (lower: closer to the source).",
    "tok_recall": "Token localization recall: of the tokens that truly change (source vs target codes), the "
                  "share the model re-masked.",
    "replayed": "Re-masked positions revealed back to the very code they held (a wasted re-mask), per image.",
    "forward_passes": "Transformer forward passes per model call (each covers the batch and its guidance "
                      "branches): the cost.",
}


def _tip(key: str) -> str:
    """A column header's hover text: its glossary entry (else its key)."""
    return GLOSSARY.get(key, key)


def glossary_html(keys: Sequence[str]) -> str:
    items = [(k, GLOSSARY[k]) for k in keys if k in GLOSSARY]
    if not items:
        return ""
    return "<dl class='glossary'>" + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items) + "</dl>"


# ---- pictures ------------------------------------------------------------------------------------------
def _thumb(image: Image.Image) -> Image.Image:
    if max(image.size) > THUMB_MAX:
        image = image.copy()
        image.thumbnail((THUMB_MAX, THUMB_MAX), Image.Resampling.LANCZOS)
    return image


def heat_map(edit: Image.Image, source: Image.Image) -> Image.Image:
    """Per-pixel max-channel |edit - source| (0..1) through the inferno colour map."""
    import matplotlib

    lut = (matplotlib.colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    d = change_map(np.array(edit.convert("RGB")), np.array(source.convert("RGB"))).numpy()
    return Image.fromarray(lut[np.clip(np.round(d * 255), 0, 255).astype(np.uint8)])


def mask_overlay(source: Image.Image, mask: np.ndarray, colour=MASK_TINT, alpha: float = 0.55) -> Image.Image:
    base = np.asarray(source.convert("RGB"), dtype=np.float32)
    tint = np.array(colour, dtype=np.float32)
    out = np.where(mask[..., None], (1 - alpha) * base + alpha * tint, base)
    return Image.fromarray(out.round().astype(np.uint8))


def agreement_map(edit: Image.Image, source: Image.Image, mask: np.ndarray | None,
                  threshold: float = DEFAULT_THRESHOLD) -> Image.Image:
    """Changed pixels (> threshold) vs the mask: TP green, FP red, FN blue, TN the dimmed source.
    Without a mask: changed pixels white."""
    changed = change_map(np.array(edit.convert("RGB")), np.array(source.convert("RGB"))).numpy() > threshold
    grey = np.asarray(source.convert("L"), dtype=np.float32) * 0.35 + 40
    out = np.repeat(grey[..., None], 3, axis=2)
    if mask is None:
        out[changed] = 255
    else:
        out[changed & mask], out[changed & ~mask], out[~changed & mask] = TP, FP, FN
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


# ---- tables --------------------------------------------------------------------------------------------
def _fmt(v: Any) -> tuple[str, str]:
    """(display text, sort key) of a cell value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '<span class="na">n/a</span>', ""
    if isinstance(v, float):
        if math.isinf(v):
            return ("inf" if v > 0 else "-inf"), ("1e308" if v > 0 else "-1e308")
        return (f"{v:.4g}" if abs(v) < 1000 else f"{v:.1f}"), repr(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v), str(v)
    return _esc(v), _esc(v)


def summary_table_html(summary_rows: Sequence[tuple[str, Mapping[str, Any]]], columns: Sequence[Sequence[str]]) -> str:
    from .summary import format_value

    head = "<tr><th class='t s'>run</th>" + "".join(
        f"<th class='s' title='{_esc(_tip(key))}'>{_esc(label)}</th>" for key, label in columns) + "</tr>"
    body = []
    for name, summary in summary_rows:
        stats, why = summary.get("metrics", {}), summary.get("unavailable", {})
        cells = []
        for key, _ in columns:
            st = stats.get(key)
            text = format_value(st)
            v = "" if not st or st.get("mean") is None else repr(st["mean"])
            title = f" title='{_esc(why[key])}'" if key in why else f" title='{_esc(key)}'"
            cls = " class='na'" if text == "n/a" else ""
            cells.append(f"<td data-v='{v}'{title}{cls}>{_esc(text)}</td>")
        body.append(f"<tr><td class='t' data-v='{_esc(name)}'>{_esc(name)}</td>{''.join(cells)}</tr>")
    return f"<div class='scroll'><table class='summary'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table></div>"


def write_report(out_path: str | Path, benchmark, rows: Sequence[Mapping[str, Any]], predictions_dir: str | Path | None,
                 *, title: str, summary_rows: Sequence[tuple[str, Mapping[str, Any]]] = (),
                 columns: Sequence[Sequence[str]] = (), notes: Sequence[str] = (), plots: Sequence[str | Path] = (),
                 links: Sequence[tuple[str, str]] = (), regions_dir: str | Path | None = None,
                 turns_dir: str | Path | None = None,
                 threshold: float = DEFAULT_THRESHOLD, max_rows: int | None = None,
                 rows_caption: str = "Per sample", progress: bool = False) -> Path:
    """Write ``out_path`` and its ``<stem>_files/`` folder; ``rows`` are per-sample rows (``id``, ``image``
    relative to ``predictions_dir``, metrics); the benchmark supplies sources and masks."""
    out_path = Path(out_path)
    assets = out_path.parent / f"{out_path.stem}_files"
    if assets.exists():
        shutil.rmtree(assets)
    assets.mkdir(parents=True)
    rel = assets.name

    def img(im: Image.Image, name: str, alt: str) -> str:
        im = _thumb(im)
        im.save(assets / name, format="PNG")
        return f"<img class='px' src='{rel}/{name}' width='{im.width}' height='{im.height}' alt='{_esc(alt)}'>"

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>",
             f"<style>{_CSS}</style><script>{_JS}</script></head><body>", f"<h1>{_esc(title)}</h1>",
             "<p id='img-status'>images loading...</p>"]
    if links:
        parts.append("<ul>" + "".join(f"<li><a href='{_esc(href)}'>{_esc(text)}</a></li>" for text, href in links) + "</ul>")
    if summary_rows and columns:
        parts += ["<h2>Summary</h2>", summary_table_html(summary_rows, columns)]
    success = success_by_type_html(summary_rows)
    if success:
        parts += ["<h2>Edit success by edit type</h2>", success, f"<p class='legend'>{_esc(SUCCESS_DEFINITION)}</p>"]
    glossary = glossary_html([k for k, _ in columns] + (
        ["changed_error_ratio", "far_changed_fraction"] if any(k == "edit_success" for k, _ in columns) else []))
    if glossary:
        parts += ["<h2>Glossary</h2>", glossary]
    if notes:
        parts.append("<ul class='notes'>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    ok_rows = [r for r in rows if r.get("status", "ok") == "ok" and r.get("image")]
    by_type = plot_by_edit_type(ok_rows, assets / "by_edit_type.png", columns) if ok_rows else None
    plots = [*plots]
    if plots or by_type is not None:
        parts.append("<h2>Plots</h2><div class='plots'>")
        if by_type is not None:
            parts.append(f"<div><img src='{rel}/{by_type.name}' alt='by edit type'></div>")
        for p in plots:
            p = Path(p)
            shutil.copyfile(p, assets / p.name)
            parts.append(f"<div><img src='{rel}/{_esc(p.name)}' alt='{_esc(p.stem)}'></div>")
        parts.append("</div>")

    if max_rows is not None:
        ok_rows = ok_rows[:max_rows]
    if ok_rows and benchmark is not None and predictions_dir is not None:
        predictions_dir = Path(predictions_dir)
        by_id = {r["id"]: r for r in ok_rows}
        refs = [ref for ref in benchmark.refs if ref.id in by_id]
        metric_cols = [(k, label) for k, label in columns if any(r.get(k) is not None for r in ok_rows)]
        if metric_cols and metric_cols[0][0] == "edit_success":  # the verdict's two figures right after it
            metric_cols[1:1] = [("changed_error_ratio", "Changed err ratio ↓ (≤ 0.25)"),
                                ("far_changed_fraction", "Far changed ↓ (≤ 0.01)")]
        extra = [k for k in ("edit_type",) if any(r.get(k) is not None for r in ok_rows)]
        show_regions = regions_dir is not None
        body, targets = [], []  # targets: each row's target picture (None: the sample has none)
        for n, sample in enumerate(tqdm(benchmark.iter_refs(refs), total=len(refs), desc="report", disable=not progress)):
            row = by_id[sample.id]
            try:
                from ..data.manifest import load_image

                edit = load_image(predictions_dir / row["image"])
            except ValueError:
                continue
            source = sample.source.convert("RGB")
            edit = fit_prediction(benchmark.kind, edit, source)[0]  # what was scored (PIE-Bench side-by-side crop)
            stem = f"{n:05d}"
            cells = [img(source, f"{stem}_source.png", "source"), img(edit, f"{stem}_edit.png", "edit"),
                     img(heat_map(edit, source), f"{stem}_diff.png", "difference")]
            targets.append(img(sample.target.convert("RGB"), f"{stem}_target.png", "target")
                           if sample.target is not None else None)
            cells.append(img(mask_overlay(source, sample.mask), f"{stem}_mask.png", "ground-truth mask")
                         if sample.mask is not None else "<span class='na'>no mask</span>")
            cells.append(img(agreement_map(edit, source, sample.mask, threshold), f"{stem}_change.png", "change map"))
            if show_regions:
                rp = Path(regions_dir) / row["image"]
                cells.append(img(mask_overlay(source, np.asarray(Image.open(rp).convert("L")) > 127, (255, 0, 200)),
                                 f"{stem}_region.png", "model region") if rp.is_file() else "<span class='na'>-</span>")
            if turns_dir is not None:  # shown at its own size (a strip of boards, one per turn)
                tp = Path(turns_dir) / row["image"]
                if tp.is_file():
                    shutil.copyfile(tp, assets / f"{stem}_turns.png")
                cells.append(f"<img src='{rel}/{stem}_turns.png' alt='turn by turn'>" if tp.is_file()
                             else "<span class='na'>-</span>")
            tds = [f"<td data-v='{n}'>{n}</td>", f"<td class='t' data-v='{_esc(sample.id)}'>{_esc(sample.id)}</td>",
                   f"<td class='t inst' data-v='{_esc(sample.instruction)}'>{_esc(sample.instruction)}</td>"]
            for k in extra:
                text, key = _fmt(row.get(k))
                tds.append(f"<td class='t' data-v='{key}'>{text}</td>")
            tds += [f"<td class='img'>{c}</td>" for c in cells[:2]] + [_TARGET_CELL] + [
                f"<td class='img'>{c}</td>" for c in cells[2:]]
            for k, _ in metric_cols:
                text, key = _fmt(row.get(k))
                if k == "edit_success" and row.get(k) is not None:
                    text = "yes" if row[k] else "no"
                why = (row.get("reasons") or {}).get(k)
                tip = f" title='{_esc(why)}'" if why else ""
                tds.append(f"<td data-v='{key}'{tip}>{text}</td>")
            body.append("<tr>" + "".join(tds) + "</tr>")
        # A target column when the benchmark has targets (a sample without one says so).
        has_target = any(t is not None for t in targets)
        body = [row.replace(_TARGET_CELL, (f"<td class='img'>{t}</td>" if t is not None
                                         else "<td class='img'><span class='na'>no target</span></td>")
                            if has_target else "", 1) for row, t in zip(body, targets)]
        pics = (["source", "edit"] + (["target"] if has_target else []) + ["|edit - source|", "GT mask", "change vs mask"]
                + (["model region"] if show_regions else [])
                + (["start, then each turn (re-masked cells in red)"] if turns_dir is not None else []))
        head = ("<tr><th class='s'>#</th><th class='t s'>id</th><th class='t s'>instruction</th>"
                + "".join(f"<th class='t s'>{_esc(k.replace('_', ' '))}</th>" for k in extra)
                + "".join(f"<th>{_esc(p)}</th>" for p in pics)
                + "".join(f"<th class='s' title='{_esc(_tip(k))}'>{_esc(label)}</th>" for k, label in metric_cols)
                + "</tr>")
        legend = (f"<p class='legend'>change map (|edit - source| &gt; {threshold:g}):"
                  f"<span style='background:rgb{TP}'></span>changed, in mask (TP)"
                  f"<span style='background:rgb{FP}'></span>changed, outside (FP)"
                  f"<span style='background:rgb{FN}'></span>unchanged, in mask (FN)"
                  "<span style='background:#555'></span>unchanged, outside (TN). "
                  "Heat map: inferno, 0 (black) to 1 (white-yellow). Click a header to sort.</p>")
        parts += [f"<h2>{_esc(rows_caption)} ({len(body)})</h2>", legend,
                  f"<div class='scroll'><table class='samples'><thead>{head}</thead><tbody>{''.join(body)}</tbody>"
                  "</table></div>"]
    parts.append("</body></html>\n")
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(out_path)
    return out_path


# ---- plots ---------------------------------------------------------------------------------------------
# Per edit type, one panel each: (title, the first of these keys the rows hold, y-axis label).
BY_TYPE_PANELS = (
    ("edit success", ("edit_success",), "success rate"),
    ("localization", ("loc_iou", "tok_precision"), "IoU / precision"),
    ("background", ("bg_psnr", "pie_psnr"), "PSNR (dB)"),
)


def _finite(v: Any) -> bool:
    return isinstance(v, bool) or (isinstance(v, (int, float)) and math.isfinite(v))


def by_edit_type_means(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, dict[str, float]]]:
    """Per panel: (panel title, metric key, edit type -> mean of the finite values); rows without an edit type
    are "all". Panels whose metric no row has are left out."""
    panels = []
    for title, keys, _ in BY_TYPE_PANELS:
        key = next((k for k in keys if any(_finite(r.get(k)) for r in rows)), None)
        if key is None:
            continue
        groups: dict[str, list[float]] = {}
        for r in rows:
            if _finite(r.get(key)):
                groups.setdefault(str(r.get("edit_type") or "all"), []).append(float(r[key]))
        panels.append((title, key, {t: sum(v) / len(v) for t, v in sorted(groups.items())}))
    return panels


def plot_by_edit_type(rows: Sequence[Mapping[str, Any]], out_png: str | Path,
                      columns: Sequence[Sequence[str]] = ()) -> Path | None:
    """Bars per edit type of edit success, localization and background figures (every run's report has it);
    None when no row has any of them."""
    panels = by_edit_type_means(rows)
    if not panels:
        return None
    plt = agg_pyplot()
    labels = dict((k, label) for k, label in columns)
    ylabels = {title: y for title, _, y in BY_TYPE_PANELS}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), squeeze=False)
    for ax, (title, key, means) in zip(axes[0], panels):
        types = list(means)
        ax.bar(range(len(types)), [means[t] for t in types], color="#4a78c2")
        ax.set_xticks(range(len(types)), types, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{title}: {labels.get(key, key)}", fontsize=10)
        ax.set_ylabel(ylabels[title])
        ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out_png, "by edit type")
