"""The two measurements of `python -m bot.bench`, each through the real bot on the Bot API stand-in.

- `answer_latency`: one photo at a time to a private chat (a new person each time, so each answer is
  a first turn), answered by the given model. Per answer: the time from the update to the first text
  the person sees (a draft or the message), from the model's last token to the final message
  reaching the Bot API, and the bot's overhead: the update-to-final-message time less the same
  generation run bare, on the same backend, right after, from the caches the bot found (the
  conversation's images keyed afresh, so their features and the prompt after them are computed
  again for the yardstick as they were for the bot; the preamble every chat shares is cached for
  both). Also the bot's time outside the model in the same run (update→model start, plus last
  token→final message), which a busy machine's swings in generation time do not blur as they blur a
  difference of two runs. The first answer after the start pays one-time costs (the model's first
  run, lazy imports, the first database connection): it is measured on its own, not in the lists.
- `throughput`: `users` people each send `messages` texts at once, answered by an instant model;
  updates per second from the first update to the last answer, after checking that every message
  got its answer and each person's answers came in the order of their questions (else it raises).
  Telegram's overall limit of 30 messages a second would hide the bot's own capacity, so the bot
  runs with TELEGRAM_MAX_MESSAGES_PER_S=1000 (Telegram's limit with paid broadcasts) and the
  stand-in with that overall limit; the per-chat limits stay as Telegram's.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from telegram.ext import Application

from bot.bench_harness import TimedBackend, bare_generation_s, photo, running_bot, settled
from bot.scripted_model import ScriptedModel
from bot.settings import Settings
from model.backend import ModelBackend
from standin.telegram import BotApiStandIn, FloodLimits, Window
from storage.database import with_async_driver

FIRST_USER_ID = 510_000
BROADCAST_RATE = 1000.0


class BenchFailed(RuntimeError):
    """The bot lost or reordered answers: no figure would mean anything."""


@dataclass
class LatencyRun:
    """Per-answer seconds of one `answer_latency` run."""

    overhead: list[float] = field(default_factory=list)
    first_text: list[float] = field(default_factory=list)
    last_token_to_final: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    outside_model: list[float] = field(default_factory=list)  # update→model start + last token→final
    first_answer_overhead: float = 0.0  # the first answer after the start, kept out of the lists above


async def answer_latency(
    workdir: Path,
    make_backend: Callable[[Settings], Awaitable[ModelBackend]],
    *,
    answers: int,
    new_tokens: int,
    user_offset: int = 0,
    **settings: object,
) -> LatencyRun:
    """See the module docstring; `make_backend` builds the model backend from the bot's settings
    (`settings`: more of them, e.g. the model's)."""
    timed: list[TimedBackend] = []

    async def factory(settings: Settings) -> ModelBackend:
        timed.append(TimedBackend(await make_backend(settings)))
        return timed[-1]

    run = LatencyRun()
    async with running_bot(workdir, factory, max_new_tokens=new_tokens, **settings) as (standin, application):
        backend = timed[0]
        for index in range(answers + 1):
            user_id = FIRST_USER_ID + user_offset + index
            chat, user = standin.private_chat(user_id), standin.user(user_id)
            sent_at = time.time()
            await standin.send_photo(chat, user, photo(user_offset + index))
            await standin.wait_for_bot_message(chat, timeout=120)
            await settled(application)
            final = next(c for c in standin.calls_to("sendMessage")
                         if c.params.get("chat_id") == chat.id and c.status == 200)
            answer = backend.answers[-1]
            bare = await bare_generation_s(backend.inner, answer.conversation, answer.params)
            if index == 0:
                run.first_answer_overhead = final.time - sent_at - bare
                continue
            drafts = [d.time for d in standin.draft_records if d.chat_id == chat.id]
            run.bare.append(bare)
            run.overhead.append(final.time - sent_at - bare)
            run.first_text.append(min([final.time, *drafts]) - sent_at)
            run.last_token_to_final.append(final.time - (answer.last_token_at or final.time))
            run.outside_model.append(answer.started_at - sent_at + run.last_token_to_final[-1])
    return run


async def throughput(workdir: Path, *, users: int, messages: int, database_url: str | None = None) -> float:
    """Updates per second with an instant model (see the module docstring); raises BenchFailed.
    `database_url`: a PostgreSQL server to run on (in a fresh database made on it for the run and
    dropped after); by default a fresh SQLite file."""
    model = ScriptedModel(tokens=1)

    async def factory(settings: Settings) -> ModelBackend:
        return model

    limits = FloodLimits(overall=Window(int(BROADCAST_RATE), 1.0))
    async with contextlib.AsyncExitStack() as stack:
        database = {} if database_url is None else {
            "database_url": await stack.enter_async_context(fresh_database(database_url))
        }
        standin, application = await stack.enter_async_context(running_bot(
            workdir, factory, flood_limits=limits, telegram_max_messages_per_s=BROADCAST_RATE, **database
        ))
        return await crowd_answered(standin, users=users, messages=messages, application=application)


async def crowd_answered(
    standin: BotApiStandIn, *, users: int, messages: int, application: Application | None = None
) -> float:
    """`users` people send `messages` texts each at once to the bot on `standin`; updates per second
    from the first update to the last answer, once every answer is checked (else BenchFailed).
    `application`: the bot, when it runs in this process (then its work is waited out too)."""
    people = [(standin.private_chat(FIRST_USER_ID + n), standin.user(FIRST_USER_ID + n)) for n in range(users)]
    started = time.time()
    for message in range(messages):
        for chat, user in people:
            await standin.send_text(chat, user, _question(user.id, message))
    expected = users * messages
    await standin.wait_for(lambda: len(standin.store.bot) >= expected, timeout=600)
    if application is not None:
        await settled(application)
    finished = max(c.time for c in standin.calls_to("sendMessage") if c.status == 200)
    _check_every_answer(standin, people, messages)
    return expected / (finished - started)


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the PostgreSQL server `server_url` names (any database on it that
    the user may connect to), dropped afterwards: the bench starts from nothing, as on SQLite."""
    url = with_async_driver(server_url)
    name = f"idefics_bench_{secrets.token_hex(4)}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def _question(user_id: int, message: int) -> str:
    return f"question {message} from {user_id}"


def _check_every_answer(standin, people, messages: int) -> None:
    """Every question answered once, each person's answers in the order of their questions."""
    problems = []
    for chat, user in people:
        got = [message.text for message in standin.bot_messages(chat)]
        wanted = [f"echo: {_question(user.id, message)}" for message in range(messages)]
        if got != wanted:
            problems.append(f"chat {chat.id}: wanted {wanted}, got {got}")
    if problems:
        raise BenchFailed(f"{len(problems)} of {len(people)} conversations lost or reordered answers:\n"
                          + "\n".join(problems[:10]))
