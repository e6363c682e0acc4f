"""The project's error base class and the check of closed-choice options.

Every error the project raises on purpose derives from :class:`VwError`: it carries a message that
names the input and the problem, and the exit status the ``vw`` command line ends with. The command
line turns any ``VwError`` into that message and status in one place (``jobs.cli``); library users
can catch ``VwError`` to handle all of them. Subclasses keep their historical builtin bases
(``ValueError``, ``RuntimeError``, ``OSError``) so existing ``except ValueError`` code still works.

This module is at the bottom of the import graph (no project imports), so every package can use it.
"""

from __future__ import annotations

from typing import Any, get_args


class VwError(Exception):
    """Base of every error the project raises on purpose; ``exit_code`` is the CLI's exit status."""

    exit_code: int = 2


class ChoiceError(VwError, ValueError):
    """A closed-choice option got a value outside its choices."""


def choices(literal: Any) -> tuple[str, ...]:
    """The values of a ``Literal[...]`` type, in declaration order."""
    values = get_args(literal)
    if not values:
        raise TypeError(f"{literal!r} is not a Literal type")
    return tuple(values)


def check_choice(value: Any, literal: Any, what: str) -> Any:
    """``value`` when it is one of ``literal``'s values; else :class:`ChoiceError` naming ``what`` and
    listing the choices."""
    allowed = choices(literal)
    if value not in allowed:
        raise ChoiceError(f"{what} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


class NotFoundError(VwError, LookupError):
    """A table, column or other named thing the warehouse does not have (the message says which)."""


class SettingError(VwError, ValueError):
    """A setting (an option, an environment variable, a configuration value) that cannot be used."""
