"""The profiling peers of bench/src/bin/profile.rs: ydata-profiling and whylogs over the
same visits, timed side by side. Prints one JSON document on stdout; progress goes to
stderr.

    python profile_peers.py VISITS.ndjson [--runs 5] [--only ydata|whylogs]

What is timed:

- ``load`` (once, outside every peer timing, reported on its own): read the NDJSON file,
  ``json.loads`` each line, ``pandas.json_normalize`` the records (nested objects become
  dotted columns: 16 for the reference visits; a null ``context`` leaves its columns NaN).
- ``ydata``: ``ProfileReport(df, minimal=True, progress_bar=False)`` and ``to_html()``,
  i.e. the reference demo's per-batch report (it computes lazily, so building the HTML
  is where the work happens), on a copy of the frame made before the clock starts.
- ``whylogs``: ``why.log(df)`` (the profile) and ``.view().to_pandas()`` (its summary
  as a frame), on a copy made before the clock starts.

Each run times the peers in turn (interleaved), after a garbage collection. Wall time
(``perf_counter``) and process CPU time (``process_time``: all threads of this process)
are both reported; the median is over the runs, the first one included.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings

# Neither library may phone home during a measurement (run.sh sets these too).
os.environ.setdefault("YDATA_PROFILING_NO_ANALYTICS", "True")
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
warnings.filterwarnings("ignore")

PEERS = ("ydata", "whylogs")


def log(message):
    print(f"profiling peers: {message}", file=sys.stderr, flush=True)


def load(path):
    """Reads the NDJSON file into a flat frame; returns (frame, facts about the load)."""
    import pandas as pd

    wall0, cpu0 = time.perf_counter(), time.process_time()
    records, skipped = [], 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            if isinstance(value, dict):
                records.append(value)
            else:
                skipped += 1
    parsed_wall = time.perf_counter() - wall0
    df = pd.json_normalize(records)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    facts = {
        "what": "read the NDJSON file, json.loads each line, pandas.json_normalize (nested fields flattened)",
        "seconds": wall,
        "cpu_seconds": cpu,
        "read_and_parse_seconds": parsed_wall,
        "json_normalize_seconds": wall - parsed_wall,
        "rows": int(df.shape[0]),
        "columns": int(df.shape[1]),
        "column_names": [str(c) for c in df.columns],
        "lines_skipped": skipped,
    }
    return df, facts


def ydata(df):
    from ydata_profiling import ProfileReport

    report = ProfileReport(df, minimal=True, progress_bar=False)
    html = report.to_html()
    return {"html_bytes": len(html.encode("utf-8"))}


def whylogs(df):
    import whylogs as why

    results = why.log(df)
    summary = results.view().to_pandas()
    return {"summary_rows": int(summary.shape[0]), "summary_columns": int(summary.shape[1])}


def timed(fn, df):
    frame = df.copy()
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    facts = fn(frame)
    return time.perf_counter() - wall0, time.process_time() - cpu0, facts


def versions():
    import numpy
    import pandas

    out = {"python": platform.python_version(), "pandas": pandas.__version__, "numpy": numpy.__version__}
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        out["ydata-profiling"] = version("ydata-profiling")
        out["whylogs"] = version("whylogs")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ndjson", help="visits, one JSON value per line")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each peer (default 5)")
    parser.add_argument("--only", choices=PEERS, action="append", help="run only this peer (repeatable)")
    args = parser.parse_args()
    peers = args.only or list(PEERS)
    fns = {"ydata": ydata, "whylogs": whylogs}
    what = {
        "ydata": "ProfileReport(df, minimal=True, progress_bar=False) and to_html() (load excluded)",
        "whylogs": "why.log(df) and .view().to_pandas() (load excluded)",
    }

    # The libraries print progress and notices; only the JSON result goes to stdout.
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        # Imports happen before any clock starts.
        import ydata_profiling  # noqa: F401
        import whylogs as _why  # noqa: F401

        df, load_facts = load(args.ndjson)
        log(f"loaded {load_facts['rows']} rows x {load_facts['columns']} columns in {load_facts['seconds']:.2f} s")
        runs = {p: [] for p in peers}
        for run in range(args.runs):
            for peer in peers:
                wall, cpu, facts = timed(fns[peer], df)
                runs[peer].append({"seconds": wall, "cpu_seconds": cpu, **facts})
                log(f"run {run + 1}/{args.runs}: {peer:<8} {wall:7.2f} s  ({cpu:.2f} CPU s)")

    result = {
        "input": os.path.abspath(args.ndjson),
        "versions": versions(),
        "cpus": os.cpu_count(),
        "load": load_facts,
        "peers": {
            p: {
                "what": what[p],
                "runs": runs[p],
                "median_seconds": statistics.median(r["seconds"] for r in runs[p]),
                "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs[p]),
            }
            for p in peers
        },
    }
    json.dump(result, stdout, indent=2)
    stdout.write("\n")


if __name__ == "__main__":
    main()
