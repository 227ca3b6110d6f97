"""The spec: what the user writes once to describe their data.

A spec names the features (which column holds text, an image path or an audio
path), the target, and how to read the data. Everything else in mmkeras (the
preprocessor, the tf.data pipeline, the model) is derived from it.

Example:

```python
spec = mmkeras.Spec.from_yaml("spec.yaml")
spec.data.features[0].modality  # "text"
```
"""

import dataclasses
import difflib
import os

import yaml

from mmkeras.errors import SpecError

MODALITIES = ("text", "image", "audio")
TARGET_TYPES = ("categorical", "binary", "multilabel", "numeric")
BAD_RECORD_POLICIES = ("error", "skip")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
ENCODER_TYPES = {
    "text": ("lstm", "transformer", "pretrained"),
    "image": ("cnn", "backbone"),
    "audio": ("spectrogram_cnn",),
}
FUSION_TYPES = ("concat", "late", "gated", "tensor", "low_rank_tensor", "cross_attention")
HEAD_FIELDS = ("hidden_dims", "dropout_rate")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
MIXED_PRECISION = ("auto", "on", "off", "float16", "bfloat16")
SCHEDULES = ("constant", "cosine", "exponential")


def _require(condition, where, message):
    if not condition:
        raise SpecError(f"{where}: {message}")


def _from_mapping(cls, mapping, where):
    """Builds dataclass `cls` from a mapping, rejecting unknown or missing keys."""
    _require(
        isinstance(mapping, dict),
        where,
        f"expected a mapping of {cls.__name__} fields, got {type(mapping).__name__}.",
    )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in mapping:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise SpecError(
                f"{where}: unknown field `{key}`.{hint} Known fields: {', '.join(sorted(fields))}."
            )
    missing = [
        name
        for name, f in fields.items()
        if name not in mapping
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    _require(not missing, where, f"missing required field(s): {', '.join(missing)}.")
    return cls(**mapping, where=where) if "where" in fields else cls(**mapping)


def _positive_number(value, where, name):
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
        where,
        f"`{name}` must be a positive number, got {value!r}.",
    )


@dataclasses.dataclass
class ImageAugmentation:
    """Train-time image augmentation; never applied at evaluation or serving.

    Args:
        flip: str or None. "horizontal", "vertical" or "horizontal_and_vertical".
        rotation: float. Maximum rotation as a fraction of a full turn.
        zoom: float. Maximum zoom in or out as a fraction of the image size.
        contrast: float. Maximum contrast change factor.
    """

    flip: str | None = None
    rotation: float = 0.0
    zoom: float = 0.0
    contrast: float = 0.0
    where: str = dataclasses.field(default="augment", repr=False, compare=False)

    def __post_init__(self):
        _require(
            self.flip is None or self.flip in FLIP_MODES,
            self.where,
            f"`flip` must be one of {', '.join(FLIP_MODES)} (or left out), got {self.flip!r}.",
        )
        for name in ("rotation", "zoom", "contrast"):
            value = getattr(self, name)
            _require(
                isinstance(value, (int, float)) and 0 <= value < 1,
                self.where,
                f"`{name}` must be a fraction in [0, 1), got {value!r}.",
            )

    @property
    def enabled(self):
        return bool(self.flip or self.rotation or self.zoom or self.contrast)


@dataclasses.dataclass
class TextFeature:
    """A text column.

    Args:
        name: str. The feature's name; the model input of the same name.
        column: str. The manifest column holding the text. Defaults to `name`.
        max_tokens: int. Vocabulary size when the vocabulary is learned.
        sequence_length: int. Token ids are padded or truncated to this length.
        standardize: str or None. `TextVectorization` standardization.
        tokenizer: str or None. A local KerasHub preset folder (for example a
            Hugging Face BERT checkpoint folder) whose tokenizer replaces the
            learned vocabulary. Relative paths resolve against the spec's folder.
    """

    name: str
    column: str | None = None
    max_tokens: int = 20000
    sequence_length: int = 64
    standardize: str | None = "lower_and_strip_punctuation"
    tokenizer: str | None = None
    where: str = dataclasses.field(default="feature", repr=False, compare=False)
    modality: str = dataclasses.field(default="text", init=False)

    def __post_init__(self):
        self.column = self.column or self.name
        _positive_number(self.max_tokens, self.where, "max_tokens")
        _positive_number(self.sequence_length, self.where, "sequence_length")


