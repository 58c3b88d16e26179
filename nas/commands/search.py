"""``spinenas search | worker | validate | results | export``: run, check, inspect and export studies."""

from __future__ import annotations

import json
import os

from nas.commands.common import (UserError, add_study_options, positive_float, positive_int, study_from_args,
                                 worker_count)

EXIT_TRIALS_FAILED = 1


def _experiment(args):
    from nas.experiment import load_experiment

    overrides = list(args.set or ())
    if getattr(args, "strategy", None):
        overrides.append(f"task.training.strategy={args.strategy}")
    return load_experiment(args.file, overrides), overrides


def run_validate(args) -> int:
    """Load the experiment and build everything a search would (space, seeds, task, sampler, pruner, storage)."""
    from nas.config import ConfigError
    from nas.search.study import build_strategies

    experiment, _ = _experiment(args)
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
        f"  task: {task.name} at {task.data.image_size}px, {task.training.epochs} epochs",
        f"  search: {search.sampler.name} sampler, {search.pruner.name} pruner, {search.n_trials} trials, "
        f"objectives {', '.join(f'{m} ({d})' for m, d in zip(search.metric_names, search.directions))}",
        f"  constraints: max_params={search.constraints.max_params}, "
        f"max_multiply_adds={search.constraints.max_multiply_adds} (backbone plus head)",
        f"  storage: {args.storage or experiment.storage_url} (study {experiment.study_name!r})",
    ]
    if experiment.fidelities:  # checked on load; listed so a typo in a name shows
        lines.append(f"  fidelities (spinenas fidelity): {', '.join(experiment.fidelity_configs())}; "
                     f"reference {experiment.reference_fidelity}")
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


def run_search(args) -> int:
    """Create or resume the study, run trials (in one or several workers), print the best architecture(s)."""
    from nas.search import SearchStopped, load_study, run_search as search
    from nas.trials import TrialFailed, best_trials

    experiment, overrides = _experiment(args)
    storage = args.storage or experiment.storage_url
    print(f"experiment {experiment.name}: storage {storage}, study {args.study_name or experiment.study_name}")
    workers = _workers(args, experiment, storage) if args.workers == "auto" else args.workers
    try:
        if workers == 1 and not args.gpus_per_worker:
            study = search(experiment, n_trials=args.n_trials, timeout=args.timeout, storage_url=args.storage,
                           study_name=args.study_name)
        else:
            from nas.workers import run_workers

            codes = run_workers(args.file, overrides, workers, storage_url=args.storage,
                                study_name=args.study_name, n_trials=args.n_trials, timeout=args.timeout,
                                gpus_per_worker=args.gpus_per_worker)
            study = load_study(storage, args.study_name or experiment.study_name)
            if all(codes):
                print("spinenas: every worker stopped with an error (see the worker lines above)")
                _print_best(study, best_trials(study))
                return EXIT_TRIALS_FAILED
    except (TrialFailed, SearchStopped) as err:
        print(f"spinenas: search stopped: {err}")
        return EXIT_TRIALS_FAILED
    except KeyboardInterrupt:
        print("interrupted: finished trials are stored; run the same command again to resume")
        return 130
    _print_best(study, best_trials(study))
    return 0


