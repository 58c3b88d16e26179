"""Read a recorded benchmark table: ``spinenas fidelity`` JSON lines, one record per (genome, fidelity, seed).

A record holds ``genome`` (YAML text), ``fingerprint``, ``fidelity``,
``seed``, ``metrics`` (e.g. ``{"AP": 0.41}``), ``params`` and
``multiply_adds``. :func:`load_table` averages each genome's metric over
seeds at every fidelity.

Example:
    >>> import io
    >>> lines = io.StringIO('{"fingerprint": "a", "genome": "x", "fidelity": "short", "seed": 0, '
    ...                     '"metrics": {"AP": 0.2}, "params": 1, "multiply_adds": 2}\\n')
    >>> entries = load_table(lines, parse_genomes=False)
    >>> entries[0].objective["short"], entries[0].multiply_adds
    (0.2, 2.0)
"""

from __future__ import annotations

import dataclasses
import json
from typing import IO, Union


@dataclasses.dataclass
class Entry:
    """One genome of the table: its metric averaged over seeds, per fidelity."""

    fingerprint: str
    genome: object  # a Genome, or the YAML text when not parsed
    params: float
    multiply_adds: float
    objective: dict  # fidelity -> mean metric
    seeds: dict  # fidelity -> number of seeds


def load_table(source: Union[str, IO], metric: str = "AP", parse_genomes: bool = True) -> list[Entry]:
    """Entries of a JSON-lines table (a path or an open file), in first-seen order; records lacking ``metric`` are skipped."""
    handle = open(source, encoding="utf-8") if isinstance(source, str) else source
    sums: dict[str, dict] = {}
    entries: dict[str, Entry] = {}
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"line {number}: not JSON ({err.msg})") from None
            value = (record.get("metrics") or {}).get(metric)
            if value is None:
                continue
            key = record["fingerprint"]
            if key not in entries:
                genome = record["genome"]
                if parse_genomes:
                    from search_spaces.genome import Genome

                    genome = Genome.from_yaml(genome)
                entries[key] = Entry(key, genome, float(record.get("params", 0)),
                                     float(record.get("multiply_adds", 0)), {}, {})
            total = sums.setdefault(key, {}).setdefault(record["fidelity"], [0.0, 0])
            total[0] += float(value)
            total[1] += 1
    for key, entry in entries.items():
        for fidelity, (total, count) in sums[key].items():
            entry.objective[fidelity] = total / count
            entry.seeds[fidelity] = count
    return list(entries.values())
