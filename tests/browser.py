"""A headless Chromium driven over the DevTools protocol (aiohttp's websocket client), for tests
that open a page the way a person would: console errors, images and audio, a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: run in the page once it has loaded: every image and audio element, and what failed
PROBE = """(() => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete, w: i.naturalWidth}));
  const audio = [...document.querySelectorAll('audio')].map(a => ({src: a.getAttribute('src'),
      ready: a.readyState, error: a.error ? a.error.code : null, duration: a.duration,
      canPlay: a.canPlayType(a.getAttribute('type') || 'audio/mpeg')}));
  return {imgs, audio, title: document.title, height: document.documentElement.scrollHeight};
})()"""


def chromium() -> str | None:
    exe = os.environ.get("CHROMIUM")
    if exe:
        return exe
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class Page:
    def __init__(self, ws, loop_events: list):
        self.ws = ws
        self.ids = itertools.count(1)
        self.events = loop_events

    async def send(self, method: str, **params):
        i = next(self.ids)
        await self.ws.send_json({"id": i, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), timeout=max(0.01, end - time.monotonic()))
            except asyncio.TimeoutError:
                return
            self.events.append(json.loads(msg.data))


def _errors(events: list) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            out.append("exception: " + p.get("exceptionDetails", {}).get("text", ""))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            ent = p["entry"]
            out.append(f"log: {ent.get('text')} {ent.get('url', '')}".strip())
        elif m == "Network.loadingFailed" and not p.get("canceled"):  # a player that has its metadata stops loading
            out.append(f"network: {p.get('errorText')} ({p.get('type')})")
    return out


async def _visit(url: str, screenshot: Path, *, width: int, settle: float, exe: str) -> dict:
    import aiohttp

    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                             "--no-default-browser-check", "--remote-debugging-port=0", "--mute-audio",
                             f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.is_file() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = [t for t in await r.json() if t.get("type") == "page"]
            async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                events: list = []
                page = Page(ws, events)
                for domain in ("Runtime", "Log", "Page", "Network"):
                    await page.send(f"{domain}.enable")
                await page.send("Emulation.setDeviceMetricsOverride", width=width, height=900,
                                deviceScaleFactor=1, mobile=False)
                await page.send("Page.navigate", url=url)
                deadline = time.monotonic() + 60
                while not any(e.get("method") == "Page.loadEventFired" for e in events):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url} did not load in 60 s")
                    await page.pump(0.2)
                probe: dict = {}
                end = time.monotonic() + settle
                while True:  # until every audio element has its metadata or an error
                    res = await page.send("Runtime.evaluate", expression=PROBE, returnByValue=True)
                    probe = res["result"]["value"]
                    if all(a["ready"] >= 1 or a["error"] for a in probe["audio"]) or time.monotonic() > end:
                        break
                    await page.pump(0.3)
                await page.pump(0.3)
                height = min(int(probe["height"]), 16000)
                shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                       clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                top = await page.send("Page.captureScreenshot", format="png")
                screenshot.with_name(screenshot.stem + "_top.png").write_bytes(base64.b64decode(top["data"]))
                probe["errors"] = _errors(events)
                return probe
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def visit(path: Path, screenshot: Path, *, width: int = 1280, settle: float = 30.0, exe: str | None = None) -> dict:
    """Open ``path`` (a local file) in headless Chromium; write a full-page screenshot (and
    ``<stem>_top.png``, the first screen); return ``{"imgs", "audio", "errors", "title", "height"}``."""
    exe = exe or chromium()
    if exe is None:
        raise FileNotFoundError("no chromium")
    return asyncio.run(_visit(Path(path).resolve().as_uri(), screenshot, width=width, settle=settle, exe=exe))
