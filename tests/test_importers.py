"""Bring your own data: import VOC and YOLO folders, check them, and train a step on one."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from nas.cli import main
from nas.tasks.detection.annotations import read_coco
from tests.test_detection import TINY_GENOME

VOC_XML = """<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height></size>
{objects}</annotation>"""
VOC_OBJECT = ("<object><name>{cls}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
              "<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def make_voc(root, count=6, image_sets=True):
    rng = np.random.default_rng(0)
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    ids = [f"2007_{i:06d}" for i in range(count)]
    for i, name in enumerate(ids):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        objects = VOC_OBJECT.format(cls="dog" if i % 2 else "cat", difficult=0, x0=5, y0=5, x1=36, y1=40)
        if i == 0:
            objects += VOC_OBJECT.format(cls="cat", difficult=1, x0=40, y0=1, x1=60, y1=20)
        (root / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name, w=64, h=48, objects=objects))
    if image_sets:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids[:4]) + "\n")
        (root / "ImageSets" / "Main" / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    return ids


def make_yolo(root):
    for split, count in (("train", 4), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (80, 40), (i * 40, 100, 100)).save(root / "images" / split / f"{i}.png")
            if i == count - 1 and split == "train":
                continue  # an image without a label file: background
            (root / "labels" / split / f"{i}.txt").write_text(
                f"{i % 2} 0.5 0.5 0.25 0.5\n1 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n")
    (root / "data.yaml").write_text("names:\n  0: bird\n  1: plane\n")


def test_voc_import_uses_image_sets_and_voc_coordinates(tmp_path, capsys):
    make_voc(tmp_path / "voc")
    out = tmp_path / "coco"
    assert main(["data", "import", "voc", str(tmp_path / "voc"), "--out", str(out)]) == 0
    assert "split from ImageSets/Main" in capsys.readouterr().out
    train = json.loads((out / "instances_train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["cat", "dog"]
    assert len(train["images"]) == 4 and len(json.loads((out / "instances_val.json").read_text())["images"]) == 2
    first = train["annotations"][0]
    assert first["bbox"] == [4.0, 4.0, 32.0, 36.0]  # 1-based inclusive (5..36) -> x 4, width 32
    assert [a["iscrowd"] for a in train["annotations"]].count(1) == 1  # the difficult cat
    split = read_coco(str(out / "instances_train.json"), str(out / "train"))
    assert split.class_counts() == {"cat": 2, "dog": 2} and split.skipped == {"crowd annotations": 1}


def test_voc_test_list_is_written_as_the_test_split(tmp_path, capsys):
    # As BCCD ships: ImageSets/Main has test.txt beside train.txt and val.txt (and one image is in no list).
    ids = make_voc(tmp_path / "voc", count=9)
    lists = tmp_path / "voc" / "ImageSets" / "Main"
    (lists / "val.txt").write_text("\n".join(ids[4:6]) + "\n")
    (lists / "test.txt").write_text("\n".join(ids[6:8]) + "\n")
    out = tmp_path / "coco"
    assert main(["data", "import", "voc", str(tmp_path / "voc"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 train images" in printed and "2 val images" in printed and "2 test images (2 objects)" in printed
    assert "1 annotated images in no ImageSets/Main list (left out)" in printed
    test = json.loads((out / "instances_test.json").read_text())
    assert sorted(i["file_name"] for i in test["images"]) == [f"{i}.jpg" for i in ids[6:8]]
    assert sorted(os.listdir(out / "test")) == [f"{i}.jpg" for i in ids[6:8]]
    assert test["categories"] == json.loads((out / "instances_train.json").read_text())["categories"]

    assert main(["data", "check", str(out), "--image-size", "64"]) == 0
    assert "test: 2 images, 2 objects, 2 classes" in capsys.readouterr().out
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                       "score": 1.0} for a in test["annotations"]]))
    assert main(["evaluate", str(detections), "--data", str(out), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == pytest.approx(1.0)

    # train.txt and test.txt without val.txt: the seeded split is over the images test.txt does not hold.
    (lists / "val.txt").unlink()
    assert main(["data", "import", "voc", str(tmp_path / "voc"), "--out", str(out), "--overwrite"]) == 0
    assert "test from ImageSets/Main/test.txt" in capsys.readouterr().out
    names = {s: {i["file_name"] for i in json.loads((out / f"instances_{s}.json").read_text())["images"]}
             for s in ("train", "val", "test")}
    assert names["test"] == {f"{i}.jpg" for i in ids[6:8]} and not names["test"] & (names["train"] | names["val"])
    assert len(names["train"] | names["val"]) == 7
    # No test list any more: the old test split does not linger.
    (lists / "test.txt").unlink()
    assert main(["data", "import", "voc", str(tmp_path / "voc"), "--out", str(out), "--overwrite"]) == 0
    assert "test images" not in capsys.readouterr().out
    assert not (out / "instances_test.json").exists() and not (out / "test").exists()


def test_voc_without_image_sets_is_split_by_seed(tmp_path, capsys):
    make_voc(tmp_path / "voc", count=10, image_sets=False)
    out = tmp_path / "coco"
    assert main(["data", "import", "voc", str(tmp_path / "voc"), "--out", str(out), "--seed", "3"]) == 0
    assert "seeded split (seed 3, 20% val)" in capsys.readouterr().out
    assert len(json.loads((out / "instances_val.json").read_text())["images"]) == 2
    assert main(["data", "import", "voc", str(tmp_path / "voc"), "--out", str(out)]) == 2
    assert "already holds a dataset" in capsys.readouterr().err


def test_voc_tiles_cut_large_flat_photos_and_mark_cut_objects(tmp_path, capsys):
    # A flat folder (XML beside the image), as packages ship aerial photos: 450x420 cut into 200x200 tiles.
    src = tmp_path / "aerial"
    src.mkdir()
    pixels = np.random.default_rng(1).integers(0, 255, (420, 450, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(src / "scene.png")
    objects = "".join(VOC_OBJECT.format(cls="tree", difficult=0, x0=x0 + 1, y0=y0 + 1, x1=x1, y1=y1)
                      for x0, y0, x1, y1 in [(10, 10, 50, 50),      # inside tile r0 c0
                                             (180, 20, 240, 60),    # 1/3 in c0 (ignored there), 2/3 in c1
                                             (300, 250, 340, 290),  # inside r1 c1
                                             (410, 10, 440, 40)])   # in the dropped right remainder
    (src / "scene.xml").write_text(VOC_XML.format(name="scene", w=450, h=420, objects=objects).replace(".jpg", ".png"))
    out = tmp_path / "tiles"
    assert main(["data", "import", "voc", str(src), "--out", str(out), "--tile", "200", "--val-fraction", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert "3 train images" in printed and "1 val images" in printed and "seeded split" in printed and "tiles" in printed
    assert "1 objects cut by a tile edge" in printed and "1 objects only in the right or bottom remainder" in printed
    tiles = {}
    for split in ("train", "val"):
        coco = json.loads((out / f"instances_{split}.json").read_text())
        for image in coco["images"]:
            boxes = [(a["bbox"], a["iscrowd"]) for a in coco["annotations"] if a["image_id"] == image["id"]]
            tiles[image["file_name"]] = (split, boxes)
            assert (image["width"], image["height"]) == (200, 200)
    assert sorted(tiles) == ["scene_r00_c00.png", "scene_r00_c01.png", "scene_r01_c00.png", "scene_r01_c01.png"]
    assert tiles["scene_r00_c00.png"][1] == [([10.0, 10.0, 40.0, 40.0], 0), ([180.0, 20.0, 20.0, 40.0], 1)]
    assert tiles["scene_r00_c01.png"][1] == [([0.0, 20.0, 40.0, 40.0], 0)]
    assert tiles["scene_r01_c01.png"][1] == [([100.0, 50.0, 40.0, 40.0], 0)]
    split, _ = tiles["scene_r01_c01.png"]
    assert np.array_equal(np.asarray(Image.open(out / split / "scene_r01_c01.png")), pixels[200:400, 200:400])
    # A photo smaller than one tile: the error says why nothing is left.
    assert main(["data", "import", "voc", str(src), "--out", str(tmp_path / "none"), "--tile", "500"]) == 2
    assert "split is empty" in (err := capsys.readouterr().err) and "1 images smaller than one 500x500 tile" in err


def test_yolo_import_boxes_and_polygons(tmp_path, capsys):
    make_yolo(tmp_path / "yolo")
    out = tmp_path / "coco"
    assert main(["data", "import", "yolo", str(tmp_path / "yolo"), "--out", str(out)]) == 0
    assert "1 images without a label file" in capsys.readouterr().out
    train = json.loads((out / "instances_train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["bird", "plane"]
    assert [c["category_id"] for c in train["annotations"][:2]] == [1, 2]
    assert train["annotations"][0]["bbox"] == [30.0, 10.0, 20.0, 20.0]
    assert train["annotations"][1]["bbox"] == [8.0, 4.0, 16.0, 12.0]  # the polygon's box
    assert len(train["images"]) == 4 and len(train["annotations"]) == 6


def test_yolo_test_folder_is_written_as_the_test_split(tmp_path, capsys):
    make_yolo(tmp_path / "yolo")
    for folder in ("images/test", "labels/test", "images/extra"):
        (tmp_path / "yolo" / folder).mkdir(parents=True)
    Image.new("RGB", (80, 40)).save(tmp_path / "yolo" / "images" / "test" / "t.png")
    (tmp_path / "yolo" / "labels" / "test" / "t.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    Image.new("RGB", (80, 40)).save(tmp_path / "yolo" / "images" / "extra" / "e.png")
    out = tmp_path / "coco"
    assert main(["data", "import", "yolo", str(tmp_path / "yolo"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 test images (1 objects)" in printed and "images/test" in printed
    assert "1 images in images/extra/ (not a train, val or test folder; left out)" in printed
    test = json.loads((out / "instances_test.json").read_text())
    assert [i["file_name"] for i in test["images"]] == ["t.png"] and (out / "test" / "t.png").exists()


def test_yolo_needs_class_names(tmp_path, capsys):
    make_yolo(tmp_path / "yolo")
    (tmp_path / "yolo" / "data.yaml").unlink()
    assert main(["data", "import", "yolo", str(tmp_path / "yolo"), "--out", str(tmp_path / "o")]) == 2
    assert "no class names (data.yaml with 'names', or classes.txt" in capsys.readouterr().err
    (tmp_path / "yolo" / "classes.txt").write_text("bird\nplane\n")
    assert main(["data", "import", "yolo", str(tmp_path / "yolo"), "--out", str(tmp_path / "o")]) == 0


def test_check_reports_and_flags_tiny_objects(tmp_path, capsys):
    make_yolo(tmp_path / "yolo")
    out = tmp_path / "coco"
    main(["data", "import", "yolo", str(tmp_path / "yolo"), "--out", str(out)])
    capsys.readouterr()
    assert main(["data", "check", str(out), "--image-size", "64"]) == 0
    report = capsys.readouterr().out
    assert "train: 4 images, 6 objects, 2 classes" in report and "1 images without objects" in report
    assert "smallest anchor 32 px" in report and "usable" in report
    assert "far smaller than the smallest anchor" not in report
    assert main(["data", "check", str(out), "--image-size", "32", "--set", "task.head.anchor_size=8"]) == 0
    assert "far smaller than the smallest anchor" in capsys.readouterr().out


def test_check_exits_1_on_unusable_data(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    (tmp_path / "instances_train.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "unusable:" in capsys.readouterr().out


def test_import_check_and_train_one_step(tmp_path, capsys):
    ids = make_voc(tmp_path / "voc", count=9)
    (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").write_text("\n".join(ids[4:6]) + "\n")
    (tmp_path / "voc" / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids[6:]) + "\n")
    make_yolo(tmp_path / "yolo")
    for kind in ("voc", "yolo"):
        data = tmp_path / f"coco-{kind}"
        assert main(["data", "import", kind, str(tmp_path / kind), "--out", str(data)]) == 0
        assert main(["data", "check", str(data), "--image-size", "64"]) == 0
    genome = tmp_path / "tiny.yaml"
    TINY_GENOME.save(genome)
    settings = [f"task.data.root={tmp_path}/coco-voc", "task.data.generate_shapes=null", "task.data.image_size=64",
                "task.training.batch_size=4", "task.training.epochs=1", "task.training.warmup_steps=1",
                "task.head.num_filters=8", "task.head.num_convs=1", "task.evaluation.batch_size=4",
                "model.filter_size_scale=0.25", "model.endpoints_num_filters=8"]
    # The final evaluation: train on train, score the held-out test split in place of val.
    out = tmp_path / "run"
    argv = ["train", "--genome", str(genome), "--out", str(out), "--evaluate-on", "test"]
    for item in settings:
        argv += ["--set", item]
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    assert "val: 3 images, 3 objects, 2 classes" in capsys.readouterr().out  # the test split's 3 images
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 1 and 0 <= metrics["AP"] <= 1
