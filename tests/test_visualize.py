"""Permutation graphs, diagrams and search reports (headless)."""

import os

import networkx as nx
import numpy as np
import optuna
import pytest
from PIL import Image

from nas.cli import main
from search_spaces.genome import Genome
from spinenet import SPINENET_49
from spinenet.specs import SCALE_DECREASED_R50
from visualize.draw import draw_genome, draw_genomes
from visualize.graph import genome_graph, write_graph
from visualize.report import write_report


def test_spinenet49_graph_counts():
    graph = genome_graph(SPINENET_49)
    kinds = [d["kind"] for _, d in graph.nodes(data=True)]
    # 2 stem nodes + 15 blocks + 5 endpoints.
    assert (kinds.count("stem"), kinds.count("block"), kinds.count("endpoint")) == (2, 15, 5)
    edges = [d["kind"] for *_, d in graph.edges(data=True)]
    # 1 stem link + 2 parents for each of 15 blocks + 1 implicit merge (block 10 into block 13) + 5 endpoints.
    assert (edges.count("stem"), edges.count("parent"), edges.count("merge"), edges.count("endpoint")) == (1, 30, 1, 5)
    assert graph.has_edge("block10", "block13") and graph.edges["block10", "block13"]["kind"] == "merge"
    assert graph.edges["block5", "block7"]["direction"] == "up"  # level 6 -> 5
    assert graph.edges["block1", "block3"]["direction"] == "down"  # level 2 -> 3
    assert nx.is_directed_acyclic_graph(graph)


def test_dead_blocks_are_marked():
    genome = Genome.from_block_specs(SPINENET_49.to_block_specs() + [(6, "residual", (3, 4), False)])
    assert genome_graph(genome).nodes["block16"]["live"] is False


def test_graphml_round_trip(tmp_path):
    graph = genome_graph(SPINENET_49)
    write_graph(graph, str(tmp_path / "g.graphml"))
    again = nx.read_graphml(tmp_path / "g.graphml")
    assert dict(again.nodes(data=True)) == dict(graph.nodes(data=True))
    assert {(u, v): d for u, v, d in again.edges(data=True)} == {(u, v): d for u, v, d in graph.edges(data=True)}
    # read_graphml adds empty node_default/edge_default entries of its own.
    assert {k: v for k, v in again.graph.items() if not k.endswith("_default")} == graph.graph


def test_dot_export(tmp_path):
    write_graph(genome_graph(SPINENET_49), str(tmp_path / "g.dot"))
    text = (tmp_path / "g.dot").read_text()
    assert text.startswith(("digraph", "strict digraph")) and "block15" in text and "endpoint7" in text


def assert_real_image(path, min_side=400, min_ink=0.01):
    image = np.asarray(Image.open(path).convert("L"))
    assert min(image.shape) >= min_side
    assert (image < 200).mean() > min_ink  # not blank


@pytest.mark.parametrize("extension", ["png", "svg", "pdf"])
def test_draw_genome_formats(tmp_path, extension):
    path = tmp_path / f"spinenet.{extension}"
    figure = draw_genome(SPINENET_49, str(path), title="SpineNet-49")
    assert path.stat().st_size > 10_000
    assert "21.92 M params" in figure.axes[0].get_title()
    if extension == "png":
        assert_real_image(path)


def test_draw_side_by_side_and_large_genomes(tmp_path):
    draw_genomes([SCALE_DECREASED_R50, SPINENET_49], ["R50-like", "SpineNet-49"], path=str(tmp_path / "pair.png"))
    assert_real_image(tmp_path / "pair.png")
    from search_spaces.space import ScalePermutedSpace

    big = ScalePermutedSpace(intermediate_levels=[2, 3, 4, 5] * 13, parent_window=6).random_genome(
        __import__("random").Random(0))
    assert len(big.blocks) == 57
    figure = draw_genome(big, str(tmp_path / "big.png"))
    assert figure.get_size_inches()[0] > 20
    assert_real_image(tmp_path / "big.png")


@pytest.mark.parametrize("path, message", [
    ("out.jpg", "unknown image format 'jpg'"),
    ("no/such/folder/out.png", "folder .* does not exist"),
])
def test_bad_image_paths(tmp_path, path, message):
    with pytest.raises(ValueError, match=message):
        draw_genome(SPINENET_49, str(tmp_path / path))


def test_bad_graph_format(tmp_path):
    with pytest.raises(ValueError, match="unknown graph format 'gexf'"):
        write_graph(genome_graph(SPINENET_49), str(tmp_path / "g.gexf"))


def test_draw_cli(tmp_path, capsys):
    assert main(["draw", "--model-id", "49", "-o", str(tmp_path / "s.png")]) == 0
    assert_real_image(tmp_path / "s.png")
    genome_file = tmp_path / "g.yaml"
    SPINENET_49.save(genome_file)
    assert main(["draw", "--genome", str(genome_file), "-o", str(tmp_path / "g.svg")]) == 0
    assert main(["draw", "--genome", "spinenet-49", "--format", "graphml", "-o", str(tmp_path / "g.graphml")]) == 0
    assert nx.read_graphml(tmp_path / "g.graphml").number_of_nodes() == 22
    capsys.readouterr()
    assert main(["draw", "--model-id", "49", "-o", str(tmp_path / "s.bmp")]) == 2
    assert "unknown image format 'bmp'" in capsys.readouterr().err
    assert main(["draw", "-o", str(tmp_path / "x.png")]) == 2
    assert "choose what to draw" in capsys.readouterr().err


