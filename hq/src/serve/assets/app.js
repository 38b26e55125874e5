// callbox headquarters: one page, views by the URL's hash, text in English
// and Chinese. Talks only to /api on the same origin; every change carries
// the session's CSRF token.
"use strict";

const TEXT = {
  en: {
    login: "Log in", name: "User", password: "Password", logout: "Log out",
    fleet: "Fleet", alarms: "Alarms", calls: "Calls", reports: "Reports", audit: "Audit log",
    site: "Site", box: "Box", state: "State", firmware: "Firmware", seen: "Last seen",
    calls_now: "Calls now", waiting: "Waiting", backlog: "Backlog", lines: "Lines",
    alarms_open: "Alarms open", boxes: "Boxes", online: "Online", offline: "Offline",
    lines_down: "Boxes with lines down", all: "All", search: "Search", problems: "Only problems",
    show: "Show", period: "Period", hours_24: "Last 24 hours", minutes_15: "Last 15 minutes", days_7: "Last 7 days", days_30: "Last 30 days",
    ch_calls: "Calls in progress", ch_waiting: "Callers waiting", ch_cpu: "CPU %", ch_disk: "Disk free %", ch_backlog: "Records not yet delivered",
    line: "Line", reason: "Reason", agent: "Agent", queue: "Queue",
    code: "Code", severity: "Severity", message: "Message", raised: "Raised", cleared: "Cleared",
    acked: "Acknowledged", ack: "Acknowledge", open_only: "Open only", by: "by",
    from: "From", to: "To", dialled: "Dialled number", caller: "Caller", when: "When",
    disposition: "Outcome", duration: "Duration", wrap: "Wrap-up", survey: "Survey",
    day: "Day", answered: "Answered", abandoned: "Abandoned", wrapped: "Wrapped up",
    surveyed: "Survey answers", avg: "Average score", codes: "Conversions by wrap-up code",
    scores: "Survey scores", csv: "Download CSV", user: "User", action: "Action", address: "Address",
    detail: "Detail", none: "Nothing to show.", no_box: "No such box.", limit: "Showing the first {n}.",
    back: "Fleet", telemetry_at: "Telemetry", no_data: "No samples in this period.",
    config: "Configuration", load_config: "Read the box's config", check: "Check", push: "Push as the next version",
    version: "Version", box_answer: "The box's answer", no_changes: "No changes.", diff: "Changes",
    restart_needed: "Apply with a restart of the box", restart: "Restart the box", restart_sure: "Restart this box now? Calls in progress end.",
    a_pause: "Pause", a_unpause: "Available", a_logout: "Log out", actions: "Actions", sent_ok: "Done.",
    recording: "Recording",
    checks: "Anti-counterfeit checks", genuine: "Genuine", not_found: "Not found", diversions: "Possible diversions",
    product_region: "Product region", caller_region: "Caller region",
    per_day: "Per day", per_site: "Per site", rows_by: "Rows",
    messages: "Messages", kind: "Kind", channel: "Channel", recipient: "To", attempts: "Attempts",
    last_error: "Last error", answer: "Server's answer", sent: "Sent", next: "Next attempt",
    n_pending: "pending", n_sending: "sending", n_sent: "sent", n_failed: "failed",
    st_online: "online", st_offline: "offline", longest: "Longest wait (s)", station: "Station",
  },
  zh: {
    login: "登录", name: "用户名", password: "密码", logout: "退出",
    fleet: "设备总览", alarms: "告警", calls: "通话", reports: "报表", audit: "审计日志",
    site: "站点", box: "设备", state: "状态", firmware: "固件", seen: "最后上报",
    calls_now: "当前通话", waiting: "排队", backlog: "待上传", lines: "线路",
    alarms_open: "未恢复告警", boxes: "设备数", online: "在线", offline: "离线",
    lines_down: "线路故障设备", all: "全部", search: "搜索", problems: "只看异常",
    show: "显示", period: "时间段", hours_24: "最近 24 小时", minutes_15: "最近 15 分钟", days_7: "最近 7 天", days_30: "最近 30 天",
    ch_calls: "当前通话数", ch_waiting: "排队来电", ch_cpu: "CPU 使用率 %", ch_disk: "磁盘剩余 %", ch_backlog: "待上传记录",
    line: "线路", reason: "原因", agent: "坐席", queue: "队列",
    code: "代码", severity: "级别", message: "信息", raised: "发生时间", cleared: "恢复时间",
    acked: "已确认", ack: "确认", open_only: "只看未恢复", by: "确认人",
    from: "开始日期", to: "结束日期", dialled: "被叫号码", caller: "主叫", when: "时间",
    disposition: "结果", duration: "时长", wrap: "小结", survey: "满意度",
    day: "日期", answered: "接通", abandoned: "放弃", wrapped: "已小结",
    surveyed: "评价数", avg: "平均分", codes: "按小结代码统计转化",
    scores: "满意度分布", csv: "下载 CSV", user: "用户", action: "操作", address: "地址",
    detail: "详情", none: "暂无数据。", no_box: "没有这台设备。", limit: "只显示前 {n} 条。",
    back: "设备总览", telemetry_at: "遥测", no_data: "该时间段没有数据。",
    config: "配置", load_config: "读取设备配置", check: "检查", push: "推送为新版本",
    version: "版本", box_answer: "设备回复", no_changes: "没有改动。", diff: "改动",
    restart_needed: "需要重启设备才能生效时重启", restart: "重启设备", restart_sure: "现在重启这台设备？进行中的通话会结束。",
    a_pause: "暂停", a_unpause: "就绪", a_logout: "签出", actions: "操作", sent_ok: "已完成。",
    recording: "录音",
    checks: "防伪查询", genuine: "正品", not_found: "未找到", diversions: "疑似窜货",
    product_region: "产品区域", caller_region: "来电区域",
    per_day: "按日", per_site: "按站点", rows_by: "分组",
    messages: "消息发送", kind: "类型", channel: "渠道", recipient: "收件人", attempts: "尝试次数",
    last_error: "最近错误", answer: "服务器回复", sent: "发送时间", next: "下次尝试",
    n_pending: "待发送", n_sending: "发送中", n_sent: "已发送", n_failed: "失败",
    st_online: "在线", st_offline: "离线", longest: "最长等待（秒）", station: "话机",
  },
};

