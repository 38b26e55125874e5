//! The IVR end to end: the real daemon in virtual time, callers keying
//! digits in band (heard by the Goertzel detector) or out of band, agents
//! answering stations, people the box calls out to. Each test reads what
//! happened from the records the box stored.

use callbox_tests::{Site, by_caller, cmd, text, write_tone};
use serde_json::Value;

/// A branch with two trunks, two desks and a full IVR. Site prompts are
/// tones of known length; system prompts are the shipped set.
const IVR: &str = r##"
[ivr]
language = "en"
timezone = "Asia/Shanghai"
start = "hours"
blocked = "blocked"
tones = "china"

[ivr.lists]
vip = ["1380000000X"]
blocked = ["139XXXXXXXX"]

[[ivr.route]]
dialled = ["4002"]
start = "zh-main"
language = "zh"

[[ivr.route]]
dialled = ["4003"]
start = "check-code"

[ivr.hours.office]
mon = ["09:00-12:00", "13:00-18:00"]
tue = ["09:00-18:00"]
wed = ["09:00-18:00"]
thu = ["09:00-18:00"]
fri = ["09:00-18:00"]
holidays = ["2026-10-01..2026-10-07", "2026-12-25"]

[ivr.lookups]
products = "products.csv"
regions = "regions.csv"
orders = "orders.csv"

[ivr.node.hours]
type = "branch"
cases = [
  { holiday = "office", goto = "holiday" },
  { open = "office", goto = "vip-check" },
]
default = "closed"

[ivr.node.closed]
type = "hangup"
prompt = ["system:closed", "system:goodbye"]
outcome = "closed"

[ivr.node.holiday]
type = "hangup"
prompt = "holiday.wav"
outcome = "holiday"

[ivr.node.vip-check]
type = "branch"
cases = [{ caller_in = "vip", goto = "vip-desk" }]
default = "main"

[ivr.node.vip-desk]
type = "transfer"
station = "desk-2"
ring_timeout = "10s"
on_no_answer = "main"

[ivr.node.main]
type = "menu"
greeting = "main-long.wav"
short_greeting = "main-short.wav"
first_digit_timeout = "3s"
inter_digit_timeout = "2s"
max_failures = 2
max_timeouts = 2
on_max_failures = "hangup"
options = { "1" = "sales", "12" = "check-code", "2" = "support", "3" = "voicemail", "4" = "callback", "6" = "notify-pricelist", "0" = "operator", "*" = "repeat" }

[ivr.node.operator]
type = "transfer"
number = "13600000000"
trunks = ["trunk-2"]
ring_timeout = "15s"
on_no_answer = "voicemail"

[ivr.node.sales]
type = "queue"
on_overflow = "voicemail"
after = "survey"

[acd.agent.alice]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { alice = 0 }
ring_timeout = "10s"
max_wait = "60s"

[ivr.node.survey]
type = "survey"
next = "goodbye"

[ivr.node.support]
type = "menu"
greeting = "support.wav"
barge_in = false
first_digit_timeout = "3s"
options = { "1" = "order", "*" = "back" }

[ivr.node.order]
type = "collect"
var = "order_no"
prompt = "system:enter-order"
min = 4
max = 8
recordable = true
next = "order-status"

[ivr.node.order-status]
type = "order_status"
var = "order_no"
statuses = { shipped = "shipped.wav", pending = "pending.wav" }
next = "goodbye"

[ivr.node.check-code]
type = "collect"
var = "code"
prompt = "system:enter-code"
min = 6
max = 12
pattern = "XXXXXX!"
retries = 1
next = "check"

[ivr.node.check]
type = "product_check"
var = "code"
next = "goodbye"

[ivr.node.voicemail]
type = "voicemail"
mailbox = "sales"
max_length = "30s"
next = "goodbye"

[ivr.node.callback]
type = "callback"
queue = "sales"
next = "goodbye"

[ivr.node.notify-pricelist]
type = "notify"
event = "send_document"
fields = { document = "price-list", channel = "sms", to = "{caller}" }
next = "goodbye"

[ivr.node.zh-main]
type = "menu"
greeting = "main-long.wav"
options = { "1" = "check-code" }

[ivr.node.goodbye]
type = "hangup"
prompt = "system:goodbye"
outcome = "done"
"##;

fn ivr_site() -> Site {
    let site = Site::new(2, 2, 0, "answer_after = \"1s\"");
    let p = site.dir.path().join("prompts");
    for (name, ms) in [
        ("main-long.wav", 3000),
        ("main-short.wav", 1000),
        ("support.wav", 3000),
        ("holiday.wav", 500),
        ("shipped.wav", 700),
        ("pending.wav", 900),
    ] {
        write_tone(&p.join(name), ms);
    }
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let cfg = cfg.replace("greeting = \"greeting.wav\"\n", "") + IVR;
    site.write("site.toml", &cfg);
    site.write(
        "products.csv",
        "code,region,product\n1234567890,north,tea\n5555555555,south,wine\n",
    );
    site.write("regions.csv", "prefix,region\n010,north\n020,south\n");
    site.write("orders.csv", "order,status\n1001,shipped\n1002,pending\n");
    site
}

