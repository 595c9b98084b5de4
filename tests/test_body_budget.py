"""The body budget: bodies kept for checks share one bound per process; probes wait their turn, and nothing leaks."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvloop

from exporter.config import ConfigError, Endpoint, parse_config
from exporter.probes.budget import BodyBudget
from exporter.probes.http import HttpProber
from exporter.results import FailureReason, ProbeResult

MiB = 1024 * 1024


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    """Run a coroutine on the standard loop and on uvloop, which worker processes use."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run_on(coro: Any) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run_on


def body_of(size: int, mark: str) -> bytes:
    """`size` bytes ending with `mark`, so a check that finds the mark read the whole body."""
    tail = mark.encode()
    return b"x" * (size - len(tail)) + tail


async def _respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer GET /<framing>/<size>/<mark>: the body framed by length, chunks, gzip or the connection's end.

    `stall` sends 900 KiB of a 1 MiB body and then nothing; `reset` sends half the body and resets.
    """
    try:
        request = await reader.readuntil(b"\r\n\r\n")
        framing, size, mark = request.split(b" ")[1].decode().strip("/").split("/")
        body = body_of(int(size), mark)
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        if framing == "length":
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        elif framing == "chunked":
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (256 * 1024, body[i : i + 256 * 1024]) for i in range(0, len(body), 256 * 1024)
            )
            writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n")
        elif framing == "gzip":
            packed = gzip.compress(body, 1)
            writer.write(f"{head}Content-Encoding: gzip\r\nContent-Length: {len(packed)}\r\n\r\n".encode() + packed)
        elif framing == "close":
            writer.write(f"{head}Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
            writer.close()
            return
        elif framing == "stall":
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: 900 * 1024])
            await writer.drain()
            await asyncio.sleep(3600)
        elif framing == "reset":
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            await writer.drain()
            writer.transport.abort()
            return
        await writer.drain()
        await reader.read()  # until the prober closes
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass  # the prober went, or the test is over
    finally:
        writer.close()


@asynccontextmanager
async def bodies_server() -> AsyncIterator[str]:
    server = await asyncio.start_server(_respond, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()


def endpoint(name: str, url: str, *, timeout: str = "20s", **expect: Any) -> Endpoint:
    checks = expect or {"body_contains": f"END-{name}"}
    return Endpoint.model_validate(
        {"name": name, "url": url, "timeout": timeout, "interval": "60s", "body_size_limit": "3MiB", "expect": checks}
    )


async def until(condition: Callable[[], bool]) -> None:
    """Wait until the condition holds: the budget offers nothing to wait on, and probes only hold it for a moment."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.005)


def test_many_large_bodies_take_turns_within_the_budget(run: Callable[[Any], Any]) -> None:
    """24 probes of 2 MiB bodies with body checks, 5 MiB of budget: all pass, never more than 5 MiB kept."""
    budget = BodyBudget(5 * MiB)

    async def main() -> list[ProbeResult]:
        prober = HttpProber(budget=budget)
        framings = ["length", "chunked", "gzip", "close"]
        async with bodies_server() as base:
            names = [f"b{i}" for i in range(24)]
            eps = [endpoint(n, f"{base}/{framings[i % 4]}/{2 * MiB}/END-{n}") for i, n in enumerate(names)]
            try:
                return list(await asyncio.gather(*(prober.probe(ep) for ep in eps)))
            finally:
                await prober.aclose()

    results = run(main())
    assert [(r.endpoint, r.reason, r.message) for r in results if not r.success] == []
    assert all(r.body_bytes == 2 * MiB for r in results)
    assert budget.waits > 0  # the budget was short, and probes waited their turn rather than failing
    assert 2 * MiB <= budget.peak <= budget.total
    assert budget.used == 0 and budget.waiting == 0


def test_a_probe_starved_past_its_deadline_times_out_saying_it_waited_for_the_budget(
    run: Callable[[Any], Any],
) -> None:
    budget = BodyBudget(1 * MiB)

    async def main() -> tuple[ProbeResult, ProbeResult]:
        prober = HttpProber(budget=budget)
        async with bodies_server() as base:
            holder = asyncio.create_task(prober.probe(endpoint("held", f"{base}/stall/{MiB}/END", timeout="3s")))
            await until(lambda: budget.used >= 900 * 1024)  # the stalled body holds most of the budget
            starved = await prober.probe(endpoint("starved", f"{base}/length/{MiB}/END-starved", timeout="500ms"))
            try:
                return await holder, starved
            finally:
                await prober.aclose()

    held, starved = run(main())
    assert starved.reason is FailureReason.TIMEOUT
    assert "waiting for room in the body budget" in starved.message
    assert held.reason is FailureReason.TIMEOUT and "reading the body" in held.message
    assert budget.used == 0 and budget.waiting == 0


