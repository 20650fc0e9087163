"""Every reference in the repo resolves inside the repo.

- A `§N` or `§N.M` cited after `protocol.md` (in code, comments, docstrings and docs) names a section
  heading that exists in docs/protocol.md. A `§` after another name (`RFC 8259 §6`) is not checked.
- A `docs/architecture.md "<heading>"` citation names a heading of docs/architecture.md.
- The rule table of docs/architecture.md names every top-level section of docs/protocol.md.
- "field report Fn" names a row of docs/field-reports.md.
- Nothing points outside the repository (the parent directory's shared specification, fixtures or hooks).
- A relative Markdown link in a doc points at a file that exists.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".yml", ".yaml", ".conf", ".cfg", ".json", ".example", ".sh"}

# A document name, or a section sign with its number; a section cites the last name before it.
_TOKEN = re.compile(r"(?P<name>protocol\.md|RFC ?\d+|[\w-]+\.md|\[[^\]]*\]\([^)]*\))|§ ?(?P<section>\d+(?:\.\d+)*)")
_HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
_FIELD_REPORT = re.compile(r"field reports? (F\d+)(?:[–-](F\d+))?", re.IGNORECASE)
_SHARED = "sha" + "red"  # spelled in two pieces so that this checker does not match itself
_OUTSIDE = re.compile(rf"\.\./{_SHARED}|{_SHARED}/(?:spec|fixtures|hooks)")
_MD_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")
# `architecture.md "Heading"`, also as a Markdown link (`[`architecture.md`](architecture.md) "Heading"`).
_ARCH_CITE = re.compile(r'architecture\.md(?:`\]\([^)]*\)|`)?\s+"([^"\n]+)"')
_ANY_HEADING = re.compile(r"^#{1,4} (.+?)\s*$", re.MULTILINE)
RULE_TABLE_HEADING = "Which module owns which rule"


def tracked_files() -> list[Path]:
    """The repo's text files under version control (what a clean clone holds)."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [
        ROOT / p
        for p in out.splitlines()
        if ((ROOT / p).suffix in TEXT_SUFFIXES or (ROOT / p).name in {"Makefile", "Dockerfile"})
        and p != "tests/test_references.py"
    ]  # its own examples cite missing sections on purpose


def protocol_sections() -> set[str]:
    """Section numbers of docs/protocol.md headings (`## 13.` → "13", `### 13.8` → "13.8")."""
    return set(_HEADING.findall((ROOT / "docs/protocol.md").read_text()))


def architecture_headings() -> set[str]:
    """The heading texts of docs/architecture.md (`## Delivery between instances` → that text)."""
    return set(_ANY_HEADING.findall((ROOT / "docs/architecture.md").read_text()))