@dataclasses.dataclass
class ImageFeature:
    """An image column holding file paths (JPEG, PNG, GIF or BMP).

    Args:
        name: str. The feature's name; the model input of the same name.
        column: str. The manifest column holding image paths. Defaults to `name`.
        size: (int, int). Output height and width.
        channels: int. 1 (grayscale), 3 (RGB) or 4 (RGBA).
        keep_aspect_ratio: bool. Resize to fit and pad instead of stretching.
        value_range: (float, float). Pixel values are scaled into this range.
        augment: ImageAugmentation or None. Train-time augmentation.
    """

    name: str
    column: str | None = None
    size: tuple = (128, 128)
    channels: int = 3
    keep_aspect_ratio: bool = False
    value_range: tuple = (0.0, 1.0)
    augment: ImageAugmentation | None = None
    where: str = dataclasses.field(default="feature", repr=False, compare=False)
    modality: str = dataclasses.field(default="image", init=False)

    def __post_init__(self):
        self.column = self.column or self.name
        _require(
            isinstance(self.size, (list, tuple))
            and len(self.size) == 2
            and all(isinstance(v, int) and v > 0 for v in self.size),
            self.where,
            f"`size` must be [height, width] in pixels, got {self.size!r}.",
        )
        self.size = tuple(self.size)
        _require(
            self.channels in (1, 3, 4),
            self.where,
            f"`channels` must be 1, 3 or 4, got {self.channels!r}.",
        )
        _require(
            isinstance(self.value_range, (list, tuple))
            and len(self.value_range) == 2
            and self.value_range[0] < self.value_range[1],
            self.where,
            f"`value_range` must be [low, high] with low < high, got {self.value_range!r}.",
        )
        self.value_range = tuple(float(v) for v in self.value_range)
        if isinstance(self.augment, dict):
            self.augment = _from_mapping(ImageAugmentation, self.augment, f"{self.where}.augment")


@dataclasses.dataclass
class AudioFeature:
    """An audio column holding paths to 16-bit PCM WAV files.

    Args:
        name: str. The feature's name; the model input of the same name.
        column: str. The manifest column holding WAV paths. Defaults to `name`.
        sample_rate: int. The sample rate every file must have.
        duration_s: float. Clips are cropped or zero-padded to this length.
        frame_length_ms: float. STFT window length.
        frame_step_ms: float. STFT hop.
        num_mel_bins: int. Mel bands in the log-mel spectrogram.
        min_hz: float. Lowest mel band edge.
        max_hz: float or None. Highest mel band edge; the Nyquist frequency
            when left out.
    """

    name: str
    column: str | None = None
    sample_rate: int = 16000
    duration_s: float = 1.0
    frame_length_ms: float = 25.0
    frame_step_ms: float = 10.0
    num_mel_bins: int = 64
    min_hz: float = 20.0
    max_hz: float | None = None
    where: str = dataclasses.field(default="feature", repr=False, compare=False)
    modality: str = dataclasses.field(default="audio", init=False)

    def __post_init__(self):
        self.column = self.column or self.name
        for name in ("sample_rate", "duration_s", "frame_length_ms", "frame_step_ms"):
            _positive_number(getattr(self, name), self.where, name)
        _positive_number(self.num_mel_bins, self.where, "num_mel_bins")
        nyquist = self.sample_rate / 2
        self.max_hz = nyquist if self.max_hz is None else self.max_hz
        _require(
            0 <= self.min_hz < self.max_hz <= nyquist,
            self.where,
            f"need 0 <= min_hz < max_hz <= {nyquist:g} (half the sample rate), "
            f"got min_hz={self.min_hz}, max_hz={self.max_hz}.",
        )
        _require(
            self.frame_length_ms * self.sample_rate / 1000 >= 2,
            self.where,
            "`frame_length_ms` is shorter than two samples at this sample rate.",
        )


