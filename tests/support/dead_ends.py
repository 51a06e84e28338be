"""Endpoints that do not answer, on loopback: a port nothing listens on (refused at once), and one that takes no
connection (a listening socket whose queue is full and is never accepted: the kernel drops every new SYN, so a
client waits for its connect timeout, as against a firewalled account)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port that never completes a connection while inside."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(3):  # the queue of a backlog-0 socket holds one; the rest wait in SYN_SENT
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, server]:
            sock.close()


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago): a connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def azurite_at(port: int) -> str:
    """Azurite's connection string, pointed at ``port`` for both blobs and queues."""
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50u"
        "SRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