let lang = localStorage.getItem("lang") || (navigator.language.startsWith("zh") ? "zh" : "en");
let me = null;
const t = (k) => (TEXT[lang] && TEXT[lang][k]) || TEXT.en[k] || k;
const $ = (s) => document.querySelector(s);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (r.status === 401 && me && path !== "/api/login" && path !== "/api/me") { me = null; route(); }
  if (!r.ok) throw new Error((data && data.error) || r.statusText);
  return data;
}

function toast(msg) {
  const e = $("#toast");
  e.textContent = msg; e.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { e.hidden = true; }, 4000);
}

const time = (ms) => ms === null || ms === undefined ? "" : new Date(ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
const dur = (ms) => ms === null || ms === undefined ? "" : `${Math.floor(ms / 60000)}:${String(Math.floor(ms / 1000) % 60).padStart(2, "0")}`;
const num = (v) => el("td", { class: "num" }, v === null || v === undefined ? "" : v);
const qs = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== "" && v !== false && v !== null)).toString();

function chrome() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  $("#lang").textContent = lang === "zh" ? "English" : "中文";
  $("#logout").textContent = t("logout");
  $("#logout").hidden = !me;
  $("#who").textContent = me ? `${me.user} (${me.role})` : "";
  const nav = $("#nav");
  nav.replaceChildren();
  if (!me) return;
  const links = [["#fleet", "fleet"], ["#alarms", "alarms"], ["#calls", "calls"], ["#reports", "reports"], ["#messages", "messages"]];
  if (me.role === "admin") links.push(["#audit", "audit"]);
  for (const [h, k] of links) nav.append(el("a", { href: h, id: `nav-${k}` }, t(k)));
}

