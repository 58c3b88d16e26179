"""Shapes dataset generator and the COCO-format loader."""

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from nas.cli import main
from nas.tasks.base import DataError
from nas.tasks.detection.annotations import read_coco
from nas.tasks.detection.pipeline import make_dataset
from nas.tasks.detection.shapes import CATEGORIES, write_shapes_dataset


def digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as handle:
                h.update(name.encode() + handle.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(out, train=60, val=10, image_size=128, seed=3)
    return str(out)


def test_same_seed_same_bytes(tmp_path, shapes):
    write_shapes_dataset(tmp_path / "again", train=60, val=10, image_size=128, seed=3)
    write_shapes_dataset(tmp_path / "other", train=60, val=10, image_size=128, seed=4)
    assert digest(tmp_path / "again") == digest(shapes)
    assert digest(tmp_path / "other") != digest(shapes)


def test_shapes_are_a_real_coco_dataset(shapes):
    doc = json.load(open(os.path.join(shapes, "instances_train.json")))
    assert [c["name"] for c in doc["categories"]] == list(CATEGORIES)
    assert len(doc["images"]) == 60 and len(doc["annotations"]) >= 60
    sides = []
    for ann in doc["annotations"]:
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
        assert 0 < ann["area"] <= w * h
        sides.append(max(w, h))
    # Objects span every scale: a few pixels up to most of the image.
    assert min(sides) <= 12 and max(sides) >= 64
    assert {a["category_id"] for a in doc["annotations"]} == set(range(1, 7))
    image = np.asarray(Image.open(os.path.join(shapes, "train", "000000.png")))
    assert image.shape == (128, 128, 3) and image.std() > 5


def test_data_shapes_command(tmp_path, capsys):
    out = str(tmp_path / "ds")
    assert main(["data", "shapes", "--out", out, "--train", "5", "--val", "2", "--image-size", "64",
                 "--max-level", "6", "--quiet"]) == 0
    assert "wrote 5 train images" in capsys.readouterr().out
    assert main(["data", "shapes", "--out", out, "--train", "5", "--val", "2", "--quiet"]) == 2
    assert "already holds a dataset" in capsys.readouterr().err


def write_coco(tmp_path, annotations, images=None, categories=None):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    images = images or [{"id": 1, "file_name": "a.png", "width": 64, "height": 32}]
    for image in images:
        if image["file_name"] != "gone.png":
            Image.fromarray(np.full((image["height"], image["width"], 3), 128, np.uint8)).save(folder / image["file_name"])
    doc = {"images": images, "annotations": annotations,
           "categories": categories or [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}, {"id": 12, "name": "c"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return str(path), str(folder)


def ann(i, cat, bbox, image_id=1, **extra):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, **extra}


def test_category_ids_are_remapped_and_bad_annotations_counted(tmp_path):
    path, folder = write_coco(tmp_path, [
        ann(1, 7, [10, 4, 20, 10]), ann(2, 12, [0, 0, 8, 8]),
        ann(3, 3, [60, 0, 10, 10]),        # partly outside: clipped to 4 pixels wide
        ann(4, 3, [5, 5, 0, 10]),          # no width
        ann(5, 99, [5, 5, 5, 5]),          # unknown category
        ann(6, 7, [5, 5, 5, 5], iscrowd=1),
        ann(7, 7, [5, 5, 5, 5], image_id=2),
        ann(8, 7, [1, 1, 4, 4], image_id=3),
    ], images=[{"id": 1, "file_name": "a.png", "width": 64, "height": 32},
               {"id": 2, "file_name": "gone.png", "width": 64, "height": 32},
               {"id": 3, "file_name": "b.png", "width": 32, "height": 32}])
    split = read_coco(path, folder)
    assert split.category_ids == [3, 7, 12] and split.num_classes == 3
    assert split.labels[0].tolist() == [1, 2, 0]
    np.testing.assert_allclose(split.boxes[0][2], [0, 60, 10, 64])
    assert split.skipped == {"missing image files": 1, "boxes with no area inside the image": 1,
                             "annotations of unknown categories": 1, "crowd annotations": 1,
                             "annotations of missing images": 1}
    assert "skipped:" in split.summary()


@pytest.mark.parametrize("mutate, message", [
    (lambda p: os.remove(p), "cannot read annotations"),
    (lambda p: open(p, "w").write("{not json"), "not valid JSON"),
    (lambda p: open(p, "w").write(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1}]})),
     "'annotations' list is empty"),
    (lambda p: open(p, "w").write(json.dumps({"images": []})), "missing the 'annotations' list"),
])
def test_unreadable_annotations_are_clear_errors(tmp_path, mutate, message):
    path, folder = write_coco(tmp_path, [ann(1, 7, [10, 4, 20, 10])])
    mutate(path)
    with pytest.raises(DataError, match=message):
        read_coco(path, folder)


def test_missing_image_folder_is_an_error(tmp_path):
    path, _ = write_coco(tmp_path, [ann(1, 7, [10, 4, 20, 10])])
    with pytest.raises(DataError, match="image folder not found"):
        read_coco(path, str(tmp_path / "nowhere"))


def test_pipeline_resizes_long_side_and_pads(tmp_path):
    path, folder = write_coco(tmp_path, [ann(1, 7, [10, 4, 20, 10])])
    split = read_coco(path, folder, keep_empty_categories=True)
    images, targets = next(iter(make_dataset(split, image_size=128, batch_size=1, training=False, max_instances=4)))
    assert images.shape == (1, 128, 128, 3)
    assert float(images[0, 100, 10, 0]) == -1.0  # padding below the 64x32 -> 128x64 image
    np.testing.assert_allclose(targets["boxes"][0, 0], [8, 20, 28, 60])
    assert targets["classes"][0].numpy().tolist() == [1, -1, -1, -1]
    assert float(targets["scale"][0]) == 2.0


def test_training_augmentation_keeps_boxes_valid(shapes):
    split = read_coco(os.path.join(shapes, "instances_train.json"), os.path.join(shapes, "train"))
    ds = make_dataset(split, image_size=128, batch_size=20, training=True, scale_jitter=(0.6, 1.4), seed=1)
    kept = 0
    for images, targets in ds:
        boxes, classes = targets["boxes"].numpy(), targets["classes"].numpy()
        valid = classes >= 0
        kept += valid.sum()
        assert images.shape[1:] == (128, 128, 3)
        assert (boxes[valid] >= 0).all() and (boxes[valid] <= 128).all()
        assert ((boxes[valid][:, 2] - boxes[valid][:, 0]) >= 2).all()
    assert kept > 0.6 * sum(len(b) for b in split.boxes[:60])
