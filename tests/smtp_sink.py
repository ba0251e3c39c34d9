#!/usr/bin/env python3
"""A real SMTP server for keysentry's email alert tests (aiosmtpd).

Usage: smtp_sink.py OUT_FILE [HOST]

Listens on HOST (default 127.0.0.1) at a free port, prints
`listening on smtp://HOST:PORT` as its first stdout line, and appends one JSON
object per received message to OUT_FILE:
{"mail_from", "rcpt_tos", "from", "to", "subject", "content_type", "body", "raw"}
with the subject and body decoded from their MIME encodings.
"""

import asyncio
import json
import sys

try:
    from aiosmtpd.smtp import SMTP
except ImportError:
    sys.stderr.write(
        "smtp_sink.py needs aiosmtpd: run `python3 -m pip install aiosmtpd`\n"
    )
    sys.exit(3)

from email import message_from_bytes, policy


class Sink:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        part = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "content_type": msg.get_content_type(),
            "body": part.get_content() if part is not None else "",
            "raw": envelope.content.decode("utf-8", "replace"),
        }
        # One write of one whole line, so a reader polling the file never
        # parses half a record.
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


async def main(out, host):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink(out)), host, 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on smtp://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"))