function view(...kids) { $("#main").replaceChildren(...kids); }

function table(id, heads, rows) {
  if (!rows.length) return el("p", { class: "muted", id }, t("none"));
  return el("table", { id }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", {}, t(h))))), el("tbody", {}, rows));
}

function loginView() {
  const err = el("p", { class: "error", id: "login-error" });
  const form = el("form", { id: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      me = await api("POST", "/api/login", { name: $("#login-name").value, password: $("#login-password").value });
      route();
    } catch (e) { err.textContent = e.message; }
  } },
  el("label", {}, t("name"), el("input", { id: "login-name", autocomplete: "username", required: true })),
  el("label", {}, t("password"), el("input", { id: "login-password", type: "password", autocomplete: "current-password", required: true })),
  el("button", { type: "submit", id: "login-submit" }, t("login")), err);
  view(form);
}

function stateCell(state, reason) {
  return el("td", { class: state || "" }, state ? t(`st_${state}`) : "", reason ? el("span", { class: "muted" }, ` (${reason})`) : null);
}

async function fleetView() {
  const p = new URLSearchParams(location.hash.split("?")[1] || "");
  const site = el("select", { id: "f-site" }, el("option", { value: "" }, t("all")));
  const state = el("select", { id: "f-state" }, el("option", { value: "" }, t("all")), el("option", { value: "online" }, t("online")), el("option", { value: "offline" }, t("offline")));
  const q = el("input", { id: "f-q", value: p.get("q") || "" });
  const problems = el("input", { id: "f-problems", type: "checkbox" });
  problems.checked = p.get("problems") === "true";
  const tiles = el("div", { class: "tiles", id: "fleet-tiles" });
  const out = el("div", { id: "fleet-out" });
  async function load() {
    const d = await api("GET", "/api/fleet?" + qs({ site: site.value, state: state.value, q: q.value, problems: problems.checked }));
    if (site.options.length === 1) for (const s of d.sites) site.append(el("option", { value: s }, s));
    const tot = d.totals;
    tiles.replaceChildren(...[["boxes", tot.boxes], ["online", tot.online], ["calls_now", tot.calls], ["alarms_open", tot.alarms_open], ["lines_down", tot.lines_down], ["backlog", tot.backlog]]
      .map(([k, v]) => el("div", { class: "tile", id: `tile-${k}` }, t(k), el("b", {}, v ?? 0))));
    const rows = d.boxes.map((b) => el("tr", { "data-box": `${b.site}/${b.box}` },
      el("td", {}, b.site), el("td", {}, el("a", { href: `#box/${encodeURIComponent(b.site)}/${encodeURIComponent(b.box)}` }, b.box)),
      stateCell(b.state, b.reason), el("td", {}, b.firmware || ""), el("td", {}, time(b.seen_ms)),
      num(b.calls), num(b.waiting), num(b.backlog),
      el("td", { class: b.lines_down ? "bad" : "" }, b.lines_total === null ? "" : `${b.lines_up}/${b.lines_total}`, b.lines_down ? ` (${b.lines_down})` : ""),
      el("td", { class: b.alarms ? "bad num" : "num" }, b.alarms ?? "")));
    out.replaceChildren(table("fleet-table", ["site", "box", "state", "firmware", "seen", "calls_now", "waiting", "backlog", "lines", "alarms"], rows),
      d.boxes.length >= d.limit ? el("p", { class: "muted" }, t("limit").replace("{n}", d.limit)) : "");
  }
  const form = el("form", { class: "filters", id: "fleet-filters", onsubmit: (ev) => { ev.preventDefault(); load().catch((e) => toast(e.message)); } },
    el("label", {}, t("site"), site), el("label", {}, t("state"), state), el("label", {}, t("search"), q),
    el("label", { class: "check" }, problems, t("problems")), el("button", { type: "submit", id: "fleet-show" }, t("show")));
  view(tiles, form, out);
  await load();
}