FEATURE_TYPES = {"text": TextFeature, "image": ImageFeature, "audio": AudioFeature}
Feature = TextFeature | ImageFeature | AudioFeature


def _feature_from_mapping(mapping, where):
    _require(isinstance(mapping, dict), where, "each feature must be a mapping.")
    mapping = dict(mapping)
    modality = mapping.pop("modality", None)
    _require(
        modality in FEATURE_TYPES,
        where,
        f"`modality` must be one of {', '.join(MODALITIES)}, got {modality!r}.",
    )
    return _from_mapping(FEATURE_TYPES[modality], mapping, where)


@dataclasses.dataclass
class TargetSpec:
    """The column to predict.

    Args:
        column: str. The manifest column holding the target.
        type: str. "categorical", "binary", "multilabel" or "numeric".
        sep: str. Separator between labels of a multi-label target.
        labels: list or None. The label vocabulary in a fixed order; learned
            from the training split when left out.
    """

    column: str
    type: str = "categorical"
    sep: str = "|"
    labels: list | None = None
    where: str = dataclasses.field(default="data.target", repr=False, compare=False)

    def __post_init__(self):
        _require(
            self.type in TARGET_TYPES,
            self.where,
            f"`type` must be one of {', '.join(TARGET_TYPES)}, got {self.type!r}.",
        )
        if self.labels is not None:
            self.labels = [str(label) for label in self.labels]
            _require(
                len(set(self.labels)) == len(self.labels),
                self.where,
                "`labels` lists a label twice.",
            )

    @property
    def is_classification(self):
        return self.type != "numeric"


@dataclasses.dataclass
class DataSpec:
    """Where the data is and how to read it.

    Args:
        train: str. The training manifest: a .csv, a .jsonl, or a TFRecord
            glob written by `mmkeras data to-tfrecord`.
        validation: str or None. The validation manifest.
        validation_split: float or None. Fraction of the training rows held
            out for validation (seeded; stratified for classification) when
            there is no validation manifest.
        test: str or None. The test manifest.
        features: list. Text, image and audio features.
        target: TargetSpec or None. None for retrieval (pairs without labels).
        on_bad_record: str. "error" stops before training with every bad row
            listed; "skip" drops them and says which.
        batch_size: int. The global batch size, split across replicas.
        shuffle_buffer: int. Rows held in the shuffle buffer.
        cache: str or None. "memory", a file path prefix, or None: where the
            decoded, resized tensors are kept after the first epoch.
        seed: int. Seeds the validation split and the shuffle order.
    """

    train: str
    features: list
    validation: str | None = None
    validation_split: float | None = None
    test: str | None = None
    target: TargetSpec | None = None
    on_bad_record: str = "error"
    batch_size: int = 32
    shuffle_buffer: int = 10000
    cache: str | None = None
    seed: int = 1337
    where: str = dataclasses.field(default="data", repr=False, compare=False)

    def __post_init__(self):
        _require(
            isinstance(self.features, list) and self.features,
            f"{self.where}.features",
            "list at least one feature, for example `- {name: caption, modality: text, column: caption}`.",
        )
        self.features = [
            feature
            if dataclasses.is_dataclass(feature)
            else _feature_from_mapping(feature, f"{self.where}.features[{i}]")
            for i, feature in enumerate(self.features)
        ]
        seen = set()
        for i, feature in enumerate(self.features):
            _require(
                feature.name not in seen,
                f"{self.where}.features[{i}]",
                f"feature name `{feature.name}` is used twice; give each feature its own name.",
            )
            seen.add(feature.name)
        if isinstance(self.target, dict):
            self.target = _from_mapping(TargetSpec, self.target, f"{self.where}.target")
        if self.target is not None:
            _require(
                self.target.column not in {f.column for f in self.features},
                f"{self.where}.target",
                f"column `{self.target.column}` is both a feature and the target.",
            )
        _require(
            self.on_bad_record in BAD_RECORD_POLICIES,
            self.where,
            f"`on_bad_record` must be `error` or `skip`, got {self.on_bad_record!r}.",
        )
        _require(
            not (self.validation and self.validation_split),
            self.where,
            "give either `validation` (a manifest) or `validation_split`, not both.",
        )
        if self.validation_split is not None:
            _require(
                0 < self.validation_split < 1,
                self.where,
                f"`validation_split` must be in (0, 1), got {self.validation_split!r}.",
            )
        _positive_number(self.batch_size, self.where, "batch_size")
        _positive_number(self.shuffle_buffer, self.where, "shuffle_buffer")


