"""bench/gpu_check.py, the one-shot GPU check: its no-GPU mode end to end, and the orchestration
(time boxes, stage failures recorded, exit code) with fake stages."""
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu_check.py")
FILES = ("log.txt", "stages.txt", "ceilings.csv", "bench.jsonl", "summary.txt", "junit_gpu.xml")


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dry_run_writes_every_file_and_exits_0(tmp_path):
    env = dict(os.environ)
    env.pop("OUT", None)
    # nvcc and pytest stages are left out here (slow; the ceilings build has its own test below)
    p = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--quick", "--out", str(tmp_path),
                        "--only", "env,install,import,memcheck,bench"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for name in FILES:
        assert (tmp_path / name).is_file(), name
    summary = (tmp_path / "summary.txt").read_text()
    assert p.stdout.rstrip().endswith(summary.rstrip().splitlines()[-1])  # summary printed last
    for stage in ("env", "install", "import", "memcheck", "bench"):
        assert stage in (tmp_path / "stages.txt").read_text()
    rows = (tmp_path / "bench.jsonl").read_text().splitlines()
    assert len(rows) == 5  # one line per family: "no CUDA kernel yet" or "no GPU"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
def test_ceilings_source_compiles(tmp_path):
    src = os.path.join(ROOT, "bench", "gpu_ceilings.cu")
    p = subprocess.run(["nvcc", "-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "-o",
                        str(tmp_path / "gpu_ceilings"), src], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr


def test_command_timeout_kills_the_process_group(tmp_path):
    gc = load()
    c = gc.Check(str(tmp_path), budget=60, dry_run=True, quick=True)
    t = time.monotonic()
    rc, _ = c.cmd(["sh", "-c", "sleep 30 & sleep 30"], timeout=1)
    assert rc is None and time.monotonic() - t < 10
    rc, out = c.cmd([sys.executable, "-c", "print('hi')"], timeout=30)
    assert rc == 0 and "hi" in out
    rc, out = c.cmd(["/nonexistent/tool"], timeout=5)
    assert rc == 127


def test_stage_failures_are_recorded_and_set_the_exit_code(tmp_path, monkeypatch, capsys):
    gc = load()

    def boom(c, box):
        raise RuntimeError("broken stage")

    monkeypatch.setattr(gc, "STAGES", (
        ("env", 10, lambda c, box: ("ok", "fine"), 1),
        ("ceilings", 10, boom, 1),  # not a correctness stage: recorded, exit code unaffected
        ("bench", 10, lambda c, box: ("ok", ""), 10_000),  # needs more time than the budget: skipped
    ))
    assert gc.main(["--dry-run", "--out", str(tmp_path), "--budget", "60"]) == 0
    stages = (tmp_path / "stages.txt").read_text()
    assert "FAIL" in stages and "broken stage" in stages
    assert "not enough time left" in stages
    monkeypatch.setattr(gc, "STAGES", (("import", 10, boom, 1),))
    assert gc.main(["--dry-run", "--out", str(tmp_path), "--budget", "60"]) == 1
    assert "FAILED in import" in capsys.readouterr().out.strip().splitlines()[-1]


def test_family_kernels_and_cases_cover_every_family():
    gc = load()
    kernels = gc.family_kernels()
    assert set(kernels) == set(gc.FAMILIES)
    cases = gc.case_modules()
    for fam, names in kernels.items():
        if names:  # a family with CUDA kernels has its smoke and bench cases
            assert callable(cases[fam].smoke) and callable(cases[fam].bench), fam
