"""reports/<run-id>/index.html: one self-contained page (inline CSS, inline SVG, no network).

A table of cases (outcome, headline metric, change against the baseline, accuracy,
interference (UNTRUSTED with its reason when the baseline was not alone), GPU busy of the
main's slice, background health, the case's warnings) and one bar chart per benchmark and headline metric.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping

from pytest_mig.io import write_atomic
from pytest_mig.report.busy import busy_text

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.sim{background:#fde8e8;color:#9b1c1c;padding:6px 10px;border:1px solid #f5b5b5;font-weight:600}
.meta{color:#555;margin:4px 0 12px}
table{border-collapse:collapse;width:100%} th,td{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#f3f4f6;cursor:pointer;user-select:none}
tr.passed td.outcome{color:#046c4e;font-weight:600} tr.failed td.outcome,tr.error td.outcome
{color:#9b1c1c;font-weight:600} tr.skipped td.outcome{color:#8a6d00}
td.num{text-align:right;font-variant-numeric:tabular-nums} .bad{color:#9b1c1c;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:16px} .chart{border:1px solid #ddd;padding:8px}
.chart h3{font-size:14px;margin:0 0 6px}
"""

SCRIPT = """
(function(){
  var table=document.getElementById('cases');
  table.querySelectorAll('th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
      var asc=th.dataset.sort!=='asc'; th.dataset.sort=asc?'asc':'desc';
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.v||a.cells[col].textContent,
            y=b.cells[col].dataset.v||b.cells[col].textContent;
        var nx=parseFloat(x), ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
        return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  var charts=document.querySelectorAll('svg.bars').length;
  document.getElementById('js-status').textContent=
    table.tBodies[0].rows.length+' case(s), '+charts+' chart(s)';
  document.body.dataset.ready='yes';
})();
"""

COLORS = {"passed": "#31a36b", "failed": "#d64545", "error": "#d64545", "skipped": "#c9a227"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def health_text(rec: Mapping[str, Any]) -> tuple[str, bool]:
    """('3/3 healthy' or '2/3 healthy: problems', ok) or ('-', True) without backgrounds."""
    health = rec.get("health") or []
    if not health:
        return "-", True
    good = sum(1 for h in health if h.get("healthy"))
    problems = [f"{h.get('name')}: {p}" for h in health for p in h.get("problems") or []]
    text = f"{good}/{len(health)} healthy"
    if problems:
        text += ": " + "; ".join(problems)
    return text, good == len(health)


def interference_text(value: Any) -> str:
    if value is None or value == {}:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.1%}"  # 1 - hetero/isolated (hetero.interference)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_num(v) if isinstance(v, (int, float)) else v}"
                         for k, v in value.items())
    return str(value)


def untrusted_text(rec: Mapping[str, Any]) -> str:
    """'UNTRUSTED 9.6%: why' when the interference came from a baseline not verified alone."""
    bad = rec.get("interference_untrusted")
    if not isinstance(bad, Mapping):
        return ""
    value = bad.get("value")
    shown = f"{value:.1%}" if isinstance(value, (int, float)) else "n/a"
    return f"UNTRUSTED {shown}: {bad.get('reason', '')}"


def busy_cell(rec: Mapping[str, Any]) -> str:
    """GPU busy of the main (report/busy.py), its source as the cell's tooltip."""
    busy = rec.get("gpu_busy") or {}
    value = busy.get("value") if isinstance(busy, Mapping) else None
    return (f'<td class="num busy" data-v="{"" if value is None else value}" '
            f'title="{_e(busy.get("source", "")) if isinstance(busy, Mapping) else ""}">'
            f"{_e(busy_text(busy if isinstance(busy, Mapping) else None))}</td>")


def warnings_text(rec: Mapping[str, Any]) -> str:
    return "; ".join(map(str, rec.get("warnings") or [])) or "-"


