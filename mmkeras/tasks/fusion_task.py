"""The base of tasks that put a head on the fused multimodal backbone."""

import keras
import numpy as np
import tensorflow as tf

from mmkeras.errors import SpecError
from mmkeras.layers import GradientScale
from mmkeras.models.backbone import FUSED_EMBEDDING, POOLED
from mmkeras.models.builder import build_backbone
from mmkeras.preprocessing.preprocessor import MODALITY_MASK
from mmkeras.reporting import plots
from mmkeras.spec.model import OGM_METHODS
from mmkeras.tasks.task import Evaluation, ParityCase, Task, raw_signature
from mmkeras.tasks.update_modulation import modulate_updates, ogm_coefficients, resolve_optimizer

PREDICTION = "prediction"
# The output holding each unimodal head's prediction, by feature.
UNIMODAL = "unimodal"
FUSED = "fused"
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


def _unimodal_head(feature, pooled, units, activation, head_weight):
    """One linear layer on an encoder's pooled vector: what that modality
    predicts alone. Its gradient reaches the encoder times `head_weight`."""
    x = GradientScale(head_weight, name=f"{feature}_head_gradient")(pooled)
    return keras.layers.Dense(units, activation=activation, dtype="float32", name=f"{feature}_prediction")(x)


def _replica_total(loss):
    """A loss Keras divided by the number of replicas (so their gradients sum
    to the mean), times that number again: the value to report."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * replicas if replicas > 1 else loss


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

    Inputs are the backbone's (one per feature plus `modality_mask`). The
    output is a dict: `prediction`, in float32 under any dtype policy, and,
    with `unimodal_heads`, `unimodal`: per feature, what one linear head on
    that encoder's pooled vector predicts. The heads are trained beside the
    fused head (their losses are part of `loss`; history and TensorBoard show
    `fused_loss` and `<feature>_loss` apart), so every epoch shows how much
    each modality has learned on its own, and `evaluate` scores each head
    beside the fused model. `predict` returns the fused prediction only.

    Args:
        backbone: MultimodalBackbone.
        preprocessor: Preprocessor. Raw rows to the backbone's inputs; its
            `target` encodes this task's targets.
        hidden_dims: list of int. Hidden layers of the head.
        dropout_rate: float. Dropout after each hidden layer.
        unimodal_heads: bool. Adds a head per modality.
        head_weight: float. The factor on the gradient each unimodal head
            sends into its encoder: 0 (the heads only watch what the fused
            model made of each encoder), 1 (each encoder also learns to
            predict alone), or anything between.
        ogm_alpha: float or None. With unimodal heads, on-the-fly gradient
            modulation (`update_modulation`): each training step slows the
            update of the encoder whose head is ahead on the batch; logs
            `<feature>_update_factor`. None turns it off.
        ogm_noise: bool. With `ogm_alpha`, adds OGM-GE's gradient noise.
    """

    shows_examples = True
    compares_to_baselines = True
    # Whether a larger headline metric is the better one (accuracy, F1; not RMSE).
    higher_is_better = True

    def __init__(
        self,
        backbone,
        preprocessor,
        hidden_dims=(256,),
        dropout_rate=0.3,
        unimodal_heads=False,
        head_weight=1.0,
        ogm_alpha=None,
        ogm_noise=True,
        **kwargs,
    ):
        units, activation = self.head_output(preprocessor.target)
        inputs = backbone.input
        encoded = backbone(inputs)
        fused = encoded[FUSED_EMBEDDING]
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
        outputs = {PREDICTION: prediction}
        if unimodal_heads:
            outputs[UNIMODAL] = {
                feature: _unimodal_head(feature, pooled, units, activation, head_weight)
                for feature, pooled in encoded[POOLED].items()
            }
        super().__init__(inputs=inputs, outputs=outputs, preprocessor=preprocessor, **kwargs)
        self.backbone = backbone
        self.hidden_dims = list(hidden_dims)
        self.dropout_rate = dropout_rate
        self.unimodal_heads = unimodal_heads
        self.head_weight = head_weight
        # Each head's loss, and the fused head's, apart from their sum (`loss`).
        self.head_losses = [keras.metrics.Mean(name=f"{name}_loss") for name in self.head_names]
        self.ogm_alpha = ogm_alpha if unimodal_heads else None
        self.ogm_noise = ogm_noise
        if self.ogm_alpha is not None:
            # Set in each training step, read by the optimizer in the same
            # step; averaged over replicas, so they all update alike.
            self.update_factors = self.add_weight(
                shape=(len(self.feature_names),),
                initializer="ones",
                trainable=False,
                aggregation="mean",
                name="update_factors",
            )
            self.factor_trackers = [
                keras.metrics.Mean(name=f"{feature}_update_factor") for feature in self.feature_names
            ]

    @classmethod
    def head_output(cls, target):
        """(output width, activation or None) for an adapted target encoder."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec, preprocessor):
        units, _ = cls.head_output(preprocessor.target)
        head, balance = spec.model.head, spec.model.balance
        return cls(
            build_backbone(spec, preprocessor, num_outputs=units),
            preprocessor,
            hidden_dims=head.get("hidden_dims", [256]),
            dropout_rate=head.get("dropout_rate", 0.3),
            unimodal_heads=balance.unimodal_heads and len(spec.data.features) > 1,
            head_weight=balance.head_weight,
            ogm_alpha=balance.ogm_alpha if balance.method in OGM_METHODS else None,
            ogm_noise=balance.method == "ogm_ge",
            name=cls.__name__.lower(),
        )

    @property
    def feature_names(self):
        return self.backbone.feature_names

    # Training: the fused loss plus each unimodal head's.

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        fused_loss = super().compute_loss(x, y, y_pred[PREDICTION], sample_weight, training)
        if not self.unimodal_heads:
            return fused_loss
        batch_size = tf.shape(y_pred[PREDICTION])[0]
        self.head_losses[0].update_state(_replica_total(fused_loss), sample_weight=batch_size)
        loss_function = keras.losses.get(self.loss)
        present = tf.cast(x[MODALITY_MASK], "float32")
        total, alone = fused_loss, []
        for index, (tracker, prediction) in enumerate(zip(self.head_losses[1:], y_pred[UNIMODAL].values())):
            # A row missing this modality teaches its head nothing.
            weight = present[:, index] if sample_weight is None else sample_weight * present[:, index]
            head_loss = loss_function(y, prediction, weight)
            alone.append(_replica_total(head_loss))
            tracker.update_state(alone[-1], sample_weight=batch_size)
            total = total + head_loss
        if self.ogm_alpha is not None:
            # On validation batches the factors are only logged: what those
            # rows would have set.
            factors = ogm_coefficients(tf.stack(alone), self.ogm_alpha)
            if training:
                self.update_factors.assign(factors)
            for index, tracker in enumerate(self.factor_trackers):
                tracker.update_state(factors[index], sample_weight=batch_size)
        return total

    def compile(self, optimizer="adam", **kwargs):
        """`Task.compile`; with `ogm_alpha`, the optimizer's updates of each
        encoder are scaled by its modality's factor."""
        if self.ogm_alpha is not None:
            optimizer = resolve_optimizer(optimizer)
            encoder_variables = [self.backbone.encoders[f].trainable_variables for f in self.feature_names]
            modulate_updates(optimizer, encoder_variables, self.update_factors, self.ogm_noise)
        super().compile(optimizer=optimizer, **kwargs)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred[PREDICTION], sample_weight)

    def predict_step(self, data):
        return super().predict_step(data)[PREDICTION]

    @property
    def head_names(self):
        """`fused` and each feature with a unimodal head, as their losses are
        logged (`<name>_loss`); empty without unimodal heads."""
        return [FUSED, *self.feature_names] if self.unimodal_heads else []

    @property
    def head_gradient_scales(self):
        """{feature: the GradientScale layer on its unimodal head's input}."""
        return {feature: self.get_layer(f"{feature}_head_gradient") for feature in self.head_names[1:]}

    @property
    def loss_to_monitor(self):
        return f"{FUSED}_loss" if self.unimodal_heads else "loss"

    def constant_loss(self, train_targets, targets, class_weight=None):
        """The loss on `targets` of always predicting the mean training target
        (the class shares; the mean value): what a head that learned nothing
        from its modality scores. Both are encoded targets. With
        `class_weight` ({class index: weight}, as training weighs rows) the
        shares and the loss are weighed by it, as a head trained with those
        weights learns and is scored (inverse frequencies: uniform shares)."""
        train_weights, weights = (_row_weights(t, class_weight) for t in (train_targets, targets))
        constant = np.average(self.target_as_prediction(train_targets), axis=0, weights=train_weights)
        predictions = np.tile(constant, (len(targets), 1))
        return float(keras.losses.get(self.loss)(targets, predictions, sample_weight=weights))

    def explained_unit(self, prediction, label=None):
        """(index of the output `mmkeras explain` attributes, what that output
        is) for one row's prediction; `label` picks a class instead of the
        predicted one."""
        raise NotImplementedError

    def target_as_prediction(self, targets):
        """Encoded targets in the form of predictions (`[rows, outputs]`)."""
        return np.asarray(targets, np.float32).reshape(len(targets), -1)

    def predict_with_heads(self, inputs):
        """(fused predictions, {feature: its unimodal head's predictions}) for
        a batch of inputs, from one call ({} without unimodal heads)."""
        if not self.unimodal_heads:
            return np.asarray(self.predict_on_batch(inputs)), {}
        outputs = self(inputs, training=False)
        return np.asarray(outputs[PREDICTION]), {name: np.asarray(p) for name, p in outputs[UNIMODAL].items()}

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
            return self.serving_outputs(self(self.preprocessor(raw), training=False)[PREDICTION])

        def serve_preprocessed(inputs):
            return self.serving_outputs(self(inputs, training=False)[PREDICTION])

        def embed(raw):
            return {"embedding": self.backbone(self.preprocessor(raw), training=False)[FUSED_EMBEDDING]}

        preprocessed = [
            {
                name: tf.TensorSpec([None, *tensor.shape[1:]], tensor.dtype, name=name)
                for name, tensor in self.input.items()
            }
        ]
        raw = raw_signature(self.preprocessor.input_names)
        archive.add_endpoint("serving_default", serve_raw, input_signature=raw)
        archive.add_endpoint("preprocessed", serve_preprocessed, input_signature=preprocessed)
        archive.add_endpoint("embed", embed, input_signature=raw)
        return archive

    def documented_inputs(self):
        return {"serving_default": self.preprocessor.input_names, "embed": self.preprocessor.input_names}

    def parity_cases(self, sample):
        outputs = self.decode(self.predict(sample.inputs, verbose=0))
        return [
            ParityCase("serving_default", sample.raw, name, value)
            for name, value in outputs.items()
            if np.issubdtype(value.dtype, np.floating)
        ]

    # Evaluation.

    def evaluate_dataset(self, dataset):
        """The report, its figures, a modality ablation and each modality's
        own head, in one pass over the data.

        The ablation is the headline metric with all modalities, and with
        each one masked in turn (its input zeroed, its `modality_mask` entry
        0), as the model would see a row missing it. With unimodal heads the
        report also holds each head's headline (`unimodal_heads`) and
        `fusion_check`, which says whether the fused model beats them, and
        a model that switched a modality off in training names it
        (`switched_off`).
        """
        features = self.feature_names
        targets, predictions = [], [[] for _ in range(len(features) + 1)]
        heads = {feature: [] for feature in features} if self.unimodal_heads else {}
        for inputs, target, *_ in dataset:  # a class-weighted split's batches also carry weights
            targets.append(np.asarray(target))
            fused, alone = self.predict_with_heads(inputs)
            predictions[0].append(fused)
            for feature, value in alone.items():
                heads[feature].append(value)
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
        if self.backbone.switched_off:
            report["switched_off"] = self.backbone.switched_off
        report["headline"] = name
        figures = self.report_figures(report, targets, predictions[0])
        figures["modality_ablation.png"] = plots.bar_figure(
            {k: v[name] for k, v in ablation.items()}, f"{name} with each modality masked", name
        )
        if heads:
            alone = self._head_scores(targets, heads)
            report["unimodal_heads"] = {feature: {name: score} for feature, score in alone.items()}
            report["fusion_check"] = self.fusion_check(name, value, alone)
            figures["unimodal_heads.png"] = plots.bar_figure(
                {"fused": value, **{f"{feature} head": score for feature, score in alone.items()}},
                f"{name} of the fused model and of each modality's head",
                name,
            )
        return Evaluation(report, figures, targets, predictions[0])

    def _head_scores(self, targets, heads):
        """{feature: its head's headline value} from per-batch predictions."""
        return {f: self.headline(self.report(targets, np.concatenate(p)))[1] for f, p in heads.items()}

    def check_fusion(self, dataset):
        """`fusion_check` on the rows of `dataset`, in one pass and no more:
        no ablation, no figures (what training ends with)."""
        targets, fused, heads = [], [], {feature: [] for feature in self.feature_names}
        for inputs, target, *_ in dataset:  # a class-weighted split's batches also carry weights
            targets.append(np.asarray(target))
            prediction, alone = self.predict_with_heads(inputs)
            fused.append(prediction)
            for feature, value in alone.items():
                heads[feature].append(value)
        targets = np.concatenate(targets)
        name, value = self.headline(self.report(targets, np.concatenate(fused)))
        return self.fusion_check(name, value, self._head_scores(targets, heads))

    def fusion_check(self, name, fused, alone):
        """Whether the fused model's headline beats every unimodal head's.

        Args:
            name: str. The headline metric.
            fused: float. The fused model's value.
            alone: dict. Feature to its unimodal head's value.

        Returns:
            dict: `fused_is_best` (bool), `best_modality`, `margin` (the fused
            value's lead over that head, in the better direction) and
            `message`, which says what to try when the fused model is behind.
        """
        sign = 1 if self.higher_is_better else -1
        best = max(alone, key=lambda feature: sign * alone[feature])
        margin = sign * (fused - alone[best])
        message = None
        if margin < 0:
            others = ", ".join(f"`{f}`" for f in alone if f != best) or "the other modalities"
            first_try = (
                "Set `model.balance.head_weight: 1` so each encoder also learns on its own, or raise "
                if self.head_weight < 1
                else "Raise "
            )
            message = (
                f"the fused model's {name} ({fused:.3f}) is below what the `{best}` head alone reaches "
                f"({alone[best]:.3f}): the fused head, taking {others} in too, makes less of `{best}` "
                f"than one linear layer on its encoder does. {first_try}`model.fusion.modality_dropout`; "
                f"if that does not close the gap, train on `{best}` alone."
            )
        return {"fused_is_best": margin >= 0, "best_modality": best, "margin": margin, "message": message}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "hidden_dims": self.hidden_dims,
                "dropout_rate": self.dropout_rate,
                "unimodal_heads": self.unimodal_heads,
                "head_weight": self.head_weight,
                "ogm_alpha": self.ogm_alpha,
                "ogm_noise": self.ogm_noise,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return super().from_config(config)


def _row_weights(targets, class_weight):
    """Each encoded class target's weight, or None without class weights."""
    if not class_weight:
        return None
    return np.array([class_weight[int(target)] for target in np.asarray(targets).reshape(-1)], np.float32)
