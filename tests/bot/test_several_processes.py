"""Several real `idefics-bot run` processes on one PostgreSQL database, behind one webhook URL.

The Bot API stand-in delivers webhooks the way Telegram does (one update at a time, again until a
2xx) to one URL: a round-robin load balancer (standin/balancer.py) in front of the processes' own
webhook ports. Nothing in memory is shared between the processes: every guarantee here comes from
the database (the inbox's unique update ids, its claims under row locks, the migrations' advisory
lock). These tests need PostgreSQL, so they run wherever the PostgreSQL runs happen (always in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from standin.balancer import RoundRobinBalancer
from standin.telegram.server import BotApiStandIn
from storage.database import create_engine
from storage.schema import InboxClaim
from storage.store import Store
from storage.types import StoredTurn, TurnStatus
from tests.bot.bot_process import BotProcess, bot_environment
from tests.bot.conftest import free_port, image_bytes
from tests.databases import postgresql_only

pytestmark = pytest.mark.parametrize("database_url", postgresql_only(), indirect=True)

SECRET = "one-secret-for-every-process"  # each process calls setWebhook: they must agree on it
WEBHOOK_PATH = "/telegram"
COLOURS = ("red", "green", "blue", "yellow", "purple")


SCRIPTED = ("tests.bot.scripted_bot",)  # the real bot with a scripted model (tests/bot/scripted_bot.py)


@contextlib.asynccontextmanager
async def bots_behind_one_url(
    bot_api: BotApiStandIn, database_url: str, checkpoint: Path, cwd: Path, count: int,
    command: tuple[str, ...] = ("bot", "run"), **settings: str,
) -> AsyncIterator[tuple[list[BotProcess], RoundRobinBalancer]]:
    """`count` bot processes started at the same moment, each on its own webhook port, and the
    balancer whose URL they all give Telegram."""
    ports = [free_port() for _ in range(count)]
    async with RoundRobinBalancer([f"http://127.0.0.1:{port}" for port in ports]) as balancer:
        environment = bot_environment(
            bot_api, database_url, checkpoint,
            TELEGRAM_WEBHOOK_URL=balancer.url_for(WEBHOOK_PATH), WEBHOOK_SECRET=SECRET,
            OMP_NUM_THREADS="1",  # several processes on few cores: one thread each for the tiny model
            **settings,
        )
        async with contextlib.AsyncExitStack() as stack:
            bots = [
                await stack.enter_async_context(BotProcess(bot_api, environment, cwd, command)) for _ in ports
            ]
            for bot, port in zip(bots, ports):
                await bot.launch(WEBHOOK_PORT=str(port))
            await bot_api.wait_for(
                lambda: len(bot_api.calls_to("setWebhook")) >= count or not all(b.running for b in bots),
                timeout=120,
            )
            assert all(bot.running for bot in bots), "\n".join(bot.log[-3000:] for bot in bots)
            for port in ports:
                await _listening(port)
            yield bots, balancer
            for bot in bots:
                if bot.running:
                    assert await bot.stop(signal.SIGTERM) == 0, bot.log[-3000:]
            for bot in bots:
                assert "Traceback" not in bot.log, bot.log[-5000:]


async def _listening(port: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return


async def history(database_url: str, chat_id: int, user_id: int) -> list[StoredTurn]:
    async with Store(database_url) as store:
        conversation = await store.active_conversation(chat_id, user_id)
        return [] if conversation is None else await store.history(conversation.id)


def assert_answered_once_in_order(bot_api: BotApiStandIn, chat, turns: list[StoredTurn], asked: list[str]):
    """Each question one user turn, in the order sent, each followed by its one delivered answer,
    and the chat's messages from the bot exactly those answers, in that order."""
    assert [turn.text for turn in turns if turn.role == "user"] == asked
    assert [turn.role for turn in turns] == ["user", "assistant"] * len(asked)
    answers = [turn for turn in turns if turn.role == "assistant"]
    assert all(turn.status is TurnStatus.COMPLETE for turn in answers), [t.status for t in answers]
    assert [turn.message_ids for turn in answers] == [(m.message_id,) for m in bot_api.bot_messages(chat)]


