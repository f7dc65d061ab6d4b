// The control tower's glue: what an action answered, empty fields left out of the JSON the API gets, charts.
"use strict";

function flash(text, error) {
  const box = document.getElementById("flash");
  box.innerHTML = "";
  const p = document.createElement("p");
  p.textContent = text;
  if (error) p.className = "error";
  box.appendChild(p);
}

document.addEventListener("htmx:configRequest", (e) => {
  // A select left on "best node" or "unfulfilled units" means: not that field at all.
  const params = e.detail.parameters;
  for (const key of Array.from(params.keys ? params.keys() : Object.keys(params))) {
    const value = params.get ? params.get(key) : params[key];
    if (value === "") { params.delete ? params.delete(key) : delete params[key]; }
  }
});

document.addEventListener("htmx:afterRequest", (e) => {
  const elt = e.detail.elt;
  if (!elt.dataset || elt.dataset.done === undefined) return;  // a page refresh, not an action
  const xhr = e.detail.xhr;
  if (e.detail.successful) {
    let status = "";
    try { const body = JSON.parse(xhr.responseText); status = body.status ? ` — now ${body.status}` : ""; } catch (_) {}
    flash(`${elt.dataset.done}${status}`, false);
    if (elt.dataset.reload) { setTimeout(() => window.location.reload(), 600); }
    else { document.body.dispatchEvent(new Event("refresh")); }
  } else {
    let detail = xhr.statusText;
    try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (_) {}
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    flash(`${xhr.status}: ${detail}`, true);
    if (elt.type === "checkbox") elt.checked = !elt.checked;  // the switch shows what is in force
  }
});

function pct(v) { return v === null || v === undefined ? null : Math.round(v * 1000) / 10; }

function lineChart(id, labels, sets, yTitle) {
  const canvas = document.getElementById(id);
  if (!canvas) return;
  new Chart(canvas, {
    type: "line",
    data: { labels, datasets: sets.map(([label, data, color, axis]) => ({
      label, data, borderColor: color, backgroundColor: color, spanGaps: true, tension: 0.2, yAxisID: axis || "y" })) },
    options: { maintainAspectRatio: false, animation: false, interaction: { mode: "index", intersect: false },
               scales: { y: { beginAtZero: true, title: { display: !!yTitle, text: yTitle } } } },
  });
}

function kpiCharts() {
  const box = document.getElementById("charts");
  if (!box) return;
  const s = JSON.parse(box.dataset.series);
  const days = s.map((d) => d.day);
  lineChart("c-rates", days, [
    ["fulfillment rate %", s.map((d) => pct(d.order_fulfillment_rate)), "#1b7f3b"],
    ["on time % (first promise)", s.map((d) => pct(d.delivered ? d.on_time / d.delivered : null)), "#1f5fbf"],
    ["cancellation %", s.map((d) => pct(d.cancellation_rate)), "#b3261e"],
    ["split %", s.map((d) => pct(d.split_rate)), "#a56100"]], "%");
  new Chart(document.getElementById("c-orders"), {
    type: "bar",
    data: { labels: days, datasets: [
      { label: "placed", data: s.map((d) => d.orders), backgroundColor: "#9fb7e0" },
      { label: "delivered", data: s.map((d) => d.delivered), backgroundColor: "#1b7f3b" },
      { label: "cancelled", data: s.map((d) => d.cancelled), backgroundColor: "#b3261e" }] },
    options: { maintainAspectRatio: false, animation: false },
  });
  lineChart("c-times", days, [
    ["minutes to release", s.map((d) => d.median_minutes_to_release), "#1f5fbf"],
    ["hours pick to ship", s.map((d) => d.median_hours_pick_to_ship), "#a56100"]]);
  lineChart("c-cost", days, [
    ["cost per order", s.map((d) => d.cost_per_order === null ? null : Number(d.cost_per_order)), "#14213d"],
    ["median slack (days)", s.map((d) => d.median_promise_slack_days), "#1b7f3b"]]);
}

function networkMap() {
  const canvas = document.getElementById("map");
  if (!canvas) return;
  const points = JSON.parse(canvas.dataset.points);
  const colour = (p) => p.load === null ? "#8a93a6" : p.load < 0.7 ? "#1b7f3b" : p.load < 0.95 ? "#d08a00" : "#b3261e";
  // Each node's id beside its bubble (Chart.js draws no point labels of its own).
  const labels = { id: "nodeLabels", afterDatasetsDraw(chart) {
    const ctx = chart.ctx;
    ctx.save();
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillStyle = "#1d2330";
    chart.getDatasetMeta(0).data.forEach((el, i) => {
      ctx.fillText(points[i].id, el.x + (el.options.radius || 5) + 3, el.y + 4);
    });
    ctx.restore();
  } };
  new Chart(canvas, {
    type: "bubble",
    plugins: [labels],
    data: { datasets: [{ label: "nodes", data: points.map((p) => ({ x: p.x, y: p.y, r: 5 + Math.min(Math.sqrt(p.backlog) * 3, 25), p })),
      backgroundColor: points.map((p) => p.enabled ? colour(p) + "b0" : "transparent"),
      borderColor: points.map(colour), borderWidth: 2 }] },
    options: { maintainAspectRatio: false, animation: false, plugins: { legend: { display: false },
      tooltip: { callbacks: { label: (c) => { const p = c.raw.p;
        return `${p.id} (${p.type}) · backlog ${p.backlog} · load ${p.load === null ? "no limit" : Math.round(p.load * 100) + "%"}${p.enabled ? "" : " · disabled"}`; } } } },
      scales: { x: { grace: "6%", title: { display: true, text: "longitude" } },
                y: { grace: "4%", title: { display: true, text: "latitude" } } } },
  });
}

document.addEventListener("DOMContentLoaded", () => { kpiCharts(); networkMap(); });
