"""Input-limit workloads (issue #7, part 5), shared by the test suite (small sizes) and
``make soak`` (full sizes): one very long line, many identical lines, many accounts.

Each runs the real CLI in a subprocess under ``--memory-limit`` and reports the peak resident
memory of that process (its own ``VmHWM``), which the callers bound by the limit plus the fixed
cost of the interpreter, DuckDB and the tokenizers.

Why not ``ru_maxrss`` from ``wait4``: Linux carries the parent's high-water mark into a child
across fork and exec, so a child of a pytest process that once grew to 10 GB reports 10 GB
whatever it used itself (seen on CI). ``VmHWM`` belongs to the address space the exec created.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import record, usage
from tests.faults.harness import ACCOUNTS, CLI, ROOT

DAY = "2026-11-20"
ACCOUNT = "acct_acme"
# What a run costs besides DuckDB's memory_limit: the interpreter, DuckDB's own structures,
# the tokenizers, a batch of recount text. Measured at 300-450 MB; the bound leaves room.
FIXED_OVERHEAD_BYTES = 640 << 20


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int
    seconds: float


def run_measured(db: Path, logs: Path, memory_limit: str, accounts: Path = ACCOUNTS) -> Measured:
    """The nightly for DAY, with its peak RSS (ru_maxrss of exactly this child, via wait4)."""
    arguments = ["--db", str(db), "--accounts", str(accounts), "--memory-limit", memory_limit]
    arguments += ["nightly", "--date", DAY, "--logs", str(logs), "--max-quarantine-rate", "1"]
    out, err, peak = db.parent / "stdout.txt", db.parent / "stderr.txt", db.parent / "peak_rss.txt"
    db.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        command = [sys.executable, "-c", _REPORT_PEAK_RSS, str(peak), CLI, *arguments]
        returncode = subprocess.run(command, stdout=stdout, stderr=stderr, cwd=ROOT, check=False).returncode
    return Measured(returncode, out.read_text(), err.read_text(), int(peak.read_text()), time.monotonic() - started)


# Runs the CLI's entry point in this process and, on the way out, writes its VmHWM in bytes.
_REPORT_PEAK_RSS = """
import atexit, sys
peak_file = sys.argv[1]
def report():
    with open('/proc/self/status') as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    with open(peak_file, 'w') as out:
        out.write(str(kib * 1024))
atexit.register(report)
sys.argv = sys.argv[2:]
from pipeline.cli import main
main()
"""


def bytes_of(limit: str) -> int:
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
    return int(float(limit[:-2]) * units[limit[-2:].upper()])


def write_long_lines(logs: Path, size: int) -> list[str]:
    """Two lines of ``size`` bytes (output text with usage; messages without, so R5 counts
    it) around ordinary ones. Returns the event ids that must be billed."""
    logs.mkdir(parents=True, exist_ok=True)
    text = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    lines = [
        record(event_id="before", request_id="r0", account_id=ACCOUNT),
        record(event_id="long-output", request_id="r1", account_id=ACCOUNT, output_text=text),
        record(
            event_id="long-messages",
            request_id="r2",
            account_id=ACCOUNT,
            usage=None,
            messages=[{"role": "user", "content": text}],
            output_text="ok",
        ),
        record(event_id="after", request_id="r3", account_id=ACCOUNT),
    ]
    (logs / f"requests-{DAY}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return [str(r["event_id"]) for r in lines]


def write_identical_lines(logs: Path, count: int) -> None:
    """``count`` copies of one record: one accepted, the rest identical duplicates."""
    logs.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record(event_id="same", request_id="r", account_id=ACCOUNT)) + "\n").encode()
    block = line * 10_000
    with (logs / f"requests-{DAY}.jsonl").open("wb") as f:
        for _ in range(count // 10_000):
            f.write(block)
        f.write(line * (count % 10_000))


def write_many_accounts(root: Path, count: int) -> Path:
    """An accounts file of ``count`` accounts and one request per account; returns the file."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    accounts = root / "accounts.toml"
    with accounts.open("w") as f:
        f.write('[groups.default]\nmultiplier = "1"\n[groups.enterprise]\nmultiplier = "0.9"\n\n')
        for i in range(count):
            extra = ('group = "enterprise"\n' if i % 3 == 0 else "") + (f'discount_pct = "{i % 20}"\n' if i % 5 else "")
            f.write(f'[[accounts]]\nid = "acct_{i:07d}"\nlegal_name = "Customer {i}"\n{extra}\n')
    with (logs / f"requests-{DAY}.jsonl").open("w") as f:
        for i in range(count):
            r = record(
                event_id=f"e{i}", request_id=f"r{i}", account_id=f"acct_{i:07d}", usage=usage(1000 + i % 977, 100)
            )
            f.write(json.dumps(r) + "\n")
    return accounts
