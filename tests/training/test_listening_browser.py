"""The built listening-test page in a real headless Chromium (Debian's chromium + chromium-driver, Selenium):
loaded from the file system and from `fxmix listen serve`, playback started, switching checked to keep the
playback position (the audio the page outputs is matched against the stimuli), sliders moved by key presses,
every trial completed, and the results JSON compared with what was set."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fxmix.training.listening.build import build_test, read_key
from fxmix.training.listening.server import make_server
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from support.listening import make_saved_audio

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    "--disable-component-update --disable-sync --autoplay-policy=no-user-gesture-required --window-size=1200,900"
).split()

# Where the page's output (its analyser, after the gain nodes) is found in the selected stimulus: the offset of
# the analyser's last 2048 samples in the looped stimulus (0.5 (L+R)), searched over the whole loop.
LOCATE_JS = """
const api = window.fxlisten, st = api.state(), an = api.analyser(), ctx = api.context();
const x = new Float32Array(an.fftSize); an.getFloatTimeDomainData(x);
const now = ctx.currentTime;  // read with the samples, before the search below takes its time
const buf = api.buffer(st.selected), n = buf.length, L = buf.getChannelData(0), R = buf.getChannelData(1);
const y = new Float32Array(2 * n);
for (let i = 0; i < 2 * n; i++) y[i] = 0.5 * (L[i % n] + R[i % n]);
let ex = 0; for (const v of x) ex += v * v;
let best = -2, at = 0;
for (let off = 0; off < n; off += 1) {
  let xy = 0, yy = 0;
  for (let k = 0; k < x.length; k += 4) { xy += x[k] * y[off + k]; yy += y[off + k] * y[off + k]; }
  const c = xy / Math.sqrt(ex / 4 * yy + 1e-20);
  if (c > best) { best = c; at = off; }
}
const end = ((at + x.length) % n) / ctx.sampleRate;
return {corr: best, end_s: end, position: st.position, dur: n / ctx.sampleRate,
        sources: st.sources, now: now};
"""


TRIAL_SHOWN_JS = """
const t = window.FXLISTEN_TEST.trials[arguments[0]], b = document.querySelector(".stim");
return window.fxlisten.state().index === arguments[0] && b !== null && b.dataset.id === t.stimuli[0];
"""


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("listen_browser")
    src = make_saved_audio(base / "saved", n_songs=2, seconds=2.5)
    return build_test(src, base / "test", excerpt_s=2.0, seed=4, progress=False)


@pytest.fixture
def driver(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    d = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    yield d
    d.quit()


def wrapped(a: float, b: float, period: float) -> float:
    d = abs(a - b) % period
    return min(d, period - d)


def check_switch_keeps_position(d, first, second) -> None:
    """Play A for a while, switch to B: the output is B at the running position, no source restarted."""
    first.click()
    time.sleep(1.0)
    before = d.execute_script(LOCATE_JS)
    assert before["corr"] > 0.98, before
    second.click()
    time.sleep(0.1)
    after = d.execute_script(LOCATE_JS)
    assert after["corr"] > 0.98, after
    assert after["sources"] == before["sources"], "switching restarted the sources"
    print(
        f"switch: A at {before['end_s']:.3f} s (page clock {before['position']:.3f}), B at {after['end_s']:.3f} s "
        f"(page clock {after['position']:.3f}), correlation {after['corr']:.4f}"
    )
    elapsed = after["now"] - before["now"]
    expected = (before["end_s"] + elapsed) % after["dur"]
    # the audio thread renders ahead of / behind the context clock by some 0.1 s on a loaded machine
    assert wrapped(after["end_s"], expected, after["dur"]) < 0.25, (before, after)
    assert wrapped(after["end_s"], after["position"], after["dur"]) < 0.25, after
    # a restart of B would sound from its start (< 0.3 s in), not ~1.1 s in where A had got to
    assert 0.6 < after["end_s"] < 1.7, after


def rate(d, slider, value: int) -> None:
    slider.send_keys(Keys.HOME + Keys.ARROW_UP * value)
    assert int(slider.get_attribute("value")) == value


def complete_test(d, url: str) -> dict:
    """Go through every trial; returns {trial: {stimulus: {attribute: rating set}}}."""
    d.get(url)
    d.find_element(By.ID, "participant").send_keys("anna")
    d.find_element(By.ID, "start").click()
    wait = WebDriverWait(d, 30)
    wait.until(ec.visibility_of_element_located((By.ID, "trial")))
    n_trials = d.execute_script("return window.FXLISTEN_TEST.trials.length")
    expected = {}
    for i in range(n_trials):
        wait.until(lambda d, i=i: d.execute_script(TRIAL_SHOWN_JS, i))
        trial = d.execute_script(f"return window.FXLISTEN_TEST.trials[{i}]")
        buttons = d.find_elements(By.CSS_SELECTOR, ".stim")
        assert [b.text for b in buttons] == ["A", "B", "C"]
        if i == 1:
            check_switch_keeps_position(d, buttons[0], buttons[1])
        for b in buttons:
            b.click()
        ratings = {}
        for k, s in enumerate(d.find_elements(By.CSS_SELECTOR, "#rate input[type=range]")):
            value = (17 * k + 29 * i + 3) % 101
            rate(d, s, value)
            ratings.setdefault(s.get_attribute("data-stim"), {})[s.get_attribute("data-attr")] = value
        expected[trial["id"]] = ratings
        wait.until(ec.element_to_be_clickable((By.ID, "next"))).click()
    wait.until(ec.visibility_of_element_located((By.ID, "done")))
    return expected


def test_page_from_file_system(test_dir, driver):
    expected = complete_test(driver, (test_dir / "page" / "index.html").as_uri())
    text = driver.execute_async_script(
        "const done = arguments[0]; fetch(window.fxlisten.downloadUrl()).then(r => r.text()).then(done);"
    )
    res = json.loads(text)
    key = read_key(test_dir / "key.json")
    assert res["test_id"] == key["test_id"] and res["participant"] == "anna"
    assert [t["id"] for t in res["trials"]] == [t["id"] for t in key["trials"]]
    assert {t["id"]: t["ratings"] for t in res["trials"]} == expected
    assert driver.find_element(By.ID, "download").get_attribute("download") == "results-anna.json"


def test_page_served_posts_results(test_dir, driver):
    server = make_server(test_dir, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with pytest.raises(urllib.error.HTTPError) as err:  # the key is never served
            urllib.request.urlopen(url + "../key.json")
        assert err.value.code == 404
        expected = complete_test(driver, url)
        WebDriverWait(driver, 10).until(
            lambda d: d.execute_script("return window.fxlisten.posted()") is not None
        )
        assert driver.execute_script("return window.fxlisten.posted()") is True
        (saved,) = (test_dir / "results").glob("anna-*.json")
        res = json.loads(saved.read_text())
        assert {t["id"]: t["ratings"] for t in res["trials"]} == expected
        stranger = json.dumps({**res, "test_id": "0" * 16}).encode()
        request = urllib.request.Request(url + "results", data=stranger, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request)
        assert err.value.code == 409
    finally:
        server.shutdown()
        server.server_close()
        for f in (test_dir / "results").glob("*.json"):
            f.unlink()
