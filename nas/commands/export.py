"""``spinenas export``: write chosen trials' genomes as YAML and Model Garden block_specs (and .keras backbones).

With ``--saved-model`` and ``--litert`` it also writes the task's whole
deployed model (for detection: backbone, head, box decoding and NMS) as a
TensorFlow SavedModel and LiteRT files, with ``deploy.json`` saying what goes
in and comes out; ``--run DIR`` deploys a ``spinenas train`` run's trained
weights instead of a trial's freshly initialised model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Optional

from nas.arguments import UserError, add_command
from nas.commands import export_model_garden
from nas.commands.common import add_study_options, quiet_tensorflow, study_from_args

# What a spinenas train --out folder holds that --run reads (nas.tasks.training.write_outputs writes them).
RUN_FILES = ("genome.yaml", "config.yaml", "checkpoint.weights.h5")


@dataclasses.dataclass(frozen=True)
class DeployRequest:
    """Which deployed-model files to write: a SavedModel, and LiteRT files at these quantisations."""

    saved_model: bool
    quantizations: tuple

    def files(self) -> list[str]:
        """The names written in each exported folder, deploy.json last."""
        names = ["saved_model"] if self.saved_model else []
        return names + [litert_name(q) for q in self.quantizations] + ["deploy.json"]


def litert_name(quantization: str) -> str:
    """The LiteRT file of one quantisation."""
    return f"model_{quantization}.tflite"


def run_export(args) -> int:
    """Write the chosen trials' genomes as YAML and Model Garden block_specs (and .keras and deployed models)."""
    request = _deploy_request(args)
    if args.run:
        return _export_run(args, request)
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
    stems = {t.number: os.path.join(args.out, f"trial_{t.number:05d}") if len(chosen) > 1 else args.out
             for t in chosen}
    for stem in stems.values():
        if os.path.exists(stem) and not os.path.isdir(stem):
            raise UserError(f"--out {stem} is a file, not a folder")
    staging = tempfile.mkdtemp(prefix="spinenas-export-") if request else None
    try:
        if request:
            _stage_trials(args, request, chosen, study, stems, staging)
        _write_trials(args, chosen, study, stems, scaling, model_garden, request, staging)
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    return 0


def _write_trials(args, chosen, study, stems, scaling, model_garden, request, staging) -> None:
    """Write each chosen trial's files (its staged deployed model moved in last)."""
    from nas.trials import trial_genome

    for trial in chosen:
        genome = trial_genome(trial)
        stem = stems[trial.number]
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
        if request:
            _place(os.path.join(staging, str(trial.number)), stem, request)


def _deploy_request(args) -> Optional[DeployRequest]:
    """What ``--saved-model``, ``--litert`` and ``--quantize`` ask for (None: no deployed model), checked."""
    from spinenet.latency.runtime import QUANTIZATIONS

    extra = ()
    if args.quantize is not None:
        extra = tuple(q.strip() for q in args.quantize.split(",") if q.strip())
        bad = [q for q in extra if q not in QUANTIZATIONS]
        if bad or not extra:
            raise UserError(f"--quantize {args.quantize!r}: {'unknown ' + repr(bad[0]) if bad else 'empty'}; "
                            f"choose from {', '.join(QUANTIZATIONS)} (comma-separated)")
    litert = args.litert or args.quantize is not None  # --quantize names LiteRT files, so it implies --litert
    if not (litert or args.saved_model):
        if args.run:
            raise UserError("--run exports a trained model: add --saved-model and/or --litert")
        return None
    if args.run:
        given = [name for name, value in (("FILE", args.file), ("--storage", args.storage),
                                          ("--study-name", args.study_name), ("--data", args.data),
                                          ("--model-id-scaling", args.model_id_scaling),
                                          ("--checkpoint", args.checkpoint),
                                          ("--model-garden", args.model_garden)) if value]
        if given:
            raise UserError(f"--run DIR holds the genome, config and weights; {', '.join(given)} "
                            f"{'do' if len(given) > 1 else 'does'} not apply to it")
    elif not args.file:
        raise UserError("--saved-model and --litert need the experiment FILE (its model and task sections build "
                        "the deployed model), or --run DIR of a spinenas train run")
    quantizations = tuple(dict.fromkeys(("float32", *extra))) if litert else ()
    return DeployRequest(saved_model=args.saved_model, quantizations=quantizations)


@dataclasses.dataclass(frozen=True)
class _Source:
    """One model to deploy: its genome, train config, classes, weights file (None: fresh) and where it came from."""

    genome: object
    train_config: object
    num_classes: int
    weights: Optional[str]
    origin: dict


