"""Every sentence the bot says to a person, in one place, so wording is reviewed (and translated) together."""

from __future__ import annotations

DEFAULT_IMAGE_INSTRUCTION = "Describe this image in detail."

HELP = (
    "I talk about images. Send me a photo (with or without a question in the caption) and I'll tell you "
    "what I see; then keep asking about it in plain text — I remember the whole conversation, images "
    "included.\n\n"
    "Commands:\n"
    "/new — start a fresh conversation (also /reset)\n"
    "/retry — write the last answer again\n"
    "/cancel — stop the answer I'm writing\n"
    "/forget — erase everything I stored about you\n"
    "/caption — a one-sentence caption of a photo (as its caption, or replying to it)\n"
    "/classify cat, dog, bird — which of your labels fits a photo best, with scores\n"
    "/story [theme] — a short story inspired by a photo\n"
    "/describe — describe a photo (reply to anyone's photo with it, also in groups)\n"
    "/mode — pick how I answer in this chat (assistant, captioner, storyteller…)\n"
    "/settings — answer length and creativity for this chat\n"
    "/help — this message\n\n"
    "In groups I stay quiet unless you mention me (@{bot_username}), reply to one of my messages, or "
    "send a command addressed to me, like /new@{bot_username}. Reply to anyone's photo with a question "
    "that mentions me, or with /describe, and I'll answer about that photo. Albums (several photos "
    "sent together) are one question. Each member has their own conversation with me."
    "\n\nUnder each answer, 🔄 Regenerate writes it again and 🆕 New conversation starts afresh. In groups "
    "only admins can change /mode and /settings, and in forum topics I answer in the topic you wrote in."
)

COMMAND_DESCRIPTIONS = {
    "start": "What this bot does",
    "help": "How to use the bot",
    "new": "Start a fresh conversation",
    "retry": "Write the last answer again",
    "cancel": "Stop the answer being written",
    "forget": "Erase everything stored about you",
    "mode": "Pick how the bot answers in this chat",
    "settings": "Answer length and creativity for this chat",
    "caption": "One-sentence caption of a photo",
    "classify": "Pick the label that fits a photo: /classify cat, dog",
    "story": "A short story inspired by a photo",
    "describe": "Describe a photo (reply to it)",
}

NOT_ALLOWED = (
    "Sorry, this is a private bot and I'm not set up to talk with you. Ask the person who runs it to add you."
)
UNKNOWN_COMMAND = "I don't know that command. Send /help to see what I can do."
ADMINS_ONLY = "Sorry, /stats is only for the bot's admins."

NEW_CONVERSATION = "Fresh start: I've forgotten our previous conversation. Send a photo or a question."
NOTHING_TO_RETRY = "There is nothing to retry yet: send me a photo or a question first."
NOTHING_TO_CANCEL = "I'm not writing anything right now."
CANCELLED = "Stopped."
CANCELLED_BY_SHUTDOWN = (
    "I had to stop here: the bot is restarting. Your message is saved, and I'll answer it again as "
    "soon as I'm back."
)
CANCELLED_BY_SHUTDOWN_NOTE = (
    "I had to stop here: the bot is restarting. Your message is saved: press Retry when I'm back."
)

# Reliability (bot.inbox, bot.request_runner): the database, restarts, crashes and old messages.
CANNOT_SAVE_KEPT = (
    "I can't save messages right now (my database isn't available). I'm holding on to yours and will "
    "answer it as soon as I can save it."
)
CANNOT_SAVE_FULL = (
    "I can't save messages right now (my database isn't available), and I can't hold on to any more. "
    "Please send this again in a few minutes."
)
CANNOT_SAVE_NOW = (
    "I can't save anything right now (my database isn't available). Please try again in a few minutes."
)
CANNOT_SAVE_WAITING = (
    "I can't save anything right now (my database isn't available). Your message is kept, and I'll "
    "answer it as soon as I can."
)
NOT_ANSWERED_IN_TIME = (
    "Sorry, I was offline and didn't get to this in time, so I'm not answering it now. If you still "
    "want an answer, send it again."
)
INTERRUPTED_PREVIEW = "(I was interrupted here when the bot restarted; the whole answer follows.)"
INTERRUPTED_NOTE = (
    "I was interrupted while writing this answer (the bot restarted). Press Retry to have it written."
)
RETRY_BUTTON = "🔄 Retry"

FORGET_QUESTION = (
    "This erases all your conversations, images and settings stored by this bot. It can't be undone. "
    "Erase everything?"
)
FORGET_CONFIRM_BUTTON = "Yes, erase everything"
FORGET_KEEP_BUTTON = "No, keep it"
FORGET_DONE = "Done: everything I stored about you is erased."
FORGET_KEPT = "Okay, nothing was erased."
FORGET_NOT_YOURS = "Only the person who asked can answer this."

