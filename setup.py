"""Build hook: the console's chart library is fetched from npm before the package is built.

`pyproject.toml` declares the package; this only makes `pip install .` (and building a wheel)
from a clone run `scripts/build-console` when `src/pinbase/http/console/vendor/` is empty, so
that an installed pinbase always ships every asset of the console. It runs before setuptools
looks for packages, since the vendor folder is one of them.
"""

import subprocess
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
VENDOR = ROOT / "src" / "pinbase" / "http" / "console" / "vendor" / "uPlot.iife.min.js"

if not VENDOR.exists():
    subprocess.run([str(ROOT / "scripts" / "build-console")], check=True, cwd=ROOT)

setup()
