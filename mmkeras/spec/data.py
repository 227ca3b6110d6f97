"""The `data:` section: manifests, features, the target and how to read them."""

import dataclasses

from mmkeras.preprocessing.record import COLUMN_TYPES, MAX_TOKENS, MIN_COUNT
from mmkeras.preprocessing.text import SPLITS as TEXT_SPLITS
from mmkeras.spec.data_service import DataServiceSpec
from mmkeras.spec.fields import from_mapping, positive_number, require

MODALITIES = ("text", "image", "audio", "record")
TARGET_TYPES = ("categorical", "binary", "multilabel", "numeric", "sequence")
BAD_RECORD_POLICIES = ("error", "skip")
# What an empty cell of a feature's column is: a bad row, or a missing modality.
MISSING_POLICIES = ("error", "mask")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


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
        require(
            self.flip is None or self.flip in FLIP_MODES,
            self.where,
            f"`flip` must be one of {', '.join(FLIP_MODES)} (or left out), got {self.flip!r}.",
        )
        for name in ("rotation", "zoom", "contrast"):
            value = getattr(self, name)
            require(
                isinstance(value, (int, float)) and 0 <= value < 1,
                self.where,
                f"`{name}` must be a fraction in [0, 1), got {value!r}.",
            )

    @property
    def enabled(self):
        return bool(self.flip or self.rotation or self.zoom or self.contrast)


class OneColumn:
    """A feature read from one manifest column, its raw input of the same name."""

    @property
    def inputs(self):
        """{raw input name: manifest column}."""
        return {self.name: self.column}


def check_missing(feature):
    require(
        feature.missing in MISSING_POLICIES,
        feature.where,
        f"`missing` must be one of {', '.join(MISSING_POLICIES)}, got {feature.missing!r}.",
    )


def check_text_split(section):
    require(
        section.split in TEXT_SPLITS,
        section.where,
        f"`split` must be one of {', '.join(TEXT_SPLITS)}, got {section.split!r}.",
    )


@dataclasses.dataclass
class TextFeature(OneColumn):
    """A text column.

    Args:
        name: str. The feature's name; the model input of the same name.
        column: str. The manifest column holding the text. Defaults to `name`.
        max_tokens: int. Vocabulary size when the vocabulary is learned.
        sequence_length: int. Token ids are padded or truncated to this length.
        standardize: str or None. `TextVectorization` standardization.
        split: str. How a learned vocabulary splits text into tokens:
            "words" (the default: between spaces, and each Chinese or
            Japanese character a word of its own, as those scripts put no
            spaces between words), "whitespace" (between spaces only) or
            "character" (every character a token). Ignored with `tokenizer`,
            which splits text its own way.
        tokenizer: str or None. A local KerasHub preset folder (for example a
            Hugging Face BERT checkpoint folder) whose tokenizer replaces the
            learned vocabulary. Relative paths resolve against the spec's folder.
        missing: str. An empty cell: "error" (the default: a bad row, as an
            empty cell is more often a broken join or a failed download than
            a modality the row lacks) or "mask" (the modality is missing in
            that row: masked out of the fusion, in training as at serving).
    """

    name: str
    column: str | None = None
    max_tokens: int = 20000
    sequence_length: int = 64
    standardize: str | None = "lower_and_strip_punctuation"
    split: str = "words"
    tokenizer: str | None = None
    missing: str = "error"
    where: str = dataclasses.field(default="feature", repr=False, compare=False)
    modality: str = dataclasses.field(default="text", init=False)

    def __post_init__(self):
        self.column = self.column or self.name
        check_missing(self)
        positive_number(self.max_tokens, self.where, "max_tokens")
        positive_number(self.sequence_length, self.where, "sequence_length")
        check_text_split(self)


