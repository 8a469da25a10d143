#!/usr/bin/python3
"""upstream.py: a fault-injecting HTTPS (and HTTP) upstream for the HttpClient tests.

Python standard library only (asyncio + ssl). Listens on loopback only, at ephemeral
ports, and prints them on its first stdout line:

    PORT 43211 good=43211 wrong-host=43212 plain=43213 good6=43214

("PORT <first listener>" then NAME=PORT for every listener; a NAME6 entry is the same
listener on ::1 with --ipv6, "none" when ::1 cannot be bound.)

Listeners: one per --cert NAME (good | wrong-host | unknown-ca | other-ip | decoy-ip-san; the
files come from make_certs.sh in --certs DIR), plus --plain for plain HTTP. Default: --cert good.

Endpoints (HTTP/1.1, keep-alive, Content-Length responses unless a fault says otherwise):
    GET  /health                  200 {"status":"ok"}
    POST /v1/embeddings           OpenAI-style: {"input": str | [str], "model": m} ->
                                  {"object":"list","data":[{"object":"embedding","index":i,
                                  "embedding":[8 floats from sha256(text)]}],"model":m,
                                  "usage":{"prompt_tokens":n,"total_tokens":n}}
    GET  /echo                    the request as JSON (method, target, headers, body size,
                                  requests served before on this connection, TLS resumed)
    GET  /bytes/N                 N bytes of body ('a'..'z' repeating)
    GET  /stats?key=K             {"connections":N,"requests":N} since start, this listener;
                                  "hits": requests /fault/flaky saw for key K
    GET  /sni                     {"sni": the server name the client sent in this
                                  connection's TLS handshake, or "none"}
    ANY  /fault/NAME?k=v          a scripted fault (below); also on any path with the
                                  header "X-Fault: NAME" or "X-Fault: NAME=ARG"

Faults:
    delay (ms=N | X-Fault: delay=N)   wait N ms, then answer normally
    reset (bytes=N)                   headers with Content-Length, N body bytes (default
                                      100 of 1000), then RST (SO_LINGER 0)
    truncated-chunked                 chunked headers, one whole chunk, half of the next,
                                      then close (TLS: with close_notify)
    truncated-chunked-fin             the same, then a bare TCP FIN (no TLS close_notify)
    close-delimited (bytes=N)         a 200 with neither Content-Length nor chunked: N bytes
                                      (default 5000), then close (TLS: with close_notify)
    close-delimited-fin (bytes=N)     the same, then a bare TCP FIN (no TLS close_notify)
    interim-flood (bytes=N)           "100 Continue" heads, N bytes of them (default 1 MB),
                                      then the connection held open until the client closes
    drip (bytes=N)                    Content-Length N (default 20), one byte per second
    500, 503 (or status code=N)       that status with a JSON error body, keep-alive
    oversize-headers (bytes=N)        a 200 whose head carries N (default 65536) header bytes
    answer-then-close (ms=N)          after N ms, a keep-alive 200, then a close right behind it
    head-body (ms=N)                  after N ms, a 200 plus 5 stray bytes in their own write
                                      (for a HEAD: bytes after a complete answer)
    close                             close the connection without answering
    close-if-reused                   on a connection that already answered: close without
                                      answering (a keep-alive race); else answer normally
    idle-close (ms=N | X-Idle-Close-Ms: N)  answer, then close the connection after N ms idle
    flaky (key=K, fail=N, code=C | mode=close | mode=hang)  the first N requests for key K
                                      get status C (default 503), a close without answer, or
                                      no answer until the client closes; then 200

Server options: --idle-close-ms N closes every keep-alive connection idle for N ms.
It exits by itself after --max-seconds (default 120), on stdin EOF (unless --no-stdin),
and on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import sys
import urllib.parse

MAX_HEAD = 65536
HITS = {}  # flaky key -> requests seen (all listeners)
MAX_BODY = 8 << 20
LOOPBACK = ("127.0.0.1", "::1")
SNI = {}  # id(SSLObject) -> server name from its ClientHello (None: no SNI), while it lives


def log(args, *what):
    if args.verbose:
        print("upstream:", *what, file=sys.stderr, flush=True)


def embedding(text):
    """8 floats in [-1, 1), a pure function of the text."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [round(v / 32768.0, 6) for v in struct.unpack(">8h", digest[:16])]