def _workers(args, experiment, storage: str) -> int:
    """What ``--workers auto`` means for this search on this machine (see :func:`nas.workers.auto_workers`)."""
    from nas.workers import auto_workers, describe_threads, gpu_count, physical_memory, thread_settings, usable_cores

    if experiment.task.training.strategy == "mirrored":  # every trial takes all the GPUs
        return 1
    gpus, left = gpu_count(), _trials_left(args, experiment, storage)
    if args.gpus_per_worker:
        return max(1, min(gpus // args.gpus_per_worker, left))
    cores = usable_cores()
    workers = auto_workers(left, gpus=gpus, cores=cores, memory=physical_memory())
    if workers > 1:
        shares = sorted({describe_threads(thread_settings(workers, cores, i)) for i in range(workers)})
        print(f"--workers auto: {workers} workers side by side, {' or '.join(shares)} each "
              "(--workers 1 trains one trial at a time on every core)")
    return workers


def _trials_left(args, experiment, storage: str) -> int:
    """Complete trials the search still needs; its whole budget when the study cannot be read yet."""
    from optuna.trial import TrialState

    from nas.search import load_study

    target = args.n_trials or experiment.search.n_trials
    try:
        study = load_study(storage, args.study_name or experiment.study_name)
        return max(0, target - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))
    except Exception:  # no study yet, or a storage the search itself will report on: only a cap is lost
        return target


def run_worker(args) -> int:
    """Join an existing study from this machine and run trials until it has enough."""
    from nas.search import SearchStopped, open_study, run_search as search
    from nas.trials import TrialFailed, best_trials

    experiment, _ = _experiment(args)
    open_study(experiment, args.storage, args.study_name, create=False)  # must exist: a typo makes no new study
    if args.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpus
    try:
        study = search(experiment, n_trials=args.n_trials, timeout=args.timeout, storage_url=args.storage,
                       study_name=args.study_name, enqueue=False)
    except (TrialFailed, SearchStopped) as err:
        print(f"spinenas: worker stopped: {err}")
        return EXIT_TRIALS_FAILED
    except KeyboardInterrupt:
        print("interrupted: finished trials are stored")
        return 130
    _print_best(study, best_trials(study))
    return 0


def _print_best(study, best) -> None:
    from optuna.trial import TrialState

    from nas.search import describe_trial

    if not best:
        trials = study.get_trials(deepcopy=False)
        infeasible = sum(1 for t in trials if t.user_attrs.get("infeasible"))
        failed = sum(1 for t in trials if t.state == TrialState.FAIL)
        why = []
        if infeasible:
            why.append(f"{infeasible} over the constraints")
        if failed:
            why.append(f"{failed} failed")
        print(f"\nno feasible trial completed yet ({len(trials)} trial(s): {', '.join(why) or 'none trained'})")
        return
    title = "best trial" if len(study.directions) == 1 else f"Pareto front ({len(best)} trials)"
    print(f"\n{title}:")
    for trial in best:
        print("  " + describe_trial(trial, study))
    if len(study.directions) == 1 and "genome" in best[0].user_attrs:
        print("\nbest genome:\n" + best[0].user_attrs["genome"])


def run_results(args) -> int:
    """List the study's trials, best first when --top is given."""
    from nas.search import trial_rows
    from nas.trials import ranked_trials
    from nas.trials import metric_names

    study = study_from_args(args)
    rows = trial_rows(study, ranked_trials(study)[: args.top] if args.top else None)
    if args.json:
        if args.with_check:
            from nas.search.proxy_check import CHECK_KEY

            print(json.dumps({"trials": rows, "proxy_check": study.user_attrs.get(CHECK_KEY)}))
        else:
            print(json.dumps(rows))
        return 0
    names = metric_names(study)
    print(f"{'#':>4}  {'state':<9} " + " ".join(f"{n:>10}" for n in names)
          + f" {'params':>9} {'madds':>9}  {'fingerprint':<16}  note")
    for r in rows:
        values = " ".join(f"{r['values'][n]:>10.4g}" if r["values"] else f"{'-':>10}" for n in names)
        params = f"{r['params'] / 1e6:8.2f}M" if r["params"] else f"{'-':>9}"
        madds = f"{r['multiply_adds'] / 1e9:8.2f}G" if r["multiply_adds"] else f"{'-':>9}"
        print(f"{r['number']:>4}  {r['state']:<9} {values} {params} {madds}  {r['fingerprint'] or '-':<16}  {r['note']}")
    _print_check(study)
    return 0


def _print_check(study) -> None:
    """The study's latest self-check: how well proxies, baselines and the predictor rank its trials."""
    from nas.search.proxy_check import CHECK_KEY, format_check

    check = study.user_attrs.get(CHECK_KEY)
    if check:
        print("\n" + format_check(check))
        if len(check.get("history", [])) > 1:
            for past in check["history"][:-1]:
                print("  earlier: " + format_check({**past, "objective": check["objective"]}))


def run_export(args) -> int:
    """Write the chosen trials' genomes as YAML and Model Garden block_specs (and .keras models)."""
    from nas.trials import best_trials, trial_genome

    study = study_from_args(args)
    if args.trial is not None:
        chosen = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
        if not chosen:
            raise UserError(f"study {study.study_name!r} has no trial {args.trial}")
    else:
        chosen = best_trials(study)
        if not chosen:
            raise UserError(f"study {study.study_name!r} has no complete, feasible trial yet")
        if args.best and len(chosen) > 1:
            raise UserError("this study has several objectives; use --pareto or --trial N")
    lacking = [t.number for t in chosen if "genome" not in t.user_attrs]
    if lacking:
        raise UserError(f"trial(s) {lacking} of study {study.study_name!r} recorded no genome "
                        "(was the study made by spinenas?); nothing written")
    scaling = _export_scaling(args.model_id_scaling)
    for trial in chosen:
        genome = trial_genome(trial)
        stem = os.path.join(args.out, f"trial_{trial.number:05d}") if len(chosen) > 1 else args.out
        if os.path.exists(stem) and not os.path.isdir(stem):
            raise UserError(f"--out {stem} is a file, not a folder")
        os.makedirs(stem, exist_ok=True)
        genome.save(os.path.join(stem, "genome.yaml"))
        with open(os.path.join(stem, "block_specs.py"), "w", encoding="utf-8") as handle:
            handle.write(block_specs_source(genome, trial.number, study.study_name))
        written = ["genome.yaml", "block_specs.py"]
        if scaling is not None:
            from nas.commands.common import quiet_tensorflow

            quiet_tensorflow()
            from spinenet.decoder import decode

            model = decode(genome, input_shape=(None, None, 3), **scaling)
            model.save(os.path.join(stem, f"backbone_{args.model_id_scaling}.keras"))
            written.append(f"backbone_{args.model_id_scaling}.keras ({model.count_params():,} params)")
        print(f"trial {trial.number} [{genome.fingerprint}] -> {stem}: {', '.join(written)}")
    return 0


def _export_scaling(model_id):
    if not model_id:
        return None
    from spinenet.specs import scaling_for

    try:
        return scaling_for(model_id)
    except ValueError as err:
        raise UserError(str(err)) from None


def block_specs_source(genome, trial_number: int, study_name: str) -> str:
    """Python source of the genome as Model Garden ``block_specs`` tuples."""
    rows = "\n".join(f"    {spec!r}," for spec in genome.to_block_specs())
    return (f'"""Block specs of trial {trial_number} of study {study_name!r} (genome {genome.fingerprint}).\n\n'
            f"Pass as ``block_specs`` to the TF Model Garden SpineNet (min_level={genome.min_level}, "
            f"max_level={genome.max_level}).\n\"\"\"\n\n"
            f"# (level, block_fn, (input_offset0, input_offset1), is_output)\nBLOCK_SPECS = [\n{rows}\n]\n")


def _budget_options(parser) -> None:
    parser.add_argument("--n-trials", type=positive_int, metavar="N",
                        help="complete trials to reach (default: the file's search.n_trials)")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="stop starting trials after this many seconds (default: the file's search.timeout)")
    parser.add_argument("--strategy", choices=["default", "mirrored"],
                        help="mirrored: train each trial on all visible GPUs (tf.distribute.MirroredStrategy)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a value of the file, e.g. task.training.epochs=2 (repeatable)")


