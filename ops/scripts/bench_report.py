#!/usr/bin/env python3
"""Tables (and, with matplotlib, plots) from the JSON the bench commands write.

  bench_report.py etcd DIR         the side-by-side of bench-etcd.sh: median of the rounds per
                                   store and concurrency, the ratio Kizuna / etcd, the CPU its
                                   three processes spent per committed write (markdown), and
                                   both stores at half of Kizuna's peak when measured
  bench_report.py half-rate DIR    half of Kizuna's best median rate (writes/s)
  bench_report.py failover DIR     the failover series of bench-failover.sh: writes unavailable
                                   after each leader kill (p50 / p99 / max) and the elections
                                   slow links caused, per RTT and Raft timers (markdown)
  bench_report.py stalls DIR [MS]  the runs of bench-stalls.sh: each second whose slowest write
                                   took MS (25) or more, beside the flushes, compactions and
                                   checkpoints the nodes' RocksDB LOGs show within a second of it
  bench_report.py plots DIR OUT    PNG plots of DIR's runs into OUT: throughput against
                                   concurrency, and the latency percentiles of each run
                                   (needs matplotlib: ops/scripts/bench-plots.sh installs it)

Only the standard library for the tables, so they print on any machine with python3.
"""
import datetime
import glob
import json
import os
import re
import statistics
import sys

RUN = re.compile(r"(?P<store>[a-z]+)-c(?P<clients>\d+)-r(?P<round>\d+)\.json$")
QUANTILES = ["p50", "p90", "p99", "p999", "max"]


def runs(directory):
    """{(store, clients): [report, ...]} of the rounds in DIR."""
    found = {}
    for path in sorted(glob.glob(os.path.join(directory, "*-c*-r*.json"))):
        m = RUN.search(os.path.basename(path))
        if not m:
            continue
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        report["cpu_seconds"] = cpu_seconds(path[: -len(".json")] + ".cpu")
        found.setdefault((m["store"], int(m["clients"])), []).append(report)
    return found


def cpu_seconds(path):
    """The CPU seconds a run's store used (bench-etcd.sh writes "before after"), or None."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        before, after = (float(x) for x in f.read().split())
    return after - before


def cpu_per_write(reports):
    """Median over the runs of the store's CPU µs per committed write, or None if not measured."""
    measured = [r["cpu_seconds"] * 1e6 / r["operations"] for r in reports if r.get("cpu_seconds") is not None and r["operations"]]
    return statistics.median(measured) if measured else None


def median(reports, pick):
    return statistics.median(pick(r) for r in reports)


def store_figures(reports):
    """One store's cell of the side-by-side: medians of its rounds at one concurrency."""
    return {"per_second": median(reports, lambda r: r["per_second"]),
            "p50": median(reports, lambda r: r["latency"]["p50"]),
            "p99": median(reports, lambda r: r["latency"]["p99"]),
            "cpu_us_per_write": cpu_per_write(reports), "errors": sum(r["errors"] for r in reports)}


