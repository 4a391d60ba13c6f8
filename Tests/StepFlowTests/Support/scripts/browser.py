#!/usr/bin/env python3
"""Opens a `stepflow serve` page in headless Chromium over the DevTools protocol, as a person would,
and prints JSON of what the page showed: the finished count twice, a second apart and more; the log
panel's text after a click on the failed step's row; the finished count once the page says the run
is over; and a screenshot written to SCREENSHOT.

Usage: browser.py URL SCREENSHOT
"""
import base64, json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request

import websocket  # websocket-client, from PyPI


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH")


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.2)
        return None


def main():
    url, screenshot = sys.argv[1], sys.argv[2]
    profile = tempfile.mkdtemp(prefix="stepflow-chromium-")
    proc = subprocess.Popen([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--remote-debugging-port=0", "--window-size=1400,1000", f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        end = time.time() + 60
        while time.time() < end and port is None:
            line = proc.stderr.readline()
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line or "")
            if match:
                port = int(match.group(1))
        if port is None:
            sys.exit("chromium did not start its DevTools endpoint")
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        target = next(t for t in targets if t["type"] == "page")
        page = Page(websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30))
        page.call("Page.enable")
        page.call("Page.navigate", url=url)
        count = "Number(document.getElementById('finished') && document.getElementById('finished').textContent.replace(/,/g, ''))"
        page.wait_for("document.getElementById('total') && Number(document.getElementById('total').textContent.replace(/,/g, '')) > 0")
        first = page.eval(count)
        second = first
        end = time.time() + 30
        while time.time() < end and second <= first:
            time.sleep(0.5)
            second = page.eval(count)
        # A click on the failed step's row, as a person would.
        clicked = page.wait_for("""(() => { const td = document.querySelector('#step-table td.s-failed');
                                   if (!td) return false; td.closest('tr').dispatchEvent(new MouseEvent('click', {bubbles: true})); return true; })()""", 60)
        log = page.wait_for("document.getElementById('log-lines').textContent", 15)
        page.wait_for("!['running', '…', ''].includes(document.getElementById('status').textContent)", 120)
        time.sleep(2.5)  # a poll or two more: the count must stay where the run left it
        final = page.eval(count)
        status = page.eval("document.getElementById('status').textContent")
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print(json.dumps({"first": first, "second": second, "clicked": bool(clicked), "log": log or "", "final": final, "status": status}))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


main()
