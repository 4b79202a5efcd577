"""The inbox: every request a person made, stored as it arrives and kept until it has been answered.

A request is written once per Telegram update (a redelivered update is recognised by its
`update_id` and not stored twice). A conversation's requests are answered oldest first, one at a
time, by whichever bot process holds the conversation's claim: a lease in `inbox_claims`, taken
under the database's row lock (SELECT … FOR UPDATE), renewed while the holder works and released
when it is done, so that a crashed process's conversations are taken over once its lease runs out.
A request that is done keeps only its ids (to recognise a redelivery) until it is purged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from storage.convert import stored_request
from storage.group_commit import GroupCommit
from storage.schema import InboxClaim, InboxItem, utc_now
from storage.sessions import Transactions
from storage.turn_reads import TURNS_OF_REQUEST
from storage.turn_writes import upsert
from storage.types import InboxStatus, NewRequest, StoredRequest, StoredTurn

NOT_DONE = (InboxStatus.PENDING, InboxStatus.UNDELIVERED)


def _waiting(*conditions: ColumnElement[bool]) -> Select[tuple[InboxItem]]:
    """Requests not done yet that meet `conditions`, oldest first."""
    return (
        select(InboxItem)
        .where(InboxItem.status.in_(NOT_DONE), *conditions)
        .order_by(InboxItem.update_id)
    )


class InboxStore:
    """The inbox and its claims, over the store's transactions."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions
        self._adding: GroupCommit[NewRequest, StoredRequest | None] = GroupCommit(self._add_all)

    # -- requests ----------------------------------------------------------------------------

    async def add(self, request: NewRequest) -> StoredRequest | None:
        """Store a request; None if its update was stored before (Telegram redelivered it). Requests
        added together (the handlers of one getUpdates batch) are stored in one transaction
        (`storage.group_commit`); this returns once this one is committed."""
        return await self._adding.add(request)

    async def _add_all(self, requests: Sequence[NewRequest]) -> list[StoredRequest | None]:
        def work(session: Session) -> list[StoredRequest | None]:
            seen = set(session.scalars(_STORED_UPDATES, {"p_update_ids": [r.update_id for r in requests]}))
            new: list[dict[str, Any]] = []
            for request in requests:
                if request.update_id in seen:
                    continue  # stored before, or twice in this batch
                seen.add(request.update_id)
                new.append({
                    "update_id": request.update_id, "chat_id": request.chat_id, "user_id": request.user_id,
                    "kind": request.kind, "payload": request.payload, "media_group_id": request.media_group_id,
                    "received_at": request.received_at, "status": InboxStatus.PENDING, "outbox": [],
                })
            stored = {row.update_id: row for row in session.execute(_ADD, new)} if new else {}
            added = [stored.pop(request.update_id, None) for request in requests]  # a twice-sent one once
            return [None if row is None else stored_request(row) for row in added]

        return await self._transactions.write(work)

    async def oldest_waiting(self, chat_id: int, user_id: int) -> StoredRequest | None:
        """The conversation's oldest request that is not done (the next to work on, ready or not)."""
        return await self._transactions.read(lambda session: _oldest(session, chat_id, user_id))

    async def album(self, chat_id: int, media_group_id: str) -> list[StoredRequest]:
        """The waiting items of one album, in the order they were received."""

        def work(session: Session) -> list[StoredRequest]:
            rows = session.scalars(_waiting(InboxItem.chat_id == chat_id, InboxItem.media_group_id == media_group_id))
            return [stored_request(row) for row in rows]

        return await self._transactions.read(work)

    async def finish(self, request_ids: Sequence[int]) -> None:
        """Done: what the person sent is kept in their conversation, not here; only ids remain."""
        if request_ids:
            await self._transactions.write(lambda session: finish_requests(session, request_ids))

    async def keep_replies(
        self, request_id: int, outbox: Sequence[dict[str, Any]], retry_at: datetime, *, work_done: bool
    ) -> None:
        """Replies Telegram did not take, to be delivered from `retry_at` on; `work_done` says
        whether anything but delivering them is left to do."""
        values: dict[str, Any] = {"outbox": list(outbox), "retry_at": retry_at}
        if work_done:
            values["status"] = InboxStatus.UNDELIVERED
        await self._update([request_id], **values)

    async def waiting_count(self) -> int:
        """Requests not done and not being worked on, in every process: each live claim is one
        conversation with one request in hand."""

        def work(session: Session) -> int:
            not_done = session.scalar(
                select(func.count()).select_from(InboxItem).where(InboxItem.status.in_(NOT_DONE))
            )
            in_hand = session.scalar(
                select(func.count()).select_from(InboxClaim).where(InboxClaim.expires_at > utc_now())
            )
            return max(0, (not_done or 0) - (in_hand or 0))

        return await self._transactions.read(work)

    async def ready_conversations(self, holder: str) -> list[tuple[int, int]]:
        """(chat id, user id) of conversations whose oldest waiting request may be worked on now
        and that no other live process has claimed."""
        now = utc_now()

        def work(session: Session) -> tuple[list[Any], set[tuple[int, int]]]:
            rows = session.execute(
                select(InboxItem.chat_id, InboxItem.user_id, InboxItem.retry_at)
                .where(InboxItem.status.in_(NOT_DONE))
                .order_by(InboxItem.update_id)
            ).all()
            claims = session.execute(
                select(InboxClaim.chat_id, InboxClaim.user_id)
                .where(InboxClaim.expires_at > now, InboxClaim.holder != holder)
            )
            return rows, {(chat_id, user_id) for chat_id, user_id in claims}

        rows, claimed = await self._transactions.read(work)
        oldest: dict[tuple[int, int], datetime | None] = {}
        for chat_id, user_id, retry_at in rows:
            oldest.setdefault((chat_id, user_id), retry_at)
        return [
            key for key, retry_at in oldest.items()
            if key not in claimed and (retry_at is None or retry_at <= now)
        ]

    async def purge_done(self, older_than: timedelta) -> int:
        """Forget done requests finished before `older_than` ago (Telegram redelivers for a day)."""
        cutoff = utc_now() - older_than

        def work(session: Session) -> int:
            result = session.execute(
                delete(InboxItem).where(InboxItem.status == InboxStatus.DONE, InboxItem.done_at < cutoff)
            )
            return result.rowcount  # type: ignore[attr-defined,no-any-return]

        return await self._transactions.write(work)

    async def _update(self, request_ids: Sequence[int], **values: Any) -> None:
        def work(session: Session) -> None:
            session.execute(
                update(InboxItem)
                .where(InboxItem.id.in_(list(request_ids)))
                .values(**values)
                .execution_options(synchronize_session=False)
            )

        if request_ids:
            await self._transactions.write(work)

    # -- claims ------------------------------------------------------------------------------

    async def claim(self, chat_id: int, user_id: int, holder: str, lease: timedelta) -> bool:
        """Take (or renew) the conversation for `holder`; False while another holder's lease runs."""
        return await self._transactions.write(lambda session: _claim(session, chat_id, user_id, holder, lease))

    async def claim_oldest(
        self, chat_id: int, user_id: int, holder: str, lease: timedelta
    ) -> tuple[bool, StoredRequest | None, list[StoredTurn]]:
        """`claim`, and if it was taken, the conversation's `oldest_waiting` request and the turns
        stored for it (`Store.turns_for_request`), in one transaction."""

        def work(session: Session) -> tuple[bool, StoredRequest | None, list[StoredTurn]]:
            if not _claim(session, chat_id, user_id, holder, lease):
                return False, None, []
            request = _oldest(session, chat_id, user_id)
            if request is None:
                return True, None, []
            return True, request, TURNS_OF_REQUEST(session, {"p_request_id": request.id})

        return await self._transactions.write(work)

    async def renew_claims(self, holder: str, lease: timedelta) -> int:
        """The heartbeat: push back the expiry of every claim `holder` has."""

        def work(session: Session) -> int:
            result = session.execute(
                update(InboxClaim).where(InboxClaim.holder == holder).values(expires_at=utc_now() + lease)
            )
            return result.rowcount  # type: ignore[attr-defined,no-any-return]

        return await self._transactions.write(work)

    async def release(self, holder: str, chat_id: int | None = None, user_id: int | None = None) -> None:
        """Give up one conversation's claim (or, with no conversation named, all of `holder`'s)."""

        def work(session: Session) -> None:
            statement = delete(InboxClaim).where(InboxClaim.holder == holder)
            if chat_id is not None:
                statement = statement.where(InboxClaim.chat_id == chat_id, InboxClaim.user_id == user_id)
            session.execute(statement)

        await self._transactions.write(work)

    async def release_one(self, holder: str, chat_id: int, user_id: int) -> StoredRequest | None:
        """Give up one conversation's claim; its `oldest_waiting` request then, in the same transaction."""

        def work(session: Session) -> StoredRequest | None:
            session.execute(_RELEASE_ONE, {"p_chat_id": chat_id, "p_user_id": user_id, "p_holder": holder})
            return _oldest(session, chat_id, user_id)

        return await self._transactions.write(work)


