// callbox web console: one page, views by the URL's hash, text in
// English and Chinese. Talks only to /api on the same origin; every change
// carries the session's CSRF token.
"use strict";

const TEXT = {
  en: {
    title: "callbox console",
    login: "Log in",
    name: "User or agent number",
    password: "Password or PIN",
    logout: "Log out",
    wallboard: "Wallboard",
    desk: "My desk",
    users: "Users",
    audit: "Audit log",
    queue: "Queue",
    waiting: "Waiting",
    longest: "Longest wait",
    sl: "Service level",
    answered: "Answered",
    abandoned: "Abandoned",
    agent: "Agent",
    state: "State",
    in_state: "Time in state",
    station: "Station",
    calls: "Calls",
    actions: "Actions",
    pause: "Pause",
    unpause: "Available",
    force_logout: "Log out",
    agent_login: "Log in",
    no_acd: "This site has no queues ([acd]).",
    set_password: "Set your password",
    must_change: "You logged in with a one-time password. Choose your own to go on.",
    old_password: "Current password",
    new_password: "New password",
    repeat_password: "New password again",
    save: "Save",
    mismatch: "The two new passwords differ.",
    saved: "Saved.",
    change_password: "Password",
    role: "Role",
    add_user: "Add or change a user",
    remove: "Remove",
    when: "When",
    user: "User",
    action: "Action",
    address: "Address",
    detail: "Detail",
    live: "Live",
    offline: "Reconnecting…",
    reason: "Pause reason",
    st_logged_out: "Logged out",
    st_available: "Available",
    st_ringing: "Ringing",
    st_on_call: "On a call",
    st_wrap_up: "Wrap-up",
    st_paused: "Paused",
    st_dnd: "Do not disturb",
    st_personal_call: "Own call",
    role_admin: "Admin",
    role_supervisor: "Supervisor",
    role_agent: "Agent",
    expired: "Your session has ended. Log in again.",
    caller: "Caller",
    history: "Earlier calls",
    no_history: "No earlier calls on this box.",
    ivr_path: "IVR path",
    variables: "Keyed in the IVR",
    script: "Script",
    wrap_up: "Wrap-up",
    code: "Code",
    notes: "Notes",
    lead: "lead",
    dial: "Call",
    number: "Number",
    outcome: "Outcome",
    date: "Date",
    this_call: "This call",
    records: "Calls",
    search: "Search",
    from: "From",
    to: "To",
    dialled: "Dialled",
    duration: "Duration",
    play: "Play",
    download: "Download",
    csv: "Export CSV",
    no_records: "No calls match.",
    recording: "Recording",
    reports: "Reports",
    period: "Period",
    by: "By",
    day: "Day",
    week: "Week",
    month: "Month",
    dialled_number: "Dialled number",
    offered: "Offered",
    asa: "Avg. answer",
    handle: "Avg. talk",
    survey: "Survey",
    key: "Group",
    config: "Config",
    calls_now: "Calls now",
    reset_stats: "Reset statistics",
    reset_sure: "Reset now: all counters to zero",
    cs_waiting: "Waiting",
    cs_ringing: "Ringing",
    cs_talking: "Talking",
    in_queue: "In queue",
    talk: "Talk",
    check: "Check",
    apply: "Apply",
    restart_ok: "Restart if needed",
    checked_ok: "No problems found.",
    applied: "Applied as version",
    would_apply: "Would change",
    needs_restart: "Needs a restart",
    line: "line",
    col: "col",
    versions: "Versions",
    version: "Version",
    diff: "Compare with the editor",
    prompts: "Prompts",
    upload: "Upload",
    prompt_name: "Prompt name",
    file: "WAV file",
    uploaded: "Uploaded",
    converted: "converted to 8 kHz mono",
    cs_arriving: "Arriving",
    cs_ivr: "In the IVR",
    cs_dialling: "Dialling",
    cs_offered: "Offered",
    where: "Where",
    duration: "Duration",
    my_phone: "My phone",
    no_phone: "choose your phone first",
    listen: "Listen",
    whisper: "Whisper",
    barge: "Barge in",
    phone_rings: "Your phone rings: answer it to join",
    dnd: "Do not disturb",
    preview: "Campaign contact",
    preview_hint: "Answer your phone to call this contact; let it ring to skip.",
    preview_talking: "Talking with this contact",
    campaign: "Campaign",
  },
  zh: {
    title: "callbox 控制台",
    login: "登录",
    name: "用户名或坐席工号",
    password: "密码或 PIN",
    logout: "退出",
    wallboard: "实时监控",
    desk: "我的工作台",
    users: "用户",
    audit: "审计日志",
    queue: "队列",
    waiting: "排队中",
    longest: "最长等待",
    sl: "服务水平",
    answered: "已接听",
    abandoned: "放弃",
    agent: "坐席",
    state: "状态",
    in_state: "持续时间",
    station: "分机",
    calls: "通话数",
    actions: "操作",
    pause: "暂停",
    unpause: "就绪",
    force_logout: "签出",
    agent_login: "签入",
    no_acd: "本站点未配置队列（[acd]）。",
    set_password: "设置密码",
    must_change: "您使用一次性密码登录，请先设置自己的密码。",
    old_password: "当前密码",
    new_password: "新密码",
    repeat_password: "再次输入新密码",
    save: "保存",
    mismatch: "两次输入的新密码不一致。",
    saved: "已保存。",
    change_password: "密码",
    role: "角色",
    add_user: "添加或修改用户",
    remove: "删除",
    when: "时间",
    user: "用户",
    action: "操作",
    address: "地址",
    detail: "详情",
    live: "实时",
    offline: "正在重新连接…",
    reason: "暂停原因",
    st_logged_out: "已签出",
    st_available: "就绪",
    st_ringing: "振铃中",
    st_on_call: "通话中",
    st_wrap_up: "话后处理",
    st_paused: "暂停",
    st_dnd: "免打扰",
    st_personal_call: "个人通话",
    role_admin: "管理员",
    role_supervisor: "班长",
    role_agent: "坐席",
    expired: "会话已结束，请重新登录。",
    caller: "来电",
    history: "历史来电",
    no_history: "本机没有此号码的历史来电。",
    ivr_path: "IVR 路径",
    variables: "IVR 按键信息",
    script: "话术",
    wrap_up: "话后小结",
    code: "小结代码",
    notes: "备注",
    lead: "商机",
    dial: "拨打",
    number: "号码",
    outcome: "结果",
    date: "日期",
    this_call: "本次通话",
    records: "通话记录",
    search: "查询",
    from: "开始日期",
    to: "结束日期",
    dialled: "被叫号码",
    duration: "时长",
    play: "播放",
    download: "下载",
    csv: "导出 CSV",
    no_records: "没有符合条件的通话。",
    recording: "录音",
    reports: "报表",
    period: "周期",
    by: "维度",
    day: "日",
    week: "周",
    month: "月",
    dialled_number: "被叫号码",
    offered: "呼入",
    asa: "平均应答",
    handle: "平均通话",
    survey: "满意度",
    key: "分组",
    config: "配置",
    calls_now: "当前通话",
    reset_stats: "统计清零",
    reset_sure: "确认清零所有统计",
    cs_waiting: "排队中",
    cs_ringing: "振铃中",
    cs_talking: "通话中",
    in_queue: "排队时长",
    talk: "通话时长",
    check: "检查",
    apply: "应用",
    restart_ok: "必要时重启",
    checked_ok: "没有发现问题。",
    applied: "已应用为版本",
    would_apply: "将修改",
    needs_restart: "需要重启",
    line: "行",
    col: "列",
    versions: "历史版本",
    version: "版本",
    diff: "与编辑器中的内容比较",
    prompts: "语音提示",
    upload: "上传",
    prompt_name: "提示名称",
    file: "WAV 文件",
    uploaded: "已上传",
    converted: "已转换为 8 kHz 单声道",
    cs_arriving: "呼入中",
    cs_ivr: "语音导航中",
    cs_dialling: "外呼中",
    cs_offered: "待处理",
    where: "位置",
    duration: "时长",
    my_phone: "我的话机",
    no_phone: "请先选择您的话机",
    listen: "监听",
    whisper: "耳语",
    barge: "强插",
    phone_rings: "您的话机正在振铃，接听即可加入",
    dnd: "免打扰",
    preview: "外呼客户",
    preview_hint: "接听话机即拨打该客户；不接听则跳过。",
    preview_talking: "正在与该客户通话",
    campaign: "外呼活动",
  },
};

