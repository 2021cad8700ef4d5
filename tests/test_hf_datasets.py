"""Hugging Face datasets in (presets, --columns, save_to_disk / parquet folders, streaming) and out (export),
with tiny datasets built by `datasets` itself in each schema."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from rm_edit.data.hf_datasets import open_edit_dataset, parse_columns, resolve_columns
from rm_edit.data.hf_export import export_eval
from rm_edit.evaluation.benchmarks import load_benchmark
from rm_edit.evaluation.runner import score
from rm_edit.metrics import EditMetrics


def _img(value: int, size=(16, 16), box=None, box_value=(255, 0, 0)) -> Image.Image:
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    if box is not None:
        arr[box[1] : box[3], box[0] : box[2]] = box_value
    return Image.fromarray(arr)


def _mask(box, size=(16, 16)) -> Image.Image:
    arr = np.zeros((size[1], size[0]), np.uint8)
    arr[box[1] : box[3], box[0] : box[2]] = 255
    return Image.fromarray(arr, "L")


def magicbrush_rows(n: int = 3) -> dict:
    box = (4, 4, 8, 8)
    return {"img_id": [f"{100 + i // 2}" for i in range(n)], "turn_index": [1 + i % 2 for i in range(n)],
            "source_img": [_img(90 + i) for i in range(n)], "mask_img": [_mask(box) for _ in range(n)],
            "instruction": [f"make it red {i}" for i in range(n)],
            "target_img": [_img(90 + i, box=box) for i in range(n)]}


def _save(ds: datasets.Dataset, path: Path, fmt: str) -> Path:
    if fmt == "disk":
        ds.save_to_disk(str(path))
    else:
        path.mkdir(parents=True)
        ds.to_parquet(str(path / "part-0.parquet"))
    return path


@pytest.mark.parametrize("fmt", ["disk", "parquet"])
def test_magicbrush_schema_from_disk_and_parquet(tmp_path, fmt):
    ds = datasets.Dataset.from_dict(magicbrush_rows(), features=datasets.Features({
        "img_id": datasets.Value("string"), "turn_index": datasets.Value("int32"), "source_img": datasets.Image(),
        "mask_img": datasets.Image(), "instruction": datasets.Value("string"), "target_img": datasets.Image()}))
    bench = load_benchmark(_save(ds, tmp_path / "mb", fmt))
    assert bench.kind == "magicbrush" and bench.ids == ["100_1", "100_2", "101_1"]  # <img_id>_<turn>
    s = list(bench)[2]
    assert s.instruction == "make it red 2" and s.image_path == "101_1.png"
    assert np.asarray(s.source)[0, 0].tolist() == [92, 92, 92]
    assert np.asarray(s.target)[5, 5].tolist() == [255, 0, 0]
    assert s.mask.sum() == 16 and s.mask[4:8, 4:8].all()  # the 4x4 white box of the mask image
    assert s.captions is None


def test_magicbrush_local_captions_when_present(tmp_path):
    rows = magicbrush_rows(1)
    rows["target_local_caption"] = ["a red box"]
    s = list(load_benchmark(_save(datasets.Dataset.from_dict(rows), tmp_path / "mb", "disk")))[0]
    assert s.captions == (None, "a red box")  # the target's local caption: MagicBrush's CLIP-T text


def test_instructpix2pix_and_ultraedit_presets_and_columns(tmp_path):
    ip2p = datasets.Dataset.from_dict({
        "original_prompt": ["a grey square"], "original_image": [_img(50)], "edit_prompt": ["add red"],
        "edited_prompt": ["a grey square with red"], "edited_image": [_img(50, box=(0, 0, 2, 2))]})
    s = list(load_benchmark(_save(ip2p, tmp_path / "ip2p", "disk")))[0]
    assert s.id == "00000000" and s.instruction == "add red"  # no id column: the row number
    assert s.captions == ("a grey square", "a grey square with red") and s.target is not None and s.mask is None
    ultra = datasets.Dataset.from_dict({
        "idx": [7], "edit_prompt": ["paint it"], "source_caption": ["before"], "target_caption": ["after"],
        "source_image": [_img(10)], "target_image": [_img(20)], "mask_image": [_mask((0, 0, 16, 8))]})
    s = list(load_benchmark(_save(ultra, tmp_path / "ultra", "parquet")))[0]
    assert s.id == "7" and s.captions == ("before", "after") and s.mask.sum() == 128  # 16 * 8 masked
    assert np.asarray(s.target)[0, 0].tolist() == [20, 20, 20]  # region-based UltraEdit: target_image
    other = datasets.Dataset.from_dict({"before": [_img(1)], "after": [_img(2)], "text": ["do it"], "kind": ["add"]})
    path = _save(other, tmp_path / "other", "disk")
    with pytest.raises(ValueError, match="cannot tell which column is the source"):
        load_benchmark(path)
    s = list(load_benchmark(path, columns="source=before,target=after,instruction=text,edit_type=kind"))[0]
    assert s.instruction == "do it" and s.edit_type == "add" and np.asarray(s.target)[0, 0, 0] == 2


def test_column_errors_name_the_culprit():
    with pytest.raises(ValueError, match="unknown role 'sorce'"):
        parse_columns("sorce=a")
    with pytest.raises(ValueError, match="expected role=column"):
        parse_columns("source")
    with pytest.raises(ValueError, match=r"no column\(s\) target=nope"):
        resolve_columns(["a", "b"], columns="source=a,instruction=b,target=nope")
    with pytest.raises(ValueError, match="unknown column preset"):
        resolve_columns(["a"], preset="pix")


def test_hub_names_need_the_network():
    with pytest.raises(ValueError, match="offline"):  # HF_HUB_OFFLINE=1 in the tests
        open_edit_dataset("someone/some-edit-dataset")


def test_streaming_reads_rows_without_decoding_images(tmp_path):
    ds = datasets.Dataset.from_dict(magicbrush_rows(), features=datasets.Features({
        "img_id": datasets.Value("string"), "turn_index": datasets.Value("int32"), "source_img": datasets.Image(),
        "mask_img": datasets.Image(), "instruction": datasets.Value("string"), "target_img": datasets.Image()}))
    stream = open_edit_dataset(_save(ds, tmp_path / "mb", "parquet"), streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    first = next(iter(stream))
    assert isinstance(first["source_img"], dict) and first["source_img"]["bytes"][:4] == b"\x89PNG"


def test_eval_on_a_dataset_and_export_results_as_a_dataset(tmp_path):
    ds = datasets.Dataset.from_dict(magicbrush_rows(2))
    data = _save(ds, tmp_path / "mb", "disk")
    bench = load_benchmark(data)
    preds = tmp_path / "preds"
    preds.mkdir()
    for s in bench:
        s.target.save(preds / s.image_path)  # perfect edits
    out = tmp_path / "out"
    score(bench, preds, out, EditMetrics(), progress=False, report=False)
    export_eval(bench, out, tmp_path / "export", preds)
    back = datasets.load_from_disk(str(tmp_path / "export"))
    assert back.column_names[:8] == ["id", "instruction", "edit_type", "source", "edit", "region", "target",
                                     "edit_success"]  # edit success is the first metric column
    assert back["id"] == ["100_1", "100_2"] and back["edit_success"] == [1.0, 1.0]
    assert back["region"] == [None, None]  # scored predictions: no model region
    assert np.asarray(back[0]["edit"])[5, 5].tolist() == [255, 0, 0]
    export_eval(bench, out, tmp_path / "pq", preds, fmt="parquet")
    again = datasets.load_dataset("parquet", data_files=str(tmp_path / "pq/data.parquet"), split="train")
    assert again["target_l1"] == [0.0, 0.0]
    rows = json.loads((out / "per_sample.json").read_text())
    assert [r["id"] for r in rows] == ["100_1", "100_2"]


def test_pretokenize_streams_a_parquet_dataset(tmp_path):
    import torch
    from safetensors.torch import load_file

    from rm_edit.data.pretokenize import load_code_cache, pretokenize_dataset
    from rm_edit.vq import build_vq, encode_to_codes, image_to_tensor

    sources = [_img(40 + i) for i in range(3)]
    targets = [_img(40 + i, box=(0, 0, 8, 8)) for i in range(3)]
    ip2p = datasets.Dataset.from_dict({"original_prompt": ["p"] * 3, "original_image": sources,
                                       "edit_prompt": ["a", "b", "c"], "edited_prompt": ["q"] * 3,
                                       "edited_image": targets})
    data = _save(ip2p, tmp_path / "ip2p", "parquet")
    vq = build_vq(seed=0).eval()
    out = pretokenize_dataset(data, vq, tmp_path / "codes.safetensors", batch_size=2, progress=False)
    cache = load_code_cache(out)
    assert cache.ids == ["00000000", "00000001", "00000002"] and cache.instructions == ["a", "b", "c"]
    expected = encode_to_codes(vq, torch.cat([image_to_tensor(t) for t in targets]))
    assert (cache.target == expected).all() and load_file(str(out))["source"].dtype == torch.int16
    no_target = datasets.Dataset.from_dict({"original_image": sources, "edit_prompt": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="no target column"):
        pretokenize_dataset(_save(no_target, tmp_path / "nt", "disk"), vq, tmp_path / "x.safetensors", progress=False)
