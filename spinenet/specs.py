"""The SpineNet seed genome and its published scalings (pure Python).

``SPINENET_49`` is the scale-permuted architecture found by the SpineNet
search (arXiv 1912.05027); SpineNet-49S, -96, -143 and -190 decode the same
genome with the settings in ``SCALING_MAP``.
"""

from search_spaces.genome import Genome

# (level, block_fn, (input_offset0, input_offset1), is_output); nodes 0 and 1
# are the two stem blocks.
SPINENET_49 = Genome.from_block_specs(
    [
        (2, "bottleneck", (0, 1), False),
        (4, "residual", (0, 1), False),
        (3, "bottleneck", (2, 3), False),
        (4, "bottleneck", (2, 4), False),
        (6, "residual", (3, 5), False),
        (4, "bottleneck", (3, 5), False),
        (5, "residual", (6, 7), False),
        (7, "residual", (6, 8), False),
        (5, "bottleneck", (8, 9), False),
        (5, "bottleneck", (8, 10), False),
        (4, "bottleneck", (5, 10), True),
        (3, "bottleneck", (4, 10), True),
        (5, "bottleneck", (7, 12), True),
        (7, "bottleneck", (5, 14), True),
        (6, "bottleneck", (12, 14), True),
    ]
)

SCALING_MAP = {
    "49S": {"endpoints_num_filters": 128, "filter_size_scale": 0.65, "resample_alpha": 0.5, "block_repeats": 1},
    "49": {"endpoints_num_filters": 256, "filter_size_scale": 1.0, "resample_alpha": 0.5, "block_repeats": 1},
    "96": {"endpoints_num_filters": 256, "filter_size_scale": 1.0, "resample_alpha": 0.5, "block_repeats": 2},
    "143": {"endpoints_num_filters": 256, "filter_size_scale": 1.0, "resample_alpha": 1.0, "block_repeats": 3},
    "190": {"endpoints_num_filters": 512, "filter_size_scale": 1.3, "resample_alpha": 1.0, "block_repeats": 4},
}


# Mobile SpineNet (arXiv 2010.11426, Model Garden SpineNetMobile): 16 MBConv blocks.
# Unlike SpineNet-49 it has a second level-2 block, so the parent indices differ.
SPINENET_MOBILE_49 = Genome.from_block_specs(
    [
        (2, "mbconv", (0, 1), False),
        (2, "mbconv", (1, 2), False),
        (4, "mbconv", (1, 2), False),
        (3, "mbconv", (3, 4), False),
        (4, "mbconv", (3, 5), False),
        (6, "mbconv", (4, 6), False),
        (4, "mbconv", (4, 6), False),
        (5, "mbconv", (7, 8), False),
        (7, "mbconv", (7, 9), False),
        (5, "mbconv", (9, 10), False),
        (5, "mbconv", (9, 11), False),
        (4, "mbconv", (6, 11), True),
        (3, "mbconv", (5, 11), True),
        (5, "mbconv", (8, 13), True),
        (7, "mbconv", (6, 15), True),
        (6, "mbconv", (13, 15), True),
    ],
    family="mobile",
)

# resample_alpha does not apply to the mobile family (its resampling has no reduction).
MOBILE_SCALING_MAP = {
    "49": {"endpoints_num_filters": 48, "filter_size_scale": 1.0, "block_repeats": 1},
    "49S": {"endpoints_num_filters": 40, "filter_size_scale": 0.65, "block_repeats": 1},
    "49XS": {"endpoints_num_filters": 24, "filter_size_scale": 0.6, "block_repeats": 1},
}

MOBILE_PREFIX = "mobile-"


def _model_ids() -> list[str]:
    return [*SCALING_MAP, *(MOBILE_PREFIX + key for key in MOBILE_SCALING_MAP)]


def scaling_for(model_id: str) -> dict:
    """The decode settings of a model id (``49``, ``mobile-49``, ...); a clear ``ValueError`` for an unknown id."""
    key = str(model_id).upper()
    table = SCALING_MAP
    if key.startswith(MOBILE_PREFIX.upper()):
        key, table = key[len(MOBILE_PREFIX):], MOBILE_SCALING_MAP
    if key not in table:
        raise ValueError(
            f"unknown SpineNet model id {model_id!r}; choose one of {', '.join(_model_ids())}"
        )
    return dict(table[key])


def genome_for(model_id: str) -> Genome:
    """The genome a model id decodes: ``SPINENET_MOBILE_49`` for ``mobile-*`` ids, else ``SPINENET_49``."""
    scaling_for(model_id)  # refuse unknown ids
    return SPINENET_MOBILE_49 if str(model_id).lower().startswith(MOBILE_PREFIX) else SPINENET_49


def default_scaling(genome: Genome) -> dict:
    """The scaling a genome is shown at when none is given: its family's 49."""
    return scaling_for("mobile-49" if genome.family == "mobile" else "49")


def _scale_decreased_r50() -> Genome:
    # ResNet-50's stages as a genome: after the two stem blocks, 1 L2, 4 L3, 6 L4 and
    # 3 L5 bottleneck blocks in increasing level order, the last block of each
    # stage an output, then L6 and L7 outputs as in RetinaNet's FPN. Each block
    # reads the two nodes before it: with two parents per block, the closest a
    # genome gets to ResNet's single chain.
    levels = [2] + [3] * 4 + [4] * 6 + [5] * 3 + [6, 7]
    outputs = {5, 11, 14, 15, 16}  # block numbers ending a stage, then L6 and L7
    specs = []
    for number, level in enumerate(levels, start=1):
        node = number + 1
        specs.append((level, "bottleneck", (node - 2, node - 1), number in outputs))
    return Genome.from_block_specs(specs)


# A scale-decreased ResNet-50-like genome, to compare with SpineNet-49's scale permutation.
SCALE_DECREASED_R50 = _scale_decreased_r50()

# Genomes by name, wherever a genome may be named instead of given as a file.
REFERENCE_GENOMES = {"spinenet-49": SPINENET_49, "r50-like": SCALE_DECREASED_R50,
                     "spinenet-mobile-49": SPINENET_MOBILE_49}


def resolve_genome(entry: str, base_dir: str | None = None) -> Genome:
    """A genome by reference name (``spinenet-49``, ``r50-like``) or from a YAML/JSON file.

    Relative paths are read from ``base_dir`` when given (an experiment's
    folder), else from the working directory. Raises ``ValueError`` (a
    ``GenomeError`` for a broken file) or ``FileNotFoundError`` naming the entry.

    Examples:
        >>> resolve_genome("SpineNet-49") is SPINENET_49
        True
    """
    key = str(entry).lower()
    if key in REFERENCE_GENOMES:
        return REFERENCE_GENOMES[key]
    import os

    path = entry if base_dir is None or os.path.isabs(entry) else os.path.join(base_dir, entry)
    if not os.path.exists(path):
        from search_spaces.genome_rules import GenomeError

        raise GenomeError(f"{path}: cannot read genome file (no such file, and not a reference genome: "
                          f"{', '.join(REFERENCE_GENOMES)})")
    return Genome.load(path)
