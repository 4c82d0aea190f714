#!/usr/bin/env python3
"""ship.py: the lag of kvrepl ship between two clusters under a write load.

Two clusters of 3 kvnodes + kvroute (in-memory namespace, rf=2); KEYS
records preloaded into the source and shipped to the destination by the
first pass of `kvrepl ship` (default --interval and --overlap), whose
rate is reported.  Then, for SECONDS, kvbench updates the source (20
connections, 1 request in flight each) while, every 100 ms, a marker
record is written to the source through its router, and the destination
is polled (batch gets through its router, back to back) until each
marker is there: its lag is the time from the marker's acknowledgement on
the source to its first sight on the destination.  Reports the median,
p99 and largest lag, the source's write rate, and ship's rate (changes
read from the source and merges applied on the destination, per second,
from its pass lines), REPS times (fresh clusters each time); medians.
Finally the clusters are compared (kvrepl verify).

  --pin  servers (kvnodes, kvroutes) on CPU 0; kvbench, kvrepl ship and
         the marker loop on CPU 1 (taskset)
"""
import json, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import bench_args, preload, process_group, start_kv_cluster  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin")
PASS = re.compile(r"ship: pass \d+: (\d+) records, (\d+) tombstones \((\d+) applied, (\d+) not applied\).* in "
                  r"([\d.]+) s; cursor (\d+)")


def kvquery(*args):
    return subprocess.run([os.path.join(BIN, "kvquery")] + list(args), capture_output=True)


def passes(log):
    """The pass lines of ship's log so far: (records, tombstones, applied, not applied, seconds, cursor)."""
    with open(log) as f:
        return [tuple(float(x) for x in m.groups()) for m in map(PASS.search, f) if m]


def wait_passes(log, n, proc, timeout):
    end = time.monotonic() + timeout
    while len(passes(log)) < n:
        if proc.poll() is not None:
            sys.exit(f"ship: kvrepl ship exited with {proc.returncode}; see {log}")
        if time.monotonic() > end:
            sys.exit(f"ship: fewer than {n} passes after {timeout} s; see {log}")
        time.sleep(0.05)


