"""webdriver.py: the little of the W3C WebDriver protocol the page's tests need, over HTTP with
the standard library alone, driving Debian's chromium through its chromedriver (package
chromium-driver): open a page, find elements, click them, type, move and drag the pointer,
run a script, take a screenshot."""
import base64
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriverError(Exception):
    pass


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Element:
    def __init__(self, drv, eid):
        self.drv, self.id = drv, eid

    def _url(self, tail=""):
        return "/element/%s%s" % (self.id, tail)

    def click(self):
        self.drv.cmd("POST", self._url("/click"), {})

    def text(self):
        return self.drv.cmd("GET", self._url("/text"))

    def attr(self, name):
        return self.drv.cmd("GET", self._url("/attribute/%s" % name))

    def type(self, text):
        self.drv.cmd("POST", self._url("/value"), {"text": text})

    def clear(self):
        self.drv.cmd("POST", self._url("/clear"), {})

    def find(self, css):
        return Element(self.drv, self.drv.cmd("POST", self._url("/element"),
                                              {"using": "css selector", "value": css})[ELEMENT])

    def find_all(self, css):
        got = self.drv.cmd("POST", self._url("/elements"), {"using": "css selector", "value": css})
        return [Element(self.drv, e[ELEMENT]) for e in got]


class Browser:
    """chromedriver and one headless chromium session; close() ends both."""

    def __init__(self, chromium="/usr/bin/chromium", driver="/usr/bin/chromedriver",
                 profile=None, width=1280, height=1000, log=None):
        self.port = _free_port()
        self.proc = subprocess.Popen([driver, "--port=%d" % self.port],
                                     stdout=log or subprocess.DEVNULL,
                                     stderr=log or subprocess.DEVNULL)
        self.base = "http://127.0.0.1:%d" % self.port
        self.session = None
        deadline = time.time() + 30
        while True:
            try:
                self._http("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise WebDriverError("chromedriver did not start")
                time.sleep(0.1)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--window-size=%d,%d" % (width, height)]
        if profile:
            args.append("--user-data-dir=%s" % profile)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"}}}}
        got = self._http("POST", "/session", caps)
        self.session = got["value"]["sessionId"]

    def _http(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read().decode() or "{}")
        except urllib.error.HTTPError as e:
            try:
                v = json.loads(e.read().decode())["value"]
                raise WebDriverError("%s %s: %s: %s" % (method, path, v.get("error"),
                                                        v.get("message", "").splitlines()[0]))
            except (ValueError, KeyError):
                raise WebDriverError("%s %s: HTTP %d" % (method, path, e.code))

    def cmd(self, method, tail, body=None):
        return self._http(method, "/session/%s%s" % (self.session, tail), body)["value"]

    def open(self, url):
        self.cmd("POST", "/url", {"url": url})

    def find(self, css):
        return Element(self, self.cmd("POST", "/element", {"using": "css selector",
                                                            "value": css})[ELEMENT])

    def find_all(self, css):
        got = self.cmd("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, e[ELEMENT]) for e in got]

    def js(self, script, *args):
        wire = [{ELEMENT: a.id} if isinstance(a, Element) else a for a in args]
        return self.cmd("POST", "/execute/sync", {"script": script, "args": wire})

    def wait(self, script, timeout=20):
        """Until script returns something true; that value."""
        deadline = time.time() + timeout
        while True:
            v = self.js(script)
            if v or time.time() > deadline:
                return v
            time.sleep(0.1)

    def pointer(self, steps):
        """One pointer's actions: [("move", element or None, x, y), ("down",), ("up",), ...];
        a move is relative to the element's centre, or to the viewport without one."""
        acts = []
        for s in steps:
            if s[0] == "move":
                a = {"type": "pointerMove", "duration": 50, "x": int(s[2]), "y": int(s[3])}
                a["origin"] = {ELEMENT: s[1].id} if s[1] is not None else "viewport"
                acts.append(a)
            elif s[0] == "down":
                acts.append({"type": "pointerDown", "button": 0})
            elif s[0] == "up":
                acts.append({"type": "pointerUp", "button": 0})
        self.cmd("POST", "/actions", {"actions": [{"type": "pointer", "id": "mouse",
                                                   "parameters": {"pointerType": "mouse"},
                                                   "actions": acts}]})
        self.cmd("DELETE", "/actions")

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def console_errors(self):
        try:
            logs = self.cmd("POST", "/se/log", {"type": "browser"})
        except WebDriverError:
            return []
        return [l["message"] for l in logs if l.get("level") == "SEVERE"]

    def close(self):
        if self.session:
            try:
                self._http("DELETE", "/session/%s" % self.session)
            except Exception:
                pass
            self.session = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
