"""Building spec sections from YAML mappings, with errors that name the field."""

import dataclasses
import difflib

from mmkeras.errors import SpecError


def require(condition, where, message):
    if not condition:
        raise SpecError(f"{where}: {message}")


def from_mapping(cls, mapping, where):
    """Builds dataclass `cls` from a mapping, rejecting unknown or missing keys."""
    require(
        isinstance(mapping, dict),
        where,
        f"expected a mapping of {cls.__name__} fields, got {type(mapping).__name__}.",
    )
    # `where` is set by the parent section, not written by the user.
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "where"}
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
    require(not missing, where, f"missing required field(s): {', '.join(missing)}.")
    takes_where = any(f.name == "where" for f in dataclasses.fields(cls))
    return cls(**mapping, where=where) if takes_where else cls(**mapping)


def positive_number(value, where, name):
    require(
        isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
        where,
        f"`{name}` must be a positive number, got {value!r}.",
    )


def non_negative_number(value, where, name):
    """`value` as a float, if it is a number from 0."""
    require(
        isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
        where,
        f"`{name}` must be a number from 0, got {value!r}.",
    )
    return float(value)
