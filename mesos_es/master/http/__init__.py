"""The master's HTTP APIs (aiohttp)."""
