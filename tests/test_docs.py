"""The docs hold together: every page, section and repository path they or the code name
exists, and nothing points outside the clone.

What is checked, and where:

- README.md and docs/**/*.md: repository paths in backticks (`app/orders/worker.py`), and
  Markdown links to files of the repository, with their `#section` when they give one;
- comments and docstrings of every tracked *.py file: repository paths that start with a
  top-level folder (`app/`, `clients/`, `telemetry/`, `tests/`, `docs/`, `scripts/`,
  `pizza_tools/`, `.ci/`);
- every tracked text file: each `docs/<page>.md#<section>` it cites names a heading of
  that page (the anchor GitHub makes of it);
- every tracked file: no path to the sibling folder of specifications the project was
  written from, no section signs, no issue numbers, and no bare name of a specification
  page: the docs the code cites are docs/<page>.md, in the repository.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_DIRS = ("app", "clients", "telemetry", "tests", "docs", "scripts", "pizza_tools", ".ci")
# A repository path: a top-level folder, then path characters; not part of a longer path
# or a URL (no word character, dot, slash or hyphen just before it).
# A glob (`tests/app/test_security_*.py`) names no one path: it is left alone.
PATH = re.compile(
    r"(?<![\w./-])(?:"
    + "|".join(re.escape(d) for d in TOP_DIRS)
    + r")/[\w./-]*[\w/](?![\w*/-]|\.\w)"
)
DOC_CITATION = re.compile(r"(?<![\w./-])docs/[\w./-]+?\.md(?:#[\w-]+)?")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
# Written in pieces, so that this file does not hold what it looks for.
OUTSIDE = "../" + "shared"
SECTION_SIGN = "\u00a7"
ISSUE_NUMBER = re.compile(r"[Ii]ssue #?[0-9]+")
SPEC_NAMES = ("api", "resilience", "telemetry", "factory", "performance", "operations", "style")
BARE_SPEC = re.compile(r"(?<![\w/.-])(" + "|".join(SPEC_NAMES) + r")\.md\b")
# Not ours: the real pizza factory, kept as it is published.
VENDORED = "tests/real_factory/jwt-pizza-factory/"


@cache
def tracked() -> tuple[str, ...]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    return tuple(name for name in listing.split("\0") if name and (ROOT / name).is_file())


@cache
def text_of(name: str) -> str | None:
    """A tracked file's text, or None for a binary one."""
    data = (ROOT / name).read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped,
    spaces made hyphens (inline code and link syntax count by their text only)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def markdown_lines(text: str) -> Iterator[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield line


@cache
def anchors(page: str) -> frozenset[str]:
    """Every anchor of a Markdown page, duplicates numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for line in markdown_lines((ROOT / page).read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def missing(target: str) -> str | None:
    """Why a repository path (with an optional #anchor) names nothing, or None."""
    path, _, anchor = target.partition("#")
    # A module may be named without its suffix (`app/sql/__init__`).
    if not (ROOT / path).exists() and not (ROOT / f"{path}.py").exists():
        return f"{path} does not exist"
    if anchor and path.endswith(".md") and anchor not in anchors(path):
        return f"{path} has no section #{anchor}"
    return None


def markdown_files() -> list[str]:
    return [
        n for n in tracked() if n == "README.md" or (n.startswith("docs/") and n.endswith(".md"))
    ]


def markdown_targets(name: str) -> Iterator[str]:
    """Repository paths a Markdown file names: in code spans, and as link targets."""
    lines = list(markdown_lines((ROOT / name).read_text(encoding="utf-8")))
    for line in lines:
        for span in CODE_SPAN.findall(line):
            yield from (m.group(0) for m in PATH.finditer(span))
        for link in MD_LINK.findall(line):
            if re.match(r"^[a-z]+:", link):
                continue  # a web address or mailto:
            if link.startswith("#"):
                yield f"{name}{link}"
                continue
            path, _, anchor = link.partition("#")
            resolved = (ROOT / name).parent.joinpath(path).resolve().relative_to(ROOT)
            yield f"{resolved.as_posix()}#{anchor}" if anchor else resolved.as_posix()


def python_prose(name: str) -> Iterator[str]:
    """The comments and docstrings of a Python file."""
    source = (ROOT / name).read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                yield docstring


def python_files() -> list[str]:
    return [n for n in tracked() if n.endswith(".py") and not n.startswith(VENDORED)]


def broken(pairs: Iterator[tuple[str, str]]) -> list[str]:
    return sorted({f"{name}: {why}" for name, target in pairs if (why := missing(target))})


def test_markdown_names_only_what_exists() -> None:
    pairs = ((name, t) for name in markdown_files() for t in markdown_targets(name))
    assert broken(pairs) == []


def test_code_comments_name_only_paths_that_exist() -> None:
    pairs = (
        (name, match.group(0).rstrip("."))
        for name in python_files()
        for prose in python_prose(name)
        for match in PATH.finditer(prose)
    )
    assert broken(pairs) == []


def test_every_cited_docs_section_exists() -> None:
    pairs = (
        (name, match.group(0))
        for name in tracked()
        if not name.startswith(VENDORED) and (text := text_of(name)) is not None
        for match in DOC_CITATION.finditer(text)
    )
    assert broken(pairs) == []


def test_nothing_points_outside_the_repository() -> None:
    found = [name for name in tracked() if (text := text_of(name)) is not None and OUTSIDE in text]
    assert found == []


def citations_outside_the_docs(name: str, text: str) -> Iterator[str]:
    """What a file cites that a clone does not have, one line each."""
    in_docs = name.startswith("docs/") and name.count("/") == 1
    for number, line in enumerate(text.splitlines(), start=1):
        bare = [
            m.group(0)
            for m in BARE_SPEC.finditer(line)
            if not (in_docs and (ROOT / "docs" / m.group(0)).exists())
        ]
        if SECTION_SIGN in line or ISSUE_NUMBER.search(line) or bare:
            yield f"{name}:{number}: {line.strip()[:120]}"


def test_no_citation_of_pages_a_clone_does_not_have() -> None:
    found = [
        cited
        for name in tracked()
        if not name.startswith(VENDORED) and (text := text_of(name)) is not None
        for cited in citations_outside_the_docs(name, text)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("POST /api/order", "post-apiorder"),
        ("Operators: `/factory/status`", "operators-factorystatus"),
        ("Pending orders and the retry worker", "pending-orders-and-the-retry-worker"),
        ("Pay pressed twice", "pay-pressed-twice"),
    ],
)
def test_slugs_are_githubs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_missing_section_is_found() -> None:
    # Built in pieces: this file's own text is checked for citations too.
    resilience, nowhere = "docs/resilience" + ".md", "docs/no-such-page" + ".md"
    assert missing(f"{resilience}#outcomes") is None
    assert missing(f"{resilience}#no-such-section") == (
        f"{resilience} has no section #no-such-section"
    )
    assert missing(nowhere) == f"{nowhere} does not exist"
