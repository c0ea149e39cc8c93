"""The documentation stays true to the code: every setting and every `deepsvdd` flag is on its
page, and the README's links lead to files that exist (mkdocs checks the links inside docs/)."""

from __future__ import annotations

import argparse
import re

import pytest

from cli.main import build_parser
from service.settings import Settings
from tests.support.processes import ROOT

DOCS = ROOT / "docs"


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")]


def _section(page: str, heading: str) -> str:
    """The text under `## heading` of a docs page, up to the next `## ` heading."""
    text = (DOCS / page).read_text()
    assert f"\n## {heading}\n" in text, f"{page} has no section {heading!r}"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_every_setting_is_in_the_settings_table() -> None:
    table = _section("api.md", "Settings")
    missing = [f for f in Settings.model_fields if f"`DEEPSVDD_{f.upper()}`" not in table]
    assert missing == []


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_flag_of_every_command_is_in_the_cli_reference(command: str) -> None:
    own = _section("cli.md", f"`deepsvdd {command}`")
    shared = _section("cli.md", "Data flags")
    has_shared = "[data flags](#data-flags)" in own
    missing = [
        flag
        for flag in _flags(_commands()[command])
        if not _names(own, flag) and not (has_shared and _names(shared, flag))
    ]
    assert missing == []


def _names(text: str, flag: str) -> bool:
    """Whether `text` names `flag` in code, alone or with its argument (`--nu NU`)."""
    return re.search(rf"`{re.escape(flag)}[` ]", text) is not None


def test_the_readme_links_to_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert "docs/index.md" in local
    assert [t for t in local if not (ROOT / t).exists()] == []
