"""Errors that mmkeras raises for problems in what the user gave it."""


class SpecError(ValueError):
    """A spec or manifest is wrong; the message names the field and the fix."""


class BadRecordError(ValueError):
    """One or more manifest rows cannot be used; `records` lists each of them."""

    def __init__(self, records, message=None):
        self.records = list(records)
        if message is None:
            lines = [f"{len(self.records)} bad record(s):"]
            lines += [f"  {record}" for record in self.records[:50]]
            if len(self.records) > 50:
                lines.append(f"  ... and {len(self.records) - 50} more")
            lines.append(
                "Fix or remove these rows, or set `data.on_bad_record: skip` "
                "in the spec to train without them."
            )
            message = "\n".join(lines)
        super().__init__(message)
