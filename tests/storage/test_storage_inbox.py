"""The inbox: requests stored once per update, answered oldest first, claimed by one process at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from storage.schema import utc_now
from storage.store import Store
from storage.types import InboxStatus, NewRequest

LEASE = timedelta(seconds=30)


def request(update_id: int, *, chat_id: int = 1, user_id: int = 1, album: str | None = None) -> NewRequest:
    return NewRequest(
        update_id=update_id, chat_id=chat_id, user_id=user_id, kind="question",
        payload={"text": f"message {update_id}"}, received_at=utc_now(), media_group_id=album,
    )


async def test_a_redelivered_update_is_stored_once(store):
    first = await store.inbox.add(request(10))
    again = await store.inbox.add(request(10))

    assert first is not None and first.payload == {"text": "message 10"}
    assert again is None
    assert await store.inbox.waiting_count() == 1


async def test_a_conversation_waits_on_its_oldest_request_whatever_order_they_were_stored_in(store):
    for update_id in (12, 11, 13):
        await store.inbox.add(request(update_id))
    await store.inbox.add(request(5, user_id=2))

    first = await store.inbox.oldest_waiting(1, 1)
    assert first.update_id == 11
    await store.inbox.finish([first.id])
    assert (await store.inbox.oldest_waiting(1, 1)).update_id == 12
    assert (await store.inbox.oldest_waiting(1, 2)).update_id == 5


async def test_done_requests_keep_only_their_ids_until_purged(store):
    stored = await store.inbox.add(request(20))
    await store.inbox.finish([stored.id])

    assert await store.inbox.oldest_waiting(1, 1) is None
    assert await store.inbox.add(request(20)) is None, "still recognised as a redelivery"
    assert await store.inbox.purge_done(timedelta(0)) == 1
    assert await store.inbox.add(request(20)) is not None


async def test_replies_kept_for_later_hold_up_the_conversation_until_their_time(store):
    stored = await store.inbox.add(request(30))
    await store.inbox.add(request(31))
    later = utc_now() + timedelta(minutes=1)
    await store.inbox.keep_replies(stored.id, [{"text": "the answer"}], later, work_done=True)

    waiting = await store.inbox.oldest_waiting(1, 1)
    assert (waiting.id, waiting.status) == (stored.id, InboxStatus.UNDELIVERED)
    assert waiting.outbox == ({"text": "the answer"},)
    assert await store.inbox.ready_conversations("me") == [], "the next request waits behind it"
    await store.inbox.keep_replies(stored.id, [{"text": "the answer"}], utc_now(), work_done=True)
    assert await store.inbox.ready_conversations("me") == [(1, 1)]


async def test_album_items_are_found_together_in_the_order_received(store):
    for update_id in (41, 40, 42):
        await store.inbox.add(request(update_id, album="g1"))
    await store.inbox.add(request(43, album="g2"))

    assert [item.update_id for item in await store.inbox.album(1, "g1")] == [40, 41, 42]


async def test_one_process_at_a_time_holds_a_conversation(store):
    assert await store.inbox.claim(1, 1, "a", LEASE)
    assert not await store.inbox.claim(1, 1, "b", LEASE)
    assert await store.inbox.claim(1, 1, "a", LEASE), "the holder renews"
    assert await store.inbox.claim(1, 2, "b", LEASE), "other conversations are free"

    await store.inbox.release("a", 1, 1)
    assert await store.inbox.claim(1, 1, "b", LEASE)


async def test_a_crashed_holders_claim_is_taken_over_once_its_lease_runs_out(store):
    await store.inbox.add(request(50))
    assert await store.inbox.claim(1, 1, "crashed", timedelta(seconds=0.3))
    assert await store.inbox.ready_conversations("restarted") == []
    assert not await store.inbox.claim(1, 1, "restarted", LEASE)

    await asyncio.sleep(0.4)
    assert await store.inbox.ready_conversations("restarted") == [(1, 1)]
    assert await store.inbox.claim(1, 1, "restarted", LEASE)


async def test_the_heartbeat_keeps_a_live_holders_claims(store):
    await store.inbox.claim(1, 1, "alive", timedelta(seconds=0.3))
    await store.inbox.claim(2, 2, "alive", timedelta(seconds=0.3))
    assert await store.inbox.renew_claims("alive", LEASE) == 2

    await asyncio.sleep(0.4)
    assert not await store.inbox.claim(1, 1, "other", LEASE)
    await store.inbox.release("alive")
    assert await store.inbox.claim(2, 2, "other", LEASE)


async def test_concurrent_first_claims_have_one_winner(database_url):
    stores = [Store(database_url) for _ in range(4)]
    for each in stores:
        await each.start()
    try:
        won = await asyncio.gather(
            *(each.inbox.claim(9, 9, f"process-{n}", LEASE) for n, each in enumerate(stores))
        )
    finally:
        for each in stores:
            await each.stop()
    assert sorted(won) == [False, False, False, True]
