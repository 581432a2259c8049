#!/usr/bin/env python3
"""Check that the PromQL of the Grafana dashboards and of the Prometheus rules names
only series that tidewatch and the Kafka broker's JMX exporter really serve.

    python3 deploy/check-dashboard-metrics.py SCRAPE_FILE [SCRAPE_FILE ...] [--dashboard JSON ...] [--rules YML ...]

Each SCRAPE_FILE is the text of a scrape: of tidewatch's /metrics, for example
    curl -s 127.0.0.1:19464/metrics > /tmp/scrape.txt
taken while `tidewatch run --metrics-addr 127.0.0.1:19464 ...` runs and after its first
window has closed (the lag and status gauges appear then), and of the broker's JMX
exporter (scripts/kafka.sh runs it on 127.0.0.1:5556), for the "Kafka broker" dashboard:
    curl -s 127.0.0.1:5556/metrics > /tmp/kafka-scrape.txt
The test tests/tests/dashboards_real.rs takes both scrapes and runs this check.

Every metric name found in an expression (and in a `label_values(...)` variable query)
must be a sample name of one of the scrapes, or one of the series Prometheus adds itself
for each target (`up`, `scrape_*`). Every label name used in a matcher or in
by/without/on/ignoring/group_left/group_right must be a label of a scrape, or a target
label Prometheus attaches (`job`, `instance`).
Exits 1 on any unknown name, or when no expression or no tidewatch series was found.

    python3 deploy/check-dashboard-metrics.py --as-rules OUT.yml [--dashboard JSON ...]

writes the dashboards' expressions as recording rules (Grafana's interval variables as
5m, other variables as `.*`) so that `promtool check rules OUT.yml` checks their PromQL
syntax; deploy/prometheus/check.sh does.

Standard library only; PyYAML is used for the rules when it is installed, otherwise a
small reader of the `expr:` entries (plain, quoted or block scalars) is.
"""
import argparse
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DASHBOARDS = sorted(glob.glob(os.path.join(HERE, "grafana", "dashboards", "*.json")))
DEFAULT_RULES = [os.path.join(HERE, "prometheus", name) for name in ("tidewatch-rules.yml", "kafka-rules.yml")]

# Series and labels Prometheus itself adds for every scraped target.
TARGET_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                 "scrape_samples_post_metric_relabeling", "scrape_series_added"}
TARGET_LABELS = {"job", "instance"}

KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring",
            "group_left", "group_right", "offset", "inf", "nan"}
IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"


def read_scrape(path):
    """Sample names and label names of a Prometheus / OpenMetrics text exposition."""
    names, labels = set(), set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.match(rf"({IDENT})(\{{.*\}})?\s", line)
            if not m:
                continue
            names.add(m.group(1))
            if m.group(2):
                labels.update(re.findall(rf"({LABEL})\s*=\s*\"", m.group(2)))
    return names, labels


