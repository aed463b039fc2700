"""The one exception type for bad input."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input the user can fix: a data file (named with its 1-based line), a flag, a missing
    data set. The command line prints it as one line and exits with code 2; any other exception
    is a bug in the library and keeps its traceback."""
