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
