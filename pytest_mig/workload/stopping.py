"""How the child program is told to stop: the CLI's signal handler raises or sets these.

Standard library only, so the CLI can arm its handlers before torch loads; `cli.py` and
`sut.py` both import it (it imports neither).
"""
from __future__ import annotations

import threading


class Interrupted(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT so the run can unwind and exit promptly."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """Set by the signal handler once `armed` (timed phase reached) so --until-stopped ends cleanly."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.armed = False
