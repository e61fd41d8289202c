"""Private temporary directories (supervisor/leftovers.py): a dead owner's go.

Each directory holds a lock file that its owner keeps locked while it lives;
making a new one removes those whose lock is free. The owners here are real
processes: a child that holds the lock, then is killed.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from blackhole.supervisor.leftovers import PrivateDirectory, sweep
from blackhole.supervisor.tlsfiles import TLSStore

# Makes a PrivateDirectory named argv[2]* in argv[1], prints its path, then
# waits to be killed.
OWNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from blackhole.supervisor.leftovers import PrivateDirectory

    made = PrivateDirectory(sys.argv[2], Path(sys.argv[1]))
    (made.path / "key.pem").write_text("a copy of a private key")
    print(made.path, flush=True)
    sys.stdin.read()
    """
)


def _owner(parent: Path, prefix: str = "bh-test-") -> tuple[subprocess.Popen[str], Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(parent), prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip())


def test_a_dead_owners_directory_goes_a_live_ones_stays(tmp_path: Path) -> None:
    dead, dead_path = _owner(tmp_path)
    live, live_path = _owner(tmp_path)
    try:
        dead.send_signal(signal.SIGKILL)  # no chance to clean up
        dead.wait()
        assert (dead_path / "key.pem").exists()
        made = PrivateDirectory("bh-test-", tmp_path)
        assert not dead_path.exists()
        again = PrivateDirectory("bh-test-", tmp_path)  # this process's own stay
        assert made.path.exists()
        again.remove()
        assert (live_path / "key.pem").exists()
        assert stat.S_IMODE(made.path.stat().st_mode) == 0o700
        made.remove()
        assert not made.path.exists()
        made.remove()  # twice is harmless
    finally:
        live.kill()
        live.wait()
    sweep("bh-test-", tmp_path)  # its owner is gone now
    assert not live_path.exists()


def test_what_is_not_a_locked_directory_of_ours_is_left_alone(tmp_path: Path) -> None:
    # A directory without a lock file: not made here, or being made.
    unlocked = tmp_path / "bh-test-making"
    unlocked.mkdir()
    # A symbolic link named like ours, to a directory whose lock is free.
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / ".lock").write_text("")
    (target / "precious").write_text("not ours")
    link = tmp_path / "bh-test-link"
    link.symlink_to(target)
    # A FIFO as the lock file: opening it must not wait for a writer.
    fifo_dir = tmp_path / "bh-test-fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / ".lock")
    # A file named like ours, and a dead directory of another kind.
    (tmp_path / "bh-test-file").write_text("")
    other = tmp_path / "bh-other-x"
    other.mkdir()
    (other / ".lock").write_text("")
    sweep("bh-test-", tmp_path)
    assert unlocked.exists()
    assert fifo_dir.exists()
    assert link.is_symlink()
    assert (target / "precious").exists()
    assert (tmp_path / "bh-test-file").exists()
    assert other.exists()


def test_the_tls_store_removes_a_killed_supervisors_copies(tmp_path: Path) -> None:
    child, left = _owner(tmp_path, "blackhole-tls-")
    child.kill()
    child.wait()
    store = TLSStore(str(tmp_path))
    mine = store.root
    assert mine.name.startswith("blackhole-tls-")
    assert not left.exists()
    store.cleanup()
    assert not mine.exists()