def promql_names(expr):
    """(metric names, label names) that a PromQL expression refers to."""
    metrics, labels = set(), set()
    metrics.update(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    # Grafana variables ($__rate_interval, ${var}) and string literals go first.
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', s)
    # Label matchers: keep the label names, drop the block.
    for block in re.findall(r"\{[^}]*\}", s):
        labels.update(re.findall(rf"({LABEL})\s*(?:=~|!~|!=|=)", block))
    s = re.sub(r"\{[^}]*\}", " ", s)
    # Ranges and subqueries, offset and @ modifiers.
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", s)
    s = re.sub(r"@\s*(?:start\(\)|end\(\)|[0-9.]+)", " ", s)
    # Grouping clauses: keep the label names, drop the clause.
    for _, inner in re.findall(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", s):
        labels.update(x.strip() for x in inner.split(",") if x.strip())
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    for m in re.finditer(rf"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|({IDENT})", s):
        name = m.group(1)
        if not name or name.lower() in KEYWORDS:
            continue
        if re.match(r"\s*\(", s[m.end():]):  # a function or an aggregation
            continue
        metrics.add(name)
    return metrics, labels


def dashboard_exprs(path):
    """The PromQL expressions of a Grafana dashboard: every "expr" string, anywhere, and
    the queries of its `label_values(selector, label)` variables (as `sum by (label) (selector)`)."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    found = []
    for var in (doc.get("templating") or {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.match(r"\s*label_values\((.*),\s*(" + LABEL + r")\s*\)\s*$", query or "")
        if m:
            found.append((f"variable {var.get('name')}", f"sum by ({m.group(2)}) ({m.group(1)})"))

    def walk(node, where):
        if isinstance(node, dict):
            title = node.get("title", where) if isinstance(node.get("title"), str) else where
            if isinstance(node.get("expr"), str) and node["expr"].strip():
                found.append((title, node["expr"]))
            for v in node.values():
                walk(v, title)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    walk(doc, os.path.basename(path))
    return found


def rules_exprs(path):
    """(rule name, expr) of a Prometheus rules file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        import yaml  # noqa: PLC0415
    except ImportError:
        return _rules_exprs_plain(text)
    doc = yaml.safe_load(text) or {}
    out = []
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            out.append((rule.get("alert") or rule.get("record") or "?", str(rule["expr"])))
    return out


def _rules_exprs_plain(text):
    out, name = [], "?"
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*-?\s*(alert|record):\s*(\S+)", line)
        if m:
            name = m.group(2)
        m = re.match(r"(\s*)-?\s*expr:\s*(.*)$", line)
        if m:
            value = m.group(2).strip()
            if value[:1] in ("|", ">"):
                indent = None
                body = []
                i += 1
                while i < len(lines):
                    nxt = lines[i]
                    if nxt.strip():
                        ind = len(nxt) - len(nxt.lstrip())
                        if indent is None:
                            indent = ind
                        if ind < indent:
                            break
                    body.append(nxt.strip())
                    i += 1
                out.append((name, " ".join(body)))
                continue
            if value[:1] in ("'", '"'):
                value = value[1:-1]
            out.append((name, value))
        i += 1
    return out


def as_rules(dashboards, out):
    """Writes every expression of `dashboards` as a recording rule of one group."""
    lines = ["# Generated by deploy/check-dashboard-metrics.py --as-rules: the dashboards' PromQL.",
             "groups:", "  - name: dashboards", "    rules:"]
    count = 0
    for path in dashboards:
        stem = re.sub(r"[^a-zA-Z0-9_]", "_", os.path.splitext(os.path.basename(path))[0])
        for where, expr in dashboard_exprs(path):
            e = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "5m", expr)
            e = re.sub(r"\$\{[^}]*\}|\$\w+", ".*", e)
            count += 1
            lines.append(f"      - record: dashboard:{stem}:{count}  # {json.dumps(where)}")
            lines.append(f"        expr: {json.dumps(e)}")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{out}: {count} dashboard expressions as recording rules")
    return 0 if count else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scrape", nargs="*", help="scrapes (text): tidewatch's /metrics, the broker's JMX exporter")
    ap.add_argument("--as-rules", metavar="OUT", help="write the dashboards' expressions as recording rules to OUT and stop")
    ap.add_argument("--dashboard", action="append", help="Grafana dashboard JSON (default: deploy/grafana/dashboards/*.json)")
    ap.add_argument("--rules", action="append", help="Prometheus rules file (default: deploy/prometheus/tidewatch-rules.yml and kafka-rules.yml)")
    args = ap.parse_args()
    if args.as_rules:
        return as_rules(args.dashboard or DEFAULT_DASHBOARDS, args.as_rules)
    if not args.scrape:
        ap.error("give at least one scrape file (or --as-rules OUT)")

    scraped, scraped_labels = set(), set()
    for path in args.scrape:
        names, labels = read_scrape(path)
        if not names:
            print(f"FAIL: no series in {path}")
            return 1
        scraped |= names
        scraped_labels |= labels
    scrapes = " ".join(args.scrape)
    if not any(n.startswith("tidewatch_") for n in scraped):
        print(f"FAIL: no tidewatch_ series in {scrapes}")
        return 1
    known = scraped | TARGET_SERIES
    known_labels = scraped_labels | TARGET_LABELS

    sources = [(p, dashboard_exprs(p)) for p in (args.dashboard or DEFAULT_DASHBOARDS)]
    sources += [(p, rules_exprs(p)) for p in (args.rules or DEFAULT_RULES)]

    failures, total, used = 0, 0, set()
    for path, exprs in sources:
        rel = os.path.relpath(path)
        if not exprs:
            print(f"FAIL: {rel}: no PromQL expression found")
            failures += 1
            continue
        for where, expr in exprs:
            total += 1
            metrics, labels = promql_names(expr)
            used |= metrics
            if not metrics:
                print(f"FAIL: {rel}: {where}: no metric name found in {expr!r}")
                failures += 1
            for name in sorted(metrics - known):
                print(f"FAIL: {rel}: {where}: unknown series {name} in {' '.join(expr.split())}")
                failures += 1
            for label in sorted(labels - known_labels):
                print(f"FAIL: {rel}: {where}: unknown label {label} in {' '.join(expr.split())}")
                failures += 1
        print(f"{rel}: {len(exprs)} expressions")

    print(f"series used ({len(used)}): {', '.join(sorted(used))}")
    extra = sorted(used & TARGET_SERIES - scraped)
    if extra:
        print(f"  of which added by Prometheus per target, not served by tidewatch: {', '.join(extra)}")
    unused = sorted(n for n in scraped if n.startswith(("tidewatch_", "kafka_")) and n not in used)
    if unused:
        print(f"served but used nowhere: {', '.join(unused)}")
    if failures:
        if any(n.startswith("kafka_") for n in used) and not any(n.startswith("kafka_") for n in scraped):
            print("hint: the Kafka broker dashboard needs a scrape of the broker's JMX exporter too")
        print(f"FAIL: {failures} problem(s) in {total} expressions")
        return 1
    print(f"OK: {total} expressions name only series and labels of {scrapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