function lineChart(title, id, samples, key, since, until) {
  const w = 320, h = 120, pad = 24;
  const pts = samples.filter((s) => s[key] !== null && s[key] !== undefined);
  const max = Math.max(1, ...pts.map((s) => s[key]));
  const x = (ms) => pad + ((ms - since) / Math.max(1, until - since)) * (w - pad - 4);
  const y = (v) => h - pad + 4 - (v / max) * (h - pad - 4);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("id", id);
  svg.setAttribute("data-points", String(pts.length));
  svg.setAttribute("data-max", String(pts.length ? Math.max(...pts.map((s) => s[key])) : ""));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.map((s) => `${x(s.at_ms).toFixed(1)},${y(s[key]).toFixed(1)}`).join(" "));
  svg.append(line);
  for (const [v, yy] of [[max, 10], [0, h - pad + 4]]) {
    const tx = document.createElementNS(ns, "text");
    tx.setAttribute("x", "0"); tx.setAttribute("y", String(yy)); tx.setAttribute("class", "axis");
    tx.textContent = Number.isInteger(v) ? v : v.toFixed(1);
    svg.append(tx);
  }
  return el("div", { class: "chart" }, el("h3", {}, title), pts.length ? svg : el("p", { class: "muted" }, t("no_data")));
}

function alarmRows(alarms, reload) {
  return alarms.map((a) => el("tr", { "data-alarm": `${a.site}/${a.box}/${a.code}` },
    el("td", {}, `${a.site}/${a.box}`), el("td", {}, a.code), el("td", { class: a.severity === "critical" ? "bad" : "" }, a.severity || ""),
    el("td", {}, a.message || ""), el("td", {}, time(a.raised_ms)), el("td", {}, time(a.cleared_ms)),
    el("td", { class: "acked" }, a.acked_by ? `${a.acked_by} ${time(a.acked_ms)}` :
      (me.role !== "viewer" ? el("button", { type: "button", class: "ack", onclick: async () => {
        try { await api("POST", "/api/alarms/ack", { site: a.site, box: a.box, code: a.code, raised_ms: a.raised_ms }); reload(); }
        catch (e) { toast(e.message); }
      } }, t("ack")) : ""))));
}

// Changed lines of b against a, with two lines of context around each
// change: the common head and tail are skipped before a longest-common-
// subsequence pass over the middle.
function lineDiff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
  const xs = x.slice(head, x.length - tail), ys = y.slice(head, y.length - tail);
  const L = Array.from({ length: xs.length + 1 }, () => new Uint32Array(ys.length + 1));
  for (let i = xs.length - 1; i >= 0; i--) for (let j = ys.length - 1; j >= 0; j--)
    L[i][j] = xs[i] === ys[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const mid = [];
  let i = 0, j = 0;
  while (i < xs.length || j < ys.length) {
    if (i < xs.length && j < ys.length && xs[i] === ys[j]) { mid.push([" ", xs[i]]); i++; j++; }
    else if (j < ys.length && (i === xs.length || L[i][j + 1] >= L[i + 1][j])) { mid.push(["+", ys[j]]); j++; }
    else { mid.push(["-", xs[i]]); i++; }
  }
  const before = x.slice(Math.max(0, head - 2), head).map((l) => [" ", l]);
  const after = x.slice(x.length - tail, x.length - tail + 2).map((l) => [" ", l]);
  return [...before, ...mid, ...after];
}

async function boxCommand(site, box, cmd, args) {
  const r = await api("POST", `/api/boxes/${encodeURIComponent(site)}/${encodeURIComponent(box)}/command`, { cmd, args });
  if (!r.ok) throw new Error(r.error || "refused");
  toast(t("sent_ok"));
  return r;
}

