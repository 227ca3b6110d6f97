"""The base of every fusion layer: what it reads, so a model can wire it up."""

import keras


class Fusion(keras.layers.Layer):
    """A layer that joins the modalities' encodings into one vector.

    Subclasses say what they read, so the model that calls them needs no
    table of fusion names:

    - `reads_sequences`: called with `(sequences, sequence_masks)` (each
      encoder's `sequence` and `sequence_mask` outputs) instead of the list
      of `pooled` vectors.
    - `takes_modality_mask`: also called with `modality_mask=`, 1 where a
      modality is present, so a missing one can be left out.
    - `fuses_decisions`: the output is already the task's logits (late
      fusion), so the task adds no hidden layers on top; the layer then
      takes a `num_outputs` argument that the task sets.
    """

    reads_sequences = False
    takes_modality_mask = False
    fuses_decisions = False


def modality_projections(input_shapes, width):
    """One built Dense + ReLU per modality, to `width`; none when `width` is None.

    Projecting first keeps a wide modality from dominating a concatenation,
    and keeps an outer product small.
    """
    if not width:
        return []
    projections = []
    for index, shape in enumerate(input_shapes):
        projection = keras.layers.Dense(width, activation="relu", name=f"projection_{index}")
        projection.build(shape)
        projections.append(projection)
    return projections


def project(projections, inputs):
    """Applies `modality_projections` (if any) to the modalities' vectors."""
    if not projections:
        return inputs
    return [projection(x) for projection, x in zip(projections, inputs)]