let lang = localStorage.getItem("lang") ||
  ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");
let me = null;
let stream = null;

const t = (k) => (TEXT[lang] && TEXT[lang][k]) || TEXT.en[k] || k;
const $ = (sel) => document.querySelector(sel);

// Builds an element: el("td", {class: "x"}, "text", child…).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (me && method !== "GET") opts.headers["X-CSRF-Token"] = me.csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 && path !== "/api/login" && me) {
    me = null;
    toast(t("expired"));
    route();
  }
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function toast(msg) {
  const b = $("#toast");
  b.textContent = msg;
  b.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { b.hidden = true; }, 4000);
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const two = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m % 60)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

function chrome() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  $("#lang").textContent = lang === "zh" ? "English" : "中文";
  $("#logout").textContent = t("logout");
  $("#logout").hidden = !me;
  $("#who").textContent = me ? `${me.user} · ${t("role_" + me.role)}` : "";
  $("#site").textContent = me ? me.site : "callbox";
  const nav = $("#nav");
  nav.replaceChildren();
  if (!me || me.must_change) return;
  const links = [];
  if (me.role !== "agent") links.push(["wallboard", t("wallboard")]);
  if (me.role === "agent") links.push(["desk", t("desk")]);
  links.push(["records", t("records")]);
  if (me.role !== "agent") links.push(["reports", t("reports")]);
  if (me.role === "admin") links.push(["config", t("config")], ["users", t("users")], ["audit", t("audit")]);
  links.push(["password", t("change_password")]);
  for (const [h, label] of links) nav.append(el("a", { href: "#" + h, id: "nav-" + h }, label));
}

function view(...kids) {
  if (stream) { stream.close(); stream = null; }
  $("#main").replaceChildren(...kids);
}

