"""Tests of reports: the charts' arithmetic, simulation files read back, the CLI on every
bundled trace, and the page opened in a real browser (headless Chromium)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from optimizer import load_trace, parse_replicas, simulate, summary, write_simulation
from optimizer.reporting.report import stack_rows, step_average
from optimizer.serving.results import busy_intervals, read_simulation

ROOT = Path(__file__).parent.parent.parent
TRACES = ROOT / "traces"
#: Bundled traces that declare shared prompt prefixes (compare adds the cache-affinity router).
SHARED_PREFIXES = ("gsm8k_rollouts_16.csv", "sharegpt_conversations_mooncake.jsonl")
BUNDLED = sorted(p.name for p in TRACES.iterdir() if p.suffix in (".csv", ".jsonl"))
runner = CliRunner()


def test_stack_rows_never_overlap_and_use_as_many_rows_as_the_deepest_overlap():
    rng = np.random.default_rng(0)
    start = rng.uniform(0, 100, 300)
    finish = start + rng.uniform(0.1, 20, 300)
    rows = stack_rows(start, finish)
    for row in np.unique(rows):
        mine = np.argsort(start[rows == row])
        s, f = start[rows == row][mine], finish[rows == row][mine]
        assert (s[1:] >= f[:-1]).all()
    points = np.sort(start)
    deepest = max(int(((start <= t) & (finish > t)).sum()) for t in points)
    assert rows.max() + 1 == deepest


def test_step_average_and_busy_intervals_by_hand():
    # Two requests: [0, 4] and [2, 6]; then [8, 9]. Bins of 2 s over [0, 10].
    start, finish = np.array([0.0, 2.0, 8.0]), np.array([4.0, 6.0, 9.0])
    edges = np.arange(0.0, 11.0, 2.0)
    assert step_average(start, finish, edges).tolist() == [1.0, 2.0, 1.0, 0.0, 0.5]
    begins, ends = busy_intervals(start, finish)
    assert begins.tolist() == [0.0, 8.0] and ends.tolist() == [6.0, 9.0]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    requests = load_trace(TRACES / "sharegpt_batch_2k.csv").requests.head(400).reset_index(drop=True)
    cluster = parse_replicas("h100-tp4:2,a100-tp4:2")
    result = simulate(requests, cluster, dispatch="least-work", policy="vllm")
    path = tmp_path_factory.mktemp("sim") / "least-work.csv"
    write_simulation(result, path)
    return requests, cluster, result, path


def test_a_simulation_file_reads_back_with_the_simulators_figures(simulated):
    """The report rebuilds busy time from the per-request file; it must match the engines'."""
    requests, cluster, result, path = simulated
    read = read_simulation(path, cluster)
    original, rebuilt = summary(result, requests), summary(read, requests)
    assert rebuilt["utilization"] == pytest.approx(original["utilization"], rel=1e-6)
    assert rebuilt["makespan_s"] == pytest.approx(original["makespan_s"], abs=1e-6)
    assert rebuilt["e2e_s"] == pytest.approx(original["e2e_s"], abs=1e-5)
    assert list(read.requests["request_id"]) == list(result.requests["request_id"])


