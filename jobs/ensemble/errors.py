"""The errors the ensemble analysis raises on purpose (both are ``ValueError`` and :class:`~udfs.errors.VwError`:
the command line prints their message and exits with status 2)."""

from __future__ import annotations

from udfs.errors import VwError


class EnsembleOptionsError(VwError, ValueError):
    """An option of the analysis is out of range, inconsistent, or names what the events table
    lacks (a model, the ground truth, a filter that cannot run); the message names the option."""


class EnsembleDataError(VwError, ValueError):
    """Events the analysis read cannot be analysed (a time, confidence or metadata value that is
    not usable, a video naming several game halves); the message names the event or the video."""