function loginView() {
  const err = el("p", { id: "login-error", class: "error", role: "alert" });
  const form = el("form", { id: "login-form" },
    el("h1", {}, t("login")),
    el("label", {}, t("name"), el("input", { id: "login-name", autocomplete: "username", required: "" })),
    el("label", {}, t("password"), el("input", { id: "login-password", type: "password", autocomplete: "current-password", required: "" })),
    el("button", { id: "login-submit", type: "submit" }, t("login")),
    err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      me = await api("POST", "/api/login", { name: $("#login-name").value, password: $("#login-password").value });
      go(me.must_change ? "#password" : (me.role === "agent" ? "#desk" : "#wallboard"));
    } catch (e) {
      err.textContent = e.message;
    }
  });
  view(form);
}

function passwordView() {
  const err = el("p", { id: "pw-error", class: "error", role: "alert" });
  const form = el("form", { id: "pw-form" }, el("h1", {}, t("set_password")));
  if (me.must_change) form.append(el("p", { class: "note" }, t("must_change")));
  else form.append(el("label", {}, t("old_password"), el("input", { id: "pw-old", type: "password", autocomplete: "current-password" })));
  form.append(
    el("label", {}, t("new_password"), el("input", { id: "pw-new", type: "password", autocomplete: "new-password", required: "" })),
    el("label", {}, t("repeat_password"), el("input", { id: "pw-new2", type: "password", autocomplete: "new-password", required: "" })),
    el("button", { id: "pw-submit", type: "submit" }, t("save")), err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if ($("#pw-new").value !== $("#pw-new2").value) { err.textContent = t("mismatch"); return; }
    try {
      const body = { new: $("#pw-new").value };
      if (!me.must_change) body.old = $("#pw-old").value;
      await api("POST", "/api/password", body);
      me.must_change = false;
      toast(t("saved"));
      go(me.role === "agent" ? "#desk" : "#wallboard");
    } catch (e) {
      err.textContent = e.message;
    }
  });
  view(form);
}

async function agentAction(agent, action, reason) {
  try {
    const body = { action };
    if (reason) body.reason = reason;
    await api("POST", "/api/agents/" + encodeURIComponent(agent), body);
  } catch (e) {
    toast(e.message);
  }
}

