// souk analytics page: GET /analytics/data (admin key from ?key=) rendered as tables and the server's SVG plots.
"use strict";
(async () => {
  const params = new URLSearchParams(location.search);
  const key = params.get("key");
  const q = params.get("since") ? "?" + new URLSearchParams({ since: params.get("since") }) : "";
  const totals = document.getElementById("totals");
  let data;
  try {
    const r = await fetch("/analytics/data" + q, { headers: key ? { Authorization: "Bearer " + key } : {} });
    data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
  } catch (err) {
    totals.textContent = "analytics: " + err.message + " (open /analytics?key=ADMIN_KEY)";
    totals.className = "error";
    return;
  }
  totals.textContent = `${data.searches.toLocaleString()} searches, ${data.clicked_searches.toLocaleString()} with a click`;
  const plots = document.getElementById("plots");
  for (const [name, svg] of Object.entries(data.plots)) {
    const box = document.createElement("figure");
    box.dataset.plot = name;
    box.innerHTML = svg;  // server-made SVG; every label in it is escaped
    plots.append(box);
  }
  const tables = document.getElementById("tables");
  const sections = [["top_queries", "Top queries"], ["zero_result_queries", "Zero-result queries"],
    ["lowest_ctr_queries", "Lowest click-through"], ["by_position", "Click-through by position"],
    ["by_pipeline", "By pipeline (CTR, MRR of the first click)"], ["disagreements", "Clicks disagree with the ranking"],
    ["searches_per_day", "Searches per day"]];
  for (const [name, title] of sections) {
    const rows = data[name] || [];
    const h = document.createElement("h2");
    h.textContent = title;
    const table = document.createElement("table");
    table.id = name;
    if (rows.length) {
      const head = table.createTHead().insertRow();
      for (const col of Object.keys(rows[0])) { const th = document.createElement("th"); th.textContent = col; head.append(th); }
      const body = table.createTBody();
      for (const row of rows) {
        const tr = body.insertRow();
        for (const v of Object.values(row)) tr.insertCell().textContent = v === null ? "" : String(v);
      }
    } else {
      table.createTBody().insertRow().insertCell().textContent = "none";
    }
    tables.append(h, table);
  }
})();
