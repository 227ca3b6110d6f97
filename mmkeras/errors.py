"""Every error mmkeras raises on purpose, under one base class.

The message always names what is wrong (the spec field, the manifest row,
the checkpoint kept) and how to fix it. The `mmkeras` command prints it
without a traceback and exits with `MMKerasError.exit_code`. Its exit codes:

- 0: done.
- 1: a check found problems (`mmkeras data check` with bad rows under
  `on_bad_record: error`; `mmkeras export --check` with ops TF Serving lacks).
- 2: the command stopped on an error (any `MMKerasError`), or the command
  line was wrong.
"""

import grpc


class MMKerasError(Exception):
    """The base of every error mmkeras raises for a problem it can explain."""

    exit_code = 2


class SpecError(MMKerasError, ValueError):
    """A spec is wrong; the message names the field and the fix."""


class DataError(MMKerasError, ValueError):
    """The data a spec points at cannot be read: a missing or malformed
    manifest, a missing data folder."""


class BadValue(DataError):
    """One value of one row cannot be used; the message is the reason."""


class BadRecordError(DataError):
    """One or more manifest rows cannot be used; `records` lists each of them."""

    def __init__(self, records, message=None):
        self.records = list(records)
        if message is None:
            lines = [f"{len(self.records)} bad record(s):"]
            lines += [f"  {record}" for record in self.records[:50]]
            if len(self.records) > 50:
                lines.append(f"  ... and {len(self.records) - 50} more")
            lines.append(
                "Fix or remove these rows, or set `data.on_bad_record: skip` in the spec "
                "to train without them."
            )
            message = "\n".join(lines)
        super().__init__(message)


class TrainingError(MMKerasError, RuntimeError):
    """Training stopped on a problem; the message says what and what was kept."""


class RunFolderError(MMKerasError):
    """A run folder is missing, unfinished, finished already, or written by an
    older version of mmkeras."""


class ExportError(MMKerasError):
    """An export failed a check or would overwrite a version; nothing was published."""


class ServingError(MMKerasError):
    """A request the server answers with an error instead of a prediction, or
    a serving configuration it cannot start with.

    Args:
        message: str. What is wrong with the request, naming the field.
        code: grpc.StatusCode. The status TF Serving gives this error.
    """

    def __init__(self, message, code=grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(message)
        self.message = message
        self.code = code
