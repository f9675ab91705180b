"""Thread counts are capped to the CPUs the process may use (``--threads 5000`` took over two minutes for five
frames: ONNX Runtime started 5,000 threads per session)."""
from __future__ import annotations

import logging

import pytest

from facecycle.cpus import cap_threads, usable_cpus


def test_a_thread_count_above_the_cpus_is_capped_with_one_warning(caplog):
    cpus = usable_cpus()
    with caplog.at_level(logging.WARNING, logger="facecycle.cpus"):
        assert cap_threads(cpus + 5000, "--threads") == cpus
        assert cap_threads(cpus, "--threads") == cpus
        assert cap_threads(1, "--threads") == 1
        assert cap_threads(0, "--threads") == 0  # callers' own meaning (the default)
    assert len(caplog.records) == 1 and "--threads" in caplog.text and str(cpus) in caplog.text


@pytest.mark.parametrize("kw", [{"threads": 5000}, {"infer_workers": 5000}])
def test_the_analyzer_runs_on_at_most_the_usable_cpus(kw, caplog):
    from realtime import Analyzer

    with caplog.at_level(logging.WARNING, logger="facecycle.cpus"):
        an = Analyzer(**kw)  # the shipped model
    try:
        assert an.infer_workers <= usable_cpus()
        assert an.backend.intra_op_threads <= usable_cpus()
        assert "5000" in caplog.text
    finally:
        an.close()
