"""The GUI's view of a pipeline run: :class:`PipelineStream` wraps ``realtime``'s Analyzer + Run.

It opens the model, detector and source (all slow or failing steps happen
here, in the worker thread), and exposes what the session needs: iteration
over finished :class:`~realtime.types.FramePacket` s, pause / resume / stop
from any thread, the neutral-face computation switched at run time, and the
run's outputs (overlay, CSV, video: ``run.outputs``, the same ending as
``facecycle process``), which the GUI switches on and off while the run goes.
"""
from __future__ import annotations

import logging
from typing import Iterator, List

from realtime.analyzer import Analyzer
from realtime.types import FramePacket

from .settings import RunConfig

__all__ = ["PipelineStream", "open_stream", "run_notes", "NOTES"]

#: what the run found out that the window tells the user of as it appears, in the order the window shows it:
#: ``orientation`` (most of the first faces turned by a right angle, with the ``rotate`` that reads them upright) and
#: ``dark_faces`` (faces brightened before they were read: ``rows``, ``first_frame``, ``gain_max``), the run's
#: ``info`` entries (``realtime.analyzer``); ``baseline_cap`` (``tracks_at_cap``: faces whose most neutral frames
#: still read expressive, measured against the person baseline's cap; ``faces``: their track ids where known), from
#: ``realtime.baseline.NeutralBaseline.describe()``
NOTES = ("orientation", "dark_faces", "baseline_cap")

log = logging.getLogger(__name__)


class PipelineStream:
    """One run of the real-time pipeline (``realtime.analyzer``) on ``config.source``.

    The run starts with no overlay and no files; the session attaches them through
    :attr:`outputs` (``set_annotator``, ``set_csv``, ``set_video``; any thread).
    Files are replaced without asking (the GUI asks the user first), and a file
    that fails is reported through ``outputs.on_error`` while the run goes on.

    Raises:
        facecycle.errors.FaceCycleError: model, backend, detector or source cannot be opened.
    """

    def __init__(self, config: RunConfig, neutralize: bool = False) -> None:
        self.config = config
        self.analyzer = Analyzer(model=config.model_dir, backend=config.backend, detector=config.detector,
                                 detector_model=config.detector_model, max_faces=config.max_faces, neutralize=False,
                                 neutral_reference=config.neutral_reference, rotate=config.rotate,
                                 neutral_lookahead=False)  # frames as they come: no second reading first
        self.can_neutralize = "neutralize" in self.analyzer.backend.graphs
        self.set_neutralize(neutralize)
        try:
            self.run = self.analyzer.process_video(config.source, realtime=config.realtime, annotate=False,
                                                   overwrite=True)
        except BaseException:
            self.analyzer.close()
            raise
        self.run.info["app"] = "facecycle app"
        self.outputs = self.run.outputs
        self.live: bool = bool(self.run.src.live)
        self._gen = None

    def __iter__(self) -> Iterator[FramePacket]:
        self._gen = iter(self.run)
        return self._gen

    # any thread
    def pause(self) -> None:
        self.run.pause()

    def resume(self) -> None:
        self.run.resume()

    def request_stop(self) -> None:
        self.run.stop()

    def set_neutralize(self, on: bool) -> None:
        """Compute neutral faces from the next frame on (ignored when the model has no neutralize graph)."""
        self.analyzer.inference.neutralize = bool(on) and self.can_neutralize

    @property
    def drops(self) -> int:
        return int(self.run.stats.drops)

    def stats(self) -> dict:
        return self.run.stats.summary()

    def notes(self) -> dict:
        """What the run has found out about its input while it goes (:data:`NOTES`), by name; the pipeline's threads
        add them. Cheap (dictionary look-ups): the session asks a few times a second."""
        return run_notes(self.run)

    def describe(self) -> dict:
        """What produced the numbers (the body of the CSV's JSON sidecar)."""
        return self.run.describe()

    def close(self) -> None:
        """Stop the run, join its threads, close the source, finish the files, close the model (idempotent).

        Raises the error of a file that could not be finished (after everything is closed)."""
        try:
            self.run.stop()
            if self._gen is not None:
                self._gen.close()  # runs the Run's cleanup: pipeline threads joined, source closed
            else:
                self.run.close()
        finally:
            self.analyzer.close()


def open_stream(config: RunConfig, neutralize: bool = False) -> PipelineStream:
    """Open a pipeline run for the GUI (slow: loads the model and the detector)."""
    return PipelineStream(config, neutralize=neutralize)


def run_notes(run) -> dict:
    """:data:`NOTES` of ``run`` (a ``realtime.analyzer.Run``, or anything with its ``info`` and ``baseline``)."""
    info = run.info
    notes = {k: info[k] for k in NOTES if k in info}
    baseline = getattr(run, "baseline", None)
    # the baseline's own describe() (the sidecar's person_baseline), not the run's: that one also asks the source,
    # the analyzer and the installed versions
    at_cap = baseline.describe().get("tracks_at_cap") if baseline is not None else None
    if at_cap:
        notes["baseline_cap"] = {"tracks_at_cap": int(at_cap), "faces": _capped_faces(baseline)}
    return notes


def _capped_faces(baseline) -> List[int]:
    """The track ids of the faces at the cap, to name them as the panel does (``Face #N``), each once."""
    return sorted(set(baseline.capped_tracks()))
