"""Several TGI servers (TGI_URL=a,b,c): requests spread by load, sick servers skipped until they recover."""

from __future__ import annotations

import asyncio
import socket

from model.types import GenerationParams, TextDelta
from tgi_helpers import ask, collect

SHORT = GenerationParams(max_new_tokens=4)


async def wait_until(condition, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_concurrent_requests_go_to_the_least_busy_servers(start_tgi, start_backend, chatty_loaded):
    servers = [await start_tgi(chatty_loaded) for _ in range(3)]
    backend = await start_backend(chatty_loaded, [server.url for server in servers])
    streams = [backend.stream(ask(f"Talk {n}"), GenerationParams(max_new_tokens=2000)) for n in range(3)]
    for stream in streams:  # each starts (and holds its server) before the next is sent
        async for event in stream:
            if isinstance(event, TextDelta):
                break
    assert [server.in_flight for server in servers] == [1, 1, 1]
    for stream in streams:
        await stream.aclose()
    await wait_until(lambda: all(server.in_flight == 0 for server in servers))


async def test_idle_servers_take_turns(start_tgi, start_backend, tiny_loaded):
    servers = [await start_tgi(tiny_loaded) for _ in range(3)]
    backend = await start_backend(tiny_loaded, [server.url for server in servers])
    for _ in range(6):
        await collect(backend, ask("Hello"), SHORT)
    assert [len(server.received) for server in servers] == [2, 2, 2]


async def test_a_server_failing_its_health_check_is_skipped_until_it_recovers(
    start_tgi, start_backend, tiny_loaded
):
    sick, well = await start_tgi(tiny_loaded), await start_tgi(tiny_loaded)
    backend = await start_backend(tiny_loaded, [sick.url, well.url])
    sick.faults.unhealthy = True
    await wait_until(lambda: not backend.pool.replicas[0].healthy)
    for _ in range(3):
        await collect(backend, ask("Hello"), SHORT)
    assert (len(sick.received), len(well.received)) == (0, 3)
    assert "1 of 2" in (await backend.health()).detail

    sick.faults.unhealthy = False
    await wait_until(lambda: backend.pool.replicas[0].healthy)
    for _ in range(2):
        await collect(backend, ask("Hello"), SHORT)
    assert len(sick.received) >= 1


async def test_an_unreachable_server_is_skipped_and_a_restarted_one_comes_back(
    start_tgi, start_backend, tiny_loaded
):
    first, second = await start_tgi(tiny_loaded), await start_tgi(tiny_loaded)
    backend = await start_backend(tiny_loaded, [first.url, second.url])
    await first.stop()  # gone without a word, e.g. its machine was restarted
    for _ in range(3):
        _, result = await collect(backend, ask("Hello"), SHORT)
        assert result.extra["server"] == second.url
    assert not backend.pool.replicas[0].healthy

    await first.start()  # back on the same address
    await wait_until(lambda: backend.pool.replicas[0].healthy)
    await collect(backend, ask("Hello"), SHORT)
    await collect(backend, ask("Hello"), SHORT)
    assert len(first.received) >= 1


async def test_a_server_that_is_not_up_at_start_joins_when_it_comes_up(start_tgi, start_backend, tiny_loaded):
    up = await start_tgi(tiny_loaded)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        late_port = probe.getsockname()[1]
    backend = await start_backend(tiny_loaded, [up.url, f"http://127.0.0.1:{late_port}"])
    assert [replica.healthy for replica in backend.pool.replicas] == [True, False]

    late = await start_tgi(tiny_loaded, port=late_port)
    await wait_until(lambda: backend.pool.replicas[1].healthy)
    for _ in range(2):
        await collect(backend, ask("Hello"), SHORT)
    assert len(late.received) == 1
