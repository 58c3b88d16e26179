"""Categories: empty ones left out of the head (and reported), selection and renaming by name."""

import json

import numpy as np
import pytest
from PIL import Image

from nas.config import ConfigError
from nas.tasks.base import DataError
from nas.tasks.detection.annotations import read_coco
from nas.experiment import load_train_config
from nas.tasks.detection.dataset import prepare_data

CATEGORIES = [{"id": 4, "name": "car"}, {"id": 9, "name": "truck"}, {"id": 2, "name": "person"},
              {"id": 30, "name": "zebra"}]


def write_split(root, split, objects):
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64)).save(folder / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}], "categories": CATEGORIES,
           "annotations": [{"id": i, "image_id": 1, "category_id": c, "bbox": [i * 4, 2, 10, 10]}
                           for i, c in enumerate(objects)]}
    (root / f"instances_{split}.json").write_text(json.dumps(doc))


@pytest.fixture
def root(tmp_path):
    write_split(tmp_path, "train", [4, 4, 9, 2])          # no zebra in training
    write_split(tmp_path, "val", [4, 9, 30, 2, 2])
    return tmp_path


def config(root, *extra):
    return load_train_config(None, [f"task.data.root={root}", "task.data.generate_shapes=null", *extra]).task.data


def test_empty_categories_are_left_out_and_reported(root, capsys):
    train, val = prepare_data(config(root), progress=True)
    assert train.category_names == ["person", "car", "truck"] and train.category_ids == [2, 4, 9]
    assert train.empty_categories == ["zebra"]
    assert val.category_names == train.category_names
    assert val.skipped == {"annotations of categories not scored": 1}
    out = capsys.readouterr().out
    assert "left out (no usable annotations): zebra" in out
    assert "  car     2" in out and "  person  1" in out


def test_keep_empty_categories(root):
    train, val = prepare_data(config(root, "task.data.keep_empty_categories=true"))
    assert train.category_names == ["person", "car", "truck", "zebra"] and train.empty_categories == []
    assert val.class_counts() == {"person": 2, "car": 1, "truck": 1, "zebra": 1}


def test_select_and_rename_categories(root):
    train, val = prepare_data(config(root, "task.data.categories=[truck, car]"))
    assert train.category_names == ["truck", "car"] and train.class_counts() == {"truck": 1, "car": 2}
    assert val.class_counts() == {"truck": 1, "car": 1}
    assert train.skipped == {"annotations of categories not selected": 1}

    train, val = prepare_data(config(root, "task.data.categories={car: vehicle, truck: vehicle, person: human}"))
    assert train.category_names == ["human", "vehicle"] and train.class_counts() == {"human": 1, "vehicle": 3}
    assert train.category_ids == [2, 4]  # a merged class keeps its first category id
    assert val.class_counts() == {"human": 2, "vehicle": 2}
    np.testing.assert_array_equal(val.labels[0], [1, 1, 0, 0])


def test_unknown_category_name_is_a_clear_error(root):
    with pytest.raises(DataError, match=r"instances_train.json: task.data.categories names 'cars'.*did you mean 'car'"):
        prepare_data(config(root, "task.data.categories=[cars]"))
    with pytest.raises(ConfigError, match="categories: empty"):
        config(root, "task.data.categories=[]")


def test_shapes_defaults_unchanged(tmp_path):
    # The default data section still reads the shapes dataset with all six classes.
    data = load_train_config(None, [f"task.data.root={tmp_path}/s", "task.data.generate_shapes={train: 8, val: 2}",
                                    "task.data.image_size=64"]).task.data
    assert data.categories is None and data.keep_empty_categories is False
    train, _ = prepare_data(data)
    assert train.num_classes + len(train.empty_categories) == 6


def test_category_entries_need_integer_ids(tmp_path):
    write_split(tmp_path, "train", [4])
    doc = json.loads((tmp_path / "instances_train.json").read_text())
    doc["categories"][0]["id"] = "4"
    (tmp_path / "instances_train.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"categories\[0\] needs an integer 'id'"):
        read_coco(str(tmp_path / "instances_train.json"), str(tmp_path / "train"))


def test_per_class_ap_names_follow_category_ids_when_listed_out_of_id_order(root):
    from nas.tasks.detection.coco import score_detections

    # truck (id 9) listed before car (id 4): labels are [truck, car], COCOeval's classes [car (4), truck (9)].
    _, val = prepare_data(config(root, "task.data.categories=[truck, car]"))
    assert val.category_names == ["truck", "car"] and val.category_ids == [9, 4]
    doc = json.loads((root / "instances_val.json").read_text())
    cars = [{"image_id": 1, "category_id": 4, "bbox": a["bbox"], "score": 0.9}
            for a in doc["annotations"] if a["category_id"] == 4]
    per_class = score_detections(val, cars, per_class=True)["per_class"]
    assert per_class == {"truck": 0.0, "car": pytest.approx(1.0)}
