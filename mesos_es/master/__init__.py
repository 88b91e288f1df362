"""The master: the I/O shell around the core (replica fold, HTTP APIs, process wiring)."""
