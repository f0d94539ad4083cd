"""The public surface checks itself: commands, options, README and /openapi.json agree.

Every click command (walked recursively from ``elastic.cli.main``) has help with an
``Example:`` and is named in README.md; every option shows in ``--help``; every flag
the README's command table shows exists; every path of the served OpenAPI document is
shown in the README's HTTP API section, and every path shown there is served; the
document is valid OpenAPI 3.1. (That every route is described in /openapi.json is
tested in test_server_api.py.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import click
import pytest
from click.testing import CliRunner

from elastic import config
from elastic.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
SERVER_COMMANDS = ("worker", "submit", "status", "cancel")


def walk_commands(group: click.Group = main,
                  path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command below ``group``, groups included, as (path of names, command)."""
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk_commands(command, (*path, name))


COMMANDS = dict(walk_commands())
LEAF_COMMANDS = {path: command for path, command in COMMANDS.items()
                 if not isinstance(command, click.Group)}


def _name(path: tuple[str, ...]) -> str:
    return " ".join(path)


def _section(title: str) -> str:
    """The README text under ``## <title>`` up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


# -- commands ------------------------------------------------------------------------------

def test_the_walk_finds_every_command_of_the_interface() -> None:
    names = {_name(path) for path in COMMANDS}
    assert {"serve", "worker", "submit", "ingest", "status", "run", "cancel"} <= names


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=_name)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    assert command.help and command.help.strip(), f"elastic {_name(path)} has no help"
    assert "Example:" in command.help, f"elastic {_name(path)}'s help has no 'Example:'"
    example = command.help.split("Example:", 1)[1]
    if not isinstance(command, click.Group):
        assert f"elastic {_name(path)}" in example, (
            f"the example of elastic {_name(path)} does not run elastic {_name(path)}")


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=_name)
def test_every_command_is_named_in_the_readme(path: tuple[str, ...]) -> None:
    assert re.search(rf"`elastic {re.escape(_name(path))}\b", README), (
        f"README.md never shows `elastic {_name(path)}`")


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=_name)
def test_every_option_shows_in_the_commands_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    command = COMMANDS[path]
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            for flag in (*param.opts, *param.secondary_opts):
                assert flag in result.output, f"elastic {_name(path)} --help does not show {flag}"
        elif isinstance(param, click.Argument):
            assert param.make_metavar(click.Context(command)) in result.output


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=_name)
def test_every_option_has_a_help_text(path: tuple[str, ...]) -> None:
    silent = [param.opts[0] for param in COMMANDS[path].params
              if isinstance(param, click.Option) and not param.hidden and not param.help]
    assert not silent, f"elastic {_name(path)}: options without help text: {silent}"


@pytest.mark.parametrize("path", sorted(LEAF_COMMANDS), ids=_name)
def test_every_command_takes_the_common_config_option(path: tuple[str, ...]) -> None:
    flags = {flag for param in LEAF_COMMANDS[path].params for flag in getattr(param, "opts", [])}
    assert "--config" in flags


@pytest.mark.parametrize("name", SERVER_COMMANDS)
def test_every_command_that_talks_to_a_server_takes_server(name: str) -> None:
    flags = {flag for param in COMMANDS[(name,)].params for flag in getattr(param, "opts", [])}
    assert "--server" in flags


def _readme_command_rows() -> list[tuple[tuple[str, ...], list[str]]]:
    rows = []
    for line in _section("Commands").splitlines():
        match = re.match(r"\| `elastic ([^`]*)`", line)
        if not match:
            continue
        words = match.group(1).split()
        path = tuple(w for w in words[:2] if re.fullmatch(r"[a-z][a-z-]*", w)
                     and not w.startswith("-"))
        if len(path) == 2 and path not in COMMANDS:
            path = path[:1]
        rows.append((path, re.findall(r"--[a-z][a-z-]*", match.group(1))))
    return rows


def test_the_readme_command_table_lists_every_command() -> None:
    listed = {path for path, _ in _readme_command_rows()}
    assert set(LEAF_COMMANDS) <= listed, sorted(set(LEAF_COMMANDS) - listed)


README_ROWS = _readme_command_rows()


@pytest.mark.parametrize(("path", "flags"), README_ROWS,
                         ids=[_name(path) for path, _ in README_ROWS])
def test_every_flag_in_the_readme_command_table_exists(path: tuple[str, ...],
                                                       flags: list[str]) -> None:
    assert path in COMMANDS, f"README shows `elastic {_name(path)}`, which does not exist"
    known = {flag for param in COMMANDS[path].params
             for flag in (*getattr(param, "opts", []), *getattr(param, "secondary_opts", []))}
    assert set(flags) <= known, f"elastic {_name(path)}: {sorted(set(flags) - known)} unknown"


# -- the HTTP API --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The document ``GET /openapi.json`` serves, fetched through the WSGI app in-process."""
    from elastic.server.app import make_app
    from elastic.store import open_store

    folder = tmp_path_factory.mktemp("docs")
    store = open_store(f"sqlite:///{folder}/docs.db")
    app = make_app(store, config.load(None, {"database_url": f"sqlite:///{folder}/docs.db"}))
    environ: dict[str, object] = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO="/openapi.json", REQUEST_METHOD="GET", QUERY_STRING="")
    answer: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        answer.update(status=status, headers=dict(headers))

    body_parts = validator(app)(environ, start_response)
    try:
        body = b"".join(body_parts)
    finally:
        body_parts.close()
    store.engine.dispose()
    assert answer["status"] == "200 OK", body
    return json.loads(body)


def _path_pattern(template: str) -> re.Pattern[str]:
    """A README mention of ``template``: ``{x}`` may be written ``<x>`` or a concrete id."""
    parts = re.split(r"\{[^}]+\}", template)
    body = r"[^/\s'\"`?]+".join(re.escape(part) for part in parts)
    return re.compile(rf"(?:localhost:\d+|[\s'\"`(]|^){body}(?=[\s'\"`?|)]|$)", re.M)


def test_the_openapi_document_is_valid_openapi_3_1(openapi: dict[str, object]) -> None:
    validator_module = pytest.importorskip("openapi_spec_validator")
    assert str(openapi["openapi"]).startswith("3.1")
    validator_module.validate(openapi, cls=validator_module.OpenAPIV31SpecValidator)


def test_every_openapi_operation_has_a_summary_and_json_errors(openapi: dict[str, object]) -> None:
    problems = []
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if not operation.get("summary"):
                problems.append(f"{method.upper()} {path}: no summary")
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if int(status) >= 400 and "error" not in schema.get("required", []):
                    problems.append(f"{method.upper()} {path} {status}: not an {{'error'}} body")
    assert not problems, problems


def test_every_openapi_path_is_shown_in_the_readme_http_api_section(
        openapi: dict[str, object]) -> None:
    section = _section("HTTP API")
    missing = [path for path in openapi["paths"] if not _path_pattern(path).search(section)]
    assert not missing, f"README.md's HTTP API section never shows: {missing}"


def test_every_path_the_readme_http_api_section_shows_is_served(
        openapi: dict[str, object]) -> None:
    shown = set(re.findall(r"localhost:\d+(/[^\s'\"`?|)]*)", _section("HTTP API")))
    patterns = [_path_pattern(path) for path in openapi["paths"]]
    unknown = sorted(path for path in shown if not any(p.search(f" {path} ") for p in patterns))
    assert not unknown, f"README.md shows paths the server does not describe: {unknown}"
