"""Playing Telegram users: the updates a client would produce when someone writes to the bot.

Each action builds the message Telegram would deliver (client-made entities, PhotoSizes, an embedded
reply_to_message), stores it so the bot can reply to it, and queues it for getUpdates.
"""

from __future__ import annotations

import io
import secrets
from typing import TYPE_CHECKING, Any, Union

from PIL import Image, UnidentifiedImageError

from .formatting import client_entities
from .state import BotMessage, ChatHandle, UserHandle

if TYPE_CHECKING:
    from .server import BotApiStandIn

MessageRef = Union[dict, BotMessage, int]  # a message dict, a bot message record, or an id
THUMBNAIL_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
THUMBNAIL_MAX_PIXELS = 20_000_000


class UserActions:
    """Mixed into BotApiStandIn: chats, users, and what users do in them."""

    def user(self: BotApiStandIn, user_id: int, first_name: str = "Ann",
             username: str | None = None) -> UserHandle:
        user = self.users.get(user_id) or UserHandle(user_id, first_name, username)
        self.users[user_id] = user
        return user

    def private_chat(self: BotApiStandIn, user_id: int, first_name: str = "Ann",
                     username: str | None = None) -> ChatHandle:
        """The private chat of this user with the bot (as if the user had pressed Start)."""
        user = self.user(user_id, first_name, username)
        chat = ChatHandle(user.id, "private", first_name=user.first_name, username=user.username)
        return self.chats.setdefault(chat.id, chat)

    def group_chat(self: BotApiStandIn, chat_id: int, title: str = "Test group",
                   is_forum: bool = False, *, privacy_mode: bool = False) -> ChatHandle:
        """A supergroup (a forum if is_forum) that the bot is a member of."""
        chat = ChatHandle(chat_id, "supergroup", title=title, is_forum=is_forum,
                          privacy_mode=privacy_mode)
        return self.chats.setdefault(chat.id, chat)

    def basic_group(self: BotApiStandIn, chat_id: int, title: str = "Small group") -> ChatHandle:
        """A basic group ("group"), the kind Telegram upgrades to a supergroup (see migrate)."""
        return self.chats.setdefault(chat_id, ChatHandle(chat_id, "group", title=title))

    def migrate(self: BotApiStandIn, group: ChatHandle, supergroup_id: int,
                by: UserHandle) -> ChatHandle:
        """Upgrades a basic group to a supergroup, with the service messages of both sides."""
        supergroup = self.group_chat(supergroup_id, group.title or "Supergroup")
        group.migrated_to = supergroup.id
        for chat, field_name, other in ((group, "migrate_to_chat_id", supergroup.id),
                                        (supergroup, "migrate_from_chat_id", group.id)):
            message = self.new_message(chat, by)
            message[field_name] = other
            self.store.add(message)
            self._deliver_to_bot(chat, "message", message)
        return supergroup

    def create_topic(self: BotApiStandIn, chat: ChatHandle, name: str) -> int:
        """Opens a forum topic and returns its message_thread_id."""
        creator = UserHandle(1087968824, "Group", "GroupAnonymousBot", is_bot=True)
        message = self.new_message(chat, creator)
        message["forum_topic_created"] = {"name": name, "icon_color": 7322096}
        self.store.add(message)
        chat.topics[message["message_id"]] = name
        return message["message_id"]

    async def send_text(self: BotApiStandIn, chat: ChatHandle, user: UserHandle, text: str, *,
                        reply_to: MessageRef | None = None, message_thread_id: int | None = None,
                        entities: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        entities = client_entities(text) if entities is None else entities
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return self._from_user(chat, user, content, reply_to, message_thread_id)

    async def send_photo(self: BotApiStandIn, chat: ChatHandle, user: UserHandle,
                         image_bytes: bytes, *, caption: str | None = None,
                         reply_to: MessageRef | None = None, media_group_id: str | None = None,
                         message_thread_id: int | None = None,
                         reported_size: int | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {
            "photo": self.files.add_photo(image_bytes, reported_size=reported_size)}
        if media_group_id:
            content["media_group_id"] = media_group_id
        _add_caption(content, caption)
        return self._from_user(chat, user, content, reply_to, message_thread_id)

    async def send_document(self: BotApiStandIn, chat: ChatHandle, user: UserHandle, data: bytes,
                            file_name: str, mime_type: str, *, caption: str | None = None,
                            reply_to: MessageRef | None = None,
                            message_thread_id: int | None = None,
                            reported_size: int | None = None) -> dict[str, Any]:
        extension = "." + file_name.rsplit(".", 1)[-1] if "." in file_name else ""
        stored = self.files.add(data, folder="documents", extension=extension,
                                reported_size=reported_size)
        document = {**stored.wire(), "file_name": file_name, "mime_type": mime_type}
        thumbnail = self._thumbnail(data) if mime_type.startswith("image/") else None
        if thumbnail:
            document["thumbnail"] = document["thumb"] = thumbnail
        content: dict[str, Any] = {"document": document}
        _add_caption(content, caption)
        return self._from_user(chat, user, content, reply_to, message_thread_id)

    async def send_album(self: BotApiStandIn, chat: ChatHandle, user: UserHandle,
                         images: list[bytes], caption: str | None = None, caption_index: int = 0,
                         *, reply_to: MessageRef | None = None,
                         message_thread_id: int | None = None) -> list[dict[str, Any]]:
        """Photos sent together: one update each, sharing a media_group_id."""
        group_id = str(secrets.randbelow(10**18) + 10**17)
        return [
            await self.send_photo(chat, user, image, media_group_id=group_id,
                                  caption=caption if index == caption_index else None,
                                  reply_to=reply_to, message_thread_id=message_thread_id)
            for index, image in enumerate(images)]

    async def send_content(self: BotApiStandIn, chat: ChatHandle, user: UserHandle,
                           content: dict[str, Any], *, reply_to: MessageRef | None = None,
                           message_thread_id: int | None = None) -> dict[str, Any]:
        """Any other message: `content` holds its fields (see media.py: stickers, voice, places…)."""
        return self._from_user(chat, user, dict(content), reply_to, message_thread_id)

    async def edit_text(self: BotApiStandIn, chat: ChatHandle, user: UserHandle,
                        message: MessageRef, text: str) -> dict[str, Any]:
        """The user edits their text message; the bot gets an edited_message update."""
        original = self.store.get(chat.id, _message_id(message))
        if original is None or original["from"]["id"] != user.id or "text" not in original:
            raise ValueError(f"user {user.id} has no text message {_message_id(message)}")
        edited = {key: value for key, value in original.items() if key != "entities"}
        edited.update(text=text, edit_date=self.now())
        if entities := client_entities(text):
            edited["entities"] = entities
        self.store.add(edited)  # the update already queued keeps the old text, as on Telegram
        self._deliver_to_bot(chat, "edited_message", edited)
        return edited

    async def press_button(self: BotApiStandIn, chat: ChatHandle, user: UserHandle,
                           message: MessageRef, callback_data: str) -> dict[str, Any]:
        """Presses an inline button of a bot message; returns the callback_query."""
        record = self.store.bot.get((chat.id, _message_id(message)))
        if record is None or record.deleted:
            raise ValueError(f"no bot message {_message_id(message)} in chat {chat.id}")
        if callback_data not in [data for _, data in record.buttons]:
            raise ValueError(f"message has no button {callback_data!r}: {record.buttons}")
        query = {"id": str(next(self._query_ids)), "from": user.wire(),
                 "message": dict(record.wire), "chat_instance": str(abs(hash(chat.id))),
                 "data": callback_data}
        self.open_callback_queries.add(query["id"])
        self.updates.push("callback_query", query)
        return query

    def add_file(self: BotApiStandIn, data: bytes, *, folder: str = "documents",
                 extension: str = "", reported_size: int | None = None):
        """Hosts an arbitrary file; returns its StoredFile (set download_fails to break it)."""
        return self.files.add(data, folder=folder, extension=extension,
                              reported_size=reported_size)

    def new_message(self: BotApiStandIn, chat: ChatHandle, sender: UserHandle, *,
                    thread_id: int | None = None, reply_to: int | None = None
                    ) -> dict[str, Any]:
        """The common part of every message: id, sender, chat, date, topic, replied message."""
        message: dict[str, Any] = {
            "message_id": self.store.next_id(chat.id), "from": sender.wire(),
            "chat": chat.wire(), "date": self.now()}
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = self.store.as_reply(chat.id, reply_to)
        return message

    def _from_user(self: BotApiStandIn, chat: ChatHandle, user: UserHandle,
                   content: dict[str, Any], reply_to: MessageRef | None,
                   thread_id: int | None) -> dict[str, Any]:
        if chat.type == "private" and user.id != chat.id:
            raise ValueError(f"user {user.id} can't write in the private chat of {chat.id}")
        if thread_id is not None:
            if not chat.is_forum:
                raise ValueError("message_thread_id needs a forum chat")
            chat.topics.setdefault(thread_id, f"Topic {thread_id}")
        reply_id = None if reply_to is None else _message_id(reply_to)
        if reply_id is not None and self.store.get(chat.id, reply_id) is None:
            raise ValueError(f"no message {reply_id} in chat {chat.id} to reply to")
        if reply_id is None and thread_id is not None and self.store.get(chat.id, thread_id):
            reply_id = thread_id  # Telegram: a topic message replies to the topic's first message
        self.users.setdefault(user.id, user)
        message = self.new_message(chat, user, thread_id=thread_id, reply_to=reply_id)
        message.update(content)
        self.store.add(message)
        self._deliver_to_bot(chat, "message", message)
        return message

    def _deliver_to_bot(self: BotApiStandIn, chat: ChatHandle, kind: str,
                        message: dict[str, Any]) -> None:
        if not chat.privacy_mode or self._meant_for_bot(message):
            self.updates.push(kind, message)

    def _meant_for_bot(self: BotApiStandIn, message: dict[str, Any]) -> bool:
        """What a group with privacy mode shows a bot: commands, replies to it, mentions of it."""
        replied = message.get("reply_to_message") or {}
        if replied.get("from", {}).get("id") == self.bot_user.id:
            return True
        text = message.get("text") or message.get("caption") or ""
        entities = message.get("entities") or message.get("caption_entities") or []
        handle = f"@{self.bot_user.username}".lower()
        for entity in entities:
            word = text.encode("utf-16-le")[2 * entity["offset"]:
                                             2 * (entity["offset"] + entity["length"])]
            word = word.decode("utf-16-le").lower()
            if entity["type"] == "bot_command" and ("@" not in word or word.endswith(handle)):
                return True
            if entity["type"] == "mention" and word == handle:
                return True
        return False

    def _thumbnail(self: BotApiStandIn, data: bytes) -> dict[str, Any] | None:
        """What Telegram shows of an image file. None for what it cannot decode (damaged files,
        bombs, formats it does not preview, such as PostScript named .jpg) and for pictures too
        large to preview; decoding those here would only make the tests slow or run Ghostscript."""
        try:
            with Image.open(io.BytesIO(data), formats=THUMBNAIL_FORMATS) as image:
                if image.width * image.height > THUMBNAIL_MAX_PIXELS:
                    return None
                image.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            return None
        return self.files.add_photo(data)[0]


def _add_caption(content: dict[str, Any], caption: str | None) -> None:
    if caption:
        content["caption"] = caption
        entities = client_entities(caption)
        if entities:
            content["caption_entities"] = entities


def _message_id(message: Any) -> int:
    if isinstance(message, BotMessage):
        return message.message_id
    if isinstance(message, dict):
        return message["message_id"]
    return int(message)

