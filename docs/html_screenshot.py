"""Write docs/images/html-report.png, the README's picture of the --html page:
`graphexplain trace --html` on examples/logistic_regression.py, opened in
headless Chromium (tests/browser.py), one node of the picture clicked.

    python docs/html_screenshot.py [--out docs/images/html-report.png]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from browser import Browser, find_chromium  # noqa: E402

CLICKED = 2  # the node whose step is opened: logistic regression's matrix product


def main(argv=None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--out", default=str(REPO / "docs" / "images" / "html-report.png"), metavar="PNG")
    options = options.parse_args(argv)
    if find_chromium() is None:
        print("no chromium: install Debian's `chromium` package first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "report.html"
        subprocess.run([sys.executable, "-m", "graphexplain", "trace", "--quiet", "--out", str(Path(folder) / "out"),
                        "--html", str(page), str(REPO / "examples" / "logistic_regression.py")],
                       cwd=folder, check=True, stdout=subprocess.DEVNULL)
        with Browser.start(Path(folder), width=1280, height=860) as browser:
            browser.open(page)
            browser.click(f'.gx-picture g.node[data-gx-node="{CLICKED}"]')
            browser.evaluate("document.querySelector('#gx-c1').scrollIntoView()")
            browser.screenshot(Path(options.out))
            if browser.problems:
                print("\n".join(browser.problems), file=sys.stderr)
                return 1
    print(f"wrote {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
