"""The asyncio adapter: listeners, TLS contexts, connections, timers, shutdown."""
