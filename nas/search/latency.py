"""Latency of an experiment's deployed models at the deploy size: predicted from the calibration table, or measured.

The deployed model is the task's whole inference model (for detection the
backbone, head, box decoding and NMS) at ``search.latency.input_size``
pixels, batch 1, under LiteRT with ``search.latency.threads`` threads: what
``spinenas export --litert`` writes. Predicted latency sums the model's
kernels from this machine's calibration table
(:mod:`spinenet.latency.calibration`); measured latency converts and times
the model itself (seconds per genome instead of microseconds).
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Callable, Iterable, Optional, Sequence

from nas.tasks.base import model_kernels
from spinenet.latency.calibration import (CalibrationMismatch, CalibrationTable, default_table_path, load_table,
                                          measure_kernels, new_table)
from spinenet.latency.predictor import LatencyPredictor, Prediction

RUNTIMES = ("litert", "tensorflow")


class LatencyUnavailable(ValueError):
    """Latency cannot be had as asked: no table, a table from elsewhere, or a model LiteRT cannot convert."""


def deploy_config(train_config, input_size: int):
    """``train_config`` with the task's image size set to the deploy ``input_size``."""
    task = train_config.task
    return dataclasses.replace(train_config, task=dataclasses.replace(
        task, data=dataclasses.replace(task.data, image_size=input_size)))


class ExperimentLatency:
    """Predicts and measures the latency of an experiment's deployed models on this machine.

    ``latency`` is the experiment's :class:`~nas.experiment.schema.LatencyConfig`
    (or one with ``input_size``/``threads``/``table`` overridden).
    """

    def __init__(self, task, train_config, num_classes: int, latency, *, input_size: Optional[int] = None):
        self.task = task
        self.num_classes = num_classes
        self.config = latency
        self.input_size = int(input_size or latency.input_size or train_config.task.data.image_size)
        self.train_config = deploy_config(train_config, self.input_size)
        self.threads = latency.threads
        self.table_path = latency.table or default_table_path(self.threads)
        self._predictor = None

    # Predicted latency -----------------------------------------------------------------------------------------

    def kernels(self, genome) -> list:
        """The deployed model's kernels (backbone then head) at the deploy size."""
        return model_kernels(self.task, genome, self.train_config, self.num_classes, self.input_size)

    def load_table(self, missing_ok: bool = False) -> Optional[CalibrationTable]:
        """This machine's calibration table (refused, as :class:`LatencyUnavailable`, when measured elsewhere)."""
        try:
            return load_table(self.table_path, self.threads, missing_ok=missing_ok)
        except (CalibrationMismatch, FileNotFoundError, ValueError) as err:
            raise LatencyUnavailable(str(err)) from None

    @property
    def predictor(self) -> LatencyPredictor:
        """The predictor over this machine's table (loaded once)."""
        if self._predictor is None:
            self._predictor = LatencyPredictor(self.load_table())
        return self._predictor

    def predict(self, genome) -> Prediction:
        """Predicted LiteRT latency of the deployed model of ``genome``."""
        return self.predictor.predict(self.kernels(genome))

    def latency_ms(self, genome) -> float:
        """What a trial records as ``latency_ms``: predicted, or measured when ``source: measured``."""
        if self.config.source == "measured":
            return self.measure(genome, ("litert",), repeats=self.config.repeats)["litert"].median_ms
        return self.predict(genome).ms

    # Measured latency ------------------------------------------------------------------------------------------

    def build(self, genome):
        """The deployed model of ``genome`` with fresh weights (an :class:`~nas.tasks.deploy.InferenceFunction`)."""
        from spinenet.decoder import decode

        backbone = decode(genome, input_shape=(self.input_size, self.input_size, 3),
                          **self.train_config.model.decode_kwargs())
        model = self.task.build_model(backbone, self.train_config, self.num_classes)
        return self.task.inference_function(model, self.train_config, self.num_classes)

    def measure(self, genome, runtimes: Sequence[str] = RUNTIMES, *, repeats: int = 20, warmup: int = 3,
                min_seconds: float = 0.5) -> dict:
        """``{runtime: Timing}`` of the deployed model of ``genome`` at batch 1, on random pixels.

        The weights are fresh, so a detector's scores sit near the head's
        prior and few boxes reach NMS (its work depends on the image).
        """
        import numpy as np
        import tensorflow as tf
        import tf_keras

        from nas.tasks.deploy import INPUT_NAME, litert_bytes
        from spinenet.latency.runtime import ConversionError, LiteRTModel, time_tensorflow

        function = self.build(genome)
        size = self.input_size
        images = np.random.default_rng(0).uniform(0, 255, [1, size, size, 3]).astype(np.float32)
        out = {}
        if "litert" in runtimes:
            try:
                content = litert_bytes(function, size)
            except ConversionError as err:
                raise LatencyUnavailable(f"genome {genome.fingerprint}: {err}") from None
            out["litert"] = LiteRTModel(content, self.threads).time(images, warmup=warmup, repeats=repeats,
                                                                    min_seconds=min_seconds)
        if "tensorflow" in runtimes:
            traced = tf.function(function.call, input_signature=[
                tf.TensorSpec([1, size, size, 3], tf.float32, name=INPUT_NAME)])
            out["tensorflow"] = time_tensorflow(traced, images, warmup=warmup, repeats=repeats,
                                                min_seconds=min_seconds)
        # Models built here are not returned: free Keras's global state, or timing many genomes in one
        # process (a calibration, a benchmark) grows by hundreds of MB per genome.
        del function
        tf_keras.backend.clear_session()
        return out


