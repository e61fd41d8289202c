"""Observing a running server: logging (``observe.logs``), and later metrics."""
