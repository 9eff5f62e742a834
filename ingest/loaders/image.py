"""Images (PNG, JPEG, TIFF, BMP, WebP) through OCR: one page per frame (a multi-page TIFF has several).

Only the header is read before the size check: an image (or any frame of it) over `MAX_PIXELS`
fails before a pixel is decoded, so a decompression bomb (a small file declaring huge
dimensions) costs no memory. Pillow's own bomb check (at 2 x its MAX_IMAGE_PIXELS) is reported
the same way."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from kbqa.ingest.config import IngestSettings
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page

_DEFAULTS = IngestSettings()  # the settings' defaults (ingest/config.py), declared there only
MAX_PIXELS = 60_000_000  # larger images (decompression bombs included) fail before they are decoded
MAX_FRAMES = 500


def _check_size(path: Path, size: tuple[int, int], frame: int | None = None) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        where = f"frame {frame + 1} " if frame else ""
        raise LoadError(
            path, f"image {where}too large to OCR ({width:,} x {height:,} pixels > {MAX_PIXELS:,}, ingest.loaders.image.MAX_PIXELS; a decompression bomb?)"
        )


def load_image(path: Path, data: bytes, ocr: str = _DEFAULTS.ocr) -> list[Page]:
    """OCR each frame of an image file; LoadError for an unreadable or oversized image."""
    import numpy as np
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from kbqa.ingest.page_ocr import MAX_SIDE, read_image_pages

    try:
        with warnings.catch_warnings():  # Pillow warns past 89 M pixels; MAX_PIXELS below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:
        raise LoadError(path, f"image too large to OCR (over {MAX_PIXELS:,} pixels, ingest.loaders.image.MAX_PIXELS; a decompression bomb?): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise LoadError(path, "not an image this loader can read (unknown or damaged format)") from exc
    _check_size(path, image.size)

    def frames():  # decoded one at a time, as OCR reaches them: one frame in memory, not 500
        for n, frame in enumerate(ImageSequence.Iterator(image)):
            if n >= MAX_FRAMES:
                raise LoadError(path, f"more than {MAX_FRAMES} frames (ingest.loaders.image.MAX_FRAMES)")
            _check_size(path, frame.size, n)  # frames of a TIFF can each declare their own size
            rgb = frame.convert("RGB")
            if max(rgb.size) > MAX_SIDE:
                rgb.thumbnail((MAX_SIDE, MAX_SIDE))
            yield np.asarray(rgb)

    return read_image_pages(path, frames(), ocr)
