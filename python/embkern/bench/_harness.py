"""The benchmark frame: case registry, thread control, timing, result checks and the run loop.

A *family* is one module ``embkern.bench.<family>`` (no leading underscore) that defines
``CASES``, a list of :class:`Case`. Each case names its workload sizes per profile ("quick",
"default", "full"), builds its inputs once (untimed), and lists how embkern and each peer compute
the same result. For every requested thread count the harness times embkern on each requested
backend and every peer that is installed, side by side in this process, checks that the results
agree, and records one :class:`Row` per implementation.

Timing: one warm-up call per implementation (it also pays Numba's JIT and first-touch page faults,
and its result is the one checked), then ``repeat`` samples, interleaved round-robin across the
implementations of a case; the reported time is the median sample. A call shorter than
``MIN_SAMPLE_S`` is looped within a sample so the clock's resolution does not dominate.

Ratios: the compiled row's ratio is ``best peer time / embkern time`` (above 1: embkern is faster);
the Numba row's ratio is against the compiled path (``cpu time / numba time``, so 0.25 means "4x
slower") or, when the compiled path was not run, against the best peer. Peer rows carry no ratio.
"""
from __future__ import annotations

import gc
import importlib
import math
import os
import pkgutil
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import embkern

PROFILES = ("quick", "default", "full")
MIN_SAMPLE_S = 0.02
MAX_INNER_LOOPS = 1000

# A check returns None when the result agrees with the expected one, else a short description.
CheckFn = Callable[[Dict[str, Any], Any, Any], Optional[str]]


@dataclass
class Peer:
    """Another library computing the same result.

    ``make(data, threads)`` runs untimed (build an index, probe an API) and returns the timed
    zero-argument callable. ``requires`` are modules that must import; a missing one makes the
    peer "not installed" and it is left out of the table. ``comparable=False`` marks a peer that
    computes the same kind of result its own way (ScaNN trains its own quantizer): it is timed
    but neither gives nor is held to the reference result.
    """

    name: str
    make: Callable[[Dict[str, Any], int], Callable[[], Any]]
    requires: Tuple[str, ...] = ()
    comparable: bool = True


@dataclass
class Case:
    """One workload: what is computed, at which sizes, by embkern and by its peers."""

    family: str
    name: str
    title: str
    sizes: Dict[str, Dict[str, Any]]
    setup: Callable[..., Dict[str, Any]]  # setup(rng, **params) -> data (untimed)
    embkern: Callable[[Dict[str, Any], str], Callable[[], Any]]  # (data, backend) -> timed callable
    items: Callable[[Dict[str, Any]], float]  # work items per call, from params
    unit: str  # what an item is: "pairs", "vectors", ...
    check: CheckFn
    peers: List[Peer] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.family}.{self.name}"

    def params(self, profile: str) -> Dict[str, Any]:
        if profile in self.sizes:
            return dict(self.sizes[profile])
        return dict(self.sizes["default"])

    def describe(self, profile: str) -> str:
        return ", ".join(f"{k}={_fmt_param(v)}" for k, v in self.params(profile).items())


@dataclass
class Row:
    family: str
    case: str
    title: str
    params: str  # the sizes, as text
    threads: int
    impl: str
    kind: str  # "embkern" or "peer"
    status: str  # "ok", "unavailable", "error"
    message: str = ""
    time_s: Optional[float] = None
    min_s: Optional[float] = None
    samples_s: List[float] = field(default_factory=list)
    inner_loops: int = 0
    items: float = 0.0
    unit: str = ""
    throughput: Optional[float] = None
    ratio: Optional[float] = None
    ratio_vs: str = ""
    ratio_vs_best_peer: Optional[float] = None
    best_peer: bool = False
    check: str = ""  # "ok", "ref" (the reference result), "MISMATCH: ...", "" (not checked)
    sizes: Dict[str, Any] = field(default_factory=dict)

    @property
    def mismatch(self) -> bool:
        return self.check.startswith("MISMATCH")


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------
def family_names() -> List[str]:
    """Every family module in this package: ``embkern.bench.<name>`` without a leading underscore."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(m.name for m in pkgutil.iter_modules([here])
                  if not m.name.startswith("_") and not m.ispkg)


def load_family(name: str) -> List[Case]:
    module = importlib.import_module(f"{__package__}.{name}")
    cases = getattr(module, "CASES", None)
    if not isinstance(cases, (list, tuple)):
        raise RuntimeError(f"benchmark family module {module.__name__} defines no CASES list")
    return list(cases)


# ------------------------------------------------------------------------------------------------
# threads
# ------------------------------------------------------------------------------------------------
def module_available(name: str) -> Optional[str]:
    """None when `name` imports, else why not."""
    try:
        importlib.import_module(name)
        return None
    except Exception as exc:  # ImportError, or a broken install raising something else
        return f"{type(exc).__name__}: {exc}"


@contextmanager
def thread_limit(n: int) -> Iterator[None]:
    """Run embkern, faiss (OpenMP) and numpy's BLAS (threadpoolctl) with `n` threads.

    Numba calls through embkern follow embkern's thread count (embkern sets it per call).
    """
    old = embkern.get_num_threads()
    embkern.set_num_threads(n)
    faiss_old = None
    with ExitStack() as stack:
        if "faiss" in sys.modules:
            faiss = sys.modules["faiss"]
            faiss_old = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(n)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            stack.enter_context(threadpool_limits(limits=n))
        try:
            yield
        finally:
            embkern.set_num_threads(old)
            if faiss_old is not None:
                sys.modules["faiss"].omp_set_num_threads(faiss_old)


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def warm_up(fn: Callable[[], Any]) -> Tuple[Any, int]:
    """Call `fn` once (it pays JIT compilation and first-touch page faults), once more when that
    was short, and choose how many calls one timed sample loops over. Returns (result, loops)."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    if first < MIN_SAMPLE_S:  # the first call may have included compilation: measure again
        result = None
        t0 = time.perf_counter()
        result = fn()
        first = time.perf_counter() - t0
    if first >= MIN_SAMPLE_S:
        return result, 1
    return result, int(min(MAX_INNER_LOOPS, math.ceil(MIN_SAMPLE_S / max(first, 1e-9))))


