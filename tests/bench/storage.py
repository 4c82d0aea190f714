#!/usr/bin/env python3
"""storage.py: kvnode's file storage engine, measured in one run.

1. Durable writes: redis-server with appendonly yes, appendfsync always
   against kvnode -d DIR --ns test,commit-to-device=true; 100-byte values,
   shapes 50x1 and 50x16 (connections x requests in flight), redis-benchmark
   -t set against kvbench -w update on the same key space, alternating,
   REPS times each; medians, kvnode/Redis ratio, p50/p99, and kvnode's
   writes per fdatasync (group commit).
2. Index bytes per record: for each N of --records, a fresh kvnode with a
   file namespace (commit-to-device=false); N records with 16-byte values
   are inserted; RSS growth and memory_used per record, disk_used.
3. Start-up time: the node of 2. is stopped with SIGTERM and started again
   on the same directory, timed from exec to the ready line, first with the
   file in the page cache (warm), then with the file's pages dropped
   (posix_fadvise DONTNEED; cold); the "loaded N records" line is shown.
4. Defragmentation write amplification: a namespace with small write
   blocks and a small disk limit, preloaded to a fraction of it, then
   uniform updates; (write_bytes + defrag_bytes) / write_bytes from
   kvquery info, for a warm-up half and a steady half.

Prints a table per part, then one JSON line with everything.

Usage: tests/bench/storage.py [--reps N] [--seconds S] [--keys N]
           [--records N[,N...]] [--defrag-seconds S] [--pin] [--quick]
           [--tmpdir DIR] [--parts durable,index,defrag]
  --pin    run the servers on CPU 0 and the load generators on CPU 1 (taskset)
  --quick  a fast smoke run: 1 rep, 2-second shapes, 100000 records,
           a small defragmentation run
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

from compare import free_port  # the sibling script (tests/bench/compare.py)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "bin")
KVNODE, KVBENCH, KVQUERY = (os.path.join(BIN, p) for p in ("kvnode", "kvbench", "kvquery"))
SHAPES = [(50, 1), (50, 16)]
MiB = 1024 * 1024
GiB = 1024 * MiB


class BenchError(Exception):
    pass


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def size_arg(s):
    """1000000, 1M (10^6), 1e6 -> int; a record count, so M means million."""
    s = s.strip().lower()
    mult = {"k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9}.get(s[-1:], 1)
    if mult != 1:
        s = s[:-1]
    return int(float(s) * mult)


def bytes_arg(s):
    """64K, 1M, 256M, 4G (powers of 1024, as kvnode takes them) -> int."""
    m = re.fullmatch(r"(\d+)([kmgt]?)", s.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"'{s}' is not a size like 1M or 256M")
    return int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " ")


def fmt_size(n):
    for unit, div in (("T", 1024 ** 4), ("G", GiB), ("M", MiB), ("K", 1024)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return proc_status(pid, "VmRSS")


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def fs_of(path):
    """(device, mount point, fs type) of the file system holding path."""
    path = os.path.realpath(path)
    best = ("?", "/", "?")
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
                best = (dev, mnt, typ)
    return best


def med(xs, i):
    return statistics.median(x[i] for x in xs)


class Runner:
    """Starts every process, remembers it, and stops it by PID."""

    def __init__(self, tmp, srv, cli):
        self.tmp, self.srv, self.cli = tmp, srv, cli
        self.procs = []

    def stop(self, p, timeout=60):
        """SIGTERM, wait for that PID to exit (SIGKILL after timeout); returns (exit status, seconds)."""
        t = time.monotonic()
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} did not exit {timeout} s after SIGTERM; killing it")
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode, time.monotonic() - t

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p, timeout=30)

    def run(self, cmd, timeout, what):
        """Run a load generator or client to completion within timeout; returns stdout."""
        p = subprocess.Popen(self.cli + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(p, 5)
            raise BenchError(f"{what} did not finish in {timeout:.0f} s")
        except BaseException:  # interrupted: stop it before going on
            self.stop(p, 5)
            raise
        self.procs.remove(p)
        if p.returncode != 0:
            raise BenchError(f"{what} exited {p.returncode}: {err.strip()[-500:]}")
        return out

    # -- kvbench / kvquery

    def kvbench(self, ep, workload, keys, size, conns, inflight, seconds, timeout=None):
        cmd = [KVBENCH, "-e", ep, "-w", workload, "-k", str(keys), "-s", str(size), "-c", str(conns),
               "-p", str(inflight), "-d", f"{seconds:g}", "--json", "--no-progress"]
        out = self.run(cmd, timeout or seconds + 60, f"kvbench -w {workload} -k {keys} -c {conns} -p {inflight}")
        return json.loads(out.strip().splitlines()[-1])

    def info(self, ep):
        return json.loads(self.run([KVQUERY, "-e", ep, "info", "test"], 30, "kvquery info test"))

    # -- kvnode

    def start_kvnode(self, tag, datadir, spec, timeout=60):
        """Start kvnode on a free port; wait for the ready line and file. Returns a Node."""
        return Node(self, tag, datadir, spec, timeout)

    # -- redis

    def start_redis(self, rdir):
        os.makedirs(rdir, exist_ok=True)
        port = free_port()
        p = subprocess.Popen(self.srv + ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                         "--appendonly", "yes", "--appendfsync", "always", "--dir", rdir,
                                         "--logfile", os.path.join(rdir, "redis.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if p.poll() is not None:
                raise BenchError(f"redis-server exited {p.returncode}; see {rdir}/redis.log")
            r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, timeout=10)
            if r.stdout.strip() == b"PONG":
                return p, port
            time.sleep(0.05)
        raise BenchError("redis-server did not answer PING in 20 s")


class Node:
    """One kvnode process: its stdout and stderr are read by threads that stamp each line."""

    def __init__(self, runner, tag, datadir, spec, timeout):
        self.runner, self.tag = runner, tag
        self.ready = os.path.join(runner.tmp, f"{tag}.ready")
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        self.lines = []  # (seconds since exec, stream, line)
        self.lock = threading.Lock()
        self.logf = open(os.path.join(runner.tmp, f"{tag}.log"), "w")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(runner.srv + [KVNODE, "-l", "tcp://127.0.0.1:*", "-d", datadir, "--ns", spec,
                                                "--ready-file", self.ready],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runner.procs.append(self.p)
        self.readers = [threading.Thread(target=self._read, args=(s, n), daemon=True)
                        for s, n in ((self.p.stdout, "out"), (self.p.stderr, "err"))]
        for t in self.readers:
            t.start()
        self.pid = self.p.pid
        # ready: the ready line on stdout (stamped as read) and the ready file (polled every 2 ms)
        self.t_line = self.t_file = None
        end = self.t0 + timeout
        while time.monotonic() < end and (self.t_line is None or self.t_file is None):
            if self.t_file is None and os.path.exists(self.ready) and os.path.getsize(self.ready) > 0:
                self.t_file = time.monotonic() - self.t0
            if self.t_line is None:
                with self.lock:
                    hit = [t for t, s, l in self.lines if s == "out" and " ready on " in l]
                self.t_line = hit[0] if hit else None
            if self.p.poll() is not None:
                time.sleep(0.1)  # let the readers catch the last words
                raise BenchError(f"kvnode ({tag}) exited {self.p.returncode} at start-up: {self.stderr_text()[-800:]}")
            time.sleep(0.002)
        if self.t_file is None:
            raise BenchError(f"kvnode ({tag}) did not write its ready file in {timeout:.0f} s")
        if self.t_line is None:
            raise BenchError(f"kvnode ({tag}) wrote its ready file but printed no ready line in {timeout:.0f} s")
        self.ep = open(self.ready).read().strip()

    def _read(self, stream, name):
        for line in stream:
            t = time.monotonic() - self.t0
            with self.lock:
                self.lines.append((t, name, line.rstrip("\n")))
                self.logf.write(f"{t:9.3f} {name} {line}")
                self.logf.flush()

    def stderr_text(self):
        with self.lock:
            return "\n".join(l for _, s, l in self.lines if s == "err")

    def load_line(self):
        """(seconds since exec, line, parsed dict) of the 'loaded N records' line, or (None, None, {})."""
        with self.lock:
            for t, s, l in self.lines:
                m = re.search(r"loaded (\d+) records(?:, (\d+) tombstones)? from (\d+) blocks in ([\d.]+) s", l)
                if s == "err" and m:
                    return t, l, {"records": int(m.group(1)), "tombstones": int(m.group(2) or 0),
                                  "blocks": int(m.group(3)), "seconds": float(m.group(4))}
        return None, None, {}

    def rss_kb(self):
        return rss_kb(self.pid)

    def stop(self, timeout=300):
        status, secs = self.runner.stop(self.p, timeout)
        for t in self.readers:
            t.join(5)
        self.logf.close()
        if status != 0:
            raise BenchError(f"kvnode ({self.tag}) exited {status} after SIGTERM: {self.stderr_text()[-800:]}")
        if os.path.exists(self.ready):
            raise BenchError(f"kvnode ({self.tag}) exited 0 but left its ready file")
        return secs


# ---------------------------------------------------------------- part 1

def redis_bench(r, port, conns, inflight, keys, n, timeout):
    out = r.run(["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(n), "-r", str(keys), "-d", "100",
                 "-c", str(conns), "-P", str(inflight), "--csv"], timeout, f"redis-benchmark {conns}x{inflight}")
    row = out.strip().splitlines()[-1].replace('"', "").split(",")
    return float(row[1]), round(float(row[4]) * 1000, 1), round(float(row[6]) * 1000, 1)


def redis_settle(port, limit=30):
    """Wait (bounded) until Redis has no AOF rewrite running or scheduled, so it does not run under kvnode."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        out = subprocess.run(["redis-cli", "-p", str(port), "info", "persistence"], capture_output=True,
                             text=True, timeout=10).stdout
        if "aof_rewrite_in_progress:0" in out and "aof_rewrite_scheduled:0" in out:
            return
        time.sleep(0.1)
    log(f"Redis AOF rewrite still running after {limit} s; going on")


