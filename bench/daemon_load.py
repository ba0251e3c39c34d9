#!/usr/bin/env python3
"""Load for bench/daemon.sh: appends log lines at a steady rate over many
files, with a fresh live Tatum key every so often, and records when each key
line was written.

    daemon_load.py DIR SIM_URL SECONDS RATE FILES KEYS_PER_SEC OUT.json

DIR may be several directories joined by commas (one per host of a fleet,
bench/fleet.sh): each gets FILES files, the lines are spread over all of
them, and with EVERY_NODE=N every Nth key is written on every host (the
time recorded is the first write).

Each key is registered as live with keysentry-sim first, so the daemon's
remediation contains it (PUT /v3/tatum/freeze). OUT.json maps each key's
SHA-256 to the unix time in ms at which its line was written.
"""
import hashlib
import json
import os
import sys
import time
import urllib.request


def register(sim, key):
    body = json.dumps({"key": key, "state": "live"}).encode()
    req = urllib.request.Request(sim + "/_sim/tatum/keys", data=body,
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def fresh_key(n):
    h = hashlib.sha256(f"bench-{os.getpid()}-{n}".encode()).hexdigest()
    return f"t-{h[:24]}-{h[24:48]}"


def main():
    out_dir, sim, seconds, rate, nfiles, kps, out = sys.argv[1:8]
    seconds, rate, nfiles, kps = float(seconds), int(rate), int(nfiles), float(kps)
    dirs = out_dir.split(",")
    every_node = int(os.environ.get("EVERY_NODE", "0"))
    fds = [os.open(os.path.join(d, f"app{i:02}.log"),
                   os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
           for d in dirs for i in range(nfiles)]
    nfiles = len(fds)
    filler = "INFO request handled path=/api/v1/orders status=200 took_ms=12 user=4711 trace=%08d\n"
    written, keys_sent, turn = 0, 0, 0
    sent = {}
    start = time.time()
    next_key_at = start + 1.0
    pending_key = None
    while True:
        now = time.time()
        if now - start >= seconds:
            break
        due = int(rate * (now - start)) - written
        if due > 0:
            per_file = [[] for _ in range(nfiles)]
            for i in range(due):
                per_file[(written + i) % nfiles].append(filler % (written + i))
            for fd, lines in zip(fds, per_file):
                if lines:
                    os.write(fd, "".join(lines).encode())
            written += due
        if kps > 0 and now >= next_key_at:
            key = fresh_key(keys_sent)
            register(sim, key)
            fd = fds[turn % nfiles]
            turn += 1
            line = f"WARN outgoing call x-api-key: {key} status=200\n".encode()
            t = time.time()
            os.write(fd, line)
            if every_node and len(dirs) > 1 and keys_sent % every_node == 0:
                per_dir = nfiles // len(dirs)
                for j in range(len(dirs)):
                    other = fds[j * per_dir + (turn % per_dir)]
                    if other != fd:
                        os.write(other, line)
                        written += 1
            sent[hashlib.sha256(key.encode()).hexdigest()] = int(t * 1000)
            keys_sent += 1
            next_key_at += 1.0 / kps
            written += 1
        time.sleep(0.005)
    with open(out, "w") as f:
        json.dump({"lines": written, "keys": sent, "seconds": time.time() - start}, f)


if __name__ == "__main__":
    main()
