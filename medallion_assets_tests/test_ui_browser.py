"""Materializing one month from the Dagster UI, in a real headless Chromium.

The browser does what a user does after `make dev`: opens the asset graph, finds the bronze,
silver and gold groups and their assets, clicks "Materialize all…", types one month into the
partition picker, launches the run, follows the "View" link of the confirmation and waits on the
run page until the run has succeeded. Screenshots of each step are saved in the test's tmp dir.
"""

import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from medallion_assets.tools.sample_data import generate_month
from medallion_assets_tests.dagster_dev import dagster_dev

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MONTH = "2019-11"
RUN_TIMEOUT = 900
# The landing file is in the graph too, as an asset that arrives rather than one Dagster builds.
ASSET_NAMES = ("events_csv", "events", "events_rejected", "revenue_by_brand", "daily_funnel")
# The toolbar counts what "Materialize all" builds: every asset but the landing file.
MATERIALIZE_ALL = "Materialize all (5)…"


def chromium(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1920,1080",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def unfolded(icon):
    """A wait condition: the group whose fold icon is ``icon`` is no longer folded (the icon
    changed, or was replaced)."""

    def condition(driver) -> bool:
        try:
            return icon.get_attribute("aria-label") != "unfold_more"
        except StaleElementReferenceException:
            return True

    return condition


def button(text: str):
    """A button whose visible label is `text`."""
    return (By.XPATH, f"//button[normalize-space(.)='{text}' or .//*[@title='{text}']]")


@pytest.fixture
def browser(tmp_path):
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    driver = chromium(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_one_month_is_materialized_from_the_asset_graph(tmp_path, browser):
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def shot(name: str) -> None:
        browser.save_screenshot(str(shots / f"{name}.png"))

    with dagster_dev(tmp_path / "dev") as server:
        # This test launches the run itself; keep the (running by default) sensor out of it.
        assert server.stop_sensor("landing_csv_sensor") == "STOPPED"
        generate_month(MONTH, 3000, server.landing, seed=5)

        wait = WebDriverWait(browser, 120)
        browser.get(f"{server.url}/asset-groups")
        wait.until(EC.presence_of_element_located(button(MATERIALIZE_ALL)))
        shot("01-first-visit")

        # The first-visit dialog ("Join the Dagster community") covers the page; skip it.
        try:
            WebDriverWait(browser, 15).until(EC.element_to_be_clickable(button("Skip"))).click()
            wait.until(EC.invisibility_of_element_located(button("Skip")))
            print("\nfirst-visit dialog dismissed")
        except TimeoutException:
            print("\nno first-visit dialog shown")

        # The graph shows the landing file and the three layers as groups; unfold each to see its
        # assets.
        for group in ("landing", "bronze", "silver", "gold"):
            wait.until(EC.presence_of_element_located((By.XPATH, f"//*[@title='{group}']")))
        # The graph draws only what is in view, and unfolding a group moves the view: another
        # folded group may come into view as one unfolds, so each click waits for its own group.
        for _ in range(2 * 4):
            folded = browser.find_elements(By.CSS_SELECTOR, "[aria-label='unfold_more']")
            if not folded:
                break
            browser.execute_script("arguments[0].closest('div').click()", folded[0])
            WebDriverWait(browser, 30).until(unfolded(folded[0]))
        assert not browser.find_elements(By.CSS_SELECTOR, "[aria-label='unfold_more']")
        # The unfolded groups are remembered; a reload lays the graph out to fit the window.
        browser.refresh()
        for name in ASSET_NAMES:
            wait.until(EC.presence_of_element_located((By.XPATH, f"//*[text()='{name}']")))
        shot("02-asset-graph")

        # Materialize → partition picker → launch.
        wait.until(EC.element_to_be_clickable(button(MATERIALIZE_ALL))).click()
        wait.until(
            EC.presence_of_element_located(
                (By.XPATH, "//*[contains(text(), 'Launch runs to materialize 5 assets')]")
            )
        )
        picker = wait.until(
            EC.element_to_be_clickable(
                (By.XPATH, "//input[starts-with(@placeholder, 'ex: 2019-10')]")
            )
        )
        picker.click()
        picker.send_keys(MONTH, Keys.TAB)
        launch = wait.until(EC.element_to_be_clickable(button("Launch 1 run")))
        shot("03-partition-picker")
        launch.click()

        view = wait.until(
            EC.element_to_be_clickable(
                (By.XPATH, "//a[normalize-space(.)='View'][contains(@href, '/runs/')]")
            )
        )
        run_url = view.get_attribute("href")
        run_id = run_url.rstrip("/").rsplit("/", 1)[-1]
        shot("04-launched")
        view.click()

        def finished(driver):
            title = driver.title
            if "[FAILURE]" in title or "[CANCELED]" in title:
                raise AssertionError(f"the run ended: {title}\n{server.log_tail()}")
            return "[SUCCESS]" in title

        WebDriverWait(browser, RUN_TIMEOUT, poll_frequency=2).until(finished)
        wait.until(
            EC.presence_of_element_located(
                (By.XPATH, f"//*[normalize-space(.)='partition: {MONTH}']")
            )
        )
        shot("05-run-succeeded")

        [run] = server.runs()
        assert run["runId"] == run_id and run["status"] == "SUCCESS"
        assert {"key": "dagster/partition", "value": MONTH} in run["tags"]
        for table in (
            "bronze/events",
            "silver/events",
            "gold/revenue_by_brand",
            "gold/daily_funnel",
        ):
            months = pl.read_delta(str(server.warehouse / table), columns=["month"])["month"]
            assert {m.strftime("%Y-%m") for m in months.unique().to_list()} == {MONTH}, table

    for name in (
        "01-first-visit",
        "02-asset-graph",
        "03-partition-picker",
        "04-launched",
        "05-run-succeeded",
    ):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    print(f"\nscreenshots: {shots}")
