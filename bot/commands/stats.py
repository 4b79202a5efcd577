"""/stats: usage numbers for the bot's admins (ADMIN_USER_IDS)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.runtime import runtime_of


async def stats_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show stored-data counts to admins; everyone else is told it is admin-only."""
    message = update.effective_message
    runtime = runtime_of(context)
    if message.from_user is None or message.from_user.id not in runtime.settings.admin_user_ids:
        await message.reply_text(texts.ADMINS_ONLY)
        return
    stats = await runtime.store.stats()
    by_status = (
        ", ".join(f"{status} {count}" for status, count in sorted(stats.turns_by_status.items())) or "none"
    )
    await message.reply_text(
        texts.STATS.format(
            users=stats.users,
            chats=stats.chats,
            conversations=stats.conversations,
            turns=stats.turns,
            images=stats.images,
            image_mb=stats.image_bytes / 2**20,
            by_status=by_status,
            in_flight=runtime.answers.pending_count(),
        )
    )
