"""What a chat chose with /mode and /settings, read back from storage and checked before it is used.

Stored chat settings are plain JSON that may be stale (a mode file was deleted, an option renamed) or
simply wrong; every value is validated here and anything unknown falls back to the bot's default, so
a bad row can never break an answer. The stored keys are `mode`, `length` and `creativity`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.settings import Settings
from model.preamble import NO_PREAMBLE
from model.types import GenerationParams, Preamble

log = logging.getLogger(__name__)

MODE_KEY, LENGTH_KEY, CREATIVITY_KEY = "mode", "length", "creativity"

# Answer length as a share of the bot's MAX_NEW_TOKENS (so an admin's cap is never exceeded).
LENGTH_SHARES = {"short": 1 / 8, "medium": 1 / 2, "long": 1.0}
DEFAULT_LENGTH = "long"  # the bot's own limit, as before chats could choose

CREATIVITY_CHOICES = ("precise", "balanced", "creative")
DEFAULT_CREATIVITY = "precise"  # greedy, like the IDEFICS playground's default
# The playground's sampling mode; "creative" uses STORY_TEMPERATURE / STORY_TOP_P from the settings.
BALANCED_TEMPERATURE, BALANCED_TOP_P = 0.4, 0.8


@dataclass(frozen=True)
class ChatPreferences:
    """A chat's valid choices. `mode` None means the bot's default (PROMPT_PREAMBLE)."""

    mode: str | None = None
    length: str = DEFAULT_LENGTH
    creativity: str = DEFAULT_CREATIVITY


def read_preferences(stored: Mapping[str, Any], modes: Mapping[str, Preamble]) -> ChatPreferences:
    """The chat's stored choices, each one dropped (with a log line) if it is no longer valid."""
    mode = stored.get(MODE_KEY)
    if mode is not None and (not isinstance(mode, str) or (mode != NO_PREAMBLE and mode not in modes)):
        log.info("ignoring the stored mode %r: no such mode now", mode)
        mode = None
    return ChatPreferences(
        mode=mode,
        length=_choice(stored, LENGTH_KEY, tuple(LENGTH_SHARES), DEFAULT_LENGTH),
        creativity=_choice(stored, CREATIVITY_KEY, CREATIVITY_CHOICES, DEFAULT_CREATIVITY),
    )


def _choice(stored: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = stored.get(key, default)
    if value not in allowed:
        log.info("ignoring the stored %s %r: not one of %s", key, value, ", ".join(allowed))
        return default
    return value


def available_modes(modes: Mapping[str, Preamble], default: Preamble | None) -> dict[str, Preamble]:
    """The modes a chat can pick: the loaded ones, plus PROMPT_PREAMBLE's when it came from a path."""
    available = {name: preamble for name, preamble in modes.items() if name != NO_PREAMBLE}
    if default is not None:
        available.setdefault(default.name, default)
    return available


def current_mode_name(preferences: ChatPreferences, default: Preamble | None) -> str:
    """The mode the chat is in now, by name; "none" when the exchange has no preamble."""
    if preferences.mode is not None:
        return preferences.mode
    return default.name if default is not None else NO_PREAMBLE


def chosen_preamble(
    preferences: ChatPreferences,
    modes: Mapping[str, Preamble],
    default: Preamble | None,
) -> Preamble | None:
    if preferences.mode is None:
        return default
    if preferences.mode == NO_PREAMBLE:
        return None
    return modes.get(preferences.mode, default)


def max_new_tokens_for(length: str, settings: Settings) -> int:
    share = LENGTH_SHARES.get(length, LENGTH_SHARES[DEFAULT_LENGTH])
    return max(1, round(settings.max_new_tokens * share))


def generation_params(preferences: ChatPreferences, settings: Settings) -> GenerationParams:
    """Generation settings for the chat's answers: its length within the bot's cap, and its creativity."""
    max_new_tokens = max_new_tokens_for(preferences.length, settings)
    if preferences.creativity == "balanced":
        return GenerationParams(
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=BALANCED_TEMPERATURE,
            top_p=BALANCED_TOP_P,
        )
    if preferences.creativity == "creative":
        return GenerationParams(
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=settings.story_temperature,
            top_p=settings.story_top_p,
        )
    return GenerationParams(max_new_tokens=max_new_tokens)
