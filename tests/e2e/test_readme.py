"""The README's first session, run to the letter: its shell commands are read from README.md
(between `<!-- session:begin -->` and `<!-- session:end -->`) and run by bash, one shell for
the whole session, from the repository's root, with the real `make`, `pinbase`, `curl` and `jq`.

What a command prints is written under it as `#> ` lines; each command must succeed and print
exactly those lines (nothing, when there are none), timestamps (`updatedAt`, `createdAt`) being
whatever they are. Two kinds of command are held to their exit status only: the bootstrap
(`make venv`, which prints what it had to do) and a command sent to the background (the
server, whose output is its log).

So that the session runs beside other tests and servers, four things differ from a reader's
shell, none of them in the commands: the HTTP port 8080 is replaced by a free one; the data
directory (and, on PostgreSQL, the database) is the test's own, given as `PINBASE_DATA_DIR`
(`PINBASE_DATABASE`); the device ports, which the session does not use, are off
(`PINBASE_HARDWARE_PORT=0`, `PINBASE_MQTT_PORT=0`); and `.venv/bin` is taken off the PATH, so
that the session's own activation is what puts `pinbase` there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from helpers import database_for, free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BOOTSTRAP = "make venv"
ACTIVATE = ". .venv/bin/activate"
SESSION_DEADLINE = 300.0  # seconds; only bounds a hung session, never decides a result

_SESSION = re.compile(r"<!-- session:begin -->\n(.*?)<!-- session:end -->", re.S)
_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)
_STAMP = re.compile(r'("(?:updatedAt|createdAt)":)-?[0-9]+')
_PORT = re.compile(r"\b8080\b")


@dataclass
class Step:
    """One shell command of the session (continuation lines included) and what it prints."""

    command: str
    expected: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        """The command without its trailing comment (commands hold no `#` of their own)."""
        return self.command.split("#")[0].strip()

    @property
    def checked(self) -> bool:
        """Whether its output is compared with the README's."""
        return not self.code.endswith("&") and self.code != BOOTSTRAP


def session_steps(readme: str) -> list[Step]:
    """The commands of the README's session, in order, each with its `#> ` lines."""
    found = _SESSION.search(readme)
    assert found is not None, "README.md lacks the <!-- session:begin/end --> markers"
    steps: list[Step] = []
    continued = False
    for block in _BLOCK.findall(found.group(1)):
        for line in block.splitlines():
            if continued:
                steps[-1].command += "\n" + line
            elif line.startswith("#>"):
                assert steps, f"output before any command: {line}"
                steps[-1].expected.append(line[3:] if line.startswith("#> ") else line[2:])
            elif line.strip() and not line.lstrip().startswith("#"):
                steps.append(Step(line))
            continued = line.endswith("\\")
    return steps


def script(steps: list[Step], port: int, out: Path) -> str:
    """A bash script running every step in one shell, each step's output in `out/<n>.*`."""
    lines = []
    for number, step in enumerate(steps):
        command = _PORT.sub(str(port), step.command)
        lines.append(f'{{ {command}\n}} >"{out}/{number}.out" 2>"{out}/{number}.err"')
        lines.append(f'echo $? >"{out}/{number}.rc"')
    lines.append("wait")  # the session stops its server: wait until it has exited
    return "\n".join(lines) + "\n"


def environment(data_dir: Path) -> dict[str, str]:
    """The caller's environment with the changes the module docstring lists."""
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PINBASE_") and key != "VIRTUAL_ENV"
    }
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if part.rstrip("/") != venv_bin
    )
    env.update(PINBASE_DATA_DIR=str(data_dir), PINBASE_HARDWARE_PORT="0", PINBASE_MQTT_PORT="0")
    database = database_for(data_dir)
    if database:
        env["PINBASE_DATABASE"] = database
    return env


def normalized(text: str) -> list[str]:
    return _STAMP.sub(r"\1<ms>", text).rstrip("\n").splitlines()


def test_the_session_starts_from_a_fresh_clone() -> None:
    steps = session_steps(README.read_text())
    assert [step.code for step in steps[:2]] == [BOOTSTRAP, ACTIVATE]
    assert "pinbase apply examples/fleet.yaml" in [step.code for step in steps]
    assert [step for step in steps if step.code.endswith("&")], "the session starts no server"
    assert all(_PORT.search(step.command) for step in steps if "curl" in step.command)


def test_the_readme_session_runs_as_written(tmp_path: Path, backend: str) -> None:
    missing = [tool for tool in ("bash", "make", "curl", "jq") if shutil.which(tool) is None]
    assert not missing, f"the README's session needs {missing}: scripts/test installs them"
    steps = session_steps(README.read_text())
    out = tmp_path / "out"
    out.mkdir()
    shell = subprocess.Popen(
        ["bash", "-c", script(steps, free_port(), out)],
        cwd=ROOT,
        env=environment(tmp_path / "data"),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        shell.wait(timeout=SESSION_DEADLINE)
    finally:
        # whatever is left of the session (its server, if the session did not stop it)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    for number, step in enumerate(steps):
        status = out / f"{number}.rc"
        assert status.exists(), f"the session did not get to: {step.command}"
        stdout = (out / f"{number}.out").read_text()
        shown = f"({backend}) {step.command}\nstdout: {stdout}\nstderr: "
        shown += (out / f"{number}.err").read_text()
        assert status.read_text().strip() == "0", f"failed: {shown}"
        if step.checked:
            assert normalized(stdout) == normalized("\n".join(step.expected)), shown
