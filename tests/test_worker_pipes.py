"""The pipes between the main process and a probe worker: messages, batching, and a backed-up pipe.

Real OS pipes and the real asyncio pipe transports; only the two processes are one here.
"""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import MappingProxyType

import pytest

from exporter.config import Endpoint, parse_config
from exporter.results import FailureReason, ProbeResult
from exporter.scheduler import SkipCause
from exporter.workers.pool import split_cap
from exporter.workers.process import Outbox
from exporter.workers.wire import Assignment, Batch, decode_result, encode_result, frame, read_message


def result(name: str, ok: bool = True) -> ProbeResult:
    return ProbeResult(
        endpoint=name,
        success=ok,
        reason=None if ok else FailureReason.TIMEOUT,
        message="" if ok else "timed out",
        started_at=1_700_000_000.5,
        duration_seconds=0.0512,
        status_code=200 if ok else 0,
        http_version=1.1,
        ssl=True,
        cert_expiry_timestamp=1_800_000_000.0,
        phases=MappingProxyType({"resolve": 0.001, "connect": 0.002, "tls": 0.01, "processing": 0.03, "transfer": 0.0}),
    )


def test_a_result_survives_the_trip() -> None:
    for original in (result("a"), result("b", ok=False)):
        back = decode_result(encode_result(original))
        assert back == original
        assert isinstance(back.phases, MappingProxyType)


@dataclass
class Pipe:
    """A real pipe: an asyncio write transport on one end, a stream reader on the other."""

    writer: asyncio.WriteTransport
    reader: asyncio.StreamReader
    read_end: asyncio.ReadTransport

    def start_reading(self) -> None:
        self.read_end.resume_reading()


@pytest.fixture
async def pipe() -> AsyncIterator[Pipe]:
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    reader = asyncio.StreamReader()
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
    )
    write_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(write_fd, "wb", 0))
    read_transport.pause_reading()  # each test decides when the main process "reads"
    yield Pipe(write_transport, reader, read_transport)
    write_transport.close()
    read_transport.close()


async def test_messages_are_framed_and_end_with_the_pipe(pipe: Pipe) -> None:
    endpoint = Endpoint.model_validate({"name": "a", "url": "http://example.com/", "expect": {"body_matches": "o+k"}})
    sent = Assignment(upsert=(endpoint,), remove=("gone",), max_concurrency=7, resume_from={"a": 12.5})
    pipe.writer.write(frame(sent))
    pipe.writer.write(frame(Batch((), (("a", 2, SkipCause.LATE),), 0)))
    pipe.writer.close()
    pipe.start_reading()
    assert await read_message(pipe.reader) == sent
    assert await read_message(pipe.reader) == Batch((), (("a", 2, SkipCause.LATE),), 0)
    assert await read_message(pipe.reader) is None


async def test_results_of_one_loop_iteration_go_out_as_one_batch(pipe: Pipe) -> None:
    outbox = Outbox(pipe.writer)
    outbox.result(result("a"))
    outbox.result(result("b", ok=False))
    outbox.skipped("c", 1, SkipCause.LATE)
    outbox.skipped("c", 2, SkipCause.LATE)
    await asyncio.sleep(0)  # the loop turns: the batch is written
    outbox.result(result("d"))
    await asyncio.sleep(0)
    pipe.start_reading()
    first = await read_message(pipe.reader)
    second = await read_message(pipe.reader)
    assert isinstance(first, Batch) and isinstance(second, Batch)
    assert [decode_result(r).endpoint for r in first.results] == ["a", "b"]
    assert first.skipped == (("c", 3, SkipCause.LATE),)
    assert [decode_result(r).endpoint for r in second.results] == ["d"]


@pytest.mark.looptime  # the sleeps below are on the loop's fake clock
async def test_an_idle_worker_sends_heartbeats_and_a_busy_one_needs_none(pipe: Pipe) -> None:
    outbox = Outbox(pipe.writer)
    outbox.heartbeat(1.0)  # at once: nothing was written yet
    pipe.start_reading()
    assert await asyncio.wait_for(read_message(pipe.reader), 0.5) == Batch((), (), 0)
    assert await asyncio.wait_for(read_message(pipe.reader), 1.5) == Batch((), (), 0)  # idle for a period: another
    for _ in range(6):  # results written in every period: they are the sign of life
        outbox.result(result("a"))
        await asyncio.sleep(0.5)
    outbox.heartbeat_cancel()
    outbox.flush()
    pipe.writer.close()
    batches = []
    while (message := await read_message(pipe.reader)) is not None:
        batches.append(message)
    assert all(isinstance(b, Batch) and b.results for b in batches)


async def test_a_backed_up_pipe_drops_results_counts_them_and_never_blocks(pipe: Pipe) -> None:
    # Nobody reads: the kernel's pipe buffer fills, then the transport's own buffer up to the
    # limit; after that results are dropped (and counted), and writing never blocks the loop.
    outbox = Outbox(pipe.writer, max_backlog=256 * 1024)
    buffered = 0
    while pipe.writer.get_write_buffer_size() <= 256 * 1024:
        for _ in range(50):
            outbox.result(result(f"ep-{buffered}"))
            buffered += 1
        await asyncio.sleep(0)
    for _ in range(30):  # these find the pipe backed up
        outbox.result(result("late"))
        await asyncio.sleep(0)
    outbox.skipped("late", 4, SkipCause.LATE)
    await asyncio.sleep(0)
    pipe.start_reading()  # the main process catches up
    got = 0
    while got < buffered:
        message = await asyncio.wait_for(read_message(pipe.reader), timeout=10)
        assert isinstance(message, Batch) and message.dropped == 0
        got += len(message.results)
    assert got == buffered
    outbox.result(result("after"))  # the next batch that gets through carries the count
    message = await asyncio.wait_for(read_message(pipe.reader), timeout=10)
    assert isinstance(message, Batch)
    assert [decode_result(r).endpoint for r in message.results] == ["after"]
    assert message.dropped == 30
    assert message.skipped == (("late", 4, SkipCause.LATE),)  # skipped ticks are kept, not dropped


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [(64, 2, [32, 32]), (65, 2, [33, 32]), (10, 3, [4, 3, 3]), (3, 3, [1, 1, 1]), (64, 1, [64])],
)
def test_the_probe_cap_is_split_among_workers(total: int, parts: int, expected: list[int]) -> None:
    assert split_cap(total, parts) == expected
    assert sum(split_cap(total, parts)) == total


def test_endpoints_sharing_settings_share_them_across_the_pipe() -> None:
    lines = "".join(f"  - {{name: ep-{i}, url: 'http://127.0.0.1/'}}\n" for i in range(3))
    endpoints = parse_config("endpoints:\n" + lines).endpoints  # the loader shares their parts
    shared: dict[int, object] = {}
    sent = Assignment(tuple(ep.probe_spec(shared) for ep in endpoints), (), 4, {})
    received = pickle.loads(frame(sent)[4:])
    first, *others = received.upsert
    assert all(spec.expect is first.expect and spec.tls is first.tls for spec in others)
    assert received == sent
