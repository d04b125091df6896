"""What a run says on the terminal without --verbose: warnings, and the few lines a user must see
(the translation a prompt was given, the region an instruction found).

Everything goes through the ``videdit`` logger, so it also lands in the run folder's ``run.log``;
`say` marks an info line for the terminal, and `terminal_handler` passes those lines and every
warning to stderr, as ``videdit: ...`` and ``videdit: warning: ...``.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("videdit")


def say(message: str) -> None:
    """Log ``message`` and show it on the terminal."""
    log.info(message, extra={"terminal": True})


class _TerminalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        kind = "warning: " if record.levelno >= logging.WARNING else ""
        return f"videdit: {kind}{record.getMessage()}"


def terminal_handler() -> logging.Handler:
    """A stderr handler for warnings and `say` lines (what a run without --verbose shows)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO)
    handler.addFilter(lambda record: record.levelno >= logging.WARNING or getattr(record, "terminal", False))
    handler.setFormatter(_TerminalFormatter())
    return handler