def sample(fn: Callable[[], Any], loops: int) -> float:
    """Seconds per call of one timed sample (the result is dropped after the clock stops)."""
    out = None
    t0 = time.perf_counter()
    for _ in range(loops):
        out = fn()
    elapsed = time.perf_counter() - t0
    del out
    return elapsed / loops


# ------------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------------
def _unavailable_error(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("unavailable" in text or "no implementation" in text)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Progress:
    """One stderr line per finished step, with a counter, the elapsed time and an ETA."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.done = 0
        self.start = time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def step(self, text: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        left = self.total - self.done
        eta = elapsed / self.done * left if self.done else 0.0
        width = len(str(self.total))
        self.note(f"[{self.done:>{width}}/{self.total}] {text}  "
                  f"(elapsed {format_duration(elapsed)}, ETA {format_duration(eta) if left else 'done'})")


def run_case(case: Case, data: Dict[str, Any], params: Dict[str, Any], profile: str, threads: int,
             backends: Sequence[str], repeat: int, peers: Sequence[Peer]) -> List[Row]:
    """Time every peer and embkern on each backend at `threads` threads; check and rank them.

    Each implementation is warmed up and its result checked first (the first peer that runs
    gives the reference; with no peer, the first embkern backend does). Then the timed samples are
    interleaved round-robin across implementations, so that a change in the machine's background
    load affects all of them alike rather than whichever ran during it.
    """
    items = float(case.items(params))
    rows: List[Row] = []
    timed: List[Tuple[Row, Callable[[], Any], int]] = []
    expected: Any = None
    expected_from = ""

    def new_row(impl: str, kind: str) -> Row:
        return Row(family=case.family, case=case.name, title=case.title,
                   params=case.describe(profile), threads=threads, impl=impl, kind=kind,
                   status="ok", items=items, unit=case.unit, sizes=dict(params))

    def fail(row: Row, exc: BaseException) -> None:
        row.status = "unavailable" if _unavailable_error(exc) else "error"
        row.message = _short(exc)

    def prepare(row: Row, make: Callable[[], Callable[[], Any]], comparable: bool = True) -> None:
        nonlocal expected, expected_from
        rows.append(row)
        try:
            fn = make()
            result, loops = warm_up(fn)
        except Exception as exc:
            fail(row, exc)
            return
        if not comparable:
            row.check = "own quantizer"
        elif expected is None:
            expected, expected_from = result, row.impl
            row.check = "ref"
        else:
            try:
                problem = case.check(data, result, expected)
            except Exception as exc:
                problem = f"check failed to run ({_short(exc)})"
            row.check = "ok" if problem is None else f"MISMATCH vs {expected_from}: {problem}"
        result = None
        row.inner_loops = loops
        timed.append((row, fn, loops))

    with thread_limit(threads):
        for peer in peers:
            prepare(new_row(peer.name, "peer"), lambda: peer.make(data, threads), peer.comparable)
        for backend in backends:
            prepare(new_row(f"embkern[{backend}]", "embkern"), lambda: case.embkern(data, backend))
        expected = None
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for r in range(repeat):
                shift = r % len(timed) if timed else 0
                for row, fn, loops in timed[shift:] + timed[:shift]:
                    if row.status != "ok":
                        continue
                    try:
                        row.samples_s.append(sample(fn, loops))
                    except Exception as exc:
                        fail(row, exc)
        finally:
            if gc_was_enabled:
                gc.enable()
    for row in rows:
        if row.status == "ok" and row.samples_s:
            row.time_s = statistics.median(row.samples_s)
            row.min_s = min(row.samples_s)
            row.throughput = items / row.time_s if row.time_s > 0 else None
    rank(rows)
    return rows


def rank(rows: List[Row]) -> None:
    """Fill the ratio columns of one (case, threads) group."""
    peers = [r for r in rows if r.kind == "peer" and r.status == "ok" and r.time_s]
    best = min(peers, key=lambda r: r.time_s) if peers else None
    if best is not None:
        best.best_peer = True
    cpu = next((r for r in rows if r.impl == "embkern[cpu]" and r.status == "ok" and r.time_s), None)
    for r in rows:
        if r.kind != "embkern" or r.status != "ok" or not r.time_s:
            continue
        if best is not None:
            r.ratio_vs_best_peer = best.time_s / r.time_s
        if r is not cpu and cpu is not None:
            r.ratio, r.ratio_vs = cpu.time_s / r.time_s, cpu.impl
        elif best is not None:
            r.ratio, r.ratio_vs = r.ratio_vs_best_peer, best.impl


def run(cases: Sequence[Case], profile: str, threads: Sequence[int], backends: Sequence[str],
        repeat: int, seed: int = 0, progress: Optional[Progress] = None) -> List[Row]:
    """Run every case at every thread count. Ctrl-C stops early and returns what was measured."""
    total = len(cases) * len(threads)
    progress = progress or Progress(total)
    rows: List[Row] = []
    missing_note_done = set()
    try:
        for case in cases:
            params = case.params(profile)
            peers = []
            for peer in case.peers:
                why = next((w for w in (module_available(m) for m in peer.requires) if w), None)
                if why is None:
                    peers.append(peer)
                elif peer.name not in missing_note_done:
                    missing_note_done.add(peer.name)
                    progress.note(f"      peer {peer.name} not installed ({why}); left out")
            t0 = time.perf_counter()
            rng = np.random.default_rng(seed)
            try:
                data = case.setup(rng, **params)
            except Exception as exc:  # a case that cannot be set up is reported, not fatal
                for n in threads:
                    row = Row(family=case.family, case=case.name, title=case.title,
                              params=case.describe(profile), threads=n, impl="embkern[setup]",
                              kind="embkern", status="error", message=_short(exc))
                    rows.append(row)
                    progress.step(f"{case.key} t={n}: setup failed ({_short(exc)})")
                continue
            setup_s = time.perf_counter() - t0
            for n in threads:
                group = run_case(case, data, params, profile, n, backends, repeat, peers)
                rows.extend(group)
                progress.step(_progress_text(case, n, group, setup_s))
                setup_s = 0.0
            data = None
            gc.collect()
    except KeyboardInterrupt:
        progress.note("interrupted: reporting what was measured so far")
    return rows


def _progress_text(case: Case, threads: int, group: List[Row], setup_s: float) -> str:
    parts = []
    for r in group:
        if r.status != "ok":
            parts.append(f"{r.impl} {r.status}")
            continue
        text = f"{r.impl} {format_time(r.time_s)}"
        if r.mismatch:
            text += " MISMATCH"
        parts.append(text)
    setup = f" [setup {format_duration(setup_s)}]" if setup_s >= 1.0 else ""
    return f"{case.key} t={threads}{setup}: " + ", ".join(parts)


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------
def _fmt_param(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def format_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m{sec:02d}s"


def format_rate(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f} {prefix}{unit}/s"
    return f"{value:.2f} {unit}/s"


def format_ratio(row: Row) -> str:
    if row.ratio is None:
        return ""
    return f"{row.ratio:.2f}x vs {row.ratio_vs}"


def format_check(row: Row) -> str:
    if row.status != "ok":
        return f"{row.status.upper()}: {row.message}" if row.message else row.status.upper()
    return f"!! {row.check} !!" if row.mismatch else row.check


TABLE_COLUMNS = ("case", "params", "thr", "implementation", "time", "throughput", "ratio", "check")


def table_cells(rows: Sequence[Row]) -> List[List[str]]:
    out = []
    for r in rows:
        impl = r.impl + (" *" if r.best_peer else "")
        out.append([f"{r.family}.{r.case}", r.params, str(r.threads), impl, format_time(r.time_s),
                    format_rate(r.throughput, r.unit), format_ratio(r), format_check(r)])
    return out


def text_table(rows: Sequence[Row]) -> str:
    """The plain-text table printed at the end: one row per (case, threads, implementation)."""
    cells = table_cells(rows)
    widths = [len(c) for c in TABLE_COLUMNS]
    for line in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, line)]
    right = {2, 4, 5}
    def fmt(line):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(line, widths))).rstrip()
    out = [fmt(TABLE_COLUMNS), fmt(["-" * w for w in widths])]
    previous = None
    for r, line in zip(rows, cells):
        group = (r.family, r.case, r.threads)
        if previous is not None and group != previous:
            out.append("")
        previous = group
        out.append(fmt(line))
    return "\n".join(out)


def row_dict(row: Row) -> Dict[str, Any]:
    d = asdict(row)
    d["mismatch"] = row.mismatch
    return d
