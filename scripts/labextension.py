"""Build the JupyterLab extension (extensions/) into the package, or check that the committed build is current.

The built bundle (r1v4_nb/labextension/) is committed, so a wheel, `pip install` and a machine without node
get the extension with no build step. It records the sha256 of the sources it was built from
(r1v4_nb/labextension/sources.sha256): `check` fails when the sources changed without a rebuild, and
`build --if-stale` (run by `make setup`) rebuilds only then, and only where node and npm exist.

  python scripts/labextension.py check             exit 1 when the bundle is older than the sources
  python scripts/labextension.py build [--if-stale] npm ci, tsc, jupyter labextension build, record the digest
  python scripts/labextension.py develop            link the bundle into this environment and enable the
                                                    server extension (what a wheel install does with its data
                                                    files; setuptools' editable installs leave those out)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "extensions"
OUT = ROOT / "r1v4_nb" / "labextension"
DIGEST = OUT / "sources.sha256"
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "install.json", "src", "style")


def source_files() -> list[Path]:
    """The files the bundle is built from, in a fixed order."""
    files: list[Path] = []
    for name in SOURCES:
        p = SRC / name
        files.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
    return files


def sources_digest() -> str:
    h = hashlib.sha256()
    for f in source_files():
        h.update(f.relative_to(SRC).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def recorded_digest() -> str | None:
    return DIGEST.read_text().strip() if DIGEST.is_file() else None


def is_current() -> bool:
    return (OUT / "package.json").is_file() and recorded_digest() == sources_digest()


def _run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def build() -> None:
    """npm ci (when node_modules is missing or older than the lock), tsc, the labextension build."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("labextension: npm not found; install node and npm to rebuild extensions/ "
                         "(the committed build in r1v4_nb/labextension works without them)")
    lock = SRC / "package-lock.json"
    stamp = SRC / "node_modules" / ".package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        _run([npm, "ci", "--no-audit", "--no-fund"], SRC)
    _run([str(SRC / "node_modules" / ".bin" / "tsc")], SRC)
    import jupyterlab

    core = Path(jupyterlab.__file__).parent / "staging" / "package.json"  # the JupyterLab installed here
    if OUT.exists():
        shutil.rmtree(OUT)  # no stale hashed chunks left behind
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    print("+ jupyter labextension build", flush=True)
    subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "build", "--core-package-file", str(core),
                    str(SRC)], cwd=SRC, check=True, env=env)
    DIGEST.write_text(sources_digest() + "\n")
    print(f"labextension: built {OUT.relative_to(ROOT)}")


def develop() -> None:
    """share/jupyter/labextensions/r1v4-nb -> the package's bundle; the server extension's config file."""
    prefix = Path(sys.prefix)
    link = prefix / "share" / "jupyter" / "labextensions" / "r1v4-nb"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(OUT, target_is_directory=True)
    conf = prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "r1v4_nb.json"
    conf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "jupyter-config" / "jupyter_server_config.d" / "r1v4_nb.json", conf)
    print(f"labextension: {link} -> {OUT.relative_to(ROOT)}; server extension enabled in {conf.parent}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="exit 1 when the committed bundle was not built from the current sources")
    b = sub.add_parser("build", help="rebuild the bundle from extensions/")
    b.add_argument("--if-stale", action="store_true",
                   help="only when the sources changed since the last build, and only where npm exists")
    sub.add_parser("develop", help="link the bundle into this environment and enable the server extension")
    args = ap.parse_args(argv)
    if args.cmd == "develop":
        develop()
        return 0
    if args.cmd == "check":
        if is_current():
            print("labextension: r1v4_nb/labextension is built from the current extensions/ sources")
            return 0
        print("labextension: r1v4_nb/labextension is older than extensions/; run 'make extension'", file=sys.stderr)
        return 1
    if args.if_stale and is_current():
        print("labextension: up to date")
        return 0
    if args.if_stale and shutil.which("npm") is None:
        print("labextension: sources changed but npm is missing; keeping the committed build", file=sys.stderr)
        return 0
    try:
        build()
    except subprocess.CalledProcessError as exc:
        print(f"labextension: build failed ({exc.cmd[0]} exited {exc.returncode})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
