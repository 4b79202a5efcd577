"""One small module per command; `bot.app.add_handlers` wires them up."""
