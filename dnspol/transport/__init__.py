"""Transports move bytes between sockets and ``Handler.handle``; no DNS logic here."""
