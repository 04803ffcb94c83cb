"""Numbers of seconds taken as settings, options and messages: checked in one place."""

from __future__ import annotations

import math

from .errors import ConfigurationError


def seconds(name: str, value: object, *, positive: bool = False) -> float:
    """`value` as a float of seconds, finite and >= 0 (> 0 if `positive`).

    Raises ConfigurationError naming `name` otherwise: a NaN deadline crashes anyio, an
    infinite poll spins, a negative grace means nothing.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number) and (number > 0 if positive else number >= 0):
            return number
    bound = "> 0" if positive else ">= 0"
    raise ConfigurationError(
        f"{name} must be a finite number of seconds {bound}, got {value!r}; "
        f"give one such as {'5' if positive else '0 or 30'}"
    )