function queuesTable(queues) {
  const head = el("tr", {}, ...["queue", "waiting", "longest", "sl", "answered", "abandoned"].map((k) => el("th", {}, t(k))));
  const rows = queues.map((q) => el("tr", { "data-queue": q.queue },
    el("td", { class: "name" }, q.queue),
    el("td", { class: "waiting num" + (q.waiting > 0 ? " hot" : "") }, q.waiting),
    el("td", { class: "longest num" }, duration(q.longest_wait_ms)),
    el("td", { class: "sl num" }, Math.round(q.service_level * 100) + "%"),
    el("td", { class: "answered num" }, q.answered),
    el("td", { class: "abandoned num" }, q.abandoned)));
  return el("table", { id: "queues" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

// The phone a supervisor joins calls from, kept in this browser.
function myPhone(stations) {
  const saved = localStorage.getItem("phone") || "";
  const sel = el("select", { id: "my-phone" }, el("option", { value: "" }, "—"),
    ...stations.map((s) => el("option", s === saved ? { value: s, selected: "" } : { value: s }, s)));
  sel.addEventListener("change", () => localStorage.setItem("phone", sel.value));
  return el("label", { class: "inline" }, t("my_phone") + " ", sel);
}

async function join(agent, mode) {
  const station = localStorage.getItem("phone") || "";
  if (!station) { toast(t("no_phone")); return; }
  try {
    await api("POST", "/api/agents/" + encodeURIComponent(agent), { action: mode, station });
    toast(t("phone_rings"));
  } catch (e) {
    toast(e.message);
  }
}

function agentsTable(agents, supervisor) {
  const cols = ["agent", "state", "in_state", "station", "calls"];
  if (supervisor) cols.push("actions");
  const head = el("tr", {}, ...cols.map((k) => el("th", {}, t(k))));
  const rows = agents.map((a) => {
    const state = t("st_" + a.state) + (a.reason ? ` (${a.reason})` : "");
    const tr = el("tr", { "data-agent": a.agent, "data-state": a.state },
      el("td", { class: "name" }, a.agent),
      el("td", { class: "state st-" + a.state }, state),
      el("td", { class: "in-state num" }, duration(a.in_state_ms)),
      el("td", { class: "station" }, a.station || ""),
      el("td", { class: "calls num" }, a.calls));
    if (supervisor) {
      const b = (cls, label, fn) => el("button", { class: cls, type: "button", onclick: fn }, label);
      const cell = el("td", { class: "actions" });
      if (a.state === "logged_out") cell.append(b("login", t("agent_login"), () => agentAction(a.agent, "login")));
      else {
        if (a.state === "on_call") {
          for (const m of ["listen", "whisper", "barge"]) cell.append(b(m, t(m), () => join(a.agent, m)));
        }
        if (a.state === "paused" || a.state === "dnd") cell.append(b("unpause", t("unpause"), () => agentAction(a.agent, "unpause")));
        else cell.append(b("pause", t("pause"), () => agentAction(a.agent, "pause", "supervisor")));
        cell.append(b("logout", t("force_logout"), () => agentAction(a.agent, "logout")));
      }
      tr.append(cell);
    }
    return tr;
  });
  return el("table", { id: "agents" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

// Brings `old` to look like `neu` in place: a button or a field the user
// is on survives a refresh that changed only numbers and texts.
function morph(old, neu) {
  if (old.nodeType !== neu.nodeType || old.nodeName !== neu.nodeName) { old.replaceWith(neu); return; }
  if (old.nodeType === Node.TEXT_NODE) { if (old.data !== neu.data) old.data = neu.data; return; }
  // A button's or a form's action is its listener, which cannot be
  // compared: one that changed at all is a new one.
  if ((old.nodeName === "BUTTON" || old.nodeName === "FORM") && !old.isEqualNode(neu)) { old.replaceWith(neu); return; }
  for (const a of [...old.attributes]) if (!neu.hasAttribute(a.name)) old.removeAttribute(a.name);
  for (const a of [...neu.attributes]) if (old.getAttribute(a.name) !== a.value) old.setAttribute(a.name, a.value);
  morphChildren(old, [...neu.childNodes]);
}

function morphChildren(parent, kids) {
  const have = [...parent.childNodes];
  if (have.length !== kids.length) { parent.replaceChildren(...kids); return; }
  have.forEach((n, i) => morph(n, kids[i]));
}

// Opens the live figures and redraws `render(data)` on each push.
function live(render) {
  const status = el("p", { id: "live", class: "muted" }, "…");
  const body = el("div", { id: "board" });
  view(status, body);
  const es = new EventSource("/api/wallboard/events");
  stream = es;
  let last = null;
  const redraw = () => { if (last) morphChildren(body, render(last, redraw)); };
  es.addEventListener("wallboard", (ev) => {
    status.textContent = t("live");
    status.className = "live";
    last = JSON.parse(ev.data);
    redraw();
  });
  es.onerror = () => {
    status.textContent = t("offline");
    status.className = "muted";
    // An expired session answers 401 and the stream stops for good.
    if (es.readyState === EventSource.CLOSED) api("GET", "/api/me").catch(() => {});
  };
}

// Every call in progress: the queues' (time in queue) and the others
// (in the IVR at a node, dialled by the box, offered in preview: time
// since the call started).
function callsTable(calls) {
  const head = el("tr", {}, ...["caller", "where", "state", "agent", "duration", "talk"].map((k) => el("th", {}, t(k))));
  const rows = calls.map((c) => el("tr", { "data-call": c.call_id, "data-state": c.state, "data-kind": c.kind || "queue" },
    el("td", { class: "caller" }, (c.caller || "?") + (c.caller_name ? ` ${c.caller_name}` : "")),
    el("td", { class: "where" }, c.queue || c.node || c.campaign || c.line || ""),
    el("td", { class: "state cs-" + c.state }, t("cs_" + c.state)),
    el("td", { class: "agent" }, c.agent || ""),
    el("td", { class: "num" }, duration(c.in_queue_ms != null ? c.in_queue_ms : c.in_call_ms)),
    el("td", { class: "num" }, c.talk_ms != null ? duration(c.talk_ms) : "")));
  return el("table", { id: "calls" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

// Reset statistics: a first click arms the button, a second within five
// seconds resets.
function resetButton() {
  const b = el("button", { id: "reset-stats", type: "button", class: "secondary" }, t("reset_stats"));
  let armed = false;
  b.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      b.textContent = t("reset_sure");
      b.classList.add("armed");
      setTimeout(() => { armed = false; b.textContent = t("reset_stats"); b.classList.remove("armed"); }, 5000);
      return;
    }
    armed = false;
    try { await api("POST", "/api/acd/reset"); toast(t("saved")); } catch (e) { toast(e.message); }
    b.textContent = t("reset_stats");
    b.classList.remove("armed");
  });
  return b;
}

function wallboardView() {
  const reset = resetButton();
  live((d) => d.acd
    ? [el("h2", {}, t("queue")), queuesTable(d.queues), el("h2", {}, t("agent")),
      ...((d.supervisors || []).length ? [myPhone(d.supervisors)] : []), agentsTable(d.agents, true),
      el("h2", {}, t("calls_now")), callsTable(d.calls || []), reset]
    : [el("p", {}, t("no_acd"))]);
}

// The agent's desk: their state, the call ringing them or being talked
// on (the screen pop), the wrap-up form after it, and click-to-call.
const desk = { callId: null, pop: null, wrapped: null, taken: false };

async function loadPop(id, redraw) {
  try {
    const p = await api("GET", "/api/calls/" + encodeURIComponent(id) + "/pop");
    if (desk.callId === id) { desk.pop = p; redraw(); }
  } catch (e) {
    toast(e.message);
  }
}

function popView(p) {
  const c = p.call;
  const rows = (pairs) => pairs.map(([k, v]) => el("tr", { "data-var": k }, el("th", {}, k), el("td", { class: "value" }, v)));
  const out = [el("section", { id: "pop" },
    el("h2", {}, t("caller")),
    el("p", { class: "caller" }, el("strong", { id: "pop-name" }, c.caller_name || ""), " ",
      el("span", { id: "pop-caller" }, c.caller || "?"), c.queue || c.campaign ? ` · ${c.queue || c.campaign}` : ""),
    el("h3", {}, t("ivr_path")), el("p", { id: "pop-path", class: "path" }, p.path.join(" → ")),
    el("h3", {}, t("variables")), el("table", { id: "pop-vars" }, el("tbody", {}, ...rows(Object.entries(p.vars)))),
    el("h3", {}, t("history")),
    p.history.length === 0 ? el("p", { id: "pop-history", class: "muted" }, t("no_history")) :
      el("table", { id: "pop-history" },
        el("thead", {}, el("tr", {}, ...["date", "queue", "agent", "outcome", "code", "notes"].map((k) => el("th", {}, t(k))))),
        el("tbody", {}, ...p.history.map((h) => el("tr", { "data-call": h.id },
          el("td", {}, new Date(h.start).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB")),
          el("td", {}, h.queue || ""), el("td", {}, h.agent || ""),
          el("td", {}, h.outcome || h.disposition), el("td", { class: "code" }, h.wrap_code || ""),
          el("td", { class: "notes" }, h.notes || ""))))))];
  if (p.script) out.push(el("section", { id: "pop-script-box" }, el("h3", {}, t("script")), el("p", { id: "pop-script", class: "script" }, p.script)));
  return out;
}

function wrapForm(id) {
  const codes = me.wrap_codes || [];
  const code = codes.length
    ? el("select", { id: "wrap-code" }, el("option", { value: "" }, "—"),
      ...codes.map((w) => el("option", { value: w.code }, `${w.code} ${w.label}${w.lead ? " (" + t("lead") + ")" : ""}`)))
    : el("input", { id: "wrap-code", inputmode: "numeric", maxlength: "8" });
  const status = el("p", { id: "wrap-status", class: "muted" }, desk.wrapped === id ? t("saved") : "");
  const form = el("form", { id: "wrap-form", "data-call": id }, el("h2", {}, t("wrap_up")),
    el("label", {}, t("code"), code),
    el("label", {}, t("notes"), el("textarea", { id: "wrap-notes", rows: "3", maxlength: "2000" })),
    el("button", { id: "wrap-submit", type: "submit" }, t("save")), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/calls/" + encodeURIComponent(id) + "/wrap",
        { code: $("#wrap-code").value, notes: $("#wrap-notes").value });
      desk.wrapped = id;
      $("#wrap-status").textContent = t("saved");
    } catch (e) {
      $("#wrap-status").textContent = e.message;
    }
  });
  return form;
}

function dialForm() {
  const form = el("form", { id: "dial-form", class: "inline" },
    el("input", { id: "dial-number", inputmode: "tel", placeholder: t("number") }),
    el("button", { id: "dial-submit", type: "submit" }, t("dial")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/originate", { number: $("#dial-number").value });
      $("#dial-number").value = "";
    } catch (e) {
      toast(e.message);
    }
  });
  return form;
}

function deskView() {
  live((d, redraw) => {
    const mine = d.agents.find((a) => a.agent === me.user);
    const out = [];
    if (mine) {
      const reason = el("input", { id: "pause-reason", placeholder: t("reason") });
      const b = (id, label, fn) => el("button", { id, type: "button", onclick: fn }, label);
      out.push(el("div", { id: "my-state", "data-state": mine.state, class: "state st-" + mine.state },
        t("st_" + mine.state) + " · " + duration(mine.in_state_ms)));
      out.push(el("div", { class: "buttons" },
        b("me-available", t("unpause"), () => agentAction(me.user, mine.state === "logged_out" ? "login" : "unpause")),
        reason,
        b("me-pause", t("pause"), () => agentAction(me.user, "pause", reason.value || "break")),
        b("me-dnd", t("dnd"), () => agentAction(me.user, "dnd")),
        b("me-logout", t("force_logout"), () => agentAction(me.user, "logout"))));
      // A queue call ringing or talking, or a campaign contact offered in
      // preview (or taken).
      const now = mine.call || d.preview;
      if (now && now.call_id !== desk.callId) {
        desk.callId = now.call_id;
        desk.pop = null;
        desk.taken = !!mine.call;
        loadPop(desk.callId, redraw);
      }
      if (d.preview && d.preview.answered_ms != null) desk.taken = true;
      if (d.preview) {
        out.push(el("section", { id: "preview", "data-call": d.preview.call_id },
          el("h2", {}, t("preview") + " · " + d.preview.campaign),
          el("p", { class: "note", id: "preview-state" }, t(d.preview.answered_ms != null ? "preview_talking" : "preview_hint"))));
      }
      if (desk.pop) out.push(...popView(desk.pop));
      // The form stays for the last call until the next one rings (a
      // preview the agent let go left no call to wrap up).
      if (desk.callId && !now && desk.taken) out.push(wrapForm(desk.callId));
      out.push(dialForm());
    }
    out.push(el("h2", {}, t("queue")), queuesTable(d.queues));
    return out;
  });
}

// Call records: a search form, the results, their recordings and CSV.
function recordsView() {
  const fields = [["number", "number", "text"], ["from", "from", "date"], ["to", "to", "date"],
    ["queue", "queue", "text"], ["agent", "agent", "text"], ["outcome", "outcome", "text"], ["dialled", "dialled", "text"]];
  if (me.role === "agent") fields.splice(4, 1);
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const form = el("form", { id: "records-form", class: "filters" },
    ...fields.map(([k, label, type]) => el("label", {}, t(label), el("input", { id: "f-" + k, name: k, type, value: params.get(k) || "" }))),
    el("button", { id: "records-submit", type: "submit" }, t("search")));
  const results = el("div", { id: "records-results" });
  const query = () => {
    const q = new URLSearchParams();
    for (const [k] of fields) { const v = $("#f-" + k).value.trim(); if (v) q.set(k, v); }
    return q.toString();
  };
  async function load() {
    const q = query();
    const d = await api("GET", "/api/records?" + q);
    const csv = el("a", { id: "records-csv", href: "/api/records.csv?" + q, download: "calls.csv" }, t("csv"));
    if (d.records.length === 0) { results.replaceChildren(csv, el("p", { class: "muted" }, t("no_records"))); return; }
    const rows = d.records.map((r) => {
      const cell = el("td", { class: "rec" });
      for (const id of r.recordings) {
        cell.append(el("button", { type: "button", class: "play", "data-recording": id, onclick: () => play(id, cell) }, t("play")), " ",
          el("a", { href: "/api/recordings/" + encodeURIComponent(id) + "?download=1", class: "download" }, t("download")));
      }
      return el("tr", { "data-call": r.id },
        el("td", {}, new Date(r.start).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB")),
        el("td", { class: "caller" }, (r.caller || "") + (r.caller_name ? ` ${r.caller_name}` : "")),
        el("td", {}, r.dialled || ""), el("td", {}, r.queue || ""), el("td", {}, r.agent || ""),
        el("td", { class: "outcome" }, r.outcome || r.disposition),
        el("td", { class: "num" }, r.duration_ms != null ? duration(r.duration_ms) : ""),
        el("td", { class: "code" }, r.wrap_code || ""), cell);
    });
    results.replaceChildren(csv, el("table", { id: "records" },
      el("thead", {}, el("tr", {}, ...["date", "caller", "dialled", "queue", "agent", "outcome", "duration", "code", "recording"].map((k) => el("th", {}, t(k))))),
      el("tbody", {}, ...rows)));
  }
  async function play(id, cell) {
    const url = "/api/recordings/" + encodeURIComponent(id);
    const r = await fetch(url, { headers: { Range: "bytes=0-0" }, credentials: "same-origin" });
    if (!r.ok) {
      const e = await r.json().catch(() => ({}));
      cell.replaceChildren(el("span", { class: "error recording-error" }, e.error || r.statusText));
      return;
    }
    cell.replaceChildren(el("audio", { controls: "", autoplay: "", src: url, "data-recording": id }));
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load().catch((e) => toast(e.message)); });
  view(el("h1", {}, t("records")), form, results);
  load().catch((e) => toast(e.message));
}

// An SVG bar chart: per period, offered (light) and answered (dark).
function chart(rows) {
  const NS = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const per = new Map();
  for (const r of rows) {
    const p = per.get(r.period) || { offered: 0, answered: 0 };
    p.offered += r.offered; p.answered += r.answered;
    per.set(r.period, p);
  }
  const periods = [...per.keys()].sort();
  const max = Math.max(1, ...[...per.values()].map((p) => p.offered));
  const w = Math.max(320, periods.length * 36 + 40), h = 180, base = h - 30;
  const svg = svgEl("svg", { id: "report-chart", viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img" });
  periods.forEach((p, i) => {
    const x = 30 + i * 36, v = per.get(p);
    const bar = (val, dx, cls) => svgEl("rect", { x: x + dx, width: 14, y: base - (val / max) * (base - 10), height: (val / max) * (base - 10), class: cls, "data-period": p, "data-value": val });
    svg.append(bar(v.offered, 0, "bar-offered"), bar(v.answered, 15, "bar-answered"),
      svgEl("text", { x: x + 14, y: h - 12, "text-anchor": "middle", class: "axis" }, p.slice(5)));
  });
  svg.append(svgEl("text", { x: 2, y: 12, class: "axis" }, String(max)), svgEl("line", { x1: 28, x2: w, y1: base, y2: base, class: "axis-line" }));
  return svg;
}

function reportsView() {
  const sel = (id, opts) => el("select", { id }, ...opts.map(([v, label]) => el("option", { value: v }, label)));
  const form = el("form", { id: "report-form", class: "filters" },
    el("label", {}, t("period"), sel("r-period", [["day", t("day")], ["week", t("week")], ["month", t("month")]])),
    el("label", {}, t("by"), sel("r-by", [["queue", t("queue")], ["agent", t("agent")], ["dialled", t("dialled_number")], ["outcome", t("outcome")]])),
    el("label", {}, t("from"), el("input", { id: "r-from", type: "date" })),
    el("label", {}, t("to"), el("input", { id: "r-to", type: "date" })),
    el("button", { id: "report-submit", type: "submit" }, t("search")));
  const out = el("div", { id: "report" });
  async function load() {
    const q = new URLSearchParams({ period: $("#r-period").value, by: $("#r-by").value });
    if ($("#r-from").value) q.set("from", $("#r-from").value);
    if ($("#r-to").value) q.set("to", $("#r-to").value);
    const d = await api("GET", "/api/reports?" + q);
    const pct = (x) => Math.round(x * 100) + "%";
    const rows = d.rows.map((r) => el("tr", { "data-period": r.period, "data-key": r.key },
      el("td", {}, r.period), el("td", { class: "key" }, r.key),
      el("td", { class: "offered num" }, r.offered), el("td", { class: "answered num" }, r.answered),
      el("td", { class: "abandoned num" }, r.abandoned), el("td", { class: "sl num" }, pct(r.service_level)),
      el("td", { class: "asa num" }, duration(r.asa_ms)), el("td", { class: "handle num" }, duration(r.handle_ms)),
      el("td", { class: "survey num" }, r.surveys ? r.survey_avg.toFixed(1) + ` (${r.surveys})` : "")));
    out.replaceChildren(
      el("a", { id: "report-csv", href: "/api/reports.csv?" + q, download: "report.csv" }, t("csv")),
      chart(d.rows),
      el("table", { id: "report-table" },
        el("thead", {}, el("tr", {}, ...["period", "key", "offered", "answered", "abandoned", "sl", "asa", "handle", "survey"].map((k) => el("th", {}, t(k))))),
        el("tbody", {}, ...rows)));
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load().catch((e) => toast(e.message)); });
  view(el("h1", {}, t("reports")), form, out);
  load().catch((e) => toast(e.message));
}

// Lines of `a` and `b` compared: [" ", line] kept, ["-", line] only in
// `a`, ["+", line] only in `b` (longest common subsequence).
function diffLines(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  const n = x.length, m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push([" ", x[i]]); i++; j++; }
    else if (j < m && (i === n || L[i][j + 1] >= L[i + 1][j])) { out.push(["+", y[j]]); j++; }
    else { out.push(["-", x[i]]); i++; }
  }
  return out;
}

async function configView() {
  const cfg = await api("GET", "/api/config");
  const editor = el("textarea", { id: "config-text", spellcheck: "false", rows: "28", wrap: "off" });
  editor.value = cfg.toml;
  const result = el("div", { id: "config-result", role: "status" });
  const restart = el("input", { id: "config-restart", type: "checkbox" });
  // Puts the cursor at a line and column of the editor.
  const goTo = (line, col) => {
    const lines = editor.value.split("\n");
    let pos = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos += Math.max(0, col - 1);
    editor.focus();
    editor.setSelectionRange(pos, pos);
    editor.scrollTop = Math.max(0, (line - 5) * 18);
  };
  // One request; a refusal shows the checker's problems at their place.
  async function submit(check) {
    const r = await fetch("/api/config", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf },
      body: JSON.stringify({ toml: editor.value, check, restart: restart.checked }) });
    const d = await r.json().catch(() => ({}));
    if (r.status === 401) { me = null; toast(t("expired")); route(); return; }
    if (!r.ok) {
      if (d.diagnostics && d.diagnostics.length) {
        result.replaceChildren(el("ul", { id: "config-errors" }, ...d.diagnostics.map((x) =>
          el("li", { class: "error", "data-line": x.line, "data-col": x.col },
            el("a", { href: "#config", onclick: (ev) => { ev.preventDefault(); goTo(x.line, x.col); } },
              `${t("line")} ${x.line}, ${t("col")} ${x.col}`), ": " + x.message))));
      } else {
        result.replaceChildren(el("p", { class: "error", id: "config-refused" }, d.error || r.statusText));
      }
      return;
    }
    if (check) {
      const parts = [el("p", { class: "ok", id: "config-checked" }, t("checked_ok"))];
      if (d.would_apply.length) parts.push(el("p", {}, t("would_apply") + ": " + d.would_apply.join(", ")));
      if (d.needs_restart.length) parts.push(el("p", { class: "error" }, t("needs_restart") + ": " + d.needs_restart.join("; ")));
      result.replaceChildren(...parts);
    } else {
      result.replaceChildren(el("p", { class: "ok", id: "config-applied", "data-version": d.version },
        `${t("applied")} ${d.version}` + (d.applied.length ? ` (${d.applied.join(", ")})` : "")));
      loadHistory().catch((e) => toast(e.message));
    }
  }
  const history = el("div", { id: "config-history" });
  async function loadHistory() {
    const h = await api("GET", "/api/config/history");
    history.replaceChildren(el("h2", {}, t("versions")), el("ul", {}, ...h.versions.map((v) =>
      el("li", { "data-version": v.version }, `${t("version")} ${v.version} · ${new Date(v.at_ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB")} `,
        el("button", { type: "button", class: "diff", onclick: async () => {
          const old = await api("GET", "/api/config/history/" + v.version);
          const d = diffLines(old.toml, editor.value).filter(([k]) => k !== " ");
          history.querySelector("#config-diff")?.remove();
          history.append(el("pre", { id: "config-diff", "data-version": v.version }, ...d.map(([k, line]) =>
            el("span", { class: k === "+" ? "added" : "removed" }, `${k} ${line}\n`))));
        } }, t("diff"))))));
  }
  view(el("h1", {}, t("config")),
    el("div", { class: "buttons" },
      el("button", { id: "config-check", type: "button", onclick: () => submit(true).catch((e) => toast(e.message)) }, t("check")),
      el("button", { id: "config-apply", type: "button", onclick: () => submit(false).catch((e) => toast(e.message)) }, t("apply")),
      el("label", { class: "check" }, restart, t("restart_ok"))),
    result, editor, history, await promptsBox());
  loadHistory().catch((e) => toast(e.message));
}

