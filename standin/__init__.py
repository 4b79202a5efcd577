"""Faithful stand-ins for the servers idefics-bot talks to, run on loopback: the Telegram Bot API
(`standin.telegram`). The test suite drives the real bot against them, and `idefics-bot try` uses them
for an offline try-out; of the bot, only that try-out (bot/try_out.py) imports them."""
