"""The store the bot talks to: conversations, turns and images behind a small async API.

It owns one engine and its session factories for its lifetime (`start()` .. `stop()`); every
method runs in its own short transaction (`storage.sessions`, a synchronous body) and returns
frozen values from storage.types. The requests waiting to be answered live in `Store.inbox`
(`storage.inbox`); image bytes are decoded in the store's bounded `DecodePool`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage import chat_moves, cleanup, convert
from storage.database import DEFAULT_LOCK_TIMEOUT_S, create_engine, create_store_engine, dispose, erase_traces
from storage.errors import NotFound, StorageError
from storage.images import DEFAULT_MAX_SIDE, DecodePool, NormalisedImage
from storage.inbox import InboxStore, finish_requests
from storage.pictures import PictureCache
from storage.migrations import upgrade_engine
from storage.queries import (
    count_rows,
    find_or_start_conversation,
    get_or_add_placeholder,
    image_row,
    is_open_conversation,
    lock_user,
    merge_settings,
    record_user_and_chat,
    start_conversation,
)
from storage.schema import Chat, Conversation, Image, Turn, TurnImage, User, utc_now
from storage.sessions import Transactions
from storage.turn_reads import QUESTION_OF_REQUEST, TURN_OF_MESSAGE, TURNS_OF_CONVERSATION, TURNS_OF_REQUEST
from storage.turn_writes import append_turn_row, chat_of_turn, close_turn_row, link_messages, mark_active
from storage.types import (
    AskedQuestion,
    ChatInfo,
    ConversationRef,
    ImageInput,
    StoredImage,
    StoredTurn,
    StoreStats,
    TurnStatus,
    UserInfo,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store:
    def __init__(
        self,
        database_url: str,
        *,
        max_image_side: int = DEFAULT_MAX_SIDE,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        decode_pool: DecodePool | None = None,
        pictures: PictureCache | None = None,
    ) -> None:
        self.database_url = database_url
        self.max_image_side = max_image_side
        self.lock_timeout_s = lock_timeout_s
        self.decode_pool = decode_pool or DecodePool()
        # Decoded pictures of recent questions, for their conversations' next turns.
        self.pictures = pictures if pictures is not None else PictureCache()
        self._transactions: Transactions | None = None
        self._inbox: InboxStore | None = None

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the engine and upgrade the schema to head. Answers a crash left pending are not
        touched here (another process may be writing them): the inbox finishes them."""
        if self._transactions is not None:
            raise StorageError("store already started")
        # The upgrade may wait for another program's lock for the whole lock timeout, off the loop.
        migrating = create_engine(self.database_url, lock_timeout_s=self.lock_timeout_s)
        try:
            await upgrade_engine(migrating)
        finally:
            await migrating.dispose()
        engine = create_store_engine(self.database_url, lock_timeout_s=self.lock_timeout_s)
        self._transactions = Transactions(engine, lock_timeout_s=self.lock_timeout_s)
        self._inbox = InboxStore(self._transactions)

    async def stop(self) -> None:
        if self._transactions is not None:
            await dispose(self._transactions.engine)
        self._transactions = self._inbox = None

    @property
    def inbox(self) -> InboxStore:
        """The requests waiting to be answered (see `storage.inbox`)."""
        if self._inbox is None:
            raise StorageError("store is not started")
        return self._inbox

    # -- users, chats, conversations --------------------------------------------------------

    async def touch(self, user: UserInfo, chat: ChatInfo) -> None:
        """Record (or refresh) the user and chat as Telegram shows them now."""
        await self._write(lambda session: record_user_and_chat(session, user, chat))

    async def active_conversation(self, chat_id: int, user_id: int) -> ConversationRef:
        """The open conversation of this user in this chat, started if there is none."""

        def work(session: Session) -> ConversationRef:
            return find_or_start_conversation(session, chat_id, user_id)

        return await self._write(work)

    async def conversation_so_far(
        self, user: UserInfo, chat: ChatInfo
    ) -> tuple[ConversationRef, list[StoredTurn]]:
        """`touch`, `active_conversation` and its `history`, in one transaction: all a question
        needs before its turn is added."""

        def work(session: Session) -> tuple[ConversationRef, list[StoredTurn]]:
            record_user_and_chat(session, user, chat)
            conversation = find_or_start_conversation(session, chat.id, user.id)
            return conversation, self._turns_of(session, conversation.id)

        return await self._write(work)

    async def new_conversation(self, chat_id: int, user_id: int) -> ConversationRef:
        """Close the user's open conversation in this chat (if any) and start a fresh one."""

        def work(session: Session) -> ConversationRef:
            lock_user(session, user_id)
            session.execute(
                update(Conversation)
                .where(is_open_conversation(chat_id, user_id))
                .values(closed_at=utc_now())
                .execution_options(synchronize_session=False)
            )
            return convert.conversation_ref(start_conversation(session, chat_id, user_id))

        return await self._write(work)

    async def conversation(self, conversation_id: int) -> ConversationRef | None:
        """One conversation by id (open or closed): whose it is and whether it is still open."""

        def work(session: Session) -> ConversationRef | None:
            row = session.get(Conversation, conversation_id)
            return None if row is None else convert.conversation_ref(row)

        return await self._read(work)

    # -- turns -------------------------------------------------------------------------------

    async def add_user_turn(
        self,
        conversation_id: int,
        text: str,
        images: Sequence[ImageInput] = (),
        message_ids: Sequence[int] = (),
        *,
        status: TurnStatus = TurnStatus.COMPLETE,
        inbox_item_id: int | None = None,
        normalised: Sequence[NormalisedImage] | None = None,
    ) -> StoredTurn:
        """Append a user turn with its images (normalised, de-duplicated) in one transaction.
        Raises ImageRejected before writing anything if an image is unreadable. Stored once per
        inbox request: asked again for the same `inbox_item_id`, it returns the turn it stored.
        `normalised`: the images already normalised (`normalise`), one for each of `images`."""
        if normalised is None:
            normalised = await self.normalise(images)
        elif len(normalised) != len(images):
            raise ValueError("one normalised image is needed for each image")

        def work(session: Session) -> StoredTurn:
            if inbox_item_id is not None:
                stored = QUESTION_OF_REQUEST(session, {"p_request_id": inbox_item_id})
                if stored:
                    return stored[0]
            turn = append_turn_row(
                session, conversation_id, role="user", status=status, text=text, inbox_item_id=inbox_item_id
            )
            shown = []
            for index, (given, image) in enumerate(zip(images, normalised)):
                row = image_row(
                    session, image, given.file_unique_id, hashlib.sha256(given.data).hexdigest()
                )
                session.add(TurnImage(turn_id=turn.id, position=index, image_id=row.id))
                shown.append(convert.stored_image(row))
                if image.picture is not None:
                    self.pictures.put(row.sha256, image.picture)
            if shown:
                session.flush()
            linked = link_messages(session, turn.id, turn.chat_id, message_ids)
            return turn.stored(images=tuple(shown), message_ids=linked)

        return await self._write(work)

    async def ask(
        self, user: UserInfo, chat: ChatInfo, text: str, *, message_ids: Sequence[int] = (),
        inbox_item_id: int | None = None,
    ) -> AskedQuestion:
        """A question without images, stored with what its answer needs to start, in one transaction:
        `conversation_so_far`, `add_user_turn`, `chat_settings` and `open_assistant_turn` in one.
        Once per request: the caller knows (`turns_for_request`) that its question is not stored yet."""

        def work(session: Session) -> AskedQuestion:
            chat_settings = record_user_and_chat(session, user, chat)
            conversation = find_or_start_conversation(session, chat.id, user.id)
            history = self._turns_of(session, conversation.id)
            question = append_turn_row(
                session, conversation.id, role="user", status=TurnStatus.COMPLETE, text=text,
                inbox_item_id=inbox_item_id,
            )
            linked = link_messages(session, question.id, question.chat_id, message_ids)
            answer = append_turn_row(
                session, conversation.id, role="assistant", status=TurnStatus.PENDING,
                inbox_item_id=inbox_item_id, after=question,
            )
            return AskedQuestion(
                conversation_id=conversation.id,
                history=(*history, question.stored(message_ids=linked)),
                answer=answer.stored(),
                chat_settings=chat_settings,
            )

        return await self._write(work)

    async def normalise(self, images: Sequence[ImageInput]) -> list[NormalisedImage]:
        """The images as the store keeps them (on the decode pool); raises ImageRejected."""
        return await self.decode_pool.normalise([image.data for image in images], self.max_image_side)

    async def open_assistant_turn(
        self, conversation_id: int, *, inbox_item_id: int | None = None
    ) -> StoredTurn:
        """Append an assistant turn in PENDING state, to be closed when generation ends."""

        def work(session: Session) -> StoredTurn:
            turn = append_turn_row(
                session, conversation_id, role="assistant", status=TurnStatus.PENDING, inbox_item_id=inbox_item_id
            )
            return turn.stored()

        return await self._write(work)

    async def close_assistant_turn(
        self,
        turn_id: int,
        status: TurnStatus,
        text: str = "",
        *,
        finish_reason: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        time_to_first_token_s: float | None = None,
        total_s: float | None = None,
        message_ids: Sequence[int] | None = None,
        replacing_links: bool = True,
        finishes_request: int | None = None,
    ) -> None:
        """Record how an assistant turn ended: its text, status, token counts and timings; with
        `message_ids`, also that these are all its messages now (`link_messages(only=True)`; with
        `replacing_links` False the caller knows the turn had none: they are only added); with
        `finishes_request`, that inbox request is done, in the same transaction (`InboxStore.finish`)."""
        values = dict(
            status=TurnStatus(status), text=text, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, time_to_first_token_s=time_to_first_token_s,
            total_s=total_s, finished_at=utc_now(),
        )

        def work(session: Session) -> None:
            conversation_id = close_turn_row(session, turn_id, values)
            chat_id = mark_active(session, conversation_id)
            if message_ids is not None:
                link_messages(session, turn_id, chat_id, message_ids, only=replacing_links)
            if finishes_request is not None:
                finish_requests(session, [finishes_request])

        await self._write(work)

    async def set_turn_status(self, turn_id: int, status: TurnStatus) -> None:
        """Change only a turn's status (e.g. SUPERSEDED when /retry replaces an answer)."""

        def work(session: Session) -> None:
            result = session.execute(
                update(Turn).where(Turn.id == turn_id).values(status=TurnStatus(status))
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"turn {turn_id} does not exist")

        await self._write(work)

    async def link_messages(self, turn_id: int, message_ids: Sequence[int], *, only: bool = False) -> None:
        """Remember the Telegram messages (in the conversation's chat) that carry this turn; a
        message already linked to another turn moves to this one. With `only`, these are all its
        messages now (a preview that gave way to the final message is no longer one of them)."""

        def work(session: Session) -> None:
            link_messages(session, turn_id, chat_of_turn(session, turn_id), message_ids, only=only)

        await self._write(work)

    # -- reading -----------------------------------------------------------------------------

    async def history(self, conversation_id: int) -> list[StoredTurn]:
        """Every turn of the conversation in order, each with its images and message ids."""

        def work(session: Session) -> list[StoredTurn]:
            if session.get(Conversation, conversation_id) is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            return self._turns_of(session, conversation_id)

        return await self._read(work)

    @staticmethod
    def _turns_of(session: Session, conversation_id: int) -> list[StoredTurn]:
        return TURNS_OF_CONVERSATION(session, {"p_conversation_id": conversation_id})

    async def turns_for_request(self, inbox_item_id: int) -> list[StoredTurn]:
        """The turns written for one inbox request, in order (its question, its answer attempts)."""
        return await self._read(lambda session: TURNS_OF_REQUEST(session, {"p_request_id": inbox_item_id}))

    async def turn_for_message(self, chat_id: int, message_id: int) -> StoredTurn | None:
        """The turn (any user's) that a Telegram message in this chat belongs to."""
        turns = await self._read(
            lambda session: TURN_OF_MESSAGE(session, {"p_chat_id": chat_id, "p_message_id": message_id})
        )
        return turns[0] if turns else None

    async def image_for_file(self, file_unique_id: str) -> StoredImage | None:
        """An image already stored under Telegram's file_unique_id, to skip a download."""

        def work(session: Session) -> StoredImage | None:
            image = session.scalar(select(Image).where(Image.file_unique_id == file_unique_id).limit(1))
            return None if image is None else convert.stored_image(image)

        return await self._read(work)

    async def ping(self) -> None:
        """One trivial query, for health checks: raises when the database does not answer it."""
        await self._read(lambda session: session.execute(select(1)).scalar())

    async def stats(self) -> StoreStats:
        """Row counts and stored image bytes, for the admin /stats command."""
        return await self._read(count_rows)

    # -- privacy and retention ---------------------------------------------------------------

    async def forget_user(self, user_id: int) -> int:
        """Delete the user, their conversations in every chat, their settings and private chat,
        their waiting requests, and images nobody else references; then leave no readable copy
        of any of it in the database files. Returns the number of rows removed."""
        removed = await self._write(lambda session: cleanup.forget_user_rows(session, user_id), off_loop=True)
        self.pictures.clear()
        await erase_traces(self._started().engine)
        return removed

    async def move_chat(self, old_chat_id: int, new_chat_id: int) -> int:
        """A basic group became a supergroup: its conversations, settings and waiting requests
        move to the new chat id. Returns how many conversations moved."""
        return await self._write(lambda session: chat_moves.move_chat_rows(session, old_chat_id, new_chat_id))

    async def purge_idle(self, older_than: timedelta) -> int:
        """Delete conversations idle for longer than `older_than` and images left unreferenced.
        Returns how many conversations were removed."""
        cutoff = utc_now() - older_than
        removed = await self._write(
            lambda session: cleanup.purge_conversations_idle_since(session, cutoff), off_loop=True
        )
        if removed:
            self.pictures.clear()
        return removed

    # -- settings ----------------------------------------------------------------------------

    async def chat_settings(self, chat_id: int) -> dict[str, Any]:
        return await self._read_settings(Chat, chat_id)

    async def update_chat_settings(self, chat_id: int, **values: Any) -> dict[str, Any]:
        """Merge `values` into the chat's settings (None removes a key); returns the result."""
        return await self._update_settings(Chat, chat_id, values)

    # -- internals ---------------------------------------------------------------------------

    async def _read_settings(self, model: type[User] | type[Chat], row_id: int) -> dict[str, Any]:

        def work(session: Session) -> dict[str, Any]:
            row = session.get(model, row_id)
            return dict(row.settings) if row is not None else {}

        return await self._read(work)

    async def _update_settings(
        self, model: type[User] | type[Chat], row_id: int, values: dict[str, Any]
    ) -> dict[str, Any]:
        def work(session: Session) -> dict[str, Any]:
            row = get_or_add_placeholder(session, model, row_id)
            row.settings = merge_settings(row.settings, values)
            return dict(row.settings)

        return await self._write(work)

    def _started(self) -> Transactions:
        if self._transactions is None:
            raise StorageError("store is not started")
        return self._transactions

    async def _read(self, work: Callable[[Session], T]) -> T:
        return await self._started().read(work)

    async def _write(self, work: Callable[[Session], T], *, off_loop: bool = False) -> T:
        return await self._started().write(work, off_loop=off_loop)
