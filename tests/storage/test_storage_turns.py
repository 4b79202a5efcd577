"""Turns: round trips, assistant turn lifecycle, message links, settings and stats."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from storage.errors import NotFound
from storage.schema import utc_now
from storage.store import Store
from storage.types import ChatInfo, ImageInput, NewRequest, TurnStatus, UserInfo

GROUP = -100777


async def test_user_turn_round_trips_with_images_and_message_ids(store, solid_png):
    conversation = await store.active_conversation(GROUP, 1)
    red, blue = solid_png((200, 0, 0)), solid_png((0, 0, 200))

    added = await store.add_user_turn(
        conversation.id,
        "what is this?",
        [ImageInput(red, "red-file"), ImageInput(blue, "blue-file")],
        message_ids=[42, 41],
    )
    [loaded] = await store.history(conversation.id)

    assert loaded == added
    assert (loaded.role, loaded.text, loaded.status, loaded.position) == (
        "user",
        "what is this?",
        TurnStatus.COMPLETE,
        0,
    )
    assert [image.file_unique_id for image in loaded.images] == ["red-file", "blue-file"]
    assert loaded.message_ids == (41, 42)


async def test_assistant_turn_opens_pending_and_closes_with_its_metrics(store):
    conversation = await store.active_conversation(GROUP, 1)
    await store.add_user_turn(conversation.id, "hi")

    opened = await store.open_assistant_turn(conversation.id)
    await store.close_assistant_turn(
        opened.id,
        TurnStatus.COMPLETE,
        "Hello!",
        finish_reason="end_of_utterance",
        prompt_tokens=120,
        completion_tokens=4,
        time_to_first_token_s=0.25,
        total_s=1.5,
    )

    assert (opened.role, opened.status, opened.position) == ("assistant", TurnStatus.PENDING, 1)
    closed = (await store.history(conversation.id))[1]
    assert closed.id == opened.id
    assert (closed.text, closed.status, closed.finish_reason) == (
        "Hello!",
        TurnStatus.COMPLETE,
        "end_of_utterance",
    )
    assert (closed.prompt_tokens, closed.completion_tokens) == (120, 4)
    assert (closed.time_to_first_token_s, closed.total_s) == (0.25, 1.5)


async def test_set_turn_status_changes_only_the_status(store):
    conversation = await store.active_conversation(GROUP, 1)
    turn = await store.add_user_turn(conversation.id, "hi")

    await store.set_turn_status(turn.id, TurnStatus.SUPERSEDED)

    [loaded] = await store.history(conversation.id)
    assert loaded.status == TurnStatus.SUPERSEDED
    assert loaded.text == "hi"


async def test_unknown_ids_raise_not_found(store):
    with pytest.raises(NotFound):
        await store.add_user_turn(999, "x")
    with pytest.raises(NotFound):
        await store.open_assistant_turn(999)
    with pytest.raises(NotFound):
        await store.close_assistant_turn(999, TurnStatus.FAILED)
    with pytest.raises(NotFound):
        await store.set_turn_status(999, TurnStatus.FAILED)
    with pytest.raises(NotFound):
        await store.link_messages(999, [1])
    with pytest.raises(NotFound):
        await store.history(999)


async def test_turn_for_message_finds_any_users_turn_in_that_chat_only(store, solid_png):
    alice = await store.active_conversation(GROUP, 1)
    bob = await store.active_conversation(GROUP, 2)
    elsewhere = await store.active_conversation(-555, 2)
    asked = await store.add_user_turn(bob.id, "look", [ImageInput(solid_png((9, 9, 9)))], [10])
    await store.add_user_turn(alice.id, "me too", (), [11])
    answer = await store.open_assistant_turn(bob.id)
    await store.link_messages(answer.id, [12, 13])
    await store.add_user_turn(elsewhere.id, "other chat", (), [20])

    found = await store.turn_for_message(GROUP, 10)
    answer_part = await store.turn_for_message(GROUP, 13)

    assert found == asked
    assert found.images[0].data == asked.images[0].data
    assert (answer_part.id, answer_part.message_ids) == (answer.id, (12, 13))
    assert await store.turn_for_message(GROUP, 20) is None
    assert await store.turn_for_message(-555, 10) is None


async def test_linking_a_message_again_moves_it_to_the_newer_turn(store):
    conversation = await store.active_conversation(GROUP, 1)
    first = await store.open_assistant_turn(conversation.id)
    await store.link_messages(first.id, [30, 31])
    second = await store.open_assistant_turn(conversation.id)

    await store.link_messages(second.id, [31, 32])
    await store.link_messages(second.id, [32])  # linking twice is harmless

    assert (await store.turn_for_message(GROUP, 30)).id == first.id
    assert (await store.turn_for_message(GROUP, 31)).id == second.id
    history = await store.history(conversation.id)
    assert [turn.message_ids for turn in history] == [(30,), (31, 32)]


async def test_data_survives_stop_and_start(database_url, solid_png):
    first_run = Store(database_url)
    await first_run.start()
    await first_run.touch(UserInfo(1, "Ann"), ChatInfo(1, "private"))
    conversation = await first_run.active_conversation(1, 1)
    turn = await first_run.add_user_turn(
        conversation.id, "kept", [ImageInput(solid_png((5, 6, 7)), "f1")], [7]
    )
    await first_run.update_chat_settings(1, mode="story")
    await first_run.stop()

    second_run = Store(database_url)
    await second_run.start()
    try:
        assert await second_run.active_conversation(1, 1) == conversation
        assert await second_run.history(conversation.id) == [turn]
        assert await second_run.turn_for_message(1, 7) == turn
        assert await second_run.chat_settings(1) == {"mode": "story"}
    finally:
        await second_run.stop()


async def test_a_pending_answer_is_left_to_whoever_takes_over_its_request(database_url):
    """A store that starts must not fail answers another process may still be writing; the turns
    a request got are found by its inbox id (that is how a takeover finds interrupted answers)."""
    crashed = Store(database_url)
    await crashed.start()
    conversation = await crashed.active_conversation(1, 1)
    question = await crashed.add_user_turn(conversation.id, "question", inbox_item_id=41)
    pending = await crashed.open_assistant_turn(conversation.id, inbox_item_id=41)
    other = await crashed.open_assistant_turn(conversation.id, inbox_item_id=42)
    await crashed.stop()  # as if the process died mid-answer

    restarted = Store(database_url)
    await restarted.start()
    try:
        statuses = [turn.status for turn in await restarted.history(conversation.id)]
        assert statuses == [TurnStatus.COMPLETE, TurnStatus.PENDING, TurnStatus.PENDING]
        assert [turn.id for turn in await restarted.turns_for_request(41)] == [question.id, pending.id]
        assert [turn.id for turn in await restarted.turns_for_request(42)] == [other.id]
    finally:
        await restarted.stop()


async def test_a_question_is_stored_once_per_request(store, solid_png):
    conversation = await store.active_conversation(1, 1)
    image = ImageInput(solid_png((9, 9, 9)), "f9")
    first = await store.add_user_turn(conversation.id, "again?", [image], [5], inbox_item_id=8)
    second = await store.add_user_turn(conversation.id, "again?", [image], [5], inbox_item_id=8)

    assert second == first
    assert [turn.id for turn in await store.history(conversation.id)] == [first.id]


async def test_datetimes_are_timezone_aware_utc(store):
    conversation = await store.active_conversation(GROUP, 1)
    turn = await store.add_user_turn(conversation.id, "when?")

    [loaded] = await store.history(conversation.id)

    for moment in (conversation.created_at, turn.created_at, loaded.created_at):
        assert moment.tzinfo is not None
        assert moment.utcoffset() == timedelta(0)
    assert loaded.created_at == turn.created_at.astimezone(timezone.utc)


async def test_settings_round_trip_and_none_removes_a_key(store):
    assert await store.chat_settings(GROUP) == {}

    await store.update_chat_settings(GROUP, mode="story", creativity=0.8)
    merged = await store.update_chat_settings(GROUP, creativity=None, answer_length="short")
    await store.update_chat_settings(1, mode="describe")

    assert merged == {"mode": "story", "answer_length": "short"}
    assert await store.chat_settings(GROUP) == merged
    assert await store.chat_settings(1) == {"mode": "describe"}
    assert await store.chat_settings(2) == {}


async def test_stats_count_rows_and_turns_by_status(store, solid_png):
    await store.touch(UserInfo(1, "Ann"), ChatInfo(GROUP, "group", title="G"))
    conversation = await store.active_conversation(GROUP, 1)
    await store.add_user_turn(conversation.id, "a", [ImageInput(solid_png((1, 1, 1)))])
    await store.open_assistant_turn(conversation.id)
    failed = await store.open_assistant_turn(conversation.id)
    await store.close_assistant_turn(failed.id, TurnStatus.FAILED)

    stats = await store.stats()

    assert (stats.users, stats.chats, stats.conversations, stats.turns, stats.images) == (
        1,
        1,
        1,
        3,
        1,
    )
    assert stats.image_bytes == len((await store.history(conversation.id))[0].images[0].data)
    assert stats.turns_by_status == {"complete": 1, "pending": 1, "failed": 1}


async def test_store_methods_refuse_to_run_before_start(database_url):
    from storage.errors import StorageError

    unstarted = Store(database_url)

    with pytest.raises(StorageError):
        await unstarted.active_conversation(1, 1)
    with pytest.raises(StorageError):
        await unstarted.stats()


async def test_an_answers_close_can_mark_its_request_done_in_the_same_transaction(store):
    conversation = await store.active_conversation(GROUP, 1)
    asked = await store.inbox.add(NewRequest(
        update_id=7, chat_id=GROUP, user_id=1, kind="question", payload={"text": "hi"}, received_at=utc_now(),
    ))
    await store.add_user_turn(conversation.id, "hi", message_ids=[70], inbox_item_id=asked.id)
    answer = await store.open_assistant_turn(conversation.id, inbox_item_id=asked.id)

    with pytest.raises(NotFound):  # nothing of a close that fails is kept: the request still waits
        await store.close_assistant_turn(answer.id + 100, TurnStatus.COMPLETE, "Hello", finishes_request=asked.id)
    assert (await store.inbox.oldest_waiting(GROUP, 1)).id == asked.id

    await store.close_assistant_turn(
        answer.id, TurnStatus.COMPLETE, "Hello", message_ids=[71], finishes_request=asked.id
    )

    assert await store.inbox.oldest_waiting(GROUP, 1) is None
    [question, closed] = await store.turns_for_request(asked.id)
    assert (question.text, question.message_ids) == ("hi", (70,))
    assert (closed.text, closed.status, closed.message_ids) == ("Hello", TurnStatus.COMPLETE, (71,))


async def test_a_question_is_stored_with_its_answers_turn_opened_and_the_chats_settings(store):
    user = UserInfo(id=5, first_name="Ada", last_name=None, username="ada", language_code="en")
    chat = ChatInfo(id=GROUP, type="supergroup", title="Lab", username=None)
    await store.update_chat_settings(GROUP, max_new_tokens=40)
    first = await store.ask(user, chat, "hello", message_ids=[11])
    await store.close_assistant_turn(first.answer.id, TurnStatus.COMPLETE, "hi Ada")

    second = await store.ask(user, chat, "and now?", message_ids=[13], inbox_item_id=9)

    assert second.conversation_id == first.conversation_id
    assert [(turn.role, turn.text) for turn in second.history] == [
        ("user", "hello"), ("assistant", "hi Ada"), ("user", "and now?")
    ]
    assert second.history[-1].message_ids == (13,)
    assert second.chat_settings == {"max_new_tokens": 40}
    assert (second.answer.role, second.answer.status, second.answer.position) == ("assistant", TurnStatus.PENDING, 3)
    stored = await store.history(second.conversation_id)
    assert stored[2:] == [second.history[-1], second.answer]
    assert [turn.id for turn in await store.turns_for_request(9)] == [second.history[-1].id, second.answer.id]