fn run_at(site: &Site, scenario: &str, start: &str) -> Vec<Value> {
    let path = site.write("calls.toml", scenario);
    let out = site.run_fast_with(&path, &["--start-at", start]);
    assert!(out.status.success(), "{}", text(&out));
    // Every prompt a flow can play was loaded with the config.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("prompt missing"),
        "{}",
        text(&out)
    );
    site.records()
}

/// Monday 2026-11-23, 10:00 in Shanghai: the office is open.
const OPEN: &str = "2026-11-23T10:00:00+08:00";

fn path(r: &Value) -> Vec<String> {
    r["ivr_path"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn table(site: &Site, name: &str) -> Vec<Value> {
    site.table(name)
}

#[test]
fn menu_options_invalid_entries_timeouts_and_multi_digit_options() {
    let site = ivr_site();
    let recs = run_at(
        &site,
        r##"
# Keys "1" during the greeting (barge-in), waits out the inter-digit
# timeout (1 could become 12), reaches the sales desk; after the agent
# hangs up, rates the call 4.
[[call]]
at = "0s"
from = "01000000001"
to = "4001"
script = [ { wait = "1s" }, { press = "1" }, { wait = "25s" }, { press = "4" }, { wait = "10s" } ]

# Keys "12" quickly: the two-digit option, then a product code.
[[call]]
at = "60s"
from = "01000000002"
to = "4001"
script = [ { wait = "1s" }, { press = "12" }, { wait = "3s" }, { press = "1234567890#" }, { wait = "30s" } ]

# Two invalid keys: max failures, the box hangs up.
[[call]]
at = "120s"
from = "01000000003"
to = "4001"
script = [ { wait = "4s" }, { press = "7" }, { wait = "3s" }, { press = "8" }, { wait = "20s" } ]

# Says nothing: two timeouts.
[[call]]
at = "180s"
from = "01000000004"
to = "4001"
script = [ { wait = "40s" } ]

# Keys out of band only, then "*" to hear the menu again, then 3.
[[call]]
at = "240s"
from = "01000000005"
to = "4001"
script = [ { wait = "4s" }, { press = "*", via = "signal" }, { wait = "1500ms" }, { press = "3", via = "both" }, { wait = "3s" }, { hangup = true } ]

[[agent]]
name = "alice"
line = "desk-1"
answer_after = "2s"
talk = "5s"
"##,
        OPEN,
    );
    assert_eq!(recs.len(), 5, "{recs:#?}");

    let a = by_caller(&recs, "01000000001");
    let pa = path(a);
    assert!(pa.contains(&"main=1".to_string()), "{pa:?}");
    assert!(pa.contains(&"sales=connected:alice".to_string()), "{pa:?}");
    assert_eq!(a["connected_to"], "desk-1");
    assert_eq!(a["agent"], "alice");
    assert_eq!(a["queue"], "sales");
    assert_eq!(a["queue_exit"], "connected");
    assert_eq!(a["survey_score"], 4, "{a:#}");
    assert_eq!(a["outcome"], "connected:alice");
    assert_eq!(a["flow"], "hours");

    let b = by_caller(&recs, "01000000002");
    let pb = path(b);
    assert!(pb.contains(&"main=12".to_string()), "{pb:?}");
    assert!(pb.contains(&"check=genuine_first".to_string()), "{pb:?}");

    let c = by_caller(&recs, "01000000003");
    assert_eq!(
        path(c)
            .iter()
            .filter(|p| p.starts_with("main!invalid"))
            .count(),
        2,
        "{c:#}"
    );
    assert_eq!(c["outcome"], "max_failures:main");
    assert_eq!(c["hangup_side"], "box");

    let d = by_caller(&recs, "01000000004");
    assert_eq!(
        path(d).iter().filter(|p| *p == "main!timeout").count(),
        2,
        "{d:#}"
    );
    assert_eq!(d["outcome"], "max_timeouts:main");

    let e = by_caller(&recs, "01000000005");
    let pe = path(e);
    assert!(pe.contains(&"main=*".to_string()), "{pe:?}");
    // "3" was sent both in band and out of band: heard once.
    assert!(pe.contains(&"main=3".to_string()), "{pe:?}");
    assert_eq!(
        pe.iter().filter(|p| p.starts_with("main!")).count(),
        0,
        "{pe:?}"
    );
}

#[test]
fn barge_in_off_ignores_keys_during_the_greeting_and_back_returns() {
    let site = ivr_site();
    let recs = run_at(
        &site,
        r##"
# Main menu: "2" (barge-in on). Support greeting is 3 s with barge-in off:
# the "1" keyed 1 s into it is ignored, so the menu times out once (3 s),
# says so (2.2 s) and greets again (3 s); then "*" goes back to the main
# menu and "4" requests a callback.
[[call]]
at = "0s"
from = "01000000011"
to = "4001"
script = [ { wait = "1s" }, { press = "2" }, { wait = "1s" }, { press = "1" }, { wait = "10600ms" }, { press = "*" }, { wait = "500ms" }, { press = "4" }, { wait = "15s" } ]
"##,
        OPEN,
    );
    let r = by_caller(&recs, "01000000011");
    let p = path(r);
    let i = p
        .iter()
        .position(|s| s == "support")
        .expect("entered support");
    assert_eq!(p[i + 1], "support!timeout", "{p:?}");
    assert!(p.contains(&"support=*".to_string()), "{p:?}");
    let back = p.iter().rposition(|s| s == "main").unwrap();
    assert!(back > i, "back to main after support: {p:?}");
    assert!(p.contains(&"callback=requested".to_string()), "{p:?}");
    let cb = table(&site, "callbacks");
    assert_eq!(cb.len(), 1);
    assert_eq!(cb[0]["number"], "01000000011");
    assert_eq!(cb[0]["queue"], "sales");
    let outbox = table(&site, "outbox");
    assert!(
        outbox.iter().any(|o| o["stream"] == "callback"),
        "{outbox:?}"
    );
}

#[test]
fn business_hours_holidays_blocked_and_vip_callers() {
    let scenario = r##"
[[call]]
at = "0s"
from = "01000000021"
to = "4001"
script = [ { wait = "20s" } ]
"##;
    // Monday 20:00: closed.
    let site = ivr_site();
    let recs = run_at(&site, scenario, "2026-11-23T20:00:00+08:00");
    assert_eq!(recs[0]["outcome"], "closed", "{recs:#?}");
    assert_eq!(recs[0]["disposition"], "answered");
    // Monday 12:30: lunch break.
    let site = ivr_site();
    let recs = run_at(&site, scenario, "2026-11-23T12:30:00+08:00");
    assert_eq!(recs[0]["outcome"], "closed");
    // Friday 25 December, 10:00: a holiday, though within Friday's hours.
    let site = ivr_site();
    let recs = run_at(&site, scenario, "2026-12-25T10:00:00+08:00");
    assert_eq!(recs[0]["outcome"], "holiday");
    // Open: the caller reaches the main menu.
    let site = ivr_site();
    let recs = run_at(
        &site,
        &(scenario.to_string()
            + r##"
# A blocked number is refused before answering.
[[call]]
at = "30s"
from = "13912345678"
to = "4001"
script = [ { wait = "5s" } ]

# A VIP goes straight to desk 2.
[[call]]
at = "60s"
from = "13800000007"
to = "4001"
script = [ { wait = "10s" }, { hangup = true } ]

[[agent]]
name = "bob"
line = "desk-2"
answer_after = "1s"
"##),
        OPEN,
    );
    assert_eq!(
        by_caller(&recs, "01000000021")["outcome"],
        "max_timeouts:main"
    );
    let blocked = by_caller(&recs, "13912345678");
    assert_eq!(blocked["disposition"], "rejected");
    assert_eq!(blocked["hangup_cause"], "rejected");
    assert_eq!(blocked["outcome"], "blocked");
    assert!(blocked["answer"].is_null());
    let vip = by_caller(&recs, "13800000007");
    assert_eq!(vip["connected_to"], "desk-2", "{vip:#}");
    assert_eq!(vip["hangup_side"], "caller");
}

#[test]
fn lookups_genuine_repeat_not_found_diversion_and_order_status() {
    let site = ivr_site();
    let recs = run_at(
        &site,
        r##"
[[call]]
at = "0s"
from = "01000000031"
to = "4003"
script = [ { wait = "1s" }, { press = "1234567890#" }, { wait = "15s" } ]

# The same code from the south region: genuine, checked once before, and
# flagged as a possible diversion.
[[call]]
at = "60s"
from = "02000000032"
to = "4003"
script = [ { wait = "1s" }, { press = "1234567890#" }, { wait = "30s" } ]

[[call]]
at = "120s"
from = "01000000033"
to = "4003"
script = [ { wait = "1s" }, { press = "999999#" }, { wait = "15s" } ]

# Too short for the pattern twice: collection fails.
[[call]]
at = "180s"
from = "01000000034"
to = "4003"
script = [ { wait = "1s" }, { press = "12#" }, { wait = "6s" }, { press = "34#" }, { wait = "15s" } ]

# Order status through the support menu.
[[call]]
at = "240s"
from = "01000000035"
to = "4001"
script = [ { wait = "1s" }, { press = "2" }, { wait = "3800ms" }, { press = "1" }, { wait = "1s" }, { press = "1001#" }, { wait = "15s" } ]
"##,
        OPEN,
    );
    let first = by_caller(&recs, "01000000031");
    assert!(
        path(first).contains(&"check=genuine_first".into()),
        "{first:#}"
    );
    let second = by_caller(&recs, "02000000032");
    assert!(
        path(second).contains(&"check=genuine_repeat,diverted".into()),
        "{second:#}"
    );
    let third = by_caller(&recs, "01000000033");
    assert!(path(third).contains(&"check=not_found".into()), "{third:#}");
    let fourth = by_caller(&recs, "01000000034");
    assert_eq!(fourth["outcome"], "collect_failed:check-code", "{fourth:#}");
    let order = by_caller(&recs, "01000000035");
    assert!(
        path(order).contains(&"order_status=shipped".into()),
        "{order:#}"
    );
    assert_eq!(order["ivr_vars"]["order_no"], "1001");
    // Codes are not recordable: they stay off the call record.
    assert!(first["ivr_vars"].get("code").is_none());

    let checks = table(&site, "product_checks");
    assert_eq!(checks.len(), 3, "{checks:#?}");
    assert_eq!(checks[1]["diverted"], 1);
    assert_eq!(checks[1]["caller_region"], "south");
    assert_eq!(checks[2]["found"], 0);
    // Every lookup the flows made, found or not, in call order.
    let lookups = table(&site, "lookups");
    let seen: Vec<(String, i64)> = lookups
        .iter()
        .map(|l| {
            (
                format!(
                    "{}:{}",
                    l["source"].as_str().unwrap(),
                    l["key"].as_str().unwrap()
                ),
                l["found"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 4, "{lookups:#?}");
    assert_eq!(
        seen.iter()
            .filter(|(k, _)| k.starts_with("products:"))
            .count(),
        3
    );
    assert!(seen.contains(&("orders:1001".to_string(), 1)), "{seen:?}");
    assert_eq!(seen.iter().filter(|(_, f)| *f == 0).count(), 1, "{seen:?}");
    let outbox = table(&site, "outbox");
    // Headquarters gets every lookup, and the diversion flag on its own.
    let sent: Vec<_> = outbox.iter().filter(|o| o["stream"] == "lookup").collect();
    assert_eq!(sent.len(), 5, "{outbox:#?}");
    let div: Vec<_> = sent
        .iter()
        .filter(|o| o["payload"]["event"] == "possible_diversion")
        .collect();
    assert_eq!(div.len(), 1, "{outbox:#?}");
    assert_eq!(div[0]["payload"]["event"], "possible_diversion");
    assert_eq!(div[0]["payload"]["product_region"], "north");
}

#[test]
fn voicemail_notify_and_the_chinese_flow() {
    let site = ivr_site();
    write_tone(&site.dir.path().join("speech.wav"), 3000);
    let recs = run_at(
        &site,
        r##"
# Leaves a 3 s message and ends it with #.
[[call]]
at = "0s"
from = "01000000041"
to = "4001"
script = [ { wait = "1s" }, { press = "3" }, { wait = "10s" }, { play = "speech.wav" }, { press = "#" }, { wait = "10s" } ]

# Hangs up in the middle of the message: it is kept.
[[call]]
at = "60s"
from = "01000000042"
to = "4001"
script = [ { wait = "1s" }, { press = "3" }, { wait = "10s" }, { play = "speech.wav" }, { hangup = true } ]

# Asks for the price list by SMS.
[[call]]
at = "120s"
from = "01000000043"
to = "4001"
script = [ { wait = "1s" }, { press = "6" }, { wait = "10s" } ]

# The Chinese number.
[[call]]
at = "180s"
from = "01000000044"
to = "4002"
script = [ { wait = "1s" }, { press = "1" }, { wait = "5s" }, { press = "1234567890#" }, { wait = "20s" } ]
"##,
        OPEN,
    );
    let vm = table(&site, "voicemail");
    assert_eq!(vm.len(), 2, "{vm:#?}");
    for v in &vm {
        let ms = v["duration_ms"].as_i64().unwrap();
        // Files are named relative to the data directory.
        let file = site.data().join(v["file"].as_str().unwrap());
        let reader = hound::WavReader::open(&file).expect("a playable WAV");
        assert_eq!(reader.spec().sample_rate, 8000);
        assert_eq!(i64::from(reader.duration()) / 8, ms);
    }
    // The message: 3 s of speech plus the pause before it (the beep ends
    // before recording starts), without the # tone.
    let m1 = vm.iter().find(|v| v["caller"] == "01000000041").unwrap();
    let ms = m1["duration_ms"].as_i64().unwrap();
    assert!((3000..9000).contains(&ms), "{m1:#}");
    let m2 = vm.iter().find(|v| v["caller"] == "01000000042").unwrap();
    assert!(m2["duration_ms"].as_i64().unwrap() >= 3000, "{m2:#}");
    assert_eq!(
        by_caller(&recs, "01000000042")["outcome"],
        "voicemail:sales"
    );

    let outbox = table(&site, "outbox");
    let n: Vec<_> = outbox.iter().filter(|o| o["stream"] == "notify").collect();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0]["payload"]["event"], "send_document");
    assert_eq!(n[0]["payload"]["fields"]["to"], "01000000043");
    assert_eq!(n[0]["payload"]["fields"]["document"], "price-list");

    let zh = by_caller(&recs, "01000000044");
    assert_eq!(zh["language"], "zh");
    assert_eq!(zh["flow"], "zh-main");
    assert!(path(zh).contains(&"check=genuine_first".into()), "{zh:#}");
}

#[test]
fn outbound_verification_code_and_order_confirmation_with_retries() {
    let site = ivr_site();
    let cfg = std::fs::read_to_string(site.config()).unwrap()
        + r##"
[ivr.node.say-code]
type = "play"
prompts = ["system:your-code-is", "{digits:code}", "system:repeat", "{digits:code}"]
next = "bye"

[ivr.node.bye]
type = "hangup"
prompt = "system:goodbye"
outcome = "code_said"

[ivr.node.confirm]
type = "menu"
greeting = "system:confirm-order"
first_digit_timeout = "5s"
max_failures = 2
max_timeouts = 2
options = { "1" = "confirmed", "2" = "cancelled" }

[ivr.node.confirmed]
type = "set"
var = "result"
value = "confirmed"
recordable = true
next = "confirmed-bye"

[ivr.node.confirmed-bye]
type = "hangup"
prompt = "system:order-confirmed"

[ivr.node.cancelled]
type = "set"
var = "result"
value = "cancelled"
recordable = true
next = "cancelled-bye"

[ivr.node.cancelled-bye]
type = "hangup"
prompt = "system:order-cancelled"

[[outbound]]
name = "verify-1"
number = "13700000001"
start = "say-code"
vars = { code = "482913" }

[[outbound]]
name = "order-77"
number = "13700000002"
start = "confirm"
ring_timeout = "20s"
retry_every = "10m"
max_attempts = 3
success = { var = "result", in = ["confirmed", "cancelled"] }

[[outbound]]
name = "order-78"
number = "13700000003"
start = "confirm"
after = "30s"
ring_timeout = "15s"
retry_every = "5m"
max_attempts = 2
success = { var = "result", in = ["confirmed", "cancelled"] }
"##;
    site.write("site.toml", &cfg);
    let recs = run_at(
        &site,
        r##"
[[callee]]
number = "13700000001"
answer_after = "2s"

# First attempt: nobody answers. Second: answers but keys nothing (no
# result). Third: confirms.
[[callee]]
number = "13700000002"
answers = false

[[callee]]
number = "13700000002"
answer_after = "1s"

[[callee]]
number = "13700000002"
answer_after = "4s"
script = [ { wait = "2s" }, { press = "1" }, { wait = "10s" } ]

# Busy, then busy again: the job fails after its two attempts.
[[callee]]
number = "13700000003"
busy = true
"##,
        OPEN,
    );
    let out: Vec<&Value> = recs
        .iter()
        .filter(|r| r["direction"] == "outbound")
        .collect();
    let code = out.iter().find(|r| r["job"] == "verify-1").unwrap();
    assert_eq!(code["outcome"], "code_said", "{code:#}");
    assert_eq!(code["dialled"], "13700000001");
    assert_eq!(code["disposition"], "answered");
    // Said twice, digit by digit: the call lasts at least two readings.
    assert!(code["answered_ms"].as_i64().unwrap() > 4000, "{code:#}");

    let order: Vec<&&Value> = out.iter().filter(|r| r["job"] == "order-77").collect();
    assert_eq!(order.len(), 3, "{order:#?}");
    assert_eq!(order[0]["disposition"], "no_answer");
    assert_eq!(order[1]["disposition"], "answered");
    assert_eq!(order[2]["ivr_vars"]["result"], "confirmed");
    // Ten minutes between attempts (plus ringing time).
    let t = |r: &Value| {
        r["start"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    let gap = t(order[1]).duration_since(t(order[0])).as_secs();
    assert!((600..=640).contains(&gap), "gap {gap}s");

    let busy: Vec<&&Value> = out.iter().filter(|r| r["job"] == "order-78").collect();
    assert_eq!(busy.len(), 2);
    assert!(
        busy.iter().all(|r| r["hangup_cause"] == "busy"),
        "{busy:#?}"
    );

    let jobs = table(&site, "outbound_jobs");
    let job = |n: &str| jobs.iter().find(|j| j["name"] == n).unwrap().clone();
    assert_eq!(job("verify-1")["status"], "done");
    assert_eq!(job("order-77")["status"], "done");
    assert_eq!(job("order-77")["attempts"], 3);
    assert_eq!(job("order-77")["result"], "confirmed");
    assert_eq!(job("order-78")["status"], "failed");
    assert_eq!(job("order-78")["result"], "busy");

    // A restart does not call anyone again for finished jobs.
    let again = run_at(&site, "", OPEN);
    assert_eq!(again.len(), recs.len());
}

/// Problems in the flow graph are config errors with their places.
#[test]
fn flow_errors_are_reported_with_places() {
    let site = ivr_site();
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let bad =
        cfg.replace(
            "on_no_answer = \"voicemail\"",
            "on_no_answer = \"voicemial\"",
        )
        .replace("pattern = \"XXXXXX!\"", "pattern = \"XX[9-1]\"")
        .replace("prompt = \"holiday.wav\"", "prompt = \"holidays.wav\"")
        .replace("mailbox = \"sales\"", "mailbox = \"../etc\"")
        .replace(
            "max_failures = 2\nmax_timeouts = 2\non_max_failures = \"hangup\"",
            "max_failures = 0\nmax_timeouts = 2\non_max_failures = \"hangup\"",
        ) + r##"
[ivr.node.orphan]
type = "hangup"

[ivr.node.loop-a]
type = "play"
prompts = "system:please-hold"
next = "loop-b"

[ivr.node.loop-b]
type = "play"
prompts = "system:all-busy"
next = "loop-a"

[ivr.node.entry]
type = "branch"
cases = [{ var = "x", equals = "1", goto = "loop-a" }]
default = "loop-a"

[[ivr.route]]
dialled = ["4009"]
start = "entry"
"##;
    site.write("site.toml", &bad);
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let line_of = |needle: &str| {
        bad.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle} not in config"))
    };
    for (needle, msg) in [
        ("on_no_answer = \"voicemial\"", "`voicemial` is not a node"),
        ("pattern = \"XX[9-1]\"", "bad range `9-1`"),
        (
            "prompt = \"holidays.wav\"",
            "prompt `holidays.wav` for language en not found",
        ),
        ("[ivr.node.orphan]", "node `orphan` is never reached"),
        (
            "mailbox = \"../etc\"",
            "mailbox `../etc` must be 1-64 letters",
        ),
        ("max_failures = 0", "must be at least 1"),
        (
            "[ivr.node.loop-a]",
            "node `loop-a` is in a loop with no way out",
        ),
        (
            "[ivr.node.entry]",
            "node `entry` is in a loop with no way out",
        ),
    ] {
        let line = line_of(needle);
        let want = format!("site.toml:{line}:");
        assert!(
            err.lines().any(|l| l.contains(&want) && l.contains(msg)),
            "expected `{msg}` at line {line}:\n{err}"
        );
    }
}

#[test]
fn transfer_to_an_outside_number_bridges_over_another_trunk() {
    let site = ivr_site();
    let recs = run_at(
        &site,
        r##"
[[call]]
at = "0s"
from = "01000000051"
to = "4001"
line = "trunk-1"
script = [ { wait = "1s" }, { press = "0" }, { wait = "30s" } ]

# The head office operator answers after 2 s and hangs up after 4 s.
[[callee]]
number = "13600000000"
answer_after = "2s"
hangup_after = "4s"
"##,
        OPEN,
    );
    assert_eq!(
        recs.len(),
        1,
        "the outside leg is part of the call: {recs:#?}"
    );
    let r = &recs[0];
    assert_eq!(r["connected_to"], "trunk-2", "{r:#}");
    assert_eq!(r["outcome"], "connected:trunk-2");
    // Announcement, ringing and 4 s of talk: the box hangs up after the
    // operator does.
    let talk = r["answered_ms"].as_i64().unwrap();
    assert!(talk > 6000 && talk < 20_000, "{r:#}");
    assert_eq!(r["hangup_side"], "box");
}

/// Callers keying anything in any rhythm: every call ends, is recorded and
/// releases its line; the daemon exits cleanly.
#[test]
fn callers_pressing_anything_in_any_rhythm_never_hang_or_crash_the_box() {
    let site = ivr_site();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let keys: Vec<char> = "0123456789*#ABCD".chars().collect();
    let mut sc = String::new();
    let calls = 120;
    for i in 0..calls {
        let mut steps = Vec::new();
        for _ in 0..(1 + rnd(8)) {
            let digits: String = (0..1 + rnd(6)).map(|_| keys[rnd(16) as usize]).collect();
            let via = ["inband", "signal", "both"][rnd(3) as usize];
            steps.push(format!("{{ wait = \"{}ms\" }}", rnd(4000)));
            steps.push(format!(
                "{{ press = \"{digits}\", via = \"{via}\", tone = \"{}ms\", gap = \"{}ms\", level = -{} }}",
                5 + rnd(300),
                5 + rnd(300),
                5 + rnd(30)
            ));
        }
        let hangup = if rnd(3) == 0 {
            format!("hangup_after = \"{}ms\"\n", 500 + rnd(30_000))
        } else {
            String::new()
        };
        sc += &format!(
            "[[call]]\nat = \"{}s\"\nfrom = \"0100{:07}\"\nto = \"{}\"\n{hangup}script = [{}]\n\n",
            i * 100,
            i,
            ["4001", "4002", "4003"][rnd(3) as usize],
            steps.join(", ")
        );
    }
    sc += "[[agent]]\nname = \"alice\"\nline = \"desk-1\"\nanswer_after = \"3s\"\ntalk = \"20s\"\n";
    let path = site.write("calls.toml", &sc);
    let out = site.run_fast_with(&path, &["--start-at", OPEN]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("never released"), "{err}");
    assert!(!err.contains("ERROR"), "{err}");
    let recs = site.records();
    assert_eq!(recs.len(), calls as usize);
    for r in &recs {
        assert!(r["end"].is_string(), "{r:#}");
        assert!(r["outcome"].is_string(), "{r:#}");
        assert_ne!(r["disposition"], "in_progress");
    }
}

/// Barge-in and the inter-digit timeout, measured by when the call ends:
/// each option below hangs up at once, so the call's length says when the
/// box acted on the key.
#[test]
fn barge_in_cuts_the_greeting_and_a_prefix_option_waits_the_inter_digit_timeout() {
    let site = ivr_site();
    write_tone(&site.dir.path().join("prompts/long.wav"), 10_000);
    let cfg = std::fs::read_to_string(site.config()).unwrap()
        + r##"
[[ivr.route]]
dialled = ["4005"]
start = "barge-on"

[[ivr.route]]
dialled = ["4006"]
start = "barge-off"

[[ivr.route]]
dialled = ["4007"]
start = "prefix"

[ivr.node.barge-on]
type = "menu"
greeting = "long.wav"
options = { "5" = "end" }

[ivr.node.barge-off]
type = "menu"
greeting = "long.wav"
barge_in = false
first_digit_timeout = "2s"
max_timeouts = 1
on_max_timeouts = "hangup"
options = { "5" = "end" }

[ivr.node.prefix]
type = "menu"
greeting = "main-short.wav"
inter_digit_timeout = "2s"
options = { "1" = "end", "12" = "end" }

[ivr.node.end]
type = "hangup"
"##;
    site.write("site.toml", &cfg);
    let recs = run_at(
        &site,
        r##"
[[call]]
at = "0s"
from = "01000000061"
to = "4005"
script = [ { wait = "1s" }, { press = "5" }, { wait = "20s" } ]

[[call]]
at = "60s"
from = "01000000062"
to = "4006"
script = [ { wait = "1s" }, { press = "5" }, { wait = "20s" } ]

[[call]]
at = "120s"
from = "01000000063"
to = "4007"
script = [ { wait = "1500ms" }, { press = "1" }, { wait = "20s" } ]
"##,
        OPEN,
    );
    let ms = |c: &str| by_caller(&recs, c)["answered_ms"].as_i64().unwrap();
    // Key at 1.0 s, heard within 50 ms: the 10 s greeting stops there.
    let on = ms("01000000061");
    assert!((1000..1300).contains(&on), "barge-in on: {on} ms");
    assert_eq!(by_caller(&recs, "01000000061")["outcome"], "end");
    // Barge-in off: the key is ignored, the greeting plays out, then the
    // 2 s first-digit timeout ends the call.
    let off = ms("01000000062");
    assert!(off >= 12_000, "barge-in off: {off} ms");
    assert_eq!(
        by_caller(&recs, "01000000062")["outcome"],
        "max_timeouts:barge-off"
    );
    // "1" could still become "12": the box waits the 2 s inter-digit
    // timeout before taking option 1.
    let prefix = ms("01000000063");
    assert!((3500..3900).contains(&prefix), "prefix option: {prefix} ms");
    assert!(path(by_caller(&recs, "01000000063")).contains(&"prefix=1".into()));
}

/// Glare: a caller arrives on the only trunk just as an outbound job seizes
/// it. The caller's call is taken and recorded; the job is not charged an
/// attempt for it and completes later.
#[test]
fn an_inbound_call_arriving_as_a_job_dials_out_is_not_lost() {
    let site = ivr_site();
    let cfg = std::fs::read_to_string(site.config()).unwrap()
        + r##"
[ivr.node.say-code]
type = "play"
prompts = ["system:your-code-is", "{digits:code}"]
next = "goodbye"

[[outbound]]
name = "verify-2"
number = "13700000009"
trunks = ["trunk-1"]
start = "say-code"
after = "10s"
ring_timeout = "5s"
max_attempts = 1
vars = { code = "1234" }
"##;
    site.write("site.toml", &cfg);
    let recs = run_at(
        &site,
        r##"
[[call]]
at = "10s"
from = "01000000071"
to = "4001"
line = "trunk-1"
script = [ { wait = "5s" }, { hangup = true } ]

[[callee]]
number = "13700000009"
answer_after = "1s"
"##,
        OPEN,
    );
    let inbound = recs.iter().find(|r| r["caller"] == "01000000071");
    assert!(inbound.is_some(), "the caller has a record: {recs:#?}");
    let jobs = table(&site, "outbound_jobs");
    assert_eq!(jobs[0]["status"], "done", "{jobs:#?}");
    assert_eq!(jobs[0]["attempts"], 1);
}

/// Branching on a collected variable, and `top` back to the start.
#[test]
fn branches_on_variables_and_top_returns_to_the_start() {
    let site = ivr_site();
    let cfg = std::fs::read_to_string(site.config()).unwrap()
        + r##"
[[ivr.route]]
dialled = ["4008"]
start = "pin"

[ivr.node.pin]
type = "menu"
greeting = "main-short.wav"
options = { "1" = "ask", "9" = "top" }

[ivr.node.ask]
type = "collect"
var = "answer"
prompt = "main-short.wav"
min = 1
max = 1
recordable = true
next = "which"

[ivr.node.which]
type = "branch"
cases = [
  { var = "answer", equals = "7", goto = "seven" },
  { var = "answer", matches = "[1-3]", goto = "low" },
]
default = "other"

[ivr.node.seven]
type = "hangup"

[ivr.node.low]
type = "hangup"

[ivr.node.other]
type = "hangup"
"##;
    site.write("site.toml", &cfg);
    let call = |at: u32, from: &str, keys: &str| {
        format!(
            "[[call]]\nat = \"{at}s\"\nfrom = \"{from}\"\nto = \"4008\"\nscript = [ {keys} {{ wait = \"10s\" }} ]\n\n"
        )
    };
    let recs = run_at(
        &site,
        &(call(
            0,
            "01000000081",
            r#"{ wait = "1500ms" }, { press = "1" }, { wait = "1500ms" }, { press = "7" },"#,
        ) + &call(
            60,
            "01000000082",
            r#"{ wait = "1500ms" }, { press = "1" }, { wait = "1500ms" }, { press = "2" },"#,
        ) + &call(
            120,
            "01000000083",
            r#"{ wait = "1500ms" }, { press = "1" }, { wait = "1500ms" }, { press = "5" },"#,
        ) + &call(
            180,
            "01000000084",
            r#"{ wait = "1500ms" }, { press = "9" }, { wait = "1500ms" }, { press = "1" }, { wait = "1500ms" }, { press = "7" },"#,
        )),
        OPEN,
    );
    let outcome = |c: &str| {
        by_caller(&recs, c)["outcome"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(outcome("01000000081"), "seven");
    assert_eq!(outcome("01000000082"), "low");
    assert_eq!(outcome("01000000083"), "other");
    assert_eq!(by_caller(&recs, "01000000083")["ivr_vars"]["answer"], "5");
    // "9" goes to the route's start again: the same menu, entered twice.
    let p = path(by_caller(&recs, "01000000084"));
    assert_eq!(p.iter().filter(|e| *e == "pin").count(), 2, "{p:?}");
    assert_eq!(outcome("01000000084"), "seven");
}

/// A site prompt in a language folder wins over the shared one for that
/// language (here a broken one, so check-config names the file it chose).
#[test]
fn a_language_folder_overrides_a_site_prompt_for_that_language() {
    let site = ivr_site();
    std::fs::create_dir_all(site.dir.path().join("prompts/zh")).unwrap();
    site.write("prompts/zh/main-long.wav", "not audio");
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prompts/zh/main-long.wav"), "{err}");
    assert!(
        !err.contains("prompts/main-long.wav"),
        "the shared file is fine: {err}"
    );
}