def test_the_budget_is_all_given_back_however_probes_end(run: Callable[[Any], Any]) -> None:
    """Successes, failed checks, oversize and cut-short bodies, timeouts and cancelled probes, over and over."""
    budget = BodyBudget(4 * MiB)

    async def main() -> list[ProbeResult]:
        prober = HttpProber(budget=budget)
        results: list[ProbeResult] = []
        async with bodies_server() as base:
            cases = [
                endpoint("ok", f"{base}/chunked/{MiB}/END-ok"),
                endpoint("mismatch", f"{base}/length/{MiB}/nope", body_contains="absent"),
                endpoint("oversize", f"{base}/chunked/{4 * MiB}/END-oversize"),
                endpoint("gzip-oversize", f"{base}/gzip/{4 * MiB}/END-gzip-oversize"),
                endpoint("reset", f"{base}/reset/{2 * MiB}/END-reset"),
                endpoint("stall", f"{base}/stall/{MiB}/END-stall", timeout="300ms"),
                endpoint("status", f"{base}/length/{MiB}/END", status=[404]),
            ]
            try:
                for _ in range(5):
                    results += await asyncio.gather(*(prober.probe(ep) for ep in cases))
                    cancelled = asyncio.create_task(prober.probe(endpoint("cancelled", f"{base}/stall/{MiB}/END")))
                    await until(lambda: budget.used > 0)
                    cancelled.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await cancelled
                    assert budget.used == 0
            finally:
                await prober.aclose()
        return results

    results = run(main())
    reasons = {r.endpoint: r.reason for r in results}
    assert reasons.pop("reset") in (FailureReason.CONNECT, FailureReason.PROTOCOL)  # cut short: reset or closed
    assert reasons == {
        "ok": None,
        "mismatch": FailureReason.BODY,
        "oversize": FailureReason.BODY,
        "gzip-oversize": FailureReason.BODY,
        "stall": FailureReason.TIMEOUT,
        "status": FailureReason.HTTP_STATUS,
    }
    assert budget.used == 0 and budget.waiting == 0 and budget.peak <= budget.total


def test_a_body_that_cannot_fit_in_the_whole_budget_fails_at_once_with_a_reason(run: Callable[[Any], Any]) -> None:
    budget = BodyBudget(1 * MiB)

    async def main() -> ProbeResult:
        prober = HttpProber(budget=budget)
        async with bodies_server() as base:
            try:
                return await prober.probe(endpoint("big", f"{base}/chunked/{2 * MiB}/END-big"))
            finally:
                await prober.aclose()

    result = run(main())
    assert result.reason is FailureReason.ERROR
    assert "body budget" in result.message
    assert budget.used == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "body_memory_limit: 1MiB\nendpoints:\n- {name: a, url: 'http://h/', body_size_limit: 2MiB,"
            " expect: {body_contains: ok}}\n",
            "config.yml:3:48: endpoints[a].body_size_limit: must be at most body_memory_limit (1048576 bytes)"
            " for an endpoint with body checks, got 2097152",
        ),
        (
            "body_memory_limit: 1MiB\nendpoints:\n- {name: a, url: 'http://h/', expect: {body_matches: ok}}\n"
            "- {name: b, url: 'http://h/', expect: {body_not_matches: x}}\n",
            "config.yml:1:20: body_memory_limit: must be at least body_size_limit (10485760 bytes), got 1048576",
        ),
        ("body_memory_limit: 1MiB\nendpoints:\n- {name: a, url: 'http://h/', body_size_limit: 2MiB}\n", None),
        ("endpoints:\n- {name: a, url: 'http://h/', body_size_limit: 64MiB, expect: {body_contains: ok}}\n", None),
    ],
)
def test_a_body_a_check_reads_must_fit_in_body_memory_limit(text: str, problem: str | None) -> None:
    """Such a probe could never finish: refused with the config, at the line that says so."""
    if problem is None:
        assert parse_config(text, "config.yml").body_memory_limit in (MiB, 64 * MiB)
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.yml")
    assert [str(p) for p in caught.value.problems] == [problem]
