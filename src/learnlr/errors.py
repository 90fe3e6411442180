"""Errors a user can fix: every ``learnlr`` command prints them as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for or pointed at (a file, a folder, a name).

    Library code raises it (or a subclass) where the cause is outside the program; the CLI turns
    it into ``learnlr: error: <message>`` and exit code 2 instead of a traceback.
    """


class MissingExtra(UserError):
    """An optional dependency is not installed (the message names the ``pip install`` to run).

    A :class:`UserError`, so a missing extra found only once a command runs (e.g. a schedule
    that needs gymnasium) also ends as one line and exit code 2.
    """
