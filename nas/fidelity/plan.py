"""What a fidelity measurement trains: which genomes, at which fidelities, with which training seeds.

A plan is a list of work items, one per (genome, fidelity, seed). The genomes
are the experiment's seed genomes, ``r50-like`` when the space's output levels
and family are its own, then a seeded random sample of the space, so asking
for more genomes later extends the same list instead of drawing a new one.
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Callable, Optional

from nas.config import to_data
from nas.experiment.fingerprint import digest

@dataclasses.dataclass(frozen=True)
class Item:
    """One training run: a genome at one fidelity with one training seed, and what is known before training."""

    genome: object  # search_spaces.genome.Genome
    role: str  # seed (an experiment seed genome), reference (r50-like) or sample
    fidelity: str
    fidelity_fingerprint: str
    seed: int
    repeat: int  # 0 for the base seed, k for the k-th extra seed
    params: float
    multiply_adds: float
    settings: dict  # the fidelity's train config as plain data, seed included

    @property
    def key(self) -> str:
        """Identity of the work: the same key is never trained twice in a study."""
        return item_key(self.genome.fingerprint, self.fidelity, self.fidelity_fingerprint, self.seed)

    def attrs(self) -> dict:
        """The user attributes a queued trial carries (everything a worker needs to train it)."""
        return {"item": self.key, "genome": self.genome.to_yaml(), "fingerprint": self.genome.fingerprint,
                "role": self.role, "fidelity": self.fidelity, "fidelity_fingerprint": self.fidelity_fingerprint,
                "seed": self.seed, "repeat": self.repeat, "params": self.params,
                "multiply_adds": self.multiply_adds, "settings": self.settings}


# The queued attributes that make an item; copied when an orphaned item is queued again.
ITEM_ATTRS = ("item", "genome", "fingerprint", "role", "fidelity", "fidelity_fingerprint", "seed", "repeat",
              "params", "multiply_adds", "settings")


def item_key(fingerprint: str, fidelity: str, fidelity_fingerprint: str, seed: int) -> str:
    """``genome/fidelity@settings/seed``: a fidelity whose settings change is new work under the same name."""
    return f"{fingerprint}/{fidelity}@{fidelity_fingerprint}/{seed}"


def fidelity_fingerprint(train_config) -> str:
    """Hash of a fidelity's training settings, without the seed (an item's own) or the placement strategy."""
    data = to_data(train_config)
    training = data["task"].get("training", {})
    training.pop("seed", None)
    training.pop("strategy", None)
    return digest(data)


def current_settings(experiment) -> dict:
    """Fidelity name -> the fingerprint of its settings in ``experiment`` now (what runs must match to count)."""
    return {name: fidelity_fingerprint(config) for name, config in experiment.fidelity_configs().items()}


@dataclasses.dataclass
class Plan:
    """The genomes (with their roles), fidelities and work items of one measurement."""

    genomes: list  # (role, Genome), the seed genome first
    fidelities: dict  # name -> TrainConfig, cheapest first
    reference: str
    items: list
    notes: list  # lines for the user: what was left out and why

    @property
    def keys(self) -> set:
        """The keys of every planned item."""
        return {item.key for item in self.items}


def choose_genomes(experiment, count: int, constraint: Optional[Callable] = None) -> tuple[list, list]:
    """``count`` distinct genomes as ``(role, genome)`` pairs, and notes on what was left out.

    Seed genomes come first (always, even beyond ``count``), then ``r50-like``
    when the space's output levels and block family are its own (it is a
    point of comparison: it need not be one of the space's genomes), then
    random genomes of the space from ``random.Random(experiment.seed)``.
    """
    from spinenet.specs import SCALE_DECREASED_R50

    space = experiment.search_space.build()
    base_dir = os.path.dirname(experiment.source) if experiment.source else "."
    chosen, notes, seen = [], [], set()

    def add(role, genome):
        if genome.fingerprint not in seen:
            seen.add(genome.fingerprint)
            chosen.append((role, genome))

    for genome in experiment.search_space.load_seed_genomes(base_dir):
        add("seed", genome)
    r50 = SCALE_DECREASED_R50
    if (r50.min_level, r50.max_level, r50.family) == (space.min_level, space.max_level, space.family):
        add("reference", r50)
    else:
        notes.append(f"r50-like left out: its outputs are L{r50.min_level}-L{r50.max_level} of the "
                     f"{r50.family} family, the space's L{space.min_level}-L{space.max_level} of the {space.family} "
                     "family")
    if len(chosen) > count:
        notes.append(f"--genomes {count}: the {len(chosen)} seed and reference genomes are always measured")
    rng = random.Random(experiment.seed)
    draws = 0
    while len(chosen) < count:
        draws += 1
        if draws > 100 * count + 1000:
            notes.append(f"only {len(chosen)} distinct genomes found in {draws - 1} random draws")
            break
        add("sample", space.random_genome(rng, constraint))
    return chosen, notes


def make_plan(experiment, genomes: int, repeats: int = 0, repeats_all: int = 0,
              num_classes: Optional[dict] = None, genomes_at: Optional[dict] = None) -> Plan:
    """Every (genome, fidelity, seed) to train, genome by genome, with the seed genome's repeats spread among them.

    ``repeats`` extra seeds of the seed genome (the first seed genome, else the
    first genome) and ``repeats_all`` of every genome, at every fidelity the
    genome is measured at. ``genomes_at`` caps how many of the genomes (the
    first ones, in order) a fidelity measures, e.g. ``{"long": 20}``: a costly
    fidelity needs fewer points than a cheap one. ``num_classes`` maps fidelity
    names to their data's class count (for the head's cost); a search's
    ``constraints`` are applied at the reference fidelity.

    The seed genome's k-th repeat follows the 2k-th genome, so a measurement
    stopped early already knows its noise; repeats of every genome come last.
    """
    from nas.search.objective import ModelBudget
    from nas.tasks.base import model_cost

    configs = experiment.fidelity_configs()
    reference = experiment.reference_fidelity
    limits_at = dict(genomes_at or {})
    unknown = [name for name in limits_at if name not in configs]
    if unknown:
        raise ValueError(f"genomes_at names {unknown[0]!r}, not a fidelity of the experiment "
                         f"({', '.join(configs)})")
    small = [name for name, count in limits_at.items() if count < 1]
    if small:
        raise ValueError(f"genomes_at {small[0]}={limits_at[small[0]]}: a fidelity measures at least 1 genome")
    task = experiment.task_plugin
    classes = num_classes or {}
    limits = experiment.search.constraints
    budget = None
    if limits.max_params is not None or limits.max_multiply_adds is not None:
        budget = ModelBudget(task, configs[reference], classes.get(reference, 1), max_params=limits.max_params,
                             max_multiply_adds=limits.max_multiply_adds)
    chosen, notes = choose_genomes(experiment, genomes, budget)
    fingerprints = current_settings(experiment)
    costs = {}

    def item(role, genome, name, repeat):
        config = configs[name]
        if (genome.fingerprint, name) not in costs:
            total, _ = model_cost(task, genome, config, classes.get(name, 1))
            costs[genome.fingerprint, name] = (float(total.params), float(total.multiply_adds))
        settings = to_data(config)
        seed = settings["task"]["training"]["seed"] + repeat
        settings["task"]["training"]["seed"] = seed
        params, madds = costs[genome.fingerprint, name]
        return Item(genome, role, name, fingerprints[name], seed, repeat, params, madds, settings)

    def runs(index, repeat):
        role, genome = chosen[index]
        return [item(role, genome, name, repeat) for name in configs if index < limits_at.get(name, len(chosen))]

    items, pending = [], list(range(1, repeats + 1)) if chosen else []
    for index in range(len(chosen)):
        items.extend(runs(index, 0))
        if pending and index + 1 >= 2 * pending[0]:
            items.extend(runs(0, pending.pop(0)))
    for repeat in pending:
        items.extend(runs(0, repeat))
    for repeat in range(1, repeats_all + 1):
        for index in range(len(chosen)):
            if not (index == 0 and repeat <= repeats):
                items.extend(runs(index, repeat))
    return Plan(chosen, configs, reference, items, notes)
