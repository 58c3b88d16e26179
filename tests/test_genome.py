"""Genome: validation errors, serialization round trips, resolved graph and fingerprint."""

import random
import subprocess
import sys

import pytest

from search_spaces.block_spec import BlockSpec
from search_spaces.genome import Genome
from search_spaces.genome_rules import GenomeError
from spinenet import SPINENET_49
from tests.conftest import random_genome

SPINENET_49_TUPLES = [
    (2, "bottleneck", (0, 1), False), (4, "residual", (0, 1), False), (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False), (6, "residual", (3, 5), False), (4, "bottleneck", (3, 5), False),
    (5, "residual", (6, 7), False), (7, "residual", (6, 8), False), (5, "bottleneck", (8, 9), False),
    (5, "bottleneck", (8, 10), False), (4, "bottleneck", (5, 10), True), (3, "bottleneck", (4, 10), True),
    (5, "bottleneck", (7, 12), True), (7, "bottleneck", (5, 14), True), (6, "bottleneck", (12, 14), True),
]


def replace_block(genome, number, **changes):
    specs = [list(s) for s in genome.to_block_specs()]
    spec = specs[number - 1]
    for key, value in changes.items():
        spec[["level", "block_fn", "input_offsets", "is_output"].index(key)] = value
    return [tuple(s) for s in specs]


def test_seed_genome_matches_reference_specs():
    assert SPINENET_49.to_block_specs() == SPINENET_49_TUPLES
    assert (SPINENET_49.min_level, SPINENET_49.max_level, SPINENET_49.num_init_blocks) == (3, 7, 2)
    assert SPINENET_49.num_nodes == 17


@pytest.mark.parametrize("fmt", ["yaml", "json", "dict", "specs"])
def test_round_trips(fmt, rng):
    for genome in [SPINENET_49] + [random_genome(rng) for _ in range(20)]:
        if fmt == "yaml":
            back = Genome.from_yaml(genome.to_yaml())
        elif fmt == "json":
            back = Genome.from_json(genome.to_json())
        elif fmt == "dict":
            back = Genome.from_dict(genome.to_dict())
        else:
            back = Genome.from_block_specs(genome.to_block_specs(), min_level=genome.min_level,
                                           max_level=genome.max_level)
        assert back == genome
        assert back.fingerprint == genome.fingerprint


def test_save_and_load_files(tmp_path):
    for name in ("g.yaml", "g.json"):
        SPINENET_49.save(tmp_path / name)
        assert Genome.load(tmp_path / name) == SPINENET_49


def test_blocks_as_mappings_are_accepted():
    data = SPINENET_49.to_dict()
    data["blocks"] = [dict(zip(["level", "block_fn", "input_offsets", "is_output"], b)) for b in data["blocks"]]
    assert Genome.from_dict(data) == SPINENET_49


@pytest.mark.parametrize(
    "specs, message",
    [
        (replace_block(SPINENET_49, 3, input_offsets=(2, 4)), r"block 3 \(node 4\): input offset 4 points at itself"),
        (replace_block(SPINENET_49, 3, input_offsets=(2, 9)), r"block 3 \(node 4\): input offset 9 points at a later node"),
        (replace_block(SPINENET_49, 5, input_offsets=(3, 3)), r"block 5: repeated parent 3"),
        (replace_block(SPINENET_49, 2, input_offsets=(0, -1)), r"block 2: input offset -1 is negative"),
        (replace_block(SPINENET_49, 4, block_fn="bottelneck"), r"block 4: unknown block fn 'bottelneck' \(did you mean 'bottleneck'\?\)"),
        (replace_block(SPINENET_49, 6, level=8), r"block 6: level 8 is outside the filter map"),
        (replace_block(SPINENET_49, 15, level=5), r"block 15: duplicate output level 5 \(block 13"),
        (replace_block(SPINENET_49, 15, is_output=False), r"no output block for level\(s\) \[6\]"),
        (replace_block(SPINENET_49, 12, level=2), r"block 12: output at level 2 is outside \[min_level, max_level\] = \[3, 7\]"),
        (replace_block(SPINENET_49, 1, input_offsets=(0, 1, 2)), r"block 1: needs exactly 2 input offsets"),
        (replace_block(SPINENET_49, 1, level="2"), r"block 1: level must be an integer"),
        ([], r"genome has no blocks"),
    ],
)
def test_validation_names_block_and_rule(specs, message):
    with pytest.raises(GenomeError, match=message):
        Genome.from_block_specs(specs)


def test_genome_error_is_value_error():
    assert issubclass(GenomeError, ValueError)


