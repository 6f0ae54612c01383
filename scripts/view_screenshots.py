"""Screenshots of `amc view` for the README: build the quickstart, open it in headless chromium, save each page.

    python scripts/view_screenshots.py            # writes docs/images/view_{overview,rows,row}.png

Needs Debian's chromium and chromium-driver (scripts/test.sh installs them) and selenium (the test extra).
"""

from __future__ import annotations

import io
import os
import tempfile
import urllib.parse
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from amc.config import load_config
from amc.engine.runner import Runner
from amc.view import ViewSource, start

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1100,760",
)


def main() -> None:
    os.environ["SE_OFFLINE"] = "true"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(ROOT / "pipelines" / "quickstart.yaml", [f"run_dir={tmp}/quickstart"])
        Runner(cfg, show_progress=False).build("filter")
        src = ViewSource(cfg.run_path)
        server, _ = start(src)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in (*FLAGS, f"--user-data-dir={tmp}/profile"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            dropped = src.page(src_query(stage="filter", status="dropped", q="too_few"), 0, 1)[1][0]
            pages = {  # name: (path, height in pixels; None: the whole page)
                "overview": ("", 1150),
                "rows": ("rows?stage=filter&status=dropped", 640),
                "row": (
                    "row?" + urllib.parse.urlencode({"id": dropped["id"], "stage": "filter", "part": "dropped"}),
                    None,
                ),
            }
            OUT.mkdir(parents=True, exist_ok=True)
            for name, (path, height) in pages.items():
                driver.set_window_size(1100, 800)
                driver.get(server.url + path)
                full = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1100, min(full, 1800) if height is None else height)
                image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
                small = image.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
                small.save(OUT / f"view_{name}.png", optimize=True)
                print(f"{OUT / f'view_{name}.png'}: {(OUT / f'view_{name}.png').stat().st_size // 1024} KiB")
        finally:
            driver.quit()
            server.shutdown()


def src_query(**filters: str):
    from amc.view.index import Query

    return Query(**filters)


if __name__ == "__main__":
    main()