def markers(src, dst, seconds):
    """Write a marker every 100 ms for SECONDS on SRC, poll DST; the lags (s)."""
    written = {}  # key -> wall time of the acknowledgement
    lags = []
    t_end = time.time() + seconds
    next_put = time.time()
    i = 0
    while time.time() < t_end or (written and time.time() < t_end + 30):
        now = time.time()
        if now >= next_put and now < t_end:
            key = f"m{i}"
            out = kvquery("-e", src, "put", "test", "marker", key, f"t={now}")
            if out.returncode != 0:
                sys.exit(f"ship: marker put failed: {out.stderr.decode()}")
            written[key] = time.time()
            i += 1
            next_put += 0.1
        if written:
            out = kvquery("-e", dst, "--format", "jsonl", "batch", "test", "marker", *written)
            seen = time.time()
            for line in out.stdout.decode().splitlines():
                k = json.loads(line)["key"]
                if k in written:
                    lags.append(seen - written.pop(k))
    if written:
        sys.exit(f"ship: {len(written)} markers never reached the destination")
    return lags


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def one_run(args, srv, cli, tmp, procs):
    dirs = [os.path.join(tmp, d) for d in ("src", "dst")]
    for d in dirs:
        os.mkdir(d)
    _, src = start_kv_cluster(srv, dirs[0], procs, 3, 3)
    _, dst = start_kv_cluster(srv, dirs[1], procs, 3, 3)
    preload(cli, src, args.keys)
    log = os.path.join(tmp, "ship.log")
    ship = subprocess.Popen(cli + [os.path.join(BIN, "kvrepl"), "ship", "--from", src, "--to", dst, "--cursor",
                                   os.path.join(tmp, "ship.cursor")],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    procs.append(ship)
    wait_passes(log, 1, ship, 600)
    first = passes(log)[0]
    copy_rate = first[0] / first[4]
    print(f"# first pass: {first[0]:.0f} records in {first[4]:.2f} s ({copy_rate:.0f} records/s)", file=sys.stderr)
    n0 = len(passes(log))
    load = subprocess.Popen(cli + [os.path.join(BIN, "kvbench"), "-e", src, "-w", "update", "-k", str(args.keys),
                                   "-c", "20", "-p", "1", "-d", str(args.seconds), "--json", "--no-progress"],
                            stdout=subprocess.PIPE)
    procs.append(load)
    t0 = time.monotonic()
    lags = markers(src, dst, args.seconds)
    out, _ = load.communicate()
    secs = time.monotonic() - t0
    writes = json.loads(out)["ops_per_sec"]
    during = passes(log)[n0:]
    read = sum(p[0] + p[1] for p in during) / secs
    applied = sum(p[2] for p in during) / secs
    pass_secs = statistics.median(p[4] for p in during) if during else 0.0
    drift = (passes(log)[-1][5] - time.time() * 1000) / 1000
    ship.terminate()
    ship.wait(10)
    ok = subprocess.run([os.path.join(BIN, "kvrepl"), "ship", "--from", src, "--to", dst, "--cursor",
                         os.path.join(tmp, "ship.cursor"), "--once"], capture_output=True).returncode == 0
    same = subprocess.run([os.path.join(BIN, "kvrepl"), "verify", src, dst], capture_output=True)
    return {"lag_p50": statistics.median(lags), "lag_p99": pct(lags, 0.99), "lag_max": max(lags),
            "markers": len(lags), "writes": writes, "read": read, "applied": applied, "passes": len(during),
            "pass_secs": pass_secs, "copy_rate": copy_rate, "drift": drift,
            "verify": "equal" if ok and same.returncode == 0 else "DIFFER"}


def main():
    args, srv, cli = bench_args(100000, __doc__, seconds=20)
    rows = []
    for rep in range(args.reps):
        tmp = tempfile.mkdtemp(prefix="kvbench-ship.")
        procs, cleanup = process_group()
        try:
            r = one_run(args, srv, cli, tmp, procs)
        finally:
            cleanup()
        rows.append(r)
        print(f"# run {rep + 1}: lag p50 {r['lag_p50'] * 1000:.0f} ms, p99 {r['lag_p99'] * 1000:.0f} ms, max "
              f"{r['lag_max'] * 1000:.0f} ms ({r['markers']} markers); source writes {r['writes']:.0f}/s; ship "
              f"{r['read']:.0f} changes read/s, {r['applied']:.0f} applied/s, {r['passes']} passes (median "
              f"{r['pass_secs'] * 1000:.0f} ms); source clock ahead of the wall clock by {r['drift']:.1f} s; "
              f"clusters {r['verify']} after a last pass", file=sys.stderr)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "verify"}
    print(f"keys {args.keys}, update load 20x1 for {args.seconds:g} s, {args.reps} runs (medians): ship lag p50 "
          f"{med['lag_p50'] * 1000:.0f} ms, p99 {med['lag_p99'] * 1000:.0f} ms, max {med['lag_max'] * 1000:.0f} ms; "
          f"source writes {med['writes']:.0f}/s; ship {med['read']:.0f} changes read/s, {med['applied']:.0f} "
          f"applied/s, pass {med['pass_secs'] * 1000:.0f} ms; first pass (full copy) {med['copy_rate']:.0f} "
          f"records/s; source clock ahead of the wall clock by {med['drift']:.0f} s at the end; clusters after a "
          f"last pass: {', '.join(r['verify'] for r in rows)}")
    print(json.dumps({"bench": "ship", "pinned": args.pin, "keys": args.keys, "seconds": args.seconds,
                      "reps": args.reps, "runs": rows}))


if __name__ == "__main__":
    main()
