"""The command line as a newcomer meets it: help on every subcommand, --config on either side, no silent new
database, one-line errors with exit 2 for bad input and unknown ids, exports where the user says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import env, tw  # noqa: F401 - the fixture and the runner
from tracker_watch import cli_help
from tracker_watch.cli import build_parser


def test_every_subcommand_has_a_description_examples_and_the_common_options() -> None:
    found = dict(cli_help.subcommands(build_parser()))
    assert set(found) == set(cli_help.HELP)
    for path, parser in found.items():
        assert parser.description, path
        assert parser.epilog, path
        assert parser.epilog.startswith("examples:\n"), path
        leaf = not any(a.dest == "action" for a in parser._actions)
        if leaf and path not in ("demo", "lab"):
            assert "--config" in parser.format_help(), path


def test_config_before_or_after_the_subcommand(tmp_path: Path) -> None:
    config = tmp_path / "tw.toml"
    config.write_text('[node]\nname = "n1"\n')
    before = build_parser().parse_args(["--config", str(config), "target", "list"])
    after = build_parser().parse_args(["target", "list", "--config", str(config), "--init"])
    assert before.config == after.config == config
    assert not before.init
    assert after.init
    assert build_parser().parse_args(["target", "list"]).config is None


def _bare_env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")}
    return {**base, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "xdg")}


def test_no_new_embedded_database_unless_asked(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tracker_watch", "token", "create", "--role", "operator",
                             "--name", "ana"], env=_bare_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no database at" in result.stderr
    assert "--init" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "xdg" / "tracker-watch" / "pgdata").exists()
    config = tmp_path / "tw.toml"
    config.write_text(f'[node]\nstate_dir = "{tmp_path / "state"}"\n')
    named = subprocess.run([sys.executable, "-m", "tracker_watch", "peers", "--config", str(config)],
                           env=_bare_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert named.returncode == 2
    assert f"configuration {config}" in named.stderr
    assert not (tmp_path / "state" / "pgdata").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["isp", "set", "X", "--webhook", "ftp://x"], "is not an http:// or https:// URL"),
    (["isp", "set", "X", "--webhook", "https://"], "is not an http:// or https:// URL"),
    (["isp", "set", "X", "--drop-dir", "/nonexistent/acns"], "is not an existing directory"),
    (["isp", "set", "X", "--abuse-email", "nobody"], "is not an e-mail address"),
    (["peers", "--target", "99"], "no target '99'"),
    (["peers", "--target", "f" * 40], "no target"),
    (["strikes", "list", "--subject", "99"], "no subject 99"),
    (["target", "pause", "99"], "no target 99"),
    (["token", "revoke", "99"], "no active token 99"),
    (["notices", "show", "99"], "no notice 99"),
])
def test_bad_input_and_unknown_ids_are_one_line_exit_2(env: dict[str, str], args: list[str],  # noqa: F811
                                                       message: str) -> None:
    result = tw(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_isp_set_warns_about_a_placeholder_and_stores_an_absolute_drop_dir(env: dict[str, str],  # noqa: F811
                                                                         tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    result = tw("isp", "set", "Lab", "--abuse-email", "abuse@isp.example", "--drop-dir", "drop", env=env,
                cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "placeholder" in result.stderr
    assert str(tmp_path / "drop") in tw("isp", "list", env=env).stdout


def test_export_path() -> None:
    from tracker_watch.cli_ledger import export_path

    named = export_path(None, 3, "::1")
    assert named.parent == Path(".")
    assert named.name.startswith("evidence-target3-__1-")
    assert named.suffix == ".zip"
    assert export_path(Path("/tmp"), 3, "1.2.3.4").parent == Path("/tmp")
    assert export_path(Path("x.zip"), 3, "1.2.3.4") == Path("x.zip")


@pytest.mark.parametrize("args", [["peers", "--target"], ["strikes", "void", "abc", "--reason", "x"], ["bogus"],
                                  ["isp", "set"], ["token", "create", "--role", "x", "--name", "y"]])
def test_usage_errors_are_one_line(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tracker_watch", *args], env=_bare_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "error:" in result.stderr


def test_every_readme_command_names_the_configuration() -> None:
    """A README command without --config (or an exported TRACKER_WATCH_CONFIG) would act on another database."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = {path for path, _ in cli_help.subcommands(build_parser()) if " " not in path} - {"demo", "lab"}
    missing = []
    for block in text.split("```sh\n")[1:]:
        exported = False
        for line in block.split("```", 1)[0].replace("\\\n", " ").splitlines():
            exported = exported or line.startswith("export TRACKER_WATCH_CONFIG=")
            command = re.search(r"tracker-watch (\w+)", line.split("#", 1)[0])
            if command and command.group(1) in commands and "--config" not in line and not exported:
                missing.append(line)
    assert missing == []