function configBox(site, box) {
  const path = `/api/boxes/${encodeURIComponent(site)}/${encodeURIComponent(box)}/config`;
  const text = el("textarea", { id: "box-config-text", rows: "18", spellcheck: "false", hidden: true });
  const version = el("span", { id: "box-config-version", class: "muted" });
  const restart = el("input", { type: "checkbox", id: "box-config-restart" });
  const diff = el("pre", { id: "box-config-diff", class: "diff", hidden: true });
  const answer = el("pre", { id: "box-config-answer", class: "detail", hidden: true });
  let loaded = null;
  const showDiff = () => {
    const d = lineDiff(loaded.toml, text.value).filter((l, k, all) => l[0] !== " " || all.some((m) => m[0] !== " "));
    const changed = d.filter((l) => l[0] !== " ");
    diff.hidden = false;
    diff.replaceChildren(...(changed.length ? d.map(([k, l]) => el("div", { class: k === "+" ? "added" : (k === "-" ? "removed" : "") }, `${k} ${l}`)) : [t("no_changes")]));
    return [changed.filter((l) => l[0] === "+").length, changed.filter((l) => l[0] === "-").length];
  };
  const send = async (check) => {
    const counts = showDiff();
    const r = await api("POST", path, { toml: text.value, check, base_version: loaded.version, restart: restart.checked, diff: counts });
    answer.hidden = false;
    answer.className = r.ok ? "detail ok" : "detail bad";
    answer.textContent = `${t("box_answer")}: ` + (r.ok ? JSON.stringify(r.result) : r.error);
    if (r.ok && !check) {
      loaded = { toml: text.value, version: r.result.version };
      version.textContent = `${t("version")} ${loaded.version}`;
    }
  };
  const buttons = el("div", { class: "buttons", hidden: true },
    el("button", { type: "button", id: "box-config-check", onclick: () => send(true).catch((e) => toast(e.message)) }, t("check")),
    el("button", { type: "button", id: "box-config-push", onclick: () => send(false).catch((e) => toast(e.message)) }, t("push")),
    el("label", { class: "check" }, restart, t("restart_needed")));
  const load = el("button", { type: "button", id: "box-config-load", onclick: async () => {
    try {
      const r = await api("GET", path);
      if (!r.ok) throw new Error(r.error);
      loaded = r.result;
      text.value = loaded.toml;
      version.textContent = `${t("version")} ${loaded.version}`;
      text.hidden = false; buttons.hidden = false;
    } catch (e) { toast(e.message); }
  } }, t("load_config"));
  text.addEventListener("input", () => { if (loaded) showDiff(); });
  return el("section", { id: "box-config" }, el("h2", {}, t("config")), load, " ", version, text, buttons, diff, answer);
}

