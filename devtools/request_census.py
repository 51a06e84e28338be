"""Storage requests counted by what they are, from Azurite's access log: what a chunk costs, in requests.

Every request Azurite answers is one line of its access log (method, path and
query, status). The census names each one — ``put block``, ``get blob``,
``put message`` — and the role of the container or queue it went to (the
archive, the state, the chunk queue), so a workload's cost can be read per
chunk, by kind, without instrumenting the code under test. The benchmark
prints it; a test holds the count for one chunk (``tests/e2e/test_request_census.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from devtools.write_once import StorageRequest, read_requests

_QUEUE_OPS = {"POST": "put message", "GET": "get messages", "DELETE": "delete message", "PUT": "update message"}
_BLOB_OPS = {
    ("PUT", ""): "put blob",
    ("PUT", "block"): "put block",
    ("PUT", "blocklist"): "put block list",
    ("GET", "blocklist"): "get block list",
    ("GET", ""): "get blob",
    ("HEAD", ""): "get properties",
    ("PUT", "lease"): "lease",
    ("PUT", "metadata"): "set metadata",
    ("PUT", "properties"): "set properties",
    ("PUT", "tags"): "set tags",
    ("GET", "tags"): "get tags",
    ("DELETE", ""): "delete blob",
    ("PUT", "legalhold"): "legal hold",
}
# The Functions host's own queue traffic (receive, complete, release): not the app's requests.
HOST_QUEUE_OPS = frozenset({"get messages", "delete message", "update message"})


def operation(request: StorageRequest) -> str:
    """What the request did, in the storage REST API's words."""
    if request.blob == "messages" or request.blob.startswith("messages/"):
        return _QUEUE_OPS.get(request.method, f"queue {request.method}")
    if not request.blob:
        return f"container {request.method} {request.comp}".strip()
    return _BLOB_OPS.get((request.method, request.comp), f"blob {request.method} {request.comp}".strip())


def read_log(path: Path, start: int = 0) -> tuple[list[StorageRequest], int]:
    """The requests logged from byte ``start`` on, and where the log ends now (the next window's start)."""
    with path.open("rb") as log:
        log.seek(start)
        data = log.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written belongs to the next window
    return list(read_requests(complete.decode(errors="replace").splitlines())), start + len(complete)


def census(requests: Iterable[StorageRequest], role_of: Callable[[str], str | None]) -> Counter[tuple[str, str]]:
    """Requests by (role, operation); requests to containers or queues without a role are left out."""
    counts: Counter[tuple[str, str]] = Counter()
    for request in requests:
        role = role_of(request.container)
        if role is not None:
            counts[(role, operation(request))] += 1
    return counts


def app_requests(counts: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """The app's requests for its chunks: the host's receive/complete/release of queue messages, and the
    once-per-process container and queue set-up, taken out."""
    return Counter(
        {key: n for key, n in counts.items() if key[1] not in HOST_QUEUE_OPS and not key[1].startswith("container")}
    )
