"""The HTML `ralph report`: one self-contained file, charts drawn as inline SVG (no script, no
CDN, no request of any kind): cost over time, tasks landed per hour, a lane per worker."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from ralph.durations import format_duration
from ralph.ops.stats import cost_text

W, H, PAD = 720, 180, 36
OUTCOME_COLOUR = {"success": "#2e7d32", "no_changes": "#66bb6a", "reconciled": "#66bb6a"}
WASTE_COLOUR = {"merge_conflict": "#f9a825", "rate_limited": "#8e24aa", "running": "#1e88e5"}
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:760px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:2px 8px 2px 0;
vertical-align:top}th{border-bottom:1px solid #ccc}code{font-size:12px}
.figs td:first-child{color:#555;width:14em}svg{background:#fafafa;border:1px solid #eee}
.dim{color:#777}.err{color:#b71c1c;font-size:12px}
"""


def _dur(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def headline(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary figures, as (label, value) pairs shared by every format."""
    waste = ", ".join(f"{n} {why}" for why, n in r["wasted_by_reason"].items()) or "none"
    par = "-" if r["parallelism"] is None else f"{r['parallelism']:.2f}"
    return [
        ("Tasks landed", str(r["tasks"]["landed"])),
        ("Tasks failed", str(r["tasks"]["failed"])),
        ("Still retrying", str(r["tasks"]["retrying"])),
        (
            "Agent launches",
            f"{r['launches']} ({r['attempts']} counted attempts"
            + (f", {r['resolutions']} conflict resolutions" if r.get("resolutions") else "")
            + ")",
        ),
        ("Wasted launches", f"{r['wasted']} ({waste})"),
        ("Cost", cost_text(r["cost_usd"], r["unknown_cost"])),
        ("Agent time / wall time", f"{_dur(r['agent_s'])} / {_dur(r['wall_s'])} = {par}x"),
    ]


def _t(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def _axis(x0: float, x1: float) -> str:
    """Five time ticks under a chart spanning epoch seconds x0..x1."""
    out = []
    for i in range(5):
        ts = x0 + (x1 - x0) * i / 4
        x = PAD + (W - 2 * PAD) * i / 4
        out.append(
            f'<text x="{x:.1f}" y="{H - 8}" font-size="10" text-anchor="middle">{_t(ts)}</text>'
        )
    return "".join(out)


def cost_chart(points: list[dict[str, Any]]) -> str:
    """Cumulative known cost against time."""
    if not points:
        return '<p class="dim">No attempt reported a cost.</p>'
    x0, x1 = points[0]["ts"], max(points[-1]["ts"], points[0]["ts"] + 1)
    top = max(p["cost_usd"] for p in points) or 1.0

    def xy(p: dict[str, Any]) -> str:
        x = PAD + (W - 2 * PAD) * (p["ts"] - x0) / (x1 - x0)
        y = H - PAD - (H - 2 * PAD) * p["cost_usd"] / top
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(p) for p in points)
    return (
        f'<svg id="chart-cost" role="img" aria-label="cost over time" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg">'
        f'<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{line}"/>'
        f'<text x="{PAD}" y="14" font-size="11">${top:.4f}</text>{_axis(x0, x1)}</svg>'
    )


def landed_chart(hours: list[dict[str, Any]]) -> str:
    """Bars: tasks landed per hour."""
    if not hours:
        return '<p class="dim">No task landed.</p>'
    top = max(h["landed"] for h in hours) or 1
    step = min(60.0, (W - 2 * PAD) / len(hours))
    bars = []
    for i, h in enumerate(hours):
        height = (H - 2 * PAD) * h["landed"] / top
        x, y = PAD + i * step, H - PAD - height
        bars.append(
            f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{max(1.0, step - 4):.1f}" '
            f'height="{height:.1f}" fill="#2e7d32"><title>{escape(h["hour"])}: '
            f"{h['landed']}</title></rect>"
            f'<text x="{x + step / 2:.1f}" y="{H - 8}" font-size="10" text-anchor="middle">'
            f"{_t(h['ts'])}</text>"
        )
    return (
        f'<svg id="chart-landed" role="img" aria-label="tasks landed per hour" width="{W}" '
        f'height="{H}" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg">'
        f'{"".join(bars)}<text x="{PAD}" y="14" font-size="11">{top} per hour</text></svg>'
    )


def lanes_chart(lanes: list[dict[str, Any]]) -> str:
    """Gantt: one lane per worker, one bar per launch, coloured by how it ended."""
    spans = [s for lane in lanes for s in lane["spans"]]
    if not spans:
        return '<p class="dim">No agent ran.</p>'
    x0 = min(s["start"] for s in spans)
    x1 = max(max(s["end"] for s in spans), x0 + 1)
    lane_h, label_w = 22, 110
    height = lane_h * len(lanes) + 30
    rows = []
    for n, lane in enumerate(lanes):
        y = 6 + n * lane_h
        rows.append(f'<text x="4" y="{y + 14}" font-size="11">{escape(lane["worker"][:16])}</text>')
        for s in lane["spans"]:
            x = label_w + (W - label_w - 10) * (s["start"] - x0) / (x1 - x0)
            w = max(1.5, (W - label_w - 10) * (s["end"] - s["start"]) / (x1 - x0))
            colour = OUTCOME_COLOUR.get(s["outcome"]) or WASTE_COLOUR.get(s["outcome"], "#c62828")
            rows.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{lane_h - 6}" '
                f'fill="{colour}"><title>{escape(s["task"])}: {escape(s["outcome"])}</title></rect>'
            )
    rows.append(f'<text x="{label_w}" y="{height - 6}" font-size="10">{_t(x0)}</text>')
    rows.append(
        f'<text x="{W - 10}" y="{height - 6}" font-size="10" text-anchor="end">{_t(x1)}</text>'
    )
    return (
        f'<svg id="chart-lanes" role="img" aria-label="agents per worker" width="{W}" '
        f'height="{height}" viewBox="0 0 {W} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"{''.join(rows)}</svg>"
    )


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def render_html(r: dict[str, Any]) -> str:
    """The whole page."""
    figs = _table(["", ""], [[escape(k), escape(v)] for k, v in headline(r)], "figs").replace(
        "<tr><th></th><th></th></tr>", ""
    )

    def task_rows(items: list[dict[str, Any]]) -> list[list[str]]:
        return [
            [
                f"<code>{escape((t['commit'] or '-')[:10])}</code>",
                escape(t["id"]),
                escape(_dur(t["duration_s"])),
                f"{t['attempts']}/{t['launches']}",
                escape(cost_text(t["cost_usd"], t["unknown_cost"])),
                escape(t["agent"] or "-"),
                escape(t["title"]),
            ]
            for t in items
        ]

    head = ["Commit", "Task", "Time", "Att/Launch", "Cost", "Agent", "Title"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width'>",
        f"<title>ralph report until {escape(r['until'] or '')}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>ralph report{escape(' of run ' + r['run'] if r.get('run') else '')}</h1>"
        f"<p class='dim'>{escape(r['since'] or 'all attempts')} to "
        f"{escape(r['until'] or '')}</p>",
        figs,
        "<h2>Cost over time</h2>",
        cost_chart(r["cost_over_time"]),
        "<h2>Tasks landed per hour</h2>",
        landed_chart(r["landed_per_hour"]),
        "<h2>Workers</h2>",
        lanes_chart(r["lanes"]),
    ]
    if r["landed"]:
        parts += ["<h2>Landed</h2>", _table(head, task_rows(r["landed"]))]
    for title, items in (("Failed", r["failed"]), ("Still retrying", r["retrying"])):
        if items:
            rows = [
                [
                    escape(t["id"]),
                    f"{t['attempts']}/{t['launches']}",
                    f"<code>{escape(t['patch'] or '-')}</code>",
                    f"<span class='err'>{escape((t['last_error'] or '-')[:300])}</span>",
                ]
                for t in items
            ]
            parts += [
                f"<h2>{title}</h2>",
                _table(["Task", "Att/Launch", "Patch", "Last error"], rows),
            ]
    parts += [
        "<h2>Cost by agent and model</h2>",
        _table(
            ["Agent", "Model", "Attempts", "Launches", "Cost"],
            [
                [
                    escape(a["agent"]),
                    escape(a["model"]),
                    str(a["attempts"]),
                    str(a["launches"]),
                    escape(cost_text(a["cost_usd"], a["unknown_cost"])),
                ]
                for a in r["cost_by_model"]
            ],
        ),  # fmt: skip
        "<h2>Slowest tasks</h2>",
        _table(head, task_rows(r["slowest"])),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
