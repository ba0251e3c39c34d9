#!/usr/bin/env bash
# Memory of `keysentry scan --remediate` when the provider's answer is huge
# (not a test). A tiny HTTP server on 127.0.0.1 plays Tatum; in the same run:
#   - reference: it answers every call with small JSON (verify → freeze);
#   - huge:      it answers with SIZE_MB MiB of chunked body (no length up
#                front, so keysentry cannot refuse from the header).
# Prints keysentry's peak RSS for both and their ratio; the huge run must end
# with the 1 MiB cap as the incident's reason.
#
#   bench/provider_answers.sh            SIZE_MB=1024 by default
#   KEYSENTRY=PATH                       binary to measure (default: release build)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
size_mb=${SIZE_MB:-1024}
if [[ -z "${KEYSENTRY:-}" ]]; then
    (cd "$root" && cargo build --release --quiet --bin keysentry)
    KEYSENTRY="$root/target/release/keysentry"
fi
work=$(mktemp -d)
server_pid=
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/server.py" <<'EOF'
import http.server, json, sys
mode, size = sys.argv[1], int(sys.argv[2]) << 20
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        if mode == "small":
            body = json.dumps({"version": "bench", "testnet": True, "frozen": True}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        chunk = b"x" * (64 << 10)
        sent = 0
        try:
            while sent < size:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
    do_GET = do_PUT = do_POST = answer
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
EOF

key=t-6677183273e3a22c239969cb-dbb1e8c8d1c012c954834afa
run() { # mode → "peak_kib reason"
    local mode=$1 dir="$work/$1"
    mkdir -p "$dir/tree"
    echo "TATUM_API_KEY=$key" >"$dir/tree/app.env"
    python3 "$work/server.py" "$mode" "$size_mb" >"$dir/port" &
    server_pid=$!
    for _ in $(seq 100); do [[ -s "$dir/port" ]] && break; sleep 0.05; done
    cat >"$dir/config.yaml" <<EOC
state_dir: $dir/state
remediation: {mode: auto, policy: {tatum: freeze}, max_attempts: 1, timeout_secs: 60}
providers: {tatum: {api_url: 'http://127.0.0.1:$(cat "$dir/port")'}}
EOC
    /usr/bin/time -f %M -o "$dir/rss" "$KEYSENTRY" scan "$dir/tree" --config "$dir/config.yaml" \
        --remediate >/dev/null 2>&1 || true
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    local reason
    reason=$("$KEYSENTRY" incidents list --json --config "$dir/config.yaml" |
        python3 -c 'import json,sys; i=json.load(sys.stdin)[0]; print(i["state"], "-", i.get("reason") or "")')
    echo "$(tail -n 1 "$dir/rss") $reason"
}

small=$(run small)
huge=$(run huge)
small_kib=${small%% *}
huge_kib=${huge%% *}
echo "reference (small JSON answers): peak RSS ${small_kib} KiB; incident: ${small#* }"
echo "huge (${size_mb} MiB chunked answer): peak RSS ${huge_kib} KiB; incident: ${huge#* }"
python3 -c "print(f'ratio huge/reference: {$huge_kib / $small_kib:.2f}')"