def test_level_range_and_stem_checked():
    with pytest.raises(GenomeError, match="min_level <= max_level"):
        Genome.from_block_specs(SPINENET_49_TUPLES, min_level=5, max_level=4)
    with pytest.raises(GenomeError, match="num_init_blocks must be at least 2"):
        Genome.from_block_specs(SPINENET_49_TUPLES, num_init_blocks=1)
    with pytest.raises(GenomeError, match="stem: unknown block fn 'conv'"):
        Genome.from_block_specs(SPINENET_49_TUPLES, init_block_fn="conv")


def test_dict_errors_name_the_key():
    data = SPINENET_49.to_dict()
    data["max_levle"] = 7
    with pytest.raises(GenomeError, match=r"unknown genome key 'max_levle' \(did you mean 'max_level'\?\)"):
        Genome.from_dict(data)
    data = SPINENET_49.to_dict()
    data["blocks"][2] = {"level": 3, "block_fn": "bottleneck", "inputs": [2, 3]}
    with pytest.raises(GenomeError, match=r"block 3: unknown key 'inputs'"):
        Genome.from_dict(data)
    with pytest.raises(GenomeError, match="malformed YAML"):
        Genome.from_yaml("blocks: [[2, bottleneck, [0, 1], false]\n  - oops")
    with pytest.raises(GenomeError, match="must be a mapping"):
        Genome.from_yaml("- 1\n- 2\n")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(GenomeError, match="missing.yaml: cannot read genome file"):
        Genome.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPINENET_49.to_yaml().replace("[5, 14]", "[5, 40]"))
    with pytest.raises(GenomeError, match=r"bad.yaml: block 14 \(node 15\): input offset 40"):
        Genome.load(bad)


def test_genome_is_immutable_and_hashable():
    with pytest.raises(AttributeError):
        SPINENET_49.min_level = 2
    assert len({SPINENET_49, Genome.from_block_specs(SPINENET_49_TUPLES)}) == 1
    assert isinstance(SPINENET_49.blocks[0], BlockSpec)


def test_resolved_graph_of_seed():
    graph = SPINENET_49.resolve()
    assert all(node.live for node in graph.nodes)
    assert graph.endpoints == {3: 13, 4: 12, 5: 14, 6: 16, 7: 15}
    # Block 10 (node 11, level 5 bottleneck) feeds nothing, so the level-5 output absorbs it.
    assert graph.nodes[14].merged == (11,)
    assert sum(len(n.merged) for n in graph.nodes) == 1


def test_unreachable_block_is_not_live():
    specs = SPINENET_49_TUPLES + [(6, "residual", (3, 4), False)]
    graph = Genome.from_block_specs(specs).resolve()
    assert not graph.nodes[17].live


def test_fingerprint_ignores_parent_order():
    swapped = [(lvl, fn, (b, a), out) for lvl, fn, (a, b), out in SPINENET_49_TUPLES]
    assert Genome.from_block_specs(swapped).fingerprint == SPINENET_49.fingerprint


def test_fingerprint_ignores_dead_blocks():
    specs = SPINENET_49_TUPLES + [(6, "residual", (3, 4), False)]
    assert Genome.from_block_specs(specs).fingerprint == SPINENET_49.fingerprint


def test_fingerprint_ignores_order_of_independent_blocks():
    a = [(3, "bottleneck", (0, 1), False), (5, "residual", (0, 1), False),
         (3, "bottleneck", (2, 3), True), (4, "residual", (2, 3), True), (5, "residual", (3, 4), True),
         (6, "residual", (4, 5), True), (7, "residual", (5, 6), True)]
    # Swap blocks 1 and 2 (both read only the stem) and renumber every reference to them.
    renumber = {2: 3, 3: 2}
    b = [a[1], a[0]] + [(l, f, tuple(renumber.get(p, p) for p in ps), o) for l, f, ps, o in a[2:]]
    assert Genome.from_block_specs(a).fingerprint == Genome.from_block_specs(b).fingerprint
    assert Genome.from_block_specs(a) != Genome.from_block_specs(b)


def test_fingerprint_separates_different_networks(rng):
    changed = [
        replace_block(SPINENET_49, 2, block_fn="bottleneck"),
        replace_block(SPINENET_49, 5, level=7),
        replace_block(SPINENET_49, 11, input_offsets=(6, 10)),
    ]
    prints = {SPINENET_49.fingerprint} | {Genome.from_block_specs(s).fingerprint for s in changed}
    assert len(prints) == 4
    randoms = {random_genome(random.Random(i)).fingerprint for i in range(300)}
    assert len(randoms) >= 295


def test_fingerprint_is_stable_across_releases():
    # Stored studies look results up by fingerprint: changing the hash silently breaks them.
    assert SPINENET_49.fingerprint == "c2050b6cf2962013"


def test_genome_and_cost_model_do_not_import_tensorflow():
    code = ("import sys, search_spaces, spinenet, spinenet.cost; "
            "from spinenet.cost import count_params; count_params(spinenet.SPINENET_49); "
            "bad = [m for m in ('tensorflow', 'tf_keras', 'optuna') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
