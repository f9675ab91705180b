"""The threaded pipeline: source → detect/track → infer → (caller: post, render, sinks).

Stages are threads joined by bounded queues. A live source (camera, or a
file played with ``realtime=True``) never waits for the pipeline: when the
first queue is full its *oldest* frame is dropped and counted. Files never
drop (the reader blocks instead). One ``stop`` event ends everything; the
first exception in any stage stops the pipeline and is re-raised in the
consumer as one :class:`~facecycle.errors.FaceCycleError` (others are wrapped
in :class:`~facecycle.errors.PipelineError` with the stage name).

:class:`LatestFrame` is the bridge for GUIs: a one-slot mailbox that keeps
only the newest packet (older ones are counted as dropped), so a slow GUI
never piles frames up.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

from facecycle.errors import FaceCycleError, OutOfMemory, PipelineError, is_out_of_memory

from .sources.base import Source
from .types import FramePacket

__all__ = ["Pipeline", "LatestFrame", "Stage"]

log = logging.getLogger(__name__)

_END = object()

#: a stage: ``(name, fn)`` or ``(name, fn, workers)``; ``fn(packet) -> packet`` runs in the stage's
#: thread(s). With several workers, packets are processed in parallel and leave in order
#: (``fn`` must then be thread-safe).
Stage = Tuple


class _Ordered:
    """Re-orders the results of parallel workers by sequence number.

    One worker at a time emits (the one holding the "emitter" role); the others only
    file their result and go back to work. The lock is never held while emitting, so a
    full output queue blocks only the emitter, never a sibling that finishes meanwhile.
    While the emitter is blocked, a sibling that has filed its result waits as long as
    ``limit`` results wait to be emitted (default twice the workers): it used to go back
    for more, and with a slow consumer the siblings read the whole source into
    ``pending`` (2.7 MB a frame at 720p, latency growing by the second, and a live source
    that should have dropped frames dropped almost none).
    """

    def __init__(self, workers: int, limit: Optional[int] = None) -> None:
        self.lock = threading.Lock()
        self._freed = threading.Condition(self.lock)  # the emitter took a result out of ``pending``
        self.limit = max(1, int(limit if limit is not None else 2 * workers))
        self.pending: dict = {}
        self.next_seq = 1  # the stage before renumbers its output 1, 2, 3, ...
        self.alive = workers
        self._skip = False
        self._emitting = False

    def done(self, seq: int, result, put) -> bool:
        """Record ``result`` for ``seq`` (None = dropped) and emit everything now in order.

        Returns False when ``put`` gave up (the pipeline is aborting)."""
        with self.lock:
            if self._skip:
                return True
            self.pending[seq] = result
            if self._emitting:  # the emitting worker sends this one when its turn comes
                while self._emitting and not self._skip and len(self.pending) >= self.limit:
                    self._freed.wait(0.05)  # (timed: an aborting pipeline ends the emitter's wait first)
                return True
            self._emitting = True
        while True:
            with self.lock:
                if self._skip or self.next_seq not in self.pending:
                    self._emitting = False
                    self._freed.notify_all()  # a waiting sibling goes back to work (its result waits its turn)
                    return True
                r = self.pending.pop(self.next_seq)
                out_seq = self.next_seq
                self.next_seq += 1
                self._freed.notify_all()
            if r is not None and not put((out_seq, r)):  # may block on a full queue: no lock held
                with self.lock:
                    self._emitting = False
                    self._freed.notify_all()
                return False

    def skip_all(self) -> None:
        with self.lock:
            self._skip = True
            self.pending.clear()
            self._freed.notify_all()

    def exit(self) -> bool:
        """A worker leaves; True for the last one (it forwards the end marker)."""
        with self.lock:
            self.alive -= 1
            return self.alive == 0


class LatestFrame:
    """One-slot, thread-safe mailbox keeping only the newest item.

    ``put`` never blocks (an unread item is replaced and counted in ``dropped``);
    ``get(timeout)`` waits for a new item or returns None.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._fresh = False
        self.dropped = 0
        self.delivered = 0
        self.closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            if self._fresh:
                self.dropped += 1
            self._item, self._fresh = item, True
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Any:
        """The newest item not yet taken, waiting up to ``timeout`` seconds (None: until one comes or the box
        closes); None where none came."""
        with self._cond:
            if not self._fresh and not self.closed:
                self._cond.wait(timeout)
            if not self._fresh:
                return None
            self._fresh = False
            self.delivered += 1
            return self._item

    def peek(self) -> Any:
        """The newest item without consuming it (None before the first)."""
        with self._cond:
            return self._item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Pipeline:
    """Run ``source`` through ``stages`` (each in its own thread) and yield finished packets in order.

    Args:
        source: the frame source (opened; closed by the pipeline when done).
        stages: ``(name, fn)`` pairs; ``fn(packet) -> packet`` runs in the stage's thread.
        queue_size: capacity of each inter-stage queue.
        max_frames: stop after this many frames (None = all).

    Iterate it (once) in the consumer thread. ``stop()`` may be called from any
    thread or a signal handler: the consumer returns after the packet in hand.
    """

    def __init__(self, source: Source, stages: Sequence[Stage], queue_size: int = 4,
                 max_frames: Optional[int] = None) -> None:
        self.source = source
        self.stages = list(stages)
        self.queue_size = max(1, int(queue_size))
        self.max_frames = max_frames
        self.stop_event = threading.Event()
        self._abort = threading.Event()  # the consumer is gone: every thread exits at once
        self._running = threading.Event()
        self._running.set()
        self._error: Optional[Tuple[str, BaseException]] = None
        self._err_lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self.frames_read = 0
        self.drops = 0
        self._started = False
        # the source is closed once, by whoever is last: the consumer, or the reader thread when the
        # consumer had to leave it inside a blocking read (OpenCV captures are not thread-safe)
        self._close_lock = threading.Lock()
        self._reader_done = False
        self._reader_closes = False

    # ---------------------------------------------------------- control
    def stop(self) -> None:
        """Ask the pipeline to stop (safe from any thread and from signal handlers)."""
        self.stop_event.set()
        self._running.set()

    def pause(self) -> None:
        """Stop reading new frames until :meth:`resume` (frames in flight still finish)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    # ---------------------------------------------------------- threads
    def _fail(self, stage: str, e: BaseException) -> None:
        with self._err_lock:
            if self._error is None:
                self._error = (stage, e)
        self.stop_event.set()

    def _put(self, q: "queue.Queue", item) -> bool:
        while not self._abort.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _reader(self, out: "queue.Queue") -> None:
        live = self.source.live
        try:
            it = iter(self.source)
            while not self.stop_event.is_set():
                if not self._running.is_set():
                    t_pause = time.perf_counter()
                    while not self._running.is_set() and not self.stop_event.is_set():
                        self._running.wait(0.1)
                    paused_for = getattr(self.source, "paused_for", None)  # (a source of one's own may lack it)
                    if paused_for is not None:
                        paused_for(time.perf_counter() - t_pause)  # a paced file resumes where it was
                    continue
                if self.max_frames is not None and self.frames_read >= self.max_frames:
                    break
                try:
                    pkt = next(it)
                except StopIteration:
                    break
                # latency runs from the frame's arrival: the read returning it (not the wait for it, which is a paced
                # file's or a camera's frame interval), or the time a source gives for it
                pkt.stats.setdefault("t0", time.perf_counter())
                self._last_read = time.monotonic()
                self.frames_read += 1
                item = (self.frames_read, pkt)
                if live:
                    while True:
                        try:
                            out.put_nowait(item)
                            break
                        except queue.Full:
                            try:
                                out.get_nowait()
                                self.drops += 1
                                self.source.drops += 1
                            except queue.Empty:
                                pass
                elif not self._put(out, item):
                    return
        except BaseException as e:  # noqa: BLE001 - reported to the consumer
            self._fail("source", e)
        finally:
            self._put(out, _END)
            with self._close_lock:
                self._reader_done = True
                close = self._reader_closes
            if close:
                self._close_source()

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception as e:  # noqa: BLE001 - closing is best effort; the run's result stands
            log.warning("closing %s failed: %s", getattr(self.source, "name", "the source"), e)

    def _worker(self, name: str, fn: Callable, inq: "queue.Queue", out: "queue.Queue",
                group: Optional["_Ordered"] = None) -> None:
        """Run ``fn`` on items of ``inq``; with a ``group`` (parallel workers) results leave in input order."""
        out_seq = 0
        try:
            while not self._abort.is_set():
                try:
                    item = inq.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is _END:
                    if group is not None:
                        inq.put(_END)  # let the sibling workers see it too
                    break
                seq, pkt = item
                if self.stop_event.is_set() and self._error is not None and self._error[0] != "source":
                    res = None  # drain quickly after a stage's failure; the frames a failed source read come out
                else:
                    res = fn(pkt)
                if group is None:
                    if res is not None:
                        out_seq += 1  # renumber: a parallel stage after this one needs 1, 2, 3, ...
                        if not self._put(out, (out_seq, res)):
                            return
                elif not group.done(seq, res, lambda r: self._put(out, r)):
                    return
        except BaseException as e:  # noqa: BLE001
            # the error's traceback holds this frame: its frames in hand are let go (the failing one is still
            # the failing stage's own local)
            item = pkt = res = None  # noqa: F841
            self._fail(name, e)
            if group is not None:
                group.skip_all()
        finally:
            if group is None or group.exit():
                self._put(out, _END)

    # ---------------------------------------------------------- consumer
    def __iter__(self) -> Iterator[FramePacket]:
        if self._started:
            raise RuntimeError("a Pipeline runs once")
        if self.stages and len(self.stages[0]) > 2 and int(self.stages[0][2]) > 1:
            raise ValueError("the first stage must have one worker (the reader's numbering has gaps on drops)")
        self._started = True
        qs = [queue.Queue(self.queue_size) for _ in range(len(self.stages) + 1)]
        self._threads = [threading.Thread(target=self._reader, args=(qs[0],), name="fc-source", daemon=True)]
        for i, stage in enumerate(self.stages):
            name, fn = stage[0], stage[1]
            n = int(stage[2]) if len(stage) > 2 else 1
            group = _Ordered(n) if n > 1 else None
            for k in range(n):
                self._threads.append(threading.Thread(target=self._worker, args=(name, fn, qs[i], qs[i + 1], group),
                                                      name=f"fc-{name}-{k}", daemon=True))
        for t in self._threads:
            t.start()
        last = qs[-1]
        # watchdog: a live source with a ``timeout`` (a camera) whose read blocks instead of failing
        stall = getattr(self.source, "timeout", None) if self.source.live else None
        self._last_read = time.monotonic()
        try:
            while True:
                try:
                    item = last.get(timeout=0.05)
                except queue.Empty:
                    if stall and self._error is None and not self.stop_event.is_set():
                        if not self._running.is_set():  # paused: not a stall
                            self._last_read = time.monotonic()
                        elif time.monotonic() - self._last_read > stall + 0.5:
                            self._fail("source", PipelineError(
                                f"{self.source.name}: no frame for {stall:g} s (camera stopped or unplugged?)"))
                            stall = -1.0  # marks the stall for the joins below
                            break  # the reader is stuck in a blocking read: do not wait for it
                    if self.stop_event.is_set() and self._error is None and not any(
                            t.is_alive() for t in self._threads):
                        break
                    continue
                if item is _END:
                    break
                yield item[1]  # after a failure, frames finished before it still come out
                if self.stop_event.is_set() and self._error is None:
                    break
        finally:
            self._abort.set()
            self.stop_event.set()
            self._running.set()
            for t in self._threads:
                t.join(timeout=0.2 if stall == -1.0 else 5.0)
            with self._close_lock:
                if not self._reader_done:  # still inside a read: the reader closes the source when it returns
                    self._reader_closes = True
                    log.warning("%s: the reader is still blocked in a read; it closes the source when the read "
                                "returns", getattr(self.source, "name", "the source"))
            if not self._reader_closes:
                self._close_source()
            # the frames left in the queues (up to queue_size per stage, with their images) are let go: an
            # exception a notebook keeps holds this frame, its locals and so the queues, for as long as it is kept
            for q in qs:
                try:
                    while True:
                        q.get_nowait()
                except queue.Empty:
                    pass
            del qs, last
            item = None  # (the last frame handed out)
        self.raise_error()

    def raise_error(self) -> None:
        """Re-raise the first stage error as one FaceCycleError (no-op without an error)."""
        if self._error is None:
            return
        stage, e = self._error
        if isinstance(e, FaceCycleError):
            raise e
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise e
        if is_out_of_memory(e):  # "detect stage failed: ... Failed to allocate memory for requested buffer ..."
            raise OutOfMemory.while_(f"running the {stage} stage", e) from e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise PipelineError(f"{stage} stage failed: {type(e).__name__}: {msg}") from e
