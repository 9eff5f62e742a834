"""OCR of page images, offline: RapidOCR with the PP-OCRv4 Chinese/English models that the
``rapidocr-onnxruntime`` wheel carries. One engine per process, made on first use.

Text is detected on the page scaled to `DET_SIDE` pixels on its longer side (1.4.4 otherwise
detects at up to 2000: its ``det_limit_side_len`` only ever scales up, and with
``det_limit_type = max`` it picks 960, 1500 or 2000 from the image size itself); the boxes found
are cut from the page at full resolution for recognition, which costs the same at any
resolution (each line is scaled to 48 pixels high).

The engine returns text boxes; `lines_from_boxes` puts them back in reading order: boxes
whose vertical extents overlap form a line, lines run top to bottom, boxes left to right,
joined by a space except between two Chinese characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

INSTALL = "pip install rapidocr-onnxruntime==1.4.4"
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
_ENGINE = None
DET_SIDE = 1600  # synthetic scans (bench/documents.py): CER 0 at 1600; at 1440 or 1280, English 11 pt scanned at 150 dpi 0.085


class OcrUnavailable(RuntimeError):
    """The OCR engine is not installed."""


@dataclass(frozen=True)
class Box:
    text: str
    left: float
    top: float
    bottom: float
    score: float = 1.0


def engine():
    global _ENGINE
    if _ENGINE is None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise OcrUnavailable(f"OCR needs rapidocr-onnxruntime: {INSTALL}") from exc
        made = RapidOCR()
        limit_detection(made, DET_SIDE)
        _ENGINE = made
    return _ENGINE


def limit_detection(ocr, side: int) -> None:
    """Make `ocr` (a RapidOCR) detect text on the page scaled down to `side` pixels at most."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    det = ocr.text_det
    det.get_preprocess = lambda max_wh: DetPreProcess(side, "max", det.mean, det.std)


def _joiner(left: str, right: str) -> str:
    return "" if left and right and _CJK.match(left[-1]) and _CJK.match(right[0]) else " "


def lines_from_boxes(boxes: Sequence[Box], min_score: float = 0.5) -> list[str]:
    """Boxes -> lines of text in reading order (boxes scored below `min_score` dropped)."""
    rows: list[list[Box]] = []
    for box in sorted((b for b in boxes if b.score >= min_score and b.text.strip()), key=lambda b: (b.top + b.bottom) / 2):
        middle = (box.top + box.bottom) / 2
        if rows and rows[-1][0].top <= middle <= rows[-1][0].bottom:
            rows[-1].append(box)
        else:
            rows.append([box])
    out = []
    for row in rows:
        text = ""
        for box in sorted(row, key=lambda b: b.left):
            piece = box.text.strip()
            text = piece if not text else text + _joiner(text, piece) + piece
        out.append(text)
    return out


def ocr_image(image) -> str:
    """The text of an RGB image (a numpy array of shape (h, w, 3)), one line per text line."""
    result, _ = engine()(image)
    boxes = []
    for points, text, score in result or []:
        ys = [p[1] for p in points]
        boxes.append(Box(text, min(p[0] for p in points), min(ys), max(ys), float(score)))
    return "\n".join(lines_from_boxes(boxes))