async function boxView(site, box) {
  const period = el("select", { id: "box-period" }, [[1440, "hours_24"], [15, "minutes_15"], [10080, "days_7"], [43200, "days_30"]].map(([h, k]) => el("option", { value: h }, t(k))));
  const out = el("div", { id: "box-out" });
  async function load() {
    let d;
    try { d = await api("GET", `/api/boxes/${encodeURIComponent(site)}/${encodeURIComponent(box)}?minutes=${period.value}`); }
    catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); return; }
    const b = d.box, tel = b.telemetry || {};
    const charts = el("div", { class: "charts" },
      [["ch_calls", "calls"], ["ch_waiting", "waiting"], ["ch_cpu", "cpu"], ["ch_disk", "disk_free"], ["ch_backlog", "backlog"]]
        .map(([k, key]) => lineChart(t(k), `chart-${key}`, d.samples, key, d.since_ms, d.until_ms)));
    const lines = (tel.lines || []).map((l) => el("tr", {}, el("td", {}, l.id), el("td", { class: l.state === "down" ? "bad" : "" }, l.state || (l.up ? "up" : "")), el("td", {}, l.reason || "")));
    const steer = me.commands && me.role !== "viewer";
    const agentButtons = (a) => el("td", { class: "actions" }, steer ? [["pause", "a_pause"], ["unpause", "a_unpause"], ["logout", "a_logout"]].map(([action, k]) =>
      el("button", { type: "button", class: `agent-${action}`, onclick: () => boxCommand(site, box, "agent", { action, agent: a.id }).then(load).catch((e) => toast(e.message)) }, t(k))) : "");
    const agents = (tel.agents || []).map((a) => el("tr", { "data-agent": a.id }, el("td", {}, a.id), el("td", {}, a.state), el("td", {}, a.station || ""), agentButtons(a)));
    const queues = (tel.queues || []).map((q) => el("tr", {}, el("td", {}, q.name), num(q.waiting), num(q.longest_wait_s)));
    out.replaceChildren(
      el("div", { class: "tiles" },
        el("div", { class: "tile" }, t("state"), el("b", { class: b.state || "", id: "box-state" }, b.state ? t(`st_${b.state}`) : "")),
        el("div", { class: "tile" }, t("firmware"), el("b", {}, b.firmware || "")),
        el("div", { class: "tile" }, t("calls_now"), el("b", { id: "box-calls" }, b.calls ?? "")),
        el("div", { class: "tile" }, t("lines"), el("b", { id: "box-lines" }, b.lines_total === null ? "" : `${b.lines_up}/${b.lines_total}`)),
        el("div", { class: "tile" }, t("telemetry_at"), el("span", {}, time(b.telemetry_ms)))),
      charts,
      el("h2", {}, t("lines")), table("box-lines-table", ["line", "state", "reason"], lines),
      el("h2", {}, t("queue")), table("box-queues", ["queue", "waiting", "longest"], queues),
      el("h2", {}, t("agent")), table("box-agents", ["agent", "state", "station", "actions"], agents),
      el("h2", {}, t("alarms")), table("box-alarms", ["box", "code", "severity", "message", "raised", "cleared", "acked"], alarmRows(d.alarms, load)),
      me.commands && me.role !== "viewer" ? config : "",
      me.commands && me.role === "admin" ? el("button", { type: "button", id: "box-restart", class: "danger", onclick: () => {
        if (confirm(t("restart_sure"))) boxCommand(site, box, "restart", {}).catch((e) => toast(e.message));
      } }, t("restart")) : "");
  }
  // Kept across reloads of the figures: an edit in progress stays.
  const config = configBox(site, box);
  period.addEventListener("change", () => load());
  view(el("p", {}, el("a", { href: "#fleet" }, `← ${t("back")}`), ` ${site}/${box}`), el("label", {}, t("period"), period), out);
  await load();
}

async function alarmsView() {
  const open = el("input", { type: "checkbox", id: "alarms-open" });
  open.checked = true;
  const out = el("div", { id: "alarms-out" });
  async function load() {
    const d = await api("GET", "/api/alarms?" + qs({ open: open.checked }));
    out.replaceChildren(table("alarms-table", ["box", "code", "severity", "message", "raised", "cleared", "acked"], alarmRows(d.alarms, load)));
  }
  open.addEventListener("change", () => load());
  view(el("label", { class: "check" }, open, t("open_only")), out);
  await load();
}

function dateInput(id) { return el("input", { id, type: "date" }); }

