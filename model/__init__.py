"""Everything that knows about IDEFICS and nothing about Telegram: loading, prompting, generation."""
