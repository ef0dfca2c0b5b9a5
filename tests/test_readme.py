"""The README's own commands, as written, and the documentation's links.

A newcomer copies the README's two commands: the run command must start a bot that answers
(its placeholder token passes the settings check; here the stand-in plays Telegram), and the
test command must be the one CI runs. Every page of docs/ is reached from the README, and no
link points at a page or a heading that is not there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fake_bot_api import FakeBotAPI

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
DOCS = PROJECT / "docs"


def readme_commands() -> tuple[str, str]:
    """The run command and the test command of the README's "Two commands"."""
    block = re.search(r"^## Two commands\n.*?```sh\n(.*?)```", README.read_text(), re.S | re.M)
    assert block, "the README has no sh block under '## Two commands'"
    lines = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2, f"expected two commands, got {lines}"
    return lines[0], lines[1]


def test_ci_runs_the_readmes_test_command_in_a_fresh_virtualenv():
    _, test = readme_commands()
    venv, install, *checks = test.split(" && ")
    assert venv == "python3 -m venv .venv"
    assert install == ".venv/bin/pip install -r requirements-dev.txt"
    ci = (PROJECT / ".ci" / "run").read_text().splitlines()
    assert "rm -rf .venv" in ci
    assert any(line.startswith("python3 -m venv .venv") and "-r requirements-dev.txt" in line for line in ci)
    assert " && ".join(checks) in ci, "CI does not run the README's test command as written"


@pytest.mark.e2e
def test_the_readmes_run_command_starts_a_bot_that_answers(tmp_path):
    run, _ = readme_commands()
    venv, install, start = run.split(" && ")
    assert venv == "python3 -m venv .venv"
    assert install == ".venv/bin/pip install -r requirements.txt"
    settings = dict(re.findall(r"(\w+)=(\S+)", start))
    admin = int(settings["ADMIN_IDS"])
    # The command's own folder layout: .venv/bin/python and main.py beside each other, from the
    # folder the newcomer runs it in (this test's Python is the virtualenv's).
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (tmp_path / "main.py").symlink_to(PROJECT / "main.py")
    with FakeBotAPI(token=settings["BOT_TOKEN"]) as fake:
        bot = subprocess.Popen(
            ["sh", "-c", start],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "TELEGRAM_API_URL": fake.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            fake.send_text(4242, "/start")
            assert "4242" in fake.wait_for_message(4242, timeout=30)["text"]
            fake.send_text(admin, "/id")
            assert str(admin) in fake.wait_for_message(admin, contains=str(admin), timeout=30)["text"]
        finally:
            os.killpg(bot.pid, signal.SIGINT)  # Ctrl-C, to the whole command as a terminal does
            output, _ = bot.communicate(timeout=30)
    # The shell is stopped by the Ctrl-C too; the bot's own word is its last line.
    assert output.rstrip().endswith("main: stopped cleanly"), output
    assert (tmp_path / "data" / "bot.db").exists()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(match) for match in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def links(page: Path) -> list[tuple[str, str]]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    found = re.findall(r"\]\(([^)\s]+)\)", text)
    return [tuple(link.partition("#")[::2]) for link in found if not re.match(r"\w+://", link)]


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_link_points_at_a_page_and_heading_that_exist(page):
    for target, anchor in links(page):
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name} links to {target}, which is not there"
        if anchor:
            assert anchor in anchors(path), f"{page.name} links to {target}#{anchor}: no such heading"


def test_the_readme_is_short_and_reaches_every_page_of_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    linked = {target for target, _ in links(README)}
    for page in DOCS.glob("*.md"):
        assert f"docs/{page.name}" in linked, f"docs/{page.name} is not reached from the README"
