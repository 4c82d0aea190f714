#!/usr/bin/env python3
"""compare.py: kvnode against Redis and a bare ZeroMQ echo server, in one run.

Starts redis-server (no persistence, loopback), kvnode (in-memory
namespace) and zmq_echo; preloads 1M keys with 100-byte values into Redis
and kvnode; then for each shape (50x1, 50x16, 1x1) and each op (SET/put,
GET/get) runs redis-benchmark, kvbench against kvnode and kvbench against
the echo server, alternating, REPS times, and prints medians.  Also reports
RSS per record of kvnode (and Redis) for the 1M preloaded records.

Usage: tests/bench/compare.py [--reps N] [--seconds S] [--keys N] [--pin]
  --pin  run servers on CPU 0 and load generators on CPU 1 (taskset)
"""
import argparse, json, os, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def process_group():
    """A list to put started servers in, and a function that stops them
    (also run on SIGTERM)."""
    procs = []

    def cleanup(*_):
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
    signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(1)))
    return procs, cleanup


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_file(path, proc, what, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return open(path).read().strip()
        if proc.poll() is not None:
            sys.exit(f"compare: {what} exited with {proc.returncode}")
        time.sleep(0.05)
    sys.exit(f"compare: {what} did not become ready in {timeout} s")


def start_kv_cluster(srv, tmp, procs, nodes, routed):
    """NODES kvnodes (in-memory namespace test, rf=2) and a kvroute over the
    first ROUTED of them, every process started with the prefix srv and put
    in procs; returns the nodes' endpoints and the router's, once the router
    has table version 1 and the nodes have had time to install it."""
    bindir = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bin")
    eps = []
    for i in range(nodes):
        ready = os.path.join(tmp, f"n{i}.ready")
        p = subprocess.Popen(srv + [os.path.join(bindir, "kvnode"), "-l", "tcp://127.0.0.1:*", "--ns",
                                    "test,rf=2,memory=8G", "--ready-file", ready],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"n{i}.log"), "w"))
        procs.append(p)
        eps.append(wait_file(ready, p, f"kvnode {i}"))
    rready = os.path.join(tmp, "r.ready")
    r = subprocess.Popen(srv + [os.path.join(bindir, "kvroute"), "-l", "tcp://127.0.0.1:*", "--ready-file", rready]
                         + sum((["--node", e] for e in eps[:routed]), []),
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "r.log"), "w"))
    procs.append(r)
    route = wait_file(rready, r, "kvroute")
    for _ in range(200):
        out = subprocess.run([os.path.join(bindir, "kvquery"), "-e", route, "info", "cluster"], capture_output=True)
        if out.returncode == 0 and json.loads(out.stdout)["version"] >= 1:
            break
        time.sleep(0.05)
    else:
        sys.exit("cluster: no partition table")
    time.sleep(0.5)  # every node installs it
    return eps, route


def preload(cli, route, keys):
    """KEYS integer keys with 100-byte values, through the router's map."""
    bindir = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bin")
    print(f"# preloading {keys} keys", file=sys.stderr)
    subprocess.run(cli + [os.path.join(bindir, "kvbench"), "-e", route, "--direct", "-w", "insert", "-k", str(keys),
                          "-c", "20", "-p", "16", "-d", "600", "--json"], check=True, stdout=subprocess.DEVNULL)


def bench_args(keys, doc=None, seconds=5):
    """The options every comparison takes; returns them and the taskset
    prefixes for servers (CPU 0) and load generators (CPU 1) with --pin."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=seconds)
    ap.add_argument("--keys", type=int, default=keys)
    ap.add_argument("--pin", action="store_true")
    args = ap.parse_args()
    return args, ["taskset", "-c", "0"] if args.pin else [], ["taskset", "-c", "1"] if args.pin else []


def main():
    args, srv, cli = bench_args(1000000)
    tmp = tempfile.mkdtemp(prefix="kvbench-compare.")
    procs, cleanup = process_group()

    try:
        rport = free_port()
        redis = subprocess.Popen(srv + ["redis-server", "--bind", "127.0.0.1", "--port", str(rport), "--save", "",
                                        "--appendonly", "no", "--logfile", os.path.join(tmp, "redis.log")])
        procs.append(redis)
        for _ in range(200):
            if subprocess.run(["redis-cli", "-p", str(rport), "ping"], capture_output=True).stdout.strip() == b"PONG":
                break
            time.sleep(0.05)
        kv = subprocess.Popen(srv + [os.path.join(BIN, "kvnode"), "-l", "tcp://127.0.0.1:*", "--ns", "test,memory=8G",
                                     "--ready-file", os.path.join(tmp, "kv.ready")],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "kvnode.log"), "w"))
        procs.append(kv)
        kv_ep = wait_file(os.path.join(tmp, "kv.ready"), kv, "kvnode")
        echo = subprocess.Popen(srv + [os.path.join(ROOT, "build", "tests", "zmq_echo"), "tcp://127.0.0.1:*",
                                       os.path.join(tmp, "echo.ready")])
        procs.append(echo)
        echo_ep = wait_file(os.path.join(tmp, "echo.ready"), echo, "zmq_echo")

        # preload
        print(f"# preloading {args.keys} keys, 100-byte values", file=sys.stderr)
        kv_rss0, r_rss0 = rss_kb(kv.pid), rss_kb(redis.pid)
        t = time.time()
        subprocess.run(cli + [os.path.join(BIN, "kvbench"), "-e", kv_ep, "-w", "insert", "-k", str(args.keys),
                              "-s", "100", "-c", "50", "-p", "16", "-d", "600", "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        kv_load = time.time() - t
        gen = subprocess.Popen([sys.executable, "-c", f"""