async function promptsBox() {
  const box = el("section", { id: "prompts" }, el("h2", {}, t("prompts")));
  const list = el("ul", { id: "prompt-list" });
  const status = el("p", { id: "prompt-status", role: "status" });
  async function load() {
    const d = await api("GET", "/api/prompts");
    list.replaceChildren(...d.prompts.map((p) => el("li", { "data-prompt": p.name },
      el("span", { class: "name" }, p.name), " ", p.ms != null ? duration(p.ms) : "", " ",
      el("audio", { controls: "", preload: "none", src: "/api/prompts/" + encodeURIComponent(p.name) }))));
  }
  const form = el("form", { id: "prompt-form" },
    el("label", {}, t("prompt_name"), el("input", { id: "prompt-name", required: "", pattern: "[A-Za-z0-9_-]{1,64}" })),
    el("label", {}, t("file"), el("input", { id: "prompt-file", type: "file", accept: "audio/wav,.wav", required: "" })),
    el("button", { id: "prompt-submit", type: "submit" }, t("upload")), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = $("#prompt-file").files[0];
    const r = await fetch("/api/prompts/" + encodeURIComponent($("#prompt-name").value), {
      method: "POST", credentials: "same-origin", body: file,
      headers: { "X-CSRF-Token": me.csrf, "Content-Type": "audio/wav" } });
    const d = await r.json().catch(() => ({}));
    if (!r.ok) { status.className = "error"; status.textContent = d.error || r.statusText; return; }
    status.className = "ok";
    status.textContent = `${t("uploaded")}: ${d.name}` + (d.converted ? ` (${t("converted")})` : "");
    load();
  });
  box.append(list, form);
  await load().catch((e) => toast(e.message));
  return box;
}

