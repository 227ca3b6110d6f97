"""TF Serving's layout: `BASE/<integer version>/`, each version published atomically.

A version is written to a hidden folder beside the base path (same
filesystem), flushed to disk, checked, and only then renamed into place: a
server polling `BASE` sees a version folder only once it is complete.
"""

import os
import shutil

from mmkeras.errors import ExportError


def versions(base_dir):
    """The published integer versions under `base_dir`, ascending."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(name) for name in os.listdir(base_dir) if name.isdigit())


def next_version(base_dir, version=None, force=False):
    """The version to write: `version` if given (refused if it exists unless
    `force`), else one above the highest published."""
    existing = versions(base_dir)
    if version is None:
        return (existing[-1] + 1) if existing else 1
    if version in existing and not force:
        raise ExportError(
            f"version {version} already exists in {base_dir}; pass --force to replace it, "
            "or leave --version out to publish the next one."
        )
    return version


def _fsync_tree(folder):
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def staging_dir(base_dir, version):
    """A hidden folder beside the versions; TF Serving ignores non-integer names."""
    os.makedirs(base_dir, exist_ok=True)
    path = os.path.join(base_dir, f".staging-{version}-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    return path


def publish(staged, base_dir, version):
    """Flushes `staged` and renames it to `base_dir/version` in one step."""
    _fsync_tree(staged)
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target):
        # --force: move the old version aside first, then swap in the new one.
        retired = os.path.join(base_dir, f".retired-{version}-{os.getpid()}")
        os.rename(target, retired)
        os.rename(staged, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staged, target)
    return target