def kv_settle(r, ep, limit=5):
    """Wait (bounded) until kvnode has no block waiting for defragmentation."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if r.info(ep).get("defrag_queue", 0) == 0:
            return
        time.sleep(0.1)
    log(f"kvnode defrag queue not empty after {limit} s; going on")


def part_durable(r, args, tmp):
    rdir, kdir = os.path.join(tmp, "redis"), os.path.join(tmp, "durable")
    redis, port = r.start_redis(rdir)
    node = r.start_kvnode("durable", kdir, "test,commit-to-device=true")
    try:
        results = {}
        rate = {}
        for conns, inflight in SHAPES:
            # warm-up and calibration: redis-benchmark takes a request count, not a time
            n = max(2000, conns * inflight * 50)
            t = time.monotonic()
            redis_bench(r, port, conns, inflight, args.keys, n, 120)
            rate[(conns, inflight)] = n / max(1e-3, time.monotonic() - t)
            r.kvbench(node.ep, "update", args.keys, 100, conns, inflight, 1)
            redis_settle(port)
            kv_settle(r, node.ep)
        for rep in range(args.reps):
            for conns, inflight in SHAPES:
                key = (conns, inflight)
                res = results.setdefault(key, {"redis": [], "kvnode": [], "kv_flush": []})
                order = ("redis", "kvnode") if rep % 2 == 0 else ("kvnode", "redis")
                for who in order:
                    if who == "redis":
                        est = med(res["redis"], 0) if res["redis"] else rate[key]
                        n = max(2000, int(est * args.seconds))
                        res["redis"].append(redis_bench(r, port, conns, inflight, args.keys, n,
                                                        max(60, args.seconds * 10)))
                        redis_settle(port)
                    else:
                        i0 = r.info(node.ep)
                        j = r.kvbench(node.ep, "update", args.keys, 100, conns, inflight, args.seconds)
                        i1 = r.info(node.ep)
                        if j["errors"]:
                            log(f"kvnode errors in {conns}x{inflight}: {j['errors']}")
                        res["kvnode"].append((j["ops_per_sec"], j["p50_us"], j["p99_us"]))
                        fl = i1.get("flushes", 0) - i0.get("flushes", 0)
                        res["kv_flush"].append((j["ops"] / fl if fl > 0 else 0.0, i1.get("flush_avg_us", 0),
                                                sum(j["errors"].values())))
                        kv_settle(r, node.ep)
                log(f"rep {rep + 1}: durable {conns}x{inflight} SET/update: redis {res['redis'][-1][0]:.0f} "
                    f"kvnode {res['kvnode'][-1][0]:.0f} ops/s")
        info = r.info(node.ep)
        aof = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(rdir) for f in fs)
    finally:
        node.stop()
        r.stop(redis)

    print(f"1. Durable writes: Redis appendonly yes, appendfsync always against kvnode commit-to-device=true;")
    print(f"   SET / update of 100-byte values over {args.keys} keys, median of {args.reps} run(s) of "
          f"{args.seconds:g} s each, Redis and kvnode alternating")
    print()
    print(f"{'shape':<7}{'redis ops/s':>12}{'kvnode ops/s':>14}{'kv/redis':>10}   {'redis p50/p99 us':>17}"
          f"   {'kvnode p50/p99 us':>18}{'kv writes/fsync':>17}{'kv errors':>11}")
    summary = []
    for conns, inflight in SHAPES:
        res = results[(conns, inflight)]
        rr, kk = med(res["redis"], 0), med(res["kvnode"], 0)
        wpf = med(res["kv_flush"], 0)
        errs = sum(x[2] for x in res["kv_flush"])
        print(f"{f'{conns}x{inflight}':<7}{rr:>12.0f}{kk:>14.0f}{kk / rr:>10.2f}   {med(res['redis'], 1):>8.0f}/"
              f"{med(res['redis'], 2):<8.0f}   {med(res['kvnode'], 1):>8.0f}/{med(res['kvnode'], 2):<9.0f}"
              f"{f'{wpf:.1f}' if wpf else '-':>17}{errs:>11}")
        summary.append({"shape": f"{conns}x{inflight}", "redis_ops_per_sec": round(rr), "kvnode_ops_per_sec": round(kk),
                        "ratio": round(kk / rr, 3), "redis_p50_us": med(res["redis"], 1),
                        "redis_p99_us": med(res["redis"], 2), "kvnode_p50_us": med(res["kvnode"], 1),
                        "kvnode_p99_us": med(res["kvnode"], 2), "kvnode_writes_per_fsync": round(wpf, 2),
                        "kvnode_errors": errs, "redis_runs": res["redis"], "kvnode_runs": res["kvnode"]})
    print()
    print(f"kvnode after the runs: {info.get('records')} records, disk_used {info.get('disk_used', 0) / MiB:.0f} MiB, "
          f"{info.get('flushes')} fdatasyncs (mean {info.get('flush_avg_us')} us, max {info.get('flush_max_us')} us), "
          f"{info.get('defrag_blocks')} blocks defragmented; Redis AOF directory {aof / MiB:.0f} MiB")
    print()
    return {"keys": args.keys, "value_bytes": 100, "reps": args.reps, "seconds": args.seconds, "shapes": summary,
            "kvnode_flushes": info.get("flushes"), "kvnode_flush_avg_us": info.get("flush_avg_us"),
            "kvnode_flush_max_us": info.get("flush_max_us"), "redis_aof_bytes": aof}


# ---------------------------------------------------------------- parts 2 and 3

def index_spec(n):
    # memory limits the index; disk the file: both well above what n records of 16 bytes need
    mem = max(4 * GiB, -(-n * 256 // GiB) * GiB)
    disk = max(8 * GiB, -(-n * 400 // GiB) * GiB)
    return f"test,commit-to-device=false,memory={fmt_size(mem)},disk={fmt_size(disk)}"


def drop_file_cache(path):
    """Drop the page cache of every file under path (they are clean after the node's flush and a sync)."""
    os.sync()
    for dp, _, fs in os.walk(path):
        for f in fs:
            fd = os.open(os.path.join(dp, f), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def restart(r, tag, kdir, spec, n):
    node = r.start_kvnode(tag, kdir, spec, timeout=60 + n / 20000)
    t_load, line, parsed = node.load_line()
    info = r.info(node.ep)
    if info["records"] != n:
        raise BenchError(f"after restart ({tag}) kvnode has {info['records']} records, expected {n}")
    if parsed and parsed["records"] != n:
        raise BenchError(f"kvnode's load line says {parsed['records']} records, expected {n}: {line}")
    if line is None:
        log(f"kvnode ({tag}) printed no 'loaded N records' line on standard error")
    return node, {"ready_line_s": round(node.t_line, 4), "ready_file_s": round(node.t_file, 4),
                  "load_line_at_s": None if t_load is None else round(t_load, 4), "load_line": line,
                  "loaded": parsed, "rss_kb": node.rss_kb(), "memory_used": info["memory_used"]}


def part_index(r, args, tmp):
    rows = []
    for n in args.records:
        kdir = os.path.join(tmp, f"index-{n}")
        spec = index_spec(n)
        node = None
        node = r.start_kvnode(f"index-{n}", kdir, spec)
        try:
            time.sleep(0.3)
            rss0, i0 = node.rss_kb(), r.info(node.ep)
            log(f"index: inserting {n} records of 16 bytes ({spec})")
            limit = max(120, n / 10000)
            t = time.monotonic()
            j = r.kvbench(node.ep, "insert", n, 16, 50, 16, limit, timeout=limit + 60)
            load_s = time.monotonic() - t
            if j["errors"]:
                raise BenchError(f"inserting {n} records: kvnode answered errors {j['errors']}")
            if j["ops"] != n:
                raise BenchError(f"inserting {n} records: only {j['ops']} done in {limit:.0f} s")
            time.sleep(1.5)  # past flush-ms (1 s): the write buffers are on disk
            rss1, hwm, i1 = node.rss_kb(), proc_status(node.pid, "VmHWM"), r.info(node.ep)
            if i1["records"] != n:
                raise BenchError(f"after inserting {n} records kvnode reports {i1['records']}")
            row = {"records": n, "spec": spec, "load_s": round(load_s, 2), "load_ops_per_sec": j["ops_per_sec"],
                   "rss0_kb": rss0, "rss1_kb": rss1, "vmhwm_kb": hwm,
                   "rss_bytes_per_record": round((rss1 - rss0) * 1024 / n, 1),
                   "memory_used": i1["memory_used"],
                   "memory_used_per_record": round((i1["memory_used"] - i0["memory_used"]) / n, 1),
                   "disk_used": i1.get("disk_used"), "disk_bytes_per_record": round(i1.get("disk_used", 0) / n, 1),
                   "write_bytes_per_record": round(i1.get("write_bytes", 0) / n, 1),
                   "blocks_used": i1.get("blocks_used"), "write_block": i1.get("write_block")}
            file_bytes = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(kdir) for f in fs)
            row["file_bytes"] = file_bytes
            # part 3: stop, restart warm, stop, drop the file's pages, restart cold
            row["stop_s"] = round(node.stop(), 3)
            node = None
            node, row["warm"] = restart(r, f"index-{n}-warm", kdir, spec, n)
            row["rss_after_restart_bytes_per_record"] = round((row["warm"]["rss_kb"] - rss0) * 1024 / n, 1)
            node.stop()
            node = None
            drop_file_cache(kdir)
            node, row["cold"] = restart(r, f"index-{n}-cold", kdir, spec, n)
            node.stop()
            node = None
            rows.append(row)
            log(f"index: {n} records: RSS +{row['rss_bytes_per_record']} B/record, memory_used "
                f"{row['memory_used_per_record']} B/record; restart {row['warm']['ready_line_s']} s warm, "
                f"{row['cold']['ready_line_s']} s cold")
        finally:
            if node is not None:
                r.stop(node.p)
            shutil.rmtree(kdir, ignore_errors=True)

    print("2. Index memory per record: a fresh kvnode per N, file namespace (commit-to-device=false),")
    print("   N inserts of 16-byte values (kvbench -w insert, 50x16); RSS read 1.5 s after the load")
    print()
    print(f"{'records':>10}{'load s':>8}{'ins/s':>9}{'RSS +MiB':>10}{'RSS B/rec':>11}{'mem_used B/rec':>16}"
          f"{'RSS B/rec restarted':>21}{'written B/rec':>15}{'disk_used MiB':>15}")
    for w in rows:
        print(f"{w['records']:>10}{w['load_s']:>8.1f}{w['load_ops_per_sec']:>9.0f}"
              f"{(w['rss1_kb'] - w['rss0_kb']) / 1024:>10.1f}{w['rss_bytes_per_record']:>11.1f}"
              f"{w['memory_used_per_record']:>16.1f}{w['rss_after_restart_bytes_per_record']:>21.1f}"
              f"{w['write_bytes_per_record']:>15.1f}{(w['disk_used'] or 0) / MiB:>15.1f}")
    print()
    print("   RSS includes the node's write buffers (whole write blocks) and allocator slack, memory_used is the")
    print("   index as the namespace accounts it; written = write_bytes (records as stored), disk_used counts whole")
    print("   blocks; 'restarted' is the RSS of the node restarted on the same directory (warm), over the empty node's")
    print()
    print("3. Start-up: SIGTERM (waited for by PID), then kvnode started again on the same directory,")
    print("   timed from exec to the ready line; warm = file in the page cache, cold = its pages dropped")
    print("   (posix_fadvise DONTNEED after sync; a VM's host may still cache it)")
    print()
    print(f"{'records':>10}{'stop s':>8}{'warm s':>8}{'cold s':>8}   load line (cold)")
    for w in rows:
        print(f"{w['records']:>10}{w['stop_s']:>8.2f}{w['warm']['ready_line_s']:>8.3f}"
              f"{w['cold']['ready_line_s']:>8.3f}   {w['cold']['load_line'] or '(none)'}")
    print()
    return rows


# ---------------------------------------------------------------- part 4

def defrag_row(name, a, b, j):
    dw = b.get("write_bytes", 0) - a.get("write_bytes", 0)
    dd = b.get("defrag_bytes", 0) - a.get("defrag_bytes", 0)
    return {"phase": name, "seconds": j["seconds"] if j else None, "ops_per_sec": j["ops_per_sec"] if j else None,
            "errors": j["errors"] if j else None, "write_bytes": dw, "defrag_bytes": dd,
            "write_amplification": round((dw + dd) / dw, 3) if dw else None,
            "defrag_blocks": b.get("defrag_blocks", 0) - a.get("defrag_blocks", 0),
            "defrag_records": b.get("defrag_records", 0) - a.get("defrag_records", 0),
            "live_fraction": b.get("live_fraction"), "disk_used": b.get("disk_used"),
            "disk_limit": b.get("disk_limit"), "blocks_used": b.get("blocks_used"),
            "blocks_free": b.get("blocks_free"), "blocks_total": b.get("blocks_total"),
            "defrag_queue": b.get("defrag_queue")}


def used_limit(w):
    return f"{(w['disk_used'] or 0) / MiB:.0f}/{(w['disk_limit'] or 0) / MiB:.0f}"


def part_defrag(r, args, tmp):
    kdir = os.path.join(tmp, "defrag")
    spec = (f"test,commit-to-device=false,write-block={fmt_size(args.defrag_block)},"
            f"disk={fmt_size(args.defrag_disk)},defrag-lwm={args.defrag_lwm}")
    node = r.start_kvnode("defrag", kdir, spec)
    try:
        keys, per = args.defrag_keys, None
        if keys is None:
            # size the key space from a probe: fill --defrag-fill of the disk with live records
            r.kvbench(node.ep, "insert", 10000, 100, 50, 16, 60)
            p = r.info(node.ep)
            per = p["write_bytes"] / max(1, p["records"])
            keys = max(1000, int(args.defrag_fill * p["disk_limit"] / per))
            log(f"defrag: records of 100-byte values take {per:.0f} bytes; {keys} keys fill "
                f"{args.defrag_fill:.0%} of disk={fmt_size(args.defrag_disk)}")
        j = r.kvbench(node.ep, "insert", keys, 100, 50, 16, 600, timeout=660)
        if j["errors"]:
            raise BenchError(f"defrag: preloading {keys} keys: kvnode answered errors {j['errors']}")
        a = r.info(node.ep)
        if per is None:
            per = a["write_bytes"] / max(1, a["records"])
        live = per * a["records"]
        half = args.defrag_seconds / 2
        log(f"defrag: {keys} keys loaded, disk_used {a['disk_used'] / MiB:.0f} MiB; uniform updates for "
            f"2 x {half:g} s")
        j1 = r.kvbench(node.ep, "update", keys, 100, 50, 16, half)
        b = r.info(node.ep)
        j2 = r.kvbench(node.ep, "update", keys, 100, 50, 16, half)
        c = r.info(node.ep)
    finally:
        node.stop()
        shutil.rmtree(kdir, ignore_errors=True)
    rows = [defrag_row("warm-up", a, b, j1), defrag_row("steady", b, c, j2), defrag_row("whole", a, c, None)]
    whole = rows[2]
    whole["seconds"] = j1["seconds"] + j2["seconds"]
    whole["ops_per_sec"] = round((j1["ops"] + j2["ops"]) / whole["seconds"])
    whole["errors"] = {k: j1["errors"].get(k, 0) + j2["errors"].get(k, 0) for k in set(j1["errors"]) | set(j2["errors"])}
    bound = 1 / (1 - args.defrag_lwm / 100)
    print(f"4. Defragmentation: {spec}; {keys} keys of 100-byte values preloaded")
    print(f"   (about {live / MiB:.0f} MiB live, {live / a['disk_limit']:.0%} of disk), then uniform updates "
          f"(kvbench -w update, 50x16) for 2 x {half:g} s")
    print(f"   write amplification = (write_bytes + defrag_bytes) / write_bytes; copying only blocks under "
          f"{args.defrag_lwm}% live bounds it by {bound:.2f} in a steady state")
    print()
    print(f"{'phase':<9}{'s':>6}{'ops/s':>9}{'written MiB':>13}{'defrag MiB':>12}{'WA':>7}{'defrag blks':>13}"
          f"{'live frac':>11}{'disk used/limit MiB':>21}{'blks free':>11}{'errors':>8}")
    for w in rows:
        print(f"{w['phase']:<9}{w['seconds']:>6.1f}{w['ops_per_sec']:>9.0f}{w['write_bytes'] / MiB:>13.1f}"
              f"{w['defrag_bytes'] / MiB:>12.1f}{w['write_amplification'] or float('nan'):>7.2f}"
              f"{w['defrag_blocks']:>13}{w['live_fraction'] or 0:>11.3f}"
              f"{used_limit(w):>21}"
              f"{w['blocks_free']:>11}{sum(w['errors'].values()):>8}")
    errs = rows[2]["errors"]
    if errs:
        print(f"   kvnode errors during the updates: {errs}")
    print()
    return {"spec": spec, "keys": keys, "live_bytes": round(live), "bound": round(bound, 3), "phases": rows}


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="kvnode's file storage engine: durable writes against Redis, "
                                 "index bytes per record, start-up time, defragmentation write amplification")
    ap.add_argument("--reps", type=int, default=3, help="runs of each durable-write shape (default 3)")
    ap.add_argument("--seconds", type=float, default=5, help="length of each durable-write run (default 5)")
    ap.add_argument("--keys", type=size_arg, default=1000000, help="key space of the durable writes (default 1000000)")
    ap.add_argument("--records", default="1000000",
                    help="record counts for the index and start-up parts, comma-separated (default 1000000)")
    ap.add_argument("--defrag-seconds", type=float, default=120, help="length of the update load (default 120)")
    ap.add_argument("--defrag-keys", type=size_arg, help="key space of the defragmentation run "
                    "(default: --defrag-fill of the disk)")
    ap.add_argument("--defrag-fill", type=float, default=0.3, help="live fraction of the disk (default 0.3)")
    ap.add_argument("--defrag-block", type=bytes_arg, default=bytes_arg("1M"), help="write-block (default 1M)")
    ap.add_argument("--defrag-disk", type=bytes_arg, default=bytes_arg("256M"), help="disk (default 256M)")
    ap.add_argument("--defrag-lwm", type=int, default=50, help="defrag-lwm (default 50)")
    ap.add_argument("--parts", default="durable,index,defrag",
                    help="parts to run: durable, index (with start-up), defrag (default all)")
    ap.add_argument("--tmpdir", default=tempfile.gettempdir(),
                    help="where the data directories go; its device is what is measured (default $TMPDIR or /tmp)")
    ap.add_argument("--pin", action="store_true", help="servers on CPU 0, load generators on CPU 1 (taskset)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 rep, 2-second runs, 100000 records, "
                    "10-second defragmentation run on a 64M disk")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.seconds, args.defrag_seconds = 1, 2, 10
        if args.keys == ap.get_default("keys"):
            args.keys = 100000
        if args.records == ap.get_default("records"):
            args.records = "100000"
        if args.defrag_disk == ap.get_default("defrag_disk"):
            args.defrag_disk = 64 * MiB
    args.records = [size_arg(x) for x in args.records.split(",") if x.strip()]
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for p in parts:
        if p not in ("durable", "index", "startup", "defrag"):
            ap.error(f"unknown part '{p}' (durable, index, defrag)")
    if "startup" in parts and "index" not in parts:
        parts.append("index")
    if args.reps < 1 or args.seconds <= 0 or args.defrag_seconds <= 0 or not args.records or min(args.records) < 1:
        ap.error("--reps, --seconds, --defrag-seconds and --records must be positive")
    if max(args.records) > 100000000:
        ap.error("--records: kvbench's key space is at most 100000000")
    if args.defrag_disk < 16 * args.defrag_block:
        ap.error("--defrag-disk must be at least 16 write blocks (kvnode(1))")
    if not 1 <= args.defrag_lwm <= 99:
        ap.error("--defrag-lwm is 1 to 99")
    if not 0 < args.defrag_fill < 1:
        ap.error("--defrag-fill is a fraction between 0 and 1")

    # what is needed: built programs with file storage, Redis, taskset, CPUs
    for p in (KVNODE, KVBENCH, KVQUERY):
        if not os.access(p, os.X_OK):
            sys.exit(f"storage: {p} is missing; run make first")
    helptext = subprocess.run([KVNODE, "--help"], capture_output=True, text=True).stdout
    if "--data" not in helptext:
        sys.exit("storage: bin/kvnode has no file storage (no --data in kvnode --help); build the storage engine first")
    need_progs = (["redis-server", "redis-benchmark", "redis-cli"] if "durable" in parts else []) + \
        (["taskset"] if args.pin else [])
    missing = [p for p in need_progs if shutil.which(p) is None]
    if missing:
        sys.exit(f"storage: {', '.join(missing)} not found (make bench-storage installs redis-server, "
                 f"redis-tools and util-linux)")
    ncpu = os.cpu_count() or 1
    if args.pin and ncpu < 2:
        sys.exit("storage: --pin needs at least 2 CPUs")

    # disk and memory: refuse a run that would not fit
    if not os.path.isdir(args.tmpdir):
        sys.exit(f"storage: --tmpdir {args.tmpdir} is not a directory")
    st = os.statvfs(args.tmpdir)
    free = st.f_bavail * st.f_frsize
    need = {}
    if "durable" in parts:
        # kvnode's file is bounded by its default disk limit (4G); Redis's AOF by its rewrites
        need["durable"] = min(4 * GiB, 4 * args.keys * 250) + 3 * args.keys * 160 + 256 * MiB
    if "index" in parts:
        need["index"] = int(max(args.records) * 200 * 1.25) + 64 * MiB
    if "defrag" in parts:
        need["defrag"] = args.defrag_disk
    need_disk = max(need.values()) + 512 * MiB
    dev, mnt, fstype = fs_of(args.tmpdir)
    if need_disk > free:
        sys.exit(f"storage: this run needs about {need_disk / GiB:.1f} GiB free in {args.tmpdir} ({dev}, {fstype}, "
                 f"mounted on {mnt}) but only {free / GiB:.1f} GiB is; "
                 f"use --tmpdir elsewhere or smaller --records/--keys")
    if "index" in parts:
        need_mem = max(args.records) * 250 + 512 * MiB
        if need_mem > mem_available():
            sys.exit(f"storage: {max(args.records)} records need about {need_mem / GiB:.1f} GiB of memory "
                     f"(index and kvbench) but {mem_available() / GiB:.1f} GiB is available; use smaller --records")

    srv = ["taskset", "-c", "0"] if args.pin else []
    cli = ["taskset", "-c", "1"] if args.pin else []
    placement = ("servers (redis-server, kvnode) on CPU 0, load generators and clients (redis-benchmark, "
                 "kvbench, kvquery) on CPU 1 (taskset)") if args.pin else \
        f"not pinned: servers and load generators share all {ncpu} CPUs"
    tmp = tempfile.mkdtemp(prefix="kvbench-storage.", dir=args.tmpdir)
    r = Runner(tmp, srv, cli)

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    kv_version = subprocess.run([KVNODE, "-V"], capture_output=True, text=True).stdout.strip()
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2].removeprefix("v=") \
        if shutil.which("redis-server") else None
    summary = {"bench": "storage", "kvnode": kv_version, "redis": redis_version, "cpus": ncpu, "cpu": cpu,
               "kernel": os.uname().release, "pinned": args.pin, "placement": placement,
               "data_fs": {"dir": args.tmpdir, "device": dev, "type": fstype, "mount": mnt, "free_bytes": free},
               "quick": args.quick}
    failed = []
    t_start = time.monotonic()
    try:
        print(f"kvnode file storage engine ({kv_version}) vs Redis {redis_version}")
        print(f"machine: {ncpu} CPUs ({cpu}), Linux {os.uname().release}; data in {tmp} "
              f"({fstype} on {dev}, {free / GiB:.0f} GiB free)")
        print(f"placement: {placement}")
        print()
        sys.stdout.flush()
        for name, fn in (("durable", part_durable), ("index", part_index), ("defrag", part_defrag)):
            if name not in parts:
                continue
            try:
                summary[name] = fn(r, args, tmp)
            except BenchError as e:
                failed.append(name)
                summary[name] = {"error": str(e)}
                print(f"{name}: FAILED: {e}")
                print()
                r.stop_all()
            sys.stdout.flush()
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        failed.append("interrupted")
    finally:
        r.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    summary["seconds"] = round(time.monotonic() - t_start, 1)
    summary["failed"] = failed
    print(f"total {summary['seconds']:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    print(json.dumps(summary, separators=(",", ":")))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
