"""The bot's Bot API client (`bot.bot_api_http`): PTB's requests over aiohttp, failing as PTB's own do."""

from __future__ import annotations

import asyncio
import base64

import pytest
import telegram
from aiohttp import web
from telegram import InputFile
from telegram.error import NetworkError, TimedOut

from bot.bot_api_http import AiohttpRequest

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
ME = {"id": 123456789, "is_bot": True, "first_name": "Bot", "username": "a_bot"}
SENT = {"message_id": 7, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "hi"}


async def _serve(handler) -> tuple[web.AppRunner, str]:
    """A Bot API server: getMe answered here, every other method by `handler`."""

    async def route(request: web.Request) -> web.Response:
        if request.path.endswith("/getMe"):
            return web.json_response({"ok": True, "result": ME})
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_a_call_sends_the_parameters_as_ptb_encodes_them_and_reads_the_answer():
    seen: list[tuple[str, dict[str, str], str]] = []

    async def bot_api(request: web.Request) -> web.Response:
        seen.append((request.path, dict(await request.post()), request.headers["User-Agent"]))
        return web.json_response({"ok": True, "result": SENT})

    runner, root = await _serve(bot_api)
    try:
        async with telegram.Bot(TOKEN, base_url=f"{root}/bot", request=AiohttpRequest()) as bot:
            sent = await bot.send_message(5, "hi", reply_markup=telegram.InlineKeyboardMarkup([[
                telegram.InlineKeyboardButton("again", callback_data="again")
            ]]))
    finally:
        await runner.cleanup()

    assert sent.message_id == 7
    path, form, agent = next(call for call in seen if call[0].endswith("/sendMessage"))
    assert (form["chat_id"], form["text"]) == ("5", "hi")
    assert '"callback_data": "again"' in form["reply_markup"]  # JSON-encoded, as PTB sends it
    assert agent.startswith("python-telegram-bot")


async def test_an_upload_goes_as_multipart_with_its_file():
    uploads: list[tuple[str, bytes, str]] = []

    async def bot_api(request: web.Request) -> web.Response:
        form = await request.post()
        document = form["document"]
        uploads.append((form["chat_id"], document.file.read(), document.filename))
        return web.json_response({"ok": True, "result": SENT})

    runner, root = await _serve(bot_api)
    try:
        async with telegram.Bot(TOKEN, base_url=f"{root}/bot", request=AiohttpRequest()) as bot:
            await bot.send_document(5, InputFile(b"some bytes", filename="notes.txt"))
    finally:
        await runner.cleanup()

    assert uploads == [("5", b"some bytes", "notes.txt")]


async def test_a_redirect_is_not_followed():
    followed: list[str] = []

    async def bot_api(request: web.Request) -> web.Response:
        if request.path == "/elsewhere":
            followed.append(request.path)
            return web.json_response({"ok": True, "result": SENT})
        raise web.HTTPFound("/elsewhere")

    runner, root = await _serve(bot_api)
    try:
        async with telegram.Bot(TOKEN, base_url=f"{root}/bot", request=AiohttpRequest()) as bot:
            with pytest.raises(NetworkError):
                await bot.send_message(5, "hi")
    finally:
        await runner.cleanup()
    assert followed == []


async def _error_of_call(url: str, **options) -> NetworkError:
    """The error PTB's call to `url` raises through an `AiohttpRequest(**options)`."""
    request = AiohttpRequest(**options)
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as raised:
            await request.post(url)
    finally:
        await request.shutdown()
    return raised.value


async def test_a_refused_connection_is_a_network_error():
    # Port 9 on loopback refuses connections at once.
    error = await _error_of_call(f"http://127.0.0.1:9/bot{TOKEN}/getMe", connect_timeout=1)
    assert not isinstance(error, TimedOut)


@pytest.mark.parametrize("base", ["htp://api.example", "http://[::1", ""])
async def test_a_url_aiohttp_cannot_use_fails_without_the_token_in_the_error(base):
    error = await _error_of_call(f"{base}/bot{TOKEN}/getMe")
    assert TOKEN not in str(error) and TOKEN.split(":")[1] not in str(error)
    assert "Bot API URL" in str(error)


async def test_a_bot_api_that_does_not_answer_in_time_is_a_timeout():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    request = AiohttpRequest(read_timeout=0.2)
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()
        server.close()


def _only_proxy_settings(monkeypatch, **values: str) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


async def test_calls_go_through_the_environments_proxy_with_its_credentials(monkeypatch):
    relayed: list[tuple[str, str | None]] = []

    async def proxy(request: web.Request) -> web.Response:
        relayed.append((str(request.url), request.headers.get("Proxy-Authorization")))
        return web.json_response({"ok": True, "result": SENT})

    runner, root = await _serve(proxy)
    _only_proxy_settings(monkeypatch, http_proxy=root.replace("http://", "http://relay:s%40cret@"))
    try:
        # The Bot API's host does not resolve: only the proxy can have answered.
        async with telegram.Bot(TOKEN, base_url="http://api.telegram.invalid/bot", request=AiohttpRequest()) as bot:
            sent = await bot.send_message(5, "hi")
    finally:
        await runner.cleanup()

    assert sent.message_id == 7
    url, credentials = relayed[-1]
    assert url == f"http://api.telegram.invalid/bot{TOKEN}/sendMessage"
    assert credentials == "Basic " + base64.b64encode(b"relay:s@cret").decode()


async def test_a_host_named_in_no_proxy_is_reached_directly(monkeypatch):
    relayed: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        relayed.append(str(request.url))
        return web.json_response({"ok": True, "result": SENT})

    proxy_runner, proxy_root = await _serve(proxy)
    bot_api_runner, bot_api_root = await _serve(lambda request: _sent())
    _only_proxy_settings(monkeypatch, http_proxy=proxy_root, no_proxy="127.0.0.1")
    try:
        async with telegram.Bot(TOKEN, base_url=f"{bot_api_root}/bot", request=AiohttpRequest()) as bot:
            sent = await bot.send_message(5, "hi")
    finally:
        await proxy_runner.cleanup()
        await bot_api_runner.cleanup()
    assert sent.message_id == 7 and relayed == []


async def _sent() -> web.Response:
    return web.json_response({"ok": True, "result": SENT})
