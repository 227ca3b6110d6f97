"""The bad rows a check found, kept on disk for the next process that reads the same data.

Training checks every row of every split before it builds anything; a later
`mmkeras evaluate`, `predict` or `export` would read and decode every row
again only to learn which rows to skip. The bad rows of each check are kept
in the user's cache folder under a key made of everything the check depends
on: the spec's data section, the split, and the size and modification time of
the manifest (or TFRecord files) and of every file the split names. A file
changed, added or removed since makes another key, and the rows are checked
again.
"""

import glob
import hashlib
import json
import os
import tempfile

from mmkeras.data.check import BadRecord
from mmkeras.data.manifest import FILE_MODALITIES, ManifestSource

# Where the checks are kept: $MMKERAS_CACHE, else $XDG_CACHE_HOME/mmkeras, else ~/.cache/mmkeras.
CACHE_ENV = "MMKERAS_CACHE"


def cache_folder():
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mmkeras"
    )
    return os.path.join(root, "checks")


def _stamp(path):
    try:
        status = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, status.st_size, status.st_mtime_ns]


def _files(source, spec):
    """The files a split's rows come from: its manifest and the files it names, or its TFRecords."""
    if not isinstance(source, ManifestSource):
        return list(source.files)
    columns = source.manifest.columns
    named = [
        path
        for feature in spec.data.features
        if feature.modality in FILE_MODALITIES
        for path in columns[feature.column]
        if path
    ]
    return [source.manifest.path, *named]


def check_key(spec, split, source):
    """The key of `split`'s check: it changes with the data section or any file read.

    The training manifest is in every split's key: the labels a row may have
    are learned from it."""
    data = spec.to_dict(absolute_paths=True)["data"]
    training = sorted(glob.glob(spec.resolve(spec.data.train)))
    stamps = [_stamp(path) for path in [*training, *_files(source, spec)]]
    text = json.dumps([data, split, stamps], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_bad_records(key):
    """The BadRecords kept under `key`, or None when that check was never kept."""
    try:
        with open(os.path.join(cache_folder(), f"{key}.json"), encoding="utf-8") as f:
            return [BadRecord(*record) for record in json.load(f)]
    except (OSError, ValueError, TypeError):
        return None  # never kept, or unreadable: check again


def save_bad_records(key, records):
    """Keeps `records` under `key`; a folder that cannot be written only costs the next check."""
    folder = cache_folder()
    try:
        os.makedirs(folder, exist_ok=True)
        # Written aside and renamed: a process reading it never sees half a file.
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as f:
            json.dump([[r.location, r.column, r.reason] for r in records], f)
        os.replace(f.name, os.path.join(folder, f"{key}.json"))
    except OSError:
        pass
