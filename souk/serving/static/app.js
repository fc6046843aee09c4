// souk search page: search as you type (waiting for IME composition to end), facets, filters, sort,
// pagination, did-you-mean and a "why this result" panel. Talks only to this server's API.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const key = params.get("key");  // a search key, when the server requires one
const state = { q: params.get("q") || "", filters: params.getAll("filter"), sort: params.get("sort") || "",
                page: Number(params.get("page") || 1), size: 10, pipeline: params.get("pipeline") || "keyword" };
let config = null, composing = false, timer = null, seq = 0, lastHits = [], dismissed = null;

function api(path) {
  return fetch(path, { headers: key ? { Authorization: "Bearer " + key } : {} }).then(async (r) => {
    const body = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  });
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else if (k === "html") node.innerHTML = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  children.forEach((c) => c && node.append(c));
  return node;
}

function syncUrl() {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  state.filters.forEach((f) => p.append("filter", f));
  if (state.sort) p.set("sort", state.sort);
  if (state.page > 1) p.set("page", state.page);
  if (state.pipeline !== "keyword") p.set("pipeline", state.pipeline);
  if (key) p.set("key", key);
  history.replaceState(null, "", "?" + p.toString());
}

async function search() {
  const mine = ++seq;
  const p = new URLSearchParams({ q: state.q, page: state.page, size: state.size, pipeline: state.pipeline, explain: "true" });
  state.filters.forEach((f) => p.append("filter", f));
  config.keyword_fields.forEach((f) => p.append("facet", f));
  config.number_fields.slice(0, 1).forEach((f) => p.append("facet", f));
  if (state.sort) p.set("sort", state.sort);
  if (window.soukClicks && soukClicks.session) p.set("session", soukClicks.session);  // events.js
  syncUrl();
  try {
    const res = await api("/search?" + p.toString());
    if (mine === seq) render(res);
  } catch (err) {
    if (mine === seq) { $("summary").innerHTML = ""; $("summary").append(el("span", { class: "error", text: err.message })); $("results").replaceChildren(); }
  }
}

function render(res) {
  lastHits = res.hits;
  if (window.soukClicks) soukClicks.shown(res);  // events.js reports clicks against res.search_id
  const pages = Math.max(1, Math.ceil(res.total / state.size));
  $("summary").textContent = `${res.total.toLocaleString()} results · ${res.took_ms.toFixed(1)} ms`;
  const dym = $("did-you-mean");
  const rewrote = res.searched && res.searched !== state.q;
  const instead = res.suggestions || [];  // nothing matched: queries that find something
  dym.hidden = !res.did_you_mean && !rewrote && !instead.length;
  if (instead.length && !res.did_you_mean) {
    dym.replaceChildren("No results. Try ", ...instead.flatMap((q, i) => [i ? ", " : "",
      el("a", { href: "#", text: q, onclick: (e) => { e.preventDefault(); setQuery(q); } })]), ".");
  } else if (rewrote) {
    dym.replaceChildren("Showing results for ", el("strong", { text: res.searched }), ".");
  } else if (res.did_you_mean) {
    dym.replaceChildren("Did you mean ", el("a", { href: "#", text: res.did_you_mean, onclick: (e) => { e.preventDefault(); setQuery(res.did_you_mean); } }), "?");
  }
  const relaxed = $("relaxed");  // fewer products hold every word: say which words these results may lack
  const partial = res.partial || 0;  // a long query: products holding only some of its words follow the matches
  relaxed.hidden = !(res.dropped && res.dropped.length) && !partial;
  if (res.dropped && res.dropped.length) {
    relaxed.replaceChildren("Too few results have every word; showing results without ",
      ...res.dropped.flatMap((w, i) => [i ? ", " : "", el("strong", { text: w })]),
      partial ? `, then ${partial.toLocaleString()} holding only some of your words.` : ".");
  } else if (partial) {
    relaxed.replaceChildren(`The last ${partial.toLocaleString()} results hold only some of your words.`);
  }
  $("results").replaceChildren(...res.hits.map(renderHit));
  $("page-label").textContent = `Page ${state.page} of ${pages}`;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = state.page >= pages;
  renderFacets(res.facets);
  renderActive();
}

