"""The one exception type the data layer raises for bad user input.

A :class:`DataError` carries a message meant for a person: it names the file (and line,
where there is one) and says what is wrong. The CLI prints it and exits with status 2;
no traceback is shown for it.
"""

from __future__ import annotations

__all__ = ["DataError"]


from assembly.errors import UserError


class DataError(UserError):
    """Bad data supplied by a user: a malformed file, an unknown task, invalid lengths.

    ``str(error)`` is the complete, human-readable message (possibly several lines, one
    problem per line).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
