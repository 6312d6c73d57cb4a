"""Trust boundaries, checked on the source: no key material path into the payout process."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[str(path.relative_to(ROOT))] = names
    return found


def test_signer_service_never_imports_payout_service():
    offenders = {
        path: sorted(n for n in names if n.split(".")[0] == "payout_service")
        for path, names in imported_modules("signer_service").items()
    }
    assert {p: n for p, n in offenders.items() if n} == {}


def test_payout_service_imports_no_signing_backend_or_keypair():
    forbidden = ("signer_service", "pkcs11", "stellar_sdk.Keypair", "stellar_sdk.keypair")
    offenders = {
        path: sorted(n for n in names if n.startswith(forbidden))
        for path, names in imported_modules("payout_service").items()
    }
    assert {p: n for p, n in offenders.items() if n} == {}


def test_payout_service_never_calls_sign():
    calls = []
    for path in (ROOT / "payout_service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("sign", "sign_decorated", "sign_hashx"):
                    calls.append(f"{path.name}:{node.lineno}")
    assert calls == []


# ---- layers ------------------------------------------------------------------------------------
# core (pure) < adapters (I/O) < app (use cases, loops) < api (the gRPC edge) / cli (payoutctl);
# main and wiring compose them. SHARED modules are configuration and observability that every
# layer above core may use.
LAYERS = ("core", "adapters", "app", "api", "cli")
SHARED = {"config", "logs", "metrics", "tracing", "failpoints"}
ALLOWED = {
    "core": {"core"},
    "adapters": {"core", "adapters", *SHARED},
    "app": {"core", "adapters", "app", *SHARED},
    "api": {"core", "adapters", "app", "api", *SHARED},
    "cli": {"core", "adapters", "app", "api", "cli", *SHARED},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _payout_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported payout_service module, whether imported inside a function) for one file."""
    tree = ast.parse(path.read_text())
    in_function: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function |= set(ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from payout_service import metrics` names a module; `from x.y import Name` x.y.
            names = ([f"{node.module}.{alias.name}" for alias in node.names]
                     if node.module == "payout_service" else [node.module])
        else:
            continue
        found += [(n, node in in_function) for n in names if n.startswith("payout_service.")]
    return found


def _part(module: str) -> str:
    """The layer of payout_service.<layer>.x, or the shared/top-level module's own name."""
    rest = module.removeprefix("payout_service.")
    if rest in SHARED:
        return rest
    return rest.split(".")[0]


def layer_violations() -> list[str]:
    problems = []
    for path in sorted((ROOT / "payout_service").rglob("*.py")):
        importer = _module_name(path)
        layer = _part(importer)
        for imported, deferred in _payout_imports(path):
            target = _part(imported)
            if deferred:
                problems.append(f"{importer}: function-level import of {imported}")
            if layer in ALLOWED and target not in ALLOWED[layer]:
                problems.append(f"{importer} ({layer}) imports {imported}")
            elif layer in SHARED and target in {"app", "api", "cli", "main", "wiring"}:
                problems.append(f"{importer} (shared) imports {imported}")
            elif target in {"main", "wiring"} and layer not in {"main", "wiring", "__main__"}:
                problems.append(f"{importer} imports the composition root {imported}")
    return problems


def test_each_layer_imports_only_the_layers_below_it_and_nothing_is_imported_late():
    # core imports only core; adapters only core and the shared modules; app never api or
    # cli; nothing below the gRPC edge imports it. A function-level import would hide a cycle.
    assert layer_violations() == []


def test_every_module_of_payout_service_sits_in_a_layer_or_is_named_at_the_top():
    # The package itself, programs/ (which keeps only settings.py) and the composition root.
    top = {"payout_service", "programs", "__main__", "main", "wiring", *SHARED}
    stray = [
        _module_name(path) for path in (ROOT / "payout_service").rglob("*.py")
        if _part(_module_name(path)) not in (*LAYERS, *top)
    ]
    assert stray == []
