"""``--data DIR``: a dataset folder in place of ``--set task.data.root=DIR --set task.data.generate_shapes=null``."""

from __future__ import annotations

import json
import os

import pytest

from nas.cli import build_parser, main
from nas.commands.common import experiment_from_args
from tests.test_search import TINY_GENOME, fake_metrics, fake_training, tiny_experiment

TWO_SETS = ["--set", "task.data.root={}", "--set", "task.data.generate_shapes=null"]


def coco_layout(folder) -> str:
    """The files and folders of a COCO-format dataset, empty: enough for everything that reads no image."""
    for split in ("train", "val"):
        os.makedirs(folder / split)
        (folder / f"instances_{split}.json").write_text(json.dumps({"images": [], "annotations": [],
                                                                    "categories": []}))
    return str(folder)


def command_line(command: str, path: str, tmp_path) -> list[str]:
    """``spinenas COMMAND FILE`` with what the command needs besides (a worker names its study)."""
    extra = ["--storage", f"sqlite:///{tmp_path}/study.db", "--study-name", "tiny"] if command == "worker" else []
    return [command, path, *extra]


def one_error_line(err: str) -> str:
    """The single ``spinenas: error:`` line a refused command printed (and no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spinenas: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("command", ["search", "worker", "confirm", "fidelity", "validate"])
def test_data_loads_the_experiment_the_two_set_options_load(tmp_path, command):
    data = coco_layout(tmp_path / "mine")
    path = tiny_experiment(tmp_path, confirm={"top_k": 1, "repeats": 2})
    parser = build_parser()
    by_data, data_overrides = experiment_from_args(parser.parse_args([*command_line(command, path, tmp_path),
                                                                      "--data", data]))
    by_sets, _ = experiment_from_args(parser.parse_args([*command_line(command, path, tmp_path),
                                                         *(a.format(data) for a in TWO_SETS)]))
    assert by_data.fingerprint == by_sets.fingerprint
    assert by_data.to_data() == by_sets.to_data()
    assert by_data.task.data.root == data and by_data.task.data.generate_shapes is None
    # The overrides handed to workers (and to the confirmation's) carry the folder too.
    from nas.experiment import load_experiment

    assert load_experiment(path, data_overrides).fingerprint == by_sets.fingerprint


def test_a_trailing_slash_names_the_same_folder_and_the_same_experiment(tmp_path):
    data = coco_layout(tmp_path / "mine")
    path = tiny_experiment(tmp_path)
    parser = build_parser()
    plain, _ = experiment_from_args(parser.parse_args(["validate", path, "--data", data]))
    slashed, _ = experiment_from_args(parser.parse_args(["validate", path, "--data", data + os.sep]))
    assert slashed.fingerprint == plain.fingerprint and slashed.task.data.root == data


def test_data_wins_over_a_set_of_its_keys_and_set_refines_the_rest(tmp_path):
    data = coco_layout(tmp_path / "mine")
    path = tiny_experiment(tmp_path)
    args = build_parser().parse_args(["validate", path, "--data", data, "--set", "task.data.root=elsewhere",
                                      "--set", "task.data.image_size=96"])
    experiment, _ = experiment_from_args(args)
    assert experiment.task.data.root == data and experiment.task.data.image_size == 96


def test_validate_with_data_prints_the_fingerprint_of_the_two_set_options(tmp_path, capsys):
    data = coco_layout(tmp_path / "mine")
    path = tiny_experiment(tmp_path)
    assert main(["validate", path, *(a.format(data) for a in TWO_SETS)]) == 0
    by_sets = capsys.readouterr().out
    assert main(["validate", path, "--data", data]) == 0
    by_data = capsys.readouterr().out
    assert by_data == by_sets and f"data {data}" in by_data


def test_train_with_data_trains_on_the_config_of_the_two_set_options(tmp_path, monkeypatch, capsys):
    from nas.tasks import get_task

    data = coco_layout(tmp_path / "mine")
    trained = []
    monkeypatch.setattr(get_task("detection"), "train_and_evaluate",
                        lambda genome, config, **kwargs: trained.append(config) or {})
    assert main(["train", "--data", data, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["train", *(a.format(data) for a in TWO_SETS), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    capsys.readouterr()
    assert trained[0] == trained[1]
    assert trained[0].task.data.root == data and trained[0].task.data.generate_shapes is None


def _storage_with_a_study(tmp_path) -> bytes:
    """The tiny experiment's storage, holding a study already (what a refused command must leave alone)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/study.db", study_name="recorded")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    return (tmp_path / "study.db").read_bytes()