async def test_many_people_at_once_are_each_answered_once_in_order_by_three_processes(
    bot_api, database_url, tmp_path
):
    people = list(range(8001, 8031))  # 30 conversations
    with_album = set(people[::6])  # 5 of them start with an album of three photos
    async with bots_behind_one_url(
        bot_api, database_url, tmp_path / "no-model", tmp_path, 3, SCRIPTED
    ) as (bots, balancer):
        balancer.lose_first_answer = lambda update_id: update_id % 5 == 0  # Telegram sends those again
        asked: dict[int, list[str]] = {}
        for user_id in people:
            chat, user = bot_api.private_chat(user_id), bot_api.user(user_id)
            asked[user_id] = []
            if user_id in with_album:
                colours = [image_bytes(colour) for colour in COLOURS[:3]]
                await bot_api.send_album(chat, user, colours, caption=f"album of {user_id}")
                asked[user_id].append(f"album of {user_id}")
            for number in range(1, 3):
                text = f"message {number} from {user_id}"
                await bot_api.send_text(chat, user, text)
                asked[user_id].append(text)
        for user_id in people:
            chat = bot_api.private_chat(user_id)
            await bot_api.wait_for_bot_message(chat, count=len(asked[user_id]), timeout=60)
        await bot_api.wait_quiet(quiet=1.5)

    for user_id in people:
        chat = bot_api.private_chat(user_id)
        turns = await history(database_url, chat.id, user_id)
        assert_answered_once_in_order(bot_api, chat, turns, asked[user_id])
        expected = [f"answer to «{question}» ({3 if question.startswith('album') else 0} images)"
                    for question in asked[user_id]]
        assert [message.text for message in bot_api.bot_messages(chat)] == expected
        if user_id in with_album:
            assert len(turns[0].images) == 3, "the album's photos are one question"

    served = {f.target for f in balancer.forwarded if f.took_it}
    assert served == set(balancer.targets), "every process took updates"
    lost = {f.update_id for f in balancer.forwarded if f.answered == 504}
    assert len(lost) == 75 // 5
    for update_id in lost:
        first, second = balancer.served_by(update_id)[:2]
        assert first != second, "the update sent again reached another process"
    for user_id in with_album:
        takers = {f.target for f in balancer.forwarded if f.took_it and _album_item_of(f.update, user_id)}
        assert len(takers) > 1, "the album's photos reached different processes"


def _album_item_of(update: dict | None, user_id: int) -> bool:
    message = (update or {}).get("message") or {}
    return bool(message.get("media_group_id")) and message.get("chat", {}).get("id") == user_id


async def holder_pid(database_url: str, chat_id: int) -> int | None:
    """The process id of the bot process holding the conversation's claim (holder is host:pid:tag)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            holder = await connection.scalar(select(InboxClaim.holder).where(InboxClaim.chat_id == chat_id))
    finally:
        await engine.dispose()
    return None if holder is None else int(holder.split(":")[1])


async def test_a_killed_process_conversation_is_taken_over_by_another_after_the_lease(
    bot_api, database_url, tiny_checkpoint_chatty, tmp_path
):
    user_id = 8101
    chat, user = bot_api.private_chat(user_id), bot_api.user(user_id)
    async with bots_behind_one_url(
        bot_api, database_url, tiny_checkpoint_chatty, tmp_path, 2, INBOX_LEASE_S="2", MAX_NEW_TOKENS="400"
    ) as (bots, balancer):
        await bot_api.send_photo(chat, user, image_bytes("red"), caption="first")
        await bot_api.wait_for(lambda: bot_api.drafts(chat))  # being written by one of them
        pid = await holder_pid(database_url, chat.id)
        [holder] = [bot for bot in bots if bot.pid == pid]
        [other] = [bot for bot in bots if bot is not holder]
        await holder.stop(signal.SIGKILL)
        await bot_api.send_text(chat, user, "second")  # reaches the dead one or the live one
        await bot_api.wait_for_bot_message(chat, count=2, timeout=90)
        await bot_api.wait_quiet(quiet=1.5)
        assert other.running

    turns = await history(database_url, chat.id, user_id)
    assert [(t.role, t.text) for t in turns if t.role == "user"] == [("user", "first"), ("user", "second")]
    answers = [t for t in turns if t.role == "assistant"]
    assert [t.status for t in answers] == [TurnStatus.FAILED, TurnStatus.COMPLETE, TurnStatus.COMPLETE]
    assert [t.message_ids for t in answers[1:]] == [(m.message_id,) for m in bot_api.bot_messages(chat)]
