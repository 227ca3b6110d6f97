"""Which versions of which models are loaded, kept in step with the disk.

Like TF Serving's file-system source, the registry polls each model's base
path (and re-reads a models.config) every few seconds: a new version is
loaded and warmed up before it takes traffic, and versions the policy no
longer wants are unloaded after it. A version that fails to load is
reported in the model's status and the others keep serving.
"""

import dataclasses
import logging
import os
import threading

from tensorflow_serving.apis import get_model_status_pb2, status_pb2

from mmkeras.errors import SpecError
from mmkeras.export.publish import versions
from mmkeras.export.server_config import CONTAINER_ROOT, read_models_config
from mmkeras.serving.errors import not_found
from mmkeras.serving.servable import Servable

log = logging.getLogger("mmkeras.serving")
State = get_model_status_pb2.ModelVersionStatus.State
UNKNOWN_ERROR = 2  # tensorflow.error.Code.UNKNOWN: how TF Serving reports a failed load


@dataclasses.dataclass
class ModelSource:
    """A model folder and what to serve from it.

    Args:
        name: str. The model's name in requests.
        base_path: str. The folder holding integer version folders.
        latest: int. Serve this many of the newest versions, unless
            `specific` names them.
        specific: list. Exactly these versions.
        labels: dict. Label (e.g. `stable`) to version.
    """

    name: str
    base_path: str
    latest: int = 1
    specific: list = dataclasses.field(default_factory=list)
    labels: dict = dataclasses.field(default_factory=dict)

    def wanted(self):
        on_disk = versions(self.base_path)
        if self.specific:
            return sorted(set(self.specific) & set(on_disk))
        return on_disk[-self.latest :] if self.latest > 0 else on_disk


def sources_from_config(path):
    """ModelSources from a models.config; `/models/NAME` base paths (the
    tensorflow/serving image's) are read from the config's own folder."""
    sources = []
    for entry in read_models_config(path).model_config_list.config:
        base_path = entry.base_path
        if not os.path.isdir(base_path) and base_path.startswith(CONTAINER_ROOT + "/"):
            base_path = os.path.join(
                os.path.dirname(os.path.abspath(path)), base_path[len(CONTAINER_ROOT) + 1 :]
            )
        policy = entry.model_version_policy
        which = policy.WhichOneof("policy_choice")
        sources.append(
            ModelSource(
                name=entry.name,
                base_path=base_path,
                latest=0 if which == "all" else (policy.latest.num_versions or 1) if which == "latest" else 1,
                specific=list(policy.specific.versions) if which == "specific" else [],
                labels=dict(entry.version_labels),
            )
        )
    return sources


def sources_for(path, model_name=None):
    """What `mmkeras serve PATH` serves: every model of a models.config, or
    the latest version of one model folder."""
    if os.path.isfile(path):
        return sources_from_config(path)
    if not os.path.isdir(path):
        raise SpecError(f"{path} is neither a model folder (with integer versions) nor a models.config file.")
    return [ModelSource(name=model_name or os.path.basename(os.path.abspath(path)), base_path=path)]


class ModelRegistry:
    """Loaded versions by model, refreshed from disk by a polling thread.

    Args:
        find_sources: callable returning the list of ModelSources; called on
            every poll, so an edited models.config takes effect.
        limits: ServingLimits.
        batching: BatchingParameters, or None.
        poll_seconds: float.
    """

    def __init__(self, find_sources, limits, batching=None, poll_seconds=1.0):
        self._find_sources = find_sources
        self._limits = limits
        self._batching = batching
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._sources = {}
        self._loaded = {}  # name -> {version: Servable}
        self._status = {}  # name -> {version: (state, error message)}
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        """Loads what is on disk now, then keeps polling in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="version-poller")
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _poll(self):
        while not self._stop.wait(self._poll_seconds):
            try:
                self.refresh()
            except Exception:  # a bad config edit must not stop the server polling
                log.exception("could not refresh the served models")

    def refresh(self):
        sources = {source.name: source for source in self._find_sources()}
        with self._lock:
            self._sources = sources
        for source in sources.values():
            self._refresh_model(source)

    def _set_status(self, name, version, state, message=""):
        with self._lock:
            self._status.setdefault(name, {})[version] = (state, message)

    def _refresh_model(self, source):
        wanted = source.wanted()
        loaded = dict(self._loaded.get(source.name, {}))
        with self._lock:
            failed = {v for v, (_, message) in self._status.get(source.name, {}).items() if message}
        for version in wanted:
            # A version that failed to load is not retried every poll; one that
            # was unloaded (a label moved away and back) loads again.
            if version in loaded or version in failed:
                continue
            self._set_status(source.name, version, State.LOADING)
            try:
                servable = Servable(
                    source.name,
                    version,
                    os.path.join(source.base_path, str(version)),
                    self._limits,
                    self._batching,
                )
                warmed = servable.warm_up()
            except Exception as error:  # a broken version is reported, the others keep serving
                log.error("model %s version %d failed to load: %s", source.name, version, error)
                self._set_status(source.name, version, State.END, f"failed to load: {error}")
                continue
            loaded[version] = servable
            with self._lock:
                self._loaded[source.name] = dict(loaded)
            self._set_status(source.name, version, State.AVAILABLE)
            log.info("model %s version %d is available (%d warmup requests)", source.name, version, warmed)
        for version in sorted(set(loaded) - set(wanted)):
            self._set_status(source.name, version, State.UNLOADING)
            servable = loaded.pop(version)
            with self._lock:
                self._loaded[source.name] = dict(loaded)
            servable.retire()  # requests holding it finish; the object goes when they do
            self._set_status(source.name, version, State.END)
            log.info("model %s version %d unloaded", source.name, version)

    def resolve(self, name, version=None, label=None):
        """The version number a request means: pinned, labelled or latest."""
        with self._lock:
            self._check_served(name)
            loaded = self._loaded.get(name, {})
            if label:
                labels = self._sources[name].labels
                if label not in labels:
                    raise not_found(
                        f"model `{name}` has no version labelled `{label}`; labels: {sorted(labels)}."
                    )
                version = labels[label]
            if version is None:
                if not loaded:
                    raise not_found(
                        f"Servable not found for request: no version of `{name}` is available yet."
                    )
                return max(loaded)
            return version

    def servable(self, name, version=None, label=None):
        """The loaded Servable a request should use."""
        version = self.resolve(name, version, label)
        with self._lock:
            servable = self._loaded.get(name, {}).get(version)
        if servable is None:
            raise not_found(
                f"Servable not found for request: model `{name}` version {version} is not loaded."
            )
        return servable

    def status(self, name, version=None, label=None):
        """A GetModelStatusResponse for one version or all of them."""
        if version is not None or label:
            version = self.resolve(name, version, label)
        else:
            with self._lock:
                self._check_served(name)
        with self._lock:
            status = dict(self._status.get(name, {}))
        if version is not None and version not in status:
            raise not_found(f"model `{name}` has no version {version}; versions: {sorted(status)}.")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in [version] if version is not None else sorted(status):
            state, message = status[number]
            entry = response.model_version_status.add(version=number, state=state)
            entry.status.CopyFrom(
                status_pb2.StatusProto(error_code=UNKNOWN_ERROR if message else 0, error_message=message)
            )
        return response

    def _check_served(self, name):
        if name not in self._sources:
            raise not_found(f"Servable not found for request: model `{name}` is not served here.")
