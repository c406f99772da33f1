"""Materializing one month from the Dagster UI, in a real headless Chromium, after a `make run`.

First two months are built as `make run` builds them: `dagster asset materialize` over a range,
one run for both months. Then the browser does what a user does after `make dev`: opens the asset
graph, finds the landing file and the bronze, silver and gold groups and their assets, clicks
"Materialize all…", types a third month into the partition picker, launches the run, follows the
"View" link of the confirmation and waits on the run page until the run has succeeded. Last it
opens bronze/events' Checks tab and its partitions: every built month must show its checks as
evaluated, none as "Skipped" (what a range run's checks looked like when they were recorded for no
month). Screenshots of each step are saved in the test's tmp dir.
"""

import shutil
import subprocess
import sys
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
from medallion_assets_tests.dagster_dev import PROJECT, dagster_dev, dagster_home, user_env

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Built by `make run`'s command before the UI starts; then MONTH from the UI.
RANGE = ("2019-10", "2019-11")
MONTH = "2019-12"
BUILT = (*RANGE, MONTH)
RUN_TIMEOUT = 900
BRONZE_CHECKS = ("bronze_lines_accounted_for", "bronze_rejected_share", "bronze_rows_in_line")
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


def make_run(root: Path, months: tuple[str, str]) -> None:
    """What `make run` runs once its sample months have landed: every asset over the range in
    one run, on the instance `make dev` then opens."""
    env = {**user_env(root), "DAGSTER_HOME": str(dagster_home(root))}
    dagster = str(Path(sys.executable).with_name("dagster"))
    completed = subprocess.run(
        [dagster, "asset", "materialize", "-m", "medallion_assets.definitions", "--select", "*",
         "--partition-range", f"{months[0]}...{months[1]}"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]


def check_statuses(server, asset: list[str]) -> dict[str, dict[str, str]]:
    """Per check of `asset`, each built month's status as the UI gets it from the webserver."""
    data = server.graphql(
        """query Checks($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
             ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name
               partitionStatuses { ... on AssetCheckTimePartitionStatuses {
                 ranges { startKey endKey status } } } } } } } } }""",
        {"key": {"path": asset}},
    )
    statuses: dict[str, dict[str, str]] = {}
    for check in data["assetNodeOrError"]["assetChecksOrError"]["checks"]:
        by_month = statuses.setdefault(check["name"], {})
        for r in (check["partitionStatuses"] or {}).get("ranges", []):
            for month in BUILT:
                if r["startKey"] <= month <= r["endKey"]:
                    by_month[month] = r["status"]
    return statuses


def shown(browser, text: str) -> list:
    """The visible elements whose own text is exactly `text`."""
    found = browser.find_elements(By.XPATH, f"//*[normalize-space(text())='{text}']")
    return [e for e in found if e.is_displayed()]


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

    root = tmp_path / "dev"
    landing = Path(user_env(root)["MEDALLION_LANDING_DIR"])
    for seed, month in enumerate(RANGE):
        generate_month(month, 2000, landing, seed=seed)
    make_run(root, RANGE)

    with dagster_dev(root) as server:
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

        ui_run = [r for r in server.runs() if r["runId"] == run_id]
        assert [r["status"] for r in ui_run] == ["SUCCESS"]
        assert {"key": "dagster/partition", "value": MONTH} in ui_run[0]["tags"]
        for table in (
            "bronze/events",
            "silver/events",
            "gold/revenue_by_brand",
            "gold/daily_funnel",
        ):
            months = pl.read_delta(str(server.warehouse / table), columns=["month"])["month"]
            assert {m.strftime("%Y-%m") for m in months.unique().to_list()} == set(BUILT), table

        # Each built month's checks, the range run's too, as the webserver gives them to the UI.
        statuses = check_statuses(server, ["bronze", "events"])
        for name in BRONZE_CHECKS:
            assert statuses[name] == dict.fromkeys(BUILT, "SUCCEEDED"), (name, statuses)

        # The Checks tab: each check listed, none of them "Skipped".
        browser.get(f"{server.url}/assets/bronze/events?view=checks")
        for name in BRONZE_CHECKS:
            wait.until(EC.presence_of_element_located((By.XPATH, f"//*[text()='{name}']")))
        WebDriverWait(browser, 30).until(lambda d: shown(d, "Succeeded"))
        shot("06-checks-tab")
        assert not shown(browser, "Skipped"), "a built month's check shows as Skipped"

        # The check's partitions: its bar of months, none "Skipped".
        tabs = wait.until(lambda d: shown(d, "Partitions"))
        tabs[-1].click()
        wait.until(
            EC.presence_of_element_located((By.XPATH, f"//*[contains(text(), '{RANGE[0]}')]"))
        )
        shot("07-check-partitions")
        # The bar's legend counts the months by status: the three built ones passed.
        assert shown(browser, f"Passed ({len(BUILT)})"), "not every built month shows Passed"
        assert shown(browser, "Skipped (0)"), "a built month's check shows as Skipped"

    for name in (
        "01-first-visit",
        "02-asset-graph",
        "03-partition-picker",
        "04-launched",
        "05-run-succeeded",
        "06-checks-tab",
        "07-check-partitions",
    ):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    print(f"\nscreenshots: {shots}")