def _head(name: str, lines: int, folder: Path) -> Path:
    """The first lines of a bundled trace (header included), as a small trace of the same format."""
    path = folder / name
    with open(TRACES / name, encoding="utf-8") as source:
        path.write_text("".join(line for _, line in zip(range(lines), source)), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", BUNDLED)
def test_compare_and_report_work_on_every_bundled_trace(name, tmp_path):
    trace = _head(name, 121, tmp_path)
    fleet = ["--replicas", "h100-tp4:1,a100-tp4:2"]
    result = runner.invoke(app, ["compare", str(trace), *fleet, "--time-limit", "2", "--length-error", "0.3",
                                 "--out", str(tmp_path / "c.csv"), "--report", str(tmp_path / "compare"), "--quiet"])
    assert result.exit_code == 0, result.stderr
    pages = (tmp_path / "compare" / "index.html").read_text()
    policies = len(pd.read_csv(tmp_path / "c.csv"))  # 6, and the cache router on traces with shared prefixes
    assert policies == (7 if name in SHARED_PREFIXES else 6)
    assert pages.count("<img src=\"data:image/png;base64,") == 1 + 2 * policies  # CDFs, then Gantt + activity per policy
    sim = tmp_path / "rr.csv"
    assert runner.invoke(app, ["simulate", str(trace), *fleet, "--dispatch", "round-robin", "--out", str(sim), "-q"]).exit_code == 0
    result = runner.invoke(app, ["report", str(trace), *fleet, "--simulation", str(sim), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["activity-rr.png", "gantt-rr.png", "index.html", "latency-cdf.png"]


def test_report_draws_a_replica_that_served_no_request(tmp_path):
    """Three requests on eight replicas leave five idle: `simulate` then `report` on its CSV
    draws them as idle rows instead of failing in the busy-interval rebuild."""
    trace = _head("sharegpt_batch_2k.csv", 4, tmp_path)
    sim = tmp_path / "requests.csv"
    assert runner.invoke(app, ["simulate", str(trace), "--dispatch", "round-robin", "--out", str(sim), "--quiet"]).exit_code == 0
    result = runner.invoke(app, ["report", str(trace), "--simulation", str(sim), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "index.html").exists()
    assert busy_intervals(np.empty(0), np.empty(0))[0].size == 0


def test_report_rejects_a_simulation_of_another_trace(simulated, tmp_path):
    _, _, _, path = simulated
    result = runner.invoke(app, ["report", str(TRACES / "sharegpt_batch_2k.csv"), "--replicas", "h100-tp4:2,a100-tp4:2",
                                 "--simulation", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "least-work.csv: request" in result.stderr and "is missing" in result.stderr
    assert not (tmp_path / "r").exists()


def test_report_rejects_a_replica_outside_the_cluster(simulated, tmp_path):
    _, _, _, path = simulated
    result = runner.invoke(app, ["report", str(TRACES / "sharegpt_batch_2k.csv"), "--replicas", "h100-tp4:1",
                                 "--simulation", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "field replica" in result.stderr and "not a replica of the cluster" in result.stderr


def _browser() -> tuple[str, str]:
    chromium = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")) if p and Path(p).exists()), None)
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    if not chromium or not driver:
        pytest.skip("Chromium and ChromeDriver are not installed (Debian packages chromium, chromium-driver; `make test` installs them)")
    return chromium, driver


def test_report_renders_its_images_in_headless_chromium(tmp_path):
    """Opens the report of a comparison in a real browser: every image decodes and shows, and
    the screenshot holds the charts (many colours, not a blank page)."""
    chromium, chromedriver = _browser()
    from matplotlib.image import imread
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    trace = _head("sharegpt_batch_2k.csv", 301, tmp_path)
    result = runner.invoke(app, ["compare", str(trace), "--policies", "round-robin,lpt,repair", "--batching", "sarathi",
                                 "--time-limit", "2", "--report", str(tmp_path / "report"), "--quiet"])
    assert result.exit_code == 0, result.stderr
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,1800"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        browser.get((tmp_path / "report" / "index.html").as_uri())
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])")
        rows = browser.execute_script("return document.querySelectorAll('table')[0].tBodies[0].rows.length")
        shot = tmp_path / "screenshot.png"
        assert browser.save_screenshot(str(shot))
        first_chart = browser.find_element("css selector", "img").screenshot_as_png
    finally:
        browser.quit()
    assert len(images) == 1 + 2 * 3 and rows == 3
    for complete, width, height, shown in images:
        assert complete and width >= 800 and height >= 200 and shown > 500
    page = imread(shot)
    assert len(np.unique(page.reshape(-1, page.shape[-1]), axis=0)) > 100  # text, table and chart colours
    (tmp_path / "chart.png").write_bytes(first_chart)
    chart = imread(tmp_path / "chart.png")
    assert chart.shape[1] > 500 and chart[..., :3].std() > 0.05  # the chart itself, not an empty box
