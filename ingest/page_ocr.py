"""Which pages to read with OCR, and reading them (setting ``ingest.ocr``).

- ``never``: the text layer only. A page whose layer is not language fails, with the reason.
- ``always``: every page is rendered and read with OCR (its text layer when OCR finds nothing).
- ``auto``: a page is read with OCR when its text layer is missing, too small for the images on
  the page, or implausible (`ingest.textlayer`). An implausible layer is compared with what OCR
  reads, and the more plausible text is kept: a layer in a language that merely scores low
  survives, an old OCR layer full of noise does not.

Pages are rendered with pypdfium2 at ``dpi``, their longer side capped at `MAX_SIDE` pixels.
"""

from __future__ import annotations

import re
from pathlib import Path

from tqdm import tqdm

from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders.base import Page
from kbqa.ingest.textlayer import SUSPECT_BELOW, damage, plausibility, repair

MODES = ("auto", "always", "never")
MAX_SIDE = 2400
MIN_CHARS = 20  # a layer with fewer visible characters counts as missing
CHARS_PER_IMAGE_PAGE = 200  # a page mostly covered by images needs at least this many characters
AGREE = 0.85  # an implausible layer this close to what OCR reads is kept
_MARGIN = 0.1  # ... and so is one that scores this much higher than the OCR text


_TABLE_RULES = re.compile(r"(?m)^\|(?:\s*:?-{3,}:?\s*\|)+\s*$|\|")  # separator lines and cell bars


def _visible(text: str) -> int:
    return sum(1 for c in text if not c.isspace())


def _image_share(page) -> float:
    import pypdfium2.raw as raw

    width, height = page.get_size()
    area = 0.0
    for obj in page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE,), max_depth=4):
        left, bottom, right, top = obj.get_bounds()
        area += max(0.0, right - left) * max(0.0, top - bottom)
    return min(1.0, area / max(1.0, width * height))


def ocr_reason(text: str, image_share: float, mode: str) -> str | None:
    """Why a page is read with OCR under `mode`, or None. Pure: the caller measures the page."""
    if mode == "always":
        return "ocr = always"
    if mode == "never":
        return None
    if _visible(text) < MIN_CHARS:
        return "no text layer"
    if image_share > 0.5 and _visible(text) < CHARS_PER_IMAGE_PAGE:
        return "text layer too small for the page's images"
    if plausibility(text) < SUSPECT_BELOW:
        return "implausible text layer"
    return None


def agreement(a: str, b: str) -> float:
    """How far two readings of a page agree, 0-1: the Dice overlap of their character bigrams
    (case, white space and Markdown table rules ignored), so that a different reading order of
    columns, or a table read from the layer as Markdown, still agrees."""
    from collections import Counter

    plain = ("".join(_TABLE_RULES.sub(" ", x).lower().split()) for x in (a, b))
    grams = [Counter(t[i : i + 2] for i in range(len(t) - 1)) for t in plain]
    total = sum(grams[0].values()) + sum(grams[1].values())
    return 2 * sum((grams[0] & grams[1]).values()) / total if total else 0.0


def choose(layer: str, ocr_text: str, reason: str) -> tuple[str, bool]:
    """(text, read by OCR) for a page that was OCR'd because of `reason`. An implausible layer
    that agrees with what OCR sees on the page is kept (a language that merely scores low); one
    that does not is replaced, unless OCR reads still less plausibly."""
    if not ocr_text.strip() or _visible(ocr_text) < _visible(layer) and reason != "implausible text layer":
        return layer, False  # OCR found nothing, or less than a short layer holds (a script it does not read)
    if reason == "implausible text layer":
        if agreement(layer, ocr_text) >= AGREE or plausibility(ocr_text) < plausibility(layer) - _MARGIN:
            return layer, False
    return ocr_text, True


def render(page, dpi: int):
    scale = dpi / 72
    width, height = page.get_size()
    scale = min(scale, MAX_SIDE / max(width, height, 1.0))
    return page.render(scale=scale).to_numpy()[:, :, :3]


def read_pdf_pages(path: Path, data: bytes, password: str | None, texts: list[str], mode: str, dpi: int) -> list[Page]:
    """The pages of a PDF whose text layers are `texts`, OCR'd where `mode` says."""
    if mode not in MODES:
        raise ValueError(f"ingest.ocr: {mode!r} is not one of {', '.join(MODES)}")
    layers, texts = texts, [repair(t) for t in texts]
    repaired = {n for n, (a, b) in enumerate(zip(layers, texts), start=1) if a != b}
    if mode == "never":
        return [_layer_page(t, n, n in repaired) for n, t in enumerate(texts, start=1)]
    import pypdfium2 as pdfium

    from kbqa.ingest.ocr import OcrUnavailable, ocr_image

    try:
        pdf = pdfium.PdfDocument(data, password=password)
    except pdfium.PdfiumError:  # a file only salvaged (`ingest.loaders.pdf_salvage`): no page to render
        return [_layer_page(t, n, n in repaired) for n, t in enumerate(texts, start=1)]
    try:
        # the image area matters only for a short layer: other pages are not opened for it
        reasons = [ocr_reason(t, _image_share(pdf[i]) if MIN_CHARS <= _visible(t) < CHARS_PER_IMAGE_PAGE else 0.0, mode) for i, t in enumerate(texts)]
        todo = [i for i, r in enumerate(reasons) if r]
        pages = [_layer_page(t, n, n in repaired) for n, t in enumerate(texts, start=1)]
        bar = tqdm(todo, desc=f"OCR {path.name}", unit="page", leave=False, disable=None if todo else True)
        for i in bar:
            try:
                text, by_ocr = choose(texts[i], ocr_image(render(pdf[i], dpi)), reasons[i])
            except OcrUnavailable as exc:
                if _visible(texts[i]) >= MIN_CHARS and not damage(texts[i]):
                    continue  # a usable layer stays
                pages[i] = Page("", i + 1, problem=f"{reasons[i]}; {exc}")
                continue
            if by_ocr:
                pages[i] = Page(text, i + 1, ocr=True)
            elif not text.strip():
                pages[i] = Page("", i + 1, problem=f"{reasons[i]}, and OCR read no text")
            else:
                pages[i] = _layer_page(text, i + 1, i + 1 in repaired)
    finally:
        pdf.close()
    return pages


def _layer_page(text: str, number: int, repaired: bool = False) -> Page:
    problem = damage(text) if _visible(text) >= MIN_CHARS else None
    return Page("", number, problem=problem) if problem else Page(text, number, repaired=repaired)


def read_image_pages(path: Path, frames: list, mode: str) -> list[Page]:
    """OCR each frame (RGB numpy array) of an image file: one page per frame."""
    if mode == "never":
        raise LoadError(path, "an image is read only with OCR", "set ingest.ocr to auto or always")
    from kbqa.ingest.ocr import OcrUnavailable, ocr_image

    pages = []
    try:
        for n, frame in enumerate(tqdm(frames, desc=f"OCR {path.name}", unit="page", leave=False, disable=None), start=1):
            pages.append(Page(ocr_image(frame), n, ocr=True))
    except OcrUnavailable as exc:
        raise LoadError(path, str(exc)) from exc
    return pages
