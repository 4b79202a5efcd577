"""The Telegram side of idefics-bot: settings, CLI, handlers, and turning model streams into messages."""
