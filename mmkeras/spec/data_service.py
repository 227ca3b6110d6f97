"""`data.service`: decode and preprocess the training split on tf.data service workers."""

import dataclasses

from mmkeras.spec.fields import require

# How the service's workers share the training split (tf.data's sharding policies).
PROCESSING_MODES = ("distributed_epoch", "parallel_epochs")


@dataclasses.dataclass
class DataServiceSpec:
    """Where the tf.data service dispatcher is, and how its workers split the work.

    Written as the dispatcher's address alone (`service: grpc://dispatcher:5050`)
    or as a mapping.

    Args:
        address: str. The dispatcher, `grpc://HOST:PORT` or `HOST:PORT`.
        processing_mode: str. "distributed_epoch" (the default: each row goes
            to one worker, dynamically, so each epoch reads every row once)
            or "parallel_epochs" (every worker reads the whole split, each in
            its own shuffled order: an epoch then holds each row once per
            worker).
    """

    address: str
    processing_mode: str = "distributed_epoch"
    where: str = dataclasses.field(default="data.service", repr=False, compare=False)

    def __post_init__(self):
        require(
            isinstance(self.address, str) and ":" in self.address,
            self.where,
            f"`address` must be the dispatcher's HOST:PORT (or grpc://HOST:PORT), got {self.address!r}.",
        )
        require(
            self.processing_mode in PROCESSING_MODES,
            self.where,
            f"`processing_mode` must be one of {', '.join(PROCESSING_MODES)}.",
        )

    @property
    def target(self):
        """The address with its protocol, as tf.data takes it."""
        return self.address if "://" in self.address else f"grpc://{self.address}"

    @property
    def host_and_port(self):
        host, port = self.target.split("://", 1)[1].rsplit(":", 1)
        return host, int(port)
