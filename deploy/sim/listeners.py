"""Stand-in listeners: accept each TCP connection and close it, answer each UDP datagram with ``ok``.

Where a real server cannot run here (a ClickHouse server, sshd, k3s), or before the real one is started, this
process listens on the service's declared bindings so that a probe tells an open port from a filtered one.
    python -m deploy.sim.listeners ADDRESS:PORT/PROTO ...
"""

from __future__ import annotations

import selectors
import socket
import sys


def serve(bindings: list[tuple[str, int, str]]) -> None:
    sel = selectors.DefaultSelector()
    for address, port, protocol in bindings:
        kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if protocol == "tcp":
            sock.listen(64)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, protocol)
    print("listening", len(bindings), flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if key.data == "tcp":
                conn, _ = sock.accept()
                conn.close()
            else:
                _, peer = sock.recvfrom(2048)
                sock.sendto(b"ok", peer)


def parse(spec: str) -> tuple[str, int, str]:
    where, _, protocol = spec.partition("/")
    address, _, port = where.rpartition(":")
    return address, int(port), protocol or "tcp"


if __name__ == "__main__":
    serve([parse(s) for s in sys.argv[1:]])