def synthetic_study(tmp_path, trials=24, value=None, noise_params=False):
    """A stored study shaped like a real search's (user attributes as nas.search writes them).

    ``value(genome, rng)`` gives a trial's AP (default: uniform noise); ``noise_params`` records a
    random parameter count instead of the genome's.
    """
    import random

    from search_spaces.space import ScalePermutedSpace
    from spinenet.cost import network_cost

    space = ScalePermutedSpace()
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(storage=storage, study_name="synthetic", direction="maximize")
    study.set_user_attr("metrics", ["AP"])
    rng = random.Random(0)
    for number in range(trials):
        genome = SPINENET_49 if number == 0 else space.random_genome(rng)
        params = space.encode(genome)
        cost = network_cost(genome, 128, filter_size_scale=0.25)
        ap = 0.2 + 0.3 * rng.random() if value is None else value(genome, rng)
        attrs = {"genome": genome.to_yaml(), "fingerprint": genome.fingerprint,
                 "params": rng.uniform(1e6, 3e6) if noise_params else cost.params,
                 "multiply_adds": cost.multiply_adds, "metrics": {"AP": ap}}
        if number == 0:
            attrs["seed_genome"] = genome.fingerprint
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={n: optuna.distributions.IntDistribution(*r) for n, r in space.parameters.items()},
            value=ap, user_attrs=attrs))
    return storage


def test_report_writes_one_page(tmp_path, capsys):
    storage = synthetic_study(tmp_path)
    out = tmp_path / "report"
    assert main(["report", "--storage", storage, "--study-name", "synthetic", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    for name in ("ap_vs_cost.png", "history.png", "importances.png", "timeline.png"):
        assert f'src="{name}"' in page, name
        assert_real_image(out / name, min_side=300, min_ink=0.003)
    best = optuna.load_study(study_name="synthetic", storage=storage).best_trial.number
    assert f'src="trial_{best:05d}.png"' in page and (out / f"trial_{best:05d}.yaml").exists()
    assert page.split("<h2>Proxies")[0].count("<tr") == 11  # header + top 10
    assert "Proxies against the trained objective" in page and "partial_dependence.png" in page
    assert "out-of-fold over 24 trials, 5 folds" in page  # what the importances rest on
    assert "Not drawn" not in page and "are not drawn" not in page


def test_report_below_the_minimum_shows_a_note_not_a_chart(tmp_path):
    storage = synthetic_study(tmp_path, trials=12)
    out = tmp_path / "report"
    assert main(["report", "--storage", storage, "--study-name", "synthetic", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "need at least 20 complete trials (5 folds of 4 held-out trials), this study has 12." in page
    assert "importances.png" not in page and "partial_dependence.png" not in page
    assert not (out / "importances.png").exists() and not (out / "partial_dependence.png").exists()
    assert 'src="history.png"' in page  # the other plots are still drawn


def test_out_of_fold_importance_finds_the_informative_feature(tmp_path):
    """AP follows the residual share plus noise; the recorded params are pure noise.

    A surrogate scored on its own training trials (as the report once did) gives the noise
    column 0.08 here and, on a pure-noise objective, calls multiply-adds important (0.59).
    """
    from search_spaces.features import genome_features
    from visualize.importance import importances

    def value(genome, rng):
        return 0.2 + 0.3 * genome_features(genome, 0, 0)["residual_share"] + 0.03 * rng.gauss(0, 1)

    storage = synthetic_study(tmp_path, trials=40, value=value, noise_params=True)
    rows = {name: mean for name, mean, _ in importances(optuna.load_study(study_name="synthetic", storage=storage))}
    assert max(rows, key=rows.get) == "residual_share" and rows["residual_share"] > 0.4
    assert abs(rows["params"]) < 0.03  # shuffling noise grows no held-out error
    assert max(v for k, v in rows.items() if k != "residual_share") < 0.1

    (tmp_path / "noise").mkdir()
    noise = synthetic_study(tmp_path / "noise", trials=24)
    rows = importances(optuna.load_study(study_name="synthetic", storage=noise))
    assert all(mean < 0.1 for _, mean, _ in rows), rows  # nothing explains noise out of fold


def test_draw_trial_of_a_study(tmp_path):
    storage = synthetic_study(tmp_path)
    assert main(["draw", "--storage", storage, "--study-name", "synthetic", "--trial", "0",
                 "-o", str(tmp_path / "t0.png")]) == 0
    assert_real_image(tmp_path / "t0.png")
    assert main(["draw", "--storage", storage, "--study-name", "synthetic", "--trial", "99",
                 "-o", str(tmp_path / "t.png")]) == 2
