"""Untrusted files end to end: nothing a person sends reaches a decoder we do not accept or starts a
program, and images that are tiny to send but huge to decode are decoded a few at a time."""

from __future__ import annotations

import asyncio
import contextlib

from bot import texts
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, runtime
from tests.untrusted_files import EPS_PAYLOAD, decompression_heavy_png

USER_ID = 6501
HEAVY_SIDE = 6000  # 36 million pixels: about 11 KB as a 1-bit PNG, about 230 MB while decoded
FLOOD = 6
# One decode at a time takes about 230 MB; the six at once would take about 1.4 GB.
PEAK_GROWTH_LIMIT_MB = 600


def resident_mb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


async def test_postscript_named_like_a_photo_is_refused_and_never_starts_ghostscript(
    bot_api, start_bot, fake_ghostscript
):
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_document(chat, bot_api.user(USER_ID), EPS_PAYLOAD, "holiday.jpg", "image/jpeg",
                                caption="where was this taken?")

    [reply] = await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    assert reply.text == texts.IMAGE_UNREADABLE
    assert not fake_ghostscript.was_run()
    store = runtime(application).store
    [question] = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert (question.text, question.status) == ("where was this taken?", TurnStatus.FAILED)


async def test_a_flood_of_images_huge_to_decode_is_decoded_one_at_a_time(bot_api, start_bot):
    application = await start_bot(image_decode_workers=1)
    heavy = decompression_heavy_png(HEAVY_SIDE)
    chats = [bot_api.private_chat(USER_ID + n, f"User {n}") for n in range(FLOOD)]
    baseline, peak = resident_mb(), 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, resident_mb())
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    try:
        for chat in chats:
            await bot_api.send_document(chat, bot_api.users[chat.id], heavy, "scan.png", "image/png")
        for chat in chats:
            await bot_api.wait_for_bot_message(chat, timeout=90)
        await answers_settled(application, timeout=90)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler

    assert runtime(application).store.decode_pool.peak == 1
    assert peak - baseline < PEAK_GROWTH_LIMIT_MB, f"memory grew by {peak - baseline} MB"
    assert all(bot_api.bot_messages(chat)[0].text != texts.IMAGE_UNREADABLE for chat in chats)