async function callsView() {
  const from = dateInput("calls-from"), to = dateInput("calls-to");
  const site = el("input", { id: "calls-site" }), dialled = el("input", { id: "calls-dialled" }), caller = el("input", { id: "calls-caller" });
  const out = el("div", { id: "calls-out" });
  async function load() {
    const d = await api("GET", "/api/calls?" + qs({ from: from.value, to: to.value, site: site.value, dialled: dialled.value, caller: caller.value }));
    out.replaceChildren(table("calls-table", ["when", "site", "box", "caller", "dialled", "queue", "agent", "disposition", "duration", "wrap", "survey", "recording"],
      d.calls.map((c) => el("tr", {}, el("td", {}, time(c.started_ms)), el("td", {}, c.site), el("td", {}, c.box), el("td", {}, c.caller || ""),
        el("td", {}, c.dialled || ""), el("td", {}, c.queue || ""), el("td", {}, c.agent || ""), el("td", {}, c.disposition || ""),
        num(dur(c.duration_ms)), el("td", {}, c.wrap_code || ""), num(c.survey_score),
        el("td", { class: "rec" }, (c.recordings || "").split(",").filter((r) => r).map((r) =>
          el("button", { type: "button", class: "play", "data-recording": r, onclick: (ev) => {
            ev.target.replaceWith(el("audio", { controls: true, autoplay: true, src: `/api/recordings/${encodeURIComponent(r)}` }));
          } }, "▶")))))),
      d.calls.length >= d.limit ? el("p", { class: "muted" }, t("limit").replace("{n}", d.limit)) : "");
  }
  const form = el("form", { class: "filters", onsubmit: (ev) => { ev.preventDefault(); load().catch((e) => toast(e.message)); } },
    el("label", {}, t("from"), from), el("label", {}, t("to"), to), el("label", {}, t("site"), site),
    el("label", {}, t("dialled"), dialled), el("label", {}, t("caller"), caller), el("button", { type: "submit", id: "calls-show" }, t("show")));
  view(form, out);
  await load();
}

async function reportsView() {
  const from = dateInput("report-from"), to = dateInput("report-to");
  const site = el("input", { id: "report-site" }), dialled = el("input", { id: "report-dialled" });
  const by = el("select", { id: "report-by" }, el("option", { value: "day" }, t("per_day")), el("option", { value: "site" }, t("per_site")));
  const out = el("div", { id: "report-out" });
  const csv = el("a", { id: "report-csv", href: "#" }, t("csv"));
  async function load() {
    const q = qs({ from: from.value, to: to.value, site: site.value, dialled: dialled.value, by: by.value });
    csv.href = "/api/reports.csv?" + q;
    const d = await api("GET", "/api/reports?" + q);
    const numbers = d.numbers.map((n) => el("tr", { "data-number": n.dialled },
      el("td", {}, n.dialled), num(n.calls), num(n.answered), num(n.abandoned), num(n.wrapped), num(n.surveyed),
      num(n.surveyed ? (n.survey_sum / n.surveyed).toFixed(2) : ""),
      el("td", { class: "codes" }, Object.entries(n.codes).map(([k, v]) => `${k}: ${v}`).join(", ")),
      el("td", { class: "scores" }, Object.entries(n.survey).map(([k, v]) => `${k}★ ${v}`).join(", "))));
    const first = d.by === "site" ? "site" : "day";
    const rows = d.rows.map((r) => el("tr", {}, el("td", {}, r[first]), el("td", {}, r.dialled), num(r.calls), num(r.answered), num(r.abandoned), num(r.wrapped), num(r.surveyed)));
    const c = await api("GET", "/api/reports/checks?" + qs({ from: from.value, to: to.value, site: site.value }));
    const checkRow = (first) => (r) => el("tr", {}, el("td", {}, r[first]), num(r.checks), num(r.genuine), num(r.not_found), num(r.diversions));
    const checks = el("section", { id: "report-checks" }, el("h2", {}, t("checks")),
      table("checks-days", ["day", "checks", "genuine", "not_found", "diversions"], c.days.map(checkRow("day"))),
      table("checks-sites", ["site", "checks", "genuine", "not_found", "diversions"], c.sites.map(checkRow("site"))),
      el("h3", {}, t("diversions")),
      table("checks-regions", ["product_region", "caller_region", "diversions"],
        c.diversions.map((r) => el("tr", {}, el("td", {}, r.product_region), el("td", {}, r.caller_region), num(r.flags)))));
    out.replaceChildren(
      el("p", { class: "muted" }, `${d.from} – ${d.to}`),
      table("report-numbers", ["dialled", "calls", "answered", "abandoned", "wrapped", "surveyed", "avg", "codes", "scores"], numbers),
      table("report-days", [first, "dialled", "calls", "answered", "abandoned", "wrapped", "surveyed"], rows),
      checks);
  }
  by.addEventListener("change", () => load().catch((e) => toast(e.message)));
  const form = el("form", { class: "filters", onsubmit: (ev) => { ev.preventDefault(); load().catch((e) => toast(e.message)); } },
    el("label", {}, t("from"), from), el("label", {}, t("to"), to), el("label", {}, t("site"), site), el("label", {}, t("dialled"), dialled),
    el("label", {}, t("rows_by"), by), el("button", { type: "submit", id: "report-show" }, t("show")));
  view(form, csv, out);
  await load();
}