@dataclasses.dataclass
class ImageFeature(OneColumn):
    """An image column holding file paths (JPEG, PNG, GIF or BMP).

    Args:
        name: str. The feature's name; the model input of the same name.
        column: str. The manifest column holding image paths. Defaults to `name`.
        size: (int, int). Output height and width.
        channels: int. 1 (grayscale), 3 (RGB) or 4 (RGBA).
        keep_aspect_ratio: bool. Resize to fit and pad instead of stretching.
        value_range: (float, float). Pixel values are scaled into this range.
        augment: ImageAugmentation or None. Train-time augmentation.
        missing: str. An empty cell: "error" (the default: a bad row, as an
            empty cell is more often a broken join or a failed download than
            a modality the row lacks) or "mask" (the modality is missing in
            that row: masked out of the fusion, in training as at serving).
    """

    name: str
    column: str | None = None
    size: tuple = (128, 128)
    channels: int = 3
    keep_aspect_ratio: bool = False
    value_range: tuple = (0.0, 1.0)
    augment: ImageAugmentation | None = None
    missing: str = "error"
    where: str = dataclasses.field(default="feature", repr=False, compare=False)
    modality: str = dataclasses.field(default="image", init=False)

    def __post_init__(self):
        self.column = self.column or self.name
        check_missing(self)
        require(
            isinstance(self.size, (list, tuple))
            and len(self.size) == 2
            and all(isinstance(v, int) and v > 0 for v in self.size),
            self.where,
            f"`size` must be [height, width] in pixels, got {self.size!r}.",
        )
        self.size = tuple(self.size)
        require(
            self.channels in (1, 3, 4),
            self.where,
            f"`channels` must be 1, 3 or 4, got {self.channels!r}.",
        )
        require(
            isinstance(self.value_range, (list, tuple))
            and len(self.value_range) == 2
            and self.value_range[0] < self.value_range[1],
            self.where,
            f"`value_range` must be [low, high] with low < high, got {self.value_range!r}.",
        )
        self.value_range = tuple(float(v) for v in self.value_range)
        if isinstance(self.augment, dict):
            self.augment = from_mapping(ImageAugmentation, self.augment, f"{self.where}.augment")


@dataclasses.dataclass
class AudioFeature(OneColumn):
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
        missing: str. An empty cell: "error" (the default: a bad row, as an
            empty cell is more often a broken join or a failed download than
            a modality the row lacks) or "mask" (the modality is missing in
            that row: masked out of the fusion, in training as at serving).
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
    missing: str = "error"
    where: str = dataclasses.field(default="feature", repr=False, compare=False)
    modality: str = dataclasses.field(default="audio", init=False)

    def __post_init__(self):
        self.column = self.column or self.name
        check_missing(self)
        for name in ("sample_rate", "duration_s", "frame_length_ms", "frame_step_ms"):
            positive_number(getattr(self, name), self.where, name)
        positive_number(self.num_mel_bins, self.where, "num_mel_bins")
        nyquist = self.sample_rate / 2
        self.max_hz = nyquist if self.max_hz is None else self.max_hz
        require(
            0 <= self.min_hz < self.max_hz <= nyquist,
            self.where,
            f"need 0 <= min_hz < max_hz <= {nyquist:g} (half the sample rate), "
            f"got min_hz={self.min_hz}, max_hz={self.max_hz}.",
        )
        require(
            self.frame_length_ms * self.sample_rate / 1000 >= 2,
            self.where,
            "`frame_length_ms` is shorter than two samples at this sample rate.",
        )


@dataclasses.dataclass
class RecordColumn:
    """One column of a record: a number or a category.

    Args:
        name: str. The raw input's name: in a serving request, the key
            that carries this column's value (as text).
        type: str. "numeric" or "categorical".
        column: str. The manifest column. Defaults to `name`.
        clip: (float, float) or None. Numeric: values are clipped into
            [low, high] first.
        log: bool. Numeric: sign(x) * log(1 + |x|) before standardising,
            for long-tailed values (prices, counts).
        max_tokens: int. Categorical: at most this many categories, the
            most frequent in training.
        min_count: int. Categorical: categories seen fewer times in training
            share the out-of-vocabulary slot, which so learns what a rare or
            new category means.
    """

    name: str
    type: str
    column: str | None = None
    clip: tuple | None = None
    log: bool = False
    max_tokens: int = MAX_TOKENS
    min_count: int = MIN_COUNT
    where: str = dataclasses.field(default="column", repr=False, compare=False)

    def __post_init__(self):
        self.column = self.column or self.name
        require(
            self.type in COLUMN_TYPES,
            self.where,
            f"`type` must be one of {', '.join(COLUMN_TYPES)}, got {self.type!r}.",
        )
        if self.clip is not None:
            require(
                isinstance(self.clip, (list, tuple)) and len(self.clip) == 2 and self.clip[0] < self.clip[1],
                self.where,
                f"`clip` must be [low, high] with low < high, got {self.clip!r}.",
            )
            self.clip = tuple(float(v) for v in self.clip)
        require(isinstance(self.log, bool), self.where, "`log` must be true or false.")
        require(
            self.type == "numeric" or (self.clip is None and not self.log),
            self.where,
            "`clip` and `log` apply to numeric columns only.",
        )
        positive_number(self.max_tokens, self.where, "max_tokens")
        positive_number(self.min_count, self.where, "min_count")

    def preprocessing_config(self):
        """This column's entry in `RecordPreprocessor(columns=...)`."""
        config = {"name": self.name, "type": self.type}
        if self.type == "numeric":
            return {**config, "clip": self.clip, "log": self.log}
        return {**config, "max_tokens": self.max_tokens, "min_count": self.min_count}


