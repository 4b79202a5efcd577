"""A stand-in for Telegram's Bot API server, for end-to-end tests of the bot (see server.py)."""

from .files import StoredFile
from .flood import FloodLimits, Window
from .observe import StandInTimeout
from .server import BotApiStandIn, make_token
from .state import ApiCall, BotMessage, ChatHandle, DraftRecord, ServedError, UserHandle

__all__ = [
    "ApiCall", "BotApiStandIn", "BotMessage", "ChatHandle", "DraftRecord", "FloodLimits",
    "ServedError", "StandInTimeout", "StoredFile", "UserHandle", "Window", "make_token",
]
