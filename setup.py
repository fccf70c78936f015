"""Package data that lives outside the package: the shipped `configs/`, `search_spaces/` and `specs/` are copied
into `ups/shipped/` of a built wheel, so an installed ups runs `ups-exp run burgers` from any folder. An editable
install (`make install`) reads them from the checkout instead (ups/spec/paths.py). Everything else is in
pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("configs", "search_spaces", "specs")


class BuildPyWithShipped(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "ups" / "shipped"
        for name in SHIPPED:
            source = ROOT / name
            if not source.is_dir():
                raise SystemExit(f"setup.py: {source} is missing: build from a checkout or an sdist of ups")
            shutil.copytree(source, target / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithShipped})