function field(hit, name) {
  const h = hit.highlights[name];
  if (h) return el("span", { html: h });  // the server escapes text and adds <mark> only
  const v = hit.doc[name];
  return v === undefined || v === null || v === "" ? null : el("span", { text: Array.isArray(v) ? v.join(", ") : String(v) });
}

const SUFFIX_UNITS = ["元", "円", "kr", "zł", "Fr."];
// A number with its field's unit from the schema: money with two decimals and its symbol or code
// (¥1,299.00, 1,299.50 EUR), other units after the number, no unit a plain number (never a made-up "$").
function formatNumber(value, name) {
  const unit = (config.units || {})[name];
  if (unit && (config.currency_fields || []).includes(name)) {
    const amount = Number(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    if (/^[A-Z]{3}$/.test(unit)) return `${amount} ${unit}`;
    return SUFFIX_UNITS.includes(unit) ? amount + unit : unit + amount;
  }
  const n = Number(value).toLocaleString("en-US", { maximumFractionDigits: 2 });
  return unit ? `${n} ${unit}` : n;
}

function renderHit(hit, i) {
  const [first, second] = config.text_fields;
  const title = field(hit, first) || el("span", { text: hit.id });
  const pf = config.price_field;
  const price = pf && hit.doc[pf] != null ? el("div", { class: "price", text: formatNumber(hit.doc[pf], pf) }) : el("div");
  const meta = config.keyword_fields.map((f) => hit.doc[f] != null ? `${f}: ${[].concat(hit.doc[f]).join(", ")}` : null).filter(Boolean).join(" · ");
  const why = el("button", { class: "why", type: "button", text: "why this result?", onclick: () => showWhy(i) });
  return el("li", { class: "hit" },
    el("div", {}, el("h2", {}, title), second ? el("div", { class: "alt" }, field(hit, second)) : null),
    price,
    el("div", { class: "meta" }, meta + " ", hit.collapsed ? el("span", { class: "collapsed", text: `+${hit.collapsed} similar` }) : null, " ", why));
}

function showWhy(i) {
  const hit = lastHits[i];
  $("why-body").textContent = JSON.stringify({ id: hit.id, score: hit.score, stages: hit.explain }, null, 2);
  $("why").hidden = false;
}

function renderFacets(facets) {
  const aside = $("facets");
  aside.replaceChildren();
  for (const [name, facet] of Object.entries(facets || {})) {
    aside.append(el("h3", { text: name }));
    if (facet.buckets && facet.hierarchy) {
      renderLevels(aside, name, facet);
    } else if (facet.buckets) {
      const ul = el("ul", { "data-facet": name });
      for (const [value, count] of facet.buckets) {
        const expr = `${name}=${value}`;
        const on = state.filters.includes(expr);
        ul.append(el("li", {}, el("button", { type: "button", "aria-pressed": String(on), "data-value": value,
          onclick: () => toggleFilter(expr) }, el("span", { text: value }), el("span", { class: "count", text: count }))));
      }
      aside.append(ul);
    } else if (facet.min != null) {
      const lo = el("input", { type: "number", step: "any", placeholder: Number(facet.min).toFixed(1), "aria-label": `${name} from` });
      const hi = el("input", { type: "number", step: "any", placeholder: Number(facet.max).toFixed(1), "aria-label": `${name} to` });
      const go = el("button", { type: "button", text: "Go", onclick: () => {
        state.filters = state.filters.filter((f) => !f.startsWith(name + ">=") && !f.startsWith(name + "<="));
        if (lo.value) state.filters.push(`${name}>=${lo.value}`);
        if (hi.value) state.filters.push(`${name}<=${hi.value}`);
        state.page = 1; search();
      } });
      aside.append(el("div", { class: "range" }, lo, "–", hi, go));
    }
  }
}

// A category hierarchy as a drill-down: the chosen path as breadcrumbs (each level clickable, "All"
// clears it), then the children of the chosen level (or the top level) with their counts.
function renderLevels(aside, name, facet) {
  const sep = ` ${facet.hierarchy.separator} `;
  const chosen = facet.hierarchy.parent;
  if (chosen) {
    const crumbs = el("nav", { class: "crumbs", "data-crumbs": name, "aria-label": `${name} path` },
      el("button", { type: "button", "data-path": "", text: "All", onclick: () => setLevel(name, null) }));
    const levels = chosen.split(sep);
    levels.forEach((level, i) => {
      const path = levels.slice(0, i + 1).join(sep);
      crumbs.append(" › ", el("button", { type: "button", "data-path": path, "aria-current": String(i === levels.length - 1),
        text: level, onclick: () => setLevel(name, path) }));
    });
    aside.append(crumbs);
  }
  const ul = el("ul", { "data-facet": name, "data-level": String(facet.hierarchy.level) });
  for (const [value, count] of facet.buckets) {
    ul.append(el("li", {}, el("button", { type: "button", "data-value": value, onclick: () => setLevel(name, value) },
      el("span", { text: value.split(sep).pop() }), el("span", { class: "count", text: count }))));
  }
  aside.append(ul);
}

function setLevel(name, path) {
  state.filters = state.filters.filter((f) => !f.startsWith(name + "="));
  if (path) state.filters.push(`${name}=${path}`);
  state.page = 1;
  search();
}

function renderActive() {
  $("active-filters").replaceChildren(...state.filters.map((f) =>
    el("button", { class: "chip", type: "button", title: "Remove filter", text: f + " ×", onclick: () => toggleFilter(f) })));
}

function toggleFilter(expr) {
  state.filters = state.filters.includes(expr) ? state.filters.filter((f) => f !== expr) : [...state.filters, expr];
  state.page = 1;
  search();
}

function setQuery(q) { $("q").value = q; state.q = q; state.page = 1; hideSuggestions(); search(); }

function scheduleSearch() {
  if (composing) return;  // an input method is still composing (pinyin, zhuyin...): wait for the characters
  clearTimeout(timer);
  timer = setTimeout(() => { state.q = $("q").value; state.page = 1; search(); suggest(state.q); }, 180);
}

async function suggest(prefix) {
  if (!config.suggest || prefix.trim().length < 1) return hideSuggestions();
  try {
    const res = await api("/suggest?" + new URLSearchParams({ q: prefix, k: 6 }));
    if (prefix !== $("q").value || prefix === dismissed) return;  // typed on, or closed with Escape
    const list = $("suggestions");
    list.replaceChildren(...res.suggestions.map((s) => el("li", { role: "option", text: s.text, onmousedown: (e) => { e.preventDefault(); setQuery(s.text); } })));
    list.hidden = !res.suggestions.length || document.activeElement !== $("q");
  } catch { hideSuggestions(); }
}
function hideSuggestions() { $("suggestions").hidden = true; }

async function start() {
  config = await api("/config");
  for (const f of config.number_fields) {
    $("sort").append(el("option", { value: f, text: `${f} ↑` }), el("option", { value: "-" + f, text: `${f} ↓` }));
  }
  for (const p of config.pipelines) $("pipeline").append(el("option", { value: p, text: p }));
  $("sort").value = state.sort;
  $("pipeline").value = state.pipeline;
  const typed = $("q").value;  // what a shopper typed while /config loaded: kept and searched, not overwritten
  if (typed && typed !== state.q) { state.q = typed; state.page = 1; } else $("q").value = state.q;
  $("q").addEventListener("compositionstart", () => { composing = true; });
  $("q").addEventListener("compositionend", () => { composing = false; scheduleSearch(); });
  $("q").addEventListener("input", scheduleSearch);
  $("q").addEventListener("blur", () => setTimeout(hideSuggestions, 100));
  $("q").addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    dismissed = $("q").value;
    if (!$("suggestions").hidden) e.preventDefault();  // first Escape closes the list, not clearing the box
    hideSuggestions();
  });
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); setQuery($("q").value); });
  $("sort").addEventListener("change", () => { state.sort = $("sort").value; state.page = 1; search(); });
  $("pipeline").addEventListener("change", () => { state.pipeline = $("pipeline").value; state.page = 1; search(); });
  $("prev").addEventListener("click", () => { state.page -= 1; search(); scrollTo(0, 0); });
  $("next").addEventListener("click", () => { state.page += 1; search(); scrollTo(0, 0); });
  $("why-close").addEventListener("click", () => { $("why").hidden = true; });
  $("why").addEventListener("click", (e) => { if (e.target === $("why")) $("why").hidden = true; });
  search();
}
start().catch((err) => { $("summary").textContent = "souk: " + err.message; });
