"""A stand-in for Telegram's Bot API server, for end-to-end tests of the bot and for `idefics-bot try`
(see server.py).

    server = BotApiStandIn()            # or the `bot_api` fixture from tests.standin.fixtures
    await server.start()                # 127.0.0.1, a free port; TELEGRAM_API_URL = server.api_root
    chat = server.private_chat(101, "Ann")
    await server.send_photo(chat, server.user(101), jpeg_bytes, caption="What is this?")
    [answer] = await server.wait_for_bot_message(chat)
    assert server.drafts(chat) and answer.text
    await server.stop()
"""

from .files import StoredFile
from .flood import FloodLimits, Window
from .observe import StandInTimeout
from .server import BotApiStandIn, make_token
from .state import ApiCall, BotMessage, ChatHandle, DraftRecord, ServedError, UserHandle

__all__ = [
    "ApiCall", "BotApiStandIn", "BotMessage", "ChatHandle", "DraftRecord", "FloodLimits",
    "ServedError", "StandInTimeout", "StoredFile", "UserHandle", "Window", "make_token",
]
