"""A real SMTP server (aiosmtpd) for Tessera's tests and benchmarks.

Every accepted message is written to --dir as <sequence>.eml (atomically: a temporary
file renamed into place), with the envelope in <sequence>.json. A small HTTP control
listener changes what the server answers next:

  POST /reply   {"code": 451, "count": 2}   answer DATA with 451 (or 5xx) for the next N
                                            messages, then accept again
  POST /delay   {"ms": 3000}                hold every DATA answer this long (0 = off)
  GET  /stats                               {"accepted": n, "refused": n}

On start it prints one JSON line: {"smtp_port": P, "control_port": C}. Port 0 picks a
free port.
"""

import argparse
import asyncio
import json
import os
import sys

from aiosmtpd.smtp import SMTP

REPLIES = {
    4: "{code} 4.3.0 Temporarily refusing messages (test control)",
    5: "{code} 5.7.1 Message rejected (test control)",
}


class Handler:
    def __init__(self, directory):
        self.directory = directory
        self.fail_code = 0
        self.fail_count = 0
        self.delay_ms = 0
        self.accepted = 0
        self.refused = 0
        self.sequence = len([n for n in os.listdir(directory) if n.endswith(".eml")])

    async def handle_DATA(self, server, session, envelope):
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if self.fail_count > 0:
            self.fail_count -= 1
            self.refused += 1
            return REPLIES[self.fail_code // 100].format(code=self.fail_code)
        self.sequence += 1
        name = os.path.join(self.directory, "%08d" % self.sequence)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        with open(name + ".tmp", "wb") as f:
            f.write(content)
        with open(name + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        os.replace(name + ".json.tmp", name + ".json")
        os.replace(name + ".tmp", name + ".eml")
        self.accepted += 1
        return "250 2.0.0 OK queued as %08d" % self.sequence


async def control(handler, reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = json.loads(await reader.readexactly(length)) if length else {}
        status, answer = 200, {}
        if method == "POST" and path == "/reply":
            code = int(body.get("code", 0))
            if code and code // 100 not in REPLIES:
                status, answer = 400, {"error": "code must be 4xx or 5xx"}
            else:
                handler.fail_code, handler.fail_count = code, int(body.get("count", 1))
        elif method == "POST" and path == "/delay":
            handler.delay_ms = int(body.get("ms", 0))
        elif method == "GET" and path == "/stats":
            answer = {"accepted": handler.accepted, "refused": handler.refused}
        else:
            status, answer = 404, {"error": "unknown path"}
        payload = json.dumps(answer).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, len(payload), payload)
        )
        await writer.drain()
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--dir", required=True, help="where accepted messages are written")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    handler = Handler(args.dir)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(handler, hostname="tessera-test-smtp", data_size_limit=10 * 1024 * 1024),
        args.host,
        args.port,
    )
    ctl = await asyncio.start_server(
        lambda r, w: control(handler, r, w), args.host, args.control_port
    )
    print(
        json.dumps(
            {
                "smtp_port": smtp.sockets[0].getsockname()[1],
                "control_port": ctl.sockets[0].getsockname()[1],
            }
        ),
        flush=True,
    )
    await asyncio.gather(smtp.serve_forever(), ctl.serve_forever())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
