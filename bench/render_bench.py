"""Measure what rendering a long streaming answer costs the browser, per frame.

Starts the development LLM server and one chatsite process (a throwaway SQLite database
unless DATABASE_URL is given), logs a bench user in with Playwright driving Chromium, and
streams a Markdown answer of about 2,000 tokens (headings, paragraphs, lists, code, tables)
into the chat page. The page's renderer records one `chat:render` performance measure per
render; from those this prints, over the first 10% and the last 10% of the answer (by
characters), the mean and p95 cost of a render and their ratio (100% against 10%), then
renders per second, the main thread's busy share over the same two stretches (CDP
`Performance.getMetrics` TaskDuration over wall time, sampled every 0.2 s), renders over
50 ms and long tasks, and the cost of the last render (flush(), which checks the whole).

Each is measured with the CPU at full speed and slowed 4x (CDP
`Emulation.setCPUThrottlingRate`, roughly a phone), for the incremental renderer in the
working tree and, for comparison, the whole-answer renderer it replaced (its markdown.js and
codeblocks.js read from git at BENCH_RENDER_BASELINE, given the same measure). Timings on a
shared machine move from run to run: compare within one run.

    make bench-render
    BENCH_RENDER_DELAY_MS=25 BENCH_RENDER_TOKENS=4000 make bench-render
    BENCH_RENDER_BASELINE= make bench-render        # the working tree only
"""

import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import free_port, start_devllm, start_site  # noqa: E402