async function usersView() {
  const list = el("tbody", {});
  const err = el("p", { id: "user-error", class: "error", role: "alert" });
  const roles = el("select", { id: "user-role" }, ...["agent", "supervisor", "admin"].map((r) => el("option", { value: r }, t("role_" + r))));
  const form = el("form", { id: "user-form" }, el("h2", {}, t("add_user")),
    el("label", {}, t("name"), el("input", { id: "user-name", required: "" })),
    el("label", {}, t("role"), roles),
    el("label", {}, t("password"), el("input", { id: "user-password", type: "password", autocomplete: "new-password", required: "" })),
    el("button", { id: "user-submit", type: "submit" }, t("save")), err);
  async function load() {
    const d = await api("GET", "/api/users");
    list.replaceChildren(...d.users.map((u) => el("tr", { "data-user": u.name },
      el("td", {}, u.name), el("td", {}, t("role_" + u.role)),
      el("td", {}, el("button", { type: "button", class: "remove", onclick: async () => {
        try { await api("DELETE", "/api/users/" + encodeURIComponent(u.name)); load(); } catch (e) { toast(e.message); }
      } }, t("remove"))))));
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/users", { name: $("#user-name").value, role: roles.value, password: $("#user-password").value });
      err.textContent = "";
      form.reset();
      toast(t("saved"));
      load();
    } catch (e) {
      err.textContent = e.message;
    }
  });
  view(el("h1", {}, t("users")),
    el("table", { id: "users" }, el("thead", {}, el("tr", {}, el("th", {}, t("user")), el("th", {}, t("role")), el("th", {}))), list),
    form);
  load().catch((e) => toast(e.message));
}

