"""Which of the given endpoints answer, probed from inside a namespace (TCP connect; UDP: a datagram and a reply).

    python -m deploy.sim.probe ADDRESS:PORT/PROTO ...   -> prints the answering ones, one per line
A filtered port (dropped by a firewall) and an unroutable address both count as not answering.
"""

from __future__ import annotations

import socket
import sys
from concurrent.futures import ThreadPoolExecutor

from deploy.sim.listeners import parse

TIMEOUT = 1.0


def answers(address: str, port: int, protocol: str) -> bool:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.connect((address, port))
            if protocol == "udp":
                sock.send(b"probe")
                sock.recv(64)
            return True
        except OSError:
            return False


if __name__ == "__main__":
    specs = sys.argv[1:]
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(lambda s: answers(*parse(s)), specs))
    for spec, ok in zip(specs, results, strict=True):
        if ok:
            print(spec)
