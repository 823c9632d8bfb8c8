"""One exception type for everything the user can fix.

The CLI turns a `UserError` into a single `error: ...` line and exit code 2, before any work is done
and without touching the run directory; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: an unknown key, a wrong value, a missing file, a run directory already in use."""


def require(condition: bool, message: str) -> None:
    """Config range checks read as one line each: `require(x >= 1, "section.x must be >= 1")`."""
    if not condition:
        raise UserError(message)
