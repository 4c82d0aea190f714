#!/usr/bin/env python3
"""kvstream.py: write a kvrepl binary stream (kvrepl(1), FORMAT) from the
page alone, independently of kvrepl's own code, for the tests: records and
tombstones given as JSON, and frames given raw to make damaged streams.

usage: kvstream.py [--version N] [--no-end] [--end-counts R T] ITEM... > stream
  ITEM is one of
    rec:JSON   a record {"ns", "set", "key" | "digest" (hex), "gen", "lut",
               "void", "bins"}, or a tombstone {"ns", "digest" | "set"+"key",
               "gen", "lut", "del": true}; the digest is computed from set and
               key when not given; a key is stored unless "nokey" is true
    raw:T:HEX  a frame of type T (one character) holding the bytes HEX,
               with a good CRC
The stream starts with the preamble and an info frame, and ends with an
end frame counting the records and tombstones given (unless --no-end, or
other counts with --end-counts).
"""
import hashlib
import json
import struct
import sys
import time
import zlib


def mp(v):
    """MessagePack encoding of v: None, bool, int, float, str, bytes, list, dict."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xdb" + struct.pack(">I", len(b))) + b
    if isinstance(v, bytes):
        return b"\xc6" + struct.pack(">I", len(v)) + v
    if isinstance(v, list):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return b"\xdf" + struct.pack(">I", len(v)) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(type(v))


def digest(set_name, key):
    """kvproto(7), DIGEST: BLAKE2b-160(len(set) set key-type key)."""
    if isinstance(key, int):
        kt, kb = 2, struct.pack("<q", key)
    else:
        kt, kb = 1, key.encode()
    s = set_name.encode()
    return hashlib.blake2b(bytes([len(s)]) + s + bytes([kt]) + kb, digest_size=20).digest()


def frame(ftype, payload):
    head = struct.pack("<I", len(payload)) + ftype.encode()
    return head + struct.pack("<I", zlib.crc32(head + payload) & 0xFFFFFFFF) + payload


def record(r):
    d = bytes.fromhex(r["digest"]) if "digest" in r else digest(r.get("set", ""), r["key"])
    m = {"ns": r.get("ns", "test"), "digest": d, "gen": r.get("gen", 1), "lut": r["lut"]}
    if r.get("del"):
        m["del"] = True
        return m, True
    if r.get("set"):
        m["set"] = r["set"]
    if "key" in r and not r.get("nokey"):
        m["key"] = r["key"]
    m["void"] = r.get("void", 0)
    m["bins"] = r["bins"]
    return m, False


def main(argv):
    version, end, counts, items = 1, True, None, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--version":
            version = int(argv[i + 1])
            i += 1
        elif a == "--no-end":
            end = False
        elif a == "--end-counts":
            counts = (int(argv[i + 1]), int(argv[i + 2]))
            i += 2
        else:
            items.append(a)
        i += 1
    out = bytearray(b"KVREPL" + struct.pack("<H", version))
    info = {"program": "kvstream.py", "source": "test", "ns": "test", "partitions": "0-4095",
            "tombstones": True, "time": int(time.time() * 1000)}
    out += frame("I", mp(info))
    nrec = ntomb = 0
    for it in items:
        kind, _, rest = it.partition(":")
        if kind == "rec":
            m, tomb = record(json.loads(rest))
            out += frame("R", mp(m))
            ntomb += tomb
            nrec += not tomb
        elif kind == "raw":
            t, _, hexbytes = rest.partition(":")
            out += frame(t, bytes.fromhex(hexbytes))
        else:
            sys.exit("kvstream.py: unknown item " + it)
    if end:
        r, t = counts or (nrec, ntomb)
        out += frame("E", mp({"records": r, "tombstones": t}))
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main(sys.argv[1:])
