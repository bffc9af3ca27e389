"""The reader's viewer in a real headless Chromium: open a packet from disk, answer every case by keyboard and
by mouse, reload (answers persist), export the CSV download and score it. Set SYNTHSCAN_UPDATE_SCREENSHOT=1
to refresh docs/reader_viewer.png."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reader_study.key import read_key
from reader_study.packet import StudyCase, StudySettings, make_study
from reader_study.responses import read_responses
from reader_study.scoring import ReadMatrix, score

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "reader_viewer.png"
KEYS = {"normal": ["n"], "metastasis": ["m"], "amyloidosis": ["a", "a", "a"]}   # A, then grade 1, then 2


@pytest.fixture
def study(tmp_path, bone_scan):
    rng = np.random.default_rng(2)
    plan = [("normal", None), ("metastasis", None), ("amyloidosis", 2)] * 2
    cases = [StudyCase(f"study-{i}", i % 2 == 1, condition, grade) for i, (condition, grade) in enumerate(plan)]
    scans = {c.study_id: bone_scan(rng, lesions=8 if c.condition == "metastasis" else 0,
                                       heart=1.5 if c.condition == "amyloidosis" else 0.0) for c in cases}
    made = make_study(cases, lambda c: scans[c.study_id], tmp_path / "study", StudySettings(n_cases=6, n_readers=2),
                      seed=11)
    return made, read_key(made.key)


def _canvas_mean(page) -> float:
    return page.evaluate("""() => {
        const c = document.querySelector('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s / (d.length / 4); }""")


def test_read_a_packet_offline_persist_export_and_score(browser, study, tmp_path):
    made, key = study
    packet = key.packets[f"{key.study_id}-r1"]
    truth = key.truth
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    url = made.packets[0].resolve().as_uri()
    page.goto(url)
    assert page.is_visible("#help")                                # instructions on first opening
    page.keyboard.press("r")                                       # no answers behind the instructions
    assert page.get_attribute('button[data-value="real"]', "aria-pressed") == "false"
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")
    assert page.inner_text("#progress-text") == "0 / 6 answered"
    plain = _canvas_mean(page)
    assert plain < 250                                             # the scan is drawn
    page.keyboard.press("[")
    page.keyboard.press("[")
    assert _canvas_mean(page) < plain                              # narrower window: darker uptake
    width = page.evaluate("() => document.querySelector('canvas').getBoundingClientRect().width")
    page.keyboard.press("+")
    page.keyboard.press("+")
    assert page.evaluate("() => document.querySelector('canvas').getBoundingClientRect().width") == \
        pytest.approx(1.5 * width, abs=2)                          # zoom 1x -> 1.5x
    page.keyboard.press("0")
    assert _canvas_mean(page) == pytest.approx(plain)

    expected_correct = 0
    for position, case_id in enumerate(packet.case_ids):
        assert page.inner_text("#case-id") == case_id
        synthetic = bool(truth.loc[case_id, "synthetic"])
        right = position % 3 != 2                                  # answer 4 of 6 correctly on purpose
        expected_correct += right
        call_synthetic = synthetic if right else not synthetic
        if position == 1:                                          # one case by mouse
            page.click(f'button[data-field="judged_source"][data-value="{"synthetic" if call_synthetic else "real"}"]')
            page.click('button[data-field="diagnosis"][data-value="metastasis"]')
            page.click('button[data-field="quality"][data-value="5"]')
            page.click('button[data-field="confidence"][data-value="1"]')
        else:
            page.keyboard.press("s" if call_synthetic else "r")
            for key_name in KEYS[truth.loc[case_id, "condition"]]:
                page.keyboard.press(key_name)
            page.keyboard.press("Digit3")
            page.keyboard.press("Shift+Digit4")
        assert "answered" in page.inner_text("#case-status")
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#progress-text") == "6 / 6 answered"
    page.click("#navigator span >> nth=0")
    if os.environ.get("SYNTHSCAN_UPDATE_SCREENSHOT"):
        page.click("#navigator span >> nth=2")
        page.screenshot(path=str(SCREENSHOT))
        page.click("#navigator span >> nth=0")

    page.reload()                                                  # answers survive a reload (localStorage)
    assert not page.is_visible("#help")
    assert page.inner_text("#progress-text") == "6 / 6 answered"
    page.click("#navigator span >> nth=1")
    assert page.get_attribute('button[data-field="quality"][data-value="5"]', "aria-pressed") == "true"
    assert page.get_attribute('button[data-field="diagnosis"][data-value="metastasis"]', "aria-pressed") == "true"

    with page.expect_download() as download_info:
        page.click("#export")
    download = download_info.value
    assert download.suggested_filename == f"responses-{packet.packet_id}.csv"
    csv = tmp_path / download.suggested_filename
    download.save_as(csv)
    reads = read_responses([csv], key)
    result = score(ReadMatrix.from_frame(reads), n_boot=200)
    assert result.pooled.successes == expected_correct == 4
    grades = reads.set_index("case_id")["amyloid_grade"]
    amyloid = [c for c in packet.case_ids if truth.loc[c, "condition"] == "amyloidosis"]
    assert all(grades[c] == 2 for c in amyloid if packet.case_ids.index(c) != 1)
    seconds = pd.read_csv(csv)["seconds"]
    assert seconds.notna().all() and (seconds >= 0).all()         # time on each case is recorded

    # The second reader's packet keeps its own answers; nothing left the machine.
    other = context.new_page()
    other.goto(made.packets[1].resolve().as_uri())
    other.keyboard.press("Escape")
    assert other.inner_text("#progress-text") == "0 / 6 answered"
    assert all(u.startswith(("file://", "blob:", "data:")) for u in requests), requests
    assert errors == []
    context.close()
