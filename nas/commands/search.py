"""``spinenas search | validate | results | export``: run, check, inspect and export studies."""

from __future__ import annotations

import json
import os

from nas.commands.common import UserError


def _experiment(args):
    from nas.experiment import load_experiment

    return load_experiment(args.file, args.set or ())


def run_validate(args) -> int:
    """Load the experiment, build its space and seeds, and print what a search would do."""
    experiment = _experiment(args)
    space = experiment.search_space.build()
    seeds = experiment.search_space.load_seed_genomes(os.path.dirname(experiment.source))
    search = experiment.search
    lines = [
        f"{args.file}: valid (experiment fingerprint {experiment.fingerprint})",
        f"  search space: {len(space.parameters)} parameters, {space.num_genomes():.3e} genomes; "
        f"seeds: {', '.join(experiment.search_space.seed_genomes) or 'none'}",
        f"  model: {experiment.model}",
        f"  data: {experiment.task.data.resolved_root} at {experiment.task.data.image_size}px; "
        f"{experiment.task.training.epochs} epochs",
        f"  search: {search.sampler.name} sampler, {search.pruner.name} pruner, {search.n_trials} trials, "
        f"objectives {', '.join(f'{m} ({d})' for m, d in zip(search.metric_names, search.directions))}",
        f"  constraints: max_params={search.constraints.max_params}, "
        f"max_multiply_adds={search.constraints.max_multiply_adds}",
        f"  storage: {experiment.storage_url} (study {experiment.study_name!r})",
    ]
    for genome in seeds:
        if not space.contains(genome):
            lines.append(f"  warning: seed genome {genome.fingerprint} is not inside the search space")
    print("\n".join(lines))
    return 0


def _overrides(args) -> list[str]:
    overrides = list(args.set or ())
    if getattr(args, "strategy", None):
        overrides.append(f"task.training.strategy={args.strategy}")
    return overrides


def run_search(args) -> int:
    """Create or resume the study, run trials (in one or several workers), print the best architecture(s)."""
    from nas.search import best_trials, open_study, run_search as search

    args.set = _overrides(args)
    experiment = _experiment(args)
    print(f"experiment {experiment.name}: storage {args.storage or experiment.storage_url}, "
          f"study {args.study_name or experiment.study_name}")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    try:
        if args.workers == 1 and not args.gpus_per_worker:
            study = search(experiment, n_trials=args.n_trials, timeout=args.timeout, storage_url=args.storage,
                           study_name=args.study_name)
        else:
            from nas.workers import run_workers

            codes = run_workers(args.file, args.set, args.workers, storage_url=args.storage,
                                study_name=args.study_name, n_trials=args.n_trials, timeout=args.timeout,
                                gpus_per_worker=args.gpus_per_worker)
            study = open_study(experiment, args.storage, args.study_name, create=False)
            if all(codes):
                raise UserError("every worker stopped with an error (see the worker lines above)")
    except KeyboardInterrupt:
        print("interrupted: finished trials are stored; run the same command again to resume")
        return 130
    _print_best(study, best_trials(study))
    return 0


def run_worker(args) -> int:
    """Join an existing study from this machine and run trials until it has enough."""
    from nas.search import best_trials, open_study, run_search as search

    args.set = _overrides(args)
    experiment = _experiment(args)
    open_study(experiment, args.storage, args.study_name, create=False)  # must exist: a typo makes no new study
    if args.gpus:
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpus
    study = search(experiment, n_trials=args.n_trials, timeout=args.timeout, storage_url=args.storage,
                   study_name=args.study_name, enqueue=False)
    _print_best(study, best_trials(study))
    return 0


def _print_best(study, best) -> None:
    from nas.search import describe_trial

    title = "best trial" if len(study.directions) == 1 else f"Pareto front ({len(best)} trials)"
    print(f"\n{title}:")
    for trial in best:
        print("  " + describe_trial(trial, study))
    if best and len(study.directions) == 1:
        print("\nbest genome:\n" + best[0].user_attrs["genome"])


