"""The bot's memory: users, chats, conversations, turns and images, in any SQLAlchemy database."""
