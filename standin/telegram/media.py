"""The content of messages that are neither text nor photos: stickers, voice, video, places, polls…

Each builder returns the fields Telegram puts in such a message (for `UserActions.send_content`), in
the Bot API's shapes. Files are hosted in the stand-in's FileStore so a bot could even download them.
An animation carries a `document` too, as on Telegram (old clients only knew documents).
"""

from __future__ import annotations

from typing import Any

from .files import FileStore

PLACEHOLDER_BYTES = b"\x00" * 64


def sticker(files: FileStore, emoji: str = "😺") -> dict[str, Any]:
    stored = files.add(PLACEHOLDER_BYTES, folder="stickers", extension=".webp")
    return {"sticker": {**stored.wire(), "type": "regular", "width": 512, "height": 512,
                        "is_animated": False, "is_video": False, "emoji": emoji}}


def voice(files: FileStore) -> dict[str, Any]:
    stored = files.add(PLACEHOLDER_BYTES, folder="voice", extension=".oga")
    return {"voice": {**stored.wire(), "duration": 2, "mime_type": "audio/ogg"}}


def audio(files: FileStore) -> dict[str, Any]:
    stored = files.add(PLACEHOLDER_BYTES, folder="music", extension=".mp3")
    return {"audio": {**stored.wire(), "duration": 3, "mime_type": "audio/mpeg",
                      "file_name": "song.mp3"}}


def video(files: FileStore) -> dict[str, Any]:
    stored = files.add(PLACEHOLDER_BYTES, folder="videos", extension=".mp4")
    return {"video": {**stored.wire(), "width": 640, "height": 360, "duration": 4,
                      "mime_type": "video/mp4"}}


def video_note(files: FileStore) -> dict[str, Any]:
    stored = files.add(PLACEHOLDER_BYTES, folder="video_notes", extension=".mp4")
    return {"video_note": {**stored.wire(), "length": 240, "duration": 3}}


def animation(files: FileStore) -> dict[str, Any]:
    stored = files.add(PLACEHOLDER_BYTES, folder="animations", extension=".mp4")
    wire = {**stored.wire(), "file_name": "funny.gif.mp4", "mime_type": "video/mp4"}
    return {"animation": {**wire, "width": 320, "height": 240, "duration": 2}, "document": wire}


def location() -> dict[str, Any]:
    return {"location": {"latitude": 52.52, "longitude": 13.405}}


def venue() -> dict[str, Any]:
    return {"location": {"latitude": 48.8584, "longitude": 2.2945},
            "venue": {"location": {"latitude": 48.8584, "longitude": 2.2945},
                      "title": "Eiffel Tower", "address": "Champ de Mars, Paris"}}


def contact() -> dict[str, Any]:
    return {"contact": {"phone_number": "+15550100", "first_name": "Bob"}}


def dice(emoji: str = "🎲", value: int = 4) -> dict[str, Any]:
    return {"dice": {"emoji": emoji, "value": value}}


def poll(question: str = "Cats or dogs?") -> dict[str, Any]:
    return {"poll": {"id": "5550001", "question": question,
                     "options": [{"persistent_id": "0", "text": "Cats", "voter_count": 0},
                                 {"persistent_id": "1", "text": "Dogs", "voter_count": 0}],
                     "total_voter_count": 0, "is_closed": False, "is_anonymous": True,
                     "type": "regular", "allows_multiple_answers": False,
                     "allows_revoting": True, "members_only": False}}
