"""What a person asked, read once from a Telegram message: who, in which chat, what, and where to answer.

Every handler turns PTB's `Message` into these values here, so "is this a private chat", "which forum
topic", "who sent it" and "is this a command for this bot" each have one answer:

- `ReplyTarget`: where and how the answer is shown. Private chats get plain messages; in groups the
  answer quotes the question and stays in its forum topic.
- `IncomingMessage`: a question for the model, with its images and the messages that carry it.
- `TaskCall`: one use of an image task (/caption, /classify, /story, /describe), asked for by a command
  replying to a photo (anyone's), a photo whose caption is the command, or an album captioned with it.
- `AlbumItem`: one photo of an album, as it arrived (the album is answered once all have).
- `ConversationCall`: /retry or /new (or the buttons that stand for them); `RegenerateCall`: 🔄 under
  an answer.

These are the requests the inbox stores (`bot.request_codec`), so none of them holds a PTB object:
a request written down before a restart is worked on after it. Storage and the model never see PTB
either: sender and chat leave here as `storage.types` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from telegram import Chat, MaybeInaccessibleMessage, Message, User

from bot.conversation_queue import ConversationKey
from bot.downloads import ImageSource, image_source
from storage.types import ChatInfo, UserInfo

# "/name", "/name@bot", then the argument (which may span lines and keep its commas).
_COMMAND = re.compile(
    r"^/(?P<name>[A-Za-z0-9_]{1,32})(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+(?P<argument>.*))?\Z", re.DOTALL
)


@dataclass(frozen=True)
class ReplyTarget:
    """Where and how an answer is shown."""

    chat_id: int
    is_private: bool
    reply_to_message_id: int | None = None  # the message quoted (groups only)
    message_thread_id: int | None = None  # the forum topic, when the question came from one

    def quoting(self, message_id: int | None) -> ReplyTarget:
        """The same place, quoting another message in groups (a photo the question was about)."""
        return self if self.is_private else replace(self, reply_to_message_id=message_id)


@dataclass(frozen=True)
class IncomingMessage:
    """A question for the model, stripped of the Telegram details the answer does not need."""

    user: UserInfo
    chat: ChatInfo
    text: str
    target: ReplyTarget
    message_ids: tuple[int, ...]  # every message carrying the question (an album has several)
    images: tuple[ImageSource, ...] = ()  # in order


@dataclass(frozen=True)
class TaskCall:
    """One request for an image task, from a command message, a captioned photo or an album."""

    task: str  # the command's name: caption, classify, story, describe
    user: UserInfo
    chat: ChatInfo
    reply: ReplyTarget  # where the command was written (quoting the command in groups)
    argument: str  # the text after the command, stripped
    images: tuple[ImageSource, ...]  # the images meant, in order; empty when none was given
    message_ids: tuple[int, ...]  # the person's messages that make up the request
    photo_message_id: int | None = None  # the photo replied to, when the image came from a reply

    def target(self, *, answer_the_photo: bool = False) -> ReplyTarget:
        """Where to answer: in groups, quote the command (or the photo it replied to, if asked)."""
        if answer_the_photo and self.photo_message_id is not None:
            return self.reply.quoting(self.photo_message_id)
        return self.reply

    def question(self, text: str, *, answer_the_photo: bool = False) -> IncomingMessage:
        """The user turn this request becomes: its images and the instruction the model sees."""
        return IncomingMessage(
            user=self.user,
            chat=self.chat,
            text=text,
            target=self.target(answer_the_photo=answer_the_photo),
            message_ids=self.message_ids,
            images=self.images,
        )


@dataclass(frozen=True)
class AlbumItem:
    """One photo of an album. Only one item carries the caption, and in groups only the album as a
    whole says whether the bot was asked, so each item is kept until the album is complete."""

    user: UserInfo
    chat: ChatInfo
    target: ReplyTarget
    message_id: int
    image: ImageSource | None
    caption: str = ""
    addressed: bool = False  # private chat, a mention of the bot, or a reply to it
    task: str | None = None  # the caption is this task command…
    argument: str = ""  # …with this argument


@dataclass(frozen=True)
class ConversationCall:
    """/retry or /new, from a command (`confirm`: say so in the chat) or a button (the press says it)."""

    user: UserInfo
    chat: ChatInfo
    target: ReplyTarget
    confirm: bool = True
    message_id: int | None = None  # the command's message, when it came from one


@dataclass(frozen=True)
class RegenerateCall:
    """🔄 pressed under an answer: that answer written again, if it is still the newest."""

    conversation_id: int
    answer_id: int
    target: ReplyTarget  # where the new answer goes
    buttons_chat_id: int  # the message whose buttons are removed once it is superseded
    buttons_message_id: int


def reply_target(message: MaybeInaccessibleMessage) -> ReplyTarget:
    """Answer `message` where it was written: quoted in groups, in its forum topic if it has one.

    Also for a message too old for Telegram to show us (a button press on it): its chat is still known."""
    private = message.chat.type == Chat.PRIVATE
    in_topic = isinstance(message, Message) and bool(message.is_topic_message)
    return ReplyTarget(
        chat_id=message.chat.id,
        is_private=private,
        reply_to_message_id=None if private else message.message_id,
        message_thread_id=message.message_thread_id if in_topic else None,
    )


def incoming_message(
    message: Message,
    text: str,
    *,
    images: tuple[ImageSource, ...] | None = None,
    message_ids: tuple[int, ...] = (),
    target: ReplyTarget | None = None,
) -> IncomingMessage:
    """`message` as a question: its own image unless `images` says otherwise, answered where it was asked."""
    own = image_source(message)
    return IncomingMessage(
        user=sender_info(message),
        chat=chat_info(message.chat),
        text=text,
        target=target or reply_target(message),
        message_ids=message_ids or (message.message_id,),
        images=images if images is not None else tuple(source for source in (own,) if source),
    )


def user_info(user: User) -> UserInfo:
    return UserInfo(
        id=user.id,
        first_name=user.first_name or "",
        last_name=user.last_name,
        username=user.username,
        language_code=user.language_code,
    )


def chat_info(chat: Chat) -> ChatInfo:
    return ChatInfo(id=chat.id, type=chat.type, title=chat.title, username=chat.username)


def sender_info(message: Message) -> UserInfo:
    """Who sent the message. Messages sent on behalf of a chat (anonymous admins, channels) carry a
    placeholder user on Telegram, but a Bot API server may leave `from` out: then the chat is the sender."""
    if message.from_user is not None:
        return user_info(message.from_user)
    chat = message.sender_chat or message.chat
    return UserInfo(
        id=chat.id, first_name=chat.title or chat.first_name or "", last_name=None,
        username=chat.username, language_code=None,
    )


def conversation_key(message: Message) -> ConversationKey:
    """Whose conversation this message belongs to (the sender's, in this chat)."""
    return ConversationKey(chat_id=message.chat_id, user_id=sender_info(message).id)


def parse_command(text: str | None, bot_username: str) -> tuple[str, str] | None:
    """(command name in lower case, argument) when `text` starts with a command for this bot."""
    match = _COMMAND.match((text or "").strip())
    if match is None or (match["bot"] and match["bot"].casefold() != bot_username.casefold()):
        return None
    return match["name"].casefold(), (match["argument"] or "").strip()


def call_from_command(message: Message, task: str, bot_username: str) -> TaskCall:
    """A command sent as text: the image, if any, is the one it replies to."""
    _, argument = parse_command(message.text, bot_username) or ("", "")
    replied = message.reply_to_message
    source = image_source(replied) if replied is not None else None
    return task_call(
        message, task, argument, (source,) if source else (),
        photo_message_id=replied.message_id if source else None,
    )


def call_from_caption(message: Message, task: str, argument: str) -> TaskCall:
    """A photo (or image file) whose caption is the command."""
    own = image_source(message)
    return task_call(message, task, argument, (own,) if own else ())


def task_call(
    message: Message,
    task: str,
    argument: str,
    images: tuple[ImageSource, ...],
    *,
    message_ids: tuple[int, ...] = (),
    photo_message_id: int | None = None,
) -> TaskCall:
    """A task asked for in `message` (for an album: the captioned item, with all items' ids)."""
    return TaskCall(
        task=task,
        user=sender_info(message),
        chat=chat_info(message.chat),
        reply=reply_target(message),
        argument=argument,
        images=images,
        message_ids=message_ids or (message.message_id,),
        photo_message_id=photo_message_id,
    )


def conversation_call(message: Message) -> ConversationCall:
    """/retry or /new written in `message`."""
    return ConversationCall(
        user=sender_info(message), chat=chat_info(message.chat), target=reply_target(message),
        message_id=message.message_id,
    )
