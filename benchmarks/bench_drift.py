"""What a drift report costs: ours against Evidently's DataDriftPreset on the same data.

Run:  python benchmarks/bench_drift.py [--rows 1000000 --cols 20 --reference-rows 100000]

A synthetic reference table (--reference-rows) and current table (--rows x --cols; two columns in
three numeric, one in three categorical with a dozen levels; every fourth column shifted, shifted
categorical columns with a new level; 1% missing in some numeric columns) are generated from a fixed
seed. Each side runs in its own fresh subprocess, so neither inherits the other's memory:
  ours       - the baseline profile is built from the reference (timed, reported apart: it is made
               once, when the model is registered), then `drift_report(profile, current)` is timed.
  evidently  - `Report([DataDriftPreset()]).run(current, reference)` on the two DataFrames (wrapped
               in `Dataset.from_pandas` with the same numeric/categorical split), timed whole.
Memory: the peak resident set size during the timed call, above the resident size just before it
(the generated data). On Linux, free heap pages are first returned to the system (glibc
malloc_trim, so the call cannot hide in memory freed by data generation), the peak is reset (write
"5" to /proc/self/clear_refs) and read back as VmHWM from /proc/self/status; elsewhere the
whole-process ru_maxrss is reported instead.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = np.array([f"c{i:02d}" for i in range(12)], dtype=object)


def _frames(rows: int, cols: int, reference_rows: int, seed: int = 0):
    """Reference and current frames, and the names of the categorical columns."""
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, CATEGORIES.size + 1)
    p /= p.sum()
    reference, current, categorical = {}, {}, []
    for i in range(cols):
        name = f"f{i:02d}"
        shifted = i % 4 == 0
        if i % 3 == 2:
            categorical.append(name)
            reference[name] = rng.choice(CATEGORIES, reference_rows, p=p)
            levels = np.append(CATEGORIES, "new") if shifted else CATEGORIES
            q = np.append(p[::-1] * 0.95, 0.05) if shifted else p
            current[name] = rng.choice(levels.astype(object), rows, p=q)
            continue
        draw = (rng.normal, rng.lognormal, rng.gamma)[i % 3]
        args = (1.0, 0.5) if draw is not rng.gamma else (2.0, 1.0)
        reference[name] = draw(*args, reference_rows)
        values = draw(*args, rows)
        current[name] = values * 1.1 + 0.2 if shifted else values
        if i % 5 == 1:
            for frame, n in ((reference, reference_rows), (current, rows)):
                frame[name] = np.where(rng.random(n) < 0.01, np.nan, frame[name])
    return pd.DataFrame(reference), pd.DataFrame(current), categorical


def _own_profile(df: pd.DataFrame, bins: int = 10, sample_size: int = 2000) -> dict:
    """A nexml-profile/1 baseline, for when nexml_ext.ml.profile is not there yet."""
    rng = np.random.default_rng(0)
    columns = {}
    for name in df.columns:
        s = df[name]
        if pd.api.types.is_numeric_dtype(s):
            x = s.to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
            k = max(edges.size - 1, 1)
            index = np.clip(np.searchsorted(edges, x, side="left") - 1, 0, k - 1)
            columns[name] = {
                "kind": "numeric",
                "missing_rate": float(s.isna().mean()),
                "edges": edges.tolist(),
                "counts": np.bincount(index, minlength=k).tolist(),
                "mean": float(x.mean()),
                "std": float(x.std()),
                "min": float(x.min()),
                "max": float(x.max()),
                "sample": rng.choice(x, min(sample_size, x.size), replace=False).tolist(),
            }
        else:
            counts = s.dropna().astype(str).value_counts()
            frequencies = {str(k): int(v) for k, v in counts.iloc[:50].items()}
            frequencies["__other__"] = int(counts.iloc[50:].sum())
            columns[name] = {
                "kind": "categorical",
                "missing_rate": float(s.isna().mean()),
                "frequencies": frequencies,
            }
    return {"format": "nexml-profile/1", "rows": len(df), "columns": columns}


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _measured(fn):
    """(result, seconds, peak MiB above the pre-call resident size, how the peak was read)."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before, how = _status_kib("VmRSS"), "VmHWM"
    except OSError:
        before, how = None, "ru_maxrss"
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    if how == "VmHWM" and before is not None:
        peak = (_status_kib("VmHWM") - before) / 1024
    else:  # whole-process peak (Linux reports KiB)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result, seconds, peak, how


