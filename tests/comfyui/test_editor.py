"""The editor as users see it: headless Chromium (Debian's `chromium` package) opens the ComfyUI page
of the test server, loads each file of workflows/ and the test checks that no node type is missing
and that our nodes show their widgets with the file's values. A screenshot per workflow is written
to $HLS_SCREENSHOT_DIR (default: <temp dir>/hyperlora-studio-screenshots) for a person to look at.
The node library shows a node's help page (web/docs/), and /i18n serves the nodes' Chinese names
(locales/zh). It reads the frontend of the ComfyUI version under test and the newest one alike
(put a `pip install --target DIR comfyui-frontend-package==X` folder first on PYTHONPATH).

Chromium is driven through its DevTools protocol over a websocket (aiohttp, which ComfyUI needs anyway).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from hls_comfy import GRAPHS, graph_id, is_widget, stop_process

SCREENSHOTS = Path(os.environ.get("HLS_SCREENSHOT_DIR", Path(tempfile.gettempdir()) / "hyperlora-studio-screenshots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
APP_READY = ("!!(window.app && window.app.graph && window.LiteGraph && "
             "Object.keys(window.LiteGraph.registered_node_types).length > 50)")
LOAD_AND_DESCRIBE = """
(async () => {
  const workflow = %s;
  await window.app.loadGraphData(workflow, true, true, %s);
  await new Promise(r => setTimeout(r, 1500));
  await new Promise(r => setTimeout(r, 800));
  // What the user sees first (the missing-models dialog, or the toast of newer frontends, among it),
  // then that dialog and those toasts closed, so the screenshot shows the graph.
  const text = document.body.innerText;
  document.querySelectorAll('.p-dialog-close-button, .p-toast-close-button').forEach(b => b.click());
  // Newer frontends show the notice as an overlay of their executionError store.
  const pinia = document.querySelector("#vue-app").__vue_app__.config.globalProperties.$pinia;
  const errors = pinia && pinia._s.get("executionError");
  if (errors && typeof errors.dismissErrorOverlay === "function") errors.dismissErrorOverlay();
  await new Promise(r => setTimeout(r, 500));
  const graph = window.app.graph;
  const nodes = graph._nodes || graph.nodes;
  const types = window.LiteGraph.registered_node_types;
  return JSON.stringify({
    text: text,
    nodes: nodes.map(n => ({id: String(n.id), type: n.type, known: !!types[n.type],
                            widgets: (n.widgets || []).map(w => w.name),
                            values: (n.widgets || []).map(w => w.value)})),
  });
})()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """The few DevTools protocol calls the test needs, on one page."""

    def __init__(self, ws_url: str):
        self.ws_url, self.next_id = ws_url, 0

    async def __aenter__(self):
        import aiohttp
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.ws_url, max_msg_size=0)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()
        await self.session.close()

    async def call(self, method: str, timeout: float = 120, **params):
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = await self.ws.receive_json(timeout=timeout)
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]
        raise AssertionError(f"{method} got no answer in {timeout}s")

    async def evaluate(self, expression: str, timeout: float = 120):
        result = await self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                                 awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium: apt-get install chromium")
    # A user who has seen the first-run dialogs: nothing covers the graph in the screenshots.
    settings = server.base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    if not settings.exists():
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
                                        # each test opens the page anew: no restored tab may replace the
                                        # workflow it loads (the 1.23 frontend restores it late)
                                        "Comfy.Workflow.Persist": False,
                                        # the node library with the help panel ("?"): newer frontends
                                        # default to a redesign without it (older ones ignore the key)
                                        "Comfy.NodeLibrary.NewDesign": False}))
    port = _free_port()
    profile = tmp_path_factory.mktemp("chromium")
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
         f"--user-data-dir={profile}", "--window-size=2000,1300", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError("Chromium did not start")
            time.sleep(0.5)
        yield pages[0]["webSocketDebuggerUrl"]
    finally:
        stop_process(process, timeout=20)


