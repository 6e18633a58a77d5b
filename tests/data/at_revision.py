"""Running a reference recorder with ``detr_core`` as it was at a past revision.

``git archive`` exports ``detr_core`` of the revision to a temporary folder; the recorder script
runs again there (``--here``) with that folder first on the path, and prints JSON, which comes
back with the revision added as ``_revision``. The test beside each recorder computes the same
with the current code and compares.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(script: str, default_rev: str, record: Callable[[], dict]) -> int:
    """The command line of a recorder ``script``: ``[--rev REV]`` prints the reference of REV."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rev", default=default_rev)
    ap.add_argument("--here", action="store_true", help="record the working tree instead (internal)")
    args = ap.parse_args()
    if args.here:
        import detr_core

        assert detr_core.__file__.startswith(os.environ.get("PYTHONPATH", str(ROOT))), detr_core.__file__
        print(json.dumps(record()))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev, "detr_core"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": tmp}  # the exported detr_core comes first on the path
        out = subprocess.run([sys.executable, script, "--here"], check=True, stdout=subprocess.PIPE, text=True,
                             cwd=tmp, env=env).stdout
    data = json.loads(out)
    data["_revision"] = args.rev
    print(json.dumps(data, indent=1))
    return 0