@dataclasses.dataclass
class RecordFeature:
    """Numeric and categorical columns read together: one modality, the record.

    One encoder reads all its columns (each number standardised with a
    missing flag, each category one-hot), so the record is one branch of
    the fusion and one entry of the modality ablation. An empty cell is a
    missing value (imputed and flagged, or its own category), never a bad
    row; `missing` says what a row with every column empty is.

    Args:
        name: str. The feature's name; the model input of the same name.
        columns: list of RecordColumn. Each column's name, type and options.
        missing: str. A row whose columns are all empty: "error" (the
            default: a bad row) or "mask" (the record is missing there).
    """

    name: str
    columns: list
    missing: str = "error"
    where: str = dataclasses.field(default="feature", repr=False, compare=False)
    modality: str = dataclasses.field(default="record", init=False)

    def __post_init__(self):
        check_missing(self)
        require(
            isinstance(self.columns, list) and self.columns,
            self.where,
            "list at least one column, for example `columns: [{name: age, type: numeric}]`.",
        )
        self.columns = [
            column
            if isinstance(column, RecordColumn)
            else from_mapping(RecordColumn, column, f"{self.where}.columns[{i}]")
            for i, column in enumerate(self.columns)
        ]

    @property
    def inputs(self):
        """{raw input name: manifest column}, one per column."""
        return {column.name: column.column for column in self.columns}


FEATURE_TYPES = {"text": TextFeature, "image": ImageFeature, "audio": AudioFeature, "record": RecordFeature}
Feature = TextFeature | ImageFeature | AudioFeature | RecordFeature


def _featurefrom_mapping(mapping, where):
    require(isinstance(mapping, dict), where, "each feature must be a mapping.")
    mapping = dict(mapping)
    modality = mapping.pop("modality", None)
    require(
        modality in FEATURE_TYPES,
        where,
        f"`modality` must be one of {', '.join(MODALITIES)}, got {modality!r}.",
    )
    return from_mapping(FEATURE_TYPES[modality], mapping, where)


@dataclasses.dataclass
class SequenceSettings:
    """How a generated text target (`type: sequence`, a caption) becomes tokens.

    Args:
        max_length: int. Tokens kept of each caption; longer ones are cut
            (the data check counts them). Generation stops after as many.
        max_tokens: int. Vocabulary size, learned from the training captions.
        split: str. "words" (between spaces, and each Chinese or Japanese
            character a word of its own), "whitespace" or "character".
        standardize: str or None. `TextVectorization` standardization.
        tokenizer: str or None. A local KerasHub preset folder whose tokenizer
            (and its start, end and padding tokens) replaces the learned
            vocabulary; `max_tokens`, `split` and `standardize` are then
            unused. Its padding id must be 0, as BERT-family tokenizers'
            is. Relative paths resolve against the spec's folder.
    """

    max_length: int = 20
    max_tokens: int = 5000
    split: str = "words"
    standardize: str | None = "lower_and_strip_punctuation"
    tokenizer: str | None = None
    where: str = dataclasses.field(default="data.target.sequence", repr=False, compare=False)

    def __post_init__(self):
        positive_number(self.max_length, self.where, "max_length")
        positive_number(self.max_tokens, self.where, "max_tokens")
        check_text_split(self)