def cited_architecture_headings(text: str) -> list[tuple[int, str]]:
    """`(line, heading)` for every `architecture.md "<heading>"` in `text` (the quote may follow on the
    next line when the citation wraps)."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _ARCH_CITE.finditer(text)]


def rule_table_sections(text: str) -> set[str]:
    """Top-level protocol sections (`§13.8` → "13") named in the table under the rule-table heading."""
    start = text.index(f"## {RULE_TABLE_HEADING}\n")
    end = text.find("\n## ", start + 1)
    rows = [line for line in text[start : end if end != -1 else None].splitlines() if line.startswith("|")]
    return {number.split(".")[0] for row in rows for number in re.findall(r"§(\d+(?:\.\d+)*)", row)}


def cited_sections(text: str, *, self_is_protocol: bool) -> list[tuple[int, str]]:
    """`(line, section)` for every `§` that cites docs/protocol.md in `text`: a § whose nearest name
    before it is `protocol.md` (or a Markdown link to it), or, inside docs/protocol.md, any § that
    follows no other name on its line."""
    found, last_name, last_line = [], None, 0
    for m in _TOKEN.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group("name"):
            last_name, last_line = m.group("name"), line
            continue
        if last_name is not None and line - last_line > 3:
            last_name = None  # a name several lines up does not govern this §
        protocol = last_name is not None and "protocol.md" in last_name
        if protocol or (self_is_protocol and last_name is None):
            found.append((line, m.group("section")))
    return found


def test_every_protocol_section_cited_exists():
    """Each `docs/protocol.md §N` in the repo names a heading of docs/protocol.md."""
    sections = protocol_sections()
    assert {"1", "13", "13.8", "19.4"} <= sections  # the parser reads the headings
    bad = []
    for path in tracked_files():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(errors="replace")
        for line, section in cited_sections(text, self_is_protocol=rel == "docs/protocol.md"):
            if section not in sections:
                bad.append(f"{rel}:{line}: §{section}")
    assert not bad, "sections cited that docs/protocol.md does not have:\n" + "\n".join(bad)


def test_every_architecture_heading_cited_exists():
    """Each `docs/architecture.md "<heading>"` in the repo names a heading of docs/architecture.md."""
    headings = architecture_headings()
    assert {"Delivery between instances", RULE_TABLE_HEADING} <= headings  # the parser reads the headings
    bad = []
    for path in tracked_files():
        for line, heading in cited_architecture_headings(path.read_text(errors="replace")):
            if heading not in headings:
                bad.append(f'{path.relative_to(ROOT)}:{line}: "{heading}"')
    assert not bad, "headings cited that docs/architecture.md does not have:\n" + "\n".join(bad)


def test_the_rule_table_covers_every_protocol_section():
    """Every `## N.` of docs/protocol.md is named (as §N or §N.M) in architecture.md's rule table, so a
    reader finds the module behind any rule in one hop."""
    top = {s for s in protocol_sections() if "." not in s}
    assert {"1", "19", "22"} <= top
    missing = top - rule_table_sections((ROOT / "docs/architecture.md").read_text())
    assert not missing, f"protocol.md sections missing from the architecture.md rule table: {sorted(missing, key=int)}"


def test_every_field_report_cited_is_described():
    """ "field report Fn" names a row (`| Fn |`) of docs/field-reports.md."""
    rows = set(re.findall(r"^\| (F\d+) \|", (ROOT / "docs/field-reports.md").read_text(), re.MULTILINE))
    assert rows, "docs/field-reports.md has no rows"
    bad = []
    for path in tracked_files():
        for i, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for m in _FIELD_REPORT.finditer(text):
                bad += [f"{path.relative_to(ROOT)}:{i}: {ref}" for ref in m.groups() if ref and ref not in rows]
    assert not bad, "\n".join(bad)


def test_nothing_points_outside_the_repository():
    """No file cites a path outside the repo (the shared spec the relay was built from is not shipped)."""
    bad = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in tracked_files()
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("doc", sorted(p.relative_to(ROOT).as_posix() for p in tracked_files() if p.suffix == ".md"))
def test_relative_markdown_links_resolve(doc):
    """A relative link in a Markdown document points at a file or directory of the repo."""
    path = ROOT / doc
    missing = [target for target in _MD_LINK.findall(path.read_text()) if not (path.parent / target).exists()]
    assert not missing, missing


def test_the_checker_flags_what_it_should():
    """The scanner sees a missing section after protocol.md, ignores RFC sections and a bare § elsewhere."""
    text = "see docs/protocol.md §8, §99.1 and RFC 8259 §6\nbare §77 here"
    assert cited_sections(text, self_is_protocol=False) == [(1, "8"), (1, "99.1")]
    assert cited_sections("§3.3", self_is_protocol=True) == [(1, "3.3")]


def test_the_architecture_checkers_flag_what_they_should():
    """The heading scanner reads plain, wrapped and linked citations and nothing else; the rule-table
    reader only looks inside its own table."""
    text = (
        'see docs/architecture.md "Shutdown" and\n'
        '[`architecture.md`](architecture.md) "Nowhere"; docs/architecture.md\n    "Wrapped heading"\n'
        '"docs/architecture.md", "not a citation"'
    )
    assert cited_architecture_headings(text) == [(1, "Shutdown"), (2, "Nowhere"), (2, "Wrapped heading")]
    doc = (
        f"## Intro\n| x | §5 |\n## {RULE_TABLE_HEADING}\n\n| rule | module | § |\n|---|---|---|\n"
        "| a | `m` | §1, §13.8 |\nprose §7\n## Next\n| y | §9 |\n"
    )
    assert rule_table_sections(doc) == {"1", "13"}
