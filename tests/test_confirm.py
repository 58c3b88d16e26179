"""The confirmation stage: retrain the best genomes and the seeds over several training seeds, and judge them."""

from __future__ import annotations

import zlib

import pytest

from nas.cli import main
from nas.config import ConfigError
from nas.confirm import format_verdict, run_confirm
from nas.experiment import load_experiment
from nas.search import run_search
from tests.test_search import fake_metrics, fake_training, tiny_experiment


def _genome_ap(genome, seed: int, better: str = "") -> float:
    """A deterministic AP per genome and training seed: a genome-level value plus seed noise of +-0.005."""
    base = 0.30 + (zlib.crc32(genome.fingerprint.encode()) % 100) / 1000
    if genome.fingerprint == better:
        base += 0.2
    return base + ((seed * 7919) % 11 - 5) / 1000


def _searched(tmp_path, monkeypatch, confirm, n_trials=4, **search):
    """A tiny experiment with a confirm section whose search (faked training) is done."""
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"n_trials": n_trials, **search}, confirm=confirm)
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(_genome_ap(genome, 0)))
    run_search(load_experiment(path), log=lambda line: None)
    return path


def test_a_confirmation_trains_each_genome_per_seed_once_and_resumes(tmp_path, monkeypatch):
    path = _searched(tmp_path, monkeypatch, {"top_k": 2, "repeats": 3})
    trained = []

    def train(genome, config, out_dir, report=None):
        trained.append((genome.fingerprint, config["task"]["training"]["seed"]))
        if len(trained) == 4:
            raise KeyboardInterrupt  # killed in the middle
        return fake_metrics(_genome_ap(genome, config["task"]["training"]["seed"]))

    fake_training(monkeypatch, train)
    with pytest.raises(KeyboardInterrupt):
        run_confirm(load_experiment(path), log=lambda line: None)
    result = run_confirm(load_experiment(path), log=lambda line: None)
    # 1 seed genome + 2 candidates, 3 training seeds each: 9 runs, the interrupted one trained again, nothing else.
    assert len(trained) == 10 and len(set(trained)) == 9
    assert sorted({seed for _, seed in trained}) == [0, 1, 2]
    block = result["seeds"][0]
    assert len(block["runs"]) == 3 and [len(result["runs"][r["fingerprint"]]) for r in block["candidates"]] == [3, 3]
    again = run_confirm(load_experiment(path), log=lambda line: None)  # all done: nothing trains
    assert len(trained) == 10 and again["seeds"] == result["seeds"]


def test_a_clear_winner_is_confirmed_and_exported(tmp_path, monkeypatch, capsys):
    path = _searched(tmp_path, monkeypatch, {"top_k": 2, "repeats": 3})
    experiment = load_experiment(path)
    from nas.confirm import candidates

    best = candidates(experiment)[0][1].fingerprint
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        _genome_ap(genome, config["task"]["training"]["seed"], better=best)))
    assert main(["confirm", path]) == 0
    out = capsys.readouterr().out
    assert f"winner: {best} beats" in out and "p (Holm)" in out
    result = run_confirm(experiment, log=lambda line: None, train=False)
    row = next(r for r in result["seeds"][0]["candidates"] if r["fingerprint"] == best)
    assert row["beats_seed"] and row["comparison"]["ci"][0] > 0 and row["p_holm"] < 0.05
    assert main(["results", path]) == 0
    assert f"winner: {best} beats" in capsys.readouterr().out
    assert main(["export", path, "--confirmed", "--out", str(tmp_path / "winner")]) == 0
    from search_spaces.genome import Genome

    assert Genome.load(str(tmp_path / "winner" / "genome.yaml")).fingerprint == best


def test_no_winner_is_a_valid_result_in_one_line(tmp_path, monkeypatch, capsys):
    path = _searched(tmp_path, monkeypatch, {"top_k": 2, "repeats": 2})
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        0.4 + ((config["task"]["training"]["seed"] * 31) % 7) / 100))  # every genome alike: only seed noise
    result = run_confirm(load_experiment(path), log=lambda line: None)
    assert result["seeds"][0]["winner"] is None
    assert "no candidate beats seed.yaml beyond noise at this budget" in format_verdict(result)
    assert main(["export", path, "--confirmed", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to export: no candidate beats seed.yaml" in capsys.readouterr().err


def test_a_changed_confirm_section_is_new_work_and_old_runs_leave_the_verdict(tmp_path, monkeypatch):
    path = _searched(tmp_path, monkeypatch, {"top_k": 1, "repeats": 2})
    trained = []
    fake_training(monkeypatch, lambda genome, config, *a, **k: trained.append(config) or fake_metrics(0.4))
    run_confirm(load_experiment(path), log=lambda line: None)
    assert len(trained) == 4
    longer = load_experiment(path, ["confirm.settings={task.training.epochs: 2}"])
    result = run_confirm(longer, log=lambda line: None)
    assert len(trained) == 8 and all(c["task"]["training"]["epochs"] == 2 for c in trained[4:])
    assert all(len(runs) == 2 for runs in result["runs"].values())  # the epoch-1 runs are out of the verdict


@pytest.mark.parametrize("confirm, message", [
    ({"repeats": 1}, r"confirm.repeats: .*no variance to test with"),
    ({"top_k": 0}, r"confirm.top_k: must be at least 1, got 0"),
    ({"settings": {"search.n_trials": 3}}, r"confirm.settings.search.n_trials: .*model.\* or task.\*"),
])
def test_bad_confirm_sections_name_the_key(tmp_path, confirm, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(tiny_experiment(tmp_path, confirm=confirm))


def test_confirm_without_a_finished_search_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, confirm={"top_k": 1, "repeats": 2})
    assert main(["confirm", path]) == 2
    assert "spinenas search first" in capsys.readouterr().err
    missing = tiny_experiment(tmp_path, name="nodata", confirm={"data": str(tmp_path / "nowhere")})
    assert main(["confirm", missing]) == 2
    err = capsys.readouterr().err
    assert "instances_train.json" in err and "spinenas data import" in err


@pytest.mark.slow
def test_a_real_tiny_confirmation_trains_two_genomes_at_two_seeds(tmp_path, monkeypatch):
    # CI's end-to-end run: 64x64, width 0.25, the seed and one candidate at two training seeds, trained for real.
    path = _searched(tmp_path, monkeypatch, {"top_k": 1, "repeats": 2}, n_trials=2)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    result = run_confirm(load_experiment(path), log=lambda line: None)
    runs = result["runs"]
    assert len(runs) == 2 and all(len(v) == 2 for v in runs.values())
    assert all(0.0 <= v <= 1.0 for values in runs.values() for v in values)
    row = result["seeds"][0]["candidates"][0]
    assert row["comparison"] is not None and row["p_holm"] is not None


def test_a_search_with_a_confirm_section_ends_with_the_verdict(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tiny_experiment(tmp_path, search={"n_trials": 3}, confirm={"top_k": 1, "repeats": 2})
    fake_training(monkeypatch, lambda genome, config, *a, **k: fake_metrics(
        _genome_ap(genome, config["task"]["training"]["seed"])))
    assert main(["search", path, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "confirming the best genomes" in out and "against seed.yaml" in out
    assert "beyond noise at this budget" in out
