"""Install the unmodified pymesos driver (tests and examples only) on Python 3.11+.

pymesos 0.3.15 depends on `http-parser` 0.9.0, whose C extension no longer compiles on
Python 3.11 (its Cython output predates 3.11), so `pip install pymesos` fails. http-parser
falls back to its own pure-Python parser (`http_parser.pyparser`) when the extension is
absent, so we install pymesos with `--no-deps`, its small pure dependencies pinned, and
http-parser's pure-Python modules from its sdist. Idempotent; run by `make test`/`make run`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

PYMESOS = "pymesos==0.3.15"
PURE_DEPS = ["six==1.17.0", "addict==2.4.0"]
HTTP_PARSER = "http-parser==0.9.0"


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], check=True)


def install_http_parser_pure() -> None:
    target = Path(sysconfig.get_paths()["purelib"]) / "http_parser"
    if (target / "pyparser.py").exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "-d", tmp, HTTP_PARSER], check=True)
        sdist = next(Path(tmp).glob("http-parser-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        source = next(Path(tmp).glob("http-parser-*/http_parser"))
        target.mkdir(parents=True, exist_ok=True)
        for module in source.glob("*.py"):
            shutil.copy(module, target / module.name)


def main() -> int:
    try:
        import pymesos  # noqa: F401
        from http_parser.http import HttpParser  # noqa: F401
        return 0
    except ImportError:
        pass
    pip("--no-deps", PYMESOS, *PURE_DEPS)
    install_http_parser_pure()
    from http_parser.http import HttpParser  # noqa: F401,F811

    return 0


if __name__ == "__main__":
    sys.exit(main())
