"""The whole spec: its three sections, loaded from and written to YAML."""

import dataclasses
import os

import yaml

from mmkeras.errors import SpecError
from mmkeras.spec.data import DataSpec
from mmkeras.spec.fields import from_mapping, require
from mmkeras.spec.model import GenerationSpec, ModelSpec
from mmkeras.spec.train import AUTO, SMOOTHABLE_TARGETS, TrainSpec
from mmkeras.spec.tune import TuneSpec


@dataclasses.dataclass
class Spec:
    """The whole spec, as loaded from YAML.

    Args:
        data: DataSpec. The data section.
        model: ModelSpec. The model section (defaults when left out).
        tune: TuneSpec or None. What `mmkeras tune` searches (training ignores it).
        base_dir: str. Relative paths in the spec resolve against this folder
            (the YAML file's folder when loaded from a file).
    """

    data: DataSpec
    model: ModelSpec = dataclasses.field(default_factory=ModelSpec)
    train: TrainSpec = dataclasses.field(default_factory=TrainSpec)
    tune: TuneSpec | None = None
    base_dir: str = "."

    @classmethod
    def from_dict(cls, mapping: dict, base_dir: str = ".") -> "Spec":
        """Builds and checks a spec from its plain-data form (a parsed YAML file).

        Every section is checked here, before any data is read: unknown or
        missing fields, values out of range, encoders that do not suit their
        feature's modality, and layer arguments the layers do not take.

        Args:
            mapping: dict. `{data: ..., model: ..., train: ..., tune: ...}`.
            base_dir: str. Relative paths in the spec resolve against it.

        Raises:
            SpecError: naming the field and the fix.
        """
        require(isinstance(mapping, dict), "spec", "the spec must be a mapping.")
        require("data" in mapping, "spec", "missing the `data:` section.")
        unknown = set(mapping) - {"data", "model", "train", "tune"}
        require(not unknown, "spec", f"unknown section(s): {', '.join(sorted(unknown))}.")
        data = from_mapping(DataSpec, mapping["data"], "data")
        model = from_mapping(ModelSpec, mapping.get("model") or {}, "model")
        model.check_features(data.features)
        train = from_mapping(TrainSpec, mapping.get("train") or {}, "train")
        require(
            train.class_weight in (None, AUTO)
            or (data.target is not None and data.target.type in ("categorical", "binary")),
            "train.class_weight",
            "only categorical and binary targets take class weights.",
        )
        require(
            not train.label_smoothing or (data.target is not None and data.target.type in SMOOTHABLE_TARGETS),
            "train.label_smoothing",
            f"only {', '.join(SMOOTHABLE_TARGETS)} targets have labels to smooth; set it to 0.",
        )
        generates = data.target is not None and data.target.type == "sequence"
        require(
            generates or (not model.decoder and model.generation == GenerationSpec()),
            "model",
            "`decoder` and `generation` are a caption's (a `type: sequence` target); remove them.",
        )
        tune = from_mapping(TuneSpec, mapping["tune"], "tune") if mapping.get("tune") is not None else None
        return cls(data=data, model=model, train=train, tune=tune, base_dir=os.path.abspath(base_dir))

    @classmethod
    def from_yaml(cls, path: str) -> "Spec":
        """Loads and checks the spec in a YAML file (see `from_dict`).

        Relative paths in it resolve against the file's folder.

        Raises:
            SpecError: the file is missing, is not YAML, or a field is wrong.
        """
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
            sequence = (data.get("target") or {}).get("sequence") or {}
            for section in [*data["features"], sequence]:
                if section.get("tokenizer"):
                    section["tokenizer"] = self.resolve(section["tokenizer"])
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