@pytest.mark.parametrize("missing, named", [
    ("instances_train.json", "no instances_train.json"),
    ("instances_val.json", "no instances_val.json"),
    ("train", "no train/"),
    ("val", "no val/"),
])
@pytest.mark.parametrize("command", ["search", "confirm", "fidelity", "train"])
def test_a_folder_not_in_the_coco_layout_is_refused_in_one_line(tmp_path, monkeypatch, capsys, command, missing,
                                                                 named):
    import shutil

    monkeypatch.chdir(tmp_path)
    data = coco_layout(tmp_path / "mine")
    target = tmp_path / "mine" / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    path = tiny_experiment(tmp_path, confirm={"top_k": 1, "repeats": 2})
    recorded = _storage_with_a_study(tmp_path)
    argv = (["train", "--config", path, "--out", str(tmp_path / "out")] if command == "train"
            else [command, path, "--workers", "1"])
    assert main([*argv, "--data", data]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--data {data}: {named} " in line
    assert "spinenas data import voc|yolo SRC --out DIR" in line
    assert (tmp_path / "study.db").read_bytes() == recorded  # nothing recorded is touched
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()  # nothing started


def test_a_held_out_evaluation_needs_the_test_split_in_the_folder(tmp_path, capsys):
    data = coco_layout(tmp_path / "mine")
    assert main(["train", "--data", data, "--evaluate-on", "test", "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--data {data}: no instances_test.json " in line and "spinenas data import" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["search", "confirm", "fidelity", "train", "validate"])
def test_a_folder_that_does_not_exist_is_refused_in_one_line(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, confirm={"top_k": 1, "repeats": 2})
    nowhere = str(tmp_path / "nowhere")
    argv = ["train", "--out", str(tmp_path / "out")] if command == "train" else [command, path]
    assert main([*argv, "--data", nowhere]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--data: {nowhere}: no such folder" in line
    assert f"spinenas data import voc|yolo SRC --out {nowhere}" in line
    assert not (tmp_path / "study.db").exists() and not (tmp_path / "out").exists()


def test_a_classification_folder_is_checked_in_its_own_layout(tmp_path, capsys):
    data = tmp_path / "photos"
    (data / "train" / "cat").mkdir(parents=True)
    path = tiny_experiment(tmp_path, task={"name": "classification", "data": {"image_size": 64}, "head": {},
                                           "training": {"epochs": 1}, "evaluation": {}})
    assert main(["validate", path, "--data", str(data)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--data {data}: no val/ " in line and "train/<class>/ and val/<class>/" in line


def test_search_confirm_results_and_export_on_ones_own_data(tmp_path, monkeypatch, capsys):
    # The walk-through of docs/own-data.md with training faked: every command given the same --data means the
    # same experiment, so confirm, results and export find the search and its confirmation.
    from nas.tasks.detection.shapes import write_shapes_dataset
    from search_spaces.genome import Genome

    monkeypatch.chdir(tmp_path)
    data = str(tmp_path / "mine")
    write_shapes_dataset(data, train=24, val=8, image_size=64, seed=0)
    path = tiny_experiment(tmp_path, search={"n_trials": 2}, confirm={"top_k": 1, "repeats": 2})
    roots = []

    def train(genome, config, out_dir, report=None):  # any searched genome beats the seed genome by far
        roots.append(config["task"]["data"]["root"])
        ap = 0.1 if genome.fingerprint == TINY_GENOME.fingerprint else 0.5
        return fake_metrics(ap + config["task"]["training"]["seed"] / 1000)

    fake_training(monkeypatch, train)
    assert main(["search", path, "--data", data, "--workers", "1"]) == 0
    assert "winner: " in capsys.readouterr().out
    assert len(roots) >= 2 + 4 and set(roots) == {data}  # the search's trials and the confirmation's runs
    assert main(["confirm", path, "--data", data, "--report"]) == 0
    assert "winner: " in capsys.readouterr().out
    assert main(["results", path, "--data", data]) == 0
    assert "winner: " in capsys.readouterr().out
    assert main(["export", path, "--confirmed", "--data", data, "--out", str(tmp_path / "winner")]) == 0
    assert Genome.load(str(tmp_path / "winner" / "genome.yaml")).fingerprint != TINY_GENOME.fingerprint
    capsys.readouterr()
    # Without --data the file names the experiment on generated shapes, which was never confirmed.
    assert main(["results", path]) == 0
    assert "winner: " not in capsys.readouterr().out
    assert main(["export", path, "--confirmed", "--out", str(tmp_path / "other")]) == 2
    assert "made by a different experiment" in capsys.readouterr().err


def test_an_interrupted_confirmation_says_to_resume_it_with_the_same_data(tmp_path, monkeypatch, capsys):
    from nas.tasks.detection.shapes import write_shapes_dataset

    monkeypatch.chdir(tmp_path)
    data = str(tmp_path / "mine")
    write_shapes_dataset(data, train=24, val=8, image_size=64, seed=0)
    path = tiny_experiment(tmp_path, search={"n_trials": 2}, confirm={"top_k": 1, "repeats": 2})

    def train(genome, config, out_dir, report=None):
        if os.sep + "confirm" + os.sep in out_dir:  # the confirmation's first run: Ctrl-C
            raise KeyboardInterrupt
        return fake_metrics(0.3)

    fake_training(monkeypatch, train)
    assert main(["search", path, "--data", data, "--workers", "1"]) == 130
    assert f"spinenas confirm {path} --data {data} resumes them" in capsys.readouterr().out
