"""The operator console in a real browser (headless Chromium from the Debian packages, driven by selenium): during a
simulated episode the page updates live, "End episode" ends it, "Success" labels it, and the store has that outcome.

``scripts/setup.sh`` installs ``chromium`` and ``chromium-driver``. Set ``VIVARL_CONSOLE_SCREENSHOT=<png>`` to keep
a screenshot of the page while it asks for the outcome (the README's comes from here).
"""

from __future__ import annotations

import os
import shutil

import pytest

from replay import Outcome, ReplayStore
from robot_io import RobotConfig, SimBoxConfig

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TOKEN = "browser-token"


def chromium() -> webdriver.Chrome:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, (
        "install the browser: apt-get install chromium chromium-driver (scripts/setup.sh)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def test_an_operator_ends_and_labels_an_episode_in_the_browser(tmp_path, start_arm, operator_settings):
    robot = RobotConfig(
        type="sim_box",
        name="sim0",
        # A long episode: the expert stalls, so that it is still running when the page loads.
        sim_box=SimBoxConfig(image_height=64, image_width=64, max_steps=100_000),
    )
    robot.sim_box.expert.stall_prob = 1.0
    settings = operator_settings(robot, TOKEN, outcome_timeout_s=120.0)
    arm = start_arm(settings, "demo", [5])
    browser = chromium()
    try:
        browser.get(arm.worker.info()["console_url"])
        wait = WebDriverWait(browser, 60)
        state = browser.find_element(By.ID, "state")
        wait.until(lambda _: "running" in state.text and "step" in state.text)

        def steps() -> int:
            return int(state.text.split("| step ")[1].split()[0])

        first = steps()
        wait.until(lambda _: steps() > first + 5)  # live: the websocket keeps the page up to date
        wait.until(lambda _: browser.find_elements(By.ID, "cam-front"))
        browser.find_element(By.ID, "end").click()
        wait.until(lambda _: "success? (s/f)" in state.text)
        if os.environ.get("VIVARL_CONSOLE_SCREENSHOT"):
            browser.save_screenshot(os.environ["VIVARL_CONSOLE_SCREENSHOT"])
        browser.find_element(By.ID, "success").click()
        arm.join()
    finally:
        browser.quit()
    (summary,) = arm.done
    meta = ReplayStore.open(settings.store_url).record(summary["episode_id"]).meta
    assert meta.outcome is Outcome.SUCCESS and meta.labelled_by == "operator-console"
    assert summary["steps"] < robot.sim_box.max_steps