def accuracy_text(res: Mapping[str, Any], fraction: float | None = None) -> str:
    """e.g. `mAP 22.1 (target 21.9 = 99% of the FP32 reference 22.1)`: the metric by name,
    the target and the reference it is a fraction of."""
    if res.get("accuracy") is None:
        return "-"
    target = res.get("accuracy_target")
    tail = ""
    if target is not None:
        tail = f" (target {target:.4g}"
        if fraction:
            tail += f" = {fraction:.1%} of reference {target / fraction:.4g}"
        tail += ")"
    return f"{res.get('accuracy_metric') or 'accuracy'} {res['accuracy']:.4g}{tail}"


def _change_cell(comparisons: list[Mapping[str, Any]]) -> tuple[str, str]:
    """(html, sort value) of the headline comparison."""
    if not comparisons:
        return "-", ""
    c = comparisons[0]
    if c.get("change_pct") is None:
        return "no baseline", ""
    cls = ' class="bad"' if c.get("regressed") else ""
    text = f"{c['change_pct']:+.1f}% vs {_num(c.get('baseline'))}"
    return f"<span{cls}>{_e(text)}</span>", f"{c['change_pct']:.4f}"


def _links(run_dir: Path, rec: Mapping[str, Any]) -> str:
    d = (rec.get("paths") or {}).get("dir")
    if not d:
        return "-"
    folder = Path(d)
    rel = folder.name
    links = [f'<a href="{_e(rel)}/">folder</a>']
    for name in ("timeline.png", "timeline.csv", "main.log"):
        if (run_dir / rel / name).exists():
            links.append(f'<a href="{_e(rel)}/{name}">{name}</a>')
    return " ".join(links)


def rows_html(run_dir: Path, records: list[Mapping[str, Any]],
              comparisons: Mapping[str, list[Mapping[str, Any]]]) -> str:
    out = []
    for rec in records:
        if "case" not in rec:
            out.append(f'<tr class="error"><td colspan="10">{_e(rec)}</td></tr>')
            continue
        res = rec.get("result") or {}
        value = res.get("value")
        metric = f"{res.get('metric')}: {_num(value)}" if value is not None else "-"
        health, ok = health_text(rec)
        change, change_v = _change_cell(list(comparisons.get(rec["case"], [])))
        outcome = str(rec.get("outcome", "?"))
        out.append(
            f'<tr class="{_e(outcome)}" data-case="{_e(rec["case"])}">'
            f'<td class="case">{_e(rec["case"])}</td><td class="outcome">{_e(outcome)}</td>'
            f'<td class="num" data-v="{"" if value is None else value}">{_e(metric)}</td>'
            f'<td class="num" data-v="{change_v}">{change}</td>'
            f"<td>{_e(accuracy_text(res, rec.get('accuracy_fraction')))}</td>"
            + (f'<td class="bad interference">{_e(untrusted_text(rec))}</td>'
               if untrusted_text(rec) else
               f"<td>{_e(interference_text(rec.get('interference')))}</td>")
            + busy_cell(rec)
            + f'<td class="{"" if ok else "bad"}">{_e(health)}</td>'
            f'<td class="{"bad " if rec.get("warnings") else ""}warnings">'
            f"{_e(warnings_text(rec))}</td>"
            f"<td>{_links(run_dir, rec)}</td></tr>")
    return "\n".join(out)


def bar_chart(title: str, bars: list[tuple[str, float, str, float | None]]) -> str:
    """Horizontal SVG bars: (label, value, outcome, baseline or None) each."""
    label_w, bar_w, row_h = 300, 360, 22
    top = 8
    height = top + row_h * len(bars) + 8
    vmax = max([v for _, v, _, _ in bars] + [b for *_, b in bars if b is not None] + [1e-12])
    parts = [f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 220}" '
             f'height="{height}" role="img" aria-label="{_e(title)}">']
    for i, (label, value, outcome, base) in enumerate(bars):
        y = top + i * row_h
        w = max(1.0, value / vmax * bar_w)
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
                     f"{_e(label)}</text>")
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="16" '
                     f'fill="{COLORS.get(outcome, "#888")}"><title>{_e(label)}: {_num(value)}'
                     "</title></rect>")
        bx = None if base is None else label_w + base / vmax * bar_w
        # the value is written past both the bar and the baseline tick, never under the tick
        text_x = max(label_w + w, bx or 0.0) + 5
        text = _num(value) + ("" if base is None else f" (baseline {_num(base)})")
        parts.append(f'<text x="{text_x:.1f}" y="{y + 15}" font-size="12">{_e(text)}</text>')
        if bx is not None:
            parts.append(f'<line class="baseline" x1="{bx:.1f}" x2="{bx:.1f}" y1="{y + 1}" '
                         f'y2="{y + 21}" stroke="#222" stroke-width="2" stroke-dasharray="3,2">'
                         f"<title>baseline {_num(base)}</title></line>")
    parts.append("</svg>")
    return "".join(parts)


