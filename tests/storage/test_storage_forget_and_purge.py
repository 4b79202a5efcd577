"""Forgetting a user and the retention purge remove exactly what they should."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from storage.schema import Chat, Conversation, Image, Turn, TurnImage, TurnMessage, User, utc_now
from storage.types import ChatInfo, ImageInput, TurnStatus, UserInfo

ALICE, BOB = UserInfo(1, "Alice"), UserInfo(2, "Bob")
GROUP = ChatInfo(-100, "supergroup", title="Shared")

COUNTED = (User, Chat, Conversation, Turn, TurnMessage, TurnImage, Image)


async def row_counts(rows) -> dict[str, int]:
    async with rows() as session:
        return {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model))
            for model in COUNTED
        }


async def seed_two_users(store, solid_png):
    """Alice and Bob each talk privately and in a shared group; they share one picture."""
    shared, alice_only, bob_only = (
        solid_png((10, 10, 10)),
        solid_png((200, 10, 10)),
        solid_png((10, 10, 200)),
    )
    for user in (ALICE, BOB):
        await store.touch(user, ChatInfo(user.id, "private"))
        await store.touch(user, GROUP)
        await store.update_chat_settings(user.id, mode="describe")
    await store.update_chat_settings(ALICE.id, answer_length="long")
    await store.update_chat_settings(GROUP.id, mode="story")

    alice_private = await store.active_conversation(ALICE.id, ALICE.id)
    alice_group = await store.active_conversation(GROUP.id, ALICE.id)
    bob_group = await store.active_conversation(GROUP.id, BOB.id)
    bob_private = await store.active_conversation(BOB.id, BOB.id)
    await store.add_user_turn(alice_private.id, "mine", [ImageInput(alice_only)], [1])
    await store.add_user_turn(alice_group.id, "ours", [ImageInput(shared)], [2])
    answer = await store.open_assistant_turn(alice_group.id)
    await store.link_messages(answer.id, [3])
    bob_turn = await store.add_user_turn(bob_group.id, "ours too", [ImageInput(shared)], [4])
    await store.add_user_turn(bob_private.id, "his", [ImageInput(bob_only)], [5])
    return bob_group, bob_private, bob_turn


async def test_forget_removes_the_users_rows_and_images_everywhere(store, rows, solid_png):
    await seed_two_users(store, solid_png)
    before = await row_counts(rows)

    removed = await store.forget_user(ALICE.id)

    after = await row_counts(rows)
    assert removed == sum(before.values()) - sum(after.values())
    assert after == {
        "users": 1,
        "chats": 2,  # Bob's private chat and the group; Alice's private chat is gone
        "conversations": 2,
        "turns": 2,
        "turn_messages": 2,
        "turn_images": 2,
        "images": 2,  # the shared picture stays for Bob, Alice's own is gone
    }
    async with rows() as session:
        assert await session.get(User, ALICE.id) is None
        assert await session.get(Chat, ALICE.id) is None
        alices = select(Conversation).where(Conversation.user_id == ALICE.id)
        assert (await session.scalars(alices)).all() == []
    assert await store.chat_settings(ALICE.id) == {}
    assert await store.turn_for_message(GROUP.id, 2) is None
    assert await store.turn_for_message(ALICE.id, 1) is None


async def test_forget_leaves_other_users_intact_in_a_shared_group(store, solid_png):
    bob_group, bob_private, bob_turn = await seed_two_users(store, solid_png)
    bob_history = await store.history(bob_group.id)
    bob_private_history = await store.history(bob_private.id)

    await store.forget_user(ALICE.id)

    assert await store.history(bob_group.id) == bob_history
    assert await store.history(bob_private.id) == bob_private_history
    assert await store.turn_for_message(GROUP.id, 4) == bob_turn
    assert await store.active_conversation(GROUP.id, BOB.id) == bob_group
    assert await store.chat_settings(BOB.id) == {"mode": "describe"}
    assert await store.chat_settings(GROUP.id) == {"mode": "story"}


async def test_forgetting_an_unknown_user_removes_nothing(store, rows, solid_png):
    await seed_two_users(store, solid_png)
    before = await row_counts(rows)

    assert await store.forget_user(999) == 0
    assert await row_counts(rows) == before


async def test_a_forgotten_user_can_start_again(store, solid_png):
    await seed_two_users(store, solid_png)
    await store.forget_user(ALICE.id)

    await store.touch(ALICE, ChatInfo(ALICE.id, "private"))
    fresh = await store.active_conversation(ALICE.id, ALICE.id)

    assert await store.history(fresh.id) == []


async def make_idle(rows, conversation_id: int, days: int) -> None:
    async with rows() as session, session.begin():
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(last_activity_at=utc_now() - timedelta(days=days))
        )


async def test_purge_removes_idle_conversations_and_their_orphaned_images(
    store, rows, solid_png
):
    shared, stale_only = solid_png((50, 50, 50)), solid_png((90, 0, 90))
    stale = await store.active_conversation(GROUP.id, ALICE.id)
    await store.add_user_turn(stale.id, "old", [ImageInput(stale_only), ImageInput(shared)], [1])
    recent = await store.active_conversation(GROUP.id, BOB.id)
    recent_turn = await store.add_user_turn(recent.id, "new", [ImageInput(shared)], [2])
    await make_idle(rows, stale.id, days=40)

    purged = await store.purge_idle(timedelta(days=30))

    assert purged == 1
    assert await store.history(recent.id) == [recent_turn]
    assert await store.turn_for_message(GROUP.id, 1) is None
    counts = await row_counts(rows)
    assert (counts["conversations"], counts["turns"], counts["images"]) == (1, 1, 1)
    assert (counts["users"], counts["chats"]) == (2, 1)  # people stay; only conversations age out


async def test_purge_keeps_conversations_younger_than_the_limit(store, rows):
    conversation = await store.active_conversation(GROUP.id, ALICE.id)
    await store.add_user_turn(conversation.id, "still fresh")
    await make_idle(rows, conversation.id, days=29)

    assert await store.purge_idle(timedelta(days=30)) == 0
    assert len(await store.history(conversation.id)) == 1


async def test_new_activity_keeps_an_old_conversation_from_the_purge(store, rows):
    conversation = await store.active_conversation(GROUP.id, ALICE.id)
    await store.add_user_turn(conversation.id, "long ago")
    await make_idle(rows, conversation.id, days=40)

    answer = await store.open_assistant_turn(conversation.id)
    await make_idle(rows, conversation.id, days=40)
    await store.close_assistant_turn(answer.id, TurnStatus.COMPLETE, "late answer")

    assert await store.purge_idle(timedelta(days=30)) == 0
