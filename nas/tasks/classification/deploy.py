"""The deployed classifier: normalisation, the backbone and head, logits and softmax probabilities."""

from __future__ import annotations

import tensorflow as tf

from nas.tasks.deploy import InferenceFunction

OUTPUTS = {
    "logits": "[B, C] float32: class scores before the softmax (the training split's classes in folder-name order)",
    "probabilities": "[B, C] float32: softmax of the logits; each row sums to 1",
}

# How an image becomes the input, as validation prepares it.
RESIZE = "RGB, resized (aspect kept) so its short side is S, then the centre S x S crop"


def classification_inference(model, train_config, num_classes: int) -> InferenceFunction:
    """The deployed classifier of ``model`` (:func:`~nas.tasks.classification.head.build_classifier`'s)."""
    if model.output.shape[-1] != num_classes:
        raise ValueError(f"the model has {model.output.shape[-1]} classes, not {num_classes}")

    def call(images):
        logits = model(images / 127.5 - 1.0, training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    return InferenceFunction(call, OUTPUTS, model=model, resize=RESIZE)


__all__ = ["OUTPUTS", "classification_inference"]
