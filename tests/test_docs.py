"""The docs a newcomer walks: README keeps the quick start's two commands, and every link between
the pages (and to the screenshots) lands on a file, and on a heading where it names one."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *ROOT.glob("*/README.md")])
# Linked from README, written on a branch of its own (issue 19): checked once it is here.
WRITTEN_ELSEWHERE = {ROOT / "docs" / "consumers.md"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"(?ms)^```.*?^```$")


def slug(heading: str) -> str:
    """The anchor GitHub (and GitLab) gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in prose.splitlines() if line.startswith("#")}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            if linked not in WRITTEN_ELSEWHERE:
                broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(linked):
            shown = linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked.name
            broken.append(f"{target}: no such heading in {shown}")
    return broken


def test_the_quick_start_is_make_run_and_make_test() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (commands,) = re.findall(r"(?ms)^```sh\n(.*?)^```$", quick_start)
    assert [line.split()[:2] for line in commands.splitlines() if line.startswith("make")] == [
        ["make", "run"],
        ["make", "test"],
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_lands(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n[here](#a-page) [gone](missing.md) [nowhere](#no-such-heading)\n"
        "```sh\n# not a heading\n```\n[code](#not-a-heading)\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "#no-such-heading: no such heading in page.md",
        "#not-a-heading: no such heading in page.md",
    ]
