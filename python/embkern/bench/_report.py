"""Writing the results: JSON (everything), Markdown (summary + full table), PNG (ratio bars)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import embkern

from ._harness import Row, TABLE_COLUMNS, format_duration, row_dict, table_cells


def environment() -> Dict[str, Any]:
    """What the numbers depend on: machine, versions, embkern's configuration."""
    env: Dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "embkern": embkern.__version__,
        "embkern_config": embkern.show_config(print_out=False),
    }
    for name in ("faiss", "numba", "numkong", "simsimd", "usearch", "threadpoolctl", "matplotlib"):
        module = sys.modules.get(name)
        if module is not None:
            env[name] = getattr(module, "__version__", "installed")
    try:
        from threadpoolctl import threadpool_info

        env["threadpools"] = [{k: v for k, v in p.items() if k in ("user_api", "internal_api", "version", "num_threads")}
                              for p in threadpool_info()]
    except Exception:
        pass
    return env


def summary_rows(rows: Sequence[Row], threads: Sequence[int]) -> List[List[str]]:
    """One line per case: the compiled path's ratio to the best peer, and Numba's to the compiled
    path, at each thread count."""
    cases: Dict[tuple, Dict[int, Dict[str, Row]]] = {}
    for r in rows:
        cases.setdefault((r.family, r.case, r.params), {}).setdefault(r.threads, {})[r.impl] = r
    out = []
    for (family, case, params), by_threads in cases.items():
        line = [f"{family}.{case}", params]
        best_names = set()
        for n in threads:
            group = by_threads.get(n, {})
            cpu, numba = group.get("embkern[cpu]"), group.get("embkern[numba]")
            best = next((r for r in group.values() if r.best_peer), None)
            if best is not None:
                best_names.add(best.impl)
            line.append(_ratio_cell(cpu, "vs_best_peer"))
            line.append(_ratio_cell(numba, "vs_cpu"))
        line.append(", ".join(sorted(best_names)) or "-")
        bad = [r for g in by_threads.values() for r in g.values() if r.mismatch]
        line.append("MISMATCH" if bad else "ok")
        out.append(line)
    return out


def _ratio_cell(row: Optional[Row], which: str) -> str:
    if row is None:
        return "-"
    if row.status != "ok":
        return row.status
    if which == "vs_best_peer":
        value = row.ratio_vs_best_peer
    else:
        value = row.ratio if row.ratio_vs == "embkern[cpu]" else None
    return "-" if value is None else f"{value:.2f}x"


def summary_header(threads: Sequence[int]) -> List[str]:
    head = ["case", "params"]
    for n in threads:
        head += [f"cpu/peer t={n}", f"numba/cpu t={n}"]
    return head + ["best peer", "check"]


def _md_table(head: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")
    out = ["| " + " | ".join(esc(h) for h in head) + " |",
           "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def markdown(rows: Sequence[Row], meta: Dict[str, Any]) -> str:
    threads = meta["threads"]
    cfg = meta["environment"].get("embkern_config", {})
    lines = [
        "# embkern benchmark results",
        "",
        f"- date: {meta['environment']['date']}; profile `{meta['profile']}`; repeat {meta['repeat']} "
        f"(median); threads {', '.join(map(str, threads))}; run time {format_duration(meta['elapsed_s'])}",
        f"- machine: {meta['environment']['platform']}, {meta['environment']['cpu_count']} CPUs; "
        f"embkern {meta['environment']['embkern']} ISA `{cfg.get('isa')}` ({cfg.get('cpu_features', '')})",
        f"- peers: " + (", ".join(f"{k} {meta['environment'][k]}" for k in ("faiss", "numkong", "simsimd", "usearch")
                                  if k in meta["environment"]) or "numpy only") + f"; numpy {meta['environment']['numpy']}",
        f"- command: `{meta['command']}`",
        "",
        "Ratios: `cpu/peer` is best-peer time / embkern compiled time (above 1: embkern is faster); "
        "`numba/cpu` is compiled time / Numba time (0.25 = the Numba fallback is 4x slower).",
        "",
        "## Summary",
        "",
        _md_table(summary_header(threads), summary_rows(rows, threads)),
        "",
        "## All measurements",
        "",
        "`*` marks the best peer. Times are medians.",
        "",
        _md_table(TABLE_COLUMNS, table_cells(rows)),
        "",
    ]
    return "\n".join(lines)


def write_json(path: str, rows: Sequence[Row], meta: Dict[str, Any]) -> None:
    payload = dict(meta)
    payload["rows"] = [row_dict(r) for r in rows]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1, default=_json_default)
        fh.write("\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def write_png(path: str, rows: Sequence[Row], threads: Sequence[int]) -> Optional[str]:
    """Grouped bars of the ratios (log scale, a line at 1). Returns None, or why nothing was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:
        return f"matplotlib unavailable ({exc})"
    cases: List[str] = []
    for r in rows:
        key = f"{r.family}.{r.case}"
        if key not in cases:
            cases.append(key)
    panels = [("embkern[cpu]", "ratio_vs_best_peer", "compiled embkern vs best peer (best peer time / embkern time)"),
              ("embkern[numba]", "ratio", "Numba fallback vs compiled path (compiled time / Numba time)")]
    panels = [p for p in panels if any(r.impl == p[0] and getattr(r, p[1]) is not None for r in rows)]
    if not panels or not cases:
        return "no ratios to draw"
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(7.0, 1.3 * len(cases) + 2), 3.6 * len(panels)),
                             squeeze=False)
    width = 0.8 / max(1, len(threads))
    x = np.arange(len(cases))
    for ax, (impl, attr, title) in zip(axes[:, 0], panels):
        for j, n in enumerate(threads):
            values = []
            for key in cases:
                r = next((r for r in rows if f"{r.family}.{r.case}" == key and r.threads == n and r.impl == impl), None)
                v = getattr(r, attr) if r is not None else None
                if impl == "embkern[numba]" and r is not None and r.ratio_vs != "embkern[cpu]":
                    v = None
                values.append(np.nan if v is None else v)
            bars = ax.bar(x + (j - (len(threads) - 1) / 2) * width, values, width, label=f"{n} thread{'s' * (n != 1)}")
            for b, v in zip(bars, values):
                if np.isfinite(v):
                    ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels([c.split(".", 1)[1] for c in cases], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("ratio (log)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
