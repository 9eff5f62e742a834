"""Images (PNG, JPEG, TIFF, BMP, WebP) through OCR: one page per frame (a multi-page TIFF has several)."""
from __future__ import annotations

import io
from pathlib import Path

from ingest.errors import LoadError
from ingest.loaders.base import Page

MAX_PIXELS = 60_000_000  # larger images (decompression bombs included) fail before they are decoded
MAX_FRAMES = 500


def load_image(path: Path, data: bytes, ocr: str = "auto") -> list[Page]:
    import numpy as np
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from ingest.page_ocr import MAX_SIDE, read_image_pages

    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise LoadError(path, "not an image this loader can read (unknown or damaged format)") from exc
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise LoadError(path, f"image too large to OCR ({width} x {height} pixels > {MAX_PIXELS:,})")
    frames = []
    for n, frame in enumerate(ImageSequence.Iterator(image)):
        if n >= MAX_FRAMES:
            raise LoadError(path, f"more than {MAX_FRAMES} frames")
        rgb = frame.convert("RGB")
        if max(rgb.size) > MAX_SIDE:
            rgb.thumbnail((MAX_SIDE, MAX_SIDE))
        frames.append(np.asarray(rgb))
    return read_image_pages(path, frames, ocr)