# /mode, /settings and the buttons under answers (bot.commands.mode, bot.commands.settings_menu,
# bot.answer_buttons).
MODE_MENU = "Mode for this chat: {current}\n\n{modes}\n\nPick a mode:"
MODE_LINE = "• {name} — {description}"
MODE_NO_DESCRIPTION = "(no description)"
NO_PREAMBLE_BUTTON = "No preamble"
NO_PREAMBLE_DESCRIPTION = "no instructions or examples: the model sees only the conversation"
CURRENT_CHOICE_MARK = "✅ "
MODE_SET = "Mode: {name}"
MODE_UNKNOWN = "There is no mode called “{name}”. The modes are: {known}."
MODE_GONE = "That mode no longer exists. Send /mode for the current list."
SETTINGS_MENU = (
    "Settings for this chat\n"
    "Answer length: {length} (up to {max_new_tokens} tokens)\n"
    "Creativity: {creativity}\n"
    "Mode: {mode} (change it with /mode)"
)
LENGTH_LABELS = {"short": "Short", "medium": "Medium", "long": "Long"}
CREATIVITY_LABELS = {"precise": "Precise", "balanced": "Balanced", "creative": "Creative"}
SETTING_SAVED = "Saved: {label}"
GROUP_ADMINS_ONLY = "Only this group's admins can change how I answer here."
BUTTON_EXPIRED = "That button no longer works. Send the command again for a fresh one."
REGENERATE_BUTTON = "🔄 Regenerate"
NEW_CONVERSATION_BUTTON = "🆕 New conversation"
NOT_YOUR_ANSWER = "Only the person who asked can do that."
ONLY_NEWEST_ANSWER = "Only the newest answer can be regenerated. Send /retry to redo your last one."
ANSWER_GONE = "I no longer have that answer stored, so I can't write it again."
REGENERATING = "Writing it again…"

EMPTY_QUESTION = "Yes? Send me a photo, or ask a question about the one we're talking about."
ONLY_IMAGES = (
    "I can only read images. Send a photo, or an image file (JPEG, PNG, WebP…), and ask me about it."
)
IMAGE_TOO_LARGE = (
    "That image is too large for me ({size_mb:.1f} MB; the limit is {limit_mb:.0f} MB). Try a smaller one."
)
IMAGE_TOO_MANY_PIXELS = (
    "That image has too many pixels for me ({megapixels} megapixels; the limit is {limit:.0f}). "
    "Try a smaller one."
)
IMAGE_DOWNLOAD_FAILED = "Sorry, I couldn't download that image from Telegram. Please send it again."
IMAGE_UNREADABLE = "Sorry, I couldn't read that image — the file seems damaged or isn't a format I know."

PROMPT_TOO_LONG = (
    "That message is too long for my context. Try /new to start a fresh conversation, or send a "
    "shorter message."
)
GENERATION_FAILED = "Sorry, something went wrong while I was writing the answer. Try /retry in a moment."
# Shown in the growing answer while every model server is overloaded (MODEL_BACKEND=tgi), then replaced
# by the answer; MODEL_BUSY when they stayed overloaded through every retry.
MODEL_BUSY_RETRYING = (
    "⏳ Lots of people are asking right now, so the model is busy. Trying again in {seconds} s…"
)
MODEL_BUSY = (
    "Sorry, the model stayed too busy to answer, even after several tries. Your message is saved: "
    "send /retry in a minute."
)
NOT_READY = "I'm still starting up (or shutting down). Please try again in a minute."
UNEXPECTED_ERROR = "Sorry, something went wrong on my side. Please try again."
CHAT_UPGRADED = "This group was just upgraded to a supergroup and my reply got lost. Please send that again."
EMPTY_ANSWER = "(I have nothing to add.)"

STATS = (
    "Users: {users}\nChats: {chats}\nConversations: {conversations}\nTurns: {turns}\n"
    "Images: {images} ({image_mb:.1f} MB)\nTurns by status: {by_status}\n"
    "Answers running or waiting: {in_flight}"
)

# --- image tasks: /caption, /classify, /story, /describe, albums -----------------------------------
CAPTION_INSTRUCTION = "Write a one-sentence caption for this image."
CLASSIFY_QUESTION = "Which one of these best describes the image: {labels}? Answer with one of them."
STORY_INSTRUCTION = "Tell me a story about this picture."
STORY_THEME = " The theme of the story: {theme}"
CAPTION_USAGE = (
    "Send /caption as the caption of a photo, or reply to a photo with /caption, and I'll write a "
    "one-sentence caption for it."
)
CLASSIFY_USAGE = (
    "Sorry, I can't classify with that label list: {problem}.\n"
    "Send /classify with 2 to {max_labels} different labels separated by commas, as the caption of a "
    "photo or as a reply to one, e.g. /classify cat, dog, bird"
)
CLASSIFY_NEEDS_PHOTO = (
    "Which photo? Send /classify cat, dog, bird as the caption of a photo, or as a reply to one."
)
CLASSIFY_RESULT = "{label}\n\nRanking:\n{ranking}"
CLASSIFY_RANK_LINE = "{place}. {label} — {percent:.1f}%"
STORY_USAGE = (
    "Send /story (optionally with a theme, like /story a pirate adventure) as the caption of a photo, "
    "as a reply to a photo, or after sending me one."
)
DESCRIBE_USAGE = (
    "Reply to a photo with /describe (or send /describe as a photo's caption) and I'll describe it."
)
ALBUM_TOO_MANY = "I can look at {limit} images at a time, so I'm using the first {limit} of these {count}."
