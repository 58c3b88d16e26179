"""A task's deployed model written as a TensorFlow SavedModel or a LiteRT file, and read back.

Task-agnostic: what the model computes is the task's
(:meth:`nas.tasks.base.Task.inference_function`, an :class:`InferenceFunction`);
here it is only traced, saved and converted. Every deployed model takes one
input, ``images``: float32 pixels ``[B, S, S, 3]`` in 0..255, and returns a
dict of named outputs. A SavedModel takes any batch size; a LiteRT file batch 1.

Examples:
    >>> import os, tempfile, numpy as np, tensorflow as tf
    >>> brightness = InferenceFunction(lambda images: {"mean": tf.reduce_mean(images, axis=[1, 2, 3])},
    ...                                outputs={"mean": "mean pixel value"})
    >>> folder = tempfile.mkdtemp()
    >>> write_saved_model(brightness, os.path.join(folder, "saved_model"), image_size=8)
    >>> run = load_saved_model(os.path.join(folder, "saved_model"))
    >>> run(np.full([2, 8, 8, 3], 10.0, np.float32))["mean"].tolist()
    [10.0, 10.0]
    >>> from spinenet.latency.runtime import LiteRTModel
    >>> LiteRTModel(litert_bytes(brightness, 8)).run(np.full([1, 8, 8, 3], 3.0, np.float32))["mean"].tolist()
    [3.0]
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Optional

# The one input of every deployed model (its name in both signatures).
INPUT_NAME = "images"
# What the input holds: the task normalises inside the model.
PIXEL_RANGE = (0.0, 255.0)


# eq=False: hashed by identity, as tf.function needs of a callable it traces.
@dataclasses.dataclass(frozen=True, eq=False)
class InferenceFunction:
    """A deployed model: ``call(images) -> {name: tensor}``, with what it is made of and what it returns.

    ``model`` is the Keras model the function runs (its layer names name a
    layer LiteRT cannot convert; None for a function of no model).
    ``outputs`` maps each output name to its meaning; ``resize`` says how an
    image becomes the S x S input (as the task's evaluation prepares it);
    ``normalisation`` how pixels become model inputs; ``details`` holds
    settings baked into the function (for a detector, its post-process), for
    ``deploy.json``.
    """

    call: Callable
    outputs: dict
    model: Any = None
    resize: str = ""
    normalisation: str = "x / 127.5 - 1 (to [-1, 1]), inside the model"
    details: dict = dataclasses.field(default_factory=dict)

    def __call__(self, images):
        return self.call(images)


def _traced(function, batch: Optional[int], image_size: int):
    import tensorflow as tf

    call = getattr(function, "call", function)
    return tf.function(call, input_signature=[
        tf.TensorSpec([batch, image_size, image_size, 3], tf.float32, name=INPUT_NAME)])


def _holder(concrete):
    """A tf.Module that owns the variables ``concrete`` captures (what a SavedModel must reach to save them)."""
    import tensorflow as tf

    module = tf.Module()
    # The variables, not the Keras model: saving the model would serialise every layer's own call as well.
    module.captured = list(concrete.variables)
    return module


def write_saved_model(function, path: str, image_size: int) -> None:
    """Save ``function`` as a SavedModel at ``path`` whose ``serving_default`` takes ``images`` [None, S, S, 3]."""
    import tensorflow as tf

    serve = _traced(function, None, image_size)
    module = _holder(serve.get_concrete_function())
    module.serve = serve
    tf.saved_model.save(module, path, signatures={"serving_default": serve.get_concrete_function()})


def load_saved_model(path: str) -> Callable:
    """A SavedModel written by :func:`write_saved_model` as a function: images (numpy) -> {name: numpy array}."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]

    def run(images):
        outputs = serve(**{INPUT_NAME: tf.constant(images, tf.float32)})
        return {name: value.numpy() for name, value in outputs.items()}

    run.loaded = loaded  # the signature holds its variables only weakly
    return run


def layer_names(model) -> list[str]:
    """Names of ``model``'s layers and of the layers of its nested models (a backbone's blocks)."""
    names = []
    for layer in getattr(model, "layers", []):
        names.append(layer.name)
        names += layer_names(layer) if hasattr(layer, "layers") else []
    return names


def litert_bytes(function, image_size: int, quantization: str = "float32") -> bytes:
    """The LiteRT flatbuffer of ``function`` at batch 1, built-in ops only, with ``quantization``'s weights.

    ``quantization`` is one of :data:`spinenet.latency.runtime.QUANTIZATIONS`.
    Raises :class:`spinenet.latency.runtime.ConversionError` naming the layer
    of ``function.model`` that holds an op LiteRT has no kernel for.
    """
    from spinenet.latency.runtime import ConversionError, convert_to_litert

    concrete = _traced(function, 1, image_size).get_concrete_function()
    names = layer_names(getattr(function, "model", None))
    try:
        return convert_to_litert(concrete, quantization, layer_names=names, trackable=_holder(concrete))
    except ConversionError as err:
        raise ConversionError(_with_layer(str(err), concrete, names)) from None


def _with_layer(message: str, concrete, names) -> str:
    """``message`` naming the layer whose graph scope holds the op it names, when it names none."""
    match = re.search(r"op tf\.(\w+) has no", message)
    if not match or "cannot convert the model" not in message:
        return message
    # The converter's text does not always carry the op's location; the traced graph's scopes do.
    graph = concrete.graph.as_graph_def()
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
    known = set(names)
    for node in nodes:
        if node.op == match.group(1):
            layer = next((scope for scope in reversed(node.name.split("/")[:-1]) if scope in known), None)
            if layer:
                return message.replace("the model", f"layer {layer}", 1)
    return message


def folder_bytes(path: str) -> int:
    """Bytes of the file at ``path``, or of every file under the folder ``path``."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, files in os.walk(path) for name in files)


__all__ = ["INPUT_NAME", "InferenceFunction", "PIXEL_RANGE", "folder_bytes", "layer_names", "litert_bytes",
           "load_saved_model", "write_saved_model"]
