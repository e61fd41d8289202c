"""Pure decisions: which answer a message gets and how late (no I/O here)."""
