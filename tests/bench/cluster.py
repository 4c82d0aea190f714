#!/usr/bin/env python3
"""cluster.py: 3 kvnodes + kvroute with rf=2 against Redis primary + replica.

Redis's closest thing to synchronous RF=2 is SET followed by WAIT 1 0
(tests/bench/redis_wait.c sends the pair pipelined, per write).  kvstore
is measured with kvbench through kvroute and with --direct (straight to
each partition's master).  Same keys, 100-byte values, the shapes 50x1 and
50x16 of writes, alternating, REPS times; medians.

  --pin  servers (redis primary and replica, kvnodes, kvroute) on CPU 0,
         load generators on CPU 1 (taskset)
"""
import json, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import bench_args, free_port, preload, process_group, start_kv_cluster  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin")


def main():
    args, srv, cli = bench_args(100000, __doc__)
    tmp = tempfile.mkdtemp(prefix="kvbench-cluster.")
    procs, cleanup = process_group()
    try:
        # Redis primary and replica, no persistence, loopback
        pport, rport = free_port(), free_port()
        for port, extra in ((pport, []), (rport, ["--replicaof", "127.0.0.1", str(pport)])):
            procs.append(subprocess.Popen(srv + ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                                                 "--save", "", "--appendonly", "no", "--dir", tmp,
                                                 "--logfile", os.path.join(tmp, f"redis-{port}.log")] + extra))
        for _ in range(400):  # the first sync waits repl-diskless-sync-delay (5 s)
            out = subprocess.run(["redis-cli", "-p", str(pport), "info", "replication"], capture_output=True).stdout
            if b"connected_slaves:1" in out and b"state=online" in out:
                break
            time.sleep(0.05)
        else:
            sys.exit("cluster: the Redis replica did not connect")
        # three kvnodes (in-memory namespace, rf=2) and a router
        eps, route = start_kv_cluster(srv, tmp, procs, 3, 3)
        preload(cli, route, args.keys)
        wait_tool = os.path.join(ROOT, "build", "tests", "redis_wait")
        shapes = [(50, 1), (50, 16)]
        res = {}
        for rep in range(args.reps):
            for c, p in shapes:
                row = res.setdefault((c, p), {"redis": [], "route": [], "direct": []})
                out = subprocess.run(cli + [wait_tool, "127.0.0.1", str(pport), str(c), str(p), str(args.keys), "100",
                                            str(args.seconds)], capture_output=True, check=True)
                j = json.loads(out.stdout)
                row["redis"].append((j["ops_per_sec"], j["p50_us"], j["p99_us"], j["errors"]))
                for name, extra in (("route", []), ("direct", ["--direct"])):
                    out = subprocess.run(cli + [os.path.join(BIN, "kvbench"), "-e", route] + extra +
                                         ["-w", "update", "-k", str(args.keys), "-c", str(c), "-p", str(p), "-d",
                                          str(args.seconds), "--json", "--no-progress"],
                                         capture_output=True, check=True)
                    j = json.loads(out.stdout)
                    row[name].append((j["ops_per_sec"], j["p50_us"], j["p99_us"], sum(j["errors"].values())))
                print(f"# rep {rep + 1}: {c}x{p}: redis {row['redis'][-1][0]:.0f} route {row['route'][-1][0]:.0f} "
                      f"direct {row['direct'][-1][0]:.0f}", file=sys.stderr)
        med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
        print(f"Writes, 100-byte values over {args.keys} keys, rf=2; Redis: SET + WAIT 1 0 on a primary with one "
              f"replica; kvstore: 3 kvnodes + kvroute; medians of {args.reps} runs of {args.seconds:g} s")
        print(f"{'shape':<7}{'redis ops/s':>12}{'route ops/s':>12}{'direct ops/s':>13}{'route/redis':>12}"
              f"{'direct/redis':>13}   {'redis p50/p99':>14} {'route p50/p99':>14} {'direct p50/p99':>15}  errors r/k/d")
        out = {"bench": "cluster", "pinned": args.pin, "keys": args.keys, "reps": args.reps, "shapes": []}
        for (c, p), row in res.items():
            rr, kr, kd = med(row["redis"], 0), med(row["route"], 0), med(row["direct"], 0)
            errs = "/".join(str(int(sum(x[3] for x in row[n]))) for n in ("redis", "route", "direct"))
            print(f"{c}x{p:<5}{rr:>12.0f}{kr:>12.0f}{kd:>13.0f}{kr / rr:>12.2f}{kd / rr:>13.2f}   "
                  f"{med(row['redis'], 1):>6.0f}/{med(row['redis'], 2):<7.0f} {med(row['route'], 1):>6.0f}/"
                  f"{med(row['route'], 2):<7.0f} {med(row['direct'], 1):>6.0f}/{med(row['direct'], 2):<8.0f}  {errs}")
            out["shapes"].append({"shape": f"{c}x{p}", "redis": row["redis"], "route": row["route"],
                                  "direct": row["direct"]})
        print(json.dumps(out))
    finally:
        cleanup()


if __name__ == "__main__":
    main()