INBOX: Table = InboxItem.__table__  # type: ignore[assignment]
CLAIMS: Table = InboxClaim.__table__  # type: ignore[assignment]
_CONVERSATION_CLAIM = (CLAIMS.c.chat_id == bindparam("p_chat_id")) & (CLAIMS.c.user_id == bindparam("p_user_id"))
# Built once, run with parameters (as in storage.turn_writes): these run for every request.
_CLAIM: dict[str, Any] = {}  # dialect name → the claim's upsert
_RELEASE_ONE = delete(CLAIMS).where(_CONVERSATION_CLAIM, CLAIMS.c.holder == bindparam("p_holder"))
_FINISH = (
    update(INBOX)
    .where(INBOX.c.id.in_(bindparam("p_ids", expanding=True)))
    .values(
        status=bindparam("p_status", type_=INBOX.c.status.type),
        payload=bindparam("p_payload", type_=INBOX.c.payload.type),
        outbox=bindparam("p_outbox", type_=INBOX.c.outbox.type),
        retry_at=None,
        done_at=bindparam("p_done_at", type_=INBOX.c.done_at.type),
    )
)
_STORED_UPDATES = select(INBOX.c.update_id).where(INBOX.c.update_id.in_(bindparam("p_update_ids", expanding=True)))
_ADD = INBOX.insert().returning(*INBOX.c)  # many rows at once (SQLAlchemy's "insertmanyvalues")
_OLDEST = (
    select(INBOX)
    .where(INBOX.c.chat_id == bindparam("p_chat_id"), INBOX.c.user_id == bindparam("p_user_id"),
           INBOX.c.status.in_(NOT_DONE))
    .order_by(INBOX.c.update_id)
    .limit(1)
)