def calibration_genomes(space, seeds: Iterable, count: int, seed: int) -> list:
    """The seed genomes and ``count`` random genomes of ``space`` (distinct fingerprints), whose kernels are timed."""
    rng = random.Random(seed)
    genomes = {g.fingerprint: g for g in seeds}
    wanted = len(genomes) + count
    tries = 0
    while len(genomes) < wanted and tries < 50 * (count + 1):
        tries += 1
        genome = space.random_genome(rng)
        genomes.setdefault(genome.fingerprint, genome)
    return list(genomes.values())


def model_name(meter: ExperimentLatency, genome) -> str:
    """How a whole model timed at calibration is named in the table: genome, deploy size and task."""
    return f"{genome.fingerprint}@{meter.input_size}:{meter.task.name}"


def calibration_todo(meters: Sequence[ExperimentLatency], genomes: Sequence, models: int,
                     table: Optional[CalibrationTable]) -> tuple[list, list]:
    """What a calibration still has to time: the distinct kernels the table lacks, and ``(meter, genome)`` whole models.

    Pure Python, so a search decides in its own process whether a calibration is needed.
    """
    kernels = [k for meter in meters for genome in genomes for k in meter.kernels(genome)]
    missing = table.missing(kernels) if table is not None else list({k.key: k for k in kernels}.values())
    timed = {m["name"] for m in table.models} if table is not None else set()
    wanted = [(meter, genome) for meter in meters for genome in (list(genomes)[-models:] if models else [])
              if model_name(meter, genome) not in timed]
    return missing, wanted


def calibrate(meters: Sequence[ExperimentLatency], genomes: Sequence, *, models: int = 3,
              log: Callable[[str], None] = print, progress: bool = True, repeats: int = 20) -> CalibrationTable:
    """Time every kernel of ``genomes`` at each meter's size the table lacks, then ``models`` whole models per size.

    The table (this machine's, or a new one when there is none) is saved as it
    fills, so an interrupted calibration resumes where it stopped. A table
    measured elsewhere is set aside (:func:`set_aside`) and a new one measured. The
    whole models are the last ``models`` genomes (seeds come first).
    """
    first = meters[0]
    try:
        table = load_table(first.table_path, first.threads, missing_ok=True)
    except CalibrationMismatch as err:
        kept = set_aside(first.table_path)
        log(f"latency calibration: {str(err).split('; re-measure')[0]}; measuring a new one (the old one is kept "
            f"as {kept})")
        table = None
    except ValueError as err:
        raise LatencyUnavailable(str(err)) from None
    table = table or new_table(first.threads)
    todo, wanted = calibration_todo(meters, genomes, models, table)
    builders = {}
    for meter in meters:
        builders.update(meter.task.kernel_builders(meter.train_config))
    known = len({k.key for meter in meters for g in genomes for k in meter.kernels(g)})
    log(f"latency calibration: timing {len(todo)} of {known} distinct kernels and {len(wanted)} whole model(s) "
        f"with {first.threads} LiteRT thread(s) -> {first.table_path}")
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="kernel", desc="calibrate", dynamic_ncols=True)
    measure_kernels(table, todo, builders=builders, repeats=repeats,
                    progress=(lambda done, total: bar.update(1)) if bar is not None else None,
                    save=lambda: table.save(first.table_path))
    if bar is not None:
        bar.close()
    predictor = LatencyPredictor(table)
    for meter, genome in wanted:
        measured = meter.measure(genome, ("litert",), repeats=repeats)["litert"]
        kernel_ms, count, _ = predictor.kernel_sum(meter.kernels(genome))
        table.models.append({"name": model_name(meter, genome), "kernel_ms": kernel_ms, "kernels": count,
                             "measured_ms": measured.median_ms})
        table.save(first.table_path)
        log(f"  whole model {model_name(meter, genome)}: {measured.median_ms:.2f} ms measured, its kernels sum to "
            f"{kernel_ms:.2f} ms")
    table.save(first.table_path)
    for meter in meters:
        meter._predictor = None
    return table


