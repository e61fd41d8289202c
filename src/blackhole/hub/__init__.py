"""The hub: one process, a child of the supervisor, that every worker talks to.

RULES.md "Determinism" wants counts, greylist entries and spent rules shared
exactly by all workers of one server, and OBSERVE.md wants one control API.
Both need one owner running an event loop, and the supervisor must run none
(it may fork workers). So the supervisor starts the hub before the workers,
restarts it if it dies, and stops it after the workers:

- ``wire``: the messages on a worker's connection and their framing;
- ``hubside``: the hub's end of those connections: the shared ``MemoryStore``,
  API-rule pushes with acknowledgements, message records;
- ``apirules``: the API rules (parse, names, ttl) the hub keeps;
- ``backend``: ``control.backend.Backend`` over all of that;
- ``main``: the hub process itself (its supervisor channel, the control API);
- ``client``: the worker's end: ``HubClient``, ``RemoteStore``.
- ``sharedstore``: ``SharedStore``, the rule state in shared memory;
- ``redisstore``: ``RedisStore``, the shared state in Redis (``state_url``),
  used by the hub instead of its ``MemoryStore`` so that several servers
  share counts; workers still make one round trip, to the hub.

Workers reach the hub through a UNIX socket that the supervisor binds once in
a private directory and hands to every hub it starts: a worker (new or
restarted) connects by path, and a restarted hub accepts on the same socket,
so connections made while it was down wait in the backlog. A hub that dies
loses the API rules and recorded messages: the new one starts without and
pushes that to every worker.

Rule state (counts, greylist entries, spent rules) does not go through the
hub unless it lives in Redis: ``sharedstore`` is a region of shared memory
that the supervisor makes before it starts the hub and the workers; each
worker decides in it directly, and the hub maps it for ``GET /rules``,
``POST /reset`` and to forget the state of rules that are gone. It survives
a hub restart.
"""
