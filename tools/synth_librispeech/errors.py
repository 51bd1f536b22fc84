"""The one error type of the generator: a problem the user can act on."""

from __future__ import annotations


class SynthError(RuntimeError):
    """A problem the user can act on; reported as one line, without a traceback."""
