"""The SUT's issue side: LoadGen queues samples, one worker thread takes them in batches.

Shared by the vision/language SUT (`sut.BatchingSUT`) and the LLM's (`llm.TokenSUT`); each
says only what one batch does (`_run`). Rules: `issue` never blocks LoadGen; the worker takes
up to `max_batch` queued samples (all of them once draining); `stop` lets it finish what is
queued, then joins it; an exception in the worker ends the process with exit 1 and its
traceback, since LoadGen would otherwise wait forever for the samples. Standard library only.
"""
from __future__ import annotations

import abc
import collections
import os
import sys
import threading
import traceback
from typing import Sequence


class BatchWorker(abc.ABC):
    """Queue + one worker thread; subclasses implement `_run(batch, draining)`."""

    def __init__(self, max_batch: int, name: str) -> None:
        self.max_batch = max_batch
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._wake = threading.Event()  # ends a `rest` early (drain, stop)
        self._stopping = self._draining = False
        self._worker = threading.Thread(target=self._loop, name=name, daemon=True)
        self._worker.start()

    def issue(self, samples: Sequence) -> None:
        with self._cond:
            self._queue.extend(samples)
            self._cond.notify()

    def flush(self) -> None:
        """LoadGen's end-of-issue hint; the worker already runs whatever is queued."""

    def drain(self) -> None:
        """From now on the worker takes everything queued at once, as `_run(batch, draining=True)`."""
        with self._cond:
            self._draining = True
            self._cond.notify()
        self._wake.set()

    def stop(self) -> None:
        """Let the worker run what is queued, then end it."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._wake.set()
        self._worker.join()

    def _poll(self, limit: int) -> list:
        """Up to `limit` queued samples, without waiting: a `_run` that serves continuously
        (the LLM's) refills itself from the queue between its steps."""
        with self._cond:
            return [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]

    def rest(self, seconds: float) -> None:
        """Pause the worker (pacing); a drain or stop ends the pause at once."""
        self._wake.wait(seconds)

    @abc.abstractmethod
    def _run(self, batch: list, draining: bool) -> None:
        """Compute one batch and complete its samples with LoadGen (the subclass's one job)."""

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if not self._queue:
                        return
                    take = len(self._queue) if self._draining else min(self.max_batch, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(take)]
                    draining = self._draining
                self._run(batch, draining)
        except BaseException:  # LoadGen would wait forever for these samples: fail the process loudly
            traceback.print_exc()
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)
