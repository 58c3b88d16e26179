"""Benchmark the search space: genomes sampled, validated and costed per second on one core.

Run by hand: ``python bench/space.py``. Target: at least 2,000 genomes/s.
"""

from __future__ import annotations

import random
import time

from search_spaces.space import ScalePermutedSpace
from spinenet.cost import network_cost


def main(n: int = 20_000) -> None:
    space = ScalePermutedSpace()
    rng = random.Random(0)
    stages = {"sample+validate": 0.0, "fingerprint": 0.0, "cost model": 0.0}
    for _ in range(n):
        t0 = time.perf_counter()
        genome = space.from_params(space.random_params(rng))
        t1 = time.perf_counter()
        _ = genome.fingerprint
        t2 = time.perf_counter()
        network_cost(genome, 512, filter_size_scale=0.25, resample_alpha=0.25)
        t3 = time.perf_counter()
        stages["sample+validate"] += t1 - t0
        stages["fingerprint"] += t2 - t1
        stages["cost model"] += t3 - t2
    total = sum(stages.values())
    print(f"{n} genomes: {n / total:,.0f} genomes/s sampled, validated, fingerprinted and costed (target 2,000)")
    for stage, seconds in stages.items():
        print(f"  {stage:<16} {seconds / n * 1e6:7.1f} us/genome  ({seconds / total:.0%})")
    start = time.perf_counter()
    encoded = [space.encode(space.random_genome(rng)) for _ in range(1000)]
    print(f"encode: {(time.perf_counter() - start) / len(encoded) * 1e6:.0f} us/genome (random genome + encode)")


if __name__ == "__main__":
    main()
