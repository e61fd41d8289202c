"""Rules files for the rules variants of Blackhole (``blackhole-2w+greylist``...).

Each is what docs/performance.md "Rules" measures against the same server
without rules:

- ``nomatch20``: 20 rules spread over connect, helo, mail, rcpt and end, none
  of which ever holds for smtp-source's traffic: the cost of stages being
  watched and rules being tried, with no state.
- ``greylist``: one greylist rule on every recipient, decided in the state
  the workers share (one decision per RCPT). Its period is 0 s, so every recipient has
  been "seen long enough" and passes: smtp-source fails a run on any
  unexpected reply, and the decision costs the same whichever way it goes.
- ``empty``: a rules file with no rule: the rules machinery in place (a
  server that could be given rules through the control API or a reload) with
  nothing to do.
"""

from __future__ import annotations

_STAGES = (
    ("connect", 'client = "192.0.2.{i}/32"'),
    ("helo", 'helo = "never-{i}.invalid"'),
    ("mail", 'sender = "nobody-{i}@never.invalid"'),
    ("rcpt", 'recipient = "*@never-{i}.invalid"'),
    ("end", 'recipient = "*@never-{i}.invalid"'),
)


def _nomatch(count: int) -> str:
    rules = []
    for i in range(count):
        stage, matcher = _STAGES[i % len(_STAGES)]
        rules.append(
            f'[[rule]]\nname = "nomatch-{i}"\nat = "{stage}"\n{matcher.format(i=i)}\n'
            'reply = "451 4.3.0 never sent"\n'
        )
    return "\n".join(rules)


RULESETS = {
    "nomatch20": _nomatch(20),
    "greylist": '[[rule]]\nname = "greylist-all"\nat = "rcpt"\ngreylist = "0s"\n',
    "empty": "# no rule: the rules machinery with nothing to do\n",
}
