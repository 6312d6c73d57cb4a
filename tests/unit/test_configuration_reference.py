"""docs/configuration.md lists every environment variable the services read.

The names are found in the source of payout_service and signer_service by their shape, not by
a list kept here: arguments of reads of the environment (`os.environ.get`, `os.getenv`,
`env.get`, `env[...]`, and helpers called with the environment, `_int(env, "NAME", ...)`),
module constants named `..._ENV`, and tables of variable names (a dict whose keys are all
variable names, such as the table of renamed variables). A variable is documented when its
name, in backticks, is in the first cell of a table row of docs/configuration.md.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("payout_service", "signer_service")
REFERENCE = ROOT / "docs" / "configuration.md"
NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
# What the environment goes by in the source: a mapping passed around, or a reader of it.
ENVIRONMENT = {"env", "environ", "environment"}
READERS = {"get", "getenv", "pop", "setdefault"}


def _is_environment(node: ast.expr) -> bool:
    """`os.environ`, or a name the environment goes by."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id in ENVIRONMENT


def _names_in(node: ast.AST) -> Iterator[str]:
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str) \
                and NAME.match(child.value):
            yield child.value


def _reads_environment(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name) and func.id in ENVIRONMENT | {"getenv"}:
        return True  # env("NAME", default), getenv("NAME")
    if isinstance(func, ast.Attribute) and func.attr in READERS and (
            _is_environment(func.value) or func.attr == "getenv"):
        return True  # os.environ.get("NAME"), env.get("NAME"), os.getenv("NAME")
    return any(_is_environment(arg) for arg in call.args)  # _int(env, "NAME", ...)


def variables_read(source: str) -> set[str]:
    """Environment variable names one module reads."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _reads_environment(node):
            found.update(name for arg in node.args for name in _names_in(arg)
                         if isinstance(arg, ast.Constant))
        elif isinstance(node, ast.Subscript) and _is_environment(node.value):
            found.update(_names_in(node.slice))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and any(
                isinstance(t, ast.Name) and t.id.endswith("_ENV") for t in node.targets):
            found.update(_names_in(node.value))
        elif isinstance(node, ast.Dict) and node.keys and all(
                isinstance(k, ast.Constant) and isinstance(k.value, str) and NAME.match(k.value)
                for k in node.keys):
            found.update(_names_in(node))
    return found


def variables_of_the_services() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found |= variables_read(path.read_text())
    return found


def documented(markdown: str) -> set[str]:
    """Backticked names in the first cell of every table row."""
    names: set[str] = set()
    for line in markdown.splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def test_the_scan_finds_each_way_of_reading_the_environment():
    source = '''
import os
CONFIG_ENV = "A_CONFIG"
RENAMED = {"OLD_NAME": Renamed("NEW_NAME")}
a = os.environ.get("B_GET")
b = os.environ["C_ITEM"]
c = os.getenv("D_GETENV")
d = _int(env, "E_HELPER", 5)
e = env.get("F_MAPPING", "")
f = env("G_CALLABLE", "json")
g = os.environ.setdefault("H_DEFAULT", "NONE")
h = pb.Value("NOT_READ_STATE")
'''
    assert variables_read(source) == {
        "A_CONFIG", "OLD_NAME", "NEW_NAME", "B_GET", "C_ITEM", "D_GETENV", "E_HELPER",
        "F_MAPPING", "G_CALLABLE", "H_DEFAULT"}


def test_the_reference_is_read_from_table_rows_only():
    markdown = "| `ROW_NAME` / `OTHER_NAME` | 1 | see `NOT_A_ROW_NAME` |\n`PROSE_NAME`\n"
    assert documented(markdown) == {"ROW_NAME", "OTHER_NAME"}


def test_every_variable_the_services_read_is_in_the_configuration_reference():
    read = variables_of_the_services()
    assert {"DATABASE_URL", "PAYOUT_SOURCE_ACCOUNT", "PAYOUTS_SIGNER_CONFIG"} <= read, \
        "the scan no longer finds the services' variables"
    missing = sorted(read - documented(REFERENCE.read_text()))
    assert not missing, f"add a row to docs/configuration.md for: {', '.join(missing)}"
