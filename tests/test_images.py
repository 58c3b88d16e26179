"""Images as they come: PIL modes, EXIF orientation, wrong or missing sizes in the JSON, very large files."""

import json

import numpy as np
import pytest
from PIL import Image

from nas.tasks.detection.annotations import read_coco
from nas.tasks.detection.images import displayed_size, load_image
from nas.tasks.detection.pipeline import make_dataset

EXIF_ORIENTATION = 0x0112


def halves(width, height, top=(250, 0, 0), bottom=(0, 0, 250)):
    """RGB array: upper half ``top``, lower half ``bottom``."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2] = top
    pixels[height // 2:] = bottom
    return pixels


def save_kind(path, kind):
    """Write a 64x32 (w x h) image of ``kind``; its displayed upper half is brighter/redder than the lower."""
    rgb = halves(64, 32)
    if kind == "grey":
        Image.fromarray(rgb).convert("L").save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, np.full((32, 64), 255, np.uint8)]), "RGBA").save(path)
    elif kind == "palette":
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    elif kind == "grey16":
        values = np.where(np.arange(32)[:, None] < 16, 60000, 1000) * np.ones((1, 64))
        Image.fromarray(values.astype(np.uint16)).save(path)
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    elif kind == "exif":
        # Stored turned a quarter left (32 wide, 64 high); orientation 6 tells viewers to turn it right.
        stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)
        exif = stored.getexif()
        exif[EXIF_ORIENTATION] = 6
        stored.save(path, exif=exif, quality=95)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind, suffix", [("grey", "png"), ("rgba", "png"), ("palette", "png"),
                                          ("grey16", "png"), ("cmyk", "jpg"), ("exif", "jpg")])
def test_every_kind_loads_as_displayed_rgb(tmp_path, kind, suffix):
    path = str(tmp_path / f"image.{suffix}")
    save_kind(path, kind)
    assert displayed_size(path) == (32, 64)
    image = load_image(path, (32, 64))
    assert image.shape == (32, 64, 3) and image.dtype == np.uint8
    upper, lower = image[:12].astype(float).mean(), image[20:].astype(float).mean()
    if kind == "grey16":
        # Scaled from 16 bits, not clipped: 60000 -> ~234, 1000 -> ~4.
        assert abs(upper - 234) < 3 and abs(lower - 4) < 3
    elif kind == "grey":
        assert abs(upper - lower) > 20
    else:
        # Red on top and blue below, as displayed (an ignored EXIF orientation would split left/right).
        assert image[:12, :, 0].mean() > 200 > image[20:, :, 0].mean()
        assert image[20:, :, 2].mean() > 200 > image[:12, :, 2].mean()


def write_split(tmp_path, images, boxes):
    folder = tmp_path / "train"
    folder.mkdir(exist_ok=True)
    doc = {"images": images, "categories": [{"id": 1, "name": "thing"}],
           "annotations": [{"id": i + 1, "image_id": image_id, "category_id": 1, "bbox": box}
                           for i, (image_id, box) in enumerate(boxes)]}
    path = tmp_path / "instances_train.json"
    path.write_text(json.dumps(doc))
    return str(path), str(folder)


def test_exif_rotated_boxes_refer_to_the_displayed_image(tmp_path):
    path, folder = write_split(tmp_path, [{"id": 1, "file_name": "r.jpg", "width": 64, "height": 32}],
                               [(1, [0, 0, 64, 16])])  # the red upper half, as displayed
    save_kind(f"{folder}/r.jpg", "exif")
    split = read_coco(path, folder)
    assert split.image_sizes == [(32, 64)] and not split.notes
    images, targets = next(iter(make_dataset(split, image_size=64, batch_size=1, training=False, max_instances=2)))
    np.testing.assert_allclose(targets["boxes"][0, 0], [0, 0, 16, 64])
    red = images[0, :16, :, 0].numpy()
    assert red.mean() > 0.5  # the box covers red pixels ([-1, 1] scale)


def test_json_sizes_missing_or_wrong_are_read_from_the_file(tmp_path):
    images = [{"id": 1, "file_name": "a.png"},                                   # no width/height
              {"id": 2, "file_name": "b.png", "width": 640, "height": 480},    # wrong
              {"id": 3, "file_name": "c.png", "width": 50, "height": 40}]      # right
    path, folder = write_split(tmp_path, images, [(1, [1, 1, 10, 10]), (2, [30, 1, 60, 10]), (3, [0, 0, 5, 5])])
    for name, size in (("a.png", (30, 20)), ("b.png", (64, 32)), ("c.png", (50, 40))):
        Image.new("RGB", size).save(f"{folder}/{name}")
    split = read_coco(path, folder)
    assert split.image_sizes == [(20, 30), (32, 64), (40, 50)]
    assert split.notes == {"images without width/height in the JSON (read from the file)": 1,
                           "images whose JSON width/height disagree with the file (the file is trusted)": 1}
    np.testing.assert_allclose(split.boxes[1][0], [1, 30, 11, 64])  # clipped to the real 64 px width
    assert "notes:" in split.summary()


def test_very_large_jpeg_is_decoded_reduced(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(halves(4000, 3000)).save(path, quality=50)
    assert displayed_size(str(path)) == (3000, 4000)
    image = load_image(str(path), (96, 128))
    assert image.shape == (96, 128, 3)
    assert image[:40, :, 0].mean() > 200 and image[56:, :, 2].mean() > 200
    # draft() asks libjpeg for a reduced decode: PIL never holds the 4000x3000 pixels.
    with Image.open(path) as opened:
        opened.draft("RGB", (128, 96))
        assert opened.size == (500, 375)


def test_unreadable_image_is_skipped(tmp_path):
    path, folder = write_split(tmp_path, [{"id": 1, "file_name": "a.png", "width": 8, "height": 8},
                                          {"id": 2, "file_name": "bad.png", "width": 8, "height": 8}],
                               [(1, [1, 1, 4, 4]), (2, [1, 1, 4, 4])])
    Image.new("RGB", (8, 8)).save(f"{folder}/a.png")
    (tmp_path / "train" / "bad.png").write_bytes(b"not a png")
    split = read_coco(path, folder)
    assert len(split) == 1 and split.skipped["unreadable image files"] == 1