class Listener:
    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.connections = 0
        self.requests = 0


class Conn:
    def __init__(self, listener, reader, writer):
        self.listener = listener
        self.args = listener.args
        self.reader = reader
        self.writer = writer
        self.served = 0
        self.idle_close_ms = listener.args.idle_close_ms
        self.method = "GET"

    # ---- plumbing ----

    def raw_socket(self):
        return self.writer.get_extra_info("socket")

    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def respond(self, status, body, content_type="application/json", extra=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  411: "Length Required", 413: "Content Too Large", 500: "Internal Server Error",
                  503: "Service Unavailable"}.get(status, "Status")
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}"]
        head.extend(extra)
        if self.method == "HEAD":
            body = b""  # the head says what a GET would get, and nothing follows it
        await self.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def abort_rst(self):
        sock = self.raw_socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.writer.transport.abort()

    def abort_fin(self):
        """Close the TCP connection without a TLS close_notify."""
        sock = self.raw_socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.writer.transport.abort()

    async def close(self):
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 3)
        except (asyncio.TimeoutError, OSError, ssl.SSLError, ConnectionError):
            self.writer.transport.abort()

    # ---- the request loop ----

    async def read_request(self, idle_ms):
        try:
            if idle_ms:
                head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), idle_ms / 1000)
            else:
                head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.TimeoutError:
            return "idle"
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ssl.SSLError, OSError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            return "bad"
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                return "bad"
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "transfer-encoding" in headers:
            return "bad"
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            return "bad"
        if int(length):
            try:
                body = await self.reader.readexactly(int(length))
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
                return None
        return method, target, version, headers, body

    async def run(self):
        self.listener.connections += 1
        try:
            await self.serve_requests()
        finally:
            sslobj = self.writer.get_extra_info("ssl_object")
            if sslobj is not None:
                SNI.pop(id(sslobj), None)  # the id may be reused by a later connection

    async def serve_requests(self):
        try:
            while True:
                req = await self.read_request(self.idle_close_ms if self.served else 0)
                if req is None:
                    break
                if req == "idle":
                    log(self.args, "closing an idle keep-alive connection")
                    await self.close()
                    return
                if req == "bad":
                    await self.respond(400, {"error": {"message": "bad request"}},
                                       extra=("Connection: close",))
                    break
                self.listener.requests += 1
                keep = await self.handle(*req)
                self.served += 1
                if not keep:
                    break
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as e:
            log(self.args, "connection ended:", repr(e))
            self.writer.transport.abort()
            return
        await self.close()

    # ---- requests ----

    async def handle(self, method, target, version, headers, body):
        """Answers one request. Returns whether the connection stays open."""
        self.method = method
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        fault, arg = None, None
        if path.startswith("/fault/"):
            fault = path[len("/fault/"):]
        elif "x-fault" in headers:
            fault, _, arg = headers["x-fault"].partition("=")
            fault = fault.strip()
        if "x-idle-close-ms" in headers:
            self.idle_close_ms = int(headers["x-idle-close-ms"])

        def num(key, default):
            value = arg if arg else query.get(key)
            return int(value) if value and value.isdigit() else default

        if fault is not None:
            log(self.args, "fault", fault, arg or query)
            if fault == "delay":
                await asyncio.sleep(num("ms", 1000) / 1000)
            elif fault == "reset":
                n = num("bytes", 100)
                await self.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                b"Content-Length: %d\r\n\r\n" % (n * 10) + b"x" * n)
                await asyncio.sleep(0.1)  # let the bytes reach the client before the RST
                self.abort_rst()
                raise ConnectionResetError("fault: reset")
            elif fault in ("truncated-chunked", "truncated-chunked-fin"):
                await self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n"
                                b"a\r\n0123456789\r\n" b"20\r\n0123456789")
                await asyncio.sleep(0.1)
                if fault.endswith("-fin"):
                    self.abort_fin()
                    raise ConnectionResetError("fault: truncated, FIN")
                return False
            elif fault == "flaky":
                key = query.get("key", "")
                HITS[key] = HITS.get(key, 0) + 1
                if HITS[key] <= num("fail", 1):
                    if query.get("mode") == "close":
                        return False
                    if query.get("mode") == "hang":  # no answer until the client gives up
                        try:
                            await asyncio.wait_for(self.reader.read(), 30)
                        except (asyncio.TimeoutError, ConnectionError, OSError):
                            pass
                        return False
                    code = int(query.get("code", "503"))
                    await self.respond(code, {"error": {"message": f"flaky {HITS[key]}",
                                                        "code": code}})
                    return keep
            elif fault in ("close-delimited", "close-delimited-fin"):
                n = num("bytes", 5000)
                await self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"c" * n)
                if fault.endswith("-fin"):
                    await asyncio.sleep(0.1)  # let the bytes reach the client first
                    self.abort_fin()
                    raise ConnectionResetError("fault: close-delimited, FIN")
                return False
            elif fault == "interim-flood":
                head = b"HTTP/1.1 100 Continue\r\n\r\n"
                total = num("bytes", 1 << 20)
                block = head * 1024
                sent = 0
                try:
                    while sent < total:
                        await self.send(block)
                        sent += len(block)
                    await self.reader.read()  # until the client closes
                except (ConnectionError, OSError):
                    pass
                return False
            elif fault == "drip":
                n = num("bytes", 20)
                await self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                b"Content-Length: %d\r\n\r\n" % n)
                for _ in range(n):
                    await asyncio.sleep(1)
                    await self.send(b"d")
                return keep
            elif fault in ("500", "503", "status"):
                code = num("code", 500) if fault == "status" else int(fault)
                extra = ("Retry-After: 1",) if code == 503 else ()
                await self.respond(code, {"error": {"message": f"injected {code}",
                                                    "type": "server_error", "code": code}},
                                   extra=extra)
                return keep
            elif fault == "oversize-headers":
                n = num("bytes", 65536)
                pad, lines = "p" * 1000, []
                for i in range(0, n, 1024):
                    lines.append(f"X-Pad-{i // 1024}: {pad}")
                await self.respond(200, {"ok": True}, extra=lines)
                return keep
            elif fault == "answer-then-close":  # a keep-alive answer, then a close
                await asyncio.sleep(num("ms", 0) / 1000)
                await self.respond(200, {"ok": True})
                return False
            elif fault == "head-body":  # a body even for HEAD, in its own write (TLS record)
                await asyncio.sleep(num("ms", 0) / 1000)
                body = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
                await self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                b"Content-Length: %d\r\n\r\n" % len(body))
                await self.send(body)
                return keep
            elif fault == "close":
                return False
            elif fault == "close-if-reused":
                if self.served > 0:
                    self.writer.transport.abort()
                    raise ConnectionResetError("fault: close-if-reused")
            elif fault == "idle-close":
                self.idle_close_ms = num("ms", 200)
            else:
                await self.respond(400, {"error": {"message": f"unknown fault {fault}"}})
                return keep
            if path.startswith("/fault/"):
                await self.respond(200, {"ok": True, "fault": fault, "served": self.served})
                return keep

        if path == "/health":
            await self.respond(200, {"status": "ok"})
        elif path == "/stats":
            await self.respond(200, {"connections": self.listener.connections,
                                     "requests": self.listener.requests,
                                     "hits": HITS.get(query.get("key", ""), 0)})
        elif path == "/sni":
            sslobj = self.writer.get_extra_info("ssl_object")
            name = SNI.get(id(sslobj)) if sslobj is not None else None
            await self.respond(200, {"sni": name or "none"})
        elif path == "/echo":
            sslobj = self.writer.get_extra_info("ssl_object")
            await self.respond(200, {"method": method, "target": target, "headers": headers,
                                     "body_bytes": len(body), "served": self.served,
                                     "tls_session_reused": bool(sslobj and sslobj.session_reused)})
        elif path.startswith("/bytes/"):
            n = int(path[len("/bytes/"):] or "0")
            if n > MAX_BODY:
                await self.respond(413, {"error": {"message": "too large"}})
            else:
                pattern = bytes(range(ord("a"), ord("z") + 1))
                data = (pattern * (n // len(pattern) + 1))[:n]
                await self.respond(200, data, content_type="application/octet-stream")
        elif path == "/v1/embeddings":
            if method != "POST":
                await self.respond(405, {"error": {"message": "POST only"}})
                return keep
            try:
                doc = json.loads(body)
                inputs = doc["input"]
                if isinstance(inputs, str):
                    inputs = [inputs]
                if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
                    raise ValueError("input must be a string or a list of strings")
                model = str(doc.get("model", "tern-test-embedding"))
            except (ValueError, KeyError, TypeError) as e:
                await self.respond(400, {"error": {"message": f"bad request: {e}",
                                                   "type": "invalid_request_error"}})
                return keep
            tokens = sum(len(s.split()) for s in inputs)
            await self.respond(200, {
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": embedding(s)}
                         for i, s in enumerate(inputs)],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            })
        else:
            await self.respond(404, {"error": {"message": f"no route for {path}"}})
        return keep


def tls_context(certs, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(certs, name + ".pem"), os.path.join(certs, name + ".key"))

    def note_sni(sslobj, server_name, _ctx):
        SNI[id(sslobj)] = server_name  # None when the ClientHello had no server_name
        return None  # carry on with this context

    ctx.sni_callback = note_sni
    return ctx


async def serve(args):
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def quiet(loop_, context):  # handshake failures are the point of some tests
        log(args, "loop:", context.get("message"), repr(context.get("exception")))

    loop.set_exception_handler(quiet)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if not args.no_stdin:
        def on_stdin():
            try:
                data = os.read(0, 4096)
            except OSError:
                data = b""
            if not data:
                done.set()
        loop.add_reader(0, on_stdin)
    loop.call_later(args.max_seconds, done.set)

    specs = [(name, name) for name in (args.cert or ["good"])]
    if args.plain:
        specs.append(("plain", None))
    servers, ports = [], []
    for name, cert in specs:
        ctx = tls_context(args.certs, cert) if cert else None
        listener = Listener(name, args)

        async def on_conn(reader, writer, listener=listener):
            await Conn(listener, reader, writer).run()

        extra = {"ssl_handshake_timeout": 5, "ssl_shutdown_timeout": 2} if ctx else {}
        server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=ctx, limit=MAX_HEAD,
                                            reuse_address=True, **extra)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        ports.append(f"{name}={port}")
        if args.ipv6:
            try:
                server6 = await asyncio.start_server(on_conn, "::1", 0, ssl=ctx, limit=MAX_HEAD,
                                                     family=socket.AF_INET6, **extra)
                servers.append(server6)
                ports.append(f"{name}6={server6.sockets[0].getsockname()[1]}")
            except OSError as e:
                log(args, "no ::1:", e)
                ports.append(f"{name}6=none")
    first = ports[0].split("=", 1)[1]
    print(f"PORT {first} " + " ".join(ports), flush=True)
    await done.wait()
    # Bounded exit: open connections (a drip, a delay) are dropped, not waited for.
    sys.stdout.flush()
    os._exit(0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--certs", default=".", help="directory written by make_certs.sh")
    p.add_argument("--cert", action="append", choices=["good", "wrong-host", "unknown-ca", "other-ip",
                                                       "decoy-ip-san"],
                   help="a TLS listener with this certificate (repeatable; default good)")
    p.add_argument("--plain", action="store_true", help="also a plain HTTP listener")
    p.add_argument("--ipv6", action="store_true", help="also listen on ::1")
    p.add_argument("--idle-close-ms", type=int, default=0,
                   help="close keep-alive connections idle this long (0: never)")
    p.add_argument("--max-seconds", type=float, default=120)
    p.add_argument("--no-stdin", action="store_true", help="do not exit on stdin EOF")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
