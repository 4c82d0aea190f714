#!/usr/bin/env python3
"""replicas_check.py: every write a kvcrash load (tests/tools/kvcrash.c)
had acknowledged is on RF nodes of a cluster, each copy the last
acknowledged write or one sent after it.

usage: replicas_check.py LOG RF ENDPOINT...

LOG is the load's output (S, A, R and U lines); each ENDPOINT is a node,
read whole with `kvrepl dump --from ENDPOINT --set crash --format jsonl`
(its own copies).  A key whose last acknowledged write is a put (or that
a put sent after it may have written) must be on exactly RF nodes, unless
a delete sent after it may have been applied; every copy found must hold
the value of the last acknowledged write or of a write sent after it
(not refused).  Writes answered in doubt (U) may or may not be applied,
so a key whose later writes were in doubt may differ between its copies
within what those writes allow.  Prints one line per bad key (at most
20) and a summary; exits 0 if every key is right, 1 if not, 2 on errors.
"""
import json, subprocess, sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    log, rf, eps = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    sends, acked, refused = {}, {}, set()  # key -> [(seq, op)]; key -> seq; seqs
    with open(log) as f:
        for line in f:
            p = line.split()
            if len(p) >= 4 and p[0] == "S":
                sends.setdefault(int(p[1]), []).append((int(p[2]), p[3]))
            elif len(p) >= 3 and p[0] == "A":
                acked[int(p[1])] = int(p[2])
            elif len(p) >= 3 and p[0] == "R":
                refused.add(int(p[2]))
    copies = {}  # key -> [value or None per node]
    for i, ep in enumerate(eps):
        out = subprocess.run(["kvrepl", "dump", "--from", ep, "--set", "crash", "--format", "jsonl"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"replicas_check: dump of {ep} failed: {out.stderr.strip()}")
        for line in out.stdout.splitlines():
            r = json.loads(line)
            copies.setdefault(int(r["bins"]["k"]), [None] * len(eps))[i] = int(r["bins"]["v"])
    bad = 0
    for key in sorted(set(sends) | set(copies)):
        got = copies.get(key, [None] * len(eps))
        s = sends.get(key, [])
        last = acked.get(key)
        start = 0
        if last is not None:
            start = next(j for j, (seq, _) in enumerate(s) if seq == last)
        allowed = {seq if op == "p" else None for seq, op in s[start:] if seq not in refused}
        if last is None:
            allowed.add(None)  # nothing acknowledged: absent is right too
        present = [v for v in got if v is not None]
        why = None
        if any(v not in allowed for v in present):
            why = "a copy holds a value no surviving write gave"
        elif None not in allowed and len(present) != rf:
            why = f"on {len(present)} nodes, not {rf}"
        elif len(present) > rf:
            why = f"on {len(present)} nodes, more than {rf}"
        if why:
            bad += 1
            if bad <= 20:
                print(f"not ok key {key}: {why}: copies {got}, last acknowledged {last}, "
                      f"allowed {sorted(allowed, key=lambda v: -1 if v is None else v)}")
    print(f"replicas_check: {len(set(sends) | set(copies))} keys, {sum(len(v) for v in sends.values())} writes, "
          f"{len(eps)} nodes, rf {rf}: {bad} bad")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