TOKENS = int(os.environ.get("BENCH_RENDER_TOKENS", "2000"))
DELAY_MS = float(os.environ.get("BENCH_RENDER_DELAY_MS", "10"))
# The last commit with the whole-answer renderer (re-parsed everything on every frame).
BASELINE = os.environ.get("BENCH_RENDER_BASELINE", "12388b44f7a9ea9d7cbeb9b5312cdef7bfd4c0f7")
THROTTLES = [float(n) for n in os.environ.get("BENCH_RENDER_THROTTLES", "1,4").split(",") if n]
JSON_PATH = Path(os.environ.get("BENCH_RENDER_JSON", ROOT / "bench" / "results" / "render.json"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
USERNAME, PASSWORD = "bench", "bench-password-unused"
LONG_FRAME_MS = 50

_SENTENCE = (
    "streaming answers stay smooth when each finished block is rendered once and only the "
    "growing tail is parsed again on every frame of the page"
)
_WORDS = _SENTENCE.split(" ")


def _words(start: int, count: int) -> str:
    return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(count))


def _section(n: int) -> str:
    """One part of the long answer: about 200 tokens of varied Markdown."""
    extra = ""
    if n == 1:
        # A reference defined only at the very end, and a line that looks like a heading
        # while it streams ("#" alone) but is not one: both must end as a whole render.
        extra = "See [the guide][guide] for more.\n#tagged is not a heading here.\n\n"
    return (
        f"## Part {n}: {_words(n, 3)}\n\n"
        f"{_words(n, 24)}.\n{_words(n + 5, 20)} **{_words(n + 2, 3)}** and `code_{n}`.\n\n"
        f"{extra}"
        + "".join(f"- {_words(n + i, 6)}\n" for i in range(5))
        + "\n"
        + "".join(f"{i}. {_words(n + 7 * i, 5)}\n" for i in range(1, 4))
        + f"\n```python\ndef part_{n}(items):\n    total = 0\n    for item in items:\n"
        f"        total += item.count * {n}\n    return total\n```\n\n"
        f"> {_words(n + 3, 12)}\n\n"
        f"| Column | Value |\n| --- | ---: |\n| row {n} | {n * 3} |\n| {_words(n, 2)} | "
        f"{n * 7} |\n\n"
        f"{_words(n + 11, 30)}.\n\n"
    )


def long_markdown(tokens: int = TOKENS) -> str:
    """A Markdown answer of at least `tokens` development-server tokens (words)."""
    parts: list[str] = []
    n = 0
    while len(re.findall(r"\S+", "".join(parts))) < tokens:
        parts.append(_section(n))
        n += 1
    return "".join(parts) + "[guide]: https://example.com/guide\n"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


# --- the baseline renderer ----------------------------------------------------------------

# Give the whole-answer renderer the same measure as the incremental one: from the start of
# a render to the end of its onRender (the scroll that follows the answer, and its layout).
_OLD_RENDER = (
    "    frame = 0;\n    renderMarkdown(element, text);\n"
    "    if (onRender) {\n      onRender();\n    }\n"
)
_OLD_RENDER_MEASURED = (
    "    frame = 0;\n    const benchStart = performance.now();\n"
    "    renderMarkdown(element, text);\n"
    "    if (onRender) {\n      onRender();\n    }\n"
    '    performance.measure("chat:render", {start: benchStart, detail: '
    "{chars: text.length, blocks: -1, length: text.length, final: false}});\n"
)


def baseline_sources() -> dict[str, str] | None:
    """The baseline's markdown.js (with the measure added) and codeblocks.js, from git."""
    if not BASELINE:
        return None
    sources = {}
    for name in ("markdown.js", "codeblocks.js"):
        sources[name] = subprocess.run(
            ["git", "show", f"{BASELINE}:static/conversations/{name}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    if _OLD_RENDER not in sources["markdown.js"]:
        raise SystemExit(f"{BASELINE}'s markdown.js has no render() to measure")
    sources["markdown.js"] = sources["markdown.js"].replace(_OLD_RENDER, _OLD_RENDER_MEASURED)
    return sources


# --- one streamed answer --------------------------------------------------------------------

LONG_TASKS = """
window.__longTasks = 0;
new PerformanceObserver((list) => { window.__longTasks += list.getEntries().length; })
  .observe({ type: "longtask" });
"""

RENDERS = """() => performance.getEntriesByName("chat:render").map(
  (e) => ({ start: e.startTime, duration: e.duration, detail: e.detail }))"""


def serve(body: str):
    """A route handler answering with this JavaScript source."""

    def handler(route) -> None:
        route.fulfill(body=body, content_type="text/javascript; charset=utf-8")

    return handler


def stream_once(browser, base_url: str, sources: dict | None, throttle: float) -> dict:
    """Stream the long answer into a fresh chat page and return what the page measured."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.add_init_script(LONG_TASKS)
    for name, body in (sources or {}).items():
        page.route(f"**/static/conversations/{name}", serve(body))
    page.goto("/accounts/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    page.wait_for_selector("#message-input")
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": throttle})
    page.fill("#message-input", f"[[devllm echo delay_ms={DELAY_MS:g}]] {long_markdown()}")
    page.press("#message-input", "Enter")
    samples = follow_progress(page, cdp)
    result = {
        "renders": page.evaluate(RENDERS),
        "long_tasks": page.evaluate("window.__longTasks"),
        "samples": samples,
    }
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
    context.close()
    return result


PROGRESS = """() => ({
  status: [...document.querySelectorAll("article.message-assistant")].at(-1)?.dataset.status,
  length: performance.getEntriesByName("chat:render").at(-1)?.detail.length ?? 0,
})"""


def follow_progress(page, cdp, every: float = 0.2) -> list[tuple[float, float, int]]:
    """Sample (wall seconds, main-thread task seconds, characters shown) until the answer
    is complete."""
    samples = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        progress = page.evaluate(PROGRESS)
        samples.append((time.perf_counter(), task_seconds(cdp), progress["length"]))
        if progress["status"] == "completed":
            return samples
        time.sleep(every)
    raise SystemExit("the answer did not complete in 10 minutes")


def busy_share(samples: list, low: float, high: float) -> float:
    """The main thread's busy share between samples showing low..high of the answer."""
    total = max(length for _, _, length in samples)
    wall = busy = 0.0
    for (t0, busy0, length0), (t1, busy1, length1) in itertools.pairwise(samples):
        if max(1, total * low) <= length0 and length1 <= total * high and length1 < total:
            wall += t1 - t0
            busy += busy1 - busy0
    return busy / wall if wall else float("nan")


def task_seconds(cdp) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


def summarise(label: str, throttle: float, result: dict) -> dict:
    """Per-frame statistics over the first and the last 10% of the answer."""
    renders = [r for r in result["renders"] if not r["detail"].get("final")]
    if not renders:
        raise SystemExit(f"{label}: the page recorded no chat:render measures")
    if all(r["detail"].get("blocks") == -1 for r in renders):
        renders = renders[:-1]  # the baseline's last render is its flush at the end
    total = max(r["detail"]["length"] for r in renders)
    first = [r["duration"] for r in renders if r["detail"]["length"] <= total * 0.1]
    last = [r["duration"] for r in renders if r["detail"]["length"] >= total * 0.9]
    span_s = (renders[-1]["start"] - renders[0]["start"]) / 1000
    return {
        "renderer": label,
        "cpu_slowdown": throttle,
        "renders": len(renders),
        "mean_10_ms": mean(first),
        "p95_10_ms": percentile(first, 95),
        "mean_100_ms": mean(last),
        "p95_100_ms": percentile(last, 95),
        "ratio_mean": mean(last) / mean(first),
        "chars_100": mean(
            [r["detail"]["chars"] for r in renders if r["detail"]["length"] >= total * 0.9]
        ),
        "renders_per_s": len(renders) / span_s if span_s else float("nan"),
        "busy_10": busy_share(result["samples"], 0, 0.1),
        "busy_100": busy_share(result["samples"], 0.9, 1),
        "over_50_ms": sum(r["duration"] > LONG_FRAME_MS for r in renders),
        "long_tasks": result["long_tasks"],
        "final_ms": next(
            (r["duration"] for r in result["renders"] if r["detail"].get("final")), None
        ),
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# (heading, width, the row's cell as text)
COLUMNS = [
    ("renderer", 12, lambda r: r["renderer"]),
    ("CPU", 4, lambda r: f"{r['cpu_slowdown']:g}x"),
    ("mean 10%", 9, lambda r: ms(r["mean_10_ms"])),
    ("p95", 7, lambda r: ms(r["p95_10_ms"])),
    ("mean 100%", 10, lambda r: ms(r["mean_100_ms"])),
    ("p95", 7, lambda r: ms(r["p95_100_ms"])),
    ("100/10", 7, lambda r: f"{r['ratio_mean']:.2f}x"),
    ("chars", 7, lambda r: f"{r['chars_100']:.0f}"),
    ("renders/s", 10, lambda r: f"{r['renders_per_s']:.1f}"),
    ("busy 10%", 9, lambda r: f"{r['busy_10']:.0%}"),
    ("100%", 5, lambda r: f"{r['busy_100']:.0%}"),
    (">50ms/all", 10, lambda r: f"{r['over_50_ms']}/{r['renders']}"),
    ("long", 5, lambda r: str(r["long_tasks"])),
    ("flush", 7, lambda r: ms(r["final_ms"])),
]


def line(cells: list[str]) -> str:
    """Cells under COLUMNS' widths: the first column to the left, the others to the right."""
    first, *rest = zip(cells, (width for _, width, _ in COLUMNS), strict=True)
    return f"{first[0]:<{first[1]}}" + "".join(f"{cell:>{width}}" for cell, width in rest)


def print_heading() -> None:
    print(line([name for name, _, _ in COLUMNS]), flush=True)
    print("(milliseconds per render; chars: characters lexed per render at 100%)", flush=True)


def print_row(row: dict) -> None:
    print(line([cell(row) for _, _, cell in COLUMNS]), flush=True)


# --- the servers ----------------------------------------------------------------------------


def start_servers(logs: Path):
    """The development LLM server and chatsite with a bench user; returns both."""
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{logs / 'bench.sqlite3'}"
    env = {
        "DEBUG": "0",
        "SERVE_STATIC": "1",
        "SECRET_KEY": "bench-only-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_COOKIES": "0",
        "DATABASE_URL": database_url,
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "TURN_SPOOL_DIR": str(logs / "spool"),
        "LOG_LEVEL": "WARNING",
        "CACHE_KEY_PREFIX": f"bench-render-{free_port()}",
    }
    devllm = start_devllm(logs)
    env["DEVLLM_URL"] = f"{devllm.url}/v1"
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=os.environ | env, check=True)
    created = subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--username", USERNAME, "--email", "b@b.test"],
        cwd=ROOT,
        env=os.environ | env | {"DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
    )
    # A reused database may have the user already; anything else is a real failure.
    if created.returncode and "already taken" not in created.stderr:
        raise SystemExit(f"could not create the bench user:\n{created.stderr}")
    return devllm, start_site(logs, env), database_url


def main() -> None:
    from playwright.sync_api import sync_playwright

    logs = Path(tempfile.mkdtemp(prefix="chatsite-bench-render-"))
    devllm, site, database_url = start_servers(logs)
    variants = [("incremental", None)]
    sources = baseline_sources()
    if sources:
        variants.append(("whole", sources))
    text = long_markdown()
    tokens = len(re.findall(r"\S+", text))
    print(
        f"{platform.node()}, {os.cpu_count()} CPUs, Chromium at {CHROMIUM}, database "
        f"{database_url.split(':')[0]}; an answer of {tokens} tokens "
        f"({len(text)} characters), {DELAY_MS:g} ms apart",
        flush=True,
    )
    print_heading()
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            for throttle in THROTTLES:
                for label, variant_sources in variants:
                    result = stream_once(browser, site.url, variant_sources, throttle)
                    rows.append(summarise(label, throttle, result))
                    print_row(rows[-1])
            browser.close()
    finally:
        site.stop()
        devllm.stop()
    JSON_PATH.parent.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(rows, indent=2))
    print(f"wrote {JSON_PATH}")


if __name__ == "__main__":
    main()
