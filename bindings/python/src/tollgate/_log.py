"""The C library's log hook (``rl_set_log_handler``; docs/metrics.md, "Logs")
wired to the standard :mod:`logging` module.

Every Redis limiter sends what the library logs (each episode of its store
once, never once per call: a node unreachable and reconnected, the failure
mode entered and left, a Sentinel failover followed, a cluster slot map
changed) to the logger named ``tollgate``, or to the one its ``logger``
option names. The application configures it as any other logger::

    logging.getLogger("tollgate").setLevel(logging.WARNING)

The extension (native.cpp, "Logs") calls the function :func:`emitter` makes
with the GIL, on the thread that saw the event: tollgate's I/O thread or a
checking thread.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Union

#: The logger every limiter logs to unless given another one.
LOGGER_NAME = "tollgate"

#: The library's levels (RL_LOG_ERROR 1 .. RL_LOG_DEBUG 4) as logging's.
LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}

#: What the library starts each message with; the logger's name says it.
PREFIX = "tollgate: "

#: What the ``logger`` option takes.
AnyLogger = Union[logging.Logger, logging.LoggerAdapter]  # type: ignore[type-arg]


def check_logger(value: object) -> AnyLogger:
    """The ``logger`` option, checked: a :class:`logging.Logger` or a
    :class:`logging.LoggerAdapter`."""
    if not isinstance(value, (logging.Logger, logging.LoggerAdapter)):
        raise TypeError("logger must be a logging.Logger or a logging.LoggerAdapter, not %s" % type(value).__name__)
    return value


def emitter(logger: Optional[AnyLogger] = None) -> Callable[[int, str], None]:
    """The callable a limiter's log hook calls with each message: the
    library's level (1 .. 4) and the message, one line that never holds a
    password. It logs to ``logger``, or to the ``tollgate`` logger, at the
    matching level, if that logger is enabled for it (read at each
    message, so ``setLevel`` applies at once), the message without the
    library's ``tollgate: `` prefix."""
    target: AnyLogger = logging.getLogger(LOGGER_NAME) if logger is None else logger

    def emit(level: int, message: str) -> None:
        py_level = LEVELS.get(level, logging.DEBUG)
        if target.isEnabledFor(py_level):
            if message.startswith(PREFIX):
                message = message[len(PREFIX) :]
            target.log(py_level, message)

    return emit