@dataclasses.dataclass
class ModelSpec:
    """Which encoder reads each feature, how they are fused, and the head.

    The values are the layers' own constructor arguments (see
    `mmkeras.layers`), so nothing is written twice; `type` picks the layer.

    Args:
        encoders: dict. Feature name to `{type: ..., **arguments}`; a feature
            left out gets its modality's default (lstm, cnn, spectrogram_cnn).
        fusion: dict. `{type: concat | late | gated | tensor |
            low_rank_tensor | cross_attention, modality_dropout: 0.1, ...}`.
        head: dict. `{hidden_dims: [256], dropout_rate: 0.3}`.
        projection_dim: int. Width of the shared space of a retrieval model.
    """

    encoders: dict = dataclasses.field(default_factory=dict)
    fusion: dict = dataclasses.field(default_factory=lambda: {"type": "concat"})
    head: dict = dataclasses.field(default_factory=dict)
    projection_dim: int = 128
    where: str = dataclasses.field(default="model", repr=False, compare=False)

    def __post_init__(self):
        _require(
            isinstance(self.encoders, dict), f"{self.where}.encoders", "must map feature names to encoders."
        )
        _require(isinstance(self.fusion, dict), f"{self.where}.fusion", "must be a mapping with a `type`.")
        self.fusion = {"type": "concat", **self.fusion}
        _require(
            self.fusion["type"] in FUSION_TYPES,
            f"{self.where}.fusion",
            f"`type` must be one of {', '.join(FUSION_TYPES)}, got {self.fusion['type']!r}.",
        )
        _require(isinstance(self.head, dict), f"{self.where}.head", "must be a mapping.")
        unknown = set(self.head) - set(HEAD_FIELDS)
        _require(
            not unknown,
            f"{self.where}.head",
            f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(HEAD_FIELDS)}.",
        )
        _positive_number(self.projection_dim, self.where, "projection_dim")

    def check_features(self, features):
        """Every encoder must name a feature and suit its modality."""
        modalities = {f.name: f.modality for f in features}
        for name, encoder in self.encoders.items():
            where = f"{self.where}.encoders.{name}"
            _require(
                name in modalities,
                where,
                f"no feature is called `{name}`; features: {', '.join(modalities)}.",
            )
            _require(isinstance(encoder, dict), where, "must be a mapping with a `type`.")
            allowed = ENCODER_TYPES[modalities[name]]
            kind = encoder.get("type", allowed[0])
            _require(
                kind in allowed,
                where,
                f"a {modalities[name]} feature takes an encoder of type {', '.join(allowed)}, got {kind!r}.",
            )