def finish_requests(session: Session, request_ids: Sequence[int]) -> None:
    """`InboxStore.finish` inside a transaction of the caller's (an answer's close: `storage.store`)."""
    session.execute(_FINISH, {
        "p_ids": list(request_ids), "p_status": InboxStatus.DONE, "p_payload": {}, "p_outbox": [],
        "p_done_at": utc_now(),
    })


def _claim_statement(session: Session) -> Any:
    """One statement takes a claim: inserted if there is none, taken over if it is the holder's own
    or its lease has run out (the row is locked meanwhile); the holder's name comes back only then."""
    name = session.get_bind().dialect.name
    if name not in _CLAIM:
        statement = upsert(session, CLAIMS).values(
            chat_id=bindparam("p_chat_id"), user_id=bindparam("p_user_id"), holder=bindparam("p_holder"),
            expires_at=bindparam("p_expires_at", type_=CLAIMS.c.expires_at.type),
        )
        _CLAIM[name] = statement.on_conflict_do_update(
            index_elements=[CLAIMS.c.chat_id, CLAIMS.c.user_id],
            set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
            where=(CLAIMS.c.holder == statement.excluded.holder)
            | (CLAIMS.c.expires_at <= bindparam("p_now", type_=CLAIMS.c.expires_at.type)),
        ).returning(CLAIMS.c.holder)
    return _CLAIM[name]


def _claim(session: Session, chat_id: int, user_id: int, holder: str, lease: timedelta) -> bool:
    now = utc_now()
    taken = session.scalar(_claim_statement(session), {
        "p_chat_id": chat_id, "p_user_id": user_id, "p_holder": holder, "p_expires_at": now + lease, "p_now": now,
    })
    return taken is not None


def _oldest(session: Session, chat_id: int, user_id: int) -> StoredRequest | None:
    row = session.execute(_OLDEST, {"p_chat_id": chat_id, "p_user_id": user_id}).one_or_none()
    return None if row is None else stored_request(row)  # type: ignore[arg-type]