def add_parser(subparsers) -> None:
    """Register ``spinenas search``, ``worker``, ``validate``, ``results`` and ``export``."""
    search = subparsers.add_parser(
        "search", help="run (or resume) the search an experiment file describes",
        description="Create the experiment's Optuna study, or resume it, and train trials until it has "
                    "search.n_trials complete ones. Exit status: 0 done, 1 trials kept failing, 2 bad input, "
                    "130 interrupted.")
    search.add_argument("file", help="experiment YAML, e.g. experiments/quickstart.yaml")
    search.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/<name>/study.db)")
    search.add_argument("--study-name", help="study name (default: the experiment's name)")
    _budget_options(search)
    search.add_argument("--workers", type=worker_count, default="auto",
                        help="worker processes on this machine, or auto (default): on a machine without GPUs, "
                             "one per CPU core (at most one per 3 GiB of memory and per trial left), the cores "
                             "shared out among them; with GPUs, one (or one per --gpus-per-worker group)")
    search.add_argument("--gpus-per-worker", type=positive_int, metavar="K",
                        help="pin each local worker to its own K GPUs (CUDA_VISIBLE_DEVICES)")
    search.set_defaults(handler=run_search)

    worker = subparsers.add_parser(
        "worker", help="join an existing study (from any machine) and run its trials",
        description="Join a study that `spinenas search` created, through its shared storage, and train "
                    "trials until the study has enough. Same exit statuses as search.")
    worker.add_argument("file", help="the study's experiment file")
    worker.add_argument("--storage", required=True, help="the study's storage URL, e.g. postgresql://user@host/db")
    worker.add_argument("--study-name", required=True, help="the study's name")
    _budget_options(worker)
    worker.add_argument("--gpus", metavar="IDS", help="CUDA_VISIBLE_DEVICES for this worker, e.g. 0,1")
    worker.set_defaults(handler=run_worker)

    validate = subparsers.add_parser(
        "validate", help="check an experiment file without running it",
        description="Read the file and build its search space, seed genomes, task, sampler and pruner, and "
                    "check the storage URL's scheme and driver, without opening a study.")
    validate.add_argument("file", help="experiment YAML")
    validate.add_argument("--storage", help="check this storage URL instead of the file's")
    validate.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value (repeatable)")
    validate.set_defaults(handler=run_validate)

    results = subparsers.add_parser("results", help="list a study's trials",
                                    description="List the trials of an existing study (never creates one).")
    add_study_options(results)
    results.add_argument("--top", type=positive_int, metavar="K", help="only the K best feasible trials, best first")
    results.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    results.add_argument("--with-check", action="store_true",
                         help="with --json: print {trials, proxy_check} (the proxies' Kendall tau) instead of rows")
    results.set_defaults(handler=run_results)

    export = subparsers.add_parser(
        "export", help="write the genomes of chosen trials",
        description="Write genome.yaml and Model Garden block_specs.py (and optionally a .keras backbone) "
                    "for the best trial, the Pareto front, or one trial.")
    add_study_options(export)
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--best", action="store_true", help="the best feasible trial (one objective)")
    which.add_argument("--trial", type=int, metavar="N", help="trial number N")
    which.add_argument("--pareto", action="store_true", help="every trial on the feasible Pareto front")
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write (one subfolder per trial "
                                                                    "when several are chosen)")
    export.add_argument("--model-id-scaling", metavar="ID",
                        help="also save a .keras backbone at this SpineNet scaling (49S, 49, 96, ...)")
    export.set_defaults(handler=run_export)