@dataclasses.dataclass
class TrainSpec:
    """How to train: epochs, optimizer, schedule, callbacks and distribution.

    The global batch size is `data.batch_size` (it shapes the pipeline).

    Args:
        epochs: int. Passes over the training split.
        optimizer: str. A Keras optimizer name (adam, adamw, sgd, ...).
        learning_rate: float. Initial learning rate.
        schedule: str. "constant", "cosine" (decay to 0 over the run) or
            "exponential" (x0.5 every `epochs / 4` epochs).
        warmup_epochs: float. Linear warm-up before the schedule.
        early_stopping_patience: int or None. Stop after this many epochs
            without a better validation loss; None never stops early.
        class_weight: str, dict or None. "auto" weights classes by inverse
            frequency; or `{label: weight}`.
        mixed_precision: str. "auto" (16-bit compute on a GPU that has fast
            16-bit math: bfloat16 from compute capability 8.0, float16 from
            7.0; float32 elsewhere), "on" (float16), "float16",
            "bfloat16" or "off". Variables and outputs stay float32.
        strategy: str. "auto", "default", "mirrored" or "multi_worker".
        seed: int. Seeds weights, dropout and the pipeline.
        tensorboard_examples: int. Validation rows shown each epoch.
        profile_batches: list or None. `[first, last]` batches to profile.
    """

    epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    early_stopping_patience: int | None = None
    class_weight: object | None = None
    mixed_precision: str = "auto"
    strategy: str = "auto"
    seed: int = 1337
    tensorboard_examples: int = 16
    profile_batches: list | None = None
    where: str = dataclasses.field(default="train", repr=False, compare=False)

    def __post_init__(self):
        _positive_number(self.epochs, self.where, "epochs")
        _positive_number(self.learning_rate, self.where, "learning_rate")
        _require(self.schedule in SCHEDULES, self.where, f"`schedule` must be one of {', '.join(SCHEDULES)}.")
        _require(
            self.strategy in STRATEGIES, self.where, f"`strategy` must be one of {', '.join(STRATEGIES)}."
        )
        _require(
            self.mixed_precision in MIXED_PRECISION,
            self.where,
            f"`mixed_precision` must be one of {', '.join(MIXED_PRECISION)}.",
        )
        _require(
            self.class_weight in (None, "auto") or isinstance(self.class_weight, dict),
            self.where,
            "`class_weight` must be auto or a mapping {label: weight}.",
        )
        _require(
            self.profile_batches is None
            or (isinstance(self.profile_batches, list) and len(self.profile_batches) == 2),
            self.where,
            "`profile_batches` must be [first, last], e.g. [10, 20].",
        )


@dataclasses.dataclass
class Spec:
    """The whole spec, as loaded from YAML.

    Args:
        data: DataSpec. The data section.
        model: ModelSpec. The model section (defaults when left out).
        base_dir: str. Relative paths in the spec resolve against this folder
            (the YAML file's folder when loaded from a file).
    """

    data: DataSpec
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    train: TrainSpec = dataclasses.field(default_factory=TrainSpec)
    base_dir: str = "."

    @classmethod
    def from_dict(cls, mapping, base_dir="."):
        _require(isinstance(mapping, dict), "spec", "the spec must be a mapping.")
        _require("data" in mapping, "spec", "missing the `data:` section.")
        unknown = set(mapping) - {"data", "model", "train"}
        _require(not unknown, "spec", f"unknown section(s): {', '.join(sorted(unknown))}.")
        data = _from_mapping(DataSpec, mapping["data"], "data")
        model = _from_mapping(ModelSpec, mapping.get("model") or {}, "model")
        model.check_features(data.features)
        train = _from_mapping(TrainSpec, mapping.get("train") or {}, "train")
        return cls(data=data, model=model, train=train, base_dir=os.path.abspath(base_dir))

    @classmethod
    def from_yaml(cls, path):
        if not os.path.exists(path):
            raise SpecError(f"spec file {path} does not exist.")
        with open(path, encoding="utf-8") as f:
            try:
                mapping = yaml.safe_load(f)
            except yaml.YAMLError as error:
                raise SpecError(f"{path} is not valid YAML: {error}") from None
        return cls.from_dict(mapping, base_dir=os.path.dirname(os.path.abspath(path)))

    def to_dict(self, absolute_paths=False):
        """The spec as plain data; `absolute_paths` makes it work from any folder."""

        def clean(value):
            if dataclasses.is_dataclass(value):
                return {
                    f.name: clean(getattr(value, f.name))
                    for f in dataclasses.fields(value)
                    if f.name != "where" and f.name != "base_dir"
                }
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            return value

        mapping = clean(self)
        if absolute_paths:
            data = mapping["data"]
            for key in ("train", "validation", "test", "cache"):
                if data.get(key) and data.get(key) != "memory":
                    data[key] = self.resolve(data[key])
            for feature in data["features"]:
                if feature.get("tokenizer"):
                    feature["tokenizer"] = self.resolve(feature["tokenizer"])
        return mapping

    def to_yaml(self, path, absolute_paths=False):
        """Writes the spec; `absolute_paths` makes the copy work from any folder."""
        mapping = self.to_dict(absolute_paths)
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(mapping, f, sort_keys=False)

    def resolve(self, path):
        """Resolves a path written in the spec against the spec's folder."""
        if path is None:
            return None
        return os.path.join(self.base_dir, os.path.expanduser(path))
