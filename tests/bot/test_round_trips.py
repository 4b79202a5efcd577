"""What a text question costs the database: a few transactions, one per step that must be its own.

A question is stored in the inbox before its update is confirmed; its conversation is claimed (with
the request's turns read); the question is stored with its answer's turn opened; the answer is
recorded with its message linked and the request done; the claim is given back. Each of those
used to be several transactions, each costing more CPU than its statements: this keeps them few.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine

from bot.scripted_model import ScriptedModel
from storage.database import READ_ONLY_OPTION
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, runtime

USER_ID = 4242
# The inbox's sweep (its heartbeat, its look for ready conversations, its purge) runs at the start
# and then on its own clock: its transactions are not the question's.
SWEEP_STATEMENTS = (
    "UPDATE inbox_claims SET expires_at", "DELETE FROM inbox WHERE",
    "SELECT inbox.chat_id, inbox.user_id, inbox.retry_at", "SELECT inbox_claims.chat_id, inbox_claims.user_id",
)


async def test_a_text_question_and_its_answer_take_five_write_transactions_and_no_reads(bot_api, start_bot):
    async def instant(settings):
        return ScriptedModel(tokens=1)

    application = await start_bot(model_service_factory=instant)
    transactions: list[dict] = []
    current: dict[int, dict] = {}  # connection → its transaction (a read may begin inside a write's)

    def began(connection) -> None:
        read_only = bool(connection.get_execution_options().get(READ_ONLY_OPTION))
        current[id(connection)] = {"read_only": read_only, "statements": []}
        transactions.append(current[id(connection)])

    def executed(connection, cursor, statement, *args) -> None:
        if id(connection) in current and not statement.startswith("BEGIN"):
            current[id(connection)]["statements"].append(" ".join(statement.split()))

    event.listen(Engine, "begin", began)
    event.listen(Engine, "before_cursor_execute", executed)
    try:
        chat = bot_api.private_chat(USER_ID)
        await bot_api.send_text(chat, bot_api.user(USER_ID), "hello there")
        [answer] = await bot_api.wait_for_bot_message(chat)
        await answers_settled(application)
    finally:
        event.remove(Engine, "begin", began)
        event.remove(Engine, "before_cursor_execute", executed)

    ours = [t for t in transactions if not all(s.startswith(SWEEP_STATEMENTS) for s in t["statements"])]
    assert [t for t in ours if t["read_only"]] == []
    assert len(ours) == 5, [t["statements"] for t in ours]
    store = runtime(application).store
    conversation = await store.active_conversation(chat.id, USER_ID)
    question, reply = await store.history(conversation.id)
    assert (question.text, reply.status) == ("hello there", TurnStatus.COMPLETE)
    assert reply.message_ids == (answer.message_id,)
    assert await store.inbox.waiting_count() == 0
