"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

One test per tab performs the tab's main action and saves a full-page screenshot. Screenshots go
to $DFDET_SCREENSHOTS (default: a pytest temp folder); with DFDET_UPDATE_SCREENSHOTS=1 they are
also written to docs/screenshots/, which is how the README's images are made:

    DFDET_UPDATE_SCREENSHOTS=1 python -m pytest -m browser tests/test_browser.py
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("DFDET_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
TIMEOUT = 60_000  # ms: the first UMAP fit on a busy 2-core machine can take a while


@pytest.fixture(autouse=True)
def _gradio_tmp():
    """Overrides conftest's per-test GRADIO_TEMP_DIR: the module's one server keeps one upload folder."""
    yield


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (or set $DFDET_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    sync_api.expect.set_options(timeout=TIMEOUT)  # retrying assertions wait as long as actions do
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared, tiny_cfg, browser):
    from test_app_helpers import start_app
    tmp = tmp_path_factory.mktemp("browser")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    app, session, run, _ = start_app(tmp, shared, tiny_cfg)
    shots = Path(os.environ.get("DFDET_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    yield {"url": app.local_url, "session": session, "run": run.name, "shots": shots}
    app.close()
    mp.undo()


@pytest.fixture()
def page(browser, server):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(TIMEOUT)
    pg.goto(server["url"])
    from playwright.sync_api import expect
    expect(pg.locator("#banner")).to_contain_text("meaningless")  # tiny random backbone: labelled as such
    yield pg
    pg.close()


def shoot(page, server, name: str) -> Path:
    path = server["shots"] / f"{name}.png"
    page.mouse.move(1, 1)  # no stray hover label in the picture
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("DFDET_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)
    return path


def test_compare_upload_scores_every_method(page, server, shared):
    from playwright.sync_api import expect
    face = sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]
    page.locator("input[type=file]").first.set_input_files(str(face))  # upload triggers the analysis
    grid = page.get_by_role("grid", name="Probability per method")
    expect(grid.get_by_role("gridcell", name="(meaningless: demo)")).to_have_count(4)
    for label in ("Linear probe", "LN-tuning", "LN + Norm", "LN + Norm + SLERP"):
        expect(grid.get_by_role("gridcell", name=label, exact=True)).to_be_visible()
    expect(page.get_by_text("face found and aligned").first).to_be_visible()
    assert shoot(page, server, "compare").stat().st_size > 10_000


def _point_position(page, trace: int = 0, point: int = 0) -> tuple[float, float, str]:
    """Screen position and row of one scatter point, from plotly's own axes."""
    return page.evaluate("""([t, i]) => {
      const gd = document.querySelector('#hs-plot .js-plotly-plot');
      const fl = gd._fullLayout, tr = gd._fullData[t], r = gd.getBoundingClientRect();
      return [fl.xaxis.d2p(tr.x[i]) + fl._size.l + r.left, fl.yaxis.d2p(tr.y[i]) + fl._size.t + r.top,
              String(tr.customdata[i][0])];
    }""", [trace, point])


def test_hypersphere_hover_pick_and_slerp_path(page, server):
    from playwright.sync_api import expect
    page.get_by_role("tab", name="Hypersphere").click()
    plot = page.locator("#hs-plot .js-plotly-plot")
    expect(plot).to_be_visible()  # filled on the first visit of the tab
    expect(page.locator("#hs-plot")).to_contain_text("UMAP 2-D")
    page.wait_for_function("() => document.querySelector('#hs-plot .js-plotly-plot').__dfdet === true")
    x, y, row = _point_position(page)
    page.mouse.move(x, y)
    tip = page.locator("#dfdet-tip")
    expect(tip).to_be_visible()  # the face thumbnail on hover
    assert tip.get_attribute("src").startswith("data:image/jpeg;base64,")
    page.mouse.click(x, y)
    expect(page.locator("#hs-row input")).to_have_value(row)  # the clicked face, shown large
    rec = server["session"].run(server["run"]).predictions.iloc[int(row)]
    expect(page.get_by_text(rec["path"]).first).to_be_visible()
    page.get_by_role("button", name="Random pair").click()
    expect(page.get_by_role("spinbutton", name="Face B (row)")).not_to_have_value("")
    page.get_by_role("button", name="Draw SLERP path").click()
    expect(page.get_by_text("crosses 0.5")).to_be_visible()
    expect(page.locator("#hs-plot")).to_contain_text("SLERP path")
    shoot(page, server, "hypersphere")


def test_roc_browser_curves_and_threshold(page, server):
    from playwright.sync_api import expect
    page.get_by_role("tab", name="ROC browser").click()
    expect(page.get_by_text(re.compile(r"LN \+ Norm \+ SLERP · DFDC \(AUROC \d\.\d{3}\)"))).to_be_visible()
    conf = page.get_by_role("grid", name="Confusion counts at the threshold")
    expect(conf.get_by_role("columnheader", name="TP")).to_be_visible()
    page.get_by_role("radio", name="video").check()  # video level: the tables follow
    expect(conf.get_by_role("gridcell", name="DFDC").first).to_be_visible()
    shoot(page, server, "roc")


def test_errors_gallery_opens_a_face_in_compare(page, server):
    from playwright.sync_api import expect
    page.get_by_role("tab", name="Errors").click()
    expect(page.get_by_text("Click a face to open it in Compare")).to_be_visible()
    dis = page.locator("#er-dis")
    expect(dis.get_by_role("button", name=re.compile("Thumbnail 1 of"))).to_be_visible()
    shoot(page, server, "errors")
    dis.get_by_role("button", name=re.compile("Thumbnail 1 of")).click()
    expect(page.get_by_role("tab", name="Compare")).to_have_attribute("aria-selected", "true")
    grid = page.get_by_role("grid", name="Probability per method")
    expect(grid.get_by_role("gridcell", name="(meaningless: demo)")).to_have_count(4)


def test_about_lists_the_registry_with_exact_counts(page, server):
    from playwright.sync_api import expect
    page.get_by_role("tab", name="About").click()
    expect(page.get_by_role("cell", name="104,450").first).to_be_visible()
    expect(page.get_by_role("cell", name="2,050")).to_be_visible()
    expect(page.get_by_text("LN + Norm + SLERP").first).to_be_visible()
    shoot(page, server, "about")
