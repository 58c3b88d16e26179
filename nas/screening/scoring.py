"""Score genomes with zero-cost proxies: build each task model once, run every asked proxy on it.

Examples:
    >>> from nas.experiment import load_train_config
    >>> from spinenet import SPINENET_49
    >>> rows = score_genomes([SPINENET_49], load_train_config(), ["naswot", "multiply_adds"])  # doctest: +SKIP
    >>> sorted(rows[0])  # doctest: +SKIP
    ['multiply_adds', 'naswot']
"""

from __future__ import annotations

import gc
import time
from typing import Optional, Sequence

from nas.screening.ranks import rank_ensemble
from nas.screening.registry import COST_PROXIES, ENSEMBLE, ENSEMBLE_MEMBERS, PROXIES, expand, oriented

DEFAULT_BATCH_SIZE = 8


def score_genomes(genomes: Sequence, train_config, proxies: Sequence[str] = (ENSEMBLE,), *, seed: int = 0,
                  batch_size: int = DEFAULT_BATCH_SIZE, num_classes: Optional[int] = None, batch=None,
                  timings: Optional[dict] = None) -> list[dict]:
    """One dict per genome: proxy name -> score (higher predicts better), for ``proxies`` and their members.

    Every genome is built from ``seed`` and scored on the same minibatch of the
    task's training data (``batch`` or ``task.minibatch(train_config, batch_size,
    seed)``). ``ensemble`` is the mean normalised rank of its members among
    ``genomes``. ``timings``, when given, collects seconds per proxy (and
    ``build``, the model's construction) as lists, one entry per genome.
    """
    from nas.tasks import get_task
    from nas.tasks.base import model_cost

    task = get_task(train_config.task.name)
    names = expand(proxies)
    model_proxies = [n for n in names if n in PROXIES]
    if num_classes is None and (model_proxies or any(n in COST_PROXIES for n in names)):
        num_classes = task.prepare_data(train_config.task).num_classes
    if model_proxies and batch is None:
        batch = task.minibatch(train_config, batch_size, seed)
    functions = {n: PROXIES[n].load() for n in model_proxies}
    rows = []
    for genome in genomes:
        row = {}
        if any(n in COST_PROXIES for n in names):
            total, _ = model_cost(task, genome, train_config, num_classes)
            for name in names:
                if name in COST_PROXIES:
                    row[name] = float(getattr(total, name))
        if model_proxies:
            row.update(_score_model(task, genome, train_config, num_classes, batch, functions, seed, timings))
        rows.append(row)
    if ENSEMBLE in {oriented(p)[0] for p in proxies}:
        for row, value in zip(rows, rank_ensemble({m: [r[m] for r in rows] for m in ENSEMBLE_MEMBERS})):
            row[ENSEMBLE] = value
    return [{n: row[n] for n in [*names, ENSEMBLE] if n in row} for row in rows]


def _score_model(task, genome, train_config, num_classes, batch, functions, seed, timings) -> dict:
    from nas.screening.model import is_piecewise_linear

    mark = time.perf_counter()
    model = _build(task, genome, train_config, num_classes, seed, "float32")
    task_loss = task.loss_fn(genome, train_config, num_classes)

    def loss_fn(outputs, targets):
        # Tasks compute their loss in float32, as in training.
        import tensorflow as tf

        return task_loss(tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), outputs), targets)

    initial = model.get_weights()
    _time(timings, "build", mark)
    scores = {}
    for name, function in functions.items():
        mark = time.perf_counter()
        if name == "synflow" and not is_piecewise_linear(model):
            # float32 synflow rescales the input, which only ReLU networks allow; the flow passes e**88.
            wide = _build(task, genome, train_config, num_classes, seed, "float64", fresh=False)
            wide.set_weights([w.astype("float64") for w in initial])
            scores[name] = float(function(wide, batch, loss_fn, seed))
            del wide
        else:
            scores[name] = float(function(model, batch, loss_fn, seed))
            model.set_weights(initial)  # a proxy may change weights or batch-norm statistics
        _time(timings, name, mark)
    return scores


def _build(task, genome, train_config, num_classes, seed, floatx: str, fresh: bool = True):
    """The task's model for ``genome`` with ``floatx`` weights drawn from ``seed`` (``fresh``: after a Keras reset)."""
    import tf_keras

    from spinenet.decoder import decode

    if fresh:
        tf_keras.backend.clear_session()
        gc.collect()
    tf_keras.utils.set_random_seed(seed)
    size = train_config.task.data.image_size
    previous = tf_keras.backend.floatx()
    tf_keras.backend.set_floatx(floatx)
    try:
        backbone = decode(genome, input_shape=(size, size, 3), **train_config.model.decode_kwargs())
        return task.build_model(backbone, train_config, num_classes)
    finally:
        tf_keras.backend.set_floatx(previous)


def _time(timings, name, mark) -> None:
    if timings is not None:
        timings.setdefault(name, []).append(time.perf_counter() - mark)
