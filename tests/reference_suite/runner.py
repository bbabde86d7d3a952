"""Prepares openai-chatkit 1.6.5's own tests to run against chatkit-asgi, and runs them.

The reference's sdist ships `tests/test_*.py` but not the helpers they import.
Preparing a run:

1. fetch the sdist once (`pip download`, cached in `.cache/` at the repo root);
2. unpack its `tests/` and `pyproject.toml` (for its pytest settings) into a work dir,
   without editing a file;
3. lay our overlay over it: a root conftest that points `chatkit.*` at our modules,
   our request context, our insert-only SQLite store and our `.widget` files;
4. render the expected JSON of each `.widget` file with the real openai-chatkit (a
   subprocess where `chatkit` is the reference), so the widget tests compare our
   build against the reference's on the same input.

`python -m tests.reference_suite.runner` prints the outcome of every test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

VERSION = "1.6.5"
HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".cache"
SDIST = f"openai_chatkit-{VERSION}.tar.gz"


def fetch_sdist() -> Path:
    """The reference's sdist, downloaded once."""
    path = CACHE / SDIST
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"openai-chatkit=={VERSION}",
                "-d",
                str(CACHE),
            ],
            check=True,
        )
    return path


def prepare(workdir: Path) -> Path:
    """The reference's tests and our overlay, laid out in `workdir`."""
    prefix = f"openai_chatkit-{VERSION}/"
    with tarfile.open(fetch_sdist()) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix(prefix)
            wanted = name == "pyproject.toml" or name.startswith("tests/")
            if not wanted or not member.isfile():
                continue
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    shutil.copytree(HERE / "overlay", workdir, dirs_exist_ok=True)
    shutil.copy(HERE / "chatkit_modules.py", workdir)
    shutil.copy(ROOT / "tests" / "insert_only_store.py", workdir / "tests")
    _render_expected_widgets(workdir / "tests" / "assets" / "widgets")
    return workdir


# The data each widget file is built with in the reference's test_widgets.py.
_WIDGET_DATA_SCRIPT = """
import ast, json, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from chatkit.widgets import WidgetTemplate
folder = Path(sys.argv[1])
source = (folder.parent.parent / "test_widgets.py").read_text()
data = {"basic_root": {"name": "Harry Potter", "bio": "The boy who lived"}}
for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Tuple) and len(node.elts) == 2:
        first = node.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if (folder / (first.value + ".widget")).exists():
                data[first.value] = ast.literal_eval(node.elts[1])
for path in folder.glob("*.widget"):
    widget = WidgetTemplate.from_file(str(path.resolve())).build(data.get(path.stem))
    out = folder / (path.stem + ".json")
    out.write_text(json.dumps(widget.model_dump(exclude_none=True), indent=2))
"""


def _render_expected_widgets(folder: Path) -> None:
    # `-I` keeps the work dir (and its `chatkit` aliases) off the path: this is the
    # real openai-chatkit, installed beside us for the differential tests.
    subprocess.run(
        [sys.executable, "-I", "-c", _WIDGET_DATA_SCRIPT, str(folder)],
        check=True,
        cwd=folder,
    )


@dataclass
class Outcome:
    """What the run gave, by test id (`file::name[params]`)."""

    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Every test that was collected."""
        return len(self.passed) + len(self.failed) + len(self.skipped)


def run(workdir: Path, *pytest_args: str) -> Outcome:
    """Run the prepared suite in a fresh interpreter; the outcome of each test."""
    report = workdir / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={report}",
            # A test that waits forever (a stream that never ends) fails instead.
            "--timeout=30",
            *(pytest_args or ("tests",)),
        ],
        cwd=workdir,
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if not report.exists():  # the conftest or collection failed before any test ran
        raise RuntimeError(f"the reference suite did not run:\n{done.stdout[-4000:]}")
    return _read_report(report)


def _read_report(report: Path) -> Outcome:
    outcome = Outcome()
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        test_id = f"{module[-1] if module else ''}::{case.get('name')}"
        if module and module[-1][:1].isupper():  # a test class: file.Class
            test_id = f"{module[-2]}::{module[-1]}::{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            outcome.failed[test_id] = (problem.get("message") or "").splitlines()[0][:300]
        elif case.find("skipped") is not None:
            outcome.skipped.append(test_id)
        else:
            outcome.passed.append(test_id)
    return outcome


def main() -> None:
    """Prepare the suite in a fresh folder under `.cache/`, run it, print every failure.

    Arguments are passed to pytest (a test file, `-k ...`); `--keep` keeps the folder
    (its path is printed) to rerun tests in it by hand.
    """
    args = sys.argv[1:]
    keep = "--keep" in args
    args = [arg for arg in args if arg != "--keep"]
    CACHE.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="reference-suite-", dir=CACHE))
    try:
        outcome = run(prepare(workdir), *args)
    finally:
        if keep:
            print(f"prepared in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for test_id, message in sorted(outcome.failed.items()):
        print(f"FAILED {test_id}: {message}")
    counts = {"passed": len(outcome.passed), "failed": len(outcome.failed)}
    print(json.dumps({**counts, "skipped": len(outcome.skipped), "total": outcome.total}))


if __name__ == "__main__":
    main()
