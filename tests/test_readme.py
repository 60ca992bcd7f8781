"""Every `fastgpt ...` command shown in a ```bash block of README.md exists: its subcommand
path resolves, `--help` after it exits 0, and every --flag the line uses is one the
command accepts. So the README cannot name a command or flag the CLI lacks."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from fastgpt.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands(text: str) -> list[str]:
    """The `fastgpt ...` lines of the ```bash blocks, continuation lines (ending in \\) joined."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("fastgpt "):
                commands.append(line.strip())
    return commands


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def resolve(command: str) -> tuple[list[str], argparse.ArgumentParser, list[str]]:
    """(subcommand path, its parser, the remaining words) of a README line."""
    words = shlex.split(command, comments=True)[1:]
    parser, path = build_parser(), []
    while (sub := _subparsers(parser)) is not None and words and words[0] in sub.choices:
        path.append(words[0])
        parser = sub.choices[words.pop(0)]
    return path, parser, words


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_readme_has_commands():
    assert len(COMMANDS) >= 5, "README.md should show the fastgpt commands in ```bash blocks"


@pytest.mark.parametrize("command", COMMANDS, ids=[c[:60] for c in COMMANDS])
def test_readme_command_exists(command, capsys):
    path, parser, rest = resolve(command)
    assert _subparsers(parser) is None, f"{command!r}: {rest[:1]} is not a subcommand of 'fastgpt {' '.join(path)}'"
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*path, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: fastgpt")
    # Flags as written, optional ones in [brackets] or alternatives a|b included.
    known = {s for action in parser._actions for s in action.option_strings}
    flags = {m for word in rest for m in re.findall(r"(?:^|[\[|])(--[A-Za-z][\w-]*)", word)}
    assert flags <= known, f"{command!r}: 'fastgpt {' '.join(path)}' has no {sorted(flags - known)}"


def test_resolve_rejects_unknown_subcommands():
    path, parser, rest = resolve("fastgpt tokenizer nonsense --x 1")
    assert path == ["tokenizer"] and _subparsers(parser) is not None and rest[0] == "nonsense"


def test_readme_commands_join_continuations():
    text = "```bash\nfastgpt train --a 1 \\\n    --b 2   # note\nmake test\n```\n```python\nfastgpt x\n```\n"
    assert readme_commands(text) == ["fastgpt train --a 1      --b 2   # note"]
