"""One CLI convention for every command: an example in --help, and the shared options where they apply."""

from __future__ import annotations

import pytest

from divqat_tvm.cli import EXAMPLES, app, main

COMMANDS = sorted(info.name for info in app.registered_commands if info.name)
# commands that run long enough to want a bar, use torch threads, or draw random numbers
LONG = {"train", "quantize", "attack", "experiment", "demo"}
SEEDED = {"train", "quantize", "attack", "emulate"}


def _help(cmd: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([cmd, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_every_command_has_an_example() -> None:
    assert set(COMMANDS) == set(EXAMPLES), "a command was added or removed: keep cli.EXAMPLES in step"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_shows_the_example(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"Example: {EXAMPLES[cmd]}" in _help(cmd, capsys)


@pytest.mark.parametrize("cmd", sorted(LONG))
def test_long_commands_share_progress_and_threads(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(cmd, capsys)
    assert "--progress" in text and "--no-progress" in text
    assert "--threads" in text


@pytest.mark.parametrize("cmd", sorted(SEEDED))
def test_random_commands_take_a_seed(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--seed" in _help(cmd, capsys)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_example_names_only_real_options(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(cmd, capsys).rsplit("Example:", 1)[0]
    for word in EXAMPLES[cmd].split():
        if word.startswith("--"):
            assert word in text, f"{cmd}'s example uses {word}, which it does not take"
