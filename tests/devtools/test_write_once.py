"""The write-once guard itself: it must see every way a request can change or delete an archived blob."""

from __future__ import annotations

from devtools.write_once import Guard, read_requests

ACCOUNT = "/devstoreaccount1"


def line(method: str, target: str, status: int) -> str:
    return f'127.0.0.1 - - [01/Dec/2026:10:16:39 +0000] "{method} {ACCOUNT}/{target} HTTP/1.1" {status} -'


def guard(*lines: str) -> Guard:
    g = Guard(is_archive=lambda c: c.startswith("rec-"))
    for request in read_requests(lines):
        g.see(request)
    return g


def test_creating_reading_and_staging_pass() -> None:
    g = guard(
        line("PUT", "rec-1/a/b.json", 201),
        line("PUT", "rec-1/a/b.json", 409),  # a second create, refused by If-None-Match: *
        line("GET", "rec-1/a/b.json", 200),
        line("HEAD", "rec-1/a/b.json", 200),
        line("PUT", "rec-1/a/m.mp4?comp=block&blockid=YmxrMA%3D%3D", 201),
        line("PUT", "rec-1/a/m.mp4?comp=blocklist", 201),
        line("PUT", "rec-1/a/m.mp4?comp=blocklist", 409),
        line("GET", "rec-1?restype=container&comp=list", 200),
        line("PUT", "rec-1?restype=container", 201),
    )
    assert g.violations == [] and g.checked == 7


def test_every_change_of_an_archived_blob_is_caught() -> None:
    g = guard(
        line("PUT", "rec-1/a/b.json", 201),
        line("PUT", "rec-1/a/b.json", 201),  # an overwrite that succeeded
        line("PUT", "rec-1/a/b.json?comp=metadata", 200),
        line("PUT", "rec-1/a/b.json?comp=properties", 200),
        line("PUT", "rec-1/a/b.json?comp=tags", 204),
        line("PUT", "rec-1/a/b.json?comp=tier", 200),
        line("PUT", "rec-1/a/b.json?comp=lease", 201),
        line("DELETE", "rec-1/a/b.json", 202),
        line("PUT", "rec-1/a/m.mp4?comp=blocklist", 201),
        line("PUT", "rec-1/a/m.mp4?comp=blocklist", 201),
    )
    reasons = [v.split(": ", 1)[1] for v in g.violations]
    assert reasons == [
        "overwrote a blob",
        "changed a blob (metadata)",
        "changed a blob (properties)",
        "changed a blob (tags)",
        "changed a blob (tier)",
        "changed a blob (lease)",
        "deleted a blob",
        "overwrote a blob",
    ]
    assert "deletes" not in g.report() and "8 of 10" in g.report()


def test_other_containers_and_allowed_tampering_are_not_counted() -> None:
    g = Guard(is_archive=lambda c: c.startswith("rec-"))
    g.allow("rec-1", "a/tampered.mp4")
    for request in read_requests(
        [
            line("DELETE", "state-1/a/manifest.json", 202),
            line("PUT", "state-1/a/manifest.json", 201),
            line("PUT", "state-1/a/manifest.json", 201),
            line("DELETE", "rec-1/a/tampered.mp4", 202),
            "Azurite Blob service is starting at http://127.0.0.1:1",
        ]
    ):
        g.see(request)
    assert g.violations == [] and g.checked == 1
