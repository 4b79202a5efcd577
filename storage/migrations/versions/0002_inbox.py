"""The inbox: requests stored as they arrive, claims on conversations, turns linked to their request.

Also fails the answers an older version left pending: nothing would ever finish them now (from this
revision on, the process that takes over a crashed conversation finishes its interrupted answers).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("media_group_id", sa.String(64), nullable=True),
        _timestamp("received_at"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outbox", sa.JSON(), nullable=False),
        _timestamp("retry_at", nullable=True),
        _timestamp("done_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inbox"),
        sa.UniqueConstraint("update_id", name="uq_inbox_update_id"),
    )
    op.create_index("ix_inbox_conversation", "inbox", ["chat_id", "user_id", "status", "update_id"])
    op.create_index("ix_inbox_album", "inbox", ["chat_id", "media_group_id"])
    op.create_index("ix_inbox_user_id", "inbox", ["user_id"])
    op.create_index("ix_inbox_done_at", "inbox", ["done_at"])
    op.create_table(
        "inbox_claims",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        _timestamp("expires_at"),
        sa.PrimaryKeyConstraint("chat_id", "user_id", name="pk_inbox_claims"),
    )
    with op.batch_alter_table("turns") as turns:
        turns.add_column(sa.Column("inbox_item_id", sa.Integer(), nullable=True))
        turns.create_index("ix_turns_inbox_item_id", ["inbox_item_id"])
    op.execute(sa.text("UPDATE turns SET status = 'failed' WHERE status = 'pending'"))


def downgrade() -> None:
    with op.batch_alter_table("turns") as turns:
        turns.drop_index("ix_turns_inbox_item_id")
        turns.drop_column("inbox_item_id")
    op.execute(sa.text("UPDATE turns SET status = 'failed' WHERE status = 'undelivered'"))
    op.drop_table("inbox_claims")
    op.drop_table("inbox")
