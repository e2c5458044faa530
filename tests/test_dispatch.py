"""ISA detection and overrides, backends, configuration report."""
import json
import os
import subprocess
import sys

import pytest

import embkern


def run_python(code, **env):
    full = dict(os.environ, **env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True)
    return out


def test_show_config_reports_everything(capsys):
    cfg = embkern.show_config()
    printed = capsys.readouterr().out
    for key in ("compiled_isas", "supported_isas", "isa", "backends", "num_threads", "cuda",
                "cuda_families"):
        assert key in cfg and key in printed
    assert cfg["isa"] in cfg["supported_isas"]
    assert set(cfg["cuda_families"]) <= {"binary", "pq", "projection", "fde", "lowrank"}
    assert "cpu" in cfg["backends"] and "numba" in cfg["backends"]


def test_best_tier_is_selected_by_default():
    assert embkern.get_isa() == embkern.available_isas()[-1] or os.environ.get("EMBKERN_ISA")


@pytest.mark.parametrize("isa", embkern.available_isas())
def test_env_caps_the_tier(isa):
    out = run_python("import embkern, json; print(json.dumps(embkern.get_isa()))", EMBKERN_ISA=isa)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == isa


def test_unknown_env_tier_fails_loudly():
    out = run_python("import embkern", EMBKERN_ISA="sse9")
    assert out.returncode != 0 and "sse9" in out.stderr


def test_env_threads():
    out = run_python("import embkern; print(embkern.get_num_threads())", EMBKERN_NUM_THREADS="3")
    assert out.stdout.strip() == "3"


def test_set_isa_round_trip():
    old = embkern.get_isa()
    embkern.set_isa("scalar")
    assert embkern.get_isa() == "scalar"
    embkern.set_isa("best")
    assert embkern.get_isa() == embkern.available_isas()[-1]
    embkern.set_isa(old)


def test_unsupported_tier_is_refused():
    from embkern import _dispatch

    missing = [t for t in _dispatch._core.compiled_isas() if t not in embkern.available_isas()]
    if not missing:
        pytest.skip("this CPU runs every compiled tier")
    with pytest.raises(ValueError, match="cannot run"):
        embkern.set_isa(missing[-1])