def load_study(args):
    """The study named by an experiment FILE, or by --storage and --study-name."""
    from nas.experiment import load_experiment
    from nas.search import open_study

    if args.file:
        experiment = load_experiment(args.file, ())
        return open_study(experiment, args.storage, args.study_name, create=False)
    if not (args.storage and args.study_name):
        raise UserError("give an experiment FILE, or both --storage and --study-name")
    import optuna

    from nas.search import _missing_study, open_storage

    storage = open_storage(args.storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if args.study_name not in names:
        raise UserError(_missing_study(storage, args.study_name, args.storage))
    return optuna.load_study(study_name=args.study_name, storage=storage)


def trial_rows(study) -> list[dict]:
    """One dict per trial: number, state, objectives, params, multiply-adds, fingerprint, notes."""
    names = study.user_attrs.get("metrics") or [f"value{i}" for i in range(len(study.directions))]
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        note = ("infeasible" if attrs.get("infeasible") else
                f"same as {attrs['duplicate_of']}" if "duplicate_of" in attrs else attrs.get("fail_reason", ""))
        rows.append({
            "number": t.number, "state": t.state.name,
            "values": dict(zip(names, t.values)) if t.values else None,
            "params": attrs.get("params"), "multiply_adds": attrs.get("multiply_adds"),
            "fingerprint": attrs.get("fingerprint"), "note": note,
        })
    return rows


def run_results(args) -> int:
    """List the study's trials, best first when --top is given."""
    study = load_study(args)
    rows = trial_rows(study)
    if args.top:
        import optuna

        sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
        done = [r for r in rows if r["values"] and r["note"] != "infeasible"]
        rows = sorted(done, key=lambda r: sign * next(iter(r["values"].values())))[: args.top]
    if args.json:
        print(json.dumps(rows))
        return 0
    names = study.user_attrs.get("metrics") or []
    print(f"{'#':>4}  {'state':<9} " + " ".join(f"{n:>10}" for n in names)
          + f" {'params':>9} {'madds':>9}  {'fingerprint':<16}  note")
    for r in rows:
        values = " ".join(f"{r['values'][n]:>10.4g}" if r["values"] else f"{'-':>10}" for n in names)
        params = f"{r['params'] / 1e6:8.2f}M" if r["params"] else f"{'-':>9}"
        madds = f"{r['multiply_adds'] / 1e9:8.2f}G" if r["multiply_adds"] else f"{'-':>9}"
        print(f"{r['number']:>4}  {r['state']:<9} {values} {params} {madds}  {r['fingerprint'] or '-':<16}  {r['note']}")
    return 0


def run_export(args) -> int:
    """Write the chosen trials' genomes as YAML and Model Garden block_specs (and .keras models)."""
    from nas.search import best_trials
    from search_spaces.genome import Genome

    study = load_study(args)
    if args.trial is not None:
        matches = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
        if not matches or "genome" not in matches[0].user_attrs:
            raise UserError(f"trial {args.trial} has no recorded genome in study {study.study_name!r}")
        chosen = matches
    else:
        chosen = best_trials(study)
        if not chosen:
            raise UserError(f"study {study.study_name!r} has no complete, feasible trial yet")
        if args.best and len(chosen) > 1:
            raise UserError("this study has several objectives; use --pareto or --trial N")
    os.makedirs(args.out, exist_ok=True)
    for trial in chosen:
        genome = Genome.from_yaml(trial.user_attrs["genome"])
        stem = os.path.join(args.out, f"trial_{trial.number:05d}") if len(chosen) > 1 else args.out
        os.makedirs(stem, exist_ok=True)
        genome.save(os.path.join(stem, "genome.yaml"))
        with open(os.path.join(stem, "block_specs.py"), "w", encoding="utf-8") as handle:
            handle.write(block_specs_source(genome, trial.number, study.study_name))
        written = ["genome.yaml", "block_specs.py"]
        if args.model_id_scaling:
            from nas.commands.common import quiet_tensorflow

            quiet_tensorflow()
            from spinenet.decoder import decode
            from spinenet.specs import scaling_for

            try:
                scaling = scaling_for(args.model_id_scaling)
            except ValueError as err:
                raise UserError(str(err)) from None
            model = decode(genome, input_shape=(None, None, 3), **scaling)
            model.save(os.path.join(stem, f"backbone_{args.model_id_scaling}.keras"))
            written.append(f"backbone_{args.model_id_scaling}.keras ({model.count_params():,} params)")
        print(f"trial {trial.number} [{genome.fingerprint}] -> {stem}: {', '.join(written)}")
    return 0


def block_specs_source(genome, trial_number: int, study_name: str) -> str:
    """Python source of the genome as Model Garden ``block_specs`` tuples."""
    rows = "\n".join(f"    {spec!r}," for spec in genome.to_block_specs())
    return (f'"""Block specs of trial {trial_number} of study {study_name!r} (genome {genome.fingerprint}).\n\n'
            f"Pass as ``block_specs`` to the TF Model Garden SpineNet (min_level={genome.min_level}, "
            f"max_level={genome.max_level}).\n\"\"\"\n\n"
            f"# (level, block_fn, (input_offset0, input_offset1), is_output)\nBLOCK_SPECS = [\n{rows}\n]\n")


def add_parser(subparsers) -> None:
    """Register ``spinenas search``, ``validate``, ``results`` and ``export``."""
    search = subparsers.add_parser("search", help="run (or resume) the search an experiment file describes")
    search.add_argument("file", help="experiment YAML, e.g. experiments/quickstart.yaml")
    search.add_argument("--n-trials", type=int, help="complete trials to reach (default: the file's)")
    search.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    search.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/<name>/study.db)")
    search.add_argument("--study-name", help="study name (default: the experiment's name)")
    search.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value (repeatable)")
    search.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    search.add_argument("--gpus-per-worker", type=int, metavar="K",
                        help="pin each local worker to its own K GPUs (CUDA_VISIBLE_DEVICES)")
    search.add_argument("--strategy", choices=["default", "mirrored"],
                        help="mirrored: train each trial on all visible GPUs (tf.distribute.MirroredStrategy)")
    search.set_defaults(handler=run_search)

    worker = subparsers.add_parser("worker", help="join an existing study (from any machine) and run its trials")
    worker.add_argument("file", help="the study's experiment file")
    worker.add_argument("--storage", required=True, help="the study's storage URL, e.g. postgresql://user@host/db")
    worker.add_argument("--study-name", required=True)
    worker.add_argument("--n-trials", type=int)
    worker.add_argument("--timeout", type=float)
    worker.add_argument("--gpus", metavar="IDS", help="CUDA_VISIBLE_DEVICES for this worker, e.g. 0,1")
    worker.add_argument("--strategy", choices=["default", "mirrored"])
    worker.add_argument("--set", action="append", metavar="KEY=VALUE")
    worker.set_defaults(handler=run_worker)

    validate = subparsers.add_parser("validate", help="check an experiment file without running it")
    validate.add_argument("file")
    validate.add_argument("--set", action="append", metavar="KEY=VALUE")
    validate.set_defaults(handler=run_validate)

    for name, handler, help_text in (("results", run_results, "list a study's trials"),
                                     ("export", run_export, "write the genomes of chosen trials")):
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("file", nargs="?", help="the experiment file (or give --storage and --study-name)")
        parser.add_argument("--storage")
        parser.add_argument("--study-name")
        if name == "results":
            parser.add_argument("--top", type=int, help="only the K best feasible trials")
            parser.add_argument("--json", action="store_true")
        else:
            which = parser.add_mutually_exclusive_group(required=True)
            which.add_argument("--best", action="store_true")
            which.add_argument("--trial", type=int)
            which.add_argument("--pareto", action="store_true")
            parser.add_argument("--out", required=True, metavar="DIR")
            parser.add_argument("--model-id-scaling", metavar="ID",
                                help="also save a .keras backbone at this SpineNet scaling (49S, 49, 96, ...)")
        parser.set_defaults(handler=handler)
