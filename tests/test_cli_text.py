"""The command lines say only what exists: every command a description or a doc names is a real one."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import build_parser as agent_parser
from collector.cli import build_parser as collector_parser

REPO = Path(__file__).resolve().parent.parent
CLIS = {"clinicwatch-agent": agent_parser, "clinicwatch-collector": collector_parser}


def commands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices)


@pytest.mark.parametrize("program", sorted(CLIS))
def test_the_description_names_every_command_and_no_other(program: str) -> None:
    parser = CLIS[program]()
    named = set(re.findall(r"`([a-z][a-z-]*)`", parser.description or ""))
    assert named == commands(parser)


@pytest.mark.parametrize("program,module", [("clinicwatch-agent", "agent.cli"),
                                            ("clinicwatch-collector", "collector.cli")])
def test_help_runs_and_shows_the_description(program: str, module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0
    first_line = (CLIS[program]().description or "").splitlines()[0]
    assert first_line in out.stdout


def test_every_command_the_readme_and_docs_show_exists() -> None:
    shown: list[tuple[str, str, str]] = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("*/README.md"))]:
        for program, command in re.findall(r"\b(clinicwatch-agent|clinicwatch-collector) ([a-z][a-z-]+)",
                                           doc.read_text()):
            shown.append((doc.name, program, command))
    assert shown, "the docs show no command at all"
    unknown = [(doc, program, command) for doc, program, command in shown
               if command not in commands(CLIS[program]())]
    assert unknown == []
