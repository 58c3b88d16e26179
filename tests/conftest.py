"""Shared test helpers: quiet TensorFlow and random valid genomes."""

import os
import random

import pytest
from hypothesis import settings

# CI derandomises Hypothesis, so a run's examples are the same every time (no flaky reds);
# locally it keeps exploring. The deadline is off: 2 shared cores make timings meaningless.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from nas.cpu import onednn_settings, use_settings  # noqa: E402

use_settings(onednn_settings())  # the kernels the commands use, here and in the processes tests start

from search_spaces.genome import Genome  # noqa: E402

# Tiny settings for unit tests: SpineNet needs sides divisible by 2**7.
TINY = {"filter_size_scale": 0.25, "resample_alpha": 0.25, "endpoints_num_filters": 16, "block_repeats": 1}
TINY_SIZE = 128


def random_genome(rng: random.Random, num_intermediate: int = 6, min_level: int = 3, max_level: int = 7) -> Genome:
    """A random valid genome: shuffled intermediate levels, then one output per level, random parents."""
    levels = [rng.randint(2, max_level) for _ in range(num_intermediate)]
    outputs = list(range(min_level, max_level + 1))
    rng.shuffle(outputs)
    specs = []
    for i, level in enumerate(levels + outputs):
        node = 2 + i
        parents = rng.sample(range(node), 2)
        specs.append((level, rng.choice(["bottleneck", "residual"]), tuple(parents), i >= num_intermediate))
    return Genome.from_block_specs(specs, min_level=min_level, max_level=max_level)


@pytest.fixture
def rng():
    return random.Random(1234)