async def _in_editor(ws_url: str, url: str, script: str, shot: Path, timeout: float = 120):
    """Open the editor page, run `script` in it once the app is ready, screenshot the page; the
    script's value."""
    async with DevTools(ws_url) as page:
        await page.call("Page.enable")
        await page.call("Page.navigate", url=url)
        deadline = time.time() + 180
        while not await page.evaluate(APP_READY):
            if time.time() > deadline:
                raise AssertionError("the ComfyUI editor did not become ready in 180 s")
            await asyncio.sleep(1)
        value = await page.evaluate(script, timeout=timeout)
        data = await page.call("Page.captureScreenshot", format="png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.write_bytes(base64.b64decode(data["data"]))
        return value


async def _open_load_and_shoot(ws_url: str, url: str, workflow: dict, name: str, shot: Path) -> dict:
    return json.loads(await _in_editor(ws_url, url, LOAD_AND_DESCRIBE % (json.dumps(workflow), json.dumps(name)), shot))


def _reports_missing_nodes(text: str) -> bool:
    """The editor's notice of unknown node types: the dialog of frontends up to 1.2x, the toast
    ("Missing node: X", "Missing nodes") of newer ones."""
    return "node types were not found" in text or "Missing node" in text


def _reports_missing_model(text: str, folder: str, name: str) -> bool:
    """The editor's notice that a model file is missing: the dialog listing "folder / name" of
    frontends up to 1.2x, or the toast "name is missing" with a "View details" button (or
    "Missing models", or at 1.58 "N issues found" when several files are missing, as in the video
    workflow) of newer ones."""
    dialog = "models were not found" in text and f"{folder} / {name}" in text
    several = "Missing models" in text or re.search(r"\b\d+ issues found\b", text) is not None
    toast = "View details" in text and (f"{name} is missing" in text or several)
    return dialog or toast


@pytest.mark.parametrize("path", GRAPHS, ids=graph_id)
def test_editor_opens_workflow_with_every_node_and_widget(server, object_info, browser, path):
    workflow = json.loads(path.read_text())
    shot = (SCREENSHOTS if path.parent.name == "workflows" else SCREENSHOTS / "workflows_v1") / f"{path.stem}.png"
    state = asyncio.run(_open_load_and_shoot(browser, server.url + "/", workflow, path.name, shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    # Node ids as the page gives them (numbers up to frontend 1.2x, strings in newer ones), as text.
    nodes = {n["id"]: n for n in state["nodes"]}
    assert set(nodes) == {str(n["id"]) for n in workflow["nodes"]}
    missing = sorted({n["type"] for n in state["nodes"] if not n["known"]})
    assert not missing, f"the editor does not know {missing}"
    assert not _reports_missing_nodes(state["text"]), "the editor reports missing node types"
    # The model links of scripts/stamp_workflows.py reach the editor: the one model the test server
    # lacks, the SDXL checkpoint, is offered for download.
    checkpoints = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple"]
    for name in checkpoints:
        assert _reports_missing_model(state["text"], "checkpoints", name), state["text"]
    for node in workflow["nodes"]:
        if not node["type"].startswith("HLS_"):
            continue
        shown = nodes[str(node["id"])]
        info = object_info[node["type"]]["input"]
        expected = []
        for section in ("required", "optional"):
            for name, spec in info.get(section, {}).items():
                if is_widget(spec):
                    expected.append(name)
                    if len(spec) > 1 and spec[1].get("control_after_generate"):  # the editor adds this one
                        expected.append("control_after_generate")
        assert shown["widgets"] == expected, (node["type"], shown["widgets"])
        values = dict(zip(shown["widgets"], shown["values"]))
        for name, value in zip(expected, node["widgets_values"]):
            assert values[name] == value, (node["type"], name, values[name], value)


RUN_AND_DESCRIBE = """
(async () => {
  const prompt = %s;
  await window.app.loadApiJson(prompt, "hls_v3_ui.json");
  await new Promise(r => setTimeout(r, 1500));
  document.querySelectorAll('.p-dialog-close-button, .p-toast-close-button').forEach(b => b.click());
  await window.app.queuePrompt(0, 1);
  const graph = window.app.graph;
  const shownText = (n) => ((n && n.widgets) || []).find(w => w.name === "hls_shown_text");
  // A node loaded from an API prompt has a number id up to frontend 1.2x, its text in newer ones.
  const byId = (id) => graph.getNodeById(Number(id)) || graph.getNodeById(String(id));
  const deadline = Date.now() + 300000;
  while (Date.now() < deadline) {
    const done = %s.every(id => { const w = shownText(byId(id)); return w && w.value; });
    const faces = byId(%s);
    if (done && faces && (faces.imgs || []).length) break;
    await new Promise(r => setTimeout(r, 1000));
  }
  await new Promise(r => setTimeout(r, 500));
  const nodes = graph._nodes || graph.nodes;
  return JSON.stringify(nodes.map(n => ({
    id: String(n.id), type: n.type, widgets: (n.widgets || []).map(w => w.name),
    shown: (shownText(n) || {}).value || null, images: (n.imgs || []).length,
    saved_values: n.serialize().widgets_values || [],
  })));
})()
"""


async def _run_in_editor(ws_url: str, url: str, prompt: dict, texts: list[str], faces: str, shot: Path) -> list:
    script = RUN_AND_DESCRIBE % (json.dumps(prompt), json.dumps(texts), faces)
    return json.loads(await _in_editor(ws_url, url, script, shot, timeout=400))


def test_editor_shows_the_saved_file_name_the_face_preview_and_the_summary_on_the_nodes(server, browser):
    """Queued from the editor: Save HyperLoRA and Save Identity show the file they wrote, Generate
    HyperLoRA its summary and Load Faces its preview, on the nodes themselves; the shown text is
    not a widget value of the workflow (widgets_values stay as they were)."""
    from hls_comfy import save_chain

    prompt = save_chain()
    shot = SCREENSHOTS / "v3 - shown on the nodes.png"
    nodes = {n["id"]: n for n in asyncio.run(_run_in_editor(browser, server.url + "/", prompt, ["6", "7", "8"],
                                                              "2", shot))}
    print(f"screenshot: {shot}")
    assert nodes["7"]["shown"].startswith("loras/v3_ui_") and nodes["7"]["shown"].endswith(".safetensors"), nodes["7"]
    assert (server.base / "output" / nodes["7"]["shown"]).is_file()
    assert nodes["8"]["shown"].startswith("v3_ui/person_"), nodes["8"]
    assert "1 photo" in nodes["6"]["shown"], nodes["6"]
    assert nodes["2"]["images"] >= 1, "Load Faces shows its preview"
    assert nodes["7"]["saved_values"] == ["loras/v3_ui"]
    assert nodes["8"]["saved_values"] == ["v3_ui/person"]


HELP_NODE = "HLS_ApplyLoRA"
# A sentence of web/docs/HLS_ApplyLoRA.md, as the help panel renders it.
HELP_PHRASE = "Every layer of the LoRA must find its place in the model"
OPEN_HELP = """
(async () => {
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));
  // The node library's help panel, opened as its "?" button does: through the frontend's own
  // stores (nodeHelp, nodeDef), once the node library tab is shown.
  await window.app.extensionManager.command.execute("Workspace.ToggleSidebarTab.node-library");
  await sleep(1500);
  const pinia = document.querySelector("#vue-app").__vue_app__.config.globalProperties.$pinia;
  const help = pinia._s.get("nodeHelp"), defs = pinia._s.get("nodeDef");
  if (!help || !defs) return JSON.stringify({panel: false, text: ""});
  help.openHelp(defs.nodeDefsByName[%s]);
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline && !document.body.innerText.includes(%s)) await sleep(500);
  await sleep(500);
  return JSON.stringify({panel: true, text: document.body.innerText});
})()
"""


def test_node_library_shows_the_help_page_of_a_node(server, browser):
    """The help page of web/docs/<node id>.md is served where the frontends look for a custom node's
    page (/extensions/<pack folder>/docs/<node id>.md, after <node id>/<locale>.md), and the node
    library's help panel shows it."""
    from hls_comfy import PACK_DIR_NAME

    page = (Path(__file__).resolve().parents[2] / "web" / "docs" / f"{HELP_NODE}.md").read_text(encoding="utf-8")
    with urllib.request.urlopen(f"{server.url}/extensions/{PACK_DIR_NAME}/docs/{HELP_NODE}.md", timeout=30) as r:
        assert r.read().decode("utf-8") == page
        assert "text/html" not in r.headers.get("Content-Type", "")  # newer frontends refuse an HTML answer
    shot = SCREENSHOTS / "help page in the node library.png"
    state = json.loads(asyncio.run(_in_editor(browser, server.url + "/", OPEN_HELP % (
        json.dumps(HELP_NODE), json.dumps(HELP_PHRASE)), shot)))
    print(f"screenshot: {shot}")
    if not state["panel"]:
        pytest.skip("this frontend has no node help panel; the page is served where it would look")
    assert HELP_PHRASE in state["text"], state["text"][-3000:]
    assert "Typical values" in state["text"]


def test_i18n_serves_the_chinese_names_of_our_nodes(server, object_info):
    """ComfyUI serves locales/zh of the pack at /i18n, where the editor reads node names, inputs,
    outputs and categories in the user's language."""
    zh = server.get("/i18n")["zh"]
    ours = sorted(name for name in object_info if name.startswith("HLS_"))
    shipped = json.loads((Path(__file__).resolve().parents[2] / "locales" / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))
    assert ours == sorted(shipped)
    assert {name: zh["nodeDefs"][name] for name in ours} == shipped
    assert zh["nodeDefs"]["HLS_ApplyLoRA"]["display_name"] == "应用 HyperLoRA"
    assert zh["nodeDefs"]["HLS_ApplyLoRA"]["inputs"]["strength"]["name"] == "强度"
    assert zh["nodeDefs"]["HLS_ApplyLoRA"]["outputs"]["0"]["name"] == "模型"
    assert zh["nodeCategories"]["HyperLoRA Studio"] == "HyperLoRA 工作室"


CHINESE_NAMES = """
(async () => {
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));
  await window.app.extensionManager.command.execute("Workspace.ToggleSidebarTab.node-library");
  await sleep(1500);
  const pinia = document.querySelector("#vue-app").__vue_app__.config.globalProperties.$pinia;
  const def = pinia._s.get("nodeDef").nodeDefsByName["HLS_ApplyLoRA"];
  return JSON.stringify({name: def.display_name, category: def.category, text: document.body.innerText});
})()
"""


def test_editor_set_to_chinese_names_our_nodes_and_category_in_chinese(server, browser):
    """A user whose editor speaks Chinese (setting Comfy.Locale) gets our nodes' Chinese names and
    category from /i18n; the screenshot shows the node library in Chinese."""
    settings = server.base / "user" / "default" / "comfy.settings.json"
    saved = settings.read_text(encoding="utf-8")
    settings.write_text(json.dumps(dict(json.loads(saved), **{"Comfy.Locale": "zh"})), encoding="utf-8")
    try:
        shot = SCREENSHOTS / "editor in Chinese.png"
        state = json.loads(asyncio.run(_in_editor(browser, server.url + "/", CHINESE_NAMES, shot)))
        print(f"screenshot: {shot}")
    finally:
        settings.write_text(saved, encoding="utf-8")  # the other tests read the English editor
    assert state["name"] == "应用 HyperLoRA"
    assert state["category"] == "HyperLoRA 工作室"
