"""Batch processing of many videos (``facecycle batch``): in this process, or on a Ray cluster.

Every input runs the per-video path of ``facecycle process`` (:func:`~realtime.batch.job.analyze_file`), so a
batch's CSVs are byte-identical to ``process``'s for the same inputs and settings. Re-running skips inputs
whose sidecar says ``complete`` with the same settings fingerprint; see :mod:`realtime.batch.job` for the
output layout and commit protocol, :mod:`realtime.batch.executors` for Ray, :mod:`realtime.batch.parquet`
for the dataset. Ray and pyarrow are optional (``pip install "facecycle-rt[cluster]"``) and imported lazily.
"""
from .job import BatchSettings, analyze_file, run_task
from .plan import BatchItem, collect_inputs, settings_fingerprint
from .runner import BatchResult, run_batch

__all__ = ["BatchSettings", "BatchItem", "BatchResult", "analyze_file", "collect_inputs", "run_batch",
           "run_task", "settings_fingerprint"]
