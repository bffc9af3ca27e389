"""Nuclear-medicine display of scans: inverted grey scale, per-scan percentile window, contact sheets.

Bone scans are read as dark uptake on a white background; the window's upper end is a high percentile of
the scan's body pixels (not the maximum, which the bladder or an injection site would take), shared by both
views of a scan so that anterior and posterior stay comparable. No torch here: the reader study uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synthscan.io.atomic import atomic_path
from synthscan.scan import Scan

DEFAULT_PERCENTILE = 99.5


def window_max(counts: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> float:
    """Upper window level: a percentile of the non-zero pixels (the body), at least 1 count."""
    body = counts[counts > 0]
    return float(max(np.percentile(body, percentile), 1.0)) if body.size else 1.0


def window(image: np.ndarray, top: float | None = None, percentile: float = DEFAULT_PERCENTILE) -> np.ndarray:
    """Map counts to display values in [0, 1], inverted (0 counts -> 1.0 = white, >= top -> 0.0 = black)."""
    top = window_max(image, percentile) if top is None else top
    return 1.0 - np.clip(image / top, 0.0, 1.0)


def render_scan(scan: Scan, percentile: float = DEFAULT_PERCENTILE, gap: int = 4) -> Image.Image:
    """One scan as a greyscale image, views side by side (anterior left), one window for both views."""
    top = window_max(scan.counts, percentile)
    rows, cols = scan.shape
    # Display at square pixels even for anisotropic spacing.
    aspect = scan.pixel_spacing_mm[0] / scan.pixel_spacing_mm[1]
    canvas = np.ones((rows, len(scan.views) * cols + (len(scan.views) - 1) * gap), np.float32)
    for index, image in enumerate(scan.counts):
        canvas[:, index * (cols + gap): index * (cols + gap) + cols] = window(image, top)
    picture = Image.fromarray(np.round(canvas * 255).astype(np.uint8), mode="L")
    if abs(aspect - 1) > 1e-3:
        picture = picture.resize((picture.width, max(1, round(rows * aspect))), Image.BILINEAR)
    return picture


def contact_sheet(scans: Sequence[Scan], captions: Sequence[str] | None = None, out=None,
                  columns: int = 8, tile_height: int = 512, percentile: float = DEFAULT_PERCENTILE) -> Image.Image:
    """Scans in a grid with captions under each (labels, site, ...); saved atomically as PNG if ``out``."""
    if not scans:
        raise ValueError("contact_sheet needs at least one scan")
    captions = list(captions) if captions is not None else [""] * len(scans)
    tiles = []
    for scan in scans:
        picture = render_scan(scan, percentile)
        scale = tile_height / picture.height
        tiles.append(picture.resize((max(1, round(picture.width * scale)), tile_height), Image.BILINEAR))
    font = ImageFont.load_default()
    caption_lines = max(1, max(caption.count("\n") + 1 for caption in captions))
    caption_height = 12 * caption_lines + 6
    tile_width = max(t.width for t in tiles)
    columns = max(1, min(columns, len(tiles)))
    grid_rows = -(-len(tiles) // columns)
    pad = 8
    sheet = Image.new("L", (columns * (tile_width + pad) + pad, grid_rows * (tile_height + caption_height + pad) + pad),
                      255)
    draw = ImageDraw.Draw(sheet)
    for index, (tile, caption) in enumerate(zip(tiles, captions)):
        x = pad + (index % columns) * (tile_width + pad)
        y = pad + (index // columns) * (tile_height + caption_height + pad)
        sheet.paste(tile, (x, y))
        draw.multiline_text((x, y + tile_height + 2), caption, fill=0, font=font, spacing=2)
    if out is not None:
        with atomic_path(out) as tmp:
            sheet.save(tmp, format="PNG")
    return sheet


def save_png(scan: Scan, out, percentile: float = DEFAULT_PERCENTILE) -> None:
    """One scan rendered to a PNG file (atomically)."""
    with atomic_path(out) as tmp:
        render_scan(scan, percentile).save(tmp, format="PNG")
