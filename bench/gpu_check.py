#!/usr/bin/env python3
"""One-shot GPU verification of embkern on a lent GPU machine (docs: specs/cuda.md §5).

Run from the repository root:

    python3 bench/gpu_check.py                # on the GPU machine (one ~6-7 minute call)
    python3 bench/gpu_check.py --dry-run      # here, without a GPU: every stage that can run

Stages, each time-boxed (subprocesses killed at their limit) and never fatal to the script:

  env         nvidia-smi (read-only queries), tool and package versions
  ceilings    build + run bench/gpu_ceilings.cu (HBM, popc, smem LUT, mma.sync rates) and torch's
              bf16 matmul and torch._int_mm rates
  install     embkern from a carried wheel (.whl/embkern-*.whl), else built here with
              EMBKERN_CUDA=ON EMBKERN_CUDA_ARCHS=90a-real, into a private --target folder
  import      import that embkern and assert cuda_available()
  pytest_gpu  pytest -m gpu -x (junit xml)
  memcheck    compute-sanitizer --tool memcheck on a tiny smoke script (a few CUDA kernel calls)
  racecheck   compute-sanitizer --tool racecheck on the same script, when time is left
  bench       each family's CUDA kernels against a torch / CuPy peer (CUDA events, warm-up, median)

Device tool call (repo root; OUT is set there): command "PYTHONUNBUFFERED=1 python3 bench/gpu_check.py
--budget 450", timeout_s 540, carry [".whl"] when a cp312 wheel was built here first with
"EMBKERN_CUDA=ON EMBKERN_CUDA_ARCHS=90a-real python3.12 -m pip wheel --no-deps -w .whl ." (saves the
~1-3 minute build there). Give the machine back right after.

Files under $OUT (./gpu_check_out when OUT is unset): log.txt, stages.txt, ceilings.csv,
bench.jsonl, summary.txt, junit_gpu.xml. The summary table is printed last. Exit code 1 when a
correctness stage (import, pytest_gpu, memcheck, racecheck) failed, else 0.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.abspath(__file__)
SITE = "/tmp/embkern_gpu_check_site"  # private install target (PYTHONPATH for every later stage)
CORRECTNESS = ("import", "pytest_gpu", "memcheck", "racecheck")
FAMILIES = ("binary", "pq", "projection", "fde", "lowrank")
LOG_CAP = 400_000  # characters of one command's output kept in log.txt


# ---------------------------------------------------------------------------------------------
# plumbing: output folder, log, time-boxed commands


class Check:
    def __init__(self, out: str, budget: float, dry_run: bool, quick: bool):
        self.out = out
        self.dry_run = dry_run
        self.quick = quick
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget
        self.stages: list[dict] = []
        os.makedirs(out, exist_ok=True)
        self.log_f = open(os.path.join(out, "log.txt"), "w", encoding="utf-8", errors="replace")
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 4))
        self.python = sys.executable
        self.gpu = False
        self.ceilings: dict[str, float] = {}
        self.embkern_path = None  # PYTHONPATH entry of the embkern under test (None: as installed)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, text: str) -> None:
        stamp = f"[{time.monotonic() - self.t0:7.1f}s] "
        for line in text.rstrip("\n").split("\n"):
            self.log_f.write(stamp + line + "\n")
        self.log_f.flush()

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log(text)

    def cmd(self, args, timeout: float, cwd: str = ROOT, env=None) -> tuple[int | None, str]:
        """Run args (list) with a hard timeout; (exit code or None on timeout, output)."""
        timeout = max(1.0, min(timeout, self.left()))
        self.log(f"$ {' '.join(args)}   (timeout {timeout:.0f}s)")
        try:
            p = subprocess.Popen(args, cwd=cwd, env=env or self.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self.log(f"cannot start: {e}")
            return 127, f"cannot start {args[0]}: {e}"
        try:
            raw, _ = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the whole process group this command started
            except ProcessLookupError:
                pass
            raw, _ = p.communicate()
            rc = None
        text = (raw or b"").decode("utf-8", "replace")
        kept = text if len(text) <= LOG_CAP else text[:LOG_CAP // 2] + "\n[...]\n" + text[-LOG_CAP // 2:]
        self.log(kept)
        self.log(f"-> rc={rc if rc is not None else f'timeout after {timeout:.0f}s'}")
        return rc, text

    def child_env(self):
        env = dict(self.env)
        if self.embkern_path:
            env["PYTHONPATH"] = self.embkern_path + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def stage(self, name: str, box: float, fn, min_time: float = 5.0) -> dict:
        """Run stage fn(box) -> (status, note); status in ok / FAIL / skip / timeout."""
        rec = {"stage": name, "status": "skip", "seconds": 0.0, "note": ""}
        box = min(box, self.left() - 15)  # keep time to write the files
        if box < min_time:
            rec["note"] = f"not enough time left ({self.left():.0f}s)"
        else:
            self.say(f"== {name} (box {box:.0f}s)")
            t = time.monotonic()
            try:
                rec["status"], rec["note"] = fn(box)
            except Exception as e:  # a stage's own bug must not end the check
                rec["status"], rec["note"] = "FAIL", f"{type(e).__name__}: {e}"
            rec["seconds"] = round(time.monotonic() - t, 1)
        self.stages.append(rec)
        self.say(f"   {name}: {rec['status']} ({rec['seconds']}s) {rec['note']}")
        self.write_stages()
        return rec

    def write_stages(self) -> None:
        with open(os.path.join(self.out, "stages.txt"), "w") as f:
            f.write(stage_table(self.stages))


def stage_table(stages) -> str:
    lines = [f"{'stage':<11} {'status':<8} {'sec':>6}  note"]
    for r in stages:
        lines.append(f"{r['stage']:<11} {r['status']:<8} {r['seconds']:>6}  {r['note']}")
    return "\n".join(lines) + "\n"


def last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[:300]


# ---------------------------------------------------------------------------------------------
# stages


def st_env(c: Check, box: float):
    notes = []
    smi = shutil.which("nvidia-smi")
    if smi:
        rc, out = c.cmd([smi, "--query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,"
                         "clocks.max.sm,clocks.mem,temperature.gpu,power.draw,compute_mode",
                         "--format=csv,noheader"], min(30, box))
        c.gpu = rc == 0 and bool(out.strip())
        notes.append(out.strip().splitlines()[0] if c.gpu else "nvidia-smi failed")
        c.cmd([smi], min(20, box))
    else:
        notes.append("no nvidia-smi")
    for args in (["uname", "-a"], ["nvcc", "--version"], ["compute-sanitizer", "--version"],
                 ["ldd", "--version"], ["nproc"]):
        if shutil.which(args[0]):
            c.cmd(args, 20)
        else:
            c.log(f"{args[0]}: not found")
    c.cmd([c.python, "-c", "import sys; print(sys.version)"], 20)
    if not c.quick:
        c.cmd([c.python, "-m", "pip", "list", "--disable-pip-version-check"], 30)
    mods = ("numpy", "pytest") if c.quick else ("numpy", "numba", "torch", "cupy", "pytest", "pybind11",
                                                 "scikit_build_core")
    probe = ("import importlib\n"
             f"for m in {mods!r}:\n"
             "  try: print(m, getattr(importlib.import_module(m), '__version__', '?'))\n"
             "  except Exception as e: print(m, 'missing', type(e).__name__)\n"
             + ("" if c.quick else
                "try:\n import torch; print('torch.cuda', torch.cuda.is_available(), torch.version.cuda)\n"
                "except Exception as e: print('torch.cuda ?', e)\n"))
    rc, out = c.cmd([c.python, "-c", probe], 60)
    notes.append(" ".join(ln.split()[0] + "=" + ln.split()[1] for ln in out.splitlines()
                          if len(ln.split()) >= 2 and ln.split()[0] in ("torch", "cupy", "numpy")))
    if not c.gpu and not c.dry_run:
        return "FAIL", "no GPU visible; " + "; ".join(notes)
    return "ok", "; ".join(notes)


def st_ceilings(c: Check, box: float):
    exe = "/tmp/embkern_gpu_ceilings"
    src = os.path.join(ROOT, "bench", "gpu_ceilings.cu")
    rows = []
    nvcc = shutil.which("nvcc")
    notes = []
    if not nvcc:
        notes.append("no nvcc")
    else:
        rc, out = c.cmd([nvcc, "-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a",
                         "-o", exe, src], min(90, box))
        if rc != 0:
            notes.append("nvcc failed: " + last_lines(out, 2))
        elif not c.gpu:
            notes.append("built; not run (no GPU)")
        else:
            args = [exe] + (["--quick"] if c.quick else [])
            rc, out = c.cmd(args, max(10, min(60, c.left() - 30)))
            for ln in out.splitlines():
                parts = ln.split(",", 3)
                if len(parts) >= 3 and parts[0] != "name":
                    try:
                        float(parts[1])
                    except ValueError:
                        continue
                    rows.append(parts + [""] * (4 - len(parts)))
            notes.append(f"ceilings rc={rc}")
    if c.gpu:
        rc, out = c.cmd([c.python, HERE, "--child", "torch_ceilings"] + (["--quick"] if c.quick else []),
                        max(10, min(60, c.left() - 20)), env=c.child_env())
        for ln in out.splitlines():
            if ln.startswith("ROW,"):
                rows.append(ln.split(",", 4)[1:])
        notes.append(f"torch rc={rc}")
    with open(os.path.join(c.out, "ceilings.csv"), "w") as f:
        f.write("name,value,unit,note\n")
        for r in rows:
            f.write(",".join(r) + "\n")
            try:
                c.ceilings[r[0]] = float(r[1])
            except ValueError:
                pass
    keys = [k for k in ("hbm_copy", "hbm_read", "popc_words_per_clk_sm", "smem_lut_K256_M32_per_clk_sm",
                        "smem_lut_K16_M32_per_clk_sm", "bmma_b1_and_popc", "torch_bf16_mm", "torch_int_mm")
            if k in c.ceilings]
    notes.append(" ".join(f"{k}={c.ceilings[k]:.3g}" for k in keys))
    if c.gpu and not rows:
        return "FAIL", "; ".join(notes)
    return "ok", "; ".join(n for n in notes if n)


def st_install(c: Check, box: float):
    if c.dry_run:
        c.embkern_path = None
        return "skip", "dry run: using the embkern already importable here"
    shutil.rmtree(SITE, ignore_errors=True)
    wheels = sorted(glob.glob(os.path.join(ROOT, ".whl", "embkern-*.whl")))
    pip = [c.python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
           "--disable-pip-version-check", "--target", SITE]
    if wheels:
        rc, out = c.cmd(pip + [wheels[-1]], min(60, box))
        if rc == 0 and glob.glob(os.path.join(SITE, "embkern", "_cuda*.so")):
            c.embkern_path = SITE
            return "ok", f"wheel {os.path.basename(wheels[-1])}"
        c.log("wheel install failed or has no _cuda module; building here")
    env = dict(c.env, EMBKERN_CUDA="ON", EMBKERN_CUDA_ARCHS="90a-real")
    rc, out = c.cmd(pip + ["--no-build-isolation", "-v", "."], box - 5, env=env)
    if rc == 0:
        c.embkern_path = SITE
        return "ok", "built here (EMBKERN_CUDA=ON, 90a-real)"
    return ("timeout" if rc is None else "FAIL"), "build failed: " + last_lines(out)


SMOKE_IMPORT = """
import embkern, sys
print('embkern', embkern.__version__, embkern.__file__)
print('cuda_status', embkern.cuda_status())
try:
    import embkern._cuda as m
    print('cuda_functions', ' '.join(sorted(n for n in dir(m) if not n.startswith('__'))))
