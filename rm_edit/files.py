"""Writing results safely: every file goes to a temp file in the target's folder and is renamed into place,
so a reader (or a resumed run) never sees half a file; JSON in the standard dialect (no NaN / Infinity)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from PIL import Image

DEFAULT_MAX_PIXELS = 4096 * 4096  # larger inputs are refused before decoding (PIL's bomb check is 89 Mpx)


def _umask() -> int:
    current = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(current)
    return current


def write_atomic(path: Path, write: Callable[[IO], None], mode: str = "wb", **open_kwargs: Any) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, then rename it to ``path``. The file gets the
    permissions of an ordinary new file (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def image_format(path: Path) -> str:
    """PIL's format name for ``path``'s suffix; ValueError naming the file when PIL cannot write it."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported output type {Path(path).suffix or '(no suffix)'!r}")
    return fmt


def save_image(path: Path, image: Image.Image, frames: Sequence[Image.Image] = (), **save_kwargs: Any) -> None:
    """Write ``image`` (plus animation ``frames``) in the format of ``path``'s suffix, atomically."""
    fmt = image_format(path)
    if frames:
        save_kwargs = {"save_all": True, "append_images": list(frames), **save_kwargs}
    write_atomic(path, lambda fh: image.save(fh, format=fmt, **save_kwargs))


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text), mode="w", encoding="utf-8", newline="")


def plain_json(v: Any) -> Any:
    """Standard JSON: nan -> null, +-inf -> "inf"/"-inf" (browsers and jq cannot read NaN/Infinity)."""
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    if isinstance(v, dict):
        return {k: plain_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain_json(x) for x in v]
    return v


def dump_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(plain_json(obj), indent=2, ensure_ascii=False) + "\n")


def one_line(text: object) -> str:
    """A message on one line (errors from libraries span several)."""
    return " ".join(str(text).split())


def item_seed(seed: int, item_id: str) -> int:
    """Per-item seed from the id: the same edit whatever the run's order, batch size or number of processes
    (``rm-edit batch`` and ``rm-edit eval`` both seed this way)."""
    return seed + zlib.crc32(item_id.encode("utf-8"))
