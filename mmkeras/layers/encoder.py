"""The base of every encoder: a Functional model whose config is its arguments."""

import keras


class Encoder(keras.Model):
    """A Functional model built inside a subclass (KerasHub's Backbone pattern).

    Subclasses build their graph, call `super().__init__(inputs=..., outputs=...)`
    and then `store_arguments(...)` with their constructor arguments: those
    become attributes of the same names and, with the name and `trainable`,
    exactly the config, so `from_config` rebuilds the same encoder.
    """

    def store_arguments(self, **arguments):
        self._arguments = list(arguments)
        for name, value in arguments.items():
            setattr(self, name, list(value) if isinstance(value, tuple) else value)

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        config.update({name: getattr(self, name) for name in self._arguments})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
