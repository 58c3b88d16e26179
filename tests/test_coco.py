"""COCO AP on any valid COCO file: scored against a normalised copy of the ground truth."""

import copy
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from nas.cli import main
from nas.tasks.detection.annotations import read_coco
from nas.tasks.detection.coco import METRIC_NAMES, ground_truth, read_detections, score_detections

# Boxes [x, y, w, h] of small (< 32^2), medium and large (> 96^2) objects on 200x200 images.
BASE_BOXES = {
    1: [(1, [10, 10, 20, 20]), (2, [50, 50, 60, 40]), (1, [100, 20, 90, 150])],
    2: [(2, [5, 5, 12, 16]), (2, [120, 120, 70, 70])],
    3: [(1, [30, 60, 110, 110])],
}


def clean_document():
    """A textbook COCO file: ids from 1, iscrowd and area present, one image without boxes."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 200} for i in (1, 2, 3, 4)]
    annotations = []
    for image_id, objects in BASE_BOXES.items():
        for cat, box in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}


def messy(document):
    """The same data as a valid but unusual file: annotation ids from 0, no iscrowd/area, category id 0,
    non-contiguous category ids, an extra category without annotations."""
    doc = copy.deepcopy(document)
    new_ids = {1: 0, 2: 17}
    for i, a in enumerate(doc["annotations"]):
        a["id"] = i
        del a["iscrowd"], a["area"]
        a["category_id"] = new_ids[a["category_id"]]
    doc["categories"] = [{"id": 0, "name": "cat"}, {"id": 17, "name": "dog"}, {"id": 5, "name": "unicorn"}]
    return doc


def write(tmp_path, document, name="instances_val.json"):
    folder = tmp_path / "val"
    folder.mkdir(exist_ok=True)
    for image in document["images"]:
        if not (folder / image["file_name"]).exists():
            Image.new("RGB", (200, 200), (90, 90, 90)).save(folder / image["file_name"])
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path), str(folder)


def as_detections(document, score=1.0):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": score}
            for a in document["annotations"]]


def variant(mutate):
    doc = clean_document()
    mutate(doc)
    return doc


def _zero_ids(d):
    for i, a in enumerate(d["annotations"]):
        a["id"] = i


def _no_crowd_area(d):
    for a in d["annotations"]:
        del a["iscrowd"], a["area"]


def _recategorise(d, mapping, extra=()):
    for a in d["annotations"]:
        a["category_id"] = mapping[a["category_id"]]
    d["categories"] = [{"id": mapping[c["id"]], "name": c["name"]} for c in d["categories"]] + list(extra)


@pytest.mark.parametrize("mutate", [
    _zero_ids,
    _no_crowd_area,
    lambda d: _recategorise(d, {1: 3, 2: 40}),                      # non-contiguous ids
    lambda d: _recategorise(d, {1: 0, 2: 1}),                       # category id 0
    lambda d: _recategorise(d, {1: 1, 2: 2}, [{"id": 9, "name": "unicorn"}]),  # a category without annotations
    lambda d: d["images"].append({"id": 5, "file_name": "5.png", "width": 200, "height": 200}),  # more empty images
    lambda d: d.update(messy(d)),                                   # all of it at once
], ids=["annotation-id-0", "no-iscrowd-area", "noncontiguous-ids", "category-id-0", "empty-category",
        "images-without-boxes", "all"])
def test_ground_truth_as_detections_scores_one(tmp_path, mutate):
    doc = variant(mutate)
    split = read_coco(*write(tmp_path, doc))
    metrics = score_detections(split, as_detections(doc))
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert [metrics[n] for n in ("APs", "APm", "APl")] == pytest.approx([1.0, 1.0, 1.0])


def test_annotation_id_zero_breaks_plain_cocoeval(tmp_path):
    # Why the evaluator never reads the raw file: pycocotools on it misses the id-0 object.
    doc = variant(_zero_ids)
    path, _ = write(tmp_path, doc)
    assert _pycocotools(path, as_detections(doc))[0] < 1.0


def _pycocotools(path, detections):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(path)
        evaluator = COCOeval(truth, truth.loadRes(detections), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [max(0.0, float(v)) for v in evaluator.stats[:6]]


def imperfect(document, category_map=None):
    """Shifted boxes, a missed object, false positives and unordered scores."""
    rng = np.random.default_rng(0)
    category_map = category_map or {1: 1, 2: 2}
    detections = []
    for a in document["annotations"][:-1]:
        x, y, w, h = a["bbox"]
        shift = rng.uniform(-0.25, 0.25, size=2) * [w, h]
        detections.append({"image_id": a["image_id"], "category_id": category_map[a["category_id"]],
                           "bbox": [x + shift[0], y + shift[1], w, h], "score": float(rng.uniform(0.3, 1))})
    for image_id in (1, 2, 4):
        detections.append({"image_id": image_id, "category_id": category_map[2], "bbox": [0, 150, 40, 40],
                           "score": float(rng.uniform(0.2, 0.9))})
    return detections


def test_imperfect_detections_score_as_pycocotools_on_the_clean_file(tmp_path):
    clean = clean_document()
    clean_path, _ = write(tmp_path, clean, "clean.json")
    expected = _pycocotools(clean_path, imperfect(clean))
    assert 0.05 < expected[0] < 0.9  # really imperfect
    unusual = messy(clean)
    split = read_coco(*write(tmp_path, unusual))
    metrics = score_detections(split, imperfect(clean, {1: 0, 2: 17}))
    assert [metrics[n] for n in METRIC_NAMES] == pytest.approx(expected)


def test_ground_truth_keeps_only_the_split_and_crowd_regions(tmp_path):
    doc = clean_document()
    doc["images"].append({"id": 9, "file_name": "missing.png", "width": 200, "height": 200})
    doc["annotations"].append({"id": 99, "image_id": 9, "category_id": 1, "bbox": [1, 1, 5, 5]})
    doc["annotations"].append({"id": 100, "image_id": 3, "category_id": 2, "bbox": [0, 0, 30, 30], "iscrowd": 1})
    path, folder = write(tmp_path, doc)
    (tmp_path / "val" / "missing.png").unlink(missing_ok=True)
    truth = ground_truth(read_coco(path, folder))
    assert sorted(i["id"] for i in truth["images"]) == [1, 2, 3, 4]
    assert [a["id"] for a in truth["annotations"]] == list(range(1, 8))
    assert [a["iscrowd"] for a in truth["annotations"]].count(1) == 1
    assert all(a["area"] > 0 for a in truth["annotations"])


def test_evaluate_command(tmp_path, capsys):
    doc = messy(clean_document())
    write(tmp_path, doc)
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps(as_detections(doc) + [
        {"image_id": 77, "category_id": 0, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    assert main(["evaluate", str(detections), "--data", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["AP"] == pytest.approx(1.0)
    assert report["per_class"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0), "unicorn": None}
    assert report["left_out"] == {"detections of images not in the split": 1}
    assert main(["evaluate", str(detections), "--data", str(tmp_path)]) == 0
    assert "AP 1.0000" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (b"{}", "expected a JSON list"),
    (b"[{\"image_id\": 1}]", "detection 0: missing category_id, bbox, score"),
    (b"[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3], \"score\": 1}]", "bbox must be"),
    (b"\xff\xfe[]", "not UTF-8"),
])
def test_bad_detections_file_is_one_line(tmp_path, capsys, content, message):
    write(tmp_path, clean_document())
    path = tmp_path / "dets.json"
    path.write_bytes(content)
    assert main(["evaluate", str(path), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spinenas: error: ") and str(path) in err and message in err
    assert len(err.strip().splitlines()) == 1


def test_read_detections_accepts_results_format(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5,
                                 "segmentation": []}]))
    assert read_detections(str(path)) == [{"image_id": 1, "category_id": 2, "bbox": [1.0, 2.0, 3.0, 4.0],
                                           "score": 0.5}]


def only_large(document):
    """The clean file with its small and medium objects removed: APs and APm have nothing to measure."""
    doc = copy.deepcopy(document)
    doc["annotations"] = [a for a in doc["annotations"] if a["area"] > 96 ** 2]
    return doc


def test_sizes_without_objects_are_none_not_zero(tmp_path):
    doc = only_large(clean_document())
    split = read_coco(*write(tmp_path, doc), keep_empty_categories=True)
    metrics = score_detections(split, as_detections(doc), per_class=True)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["APl"] == pytest.approx(1.0)
    assert metrics["APs"] is None and metrics["APm"] is None  # COCOeval's -1, not a score of 0
    assert metrics["per_class"] == {"cat": pytest.approx(1.0), "dog": None}  # every dog is small or medium
    # No detections at all: what can be measured scores 0, what cannot is still None.
    empty = score_detections(split, [], per_class=True)
    assert [empty[n] for n in METRIC_NAMES] == [0.0, 0.0, 0.0, None, None, 0.0]
    assert empty["per_class"] == {"cat": 0.0, "dog": None}


def test_evaluate_command_says_which_sizes_are_not_measured(tmp_path, capsys):
    doc = only_large(clean_document())
    write(tmp_path, doc)
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps(as_detections(doc)))
    assert main(["evaluate", str(detections), "--data", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["APs"] is None and report["APm"] is None and report["APl"] == pytest.approx(1.0)
    assert main(["evaluate", str(detections), "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "APs n/a (no small objects)" in out and "APm n/a (no medium objects)" in out and "APl 1.0000" in out


def test_evaluate_refuses_detections_of_no_image_in_the_split(tmp_path, capsys):
    # Another split's (or dataset's) results: scoring them would print AP 0 as if the detector were useless.
    doc = clean_document()
    write(tmp_path, doc)
    path = tmp_path / "other.json"
    path.write_text(json.dumps([{"image_id": 100 + i, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.5}
                                for i in range(8)]))
    assert main(["evaluate", str(path), "--data", str(tmp_path), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("spinenas: error: ")
    assert str(path) in err and "none of its 8 detections" in err and "val split" in err
    assert "100, 101, 102" in err and "(and 5 more)" in err
    # A file of which only some detections miss the split is still scored, the rest counted.
    path.write_text(json.dumps(as_detections(doc) + [{"image_id": 100, "category_id": 1, "bbox": [0, 0, 9, 9],
                                                      "score": 0.5}]))
    assert main(["evaluate", str(path), "--data", str(tmp_path)]) == 0
    assert "left out: 1 detections of images not in the split" in capsys.readouterr().out


def test_evaluate_names_the_splits_there_are(tmp_path, capsys):
    write(tmp_path, clean_document())
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(as_detections(clean_document())))
    assert main(["evaluate", str(path), "--data", str(tmp_path), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "--split test" in err and "instances_test.json" in err and "splits there: val" in err


def test_undefined_sizes_reach_consumers_as_none(tmp_path):
    # TensorBoard, a trial's objective value and metrics.json each see None, not a number.
    import types

    import tensorflow as tf

    from nas.trials import TrialFailed
    from nas.search.objective import Objective
    from nas.tasks.training import report_metrics

    metrics = {"AP": 0.5, "APs": None, "APm": 0.25, "APl": None}
    history = []
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    report_metrics(None, 3, {**metrics, "epoch": 1}, writer, history)
    writer.close()
    assert history == [{"step": 3, **metrics, "epoch": 1}]
    assert json.loads(json.dumps(metrics))["APs"] is None

    def objective(*names):
        return types.SimpleNamespace(experiment=types.SimpleNamespace(search=types.SimpleNamespace(metric_names=names)))

    assert Objective._values(objective("APm", "params"), {"params": 7.0}, metrics) == [0.25, 7.0]
    with pytest.raises(TrialFailed, match="objective APs has no value: the validation split has nothing it measures"):
        Objective._values(objective("APs"), {}, metrics)
