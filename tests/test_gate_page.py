"""The gate page in a real headless Chromium: it loads with no console error and no network
request, and choosing another unit recolours the text. A screenshot goes to test-artifacts/."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from gatedrnn.tasks.charlm import CharLM, Vocabulary
from gatedrnn.viz.heatmaps import capture_text
from gatedrnn.viz.page import gate_page, text_features

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TEXT = 'def f(x):\n    s = "a (b)"\n    return [x, 2]\n'


def test_text_features():
    features = text_features('a "b" (c\nd)')
    assert features["inside quotes"][:6] == [0, 0, 1, 1, 0, 0]   # the opening quote counts
    assert features["inside brackets"][6:9] == [1, 1, 1]
    assert features["after a newline"][9] == 1 and features["position in line"][9] == 0


@pytest.fixture
def page(tmp_path):
    torch.manual_seed(0)
    vocab = Vocabulary.of(TEXT)
    model = CharLM(len(vocab), "lstm", hidden_size=12, num_layers=2, embedding_size=6)
    return gate_page(capture_text(model, vocab, TEXT), tmp_path / "gates.html")


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="Chromium is not installed")
def test_page_in_headless_chromium(page):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                 f"--user-data-dir={page.parent / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER),
                              options=options)
    try:
        driver.get(page.as_uri())
        colours = "return [...document.querySelectorAll('#text span')].map(s => s.style.backgroundColor)"
        before = driver.execute_script(colours)
        assert len(before) == len(TEXT) and all(before)
        driver.execute_script("const u = document.getElementById('unit'); u.value = 3;"
                              "u.dispatchEvent(new Event('input'));")
        after = driver.execute_script(colours)
        assert after != before, "choosing another unit must recolour the text"
        driver.execute_script("document.querySelector('tr.pick').click()")
        ranked = driver.execute_script(
            "return [document.getElementById('layer').value, document.getElementById('gate').value,"
            " document.getElementById('unit').value]")
        first = driver.execute_script("return DATA.ranking[0]")
        assert ranked == [str(first["layer"]), first["gate"], str(first["unit"])]
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "gates_page.png"))

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        urls = {m["params"]["request"]["url"] for m in requests
                if m["method"] == "Network.requestWillBeSent"}
        assert page.as_uri() in urls
        # (chrome:// URLs are the browser's own start page, before the page loads)
        network = {u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss")}
        assert network == set(), f"the page asked the network for {network}"
    finally:
        driver.quit()
