"""pytest-benchmark setup for ``pytest bench/``.

* Collects ``bench_*.py`` (pytest's default pattern would skip them).
* ``backend`` fixture: every embkern benchmark runs on the compiled path ("cpu") and on the Numba
  fallback ("numba"); a backend this install lacks is reported as skipped.
* Peers (faiss, numpy's BLAS) run with embkern's thread count (``EMBKERN_NUM_THREADS`` or the CPU
  count), so a group compares like with like.

Sizes are small so that ``pytest bench/ --benchmark-disable`` is a quick correctness pass; the
suite with real sizes and a report is ``python -m embkern.bench``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import embkern

SEED = int(os.environ.get("EMBKERN_SEED", "1234"))


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def _backend_problem(name: str):
    """None when embkern's `name` backend runs, else why not."""
    try:
        embkern.hamming_distance(np.zeros((1, 1), dtype=np.uint8), backend=name)
    except RuntimeError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session", params=["cpu", "numba"])
def backend(request):
    problem = _backend_problem(request.param)
    if problem is not None:
        pytest.skip(f"embkern backend {request.param!r} unavailable: {problem}")
    return request.param


@pytest.fixture(scope="session", autouse=True)
def same_threads_for_peers():
    """Give faiss (OpenMP) and numpy's BLAS embkern's thread count for the whole session."""
    n = embkern.get_num_threads()
    try:
        import faiss
    except ImportError:
        faiss = None
    old = faiss.omp_get_max_threads() if faiss is not None else None
    if faiss is not None:
        faiss.omp_set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = None
    else:
        limits = threadpool_limits(limits=n)
    yield n
    if limits is not None:
        limits.restore_original_limits()
    if faiss is not None:
        faiss.omp_set_num_threads(old)


@pytest.fixture(scope="session")
def rng_seed():
    return SEED


def pytest_report_header(config):
    cfg = embkern.show_config(print_out=False)
    try:
        import faiss
    except ImportError:
        faiss = None
    return [f"embkern {cfg['version']}: ISA {cfg['isa']}, backends {cfg['backends']}, "
            f"{cfg['num_threads']} threads; faiss {getattr(faiss, '__version__', 'not imported')}"]