async function messagesView() {
  const state = el("select", { id: "messages-state" }, el("option", { value: "" }, t("all")),
    ["pending", "sending", "sent", "failed"].map((s) => el("option", { value: s }, t(`n_${s}`))));
  const tiles = el("div", { class: "tiles", id: "messages-tiles" });
  const out = el("div", { id: "messages-out" });
  async function load() {
    const d = await api("GET", "/api/notifications?" + qs({ state: state.value }));
    tiles.replaceChildren(...["pending", "sending", "sent", "failed"].map((s) => el("div", { class: "tile", id: `messages-${s}` }, t(`n_${s}`), el("b", {}, d.counts[s] ?? 0))));
    out.replaceChildren(table("messages-table", ["when", "box", "kind", "channel", "recipient", "state", "attempts", "sent", "next", "answer", "last_error"],
      d.notifications.map((n) => el("tr", { "data-id": n.id },
        el("td", {}, time(n.created_ms)), el("td", {}, `${n.site}/${n.box}`), el("td", {}, n.kind), el("td", {}, n.channel || ""),
        el("td", {}, n.recipient || ""), el("td", { class: n.state === "failed" ? "bad" : (n.state === "sent" ? "online" : "") }, t(`n_${n.state}`)),
        num(n.attempts), el("td", {}, time(n.sent_ms)), el("td", {}, n.state === "pending" ? time(n.next_ms) : ""),
        el("td", { class: "detail" }, n.answer || ""), el("td", { class: "detail" }, n.last_error || "")))));
  }
  state.addEventListener("change", () => load());
  view(tiles, el("label", {}, t("state"), state), out);
  await load();
}

async function auditView() {
  const d = await api("GET", "/api/audit");
  view(table("audit-table", ["when", "user", "address", "action", "detail"],
    d.audit.map((a) => el("tr", {}, el("td", {}, time(a.at_ms)), el("td", {}, a.user || ""), el("td", {}, a.ip || ""), el("td", {}, a.action), el("td", { class: "detail" }, a.detail || "")))));
}

async function route() {
  if (!me) {
    try { me = await api("GET", "/api/me"); } catch (_) { me = null; }
  }
  chrome();
  if (!me) return loginView();
  const [name, ...rest] = location.hash.replace(/^#/, "").split("?")[0].split("/");
  try {
    switch (name) {
      case "box": return await boxView(decodeURIComponent(rest[0] || ""), decodeURIComponent(rest[1] || ""));
      case "alarms": return await alarmsView();
      case "calls": return await callsView();
      case "reports": return await reportsView();
      case "messages": return await messagesView();
      case "audit": return await auditView();
      default: return await fleetView();
    }
  } catch (e) { view(el("p", { class: "error" }, e.message)); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lang", lang); route(); });
  $("#logout").addEventListener("click", async () => { try { await api("POST", "/api/logout"); } catch (_) {} me = null; route(); });
  window.addEventListener("hashchange", () => route());
  route();
});
