"""The sqlite store: migrations and queries (aiosqlite)."""
