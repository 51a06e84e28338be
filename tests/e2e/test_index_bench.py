"""The index benchmark at a tiny scale (its own Azurite): it seeds, both lookups agree, and the day's lookup makes
one listing of the index where the full scan lists the state container and reads every manifest."""

from __future__ import annotations

from bench.index_bench import report, run_bench


async def test_the_index_bench_runs_and_the_day_lookup_costs_what_it_returns() -> None:
    result = await run_bench(300, 3)
    index, scan = result["lookups"]
    assert index["found"] == scan["found"] == 100
    assert index["requests"] == {
        "archive: container GET list": 1,  # the day's prefix
        "state: container GET list": 1,  # the legal-hold registry
        "state: get blob": 100,  # the day's manifests, and no others
    }
    assert scan["requests"] == {"state: container GET list": 1, "state: get blob": 300}
    assert "x fewer requests" in report(result)