async function auditView() {
  const d = await api("GET", "/api/audit?limit=200");
  const rows = d.entries.map((e) => el("tr", { "data-action": e.action },
    el("td", {}, new Date(e.at_ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB")),
    el("td", {}, e.user || ""), el("td", {}, e.ip || ""), el("td", {}, e.action),
    el("td", { class: "detail" }, JSON.stringify(e.detail))));
  view(el("h1", {}, t("audit")), el("table", { id: "audit" },
    el("thead", {}, el("tr", {}, ...["when", "user", "address", "action", "detail"].map((k) => el("th", {}, t(k))))),
    el("tbody", {}, ...rows)));
}

// Shows `hash`'s page once: a changed hash routes by its event.
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  if (!me) {
    try { me = await api("GET", "/api/me"); } catch (e) { me = null; }
  }
  chrome();
  if (!me) return loginView();
  const page = location.hash.slice(1).split("?")[0];
  if (me.must_change || page === "password") return passwordView();
  const pages = { wallboard: wallboardView, desk: deskView, records: recordsView, reports: reportsView, config: configView, users: usersView, audit: auditView };
  const fallback = me.role === "agent" ? "desk" : "wallboard";
  const allowed = { wallboard: me.role !== "agent", desk: me.role === "agent", records: true, reports: me.role !== "agent", config: me.role === "admin", users: me.role === "admin", audit: me.role === "admin" };
  const go = pages[page] && allowed[page] ? page : fallback;
  if (go !== page) history.replaceState(null, "", "#" + go);
  try { await pages[go](); } catch (e) { toast(e.message); }
}

$("#lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("lang", lang);
  route();
});
$("#logout").addEventListener("click", async () => {
  try { await api("POST", "/api/logout"); } catch (e) { /* gone already */ }
  me = null;
  go("");
});
window.addEventListener("hashchange", route);
route();
