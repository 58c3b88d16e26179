"""Reading images as they come: any PIL mode, EXIF orientation, 16-bit samples, very large files.

Boxes in COCO files refer to the image as a viewer displays it, i.e. after
its EXIF orientation is applied (what the COCO tools and annotation tools
assume), so both :func:`displayed_size` and :func:`load_image` apply it.

Examples:
    >>> import tempfile, os
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.new("L", (40, 20)).save(path)
    >>> displayed_size(path)
    (20, 40)
    >>> load_image(path, (10, 20)).shape
    (10, 20, 3)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# EXIF orientations 5 to 8 turn the image by 90 degrees, so height and width swap.
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112


class ImageReadError(ValueError):
    """An image file that PIL cannot open or decode; the message names the file."""


def displayed_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of the image as displayed, from the file header only (no pixel decoding)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            try:
                orientation = image.getexif().get(_ORIENTATION_TAG, 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block only loses the orientation
                orientation = 1
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot read image ({err})") from None
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return height, width


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode: 16/32-bit grey scaled down (not clipped), alpha and palette resolved."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit files use 0..65535; a plain convert("L") would clip everything above 255 to white.
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids PIL's warning about palette transparency
    return image.convert("RGB")


def open_displayed(path: str) -> Image.Image:
    """The whole image as displayed (EXIF orientation applied), in RGB."""
    try:
        with Image.open(path) as image:
            return _to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot read image ({err})") from None


def load_image(path: str, size: tuple[int, int]) -> np.ndarray:
    """The displayed image resized to ``size`` = (height, width): uint8 [height, width, 3].

    A JPEG much larger than ``size`` is decoded at a reduced scale (libjpeg's
    DCT scaling through :meth:`PIL.Image.Image.draft`), so a huge photo never
    exists at full size in memory.
    """
    height, width = int(size[0]), int(size[1])
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(_ORIENTATION_TAG, 1)
            # draft() works in stored (not displayed) orientation.
            stored = (height, width) if orientation not in _TRANSPOSED_ORIENTATIONS else (width, height)
            if image.format == "JPEG":
                image.draft("RGB", (stored[1], stored[0]))
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot decode image ({err})") from None
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image, dtype=np.uint8)
