"""The write-once guard: every request Azurite answered, checked against the archive container's one rule.

Azurite's access log has a line per request: method, path and query, status.
In an archive container a request may read, stage an uncommitted block, or
create a blob; nothing may change or delete a blob that exists. So, in order:

- a Put Blob or Put Block List that succeeds on a name that was already created
  is an overwrite (the app's carry ``If-None-Match: *`` and fail with 409);
- Delete Blob, and Set Blob Metadata / Properties / Tags / Tier, a lease, an
  append, a page write or a snapshot on a blob, that succeed, are changes.

A test that tampers with the archive on purpose (to show that ``verify`` finds
it) names the blob first (``allow``); those requests are not counted. The test
session and ``make demo`` run this guard over everything Azurite answered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
_CHANGES = {"metadata", "properties", "tags", "tier", "lease", "appendblock", "page", "snapshot", "incrementalcopy"}


@dataclass(frozen=True)
class StorageRequest:
    method: str
    container: str
    blob: str  # "" for a container or account request
    comp: str
    status: int

    @property
    def describe(self) -> str:
        comp = f"?comp={self.comp}" if self.comp else ""
        return f"{self.method} {self.container}/{self.blob}{comp} -> {self.status}"


def read_requests(lines: Iterable[str]) -> Iterator[StorageRequest]:
    """The requests in Azurite's access log (path-style: /{account}/{container}/{blob})."""
    for line in lines:
        match = _LINE.search(line)
        if not match:
            continue
        url = urlsplit(match["target"])
        parts = [unquote(p) for p in url.path.split("/")]
        if len(parts) < 3 or not parts[2]:
            continue
        comp = parse_qs(url.query).get("comp", [""])[0]
        yield StorageRequest(match["method"], parts[2], "/".join(parts[3:]), comp, int(match["status"]))


@dataclass
class Guard:
    is_archive: Callable[[str], bool]
    allowed: set[tuple[str, str]] = field(default_factory=set)  # (container, blob) tampered with on purpose
    created: set[tuple[str, str]] = field(default_factory=set)
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def allow(self, container: str, blob: str) -> None:
        self.allowed.add((container, blob))

    def see(self, request: StorageRequest) -> None:
        if not self.is_archive(request.container) or not request.blob:
            return
        self.checked += 1
        key = (request.container, request.blob)
        if key in self.allowed or not 200 <= request.status < 300:
            return  # refused requests change nothing
        why = self._why(request, key in self.created)
        if request.method == "PUT" and request.comp in ("", "blocklist"):
            self.created.add(key)
        if why is not None:
            self.violations.append(f"{request.describe}: {why}")

    @staticmethod
    def _why(request: StorageRequest, existed: bool) -> str | None:
        if request.method in ("GET", "HEAD"):
            return None
        if request.method == "DELETE":
            return "deleted a blob"
        if request.method != "PUT":
            return f"{request.method} on a blob"
        if request.comp in _CHANGES:
            return f"changed a blob ({request.comp})"
        if request.comp in ("", "blocklist"):
            return "overwrote a blob" if existed else None
        if request.comp in ("block", "legalhold", "immutabilityPolicies"):
            return None  # an uncommitted block changes no blob; holds and policies are the compliance operations
        return f"unexpected blob operation ({request.comp})"

    def report(self) -> str:
        if not self.violations:
            return f"write-once: {self.checked} requests to the archive, none changed or deleted a blob"
        shown = "\n  ".join(self.violations[:20])
        return f"write-once: {len(self.violations)} of {self.checked} archive requests broke the rule:\n  {shown}"


def check_log(path: Path, guard: Guard) -> Guard:
    with path.open(errors="replace") as log:
        for request in read_requests(log):
            guard.see(request)
    return guard
