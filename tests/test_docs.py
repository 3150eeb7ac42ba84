"""The README stays a first screen plus quickstart, and every link from it and from docs/ leads somewhere real.

mkdocs' strict build checks links between docs pages (and their anchors); links out of docs/ into the repository
(``../experiments/results/``) are outside what it can see, so they are checked here on disk.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def links(path: Path) -> list[str]:
    """Relative link targets of a markdown file, without their #anchor (code blocks left out)."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the rest belongs in docs/"


def test_readme_names_the_two_commands_and_test_fast():
    text = README.read_text(encoding="utf-8")
    head = "\n".join(text.splitlines()[:30])
    assert "make demo" in head and "make test" in head and "make test-fast" in head
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"demo", "test", "test-fast", "docs", "setup"} <= targets


def test_readme_links_into_docs_and_experiments_resolve():
    targets = links(README)
    assert any(t.startswith("docs/") for t in targets) and any(t.startswith("experiments/") for t in targets)
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_links_every_docs_page():
    linked = {Path(t).name for t in links(README) if t.startswith("docs/")}
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_docs_links_resolve(page):
    missing = [t for t in links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_link_check_catches_a_missing_target(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](nope.md#x) [b](https://example.org) [c](#here)\n```\n[d](inside-code.md)\n```\n")
    assert links(page) == ["nope.md"]


def test_mkdocs_nav_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = {next(iter(item.values())) for item in config["nav"]}
    assert nav == {p.name for p in DOCS.glob("*.md")}
    assert config.get("strict") is True


def test_ci_builds_the_docs_strictly():
    assert "make docs" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "mkdocs build --strict" in makefile
    assert "docs" in re.search(r"^EXTRAS := (.*)$", makefile, re.M).group(1).split(",")


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed here (the docs extra: pip install 'qwenft[docs]')")
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