def etcd_table(directory):
    found = runs(directory)
    concurrencies = sorted({c for (_, c) in found})
    print("| clients | etcd writes/s | Kizuna writes/s | ratio | etcd p50 / p99 (ms) | Kizuna p50 / p99 (ms) | CPU µs per write (etcd / Kizuna) | errors (etcd / Kizuna) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    for c in concurrencies:
        e, k = found.get(("etcd", c), []), found.get(("kizuna", c), [])
        if not e or not k:
            continue
        row = {
            "clients": c,
            "rounds": min(len(e), len(k)),
            "etcd": store_figures(e),
            "kizuna": store_figures(k),
        }
        row["ratio"] = row["kizuna"]["per_second"] / row["etcd"]["per_second"]
        summary.append(row)
        ed, kd = row["etcd"], row["kizuna"]
        print(f"| {c} | {ed['per_second']:,.0f} | {kd['per_second']:,.0f} | {row['ratio']:.2f}× | "
              f"{ed['p50']:.2f} / {ed['p99']:.2f} | {kd['p50']:.2f} / {kd['p99']:.2f} | "
              f"{microseconds(ed['cpu_us_per_write'])} / {microseconds(kd['cpu_us_per_write'])} | {ed['errors']} / {kd['errors']} |")
    with open(os.path.join(directory, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    rounds = max((r["rounds"] for r in summary), default=0)
    print(f"\nmedian of {rounds} alternating rounds per cell; every run's JSON and summary.json are in {directory}")
    half = {}
    for store in ("etcd", "kizuna"):
        path = os.path.join(directory, f"{store}-half.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                half[store] = json.load(f)
    if half:
        rate = next(iter(half.values()))["rate"]
        print(f"\nat half of Kizuna's peak ({rate:,.0f} writes/s, open loop, 256 clients; ms from the scheduled time):")
        for store, r in half.items():
            l = r["latency"]
            print(f"  {store:<7} {r['per_second']:>8,.0f} writes/s  p50 {l['p50']:.2f}  p99 {l['p99']:.2f}  "
                  f"p99.9 {l['p999']:.2f}  max {l['max']:.2f}  errors {r['errors']}")


def microseconds(value):
    return "—" if value is None else f"{value:.0f}"


def half_rate(directory):
    """Half of Kizuna's best median rate over the concurrencies, in writes/s."""
    found = runs(directory)
    medians = [median(reports, lambda r: r["per_second"]) for (store, _), reports in found.items() if store == "kizuna"]
    print(int(max(medians) / 2))


ROCKSDB_TIME = re.compile(r"(\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d\.\d+)")
ROCKSDB_FLUSH = re.compile(r"\[(\w+)\] \[JOB \d+\] Flushing memtable")
ROCKSDB_COMPACTION = re.compile(r'"event": "compaction_started".*?"cf_name": "(\w+)"')


def rocksdb_events(directory):
    """[(unix seconds, node, what)] of the flushes, compactions and checkpoints in DIR's LOGs."""
    events = []
    for path in sorted(glob.glob(os.path.join(directory, "rocksdb-n*.LOG"))):
        node = os.path.basename(path)[len("rocksdb-"):-len(".LOG")]
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                when = ROCKSDB_TIME.match(line)
                if not when:
                    continue
                flush, compaction = ROCKSDB_FLUSH.search(line), ROCKSDB_COMPACTION.search(line)
                if flush:
                    what = f"flush {flush.group(1)}"
                elif compaction:
                    what = f"compaction {compaction.group(1)}"
                elif "Started the snapshot process" in line:
                    what = "checkpoint"
                else:
                    continue
                # RocksDB writes its LOG in the machine's local time, as a naive datetime reads.
                t = datetime.datetime.strptime(when.group(1), "%Y/%m/%d-%H:%M:%S.%f")
                events.append((t.timestamp(), node, what))
    return sorted(events)


def stalls_table(directory, stall_ms):
    events = rocksdb_events(directory)
    for path in sorted(glob.glob(os.path.join(directory, "stalls-*.json"))):
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        l, start = r["latency"], r["started_unix_ms"] / 1000
        print(f"{os.path.basename(path)}: {r['per_second']:,.0f} writes/s  p50 {l['p50']:.2f}  p99 {l['p99']:.2f}  max {l['max']:.2f} ms")
        slow = [(i, s) for i, s in enumerate(r["by_second"]) if s["max_ms"] >= stall_ms]
        beside_checkpoint = beside_flush = 0
        for i, s in slow:
            near = [(t - start - i, node, what) for t, node, what in events if -1 <= t - start - i <= 1]
            beside_checkpoint += any(what == "checkpoint" for _, _, what in near)
            beside_flush += any(what.startswith("flush") for _, _, what in near)
            kinds = sorted({f"{node} {what}" for _, node, what in near})
            print(f"  second {i:>3}: slowest {s['max_ms']:6.1f} ms; within 1 s: {', '.join(kinds) or 'nothing'}")
        print(f"  {len(slow)} seconds of {len(r['by_second'])} at {stall_ms} ms or more, {beside_checkpoint} of them within 1 s of a checkpoint, "
              f"{beside_flush} of a flush (a checkpoint's or a full memtable's)")


def failover_table(directory):
    print("| RTT | raft (heartbeat / election ms) | pre-vote | kills | unavailable p50 | p99 | max | elections under slow links |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for path in sorted(glob.glob(os.path.join(directory, "leader-kill-*.json"))):
        with open(path, encoding="utf-8") as f:
            kills = json.load(f)
        slow_path = path.replace("leader-kill-", "slow-")
        slow = None
        if os.path.exists(slow_path):
            with open(slow_path, encoding="utf-8") as f:
                slow = json.load(f)
        plan, raft = kills["plan"], kills["plan"]["raft"]
        elections = "—" if slow is None else f"{sum(x['elections'] for x in slow['faults'])} in {len(slow['faults'])} faults"
        violations = kills["violations"] + (slow["violations"] if slow else 0)
        rtt = "regions' own" if plan["rtt_ms"] is None else f"{plan['rtt_ms']} ms"
        pre_vote = {True: "on", False: "off", None: "node default"}[raft["pre_vote"]]
        print(f"| {rtt} | {raft['heartbeat_ms']} / {raft['election_min_ms']}–{raft['election_max_ms']} | "
              f"{pre_vote} | {len(kills['faults'])} | {kills['failover_p50_ms']:,} ms | "
              f"{kills['failover_p99_ms']:,} ms | {kills['failover_max_ms']:,} ms | {elections} |"
              + (f" **{violations} violations**" if violations else ""))


def plots(directory, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = runs(directory)
    os.makedirs(out, exist_ok=True)
    stores = sorted({s for (s, _) in found})
    fig, ax = plt.subplots(figsize=(6, 4))
    for store in stores:
        cs = sorted(c for (s, c) in found if s == store)
        ax.plot(cs, [median(found[(store, c)], lambda r: r["per_second"]) for c in cs], marker="o", label=store)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("committed writes/s (median of rounds)")
    ax.set_title("Throughput against concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput.png"), dpi=120)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (store, c), reports in sorted(found.items()):
        ax.plot(QUANTILES, [median(reports, lambda r, q=q: r["latency"][q]) for q in QUANTILES], marker="o",
                label=f"{store}, {c} clients")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, median of rounds)")
    ax.set_title("Latency distribution")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency.png"), dpi=120)
    print(f"plots in {out}: throughput.png, latency.png")


def main(argv):
    if len(argv) == 3 and argv[1] == "etcd":
        etcd_table(argv[2])
    elif len(argv) == 3 and argv[1] == "half-rate":
        half_rate(argv[2])
    elif len(argv) == 3 and argv[1] == "failover":
        failover_table(argv[2])
    elif len(argv) in (3, 4) and argv[1] == "stalls":
        stalls_table(argv[2], float(argv[3]) if len(argv) == 4 else 25.0)
    elif len(argv) == 4 and argv[1] == "plots":
        plots(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
