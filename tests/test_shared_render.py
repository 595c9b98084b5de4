"""SharedRender: concurrent /metrics scrapes share renders, each answer gathered after its request arrived."""

from __future__ import annotations

import asyncio
import gzip
import threading

from exporter.server import SharedRender


class Gate:
    """A render that counts itself and blocks until released, so tests decide when renders end."""

    def __init__(self) -> None:
        self.count = 0
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.fail = False

    def __call__(self) -> list[bytes]:
        self.count += 1
        number = self.count
        self.started.release()
        self.release.acquire()
        if self.fail:
            raise RuntimeError("render broke")
        return [b"render ", str(number).encode(), b"\n"]

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.acquire, True, 10)


async def test_scrapes_during_a_render_share_the_next_one_and_see_data_gathered_after_they_arrived() -> None:
    gate = Gate()
    renders = SharedRender(gate)
    first = asyncio.create_task(renders.get(False))
    await gate.wait_started()
    # Nine scrapes arrive while render 1 runs: none of them may get render 1's (older) data.
    later = [asyncio.create_task(renders.get(i % 2 == 0)) for i in range(9)]
    await asyncio.sleep(0.05)
    assert gate.count == 1  # one render at a time
    gate.release.release()
    assert b"".join(await first) == b"render 1\n"
    await gate.wait_started()
    gate.release.release()
    answers = await asyncio.gather(*later)
    assert gate.count == 2 and renders.renders == 2
    for i, pieces in enumerate(answers):
        text = gzip.decompress(b"".join(pieces)) if i % 2 == 0 else b"".join(pieces)
        assert text == b"render 2\n"


async def test_a_failed_render_fails_its_scrapes_and_the_next_scrape_renders_again() -> None:
    gate = Gate()
    renders = SharedRender(gate)
    gate.fail = True
    waiting = [asyncio.create_task(renders.get(True)) for _ in range(3)]
    await gate.wait_started()
    gate.release.release()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    gate.fail = False
    gate.release.release()  # the next render need not wait
    assert b"".join(await renders.get(False)) == b"render 2\n"


async def test_scrapes_waiting_when_the_renderer_is_cancelled_fail_rather_than_hang() -> None:
    gate = Gate()
    renders = SharedRender(gate)
    try:
        first = asyncio.create_task(renders.get(False))
        await gate.wait_started()
        second = asyncio.create_task(renders.get(True))
        await asyncio.sleep(0)
        assert renders._driver is not None
        renders._driver.cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 10)
        assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    finally:
        gate.release.release()
