"""testssl.sh against the SMTPS port and the STARTTLS port.

What is judged is testssl's JSON, not its exit code (which counts findings,
not failures): no SSLv2, SSLv3, TLS 1.0 or 1.1; TLS 1.2 and 1.3 offered; no
NULL, anonymous, export, LOW, 3DES/IDEA or obsolete CBC cipher category;
forward secrecy offered. Only the protocol (-p), cipher category (-s) and
forward secrecy (-f) checks run, with --fast, and both ports are scanned at
once, so the test takes about 10-20 s rather than minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess
from tests.smtpclient import HOST

NOT_OFFERED = (
    "SSLv2",
    "SSLv3",
    "TLS1",
    "TLS1_1",
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
)
# testssl 3.0 calls the obsolete CBC category AVERAGE, 3.2 OBSOLETED.
OBSOLETE_CBC = ("cipherlist_AVERAGE", "cipherlist_OBSOLETED")
OFFERED = ("TLS1_2", "TLS1_3", "cipherlist_STRONG", "PFS")


def _testssl(target: str, json_file: Path, *starttls: str) -> subprocess.Popen[bytes]:
    executable = shutil.which("testssl") or shutil.which("testssl.sh")
    assert executable is not None, "testssl is not installed (Debian package testssl.sh)"
    argv = [executable, "--quiet", "--color", "0", "--warnings", "off", "--fast"]
    argv += ["--connect-timeout", "10", "--openssl-timeout", "10"]
    argv += [*starttls, "-p", "-s", "-f", "--jsonfile", str(json_file), target]
    # Its service detection waits HEADER_MAXSLEEP seconds (default 5) for an
    # HTTP answer that an SMTP server never gives.
    env = {**os.environ, "HEADER_MAXSLEEP": "1"}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )


def _findings(json_file: Path, output: bytes) -> dict[str, str]:
    assert json_file.exists(), output.decode(errors="replace")
    entries = json.loads(json_file.read_text())
    return {entry["id"]: entry["finding"] for entry in entries}


@pytest.mark.timeout(600)
def test_testssl_smtps_and_starttls(server: ServerProcess, tmp_path: Path) -> None:
    scans = {
        "smtps": (tmp_path / "smtps.json", ()),
        "starttls": (tmp_path / "starttls.json", ("-t", "smtp")),
    }
    procs = {}
    for name, (json_file, starttls) in scans.items():
        port = server.port("smtps" if name == "smtps" else "smtp")
        procs[name] = _testssl(f"{HOST}:{port}", json_file, *starttls)
    outputs = {name: proc.communicate(timeout=540)[0] for name, proc in procs.items()}

    for name, (json_file, _) in scans.items():
        findings = _findings(json_file, outputs[name])
        context = f"{name}: {json.dumps(findings, indent=1)}"
        for check in NOT_OFFERED:
            assert findings.get(check, "").startswith("not offered"), f"{check} in {context}"
        cbc = [findings[c] for c in OBSOLETE_CBC if c in findings]
        assert cbc and all(f.startswith("not offered") for f in cbc), context
        for check in OFFERED:
            assert findings.get(check, "").startswith("offered"), f"{check} in {context}"
