"""Shared fixtures: every correctness test runs on each compiled ISA tier this CPU can run and on
the Numba fallback; tiers this CPU cannot run are reported as skipped, never silently dropped."""
import os

import numpy as np
import pytest

import embkern
from embkern import _dispatch

SEED = int(os.environ.get("EMBKERN_SEED", "1234"))

_compiled = list(_dispatch._core.compiled_isas()) if _dispatch._core is not None else []
_supported = embkern.available_isas()

BACKEND_PARAMS = [
    pytest.param(("cpu", isa), id=f"cpu-{isa}",
                 marks=[] if isa in _supported else
                 pytest.mark.skip(reason=f"this CPU cannot run ISA tier {isa}"))
    for isa in _compiled
] + [pytest.param(("numba", None), id="numba")]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    """The backend name to pass as backend=...; for "cpu" the ISA tier is set for the test."""
    name, isa = request.param
    if name == "cpu":
        with embkern.use_isa(isa):
            yield name
    else:
        yield name


@pytest.fixture
def rng():
    return np.random.default_rng(SEED)