@dataclasses.dataclass
class TargetSpec:
    """The column to predict.

    Args:
        column: str. The manifest column holding the target.
        type: str. "categorical", "binary", "multilabel", "numeric" or
            "sequence" (text to generate, such as a caption).
        sep: str. Separator between labels of a multi-label target.
        labels: list or None. The label vocabulary in a fixed order; learned
            from the training split when left out.
        sequence: SequenceSettings or None. A sequence target's tokens;
            the defaults when left out.
        min_count: int or None. Categorical: labels with fewer training rows
            than this, and labels never seen in training, become one
            out-of-vocabulary label, `[other]` (the answers of visual
            question answering: a long tail the model cannot learn). None:
            every training label is a class and an unseen one is a bad row.
    """

    column: str
    type: str = "categorical"
    sep: str = "|"
    labels: list | None = None
    sequence: SequenceSettings | None = None
    min_count: int | None = None
    where: str = dataclasses.field(default="data.target", repr=False, compare=False)

    def __post_init__(self):
        require(
            self.type in TARGET_TYPES,
            self.where,
            f"`type` must be one of {', '.join(TARGET_TYPES)}, got {self.type!r}.",
        )
        if self.labels is not None:
            self.labels = [str(label) for label in self.labels]
            require(
                len(set(self.labels)) == len(self.labels),
                self.where,
                "`labels` lists a label twice.",
            )
        if self.min_count is not None:
            positive_number(self.min_count, self.where, "min_count")
            require(
                self.type == "categorical",
                self.where,
                f"`min_count` folds rare labels of a categorical target, not a {self.type} one.",
            )
            require(
                self.labels is None,
                self.where,
                "`min_count` learns the labels from the training split; give it or `labels`, not both.",
            )
        if self.type == "sequence":
            require(self.labels is None, self.where, "a sequence target has no `labels`.")
            if isinstance(self.sequence, dict):
                self.sequence = from_mapping(SequenceSettings, self.sequence, f"{self.where}.sequence")
            self.sequence = self.sequence or SequenceSettings(where=f"{self.where}.sequence")
        else:
            require(
                self.sequence is None,
                self.where,
                f"`sequence` settings belong to a `type: sequence` target, not {self.type!r}.",
            )