def _run_source(folder: str) -> _Source:
    """The genome, train config, classes and weights of a ``spinenas train --out`` folder, checked."""
    from nas.config import ConfigError
    from nas.experiment import load_train_config
    from search_spaces.genome import Genome

    if not os.path.isdir(folder):
        raise UserError(f"--run {folder}: no such folder (give the --out DIR of spinenas train)")
    missing = [name for name in RUN_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise UserError(f"--run {folder}: no {missing[0]} (a spinenas train --out folder holds "
                        f"{', '.join(RUN_FILES)} and metrics.json); nothing written")
    try:
        genome = Genome.load(os.path.join(folder, "genome.yaml"))
        config = load_train_config(os.path.join(folder, "config.yaml"))
    except (ConfigError, ValueError) as err:
        raise UserError(f"--run {folder}: {err}") from None
    metrics = {}
    metrics_path = os.path.join(folder, "metrics.json")
    if os.path.isfile(metrics_path):
        try:
            with open(metrics_path, encoding="utf-8") as handle:
                metrics = json.load(handle)
        except (OSError, ValueError) as err:
            raise UserError(f"--run {metrics_path}: not readable JSON ({err})") from None
    trained = metrics.get("fingerprint")
    if trained and trained != genome.fingerprint:
        raise UserError(f"--run {folder}: genome.yaml is genome {genome.fingerprint}, but the weights were trained "
                        f"for genome {trained} (metrics.json); nothing written")
    num_classes = metrics.get("num_classes") or _data_classes(config)
    origin = {"run": os.path.abspath(folder), "weights": "trained (checkpoint.weights.h5)"}
    return _Source(genome, config, int(num_classes), os.path.join(folder, "checkpoint.weights.h5"), origin)


def _data_classes(train_config) -> int:
    """The class count of the task's prepared data (when nothing recorded it)."""
    from nas.tasks import get_task

    task = get_task(train_config.task.name)
    return task.prepare_data(train_config.task, progress=False).num_classes


def _export_run(args, request: DeployRequest) -> int:
    """``--run DIR``: the run's genome.yaml and its trained model, deployed into ``--out``."""
    source = _run_source(args.run)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a file, not a folder")
    staging = tempfile.mkdtemp(prefix="spinenas-export-")
    try:
        _stage(source, request, staging, "--run " + args.run)
        os.makedirs(args.out, exist_ok=True)
        source.genome.save(os.path.join(args.out, "genome.yaml"))
        print(f"run {args.run} [{source.genome.fingerprint}] -> {args.out}: genome.yaml")
        _place(staging, args.out, request)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return 0


def _stage_trials(args, request: DeployRequest, chosen, study, stems: dict, staging: str) -> None:
    """Build and write every chosen trial's deployed model under ``staging``, before anything is exported."""
    from nas.commands.common import experiment_from_args
    from nas.trials import trial_genome

    experiment, _ = experiment_from_args(args)
    classes = None
    for trial in chosen:
        recorded = (trial.user_attrs.get("metrics") or {}).get("num_classes")
        if recorded is None and classes is None:
            classes = _data_classes(experiment.train_config)
        genome = trial_genome(trial)
        origin = {"study": study.study_name, "trial": trial.number,
                  "weights": "freshly initialised (a search keeps no trained weights)"}
        source = _Source(genome, experiment.train_config, int(recorded or classes), None, origin)
        _stage(source, request, os.path.join(staging, str(trial.number)), f"trial {trial.number}")
        genome_file = os.path.join(stems[trial.number], "genome.yaml")
        print(f"trial {trial.number} [{genome.fingerprint}]: the deployed model is the experiment's train config "
              f"with freshly initialised weights (for trained ones: spinenas train --genome {genome_file} "
              f"--config {args.file} --out RUN, then spinenas export --run RUN)")


def _stage(source: _Source, request: DeployRequest, folder: str, what: str) -> None:
    """Build ``source``'s deployed model and write ``request``'s files into ``folder``; one-line errors."""
    quiet_tensorflow()
    from nas.tasks import get_task
    from nas.tasks.deploy import INPUT_NAME, PIXEL_RANGE, folder_bytes, litert_bytes, write_saved_model
    from spinenet.decoder import decode
    from spinenet.latency.runtime import ConversionError

    config = source.train_config
    task = get_task(config.task.name)
    size = config.task.data.image_size
    try:
        backbone = decode(source.genome, input_shape=(size, size, 3), **config.model.decode_kwargs())
    except ValueError as err:
        raise UserError(f"{what}: genome {source.genome.fingerprint} at {size} px: {err}") from None
    model = task.build_model(backbone, config, source.num_classes)
    if source.weights:
        try:
            model.load_weights(source.weights)
        except (ValueError, KeyError, OSError) as err:
            raise UserError(f"{what}: {source.weights} does not fit the model of genome.yaml and config.yaml "
                            f"({' '.join(str(err).split())[:200]}); nothing written") from None
    function = task.inference_function(model, config, source.num_classes)
    os.makedirs(folder, exist_ok=True)
    sizes = {}
    for quantization in request.quantizations:
        try:
            content = litert_bytes(function, size, quantization)
        except ConversionError as err:
            raise UserError(f"{what}: {err}; nothing written") from None
        with open(os.path.join(folder, litert_name(quantization)), "wb") as handle:
            handle.write(content)
        sizes[litert_name(quantization)] = len(content)
    if request.saved_model:
        write_saved_model(function, os.path.join(folder, "saved_model"), size)
        sizes["saved_model"] = folder_bytes(os.path.join(folder, "saved_model"))
    description = {
        "task": task.name, "genome": source.genome.fingerprint, "num_classes": source.num_classes,
        "source": source.origin,
        "input": {"name": INPUT_NAME, "shape": [None, size, size, 3], "dtype": "float32",
                  "pixel_range": list(PIXEL_RANGE), "resize": function.resize,
                  "normalisation": function.normalisation},
        "outputs": function.outputs, **({"postprocess": function.details} if function.details else {}),
        "saved_model": ({"path": "saved_model", "signature": "serving_default", "batch": "any"}
                        if request.saved_model else None),
        "litert": ({"batch": 1, "ops": "built-in only", "quantizations": list(request.quantizations),
                    "int8": "dynamic-range: int8 weights, float activations"} if request.quantizations else None),
        "files": sizes,
    }
    with open(os.path.join(folder, "deploy.json"), "w", encoding="utf-8") as handle:
        json.dump(description, handle, indent=2)


# What each deployed file is, for the line printed when it is written.
_FILE_KINDS = {"saved_model": "TensorFlow SavedModel (serving_default, any batch)",
               "deploy.json": "input/output contract"}


def _place(staged: str, stem: str, request: DeployRequest) -> None:
    """Move the staged deployed-model files into ``stem``, replacing older ones; one printed line per file."""
    from nas.tasks.deploy import folder_bytes

    for name in request.files():
        target = os.path.join(stem, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
        shutil.move(os.path.join(staged, name), target)
        kind = _FILE_KINDS.get(name) or f"LiteRT, {name[len('model_'):-len('.tflite')]} weights, batch 1"
        print(f"  wrote {target}: {kind} ({folder_bytes(target):,} bytes)")


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
        "Write genome.yaml and Model Garden block_specs.py (and optionally a .keras backbone, and the task's "
        "deployed model as a SavedModel and LiteRT files) for the best trial, the Pareto front, one trial, or the "
        "confirmed winner; or deploy the trained model of a spinenas train run (--run DIR).")
    add_study_options(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--best", action="store_true", help="the best feasible trial (one objective)")
    which.add_argument("--trial", type=int, metavar="N", help="trial number N")
    which.add_argument("--pareto", action="store_true", help="every trial on the feasible Pareto front")
    which.add_argument("--confirmed", action="store_true",
                       help="the confirmed winner against the first seed genome (spinenas confirm FILE first)")
    which.add_argument("--run", metavar="DIR",
                       help="the model a spinenas train --out DIR run trained: its genome.yaml, config.yaml and "
                            "checkpoint.weights.h5 (no study needed; with --saved-model and/or --litert)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write (one subfolder per trial "
                                                                    "when several are chosen)")
    parser.add_argument("--model-id-scaling", metavar="ID",
                        help="also save a .keras backbone at this SpineNet scaling (49S, 49, 96, ...)")
    parser.add_argument("--checkpoint", action="store_true",
                        help="with --model-id-scaling, also write that backbone's weights (as decoded, freshly "
                             "initialised) as a TF2 checkpoint under the Model Garden's variable paths "
                             "(backbone_ID_checkpoint/ckpt), which the Model Garden's SpineNet of block_specs.py "
                             "restores")
    deployed = parser.add_argument_group(
        "deployed model", "the task's whole inference model (detection: backbone, head, box decoding and NMS; "
                          "classification: logits and probabilities) taking float32 pixels in 0..255; deploy.json "
                          "says what goes in and comes out")
    deployed.add_argument("--saved-model", action="store_true",
                          help="write it as a TensorFlow SavedModel (saved_model/, any batch size)")
    deployed.add_argument("--litert", action="store_true",
                          help="write it as a LiteRT file, built-in ops only, batch 1 (model_float32.tflite)")
    deployed.add_argument("--quantize", metavar="LIST",
                          help="also LiteRT files with float16 or int8 (dynamic-range) weights, comma-separated, "
                               "e.g. float16,int8 (implies --litert)")
    export_model_garden.add_model_garden_options(parser)
