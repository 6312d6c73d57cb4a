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
