"""Users, chats and conversations: one open conversation per (chat, user)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from storage.schema import Chat, Conversation, User
from storage.types import ChatInfo, UserInfo

ALICE = UserInfo(id=101, first_name="Alice", last_name="A", username="alice", language_code="en")
BOB = UserInfo(id=202, first_name="Bob")
GROUP = ChatInfo(id=-100500, type="supergroup", title="Pictures")


async def test_touch_records_user_and_chat_and_refreshes_them(store, rows):
    await store.touch(ALICE, GROUP)
    async with rows() as session:
        first = await session.get(User, ALICE.id)
    renamed = UserInfo(id=ALICE.id, first_name="Alicia", username="alicia")

    await store.touch(renamed, ChatInfo(id=GROUP.id, type="supergroup", title="Renamed"))

    async with rows() as session:
        user = await session.get(User, ALICE.id)
        chat = await session.get(Chat, GROUP.id)
    assert (first.first_name, first.username, first.language_code) == ("Alice", "alice", "en")
    assert (user.first_name, user.username, user.last_name) == ("Alicia", "alicia", None)
    assert user.first_seen_at == first.first_seen_at
    assert user.last_seen_at > first.last_seen_at
    assert (chat.type, chat.title) == ("supergroup", "Renamed")


async def test_active_conversation_is_reused(store):
    await store.touch(ALICE, GROUP)

    first = await store.active_conversation(GROUP.id, ALICE.id)
    again = await store.active_conversation(GROUP.id, ALICE.id)

    assert first == again
    assert (first.chat_id, first.user_id, first.closed_at) == (GROUP.id, ALICE.id, None)


async def test_each_group_member_has_their_own_conversation(store):
    alice = await store.active_conversation(GROUP.id, ALICE.id)
    bob = await store.active_conversation(GROUP.id, BOB.id)
    alice_private = await store.active_conversation(ALICE.id, ALICE.id)

    assert len({alice.id, bob.id, alice_private.id}) == 3


async def test_active_conversation_works_before_touch(store, rows):
    conversation = await store.active_conversation(ALICE.id, ALICE.id)

    async with rows() as session:
        chat = await session.get(Chat, ALICE.id)
    assert conversation.user_id == ALICE.id
    assert chat.type == "private"


async def test_new_conversation_closes_the_old_one_and_keeps_it_apart(store):
    old = await store.active_conversation(GROUP.id, ALICE.id)
    await store.add_user_turn(old.id, "about the cat")

    new = await store.new_conversation(GROUP.id, ALICE.id)
    await store.add_user_turn(new.id, "about the dog")

    assert new.id != old.id
    assert await store.active_conversation(GROUP.id, ALICE.id) == new
    assert [turn.text for turn in await store.history(old.id)] == ["about the cat"]
    assert [turn.text for turn in await store.history(new.id)] == ["about the dog"]


async def test_new_conversation_without_an_old_one_just_starts_one(store, rows):
    new = await store.new_conversation(GROUP.id, BOB.id)

    async with rows() as session:
        conversations = (await session.scalars(select(Conversation))).all()
    assert [(c.id, c.closed_at) for c in conversations] == [(new.id, None)]


async def test_concurrent_calls_for_the_same_pair_create_one_conversation(store, rows):
    found = await asyncio.gather(
        *(store.active_conversation(GROUP.id, ALICE.id) for _ in range(20))
    )

    async with rows() as session:
        conversations = (await session.scalars(select(Conversation))).all()
    assert len(conversations) == 1
    assert {ref.id for ref in found} == {conversations[0].id}


async def test_concurrent_new_conversations_leave_exactly_one_open(store, rows):
    await asyncio.gather(*(store.new_conversation(GROUP.id, ALICE.id) for _ in range(10)))

    async with rows() as session:
        conversations = (await session.scalars(select(Conversation))).all()
    assert len(conversations) == 10
    assert sum(c.closed_at is None for c in conversations) == 1


async def test_a_group_upgraded_to_a_supergroup_takes_its_conversations_settings_and_requests(store):
    from storage.schema import utc_now
    from storage.types import NewRequest

    basic = ChatInfo(id=-500, type="group", title="Small")
    await store.touch(ALICE, basic)
    await store.touch(BOB, basic)
    alice_old = await store.active_conversation(basic.id, ALICE.id)
    await store.add_user_turn(alice_old.id, "what is in the photo?", message_ids=[3])
    bob_old = await store.active_conversation(basic.id, BOB.id)
    await store.update_chat_settings(basic.id, mode="captioner")
    await store.inbox.add(NewRequest(77, basic.id, BOB.id, "question", {}, utc_now()))
    bob_new = await store.active_conversation(-100900, BOB.id)  # Bob wrote there first

    assert await store.move_chat(basic.id, -100900) == 2
    assert await store.move_chat(basic.id, -100900) == 0, "moving twice moves nothing"

    alice_now = await store.active_conversation(-100900, ALICE.id)
    assert alice_now.id == alice_old.id
    assert [turn.text for turn in await store.history(alice_now.id)] == ["what is in the photo?"]
    assert (await store.turn_for_message(basic.id, 3)).conversation_id == alice_old.id, "old messages stay"
    assert (await store.active_conversation(-100900, BOB.id)).id == bob_new.id
    assert (await store.conversation(bob_old.id)).closed_at is not None
    assert await store.chat_settings(-100900) == {"mode": "captioner"}
    assert (await store.inbox.oldest_waiting(-100900, BOB.id)).update_id == 77
