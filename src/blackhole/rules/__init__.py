"""The rules of RULES.md: scripted faults at every stage of a conversation.

``parse`` turns a TOML file or a JSON object into frozen ``Rule`` values,
``match`` and ``select`` decide purely whether one acts, ``store`` keeps the
counts that several workers share, ``engine`` puts them together into a
``Verdict`` for the core, and ``addresses`` holds the `mox` and `ses` address
conventions. Nothing here does I/O or reads a clock: the caller passes `now`.
"""
