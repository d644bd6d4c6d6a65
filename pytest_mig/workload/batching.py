"""The SUT's issue side: LoadGen queues samples, one worker thread takes them in batches.

Shared by the vision/language SUT (`sut.BatchingSUT`) and the LLM's (`llm.TokenSUT`); each
says only what one batch does (`_run`). Rules: `issue` never blocks LoadGen; the worker takes
up to `max_batch` queued samples (all of them once draining); `stop` lets it finish what is
queued, then joins it; a subclass may keep batches in flight (`_settle` finishes the oldest
when nothing new is queued, and before the worker ends); an exception in the worker ends the
process with exit 1 and its traceback, since LoadGen would otherwise wait forever for the
samples. Two queues: `SampleQueue` holds LoadGen's QuerySample objects (a batch is a list of
them); `ChunkQueue` holds what LoadGen's fast issue callback gives, lists of response ids and
sample indices, and slices them into `Chunk` batches: no Python object per sample.
Standard library only.
"""
from __future__ import annotations

import abc
import collections
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Sequence


class SampleQueue:
    """Queued samples, one object each; a batch is a list of them (in issue order)."""

    def __init__(self) -> None:
        self._items: collections.deque = collections.deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, samples: Sequence) -> None:
        self._items.extend(samples)

    def take(self, count: int) -> list:
        if count >= len(self._items):
            batch = list(self._items)
            self._items.clear()
            return batch
        pop = self._items.popleft
        return [pop() for _ in range(count)]


@dataclass(frozen=True)
class Chunk:
    """A batch from a `ChunkQueue`: LoadGen response ids and QSL indices, position by position."""

    ids: list[int]
    indices: list[int]

    def __len__(self) -> int:
        return len(self.ids)


class ChunkQueue:
    """Queued (response ids, sample indices) list pairs; `take` slices batches off the front."""

    def __init__(self) -> None:
        self._chunks: collections.deque = collections.deque()
        self._offset = 0  # samples of the first chunk already taken
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        if len(ids) != len(indices):
            raise ValueError(f"{len(ids)} response ids for {len(indices)} sample indices")
        if ids:
            self._chunks.append((list(ids), list(indices)))
            self._count += len(ids)

    def take(self, count: int) -> Chunk:
        ids: list[int] = []
        indices: list[int] = []
        while self._chunks and len(ids) < count:
            chunk_ids, chunk_indices = self._chunks[0]
            end = min(len(chunk_ids), self._offset + count - len(ids))
            if self._offset == 0 and end == len(chunk_ids) and not ids:  # a whole chunk: no copy
                ids, indices = chunk_ids, chunk_indices
            else:
                ids += chunk_ids[self._offset:end]
                indices += chunk_indices[self._offset:end]
            if end == len(chunk_ids):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
        self._count -= len(ids)
        return Chunk(ids, indices)


class BatchWorker(abc.ABC):
    """Queue + one worker thread; subclasses implement `_run(batch, draining)`."""

    def __init__(self, max_batch: int, name: str, queue: SampleQueue | ChunkQueue | None = None) -> None:
        self.max_batch = max_batch
        self._queue = queue if queue is not None else SampleQueue()
        self._cond = threading.Condition()
        self._wake = threading.Event()  # ends a `rest` early (drain, stop)
        self._stopping = self._draining = False
        self._worker = threading.Thread(target=self._loop, name=name, daemon=True)
        self._worker.start()

    def issue(self, *samples: Sequence) -> None:
        """LoadGen's issue callback: QuerySample objects, or (ids, indices) for a `ChunkQueue`."""
        with self._cond:
            self._queue.put(*samples)
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
            return self._queue.take(limit) if self._queue else []

    def rest(self, seconds: float) -> None:
        """Pause the worker (pacing); a drain or stop ends the pause at once."""
        self._wake.wait(seconds)

    @abc.abstractmethod
    def _run(self, batch: list, draining: bool) -> None:
        """Compute one batch and complete its samples with LoadGen (the subclass's one job)."""

    def _settle(self) -> bool:
        """Finish the oldest batch still in flight; False when none is (the default: `_run` finishes each)."""
        return False

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    idle = not self._queue
                if idle and self._settle():  # nothing new: finish in-flight work first
                    continue
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if not self._queue:
                        return
                    batch = self._queue.take(len(self._queue) if self._draining else self.max_batch)
                    draining = self._draining
                self._run(batch, draining)
        except BaseException:  # LoadGen would wait forever for these samples: fail the process loudly
            traceback.print_exc()
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)
