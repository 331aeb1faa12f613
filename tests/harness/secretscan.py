# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Run a command (an ansible-playbook run at -vvv) and look for secrets where they must never be.

While the command runs, every process's command line on this machine is read from ``/proc``
every ``--interval`` seconds. The hosts are containers on this kernel, so that is the process
list of every host, of the containers a host runs itself and of the controller, at a fraction of
the cost of a ``docker exec <host> ps`` per host and sample (which, at 8 hosts, slowed the run it
watched by half); each process is told to its host by its cgroup (``/docker/<container id>``).
When it ends, its whole output and every sample are searched for each secret read from the
files in ``--secrets-dir`` (each file one secret; for PEM keys, every base64 line of the key).

Prints one JSON object: the command's exit status, its PLAY RECAP lines, how many samples were
taken per host, how many secrets were looked for, and the findings, each naming the secret's
file and where it was seen. Never prints a secret or the output itself; the output is kept in
``--output`` (0600) for a person to read when a finding needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

LOCAL = "controller"


def read_secrets(directory: Path) -> dict[str, list[str]]:
    """File name -> the strings that betray it (a PEM key: its base64 lines)."""
    secrets = {}
    for path in sorted(Path(directory).iterdir()):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace").strip()
        if "PRIVATE KEY-----" in text:
            needles = [line for line in text.splitlines() if re.fullmatch(r"[A-Za-z0-9+/=]{40,}", line)]
        elif "-----BEGIN CERTIFICATE" in text:
            continue  # certificates are public
        else:
            needles = [text] if len(text) >= 12 else []
        if needles:
            secrets[path.name] = needles
    return secrets


def container_ids(hosts: list[str]) -> dict[str, str]:
    """Full container id -> host name."""
    done = subprocess.run(["docker", "inspect", "--format", "{{.Id}} {{.Name}}", *hosts], capture_output=True,
                          text=True, timeout=60, check=True)
    return {line.split()[0]: line.split()[1].lstrip("/") for line in done.stdout.splitlines() if line.strip()}


def owner(pid: str, ids: dict[str, str]) -> str:
    """The host a process runs on: the first container id in its cgroup path that is one of ours (a
    container a host runs itself sits under that host's), else this machine."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            for part in re.findall(r"[0-9a-f]{64}", handle.read()):
                if part in ids:
                    return ids[part]
    except OSError:
        pass
    return LOCAL


def sample(ids: dict[str, str], owners: dict[str, str]) -> dict[str, list[str]]:
    """One sweep of /proc: host -> the command lines of its processes. ``owners`` caches pid -> host."""
    seen: dict[str, list[str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                args = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # ended meanwhile
        if entry.name not in owners:
            owners[entry.name] = owner(entry.name, ids)
        seen.setdefault(owners[entry.name], []).append(args)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--secrets-dir", required=True)
    parser.add_argument("--hosts", nargs="+", required=True, help="containers whose process lists are sampled")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--output", required=True, help="where the command's output is kept (0600)")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    hosts = [*args.hosts, LOCAL]
    samples: dict[str, list[str]] = {host: [] for host in hosts}
    ids = container_ids(args.hosts)
    stop = threading.Event()

    def sampler() -> None:
        owners: dict[str, str] = {}
        while not stop.is_set():
            for host, lines in sample(ids, owners).items():
                if host in samples:
                    samples[host].append("\n".join(lines))
            stop.wait(args.interval)

    threads = [threading.Thread(target=sampler, daemon=True)]
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    started = time.monotonic()
    with os.fdopen(fd, "w") as out:
        for thread in threads:
            thread.start()
        try:
            rc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=args.timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        stop.set()
    for thread in threads:
        thread.join(30)
    output = Path(args.output).read_text(errors="replace")
    secrets = read_secrets(Path(args.secrets_dir))
    findings = []
    for name, needles in secrets.items():
        where = []
        if any(needle in output for needle in needles):
            where.append("command output")
        for host, taken in samples.items():
            if any(needle in text for text in taken for needle in needles):
                where.append("process list of " + host)
        if where:
            findings.append({"secret": name, "where": where})
    recap = [line for line in output.splitlines() if re.match(r"^\S+\s+: ok=\d+", line)]
    print(json.dumps({
        "rc": rc, "seconds": round(time.monotonic() - started, 1), "output_lines": output.count("\n"),
        "recap": recap, "samples": {host: len(taken) for host, taken in samples.items()},
        "processes_seen": {host: sum(text.count("\n") for text in taken) for host, taken in samples.items()},
        "secrets_checked": sorted(secrets), "findings": findings,
    }))


if __name__ == "__main__":
    main()