@dataclasses.dataclass
class HeldOutSplit:
    """Rows held out of the training manifest, for validation or for testing.

    Written in a spec as a fraction (`validation_split: 0.1`, a seeded random
    split, stratified by a classification target) or as a mapping that keeps
    related rows together:

    - `{fraction: 0.1, group_by: patient}`: whole groups (patients, users,
      events, lesions) are held out, so no group is in two splits; the
      fraction counts groups, and the split is stratified by each group's
      first target.
    - `{fraction: 0.1, order_by: date}`: the rows with the largest values of
      that column (numbers, or text such as ISO dates, which sort by time),
      so the model is checked on what comes after what it learned from.
      Rows tied with the first held-out value are held out with it.

    Args:
        fraction: float. In (0, 1): the share of rows (or groups) held out.
        group_by: str or None. A manifest column naming each row's group.
        order_by: str or None. A manifest column to order the rows by.
    """

    fraction: float
    group_by: str | None = None
    order_by: str | None = None
    where: str = dataclasses.field(default="data.validation_split", repr=False, compare=False)

    def __post_init__(self):
        require(
            isinstance(self.fraction, (int, float))
            and not isinstance(self.fraction, bool)
            and 0 < self.fraction < 1,
            self.where,
            f"`fraction` must be in (0, 1), got {self.fraction!r}.",
        )
        require(
            not (self.group_by and self.order_by),
            self.where,
            "give `group_by` or `order_by`, not both.",
        )

    @classmethod
    def parse(cls, value, where):
        """A HeldOutSplit from a spec's fraction or mapping (None stays None)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return from_mapping(cls, value, where)
        return cls(fraction=value, where=where)


@dataclasses.dataclass
class DataSpec:
    """Where the data is and how to read it.

    Args:
        train: str. The training manifest: a .csv, a .jsonl, or a TFRecord
            glob written by `mmkeras data to-tfrecord`.
        validation: str or None. The validation manifest.
        validation_split: HeldOutSplit, float or None. The training rows
            held out for validation when there is no validation manifest: a
            fraction, or `{fraction, group_by}` / `{fraction, order_by}`
            (see HeldOutSplit).
        test: str or None. The test manifest.
        test_split: HeldOutSplit, float or None. The rows held out for
            testing when the data comes as one manifest, taken before the
            validation rows (which are then a fraction of the rest).
        features: list. Text, image, audio and record features.
        target: TargetSpec or None. None for retrieval (pairs without labels).
        on_bad_record: str. "error" stops before training with every bad row
            listed; "skip" drops them and says which.
        batch_size: int. The global batch size, split across replicas.
        shuffle_buffer: int. Rows held in the shuffle buffer.
        cache: str or None. "memory", a file path prefix, or None: where the
            decoded, resized tensors are kept after the first epoch.
        seed: int. Seeds the validation split and the shuffle order.
        service: DataServiceSpec, str or None. Decode and preprocess the
            training split on tf.data service workers (the dispatcher's
            address, or `{address, processing_mode}`); None does it here.
    """

    train: str
    features: list
    validation: str | None = None
    validation_split: HeldOutSplit | None = None
    test: str | None = None
    test_split: HeldOutSplit | None = None
    target: TargetSpec | None = None
    on_bad_record: str = "error"
    batch_size: int = 32
    shuffle_buffer: int = 10000
    cache: str | None = None
    seed: int = 1337
    service: DataServiceSpec | None = None
    where: str = dataclasses.field(default="data", repr=False, compare=False)

    def __post_init__(self):
        require(
            isinstance(self.features, list) and self.features,
            f"{self.where}.features",
            "list at least one feature, for example `- {name: caption, modality: text, column: caption}`.",
        )
        self.features = [
            feature
            if dataclasses.is_dataclass(feature)
            else _featurefrom_mapping(feature, f"{self.where}.features[{i}]")
            for i, feature in enumerate(self.features)
        ]
        seen = set()
        for i, feature in enumerate(self.features):
            require(
                feature.name not in seen,
                f"{self.where}.features[{i}]",
                f"feature name `{feature.name}` is used twice; give each feature its own name.",
            )
            seen.add(feature.name)
        inputs = [name for feature in self.features for name in feature.inputs]
        twice = sorted({name for name in inputs if inputs.count(name) > 1})
        require(
            not twice,
            f"{self.where}.features",
            f"raw input name(s) {', '.join(twice)} used twice; each feature and record column needs its own.",
        )
        if isinstance(self.target, dict):
            self.target = from_mapping(TargetSpec, self.target, f"{self.where}.target")
        if self.target is not None:
            require(
                self.target.column not in set(self.input_columns().values()),
                f"{self.where}.target",
                f"column `{self.target.column}` is both a feature and the target.",
            )
        require(
            self.on_bad_record in BAD_RECORD_POLICIES,
            self.where,
            f"`on_bad_record` must be `error` or `skip`, got {self.on_bad_record!r}.",
        )
        require(
            not (self.validation and self.validation_split),
            self.where,
            "give either `validation` (a manifest) or `validation_split`, not both.",
        )
        require(
            not (self.test and self.test_split),
            self.where,
            "give either `test` (a manifest) or `test_split`, not both.",
        )
        self.validation_split = HeldOutSplit.parse(self.validation_split, f"{self.where}.validation_split")
        self.test_split = HeldOutSplit.parse(self.test_split, f"{self.where}.test_split")
        positive_number(self.batch_size, self.where, "batch_size")
        positive_number(self.shuffle_buffer, self.where, "shuffle_buffer")
        if isinstance(self.service, (str, dict)):
            mapping = {"address": self.service} if isinstance(self.service, str) else self.service
            self.service = from_mapping(DataServiceSpec, mapping, f"{self.where}.service")

    def input_columns(self):
        """{raw input name: manifest column} over every feature."""
        return {name: column for feature in self.features for name, column in feature.inputs.items()}

    def held_out_columns(self):
        """{column: spec field} of the columns the held-out splits group or order by."""
        columns = {}
        for name in ("test_split", "validation_split"):
            split = getattr(self, name)
            for key in ("group_by", "order_by"):
                if split is not None and getattr(split, key):
                    columns[getattr(split, key)] = f"{self.where}.{name}.{key}"
        return columns
