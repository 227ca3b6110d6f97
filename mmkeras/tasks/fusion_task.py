"""The base of tasks that put a head on the fused multimodal backbone."""

import keras
import numpy as np
import tensorflow as tf

from mmkeras.errors import SpecError
from mmkeras.models.builder import build_backbone
from mmkeras.preprocessing.preprocessor import MODALITY_MASK
from mmkeras.reporting import plots
from mmkeras.tasks.task import Evaluation, ParityCase, Task, raw_signature

PREDICTION = "prediction"
# A head layer beyond this many weights is refused: it would not fit a GPU
# (or the host) long before it learned anything.
MAX_HEAD_WEIGHTS = 50_000_000


def _check_head_size(fused_width, units):
    weights = fused_width * units
    if weights > MAX_HEAD_WEIGHTS:
        raise SpecError(
            f"model.fusion: the fused vector is {fused_width:,} wide, so the head's first layer "
            f"({units} units) would have {weights:,} weights ({weights * 4 / 1e9:.1f} GB in float32; "
            f"the limit is {MAX_HEAD_WEIGHTS:,}). Project the modalities smaller first "
            "(`model.fusion.projection_dim: 16` for tensor or concat fusion), use a fusion whose "
            "width does not multiply (low_rank_tensor, gated), or shrink the encoders' outputs."
        )


def _without_feature(inputs, feature, index, num_features):
    """A batch of inputs with one feature zeroed and marked missing."""
    inputs = dict(inputs)
    inputs[feature] = tf.zeros_like(inputs[feature])
    keep = 1.0 - tf.one_hot(index, num_features, dtype=inputs[MODALITY_MASK].dtype)
    inputs[MODALITY_MASK] = inputs[MODALITY_MASK] * keep
    return inputs


class FusionTask(Task):
    """A head on a `MultimodalBackbone`: hidden layers, then the output layer.

    Subclasses say how wide the output is and what it means (`head_output`,
    the loss, metrics, decoding and reports). A backbone that fuses
    decisions (late fusion) already outputs the logits, so only the output
    activation is added.

    Inputs are the backbone's (one per feature plus `modality_mask`); the
    output is `prediction`, in float32 under any dtype policy.

    Args:
        backbone: MultimodalBackbone.
        preprocessor: Preprocessor. Raw rows to the backbone's inputs; its
            `target` encodes this task's targets.
        hidden_dims: list of int. Hidden layers of the head.
        dropout_rate: float. Dropout after each hidden layer.
    """

    shows_examples = True
    compares_to_baselines = True
    # Whether a larger headline metric is the better one (accuracy, F1; not RMSE).
    higher_is_better = True

    def __init__(self, backbone, preprocessor, hidden_dims=(256,), dropout_rate=0.3, **kwargs):
        units, activation = self.head_output(preprocessor.target)
        inputs = backbone.input
        fused = backbone(inputs)
        if backbone.fuses_decisions:
            prediction = keras.layers.Activation(activation or "linear", dtype="float32", name=PREDICTION)(
                fused
            )
        else:
            _check_head_size(fused.shape[-1], (list(hidden_dims) or [units])[0])
            x = fused
            for index, width in enumerate(hidden_dims):
                x = keras.layers.Dense(width, activation="relu", name=f"head_dense_{index}")(x)
                x = keras.layers.Dropout(dropout_rate, name=f"head_dropout_{index}")(x)
            prediction = keras.layers.Dense(units, activation=activation, dtype="float32", name=PREDICTION)(x)
        super().__init__(inputs=inputs, outputs=prediction, preprocessor=preprocessor, **kwargs)
        self.backbone = backbone
        self.hidden_dims = list(hidden_dims)
        self.dropout_rate = dropout_rate

    @classmethod
    def head_output(cls, target):
        """(output width, activation or None) for an adapted target encoder."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec, preprocessor):
        units, _ = cls.head_output(preprocessor.target)
        head = spec.model.head
        return cls(
            build_backbone(spec, preprocessor, num_outputs=units),
            preprocessor,
            hidden_dims=head.get("hidden_dims", [256]),
            dropout_rate=head.get("dropout_rate", 0.3),
            name=cls.__name__.lower(),
        )

    @property
    def feature_names(self):
        return self.backbone.feature_names

    # What subclasses define for their kind of target.

    def report(self, targets, predictions):
        """Metrics of encoded targets against predictions (a dict)."""
        raise NotImplementedError

    def report_figures(self, report, targets, predictions):
        """{file name: PNG bytes} that show the report."""
        raise NotImplementedError

    # Serving.

    def export_archive(self):
        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.track(self.preprocessor)

        def serve_raw(raw):
            return self.serving_outputs(self(self.preprocessor(raw), training=False))

        def serve_preprocessed(inputs):
            return self.serving_outputs(self(inputs, training=False))

        def embed(raw):
            return {"embedding": self.backbone(self.preprocessor(raw), training=False)}

        preprocessed = [
            {
                name: tf.TensorSpec([None, *tensor.shape[1:]], tensor.dtype, name=name)
                for name, tensor in self.input.items()
            }
        ]
        archive.add_endpoint("serving_default", serve_raw, input_signature=raw_signature(self.feature_names))
        archive.add_endpoint("preprocessed", serve_preprocessed, input_signature=preprocessed)
        archive.add_endpoint("embed", embed, input_signature=raw_signature(self.feature_names))
        return archive

    def documented_inputs(self):
        return {"serving_default": self.feature_names, "embed": self.feature_names}

    def parity_cases(self, sample):
        outputs = self.decode(self.predict(sample.inputs, verbose=0))
        return [
            ParityCase("serving_default", sample.raw, name, value)
            for name, value in outputs.items()
            if np.issubdtype(value.dtype, np.floating)
        ]

    # Evaluation.

    def evaluate_dataset(self, dataset):
        """The report, its figures and a modality ablation, in one pass over the data.

        The ablation is the headline metric with all modalities, and with
        each one masked in turn (its input zeroed, its `modality_mask` entry
        0), as the model would see a row missing it.
        """
        features = self.feature_names
        targets, predictions = [], [[] for _ in range(len(features) + 1)]
        for inputs, target in dataset:
            targets.append(np.asarray(target))
            predictions[0].append(self.predict_on_batch(inputs))
            for index, feature in enumerate(features):
                masked = _without_feature(inputs, feature, index, len(features))
                predictions[index + 1].append(self.predict_on_batch(masked))
        targets = np.concatenate(targets)
        predictions = [np.concatenate(p) for p in predictions]
        report = self.report(targets, predictions[0])
        name, value = self.headline(report)
        ablation = {"all modalities": {name: value}}
        for feature, masked in zip(features, predictions[1:]):
            ablation[f"without {feature}"] = {name: self.headline(self.report(targets, masked))[1]}
        report["modality_ablation"] = ablation
        report["headline"] = name
        figures = self.report_figures(report, targets, predictions[0])
        figures["modality_ablation.png"] = plots.bar_figure(
            {k: v[name] for k, v in ablation.items()}, f"{name} with each modality masked", name
        )
        return Evaluation(report, figures, targets)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "hidden_dims": self.hidden_dims,
                "dropout_rate": self.dropout_rate,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return super().from_config(config)