def set_aside(path: str) -> str:
    """Rename the table at ``path`` to a free ``<name>.replaced-<n>.json`` beside it; the new path."""
    stem = path[:-len(".json")] if path.endswith(".json") else path
    number = 1
    while os.path.exists(f"{stem}.replaced-{number}.json"):
        number += 1
    kept = f"{stem}.replaced-{number}.json"
    os.replace(path, kept)
    return kept


# Random genomes (besides the seeds) whose kernels a search times before its first trial.
SEARCH_CALIBRATION_GENOMES = 30
# Whole models a search's calibration times, to scale kernel sums to.
CALIBRATION_MODELS = 3


def meter_for(experiment, num_classes: int) -> Optional[ExperimentLatency]:
    """The experiment's :class:`ExperimentLatency`, or None when it does not use latency."""
    if experiment.latency is None:
        return None
    return ExperimentLatency(experiment.task_plugin, experiment.train_config, num_classes, experiment.latency)


def prepare_latency(experiment, num_classes: int, log: Callable[[str], None] = print) -> None:
    """Before a search's first trial: time the kernels this machine's table lacks for the experiment's space.

    The seeds and :data:`SEARCH_CALIBRATION_GENOMES` random genomes are
    covered; the timing runs in a child process (the search process never
    imports TensorFlow), and only when something is missing. Raises
    :class:`LatencyUnavailable` when the table was measured elsewhere.
    Measured latency needs no table.
    """
    meter = meter_for(experiment, num_classes)
    if meter is None or meter.config.source == "measured":
        return
    table = meter.load_table(missing_ok=True)  # a table from elsewhere is refused here, before any child starts
    missing, wanted = calibration_todo([meter], _search_genomes(experiment), CALIBRATION_MODELS, table)
    if missing or wanted:
        log(f"latency: timing {len(missing)} kernel(s) and {len(wanted)} whole model(s) this machine's table "
            f"{meter.table_path} lacks (once)")
        in_child(_calibrate_experiment, experiment, num_classes)
    log(f"latency: predicted for the deployed model at {meter.input_size} px with {meter.threads} LiteRT "
        f"thread(s), from {meter.table_path}")


def measure_in_child(experiment, num_classes: int, genome) -> float:
    """Measured LiteRT latency (median ms) of ``genome``'s deployed model, timed in a child process.

    Any failure there (a model LiteRT cannot convert, an error while timing,
    the process dying) is one :class:`LatencyUnavailable` naming the genome.
    """
    from concurrent.futures.process import BrokenProcessPool

    try:
        return in_child(_measure_genome, experiment, num_classes, genome.to_dict())
    except LatencyUnavailable:
        raise
    except BrokenProcessPool:
        raise LatencyUnavailable(f"genome {genome.fingerprint}: the process timing its deployed model died") from None
    except Exception as err:  # noqa: BLE001 - whatever TensorFlow or LiteRT raised, in one line
        raise LatencyUnavailable(f"genome {genome.fingerprint}: timing its deployed model failed: "
                                 f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def in_child(target: Callable, *args):
    """``target(*args)`` in a fresh spawned process; its exception is raised here (``BrokenProcessPool`` if it died)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(target, *args).result()


def _search_genomes(experiment) -> list:
    seeds = experiment.search_space.load_seed_genomes(os.path.dirname(experiment.source) if experiment.source else ".")
    return calibration_genomes(experiment.search_space.build(), seeds, SEARCH_CALIBRATION_GENOMES, experiment.seed)


def _calibrate_experiment(experiment, num_classes: int) -> None:
    calibrate([meter_for(experiment, num_classes)], _search_genomes(experiment), models=CALIBRATION_MODELS,
              progress=False)


def _measure_genome(experiment, num_classes: int, genome_data: dict) -> float:
    from search_spaces.genome import Genome

    meter = meter_for(experiment, num_classes)
    return meter.measure(Genome.from_dict(genome_data), ("litert",), repeats=meter.config.repeats)["litert"].median_ms


__all__ = ["ExperimentLatency", "LatencyUnavailable", "RUNTIMES", "calibrate", "calibration_genomes", "deploy_config",
           "in_child", "measure_in_child", "meter_for", "prepare_latency", "set_aside"]
