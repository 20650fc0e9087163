"""The dependency locks (requirements*.txt, pip-tools with hashes) match their pins (requirements*.in).

`make lock` regenerates them; this test fails when a pin in a `.in` file was changed without it, or
when a lock lost its hashes, so CI never installs something other than what the pins say.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", re.MULTILINE)


def pins(path: Path) -> dict[str, str]:
    """`{normalised name: version}` of the `name==version` lines of `path` (and the files it `-r`s)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            found |= pins(path.parent / line[3:].strip())
    for name, version in PIN.findall(path.read_text()):
        found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


@pytest.mark.parametrize("name", ["requirements", "requirements-sim", "requirements-dev", "requirements-bench"])
def test_every_pin_is_in_its_lock_with_hashes(name):
    wanted, locked = pins(ROOT / f"{name}.in"), pins(ROOT / f"{name}.txt")
    assert {k: v for k, v in wanted.items() if locked.get(k) != v} == {}, f"run `make lock`: {name}.txt is stale"
    text = (ROOT / f"{name}.txt").read_text()
    assert text.count("==") <= text.count("--hash=sha256:"), f"{name}.txt has a package without a hash"
