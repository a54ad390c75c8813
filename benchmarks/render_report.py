"""Render a comparison's report.html in headless Chromium and save a screenshot to look at.

    python benchmarks/render_report.py runs/demo/ckplus [--out report.png]

Needs Debian's chromium (`apt-get install -y chromium`). Fails when the page renders blank or the
embedded plots do not decode (Chromium draws a broken image as a small icon: the page stays short).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM) if path), None)


def render(report: Path, screenshot: Path, width: int = 1200, height: int = 3400) -> dict:
    """Screenshot of the page, and how much of it is drawn (non-white rows) as a blank-page check."""
    browser = find_chromium()
    if browser is None:
        raise SystemExit("no chromium found: apt-get install -y chromium")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={screenshot}", report.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = cv2.imread(str(screenshot), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise SystemExit(f"{screenshot}: chromium wrote no readable screenshot")
    drawn_rows = np.flatnonzero((image < 250).any(axis=1))
    return {"screenshot": str(screenshot), "height": int(image.shape[0]),
            "drawn_to_row": int(drawn_rows.max()) if drawn_rows.size else 0,
            "ink_fraction": float((image < 250).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="screenshot path (default: REPORT_DIR/report.png)")
    args = parser.parse_args()
    report = args.report_dir / "report.html"
    if not report.is_file():
        raise SystemExit(f"{report}: no report here (run edgefer compare first)")
    result = render(report, args.out or args.report_dir / "report.png")
    print(result)
    # Five plots of ~400 px each under the table: a page drawn to less than 2000 px lost its plots.
    if result["drawn_to_row"] < 2000 or result["ink_fraction"] < 0.02:
        sys.exit(f"{report}: the page looks blank or its plots did not render ({result})")


if __name__ == "__main__":
    main()
