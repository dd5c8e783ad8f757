"""User-facing errors: one clear line, exit code 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad path, bad flag, bad input file).

    The CLI prints ``error: <message>`` on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InputFormatError(UserError):
    """An input file is not in a format we can read (names the file and the fix)."""


class ChecksumError(UserError):
    """A downloaded or stored file does not match its expected checksum."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)
