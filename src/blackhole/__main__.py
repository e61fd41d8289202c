"""``python -m blackhole`` runs the server, exactly like the ``blackhole`` command."""

from blackhole.cli import main

raise SystemExit(main())
