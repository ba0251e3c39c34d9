#!/usr/bin/env python3
"""Unauthenticated load on keysentry's HTTP server (bench/http_abuse.sh).

    http_abuse.py ADDR PID [--bodies 40] [--body-mib 20] [--slow 300]
                  [--seconds 20] [--forged]

Measures, first with no load and then under load, in the same run:
  - /healthz latency (a fresh connection per probe, as a monitoring probe
    does), p50 / p99 / max, and probes that failed;
  - the daemon's RSS (VmRSS sampled every 100 ms, and VmHWM at the end).

The load: `--slow` connections that send half a request head and then
nothing (re-opened when the server closes them), and `--bodies` clients
that each POST a `--body-mib` body to the webhook over and over: unsigned
(no X-Hub-Signature-256), or with a wrong signature with `--forged` (those
bodies must be read to the end before the MAC can fail).
"""

import argparse
import hashlib
import hmac
import socket
import statistics
import threading
import time


def rss_kib(pid, field="VmRSS:"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def probe(host, port):
    """Seconds for one GET /healthz on a new connection, or None."""
    start = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            return None
        return time.perf_counter() - start
    except OSError:
        return None


def measure(host, port, pid, seconds, stop_early=None):
    lat, failed, rss = [], 0, []
    end = time.time() + seconds
    while time.time() < end:
        t = probe(host, port)
        if t is None:
            failed += 1
        else:
            lat.append(t)
        rss.append(rss_kib(pid))
        time.sleep(0.1)
    return lat, failed, rss


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


class Load:
    def __init__(self, host, port, args):
        self.host, self.port, self.args = host, port, args
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers = {}
        self.slow_closed = 0
        self.slow_open = 0

    def count(self, status):
        with self.lock:
            self.answers[status] = self.answers.get(status, 0) + 1

    def body_client(self):
        size = self.args.body_mib << 20
        chunk = b"{" * (1 << 20)
        sig = ""
        if self.args.forged:
            mac = hmac.new(b"not-the-secret", b"{}", hashlib.sha256).hexdigest()
            sig = f"X-Hub-Signature-256: sha256={mac}\r\n"
        head = (
            "POST /github/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: push\r\nX-GitHub-Delivery: abuse\r\n{sig}"
            f"Content-Length: {size}\r\n\r\n"
        ).encode()
        while not self.stop.is_set():
            try:
                with socket.create_connection((self.host, self.port), timeout=30) as s:
                    s.sendall(head)
                    sent = 0
                    # An answer may come before the body is sent: read it then.
                    s.setblocking(False)
                    answered = b""
                    while sent < size and not answered:
                        try:
                            answered = s.recv(4096)
                            break
                        except BlockingIOError:
                            pass
                        try:
                            sent += s.send(chunk[: min(len(chunk), size - sent)])
                        except BlockingIOError:
                            time.sleep(0.001)
                    s.setblocking(True)
                    s.settimeout(30)
                    while b"\r\n" not in answered:
                        more = s.recv(4096)
                        if not more:
                            break
                        answered += more
                    self.count(answered[9:12].decode(errors="replace") or "closed")
            except OSError:
                self.count("error")
                time.sleep(0.01)

    def slow_clients(self):
        socks = []
        while not self.stop.is_set():
            alive = []
            for s in socks:
                try:
                    s.setblocking(False)
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                    alive.append(s)
                except BlockingIOError:
                    alive.append(s)
                except OSError:
                    with self.lock:
                        self.slow_closed += 1
                    s.close()
            socks = alive
            while len(socks) < self.args.slow and not self.stop.is_set():
                try:
                    s = socket.create_connection((self.host, self.port), timeout=5)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    socks.append(s)
                except OSError:
                    break
            with self.lock:
                self.slow_open = len(socks)
            time.sleep(0.2)
        for s in socks:
            s.close()

    def start(self):
        threads = [threading.Thread(target=self.slow_clients, daemon=True)]
        threads += [
            threading.Thread(target=self.body_client, daemon=True)
            for _ in range(self.args.bodies)
        ]
        for t in threads:
            t.start()
        return threads


def report(name, lat, failed, rss):
    ms = [x * 1000 for x in lat]
    print(
        f"{name:8} healthz p50 {pct(ms, .5):7.2f} ms  p99 {pct(ms, .99):7.2f} ms  "
        f"max {max(ms, default=float('nan')):7.2f} ms  failed {failed:3}/{len(lat) + failed}  "
        f"RSS median {statistics.median(rss) / 1024:6.1f} MiB  max {max(rss) / 1024:6.1f} MiB"
    )
    return pct(ms, .5), pct(ms, .99), max(rss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("pid", type=int)
    ap.add_argument("--bodies", type=int, default=40)
    ap.add_argument("--body-mib", type=int, default=20)
    ap.add_argument("--slow", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--forged", action="store_true")
    args = ap.parse_args()
    host, port = args.addr.rsplit(":", 1)
    port = int(port)

    idle = measure(host, port, args.pid, min(args.seconds, 10))
    load = Load(host, port, args)
    load.start()
    time.sleep(2)  # let every load connection be made
    busy = measure(host, port, args.pid, args.seconds)
    load.stop.set()
    hwm = rss_kib(args.pid, "VmHWM:")

    kind = "forged" if args.forged else "unsigned"
    print(
        f"load: {args.slow} slow-header connections (open at the end: {load.slow_open}, "
        f"closed by the server: {load.slow_closed}), {args.bodies} clients posting "
        f"{kind} {args.body_mib} MiB bodies (answers: {dict(sorted(load.answers.items()))})"
    )
    p50a, p99a, rssa = report("no load", *idle)
    p50b, p99b, rssb = report("load", *busy)
    print(
        f"ratio load/no-load: healthz p50 x{p50b / p50a:.2f}, p99 x{p99b / p99a:.2f}, "
        f"RSS max x{rssb / rssa:.2f}; peak RSS (VmHWM) {hwm / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
