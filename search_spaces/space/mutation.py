"""Variation inside a space: one random edit of a genome, and uniform crossover of two."""

from __future__ import annotations

import random
from typing import Mapping

from search_spaces.genome import Genome
from search_spaces.space.encoding import PARAMETER_PREFIXES, encode_genome, genome_from_params, lehmer_decode, \
    lehmer_encode


def mutate_genome(space, genome: Genome, rng: random.Random, max_tries: int = 20) -> Genome:
    """One random edit of ``genome`` that changes the network, staying inside ``space`` (see ``space.mutate``)."""
    params = encode_genome(space, genome)
    for _ in range(max_tries):
        child = genome_from_params(space, mutate_params(space, params, rng))
        if child.fingerprint != genome.fingerprint:
            return child
    return child


def mutate_params(space, params: Mapping[str, int], rng: random.Random) -> dict[str, int]:
    """:func:`mutate_genome` on the parameter encoding."""
    params = dict(params)
    edits = ["swap_intermediate", "swap_output", "parents", "level_shift", "block_fn"]
    available = [e for e in edits if any(name.startswith(PARAMETER_PREFIXES[e]) for name in space.parameters)]
    option_names = [n for n in space.parameters if n.rsplit("_", 1)[0] in space.block_options]
    edit = rng.choice(available + (["block_option"] if option_names else []))
    if edit == "block_option":
        name = rng.choice(option_names)
        low, high = space.parameters[name]
        params[name] = rng.choice([v for v in range(low, high + 1) if v != params[name]])
        return params
    if edit in ("swap_intermediate", "swap_output"):
        prefix = PARAMETER_PREFIXES[edit]
        digits = sorted((n for n in space.parameters if n.startswith(prefix)), key=lambda n: int(n.rsplit("_", 1)[1]))
        order = lehmer_decode([params[n] for n in digits], len(digits) + 1)
        i, j = rng.sample(range(len(order)), 2)
        order[i], order[j] = order[j], order[i]
        if edit == "swap_intermediate" and f"level_shift_{i + 1}" in params:
            # Move each block's shift with it, so the two blocks trade places.
            a, b = f"level_shift_{i + 1}", f"level_shift_{j + 1}"
            params[a], params[b] = params[b], params[a]
        params.update(zip(digits, lehmer_encode(order)))
    else:
        name = rng.choice([n for n in space.parameters if n.startswith(PARAMETER_PREFIXES[edit])])
        low, high = space.parameters[name]
        params[name] = rng.choice([v for v in range(low, high + 1) if v != params[name]])
    return params


def crossover(space, a: Genome, b: Genome, rng: random.Random) -> Genome:
    """Uniform crossover of two genomes' parameters (always a valid genome of ``space``)."""
    pa, pb = encode_genome(space, a), encode_genome(space, b)
    return genome_from_params(space, {name: (pa if rng.random() < 0.5 else pb)[name] for name in space.parameters})
