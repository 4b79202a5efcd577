"""Store.conversation: finding whose a conversation is (answer buttons check the presser owns it)."""

from __future__ import annotations

from storage.types import ChatInfo, UserInfo

ANN = UserInfo(id=301, first_name="Ann")
GROUP = ChatInfo(id=-100700, type="supergroup", title="Pictures")


async def test_conversation_by_id_tells_its_owner_and_whether_it_is_still_open(store):
    await store.touch(ANN, GROUP)
    first = await store.active_conversation(GROUP.id, ANN.id)
    second = await store.new_conversation(GROUP.id, ANN.id)

    closed, still_open = await store.conversation(first.id), await store.conversation(second.id)

    assert (closed.chat_id, closed.user_id) == (GROUP.id, ANN.id)
    assert closed.closed_at is not None
    assert still_open.id == second.id and still_open.closed_at is None


async def test_conversation_that_does_not_exist_is_none(store):
    assert await store.conversation(987654) is None
