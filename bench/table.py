#!/usr/bin/env python3
"""The benchmark's markdown table from `handover drill --json` reports.

Usage: table.py ROWS, where ROWS has one `LABEL<TAB>REPORT.json` line per
row. Exit status 1 when any drill failed (its row says FAILED).
Standard library only.
"""
import json
import statistics
import sys


def num(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.2f}"


def spread(values):
    """median / max of the values present."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{num(statistics.median(values))} / {num(max(values))}"


def row(label, report):
    restarts = report["restarts"]
    ok = sum(1 for r in restarts if r["ok"])
    lat = report["latency"]
    gaps = [r["accept_gap_ms"] for r in restarts if r["accept_gap_ms"] is not None]
    idle = report.get("idle") or {}
    cells = [
        label + ("" if report["passed"] else " **FAILED**"),
        f"{ok}/{len(restarts)}",
        f"{report['requests']:,}",
        str(report["failures"]["total"]),
        " / ".join(num(lat[k]) for k in ("p50_ms", "p99_ms", "max_ms")),
        spread(r["answered_after_ms"] for r in restarts),
        spread(r["ready_after_ms"] for r in restarts),
        spread(r["old_gone_after_ms"] for r in restarts),
        f"{num(max(gaps) if gaps else None)} ({num(report['accept_gap']['outside_restarts_ms'])})",
        f"{mib(report.get('peak_rss_kib'))} / {mib(report.get('private_kib'))}",
        f"{num(idle.get('cpu_ms'), 0)} ms / {idle.get('wakeups', '-')}",
    ]
    return "| " + " | ".join(cells) + " |"


def main():
    head = [
        "scenario",
        "restarts ok",
        "requests",
        "failed",
        "latency p50 / p99 / max ms",
        "restart took median / max ms",
        "new generation ready median / max ms",
        "old gone after median / max ms",
        "max accept gap ms (outside restarts)",
        "peak RSS / private MiB",
        "at rest: CPU / wake-ups per 5 s",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    passed = True
    with open(sys.argv[1]) as rows:
        for line in rows:
            label, path = line.rstrip("\n").split("\t")
            try:
                with open(path) as f:
                    report = json.load(f)
            except (OSError, ValueError) as e:
                print(f"| {label} **did not run**: {e} |")
                passed = False
                continue
            passed &= report["passed"]
            print(row(label, report))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