def charts_html(records: list[Mapping[str, Any]],
                comparisons: Mapping[str, list[Mapping[str, Any]]]) -> str:
    groups: dict[tuple[str, str], list[tuple[str, float, str, float | None]]] = {}
    for rec in records:
        res = rec.get("result") or {}
        if res.get("value") is None or "case" not in rec:
            continue
        cmp = list(comparisons.get(rec["case"], []))
        base = cmp[0].get("baseline") if cmp else None
        label = rec["case"].removeprefix(f"{rec.get('benchmark')}-")
        groups.setdefault((str(rec.get("benchmark")), str(res.get("metric"))), []).append(
            (label, float(res["value"]), str(rec.get("outcome")), base))
    if not groups:
        return "<p>No headline metrics in this run.</p>"
    charts = [f'<div class="chart"><h3>{_e(bench)}: {_e(metric)}</h3>'
              f'{bar_chart(f"{bench} {metric}", bars)}</div>'
              for (bench, metric), bars in sorted(groups.items())]
    return '<div class="charts">' + "".join(charts) + "</div>"


def render_index(run_dir: Path, header: Mapping[str, Any], records: list[Mapping[str, Any]],
                 comparisons: Mapping[str, list[Mapping[str, Any]]] | None = None) -> str:
    comparisons = comparisons or {}
    counts: dict[str, int] = {}
    for rec in records:
        counts[str(rec.get("outcome", "error"))] = counts.get(str(rec.get("outcome", "error")), 0) + 1
    gpus = header.get("gpus") or []
    gpu_text = ", ".join(f"GPU {g.get('index')}: {g.get('model') or g.get('name')}" for g in gpus)
    sim = ('<p class="sim">SIMULATED GPU: no hardware was used; numbers are not GPU results.</p>'
           if header.get("simulated") else "")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no cases"
    merged = header.get("merged_from") or []  # a `pytest-mig merge` of shard runs
    shards = (f'<p class="meta" id="merged">merged from {len(merged)} run(s): '
              + _e(", ".join(f"{m.get('shard')} ({m.get('cases')} case(s), run "
                             f"{m.get('run_id')})" for m in merged)) + "</p>") if merged else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:">
<title>pytest-mig run {_e(header.get('run_id', ''))}</title><style>{CSS}</style></head>
<body>
<h1>pytest-mig run {_e(header.get('run_id', ''))}</h1>{sim}
<p class="meta">backend {_e(header.get('backend', '?'))}, driver {_e('n/a (simulated GPU)' if header.get('simulated') else header.get('driver') or '?')}; {_e(gpu_text or 'no GPUs')};
harness {_e(header.get('harness', '?'))}; {_e(summary)}. <span id="js-status"></span></p>{shards}
<h2>Cases</h2>
<table id="cases"><thead><tr><th>case</th><th>outcome</th><th>headline metric</th>
<th>vs baseline</th><th>accuracy</th><th>interference</th><th>GPU busy</th><th>background health</th><th>warnings</th><th>files</th></tr></thead>
<tbody>
{rows_html(run_dir, list(records), comparisons)}
</tbody></table>
<h2>Headline metric per benchmark</h2>
{charts_html(list(records), comparisons)}
<script>{SCRIPT}</script>
</body></html>
"""


def write_index(run_dir: Path, header: Mapping[str, Any], records: list[Mapping[str, Any]],
                comparisons: Mapping[str, list[Mapping[str, Any]]] | None = None) -> Path:
    path = run_dir / "index.html"
    write_atomic(path, render_index(run_dir, header, records, comparisons))
    return path
