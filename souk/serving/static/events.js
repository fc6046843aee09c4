// souk search page: report clicks on results to POST /events with the search's search_id (kept apart from
// app.js, which calls soukClicks.shown(res) after each render and sends soukClicks.session with searches).
"use strict";
window.soukClicks = (() => {
  const key = new URLSearchParams(location.search).get("key");
  let session = null;
  try {
    session = sessionStorage.getItem("souk-session");
    if (!session) { session = "p-" + Math.random().toString(36).slice(2, 14); sessionStorage.setItem("souk-session", session); }
  } catch { session = null; }
  let last = null;
  const sent = [];

  function send(events) {
    const headers = { "Content-Type": "application/json" };
    if (key) headers.Authorization = "Bearer " + key;
    return fetch("/events", { method: "POST", keepalive: true, headers, body: JSON.stringify(events) })
      .then((r) => { if (r.ok) sent.push(...events); return r.ok; })
      .catch(() => false);
  }

  document.addEventListener("click", (e) => {
    const li = e.target.closest ? e.target.closest("#results li.hit") : null;
    if (!li || !last || e.target.closest("button.why")) return;
    const i = Array.prototype.indexOf.call(li.parentNode.children, li);
    const hit = last.hits[i];
    if (!hit) return;
    li.dataset.clicked = "true";
    send([{ search_id: last.search_id, type: "click", id: hit.id, position: (last.offset || 0) + i + 1, ...(session ? { session } : {}) }]);
  }, true);

  return { shown(res) { last = res && res.search_id ? res : null; }, session, sent };
})();