def _run_ours(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    from nexml_ext.ml.drift import drift_report

    try:
        from nexml_ext.ml.profile import profile as build_profile

        source = "nexml_ext.ml.profile"
    except ImportError:
        build_profile, source = _own_profile, "benchmark's own builder"
    start = time.perf_counter()
    baseline = build_profile(reference)
    profile_seconds = time.perf_counter() - start
    report, seconds, peak, how = _measured(lambda: drift_report(baseline, current))
    drifted = sorted(n for n, c in report.columns.items() if c.drift_detected)
    alerts = sorted(report.alerts)
    return {
        "seconds": seconds,
        "peak_mib": peak,
        "memory": how,
        "profile_seconds": profile_seconds,
        "profile": source,
        "drifted": drifted,
        "psi_alerts": alerts,
    }


def _run_evidently(reference: pd.DataFrame, current: pd.DataFrame, categorical: list) -> dict:
    try:  # evidently >= 0.7
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError:  # evidently < 0.7
        from evidently.metric_preset import DataDriftPreset
        from evidently.report import Report

        def run():
            report = Report(metrics=[DataDriftPreset()])
            report.run(reference_data=reference, current_data=current)
            return report.as_dict()

        _, seconds, peak, how = _measured(run)
        return {"seconds": seconds, "peak_mib": peak, "memory": how, "drifted": None}

    numeric = [c for c in current.columns if c not in categorical]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)

    def run():
        return Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )

    snapshot, seconds, peak, how = _measured(run)
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            method, value = config.get("method", ""), float(metric["value"])
            # p-value methods drift below the threshold, distances at or above it
            hit = (
                value < config["threshold"] if "p_value" in method else value >= config["threshold"]
            )
            if hit:
                drifted.append(config["column"])
    return {"seconds": seconds, "peak_mib": peak, "memory": how, "drifted": sorted(drifted)}


def _side(args: argparse.Namespace) -> None:
    reference, current, categorical = _frames(args.rows, args.cols, args.reference_rows)
    if args.side == "ours":
        result = _run_ours(reference, current)
    else:
        result = _run_evidently(reference, current, categorical)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--side", choices=["ours", "evidently"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        _side(args)
        return
    results = {}
    for side in ("ours", "evidently"):
        command = [sys.executable, __file__, "--side", side, "--rows", str(args.rows)]
        command += ["--cols", str(args.cols), "--reference-rows", str(args.reference_rows)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{side} failed:\n{done.stderr}")
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, peer = results["ours"], results["evidently"]
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()}; current {args.rows:,} x {args.cols}, "
        f"reference {args.reference_rows:,}; memory by {ours['memory']}"
    )
    print("| | seconds | peak MiB above data | drifted columns (test/distance) |")
    print("|---|---|---|---|")
    for name, r in (("nexml-ext drift_report", ours), ("Evidently DataDriftPreset", peer)):
        drifted = "n/a" if r["drifted"] is None else ", ".join(r["drifted"]) or "none"
        print(f"| {name} | {r['seconds']:.2f} | {r['peak_mib']:,.0f} | {drifted} |")
    print(
        f"speed-up: {peer['seconds'] / ours['seconds']:.0f}x; with the profile build "
        f"({ours['profile_seconds']:.2f} s, {ours['profile']}) counted too: "
        f"{peer['seconds'] / (ours['seconds'] + ours['profile_seconds']):.0f}x; "
        f"PSI alerts (ours): {', '.join(ours['psi_alerts']) or 'none'}"
    )


if __name__ == "__main__":
    main()