except ImportError as e:
    print('cuda_functions none', e)
sys.exit(0 if embkern.cuda_available() else 3)
"""


def st_import(c: Check, box: float):
    rc, out = c.cmd([c.python, "-c", SMOKE_IMPORT], min(60, box), cwd="/tmp", env=c.child_env())
    status = next((ln[len("cuda_status "):] for ln in out.splitlines() if ln.startswith("cuda_status ")), "")
    if rc == 0:
        return "ok", status
    if c.dry_run and rc == 3:
        return "ok", "dry run (cuda_available() False as expected): " + status
    return ("timeout" if rc is None else "FAIL"), (status or last_lines(out))


def gpu_test_files() -> list:
    """tests/test_*.py files that use the gpu marker (collecting only these keeps other test
    files' imports, e.g. faiss or dask, which the GPU machine may lack, out of the way)."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "test_*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            if "mark.gpu" in f.read():
                out.append(os.path.relpath(path, ROOT))
    return out


def st_pytest(c: Check, box: float):
    junit = os.path.join(c.out, "junit_gpu.xml")
    files = gpu_test_files()
    if not files:
        return "skip", "no test file uses the gpu marker"
    args = [c.python, "-m", "pytest", "-m", "gpu", "-x", "-q", "-p", "no:cacheprovider",
            f"--junitxml={junit}"] + files
    rc, out = c.cmd(args, box, env=c.child_env())
    tail = last_lines(out, 1)
    if rc == 0:
        if c.gpu and " passed" not in tail:
            return "FAIL", "no gpu test ran: " + tail
        return "ok", tail
    if rc == 5 and c.dry_run:
        return "ok", "no tests selected: " + tail
    return ("timeout" if rc is None else "FAIL"), f"rc={rc}: {tail}"


def _sanitizer(c: Check, box: float, tool: str):
    if not c.gpu:
        return "skip", "no GPU"
    san = shutil.which("compute-sanitizer")
    if not san:
        for p in sorted(glob.glob("/usr/local/cuda*/bin/compute-sanitizer")):
            san = p
    if not san:
        return "FAIL", "compute-sanitizer not found"
    args = [san, "--tool", tool, "--error-exitcode", "97", "--target-processes", "all",
            c.python, HERE, "--child", "smoke"]
    rc, out = c.cmd(args, box, env=c.child_env())
    summary = next((ln for ln in out.splitlines() if "ERROR SUMMARY" in ln or "RACECHECK SUMMARY" in ln), "")
    if rc == 0 and "smoke ok" in out:
        return "ok", summary.strip() or "clean"
    return ("timeout" if rc is None else "FAIL"), f"rc={rc}: " + (summary.strip() or last_lines(out))


def st_memcheck(c: Check, box: float):
    return _sanitizer(c, box, "memcheck")


def st_racecheck(c: Check, box: float):
    return _sanitizer(c, box, "racecheck")


def st_bench(c: Check, box: float):
    path = os.path.join(c.out, "bench.jsonl")
    args = [c.python, HERE, "--child", "bench", "--bench-out", path,
            "--ceilings", json.dumps(c.ceilings)]
    if c.quick:
        args.append("--quick")
    if not c.gpu:
        args.append("--no-gpu")
    rc, out = c.cmd(args, box, env=c.child_env())
    n = 0
    if os.path.exists(path):
        with open(path) as f:
            n = sum(1 for _ in f)
    if rc == 0:
        return "ok", f"{n} rows" + ("" if c.gpu else " (no GPU: families listed only)")
    return ("timeout" if rc is None else "FAIL"), f"rc={rc}, {n} rows: {last_lines(out, 1)}"


# ---------------------------------------------------------------------------------------------
# children (run as separate, time-boxed processes)


def child_torch_ceilings(quick: bool) -> None:
    import torch

    def timed(fn, reps):
        fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b))
        ts.sort()
        return ts[len(ts) // 2] * 1e-3

    reps = 3 if quick else 10
    n = 4096 if quick else 8192
    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    t = timed(lambda: x @ y, reps)
    print(f"ROW,torch_bf16_mm,{2 * n ** 3 / t / 1e12:.6g},TFLOP/s,{n}^3 random bf16", flush=True)
    del x, y
    for m, k, nn, tag in ((8192, 8192, 8192, "torch_int_mm"), (1024, 1024, 262144, "torch_int_mm_hamming_shape")):
        if quick:
            m, k, nn = min(m, 2048), min(k, 2048), min(nn, 65536)
        try:
            a = torch.randint(-128, 127, (m, k), device="cuda", dtype=torch.int8)
            b = torch.randint(-128, 127, (nn, k), device="cuda", dtype=torch.int8).t()  # column-major
            t = timed(lambda: torch._int_mm(a, b), reps)
            print(f"ROW,{tag},{2 * m * k * nn / t / 1e12:.6g},TOPS,{m}x{k}x{nn} int8->int32", flush=True)
            del a, b
        except Exception as e:
            print(f"{tag} failed: {type(e).__name__}: {e}", flush=True)


def case_modules() -> dict:
    """bench/gpu_cases/<family>.py for each family that has one (smoke() and bench())."""
    import importlib.util

    out = {}
    for fam in FAMILIES:
        path = os.path.join(os.path.dirname(HERE), "gpu_cases", f"{fam}.py")
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location(f"gpu_case_{fam}", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            out[fam] = mod
    return out


def child_smoke() -> None:
    """A few CUDA kernel calls per family on host (numpy) inputs, checked against the CPU."""
    from embkern import _cuda_backend as cb

    if not cb.available():
        print("no CUDA:", cb.status())
        sys.exit(2)
    kernels = family_kernels()
    for fam, mod in case_modules().items():
        if kernels[fam]:
            mod.smoke()
            print(f"smoke {fam} ok", flush=True)
    print("smoke ok", flush=True)


def family_kernels() -> dict:
    """Per family: the kernels of its submodule embkern._cuda.<family> (empty: no CUDA kernel yet)."""
    try:
        import importlib

        mod = importlib.import_module("embkern._cuda")
    except ImportError:
        mod = None
    out = {}
    for fam in FAMILIES:
        sub = getattr(mod, fam, None) if mod is not None else None
        out[fam] = sorted(n for n in dir(sub) if not n.startswith("_") and callable(getattr(sub, n))) if sub else []
    return out


def child_bench(out_path: str, ceilings: dict, quick: bool, no_gpu: bool) -> None:
    deadline = time.monotonic() + float(os.environ.get("GPU_CHECK_BENCH_S", "1e9"))
    rows = open(out_path, "w")

    def emit(**r):
        rows.write(json.dumps(r) + "\n")
        rows.flush()
        print("BENCH", json.dumps(r), flush=True)

    kernels = family_kernels()
    benched = {fam: mod.bench for fam, mod in case_modules().items() if hasattr(mod, "bench")}
    for fam in FAMILIES:
        if not kernels[fam]:
            emit(family=fam, case="-", status="no CUDA kernel yet")
        elif no_gpu:
            emit(family=fam, case="-", status="no GPU", kernels=kernels[fam])
        elif fam not in benched:
            emit(family=fam, case="-", status="kernels present, no bench case in gpu_cases/ yet",
                 kernels=kernels[fam])
    if no_gpu:
        return
    for fam, fn in benched.items():
        if kernels[fam]:
            try:
                import torch

                fn(emit, ceilings, quick, deadline, _timer(torch, 5 if quick else 10, 3.0))
            except Exception as e:
                emit(family=fam, case="-", status=f"FAIL {type(e).__name__}: {e}")


def _timer(torch, reps: int, budget_s: float):
    """median seconds of fn(i) (i rotates input sets) with CUDA events, after 2 warm-up calls."""
    def run(fn):
        for w in range(2):
            fn(w)
        torch.cuda.synchronize()
        ts, t_end = [], time.monotonic() + budget_s
        for r in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn(r)
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b) * 1e-3)
            if time.monotonic() > t_end and len(ts) >= 3:
                break
        ts.sort()
        return ts[len(ts) // 2], len(ts)
    return run


# ---------------------------------------------------------------------------------------------
# summary


def summary_text(c: Check) -> str:
    out = ["embkern GPU check" + (" (DRY RUN, no GPU)" if c.dry_run else ""), "", stage_table(c.stages)]
    if c.ceilings:
        out.append("ceilings:")
        for k, v in c.ceilings.items():
            out.append(f"  {k:<34} {v:.4g}")
        out.append("")
    path = os.path.join(c.out, "bench.jsonl")
    if os.path.exists(path):
        out.append(f"{'family':<10} {'case':<44} {'impl':<34} {'ms':>9} {'%floor':>7}  status")
        with open(path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                ms = r.get("median_ms")
                pct = r.get("pct_of_floor")
                out.append(f"{r.get('family', ''):<10} {str(r.get('case', ''))[:44]:<44} "
                           f"{str(r.get('impl', ''))[:34]:<34} {ms if ms is not None else '':>9} "
                           f"{pct if pct is not None else '':>7}  {r.get('status', '')}"
                           + ("" if r.get("distances_agree", True) else " DISAGREES"))
    failed = [r["stage"] for r in c.stages if r["stage"] in CORRECTNESS and r["status"] in ("FAIL", "timeout")]
    out.append("")
    out.append(f"correctness: {'FAILED in ' + ', '.join(failed) if failed else 'no failure'}; "
               f"total {time.monotonic() - c.t0:.0f}s")
    return "\n".join(out) + "\n"


STAGES = (  # name, time box in seconds, function, minimum seconds left to start it
    ("env", 45, st_env, 5),
    ("ceilings", 120, st_ceilings, 20),
    ("install", 300, st_install, 30),
    ("import", 45, st_import, 10),
    ("pytest_gpu", 150, st_pytest, 20),
    ("memcheck", 120, st_memcheck, 20),
    ("bench", 180, st_bench, 30),
    ("racecheck", 90, st_racecheck, 30),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="no GPU: run what can run here")
    ap.add_argument("--quick", action="store_true", help="small sizes (and in --dry-run: test_cuda.py only)")
    ap.add_argument("--budget", type=float, default=450, help="seconds for all stages (default 450)")
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "gpu_check_out"))
    ap.add_argument("--only", default="", help="comma-separated stages to run (default all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--bench-out", help=argparse.SUPPRESS)
    ap.add_argument("--ceilings", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--no-gpu", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child == "torch_ceilings":
        child_torch_ceilings(a.quick)
        return 0
    if a.child == "smoke":
        child_smoke()
        return 0
    if a.child == "bench":
        child_bench(a.bench_out, json.loads(a.ceilings), a.quick, a.no_gpu)
        return 0

    c = Check(os.path.abspath(a.out), a.budget, a.dry_run, a.quick)
    c.say(f"embkern gpu_check: out={c.out} budget={a.budget:.0f}s dry_run={a.dry_run} python={c.python}")
    only = {s for s in a.only.split(",") if s}
    for name, box, fn, min_time in STAGES:
        if only and name not in only:
            continue
        if name == "racecheck" and c.quick:
            continue
        if name == "bench":
            c.env["GPU_CHECK_BENCH_S"] = str(max(10.0, min(box, c.left() - 15) - 10))
        c.stage(name, box, lambda b, fn=fn: fn(c, b), min_time)
    text = summary_text(c)
    with open(os.path.join(c.out, "summary.txt"), "w") as f:
        f.write(text)
    for name, empty in (("ceilings.csv", "name,value,unit,note\n"), ("bench.jsonl", "")):
        if not os.path.exists(os.path.join(c.out, name)):  # the stage did not run: an empty file
            with open(os.path.join(c.out, name), "w") as f:
                f.write(empty)
    if not os.path.exists(os.path.join(c.out, "junit_gpu.xml")):
        with open(os.path.join(c.out, "junit_gpu.xml"), "w") as f:
            f.write('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="0" '
                    'skipped="0" failures="0" errors="0"><properties><property name="note" '
                    'value="pytest_gpu did not run"/></properties></testsuite></testsuites>\n')
    c.log(text)
    c.log_f.close()
    print("\n" + text, end="", flush=True)
    failed = [r for r in c.stages if r["stage"] in CORRECTNESS and r["status"] in ("FAIL", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
