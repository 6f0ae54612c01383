"""Errors amc raises on bad input. Each names where the problem is, so a user can fix it at once."""

from __future__ import annotations


class AmcError(Exception):
    """Base of amc's own errors: the CLI prints them without a traceback."""


class InputError(AmcError):
    """Bad input data: names the file, the row (1-based line or 0-based index, as stated) and the field."""

    def __init__(self, file: str, row: int | str | None, field: str | None, message: str):
        self.file, self.row, self.field, self.message = file, row, field, message
        where = file
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class ConfigError(AmcError):
    """Bad pipeline file: names the file and the dotted path of the key."""

    def __init__(self, file: str, path: str, message: str):
        self.file, self.path, self.message = file, path, message
        super().__init__(f"{file}: {path}: {message}" if path else f"{file}: {message}")
