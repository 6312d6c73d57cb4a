"""Regenerate the Python stubs in stellar_payouts_pb/ from proto/.

Reproducible: same grpcio-tools, same output. CI runs `python scripts/gen_protos.py --check`
and fails when the committed stubs differ from what the protos generate.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = "stellar_payouts_pb"


def generate(out_dir: Path) -> None:
    # Copy the protos under a folder named after the Python package so generated imports
    # read `from stellar_payouts_pb.payout.v1 import ...` while buf keeps its package layout.
    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging) / PACKAGE
        shutil.copytree(PROTO_ROOT, staged)
        for proto in staged.rglob("*.proto"):
            text = proto.read_text()
            text = text.replace('import "payout/', f'import "{PACKAGE}/payout/')
            text = text.replace('import "signer/', f'import "{PACKAGE}/signer/')
            proto.write_text(text)
        protos = sorted(str(p.relative_to(staging)) for p in staged.rglob("*.proto"))
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{staging}",
            f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
            *protos,
        ]
        subprocess.run(cmd, check=True)  # noqa: S603
    pkg = out_dir / PACKAGE
    for folder in [pkg, *[p for p in pkg.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the stubs are stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / PACKAGE
        current = ROOT / PACKAGE
        if args.check:
            stale = _differences(fresh, current)
            if stale:
                print("stale stubs (run python scripts/gen_protos.py):", *stale, sep="\n  ")
                return 1
            print("generated stubs are up to date")
            return 0
        if current.exists():
            shutil.rmtree(current)
        shutil.copytree(fresh, current)
        print(f"wrote {current.relative_to(ROOT)}")
    return 0


def _differences(fresh: Path, current: Path) -> list[str]:
    fresh_files = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    current_files = {
        p.relative_to(current) for p in current.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    diff = sorted(str(p) for p in fresh_files ^ current_files)
    diff += sorted(
        str(p) for p in fresh_files & current_files
        if not filecmp.cmp(fresh / p, current / p, shallow=False)
    )
    return diff


if __name__ == "__main__":
    sys.exit(main())
