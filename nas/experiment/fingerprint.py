"""Which studies an experiment may open: the fingerprint of what a trial means, and old studies' compatibility.

A fingerprint hashes the experiment data less the keys that say how much to
run or where. A study made before a setting existed still opens while the
setting keeps its default (or, for :data:`LEGACY_VALUES`, its old behaviour).

Examples:
    >>> digest(meaning({"name": "a", "search": {"n_trials": 5}})) == digest(meaning({"name": "a", "search": {}}))
    True
"""

from __future__ import annotations

import hashlib
import json
from typing import Optional

# Settings whose default changed what a trial computes when they were added: a study made before
# them matches only the old behaviour (resume an old study with --set task.training.precision=float32).
LEGACY_VALUES = {("task", "training", "precision"): "float32"}

# Keys that say how much to run or where, not what a trial means.
_BUDGET_KEYS = ("n_trials", "timeout", "storage", "study_name", "max_retries", "heartbeat_interval",
                "trials_per_process", "max_process_memory_growth_mb", "check_every")


def meaning(data: dict) -> dict:
    """A copy of experiment data with only what changes what a trial means (no budget, placement or fidelities)."""
    data = json.loads(json.dumps(data))
    data.pop("fidelities", None)  # how spinenas fidelity measures, not what a search trial means
    data.pop("confirm", None)  # how the winner is confirmed afterwards, likewise
    for key in _BUDGET_KEYS:
        data.get("search", {}).pop(key, None)
    data.get("task", {}).get("training", {}).pop("strategy", None)  # where a trial trains, not what it means
    if data.get("search", {}).get("screening", 0) is None:
        del data["search"]["screening"]  # off: hashes as before screening existed
    evaluation = data.get("task", {}).get("evaluation", {})
    if evaluation.get("every_epoch") == "auto":
        # auto scores a trial exactly as true did (the final evaluation is the result); only whether
        # intermediate evaluations run differs, so studies made with the old default still open.
        evaluation["every_epoch"] = True
    return data


def digest(data: dict) -> str:
    """16 hex digits of the SHA-256 of ``data`` as sorted JSON."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def study_matches(current: dict, defaults: dict, fingerprint: str, stored: Optional[dict]) -> bool:
    """True when a study made with ``fingerprint`` (and experiment data ``stored``) means ``current``.

    ``defaults`` is the data of a default experiment of the same task: keys of
    ``current`` missing from ``stored`` must hold those defaults (or the
    :data:`LEGACY_VALUES`), since they were added to spinenas after the study.
    """
    if fingerprint == digest(meaning(current)):
        return True
    if not isinstance(stored, dict):
        return False
    defaults = meaning(defaults)
    for path, value in LEGACY_VALUES.items():  # what the code did before the setting existed
        node = defaults
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = value
    restricted = _restrict(meaning(current), meaning(stored), defaults)
    return restricted is not None and digest(restricted) == fingerprint


def _restrict(current, stored, defaults):
    """``current`` cut to the keys ``stored`` has, or None when a cut key is away from its default."""
    if not (isinstance(current, dict) and isinstance(stored, dict)):
        return current
    out = {}
    for key, value in current.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if key in stored:
            inner = _restrict(value, stored[key], default)
            if inner is None and value is not None:
                return None
            out[key] = inner
        elif not isinstance(defaults, dict) or key not in defaults or defaults[key] != value:
            return None
    return out
