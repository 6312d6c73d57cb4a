"""Every relative link in the documentation resolves inside the repository.

A link `[text](target)` in README.md, CHANGELOG.md, docs/*.md and the component READMEs must
name a file of the repository (and, with `#anchor`, a heading of that file, in GitHub's
slug form), and must not point outside the repository: the documents travel with the code.
Links in fenced code blocks are code, not links; http(s) and mailto links are not checked
(no network in unit tests).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted({
    ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md"),
    ROOT / "signer_service" / "README.md", ROOT / "soroban_sandbox" / "README.md",
    ROOT / "deploy" / "README.md",
})
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
EXTERNAL = ("http://", "https://", "mailto:")


def links(markdown: str) -> list[str]:
    """Link targets outside fenced code blocks and inline code."""
    found: list[str] = []
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            found += LINK.findall(re.sub(r"`[^`]*`", "", line))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            base = slug(m.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def problem(document: Path, target: str) -> str | None:
    """Why `target`, linked from `document`, does not resolve inside the repository."""
    path_part, _, anchor = target.partition("#")
    if path_part.startswith("/"):
        return "absolute path"
    resolved = (document.parent / path_part).resolve() if path_part else document
    if not resolved.is_relative_to(ROOT):
        return "outside the repository"
    if not resolved.exists():
        return "no such file"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text()):
        return f"no heading #{anchor} in {resolved.relative_to(ROOT)}"
    return None


def test_slugs_follow_github():
    assert slug("The watchdog: the second line of defence") == \
        "the-watchdog-the-second-line-of-defence"
    assert slug("Configuration (TOML)") == "configuration-toml"
    assert slug("`PAYOUTS_X` and `y`") == "payouts_x-and-y"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_the_check_refuses_what_it_must():
    doc = ROOT / "docs" / "index.md"
    assert problem(doc, "../../shared/DESIGN.md") == "outside the repository"
    assert problem(doc, "/etc/passwd") == "absolute path"
    assert problem(doc, "no-such-page.md") == "no such file"
    assert problem(ROOT / "README.md", "docs/design.md#no-such-heading") is not None
    assert links("[a](x.md) `[b](y.md)`\n```\n[c](z.md)\n```\n") == ["x.md"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(document: Path):
    assert document.exists(), f"{document.relative_to(ROOT)} is missing"
    broken = [f"{target}: {why}" for target in links(document.read_text())
              if not target.startswith(EXTERNAL) and (why := problem(document, target))]
    assert not broken, "\n".join(broken)
