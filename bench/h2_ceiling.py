"""The ceiling: APNs requests on one HTTP/2 connection with bare, tuned h2.

No Clarion code. The same tuning DESIGN.md measured (validation and
normalisation off, the fixed headers' HPACK bytes computed once, per-request
values as literals without Huffman, O(1) open-stream counting, one write per
loop turn), a fixed ~150-byte payload and a fixed JWT: what is left of a
client once all product logic is gone.

    python bench/h2_ceiling.py --url https://127.0.0.1:PORT --ca ca.pem --jwt TOKEN --topic com.example.app
prints one JSON line: {"sends": n, "seconds": wall, "cpu_seconds": cpu, "sends_per_second": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
import uuid
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
from hpack.hpack import encode_integer

CONFIG = h2.config.H2Configuration(
    client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False,
    validate_inbound_headers=False, normalize_inbound_headers=False,
)
PAYLOAD = json.dumps({"aps": {"alert": {"title": "Hello", "body": "A message of ordinary length for a push"},
                              "sound": "default"}, "clarion": {"delivery_id": str(uuid.uuid4())}}).encode()


def literal(name: bytes, value: bytes) -> bytes:
    return b"\x00" + bytes(encode_integer(len(name), 7)) + name + bytes(encode_integer(len(value), 7)) + value


class Connection(h2.connection.H2Connection):
    @property
    def open_outbound_streams(self) -> int:
        return len(self.streams)


class BlockEncoder:
    """Headers arrive as one pre-encoded block: [(b":block", bytes)]."""

    header_table_size = 4096

    def encode(self, headers, huffman=False):  # type: ignore[no-untyped-def]
        return headers[0][1]


class Client(asyncio.Protocol):
    def __init__(self, fixed_block: bytes, total: int, inflight: int) -> None:
        self.conn = Connection(config=CONFIG)
        self.conn.encoder = BlockEncoder()  # type: ignore[assignment]
        self.fixed, self.total, self.inflight = fixed_block, total, inflight
        self.started = self.done = self.errors = 0
        self.finished = asyncio.get_running_loop().create_future()
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        for event in conn.receive_data(data):
            kind = type(event)
            if kind is h2.events.ResponseReceived:
                if event.headers[0][1] != b"200":
                    self.errors += 1
            elif kind is h2.events.StreamEnded:
                stream = conn.streams.pop(event.stream_id)
                conn._closed_streams[event.stream_id] = stream.closed_by
                self.done += 1
            elif kind is h2.events.RemoteSettingsChanged and not self.ready.done():
                self.ready.set_result(None)
        if self.ready.done():
            self.fill()
        self.transport.write(conn.data_to_send())
        if self.done == self.total and not self.finished.done():
            self.finished.set_result(None)

    def fill(self) -> None:
        conn = self.conn
        while self.started < self.total and self.started - self.done < self.inflight:
            stream_id = conn.get_next_available_stream_id()
            block = self.fixed + literal(b"apns-id", str(uuid.uuid4()).encode())
            conn.send_headers(stream_id, [(b":block", block)])
            conn.send_data(stream_id, PAYLOAD, end_stream=True)
            self.started += 1


def fixed_block(authority: bytes, jwt: bytes, topic: bytes, token: bytes) -> bytes:
    return (b"\x83\x87"  # :method POST, :scheme https (static table)
            + b"\x01" + bytes(encode_integer(len(authority), 7)) + authority
            + b"\x04" + bytes(encode_integer(len(b"/3/device/" + token), 7)) + b"/3/device/" + token
            + literal(b"authorization", b"bearer " + jwt) + literal(b"apns-topic", topic)
            + literal(b"apns-push-type", b"alert") + literal(b"apns-priority", b"10")
            + literal(b"apns-expiration", b"0"))


async def run(url: str, ca: str, jwt: str, topic: str, total: int, inflight: int) -> dict[str, float]:
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["h2"])
    block = fixed_block(parts.netloc.encode(), jwt.encode(), topic.encode(), b"ab" * 32)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(
        lambda: Client(block, total, inflight), parts.hostname, parts.port, ssl=context)
    await client.ready
    wall, cpu = time.perf_counter(), time.process_time()
    client.fill()
    transport.write(client.conn.data_to_send())
    await client.finished
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    transport.close()
    return {"sends": total, "errors": client.errors, "seconds": wall, "cpu_seconds": cpu,
            "sends_per_second": total / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--jwt", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--inflight", type=int, default=1000)
    args = parser.parse_args()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(run(args.url, args.ca, args.jwt, args.topic, args.n, args.inflight))))


if __name__ == "__main__":
    main()
