"""The serving SavedModel: `model(preprocessor(raw))` traced into one graph.

Signatures:

- `serving_default`: one `tf.string` input per feature, batched (text as
  is, images and audio as encoded file bytes; an empty string marks a
  missing modality). Outputs for a categorical target: `probabilities`,
  `class_index`, `label`; binary: `probability`, `label`; multilabel:
  `scores`; numeric: `prediction` (in the target's units).
- `preprocessed`: the model's own numeric inputs (what `make_dataset`
  yields), for clients that preprocess themselves.
- `embed`: the fused embedding of raw inputs.

A retrieval model (a `DualEncoder`, no target) has `encode_text` and
`encode_image` instead, each taking its one raw feature and returning the
unit-length `embedding`; `serving_default` is `encode_text`, the query side.
"""

import keras
import tensorflow as tf

from mmkeras.models.builder import FUSED_EMBEDDING


def _outputs(target, preprocessor, prediction):
    if target.type == "categorical":
        labels = tf.constant(preprocessor.target.labels)
        index = tf.argmax(prediction, axis=-1, output_type=tf.int32)
        return {"probabilities": prediction, "class_index": index, "label": tf.gather(labels, index)}
    if target.type == "binary":
        labels = tf.constant(preprocessor.target.labels)
        probability = prediction[:, 0]
        return {"probability": probability, "label": tf.gather(labels, tf.cast(probability >= 0.5, tf.int32))}
    if target.type == "multilabel":
        return {"scores": prediction}
    return {"prediction": prediction[:, 0] * preprocessor.target.std + preprocessor.target.mean}


def raw_signature(features):
    return [{f.name: tf.TensorSpec([None], tf.string, name=f.name) for f in features}]


def build_export_archive(spec, preprocessor, model):
    """A `keras.export.ExportArchive` with the signatures above."""
    if spec.data.target is None:
        return _retrieval_archive(spec, preprocessor, model)
    features = spec.data.features
    embed_model = keras.Model(model.input, model.get_layer(FUSED_EMBEDDING).output)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(embed_model)
    archive.track(preprocessor)

    def serve_raw(raw):
        return _outputs(spec.data.target, preprocessor, model(preprocessor(raw), training=False))

    def serve_preprocessed(inputs):
        return _outputs(spec.data.target, preprocessor, model(inputs, training=False))

    def embed(raw):
        return {"embedding": embed_model(preprocessor(raw), training=False)}

    preprocessed_signature = [
        {
            name: tf.TensorSpec([None, *tensor.shape[1:]], tensor.dtype, name=name)
            for name, tensor in model.input.items()
        }
    ]
    archive.add_endpoint("serving_default", serve_raw, input_signature=raw_signature(features))
    archive.add_endpoint("preprocessed", serve_preprocessed, input_signature=preprocessed_signature)
    archive.add_endpoint("embed", embed, input_signature=raw_signature(features))
    return archive


def retrieval_towers(model):
    """{signature name: (feature, tower model)} of a DualEncoder."""
    return {
        "encode_text": (model.text_feature, model.tower(model.text_feature)),
        "encode_image": (model.image_feature, model.tower(model.image_feature)),
    }


def _encoder(preprocessor, feature, tower):
    def encode(raw):
        return {"embedding": tower(preprocessor.features[feature](raw[feature]), training=False)}

    return encode


def _retrieval_archive(spec, preprocessor, model):
    archive = keras.export.ExportArchive()
    archive.track(preprocessor)
    features = {f.name: f for f in spec.data.features}
    for signature, (feature, tower) in retrieval_towers(model).items():
        archive.track(tower)
        encode = _encoder(preprocessor, feature, tower)
        archive.add_endpoint(signature, encode, input_signature=raw_signature([features[feature]]))
        if signature == "encode_text":
            archive.add_endpoint(
                "serving_default", encode, input_signature=raw_signature([features[feature]])
            )
    return archive
