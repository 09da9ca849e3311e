"""The Python programs ``bench/proxy.py`` starts as subprocesses (``python -c``): a minimal
upstream that answers every request with a fixed JSON body, and the bare Python proxy."""

PY_UPSTREAM = """
import asyncio, sys
ANSWER = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
          b"Content-Length: %d\\r\\n\\r\\n%s" % (len(sys.argv[2]), sys.argv[2].encode()))
class P(asyncio.Protocol):
    buf = b""
    def connection_made(self, t): self.t = t
    def data_received(self, d):
        self.buf += d
        while True:
            head, sep, rest = self.buf.partition(b"\\r\\n\\r\\n")
            if not sep: return
            n = 0
            for line in head.split(b"\\r\\n"):
                if line.lower().startswith(b"content-length:"): n = int(line.split(b":")[1])
            if len(rest) < n: return
            self.buf = rest[n:]
            self.t.write(ANSWER)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


# The floor of a Python proxy on this machine: uvloop, llhttp on both sides, one upstream
# connection per client connection, the request re-framed, the response relayed whole; no
# routing, limits, timers, pool, metrics or capture. What the fast engine costs above this is
# its features; what this costs above nginx is Python and the event loop.
BARE_PROXY = """
import asyncio, sys, httptools, uvloop
UPSTREAM = int(sys.argv[2])
class Up(asyncio.Protocol):
    def __init__(self, client):
        self.client, self.lines, self.body = client, [], []
        self.p = httptools.HttpResponseParser(self)
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.p.feed_data(d)
    def on_header(self, n, v): self.lines.append(n + b": " + v)
    def on_body(self, b): self.body.append(b)
    def on_message_complete(self):
        self.client.t.write(b"HTTP/1.1 200 OK\\r\\n" + b"\\r\\n".join(self.lines) + b"\\r\\n\\r\\n"
                            + b"".join(self.body))
        self.lines, self.body = [], []
class Client(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.p, self.up, self.pending = t, httptools.HttpRequestParser(self), None, []
        asyncio.get_running_loop().create_task(self.connect())
    async def connect(self):
        loop = asyncio.get_running_loop()
        _, self.up = await loop.create_connection(lambda: Up(self), "127.0.0.1", UPSTREAM)
        for data in self.pending: self.up.t.write(data)
    def data_received(self, d): self.p.feed_data(d)
    def on_message_begin(self): self.lines, self.body = [], []
    def on_url(self, u): self.url = u
    def on_header(self, n, v):
        if n.lower() != b"content-length": self.lines.append(n + b": " + v)
    def on_body(self, b): self.body.append(b)
    def on_message_complete(self):
        body = b"".join(self.body)
        head = self.p.get_method() + b" " + self.url + b" HTTP/1.1\\r\\n"
        data = (head + b"\\r\\n".join(self.lines)
                + b"\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
        if self.up is None: self.pending.append(data)
        else: self.up.t.write(data)
async def main():
    server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
uvloop.run(main())
"""
