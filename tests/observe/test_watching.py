"""Watching a study while it runs, as a user and their tools do: Ray's metrics endpoint
(scraped as Prometheus does) carries each trial's gauges under its label, and the
dashboard in headless Chromium, logged in with the cluster's token (the
`ray-authentication-token` cookie its token prompt sets), names the trial on its Actors
page (docs/cluster.md says so). One study runs for the whole module.

The dashboard test needs Debian's Chromium (`apt-get install chromium`) and is skipped
with that reason when it is missing."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from support.studies import TINY, write_study
from raysweep.observe import metrics
from raysweep.store.records import read_records

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
SCREENSHOT = Path(tempfile.gettempdir()) / "raysweep-dashboard-actors.png"
LABEL = "depth.baseline-s0"


@pytest.fixture(scope="module")
def running_study(join_ray, tmp_path_factory):
    """A one-trial study that trains for a while (`raysweep run` joined to the session's
    Ray, so its trial's metrics and actor are there); yields its run folder once the
    trial has finished an epoch, and stops it with Ctrl-C when the module is done (its
    later epochs would only be waited for)."""
    folder = tmp_path_factory.mktemp("watch")
    path = write_study(folder, "watch", defaults={**TINY, "epochs": 6, "train_size": 2048},
                       groups={"depth": {"baseline": "resnet_20", "variants": {}}},
                       asha={"enabled": False})
    study = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "run", str(path), *join_ray,
                              "--storage", str(folder / "runs")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = folder / "runs" / "watch"
    try:
        _wait_until(lambda: any(r.last_epoch >= 1 for r in read_records(run_dir))
                    if (run_dir / "records").is_dir() else False, study, "an epoch finished")
        yield run_dir
    finally:
        study.send_signal(signal.SIGINT)
        _, err = study.communicate(timeout=300)
    assert study.returncode in (0, 130), err[-3000:]


def test_the_metrics_endpoint_carries_the_running_trials_gauges(running_study):
    want = {"study": "watch", "trial": LABEL}
    deadline, seen = time.monotonic() + 90, {}
    while time.monotonic() < deadline and len(seen) < len(metrics.GAUGES):
        seen = {name: s.value for name, samples in _scrape().items() for s in samples
                if name.startswith("ray_raysweep_trial_")
                and {k: s.labels.get(k) for k in want} == want}
        time.sleep(0.5)  # the scrape's polling interval, not a synchronisation
    assert set(seen) == {f"ray_{name}" for name in metrics.GAUGES}
    [record] = read_records(running_study)
    entry = next(h for h in record.history if h.epoch == seen["ray_raysweep_trial_epoch"])
    assert seen["ray_raysweep_trial_val_top1"] == pytest.approx(entry.val_top1)
    assert seen["ray_raysweep_trial_test_top1"] == pytest.approx(entry.test_top1)
    assert seen["ray_raysweep_trial_images_per_s"] == pytest.approx(entry.images_per_s)


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_dashboards_actors_page_names_the_running_trial(running_study, ray_local):
    token = subprocess.run([RAY, "get-auth-token"], capture_output=True, text=True,
                           check=True).stdout.strip()
    text = asyncio.run(_page_text(ray_local, token, "/#/actors",
                                  until=f"raysweep trial {LABEL}"))
    assert f"raysweep trial {LABEL}" in text, text[:2000]
    assert "Authentication Token Required" not in text


def _scrape() -> dict[str, list]:
    """Every sample of this node's metrics endpoint, by metric name."""
    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def _wait_until(ready, study: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and study.poll() is None:
        if ready():
            return
        time.sleep(0.2)  # polling a condition with a deadline
    raise AssertionError(f"never got there: {what}")


async def _page_text(dashboard: str, token: str, page: str, until: str,
                     timeout: float = 90) -> str:
    """The page's text once it shows `until` (or at the deadline), seen by Chromium over
    its DevTools protocol (on loopback); a screenshot is left in SCREENSHOT."""
    import aiohttp

    port = _free_port()
    # Chromium's helper processes can still write to the profile as the folder goes.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            async with aiohttp.ClientSession() as http:
                socket_url = await _page_socket(http, port)
                async with http.ws_connect(socket_url, max_msg_size=0) as ws:
                    call = _caller(ws)
                    await call("Network.enable")
                    await call("Network.setCookie", name="ray-authentication-token",
                               value=token, url=dashboard)
                    await call("Emulation.setDeviceMetricsOverride", width=1600, height=1000,
                               deviceScaleFactor=1, mobile=False)
                    await call("Page.navigate", url=dashboard + page)
                    deadline, text = time.monotonic() + timeout, ""
                    while time.monotonic() < deadline and until not in text:
                        await asyncio.sleep(1)  # the page renders from its own API calls
                        text = (await call("Runtime.evaluate",
                                           expression="document.body.innerText")
                                )["result"].get("value", "")
                    shot = await call("Page.captureScreenshot", format="png")
                    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
                    return text
        finally:
            os.killpg(browser.pid, signal.SIGTERM)   # the browser and its helpers
            browser.wait(timeout=30)


async def _page_socket(http, port: int, timeout: float = 60) -> str:
    import aiohttp

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with http.get(f"http://127.0.0.1:{port}/json") as reply:
                targets = json.loads(await reply.text())
            return next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        except (aiohttp.ClientError, StopIteration):
            await asyncio.sleep(0.5)  # Chromium is still starting
    raise AssertionError("Chromium's DevTools endpoint never answered")


def _caller(ws):
    counter = iter(range(1, 1_000_000))

    async def call(method: str, **params):
        ident = next(counter)
        await ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await ws.receive_json()
            if message.get("id") == ident:
                return message.get("result", {})

    return call


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