import sys
v = b'x' * 100
out = sys.stdout.buffer
for i in range({args.keys}):
    k = b'key:%012d' % i
    out.write(b'*3\\r\\n$3\\r\\nSET\\r\\n$%d\\r\\n%s\\r\\n$100\\r\\n%s\\r\\n' % (len(k), k, v))
"""], stdout=subprocess.PIPE)
        subprocess.run(["redis-cli", "-p", str(rport), "--pipe"], stdin=gen.stdout, check=True,
                       stdout=subprocess.DEVNULL)
        gen.wait()
        time.sleep(0.5)
        kv_rss1, r_rss1 = rss_kb(kv.pid), rss_kb(redis.pid)
        info = json.loads(subprocess.run([os.path.join(BIN, "kvquery"), "-e", kv_ep, "info", "test"],
                                         capture_output=True, check=True).stdout)
        dbsize = int(subprocess.run(["redis-cli", "-p", str(rport), "dbsize"], capture_output=True).stdout)

        shapes = [(50, 1), (50, 16), (1, 1)]
        ops = [("GET", "read"), ("SET", "update")]
        results = {}
        for rep in range(args.reps):
            for conns, inflight in shapes:
                for rop, kop in ops:
                    key = (conns, inflight, rop)
                    res = results.setdefault(key, {"redis": [], "kvnode": [], "echo": []})
                    # size redis-benchmark's request count from the last measured rate
                    rate = statistics.median([r[0] for r in res["redis"]]) if res["redis"] else \
                        {1: 15000, 16: 500000}[inflight] * (1 if conns == 1 else 6) // (6 if conns == 1 else 1)
                    n = max(10000, int(rate * args.seconds))
                    out = subprocess.run(cli + ["redis-benchmark", "-p", str(rport), "-t", rop.lower(), "-n", str(n),
                                                "-r", str(args.keys), "-d", "100", "-c", str(conns), "-P",
                                                str(inflight), "--csv"], capture_output=True, text=True, check=True)
                    row = out.stdout.strip().splitlines()[-1].replace('"', "").split(",")
                    res["redis"].append((float(row[1]), float(row[4]) * 1000, float(row[6]) * 1000))
                    for name, ep in (("kvnode", kv_ep), ("echo", echo_ep)):
                        out = subprocess.run(cli + [os.path.join(BIN, "kvbench"), "-e", ep, "-w", kop, "-k",
                                                    str(args.keys), "-s", "100", "-c", str(conns), "-p", str(inflight),
                                                    "-d", str(args.seconds), "--json", "--no-progress"],
                                             capture_output=True, text=True, check=True)
                        j = json.loads(out.stdout.strip().splitlines()[-1])
                        if j["errors"] and name == "kvnode":
                            print(f"# kvnode errors in {key}: {j['errors']}", file=sys.stderr)
                        res[name].append((j["ops_per_sec"], j["p50_us"], j["p99_us"]))
                    print(f"# rep {rep + 1}: {conns}x{inflight} {rop}: redis {res['redis'][-1][0]:.0f} "
                          f"kvnode {res['kvnode'][-1][0]:.0f} echo {res['echo'][-1][0]:.0f}", file=sys.stderr)

        med = lambda xs, i: statistics.median(x[i] for x in xs)
        print(f"kvnode vs Redis {subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.split()[2]}"
              f" and a bare ZeroMQ echo, {args.keys} keys, 100-byte values, medians of {args.reps} runs of "
              f"{args.seconds:g} s; placement: {'servers on CPU 0, clients on CPU 1 (taskset)' if args.pin else 'not pinned'}")
        print()
        print(f"{'shape':<7}{'op':<5}{'redis ops/s':>12}{'kvnode ops/s':>14}{'kv/redis':>10}{'echo ops/s':>12}"
              f"{'kv/echo':>9}   {'redis p50/p99 us':>17}   {'kvnode p50/p99 us':>18}")
        for conns, inflight in shapes:
            for rop, _ in ops:
                r = results[(conns, inflight, rop)]
                rr, kk, ee = med(r["redis"], 0), med(r["kvnode"], 0), med(r["echo"], 0)
                print(f"{f'{conns}x{inflight}':<7}{rop:<5}{rr:>12.0f}{kk:>14.0f}{kk / rr:>10.2f}{ee:>12.0f}"
                      f"{kk / ee:>9.2f}   {med(r['redis'], 1):>8.0f}/{med(r['redis'], 2):<8.0f}"
                      f"   {med(r['kvnode'], 1):>8.0f}/{med(r['kvnode'], 2):<8.0f}")
        print()
        print(f"memory: kvnode RSS grew {(kv_rss1 - kv_rss0) / 1024:.0f} MiB for {info['records']} records = "
              f"{(kv_rss1 - kv_rss0) * 1024 / max(1, info['records']):.0f} bytes/record "
              f"(namespace accounting {info['memory_used'] / max(1, info['records']):.0f} bytes/record); "
              f"Redis RSS grew {(r_rss1 - r_rss0) / 1024:.0f} MiB for {dbsize} keys = "
              f"{(r_rss1 - r_rss0) * 1024 / max(1, dbsize):.0f} bytes/key")
        print(f"kvnode preload: {args.keys} inserts in {kv_load:.1f} s")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
