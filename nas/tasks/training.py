"""The one training loop every task runs: optimizer and schedule, precision, the train step, epochs, reporting.

A task brings only its data, model, loss and evaluation (:class:`TaskTraining`);
:func:`train_genome` does the rest the same way for every task. Nothing here
knows a task (tasks never import each other).

Examples:
    >>> resolve_precision("float32")
    'float32'
    >>> resolve_precision("auto") in PRECISIONS
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Callable, Iterator, Optional

import tensorflow as tf
import tf_keras
import yaml

from nas.config import to_data
from nas.tasks.base import Report, TrainingDiverged

# The settings ``task.training.precision`` accepts besides ``auto``.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU feature flags the kernel reports (empty where ``/proc/cpuinfo`` is unreadable)."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16(flags=None) -> bool:
    """True when the CPU does bfloat16 arithmetic natively (AVX-512 BF16 or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


@functools.lru_cache(maxsize=None)
def _gpus_with_tensor_cores() -> tuple[bool, bool]:
    """(any GPU visible, every visible GPU has compute capability 7.0 or more)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False, False
    capable = []
    for gpu in gpus:
        try:
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (ValueError, RuntimeError):
            capability = None
        capable.append(bool(capability) and tuple(capability) >= (7, 0))
    return True, all(capable)


def resolve_precision(setting: str = "auto") -> str:
    """The Keras mixed-precision policy name ``setting`` means on this machine.

    ``auto``: ``mixed_float16`` on GPUs with tensor cores (compute capability
    7.0+), ``float32`` on other GPUs, ``mixed_bfloat16`` on CPUs with native
    bfloat16 (``avx512_bf16`` or AMX), else ``float32``. Any other setting is
    returned as is.
    """
    if setting != "auto":
        if setting not in PRECISIONS:
            raise ValueError(f"precision: expected auto or one of {', '.join(PRECISIONS)}, got {setting!r}")
        return setting
    any_gpu, tensor_cores = _gpus_with_tensor_cores()
    if any_gpu:
        return "mixed_float16" if tensor_cores else "float32"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[str]:
    """Set Keras' global dtype policy to ``name`` while models are built and trained, then restore it.

    The policy is global state; a warm process trains several trials, so it
    must never leak from one trial into the next.
    """
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def wrap_optimizer(optimizer, precision: str, variables):
    """``optimizer`` ready to train ``variables``: its slots made (:func:`create_optimizer_weights`), with
    dynamic loss scaling where float16 needs it (bfloat16 has float32's range). Call it in the strategy's scope."""
    if precision == "mixed_float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    create_optimizer_weights(optimizer, variables)
    return optimizer


def create_optimizer_weights(optimizer, variables) -> None:
    """Create ``optimizer``'s step counter and slots (momentum) for ``variables`` now, before the train step runs.

    A ``tf.function`` that creates variables on its first call is traced
    twice (once creating them, once more to check it no longer does), and the
    optimizer creates its slots in its first ``apply_gradients``. Creating them
    here traces the step once: the proxy's first step took 7.5 s against 14.2 s
    on the idle 2-core machine (``bench/results/proxy_warm_idle.json``). No number
    changes: the slots start at zero either way.
    """
    if isinstance(optimizer, tf_keras.optimizers.legacy.Optimizer):
        # The legacy OptimizerV2 (and its LossScaleOptimizer) has no public way to make its hyperparameters,
        # step counter and slots; it is frozen code. tests/test_training.py fails if tf_keras changes this call.
        optimizer._create_all_weights(variables)
    else:
        optimizer.build(variables)


def make_optimizer(learning_rate, momentum: float, variables):
    """The SGD with momentum every task trains with, for the global dtype policy, ready for ``variables``.

    Call it in the strategy's scope. ``learning_rate`` is a number or a
    schedule (:class:`WarmupDecay`).
    """
    # The legacy SGD applies momentum with one fused kernel per variable (ResourceApplyKerasMomentum, the
    # same update rule); the new one emits ~11 ops per variable, a third of the detector's train-step graph,
    # which costs tracing time and per-step executor overhead.
    sgd = tf_keras.optimizers.legacy.SGD(learning_rate=learning_rate, momentum=momentum)
    return wrap_optimizer(sgd, tf_keras.mixed_precision.global_policy().name, variables)


def scale_loss(loss, optimizer):
    """``loss`` times the loss scale when ``optimizer`` has one; call it inside the gradient tape."""
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        return optimizer.get_scaled_loss(loss)
    return loss


def unscale_gradients(grads, optimizer):
    """Gradients of a :func:`scale_loss` loss back at their true size."""
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        return optimizer.get_unscaled_gradients(grads)
    return grads


def apply_gradients(optimizer, grads, variables, clip_norm: Optional[float] = None) -> None:
    """Sum ``grads`` over the replicas, clip the sum to global norm ``clip_norm`` (None: no clip), apply it.

    Call it in a replica step; each replica's ``grads`` are its share of the
    global batch's gradient (its loss divided by the replica count). Each
    replica clipping its share to ``clip_norm / replicas`` before the optimizer
    summed them (as the tasks once did) is not clipping the gradient: with
    two replicas the step differed from one replica's on the same batch.
    """
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    grads, variables = [g for g, _ in pairs], [v for _, v in pairs]
    summed = tf.distribute.has_strategy()
    if summed:
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    if clip_norm:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm)
    # Every optimizer the tasks use (legacy, newer, and their loss scales) takes this keyword.
    optimizer.apply_gradients(zip(grads, variables), experimental_aggregate_gradients=not summed)


class WarmupDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``base``, then cosine decay to zero or step decay at fractions of training."""

    def __init__(self, base: float, total_steps: int, warmup_steps: int, schedule: str = "cosine",
                 boundaries=(0.67, 0.89), factor: float = 0.1):
        self.base, self.total_steps, self.warmup_steps = float(base), int(total_steps), int(warmup_steps)
        self.schedule, self.boundaries, self.factor = schedule, tuple(boundaries), float(factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        warm = self.base * tf.minimum(1.0, (step + 1.0) / warmup)
        if self.schedule == "cosine":
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            decayed = 0.5 * self.base * (1.0 + tf.cos(math.pi * progress))
        else:
            passed = tf.add_n([tf.cast(step >= b * self.total_steps, tf.float32) for b in self.boundaries] or [0.0])
            decayed = self.base * tf.pow(self.factor, passed)
        return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"base": self.base, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "schedule": self.schedule, "boundaries": self.boundaries, "factor": self.factor}


def compile_step(replica_step, strategy, jit_compile: bool, autograph: bool = True):
    """``replica_step`` as one ``tf.function``: plain, or run on every replica of ``strategy`` with its results averaged."""
    if strategy is None:
        return tf.function(replica_step, jit_compile=jit_compile, autograph=autograph)

    # strategy.run converts replica_step with autograph only when the calling function does.
    @tf.function(jit_compile=jit_compile, autograph=autograph)
    def distributed_step(*batch):
        values = strategy.run(replica_step, args=batch)
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in values.items()}

    return distributed_step


def decayed_variables(model) -> list:
    """The variables weight decay applies to: every kernel (convolutions, dense), no bias, scale or offset."""
    return [v for v in model.trainable_variables if "kernel" in v.name]


# loss(model, images, targets) -> {"loss": the task's loss without weight decay, other scalars to report...}
TaskLoss = Callable[[Any, Any, Any], dict]


def make_train_step(model, optimizer, loss: TaskLoss, training, strategy=None):
    """The compiled train step ``step(images, targets) -> values``: ``loss`` plus weight decay, one SGD update.

    ``values`` is ``loss``'s dict with the weight decay added to its
    ``loss``. Under ``strategy`` each replica takes its share of the batch and
    :func:`apply_gradients` clips the sum. ``training`` is the task's
    :class:`nas.tasks.training_config.TrainingConfig`.
    """
    decayed = decayed_variables(model)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            values = dict(loss(model, images, targets))
            values["loss"] = values["loss"] + training.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
            # apply_gradients sums the replicas' gradients, so each contributes its share.
            share = scale_loss(values["loss"] / replicas, optimizer)
        grads = unscale_gradients(tape.gradient(share, model.trainable_variables), optimizer)
        apply_gradients(optimizer, grads, model.trainable_variables, training.gradient_clip_norm)
        return values

    # No Python control flow on tensors anywhere in a step: autograph would only add tracing time.
    return compile_step(replica_step, strategy, training.jit_compile, autograph=False)


def epoch_batches(dataset, epochs: int, strategy=None):
    """``epochs`` passes over ``dataset`` (batches, ``drop_remainder``) as one input, split over ``strategy``'s replicas.

    Exactly the batches :func:`train_epochs` reads: an endless dataset was
    still filling its buffers when training ended, and tearing it down blocked
    a warm process's trial for 25-38 s.
    """
    dataset = dataset.repeat(epochs)
    return strategy.experimental_distribute_dataset(dataset) if strategy is not None else dataset


def report_metrics(report, step: int, metrics: dict, writer, history: list) -> None:
    """Record one evaluation: in ``history``, in TensorBoard (``writer``, may be None) and to ``report`` (may raise)."""
    history.append({"step": step, **metrics})
    if writer is not None:
        with writer.as_default(step=step):
            for name, value in metrics.items():
                if name != "epoch" and value is not None:  # None: nothing to measure (COCO APs without small objects)
                    tf.summary.scalar(f"val/{name}", value)
        writer.flush()
    if report is not None:
        report(step, metrics)


def train_epochs(step_fn: Callable, dataset, training, steps_per_epoch: int, *, evaluate: Callable[[], dict],
                 every_epoch: bool, summarise: Callable[[dict], dict], report: Optional[Report], writer,
                 history: list, timing: dict, progress: bool, schedule=None) -> tuple[int, dict, dict]:
    """Train ``training.epochs`` epochs of ``steps_per_epoch`` batches and evaluate; return (steps, metrics, scores).

    ``step_fn(batch)`` runs one compiled train step and returns its values (a
    ``loss`` among them); ``dataset`` is :func:`epoch_batches`' output, read by one
    iterator. ``evaluate()`` scores the validation split; it runs every
    ``training.report_every_steps`` steps, or after each epoch when
    ``every_epoch``, and always at the end, each result going to
    :func:`report_metrics` with the epoch and ``summarise(means)`` of the
    training values so far in the epoch. ``timing`` gains ``iterator``,
    ``input``, ``trace`` (the first step), ``train`` and ``evaluate``. Raises
    :class:`TrainingDiverged` on a NaN or infinite loss.
    """
    timing.update(iterator=0.0, input=0.0, trace=0.0, train=0.0, evaluate=0.0)
    bar = progress_bar(steps_per_epoch * training.epochs, progress)

    def evaluated():
        mark = time.perf_counter()
        metrics = evaluate()
        timing["evaluate"] += time.perf_counter() - mark
        return metrics

    # One iterator over the repeated dataset (reshuffled each pass): dropping a spent iterator every
    # epoch cost 2-14 s on 2 cores, 17% of a proxy trial.
    mark = time.perf_counter()
    batches = iter(dataset)
    timing["iterator"] += time.perf_counter() - mark
    step, total_steps, metrics, scores = 0, steps_per_epoch * training.epochs, {}, {}
    for epoch in range(1, training.epochs + 1):
        sums = {}
        for count in range(1, steps_per_epoch + 1):
            mark = time.perf_counter()
            batch = next(batches)
            timing["input"] += time.perf_counter() - mark
            mark = time.perf_counter()
            values = {k: float(v) for k, v in step_fn(batch).items()}
            timing["trace" if step == 0 else "train"] += time.perf_counter() - mark
            step += 1
            if not math.isfinite(values["loss"]):
                raise TrainingDiverged(f"loss became {values['loss']} at step {step} (epoch {epoch}); "
                                       "lower task.training.learning_rate or check the data")
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            scores = summarise({name: total / count for name, total in sums.items()})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{values['loss']:.3f}")
            if writer is not None and step % 10 == 0:
                with writer.as_default(step=step):
                    for name, value in values.items():
                        tf.summary.scalar(f"train/{name}", value)
                    if schedule is not None:
                        tf.summary.scalar("train/learning_rate", float(schedule(step - 1)))
            every = training.report_every_steps
            if every and step % every == 0 and step < total_steps:
                metrics = evaluated()
                report_metrics(report, step, {**metrics, "epoch": epoch, **scores}, writer, history)
        if not training.report_every_steps and every_epoch and epoch < training.epochs:
            metrics = evaluated()
            report_metrics(report, step, {**metrics, "epoch": epoch, **scores}, writer, history)
    if bar is not None:
        bar.close()
    metrics = evaluated()
    report_metrics(report, step, {**metrics, "epoch": training.epochs, **scores}, writer, history)
    return step, metrics, scores


def progress_bar(total: int, enabled: bool):
    """A tqdm bar over ``total`` training steps, or None when not ``enabled``."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc="train", dynamic_ncols=True)


def write_outputs(out_dir: str, genome, config, model, result: dict) -> None:
    """What a trained run leaves in ``out_dir``: genome.yaml, config.yaml, metrics.json and the weights."""
    os.makedirs(out_dir, exist_ok=True)
    genome.save(os.path.join(out_dir, "genome.yaml"))
    with open(os.path.join(out_dir, "config.yaml"), "w", encoding="utf-8") as handle:
        yaml.safe_dump(to_data(config), handle, sort_keys=False)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump({**result, "fingerprint": genome.fingerprint}, handle, indent=2)
    model.save_weights(os.path.join(out_dir, "checkpoint.weights.h5"))


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A task's data as :func:`train_genome` reads it."""

    train: Any  # a tf.data.Dataset of full (drop_remainder) training batches (images, targets), one epoch
    val: Any  # whatever the task's evaluation reads (a dataset, or a split and its dataset)
    train_images: int
    num_classes: int


@dataclasses.dataclass(frozen=True)
class TaskTraining:
    """What a task brings to :func:`train_genome`; every other part of training is the same for every task.

    ``data()`` reads the data (after the run is seeded). ``build_model(num_classes)`` returns
    ``(model, backbone)`` and is called in the strategy's scope. ``loss`` is a :data:`TaskLoss`.
    ``evaluator(model, val)`` returns the function that scores the validation data as a dict of
    metrics. ``summarise(means)`` names what the result keeps of the training values' epoch means.
    """

    data: Callable[[], TaskData]
    build_model: Callable[[int], tuple]
    loss: TaskLoss
    evaluator: Callable[[Any, Any], Callable[[], dict]]
    summarise: Callable[[dict], dict]


def train_genome(genome, config, task: TaskTraining, report: Optional[Report] = None, *,
                 out_dir: Optional[str] = None, progress: bool = False) -> dict:
    """Train ``genome`` under ``config`` (a :class:`nas.experiment.TrainConfig`) with ``task``'s parts; score it.

    The run is seeded by ``task.training.seed`` and trained at
    ``task.training.precision``. ``report(step, metrics)`` is called after
    every intermediate evaluation (each epoch, or every ``report_every_steps``;
    ``task.evaluation.every_epoch: auto`` evaluates each epoch only when there
    is a ``report``); it may raise (for example ``optuna.TrialPruned``) to stop.
    Returns the final evaluation's metrics with ``task.summarise``'s training
    values, ``steps``, ``epochs``, ``num_classes``, ``params``,
    ``backbone_params``, ``train_images_per_s``, ``wall_time_s``, ``timing``,
    ``history`` and ``precision``; with ``out_dir`` it also writes
    :func:`write_outputs` there. Raises :class:`TrainingDiverged` on a NaN or
    infinite loss.
    """
    precision = resolve_precision(config.task.training.precision)
    # The policy decides each layer's dtype when the model is built; reset afterwards so a warm
    # process's next trial (or the caller) never inherits it.
    with precision_policy(precision):
        result, model = _train(config, task, report, out_dir, progress)
    result["precision"] = precision
    if out_dir:
        write_outputs(out_dir, genome, config, model, result)
    return result


def _train(config, task: TaskTraining, report, out_dir, progress) -> tuple[dict, Any]:
    started = time.perf_counter()
    timing = {}
    training = config.task.training
    tf_keras.utils.set_random_seed(training.seed)
    data = task.data()
    timing["data"] = time.perf_counter() - started

    mark = time.perf_counter()
    strategy = tf.distribute.MirroredStrategy() if training.strategy == "mirrored" else None

    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        model, backbone = task.build_model(data.num_classes)
    steps_per_epoch = data.train_images // training.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {training.batch_size} is larger than the {data.train_images} training images")
    total_steps = steps_per_epoch * training.epochs
    schedule = WarmupDecay(training.learning_rate, total_steps, min(training.warmup_steps, total_steps),
                           training.schedule, training.step_boundaries, training.step_factor)
    with scope():
        optimizer = make_optimizer(schedule, training.momentum, model.trainable_variables)
    train_step = make_train_step(model, optimizer, task.loss, training, strategy)
    train_ds = epoch_batches(data.train, training.epochs, strategy)
    evaluate = task.evaluator(model, data.val)
    timing["build"] = time.perf_counter() - mark

    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tensorboard")) if out_dir else None
    every_epoch = config.task.evaluation.every_epoch
    if every_epoch == "auto":
        every_epoch = report is not None  # nobody reads intermediate values otherwise
    history = []
    step, metrics, scores = train_epochs(
        lambda batch: train_step(*batch), train_ds, training, steps_per_epoch, evaluate=evaluate,
        every_epoch=every_epoch, summarise=task.summarise, report=report, writer=writer, history=history,
        timing=timing, progress=progress, schedule=schedule)
    if writer is not None:
        writer.close()  # flush the event file now, not whenever the writer is collected
    timing["total"] = time.perf_counter() - started
    # Whatever no phase above measured (reporting, Python between steps): a large share is worth a look.
    timing["other"] = timing["total"] - sum(v for k, v in timing.items() if k != "total")
    result = {
        **metrics,
        **scores,
        "steps": step,
        "epochs": training.epochs,
        "num_classes": data.num_classes,
        "params": int(model.count_params()),
        "backbone_params": int(backbone.count_params()),
        "train_images_per_s": (step - 1) * training.batch_size / max(timing["train"], 1e-9),
        "wall_time_s": timing["total"],
        "timing": timing,
        "history": history,
    }
    return result, model
