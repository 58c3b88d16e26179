"""``spinenas export``: write chosen trials' genomes as YAML and Model Garden block_specs (and .keras backbones)."""

from __future__ import annotations

import os

from nas.arguments import UserError, add_command
from nas.commands import export_model_garden
from nas.commands.common import add_study_options, quiet_tensorflow, study_from_args


def run_export(args) -> int:
    """Write the chosen trials' genomes as YAML and Model Garden block_specs (and .keras models)."""
    from nas.trials import best_trials, trial_genome

    study = None if args.confirmed else study_from_args(args)
    if args.confirmed:
        study, chosen = _confirmed(args)
    elif args.trial is not None:
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
    _check_checkpoint_export(args, scaling, {t.number: trial_genome(t) for t in chosen})
    model_garden = export_model_garden.plan_exports(args, chosen, study)
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
            quiet_tensorflow()
            from spinenet.decoder import decode

            model = decode(genome, input_shape=(None, None, 3), **scaling)
            model.save(os.path.join(stem, f"backbone_{args.model_id_scaling}.keras"))
            written.append(f"backbone_{args.model_id_scaling}.keras ({model.count_params():,} params)")
            if args.checkpoint:
                written.append(_write_checkpoint(model, stem, args.model_id_scaling))
        if model_garden:
            written.append(export_model_garden.write_export(model_garden, trial, stem))
        print(f"trial {trial.number} [{genome.fingerprint}] -> {stem}: {', '.join(written)}")
    return 0


def _check_checkpoint_export(args, scaling, genomes: dict) -> None:
    """Refuse ``--checkpoint`` before anything is written unless every trial's genome has a Model Garden layout."""
    if not args.checkpoint:
        return
    if scaling is None:
        raise UserError("--checkpoint needs --model-id-scaling ID (the checkpoint holds the backbone at that "
                        "scaling)")
    from spinenet.model_garden_layout import model_garden_layout
    from spinenet.scaling import DecodeError, Scaling

    for number, genome in genomes.items():
        try:
            model_garden_layout(genome, Scaling(**scaling, family=genome.family))
        except DecodeError as err:
            raise UserError(f"--checkpoint: trial {number} has no Model Garden checkpoint layout: {err}; "
                            "nothing written") from None


def _write_checkpoint(model, stem: str, model_id: str) -> str:
    """Write ``model``'s weights as a Model Garden checkpoint next to its .keras file; what to print."""
    from spinenet.model_garden_checkpoint import save_model_garden_checkpoint

    folder = f"backbone_{model_id}_checkpoint"
    save_model_garden_checkpoint(model, os.path.join(stem, folder, "ckpt"))
    return f"{folder}/ckpt (TF Model Garden checkpoint, {len(model.weights)} variables under backbone/)"


def _confirmed(args):
    """The confirmation study and its winner's first run (``--confirmed``), or a one-line :class:`UserError`."""
    from nas.commands.common import experiment_from_args
    from nas.confirm import confirmation_study, format_verdict

    if not args.file:
        raise UserError("--confirmed needs the experiment FILE (its confirm section names the study)")
    experiment, _ = experiment_from_args(args)
    study = confirmation_study(experiment, args.storage, args.study_name)
    result = study.user_attrs.get("verdict")
    if not result:
        raise UserError(f"study {study.study_name!r} has no verdict yet; run spinenas confirm {args.file}")
    block = result["seeds"][0]
    if not block["winner"]:
        raise UserError(f"nothing to export: {format_verdict(result).splitlines()[-1].strip()}")
    runs = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("fingerprint") == block["winner"]]
    return study, runs[:1]


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


def add_parser(subparsers) -> None:
    """Register ``spinenas export``."""
    parser = add_command(
        subparsers, "export", run_export, "write the genomes of chosen trials",
        "Write genome.yaml and Model Garden block_specs.py (and optionally a .keras backbone) for the best "
        "trial, the Pareto front, one trial, or the confirmed winner.")
    add_study_options(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--best", action="store_true", help="the best feasible trial (one objective)")
    which.add_argument("--trial", type=int, metavar="N", help="trial number N")
    which.add_argument("--pareto", action="store_true", help="every trial on the feasible Pareto front")
    which.add_argument("--confirmed", action="store_true",
                       help="the confirmed winner against the first seed genome (spinenas confirm FILE first)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write (one subfolder per trial "
                                                                    "when several are chosen)")
    parser.add_argument("--model-id-scaling", metavar="ID",
                        help="also save a .keras backbone at this SpineNet scaling (49S, 49, 96, ...)")
    parser.add_argument("--checkpoint", action="store_true",
                        help="with --model-id-scaling, also write that backbone's weights (as decoded, freshly "
                             "initialised) as a TF2 checkpoint under the Model Garden's variable paths "
                             "(backbone_ID_checkpoint/ckpt), which the Model Garden's SpineNet of block_specs.py "
                             "restores")
    export_model_garden.add_model_garden_options(parser)
