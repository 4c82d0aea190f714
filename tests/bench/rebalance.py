#!/usr/bin/env python3
"""rebalance.py: the time to rebalance a 3-node rf=2 cluster holding KEYS
records (100-byte values) after a 4th node joins, and the migration rate.

kvroute starts the migrations (kvrepl migrate processes) as soon as the
table with the new member is installed, and proposes the settled table
when they are all done.  Measured from `kvquery cluster add` to the
settled table, REPS times (a fresh cluster each time); medians.  The
migrated records and bytes are kvroute's own count (its log lines
"migration done ... N records, X MB").

  --pin  servers (kvnodes, kvroute and the kvrepl processes it starts) on
         CPU 0, the preload on CPU 1 (taskset)
"""
import json, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import bench_args, preload, process_group, start_kv_cluster  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin")


def info(route):
    out = subprocess.run([os.path.join(BIN, "kvquery"), "-e", route, "info", "cluster"], capture_output=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def one_run(args, srv, cli, tmp, procs):
    eps, route = start_kv_cluster(srv, tmp, procs, 4, 3)
    rlog = os.path.join(tmp, "r.log")
    preload(cli, route, args.keys)
    v = info(route)["version"]
    t0 = time.monotonic()
    subprocess.run([os.path.join(BIN, "kvquery"), "-e", route, "cluster", "add", eps[3]], check=True,
                   stdout=subprocess.DEVNULL)
    while True:
        d = info(route)
        if d and d["version"] > v and d["settled"] and d["migrations"]["active"] == 0:
            break
        if time.monotonic() - t0 > 1800:
            sys.exit("rebalance: not settled after 30 minutes")
        time.sleep(0.02)
    secs = time.monotonic() - t0
    records = mb = 0.0
    for line in open(rlog):
        m = re.search(r"migration done .*: (\d+) records, ([\d.]+) MB", line)
        if m:
            records += int(m.group(1))
            mb += float(m.group(2))
    held = []
    for ep in eps:
        out = subprocess.run([os.path.join(BIN, "kvquery"), "-e", ep, "info", "test"], capture_output=True)
        held.append(json.loads(out.stdout)["records"])
    return secs, records, mb, held


def main():
    args, srv, cli = bench_args(1000000, __doc__)
    rows = []
    for rep in range(args.reps):
        tmp = tempfile.mkdtemp(prefix="kvbench-rebalance.")
        procs, cleanup = process_group()
        try:
            secs, records, mb, held = one_run(args, srv, cli, tmp, procs)
        finally:
            cleanup()
        rows.append((secs, records, mb))
        print(f"# run {rep + 1}: settled {secs:.2f} s after the join; {records:.0f} records, {mb:.1f} MB migrated "
              f"({records / secs:.0f} records/s, {mb / secs:.1f} MB/s); records per node just after: {held}",
              file=sys.stderr)
    secs = statistics.median(r[0] for r in rows)
    records = statistics.median(r[1] for r in rows)
    mb = statistics.median(r[2] for r in rows)
    print(f"keys {args.keys}, {args.reps} runs (medians): rebalance after a 4th node joins {secs:.2f} s; "
          f"{records:.0f} records, {mb:.1f} MB migrated; {records / secs:.0f} records/s, {mb / secs:.1f} MB/s")


if __name__ == "__main__":
    main()
