"""``spinenas export --model-garden``: each exported trial also as TF Model Garden experiments.

The files are :func:`spinenet.model_garden_export.plan_model_garden`'s, in a
``model_garden`` folder next to the trial's ``genome.yaml``. Every chosen
trial is checked before anything is written, so a genome the Model Garden
cannot build leaves no half-written export behind.
"""

from __future__ import annotations

import os

from nas.arguments import UserError, positive_int

FOLDER = "model_garden"


def add_model_garden_options(parser) -> None:
    """The ``--model-garden`` option of ``spinenas export`` and its settings."""
    group = parser.add_argument_group("TF Model Garden experiments")
    group.add_argument("--model-garden", action="store_true",
                       help=f"also write a {FOLDER}/ folder per trial: a module registering the genome's backbone "
                            "with the Model Garden, RetinaNet, Mask R-CNN and Cascade R-CNN experiment YAML "
                            "(RetinaNet only for mobile genomes), a train.py and a README with the command")
    group.add_argument("--model-garden-scaling", metavar="ID",
                       help="the backbone's scaling there: 49S, 49, 96, 143, 190, or mobile-49, mobile-49S, "
                            "mobile-49XS for mobile genomes (default 49, mobile-49)")
    group.add_argument("--model-garden-size", type=positive_int, metavar="N",
                       help="the square, padded training input in pixels (default 640, 384 for mobile genomes)")
    group.add_argument("--model-garden-epochs", type=positive_int, metavar="N",
                       help="the training schedule's length; the learning rate still drops 30 and 10 epochs "
                            "before its end (default 350)")


def plan_exports(args, chosen, study) -> dict:
    """Trial number -> its :class:`~spinenet.model_garden_export.ModelGardenExport` (empty without ``--model-garden``).

    Raises a one-line :class:`UserError` naming the first trial the Model
    Garden cannot build as asked.
    """
    settings = {"--model-garden-scaling": args.model_garden_scaling, "--model-garden-size": args.model_garden_size,
                "--model-garden-epochs": args.model_garden_epochs}
    if not args.model_garden:
        given = [name for name, value in settings.items() if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} {'need' if len(given) > 1 else 'needs'} --model-garden")
        return {}
    from nas.trials import trial_genome
    from spinenet.model_garden_backbone import ModelGardenError
    from spinenet.model_garden_export import SEED_RECIPE, Recipe, plan_model_garden

    try:
        recipe = SEED_RECIPE if args.model_garden_epochs is None else Recipe(epochs=args.model_garden_epochs)
    except ModelGardenError as err:
        raise UserError(f"--model-garden-epochs: {err}") from None
    plans = {}
    for trial in chosen:
        genome = trial_genome(trial)
        try:
            plans[trial.number] = plan_model_garden(
                genome, args.model_garden_scaling, args.model_garden_size, recipe=recipe,
                source=f"trial {trial.number} of study {study.study_name!r}")
        except ModelGardenError as err:
            raise UserError(f"trial {trial.number} [{genome.fingerprint}] cannot go to the Model Garden: {err}") \
                from None
    return plans


def write_export(plans: dict, trial, stem: str) -> str:
    """Write the trial's planned Model Garden folder under ``stem``; returns what to print for it."""
    export = plans[trial.number]
    export.write(os.path.join(stem, FOLDER))
    return (f"{FOLDER}/ ({export.backbone_type}: {', '.join(export.experiments)} at scaling {export.model_id}, "
            f"{export.input_size}px, {export.params:,} backbone params)")
