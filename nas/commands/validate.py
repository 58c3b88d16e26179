"""``spinenas validate``: check an experiment file, and the storage it names, without running it."""

from __future__ import annotations

import os

from nas.arguments import UserError, add_command
from nas.commands.common import add_data_option, experiment_from_args


def run_validate(args) -> int:
    """Load the experiment and build everything a search would (space, seeds, task, sampler, pruner, storage)."""
    from nas.config import ConfigError
    from nas.search.study import build_strategies

    experiment, _ = experiment_from_args(args)
    space = experiment.search_space.build()
    seeds = experiment.search_space.load_seed_genomes(os.path.dirname(experiment.source))
    try:
        build_strategies(experiment)
        _check_storage_url(args.storage or experiment.storage_url)
    except (ConfigError, UserError) as err:
        raise UserError(f"{args.file}: {err}") from None
    task, search = experiment.task, experiment.search
    lines = [
        f"{args.file}: valid (experiment fingerprint {experiment.fingerprint})",
        f"  search space: {len(space.parameters)} parameters, {space.num_genomes():.3e} genomes; "
        f"seeds: {', '.join(experiment.search_space.seed_genomes) or 'none'}",
        f"  model: {experiment.model}",
        f"  task: {task.name} at {task.data.image_size}px, {task.training.epochs} epochs, "
        + (f"data {task.data.root}" if task.data.root else "generated data"),
        f"  search: {search.sampler.name} sampler, {search.pruner.name} pruner, {search.n_trials} trials, "
        f"objectives {', '.join(f'{m} ({d})' for m, d in zip(search.metric_names, search.directions))}",
        f"  constraints: max_params={search.constraints.max_params}, "
        f"max_multiply_adds={search.constraints.max_multiply_adds} (backbone plus head)"
        + (f", max_latency_ms={search.constraints.max_latency_ms}" if search.constraints.max_latency_ms else ""),
        f"  storage: {args.storage or experiment.storage_url} (study {experiment.study_name!r})",
    ]
    if experiment.latency is not None:
        latency = experiment.latency
        lines.append(f"  latency: {latency.source}, LiteRT at batch 1 and {latency.threads} thread(s), "
                     f"{latency.input_size or task.data.image_size}px (the deployed model)")
    if experiment.fidelities:  # checked on load; listed so a typo in a name shows
        lines.append(f"  fidelities (spinenas fidelity): {', '.join(experiment.fidelity_configs())}; "
                     f"reference {experiment.reference_fidelity}")
    if experiment.confirm is not None:
        confirm = experiment.confirm
        lines.append(f"  confirm (spinenas confirm, and the end of the search): the {confirm.top_k} best genomes "
                     f"and the seed genome(s) x {confirm.repeats} training seeds"
                     + (f", settings {confirm.settings}" if confirm.settings else "")
                     + (f", data {confirm.data}" if confirm.data else ""))
    for genome in seeds:
        if not space.contains(genome):
            lines.append(f"  warning: seed genome {genome.fingerprint} is not inside the search space")
    print("\n".join(lines))
    return 0


def _check_storage_url(url: str) -> None:
    """Refuse an unknown scheme or a missing database driver without connecting."""
    import importlib.util

    from nas.search.storage import SCHEMES, redacted

    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in SCHEMES or "://" not in url:
        raise UserError(f"storage {redacted(url)}: unknown scheme {scheme!r}; use one of "
                        + ", ".join(f"{s}://..." for s in SCHEMES))
    driver = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("pymysql", "MySQLdb")}.get(scheme)
    if driver and not any(importlib.util.find_spec(d) for d in driver):
        extra = "postgres" if scheme == "postgresql" else "mysql"
        raise UserError(f"storage {redacted(url)}: no {scheme} driver installed; pip install 'spinenas[{extra}]'")


def add_parser(subparsers) -> None:
    """Register ``spinenas validate``."""
    parser = add_command(
        subparsers, "validate", run_validate, "check an experiment file without running it",
        "Read the file and build its search space, seed genomes, task, sampler and pruner, and check the "
        "storage URL's scheme and driver, without opening a study.")
    parser.add_argument("file", help="experiment YAML")
    parser.add_argument("--storage", help="check this storage URL instead of the file's")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value (repeatable)")
    add_data_option(parser)
