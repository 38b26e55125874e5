//! Queues and agents end to end, in virtual time: who got which call when,
//! read back from call records and the queue log.

use callbox_tests::{Site, by_caller, cmd, text};
use serde_json::Value;

/// A site with `trunks` trunks, `desks` stations and an IVR that sends
/// dialled 4001 to queue `sales`, 4002 to `support` (each overflowing to a
/// goodbye), with the given `[acd]` text.
fn acd_site(trunks: usize, desks: usize, acd: &str) -> Site {
    let site = Site::new(trunks, desks, 0, "");
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let support = if acd.contains("[acd.queue.support]") {
        r##"
[[ivr.route]]
dialled = ["4002"]
start = "support"

[ivr.node.support]
type = "queue"
announce = []
on_overflow = "overflow"
"##
    } else {
        ""
    };
    let cfg = cfg.replace("greeting = \"greeting.wav\"\n", "")
        + r##"
[ivr]
start = "sales"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "overflow"

[ivr.node.overflow]
type = "hangup"
outcome = "overflow"
"## + support
        + acd;
    site.write("site.toml", &cfg);
    site
}

fn run(site: &Site, scenario: &str) -> Vec<Value> {
    let path = site.write("calls.toml", scenario);
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    site.records()
}

fn table(site: &Site, name: &str) -> Vec<Value> {
    site.table(name)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Agents of the calls from `from` numbers, in caller order.
fn agents_by_caller(recs: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = recs
        .iter()
        .map(|r| (s(&r["caller"]).to_string(), s(&r["agent"]).to_string()))
        .collect();
    v.sort();
    v
}

/// Calls one after another (each done before the next arrives), each
/// talking `talk` with whoever answers.
fn sequential(n: u32, every_s: u32, to: &str) -> String {
    format!(
        r##"
[[call]]
at = "0s"
from = "100{{n:2}}"
to = "{to}"
repeat = {n}
every = "{every_s}s"
hangup_after = "60s"
"##
    )
}

fn agents_toml(names: &[&str], answer_after: &[&str], talk: &[&str]) -> String {
    let mut out = String::new();
    for (i, n) in names.iter().enumerate() {
        out += &format!(
            "[[agent]]\nname = \"{n}\"\nline = \"desk-{}\"\nanswer_after = \"{}\"\ntalk = \"{}\"\n\n",
            i + 1,
            answer_after[i],
            talk[i]
        );
    }
    out
}

fn three_agents(strategy: &str, extra: &str) -> String {
    format!(
        r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.agent.b]
station = "desk-2"
logged_in = true

[acd.agent.c]
station = "desk-3"
logged_in = true

[acd.queue.sales]
strategy = "{strategy}"
members = {{ a = 0, b = 0, c = 0 }}
{extra}
"##
    )
}

fn order(recs: &[Value]) -> Vec<String> {
    agents_by_caller(recs).into_iter().map(|(_, a)| a).collect()
}

#[test]
fn strategies_distribute_as_defined() {
    let talk = ["10s", "10s", "10s"];
    let ans = ["1s", "1s", "1s"];
    // Linear: always the first free member.
    let site = acd_site(2, 3, &three_agents("linear", ""));
    let recs = run(
        &site,
        &(sequential(4, 30, "4001") + &agents_toml(&["a", "b", "c"], &ans, &talk)),
    );
    assert_eq!(order(&recs), ["a", "a", "a", "a"]);

    // Round robin rotates and remembers.
    let site = acd_site(2, 3, &three_agents("round_robin", ""));
    let recs = run(
        &site,
        &(sequential(5, 30, "4001") + &agents_toml(&["a", "b", "c"], &ans, &talk)),
    );
    assert_eq!(order(&recs), ["a", "b", "c", "a", "b"]);

    // Longest idle: the one who finished longest ago.
    let site = acd_site(2, 3, &three_agents("longest_idle", ""));
    let recs = run(
        &site,
        &(sequential(4, 30, "4001") + &agents_toml(&["a", "b", "c"], &ans, &talk)),
    );
    assert_eq!(order(&recs), ["a", "b", "c", "a"]);

    // Least talk time: a talks long, b short, c medium.
    let site = acd_site(2, 3, &three_agents("least_talk_time", ""));
    let recs = run(
        &site,
        &(sequential(5, 60, "4001") + &agents_toml(&["a", "b", "c"], &ans, &["20s", "5s", "12s"])),
    );
    // a (20), b (5), c (12), then b (5 -> 10), then b again (10 < 12).
    assert_eq!(order(&recs), ["a", "b", "c", "b", "b"]);

    // Fewest calls: two simultaneous callers take a and b; then each new
    // caller goes to whoever has taken the fewest.
    let site = acd_site(3, 3, &three_agents("fewest_calls", ""));
    let recs = run(
        &site,
        &(sequential(6, 30, "4001") + &agents_toml(&["a", "b", "c"], &ans, &talk)),
    );
    let counts = |who: &str| order(&recs).iter().filter(|a| *a == who).count();
    assert_eq!(
        (counts("a"), counts("b"), counts("c")),
        (2, 2, 2),
        "{:?}",
        order(&recs)
    );

    // Ring all: everyone rings, the fastest to answer takes the call.
    let site = acd_site(2, 3, &three_agents("ring_all", ""));
    let recs = run(
        &site,
        &(sequential(2, 30, "4001") + &agents_toml(&["a", "b", "c"], &["5s", "3s", "1s"], &talk)),
    );
    assert_eq!(order(&recs), ["c", "c"]);
    let log = table(&site, "queue_log");
    let offers = log.iter().filter(|e| e["event"] == "OFFER").count();
    assert_eq!(offers, 6, "three offers per call");

    // Random: everyone gets some of 30 calls.
    let site = acd_site(2, 3, &three_agents("random", ""));
    let recs = run(
        &site,
        &(sequential(30, 30, "4001") + &agents_toml(&["a", "b", "c"], &ans, &talk)),
    );
    for who in ["a", "b", "c"] {
        assert!(
            order(&recs).iter().any(|a| a == who),
            "{who}: {:?}",
            order(&recs)
        );
    }
}

#[test]
fn penalty_tiers_open_on_time() {
    // b is only offered after 20 s of waiting (tier 2 x 10 s); a is busy.
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.agent.b]
station = "desk-2"
logged_in = true

[acd.queue.sales]
strategy = "linear"
members = { a = 0, b = 2 }
tier_step = "10s"
"##;
    let site = acd_site(3, 2, acd);
    let recs = run(
        &site,
        r##"
[[call]]
at = "0s"
from = "1001"
to = "4001"
hangup_after = "100s"

[[call]]
at = "5s"
from = "1002"
to = "4001"
hangup_after = "100s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "60s"

[[agent]]
name = "b"
line = "desk-2"
answer_after = "1s"
talk = "60s"
"##,
    );
    let second = by_caller(&recs, "1002");
    assert_eq!(second["agent"], "b");
    let wait = second["queue_wait_ms"].as_i64().unwrap();
    // Offered at 20 s of waiting, answered 1 s later.
    assert!((21_000..21_500).contains(&wait), "waited {wait} ms");
}

#[test]
fn wrap_up_holds_across_queues() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
wrap_up = "30s"

[acd.queue.support]
members = { a = 0 }
"##;
    let site = acd_site(3, 1, acd);
    let recs = run(
        &site,
        r##"
# A sales call of 5 s talk (ends at about 6 s); a support caller at 10 s
# must wait for a's 30 s of sales wrap-up.
[[call]]
at = "0s"
from = "1001"
to = "4001"
hangup_after = "100s"

[[call]]
at = "10s"
from = "1002"
to = "4002"
hangup_after = "100s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "5s"
"##,
    );
    let first = by_caller(&recs, "1001");
    let second = by_caller(&recs, "1002");
    assert_eq!(second["agent"], "a");
    assert_eq!(second["queue"], "support");
    let t = |r: &Value, k: &str| s(&r[k]).parse::<jiff::Timestamp>().unwrap();
    // The sales call's bridge ended at first.start + answer + 1 s ring + 5 s.
    let wait = second["queue_wait_ms"].as_i64().unwrap();
    let sales_end = t(first, "end");
    let connected = t(second, "answer")
        .checked_add(jiff::SignedDuration::from_millis(wait))
        .unwrap();
    let gap = connected.duration_since(sales_end).as_millis();
    assert!(
        (30_000..32_000).contains(&gap),
        "connected {gap} ms after the sales call ended"
    );
}

#[test]
fn ring_all_survives_an_agent_who_answers_and_hangs_up_at_once() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.agent.b]
station = "desk-2"
logged_in = true

[acd.queue.sales]
strategy = "ring_all"
members = { a = 0, b = 0 }
retry = "30s"
"##;
    let site = acd_site(2, 2, acd);
    let recs = run(
        &site,
        r##"
[[call]]
at = "0s"
from = "1001"
to = "4001"
hangup_after = "60s"

# a picks up after 1 s and puts the phone down 200 ms later.
[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "200ms"

[[agent]]
name = "b"
line = "desk-2"
answer_after = "3s"
talk = "10s"
"##,
    );
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r["agent"], "b", "{r:#}");
    assert_eq!(r["queue_exit"], "connected");
    let path: Vec<&str> = r["ivr_path"].as_array().unwrap().iter().map(s).collect();
    assert!(path.contains(&"sales!bounced:a"), "{path:?}");
    // a is not rung again in a loop: offers are a, b, then b again.
    let log = table(&site, "queue_log");
    let offers: Vec<&str> = log
        .iter()
        .filter(|e| e["event"] == "OFFER")
        .map(|e| s(&e["agent"]))
        .collect();
    assert_eq!(
        offers.iter().filter(|a| **a == "a").count(),
        1,
        "{offers:?}"
    );
}

#[test]
fn a_caller_who_hangs_up_as_the_agent_answers_leaves_the_agent_free() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true
wrap_up = "0s"

[acd.queue.sales]
members = { a = 0 }
"##;
    let site = acd_site(1, 1, acd);
    // The first caller hangs up at the very moment the agent picks up:
    // the station must be released and the agent free for the second.
    let recs = run(
        &site,
        r##"
[[call]]
at = "0s"
from = "1001"
to = "4001"
hangup_after = "1s"

[[call]]
at = "30s"
from = "1002"
to = "4001"
hangup_after = "5s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "60s"
"##,
    );
    assert_eq!(recs.len(), 2);
    let second = by_caller(&recs, "1002");
    assert_eq!(second["agent"], "a", "{second:#}");
    assert_eq!(second["queue_exit"], "connected", "{second:#}");
}

#[test]
fn overflow_when_full_empty_or_waiting_too_long() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.agent.z]
station = "desk-2"

[acd.queue.sales]
members = { a = 0 }
max_wait = "20s"
max_length = 1

[acd.queue.support]
members = { z = 0 }
join_empty = false
"##;
    let site = acd_site(4, 2, acd);
    let recs = run(
        &site,
        r##"
# a is busy for a minute with the first caller.
[[call]]
at = "0s"
from = "1001"
to = "4001"
hangup_after = "100s"

# Waits 20 s, then overflows.
[[call]]
at = "5s"
from = "1002"
to = "4001"
hangup_after = "100s"

# The queue is full (one waiting): straight to overflow.
[[call]]
at = "10s"
from = "1003"
to = "4001"
hangup_after = "100s"

# Support has nobody logged in and does not take callers then.
[[call]]
at = "10s"
from = "1004"
to = "4002"
hangup_after = "100s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "60s"
"##,
    );
    let by = |c: &str| by_caller(&recs, c);
    assert_eq!(by("1001")["queue_exit"], "connected");
    assert_eq!(by("1002")["queue_exit"], "timeout");
    let w = by("1002")["queue_wait_ms"].as_i64().unwrap();
    assert!((20_000..20_200).contains(&w), "{w}");
    assert_eq!(by("1002")["outcome"], "overflow");
    assert_eq!(by("1003")["queue_exit"], "full");
    assert_eq!(by("1004")["queue_exit"], "empty");
}

#[test]
fn feature_codes_log_in_pause_and_code_calls_and_statistics_add_up() {
    let acd = r##"
[acd.agent.a]
number = "2001"
station = "desk-1"

[acd.queue.sales]
members = { a = 0 }
service_level = "10s"
"##;
    let site = acd_site(3, 2, acd);
    let recs = run(
        &site,
        r##"
# a logs in at desk-2 (hot-desking) at 5 s, pauses at 100 s with reason 3,
# keys a wrong code at 150 s and unpauses at 200 s.
[[agent]]
name = "a"
line = "desk-2"
answer_after = "2s"
talk = "10s"
dial = [
  { at = "5s", digits = "*712001" },
  { at = "60s", digits = "*95" },
  { at = "100s", digits = "*733" },
  { at = "150s", digits = "*5555" },
  { at = "200s", digits = "*74", via = "inband" },
]

# Connected at 12 s (ring 2 s): waited 2 s after the login... answered.
[[call]]
at = "10s"
from = "1001"
to = "4001"
hangup_after = "100s"

# Arrives while a is paused: waits until the unpause at ~200 s.
[[call]]
at = "120s"
from = "1002"
to = "4001"
hangup_after = "200s"

# Gives up after 30 s (a is paused).
[[call]]
at = "130s"
from = "1003"
to = "4001"
hangup_after = "30s"
"##,
    );
    let by = |c: &str| by_caller(&recs, c);
    assert_eq!(by("1001")["agent"], "a");
    assert_eq!(by("1001")["connected_to"], "desk-2", "hot-desked");
    assert_eq!(by("1001")["wrap_code"], "5");
    assert_eq!(by("1002")["agent"], "a");
    let w2 = by("1002")["queue_wait_ms"].as_i64().unwrap();
    assert!(w2 > 80_000, "{w2}");
    assert_eq!(by("1003")["queue_exit"], "abandoned");

    let log = table(&site, "queue_log");
    let events: Vec<&str> = log.iter().map(|e| s(&e["event"])).collect();
    for e in [
        "AGENTLOGIN",
        "ENTERQUEUE",
        "CONNECT",
        "WRAPCODE",
        "PAUSE",
        "UNPAUSE",
        "ABANDON",
        "COMPLETEAGENT",
    ] {
        assert!(events.contains(&e), "{e} missing: {events:?}");
    }
    let pause = log.iter().find(|e| e["event"] == "PAUSE").unwrap();
    assert_eq!(pause["data"]["reason"], "3");

    // Statistics, by hand: 3 joined, 2 answered (waits 2 s and ~92 s; one
    // within the 10 s service level), 1 abandoned, talk 10 s each.
    let outbox = table(&site, "outbox");
    let st = &outbox
        .iter()
        .rev()
        .find(|o| o["stream"] == "acd_stats")
        .unwrap()["payload"];
    let q = &st["queues"][0];
    assert_eq!(q["joined"], 3);
    assert_eq!(q["answered"], 2);
    assert_eq!(q["abandoned"], 1);
    assert_eq!(q["service_level"], 0.5);
    assert!((q["abandon_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(q["avg_handle_ms"], 10_000);
    let asa = q["avg_speed_of_answer_ms"].as_i64().unwrap();
    let expect = (2_000 + w2) / 2;
    assert!((asa - expect).abs() < 200, "asa {asa} vs {expect}");
    let a = &st["agents"][0];
    assert_eq!(a["calls"], 2);
    assert_eq!(a["talk_ms"], 20_000);
    assert_eq!(a["pauses"], 1);
}

/// First come, first served, whatever agents do: hundreds of callers with
/// random arrival, patience and agents who pause, log out and back in.
#[test]
fn no_caller_is_connected_before_an_earlier_one_in_the_same_queue() {
    let mut seed: u64 = 0x1234_5678_9ABC_DEF1;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let agents = 30;
    let mut acd = String::new();
    for i in 1..=agents {
        acd += &format!(
            "[acd.agent.ag{i}]\nnumber = \"{}\"\nstation = \"desk-{i}\"\nlogged_in = true\n\n",
            3000 + i
        );
    }
    let strategy = [
        "longest_idle",
        "round_robin",
        "ring_all",
        "random",
        "fewest_calls",
        "linear",
    ];
    acd += &format!(
        "[acd.queue.sales]\nstrategy = \"{}\"\nmembers = {{ {} }}\nring_timeout = \"8s\"\nretry = \"2s\"\n",
        strategy[rnd(6) as usize],
        (1..=agents)
            .map(|i| format!("ag{i} = 0"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let site = acd_site(90, agents as usize, &acd);
    let mut sc = String::new();
    let callers = 400;
    let mut at_ms = 0;
    for i in 0..callers {
        at_ms += rnd(4000);
        sc += &format!(
            "[[call]]\nat = \"{at_ms}ms\"\nfrom = \"5{i:05}\"\nto = \"4001\"\nhangup_after = \"{}s\"\n\n",
            20 + rnd(70)
        );
    }
    for i in 1..=agents {
        let mut dials = Vec::new();
        let mut t = 0;
        for _ in 0..4 {
            t += 60 + rnd(200);
            let code = match rnd(3) {
                0 => format!("*73{}", rnd(10)),
                1 => "*72".to_string(),
                _ => "*76".to_string(),
            };
            dials.push(format!("{{ at = \"{t}s\", digits = \"{code}\" }}"));
            t += 10 + rnd(60);
            let back = if code == "*72" {
                format!("*71{}", 3000 + i)
            } else {
                "*74".into()
            };
            dials.push(format!("{{ at = \"{t}s\", digits = \"{back}\" }}"));
        }
        sc += &format!(
            "[[agent]]\nname = \"ag{i}\"\nline = \"desk-{i}\"\nanswer_after = \"{}ms\"\ntalk = \"{}s\"\nanswers = {}\ndial = [{}]\n\n",
            500 + rnd(6000),
            5 + rnd(40),
            rnd(8) != 0,
            dials.join(", ")
        );
    }
    let recs = run(&site, &sc);
    assert_eq!(recs.len(), callers as usize);
    let log = table(&site, "queue_log");
    let mut joined: Vec<&str> = Vec::new();
    let mut connected: Vec<&str> = Vec::new();
    for e in &log {
        let call = s(&e["call_id"]);
        match s(&e["event"]) {
            "ENTERQUEUE" => joined.push(call),
            "CONNECT" if !connected.contains(&call) => connected.push(call),
            _ => {}
        }
    }
    assert!(
        connected.len() > callers as usize / 3,
        "only {} connected",
        connected.len()
    );
    // Connections happen in join order.
    let pos = |c: &str| joined.iter().position(|j| *j == c).unwrap();
    for w in connected.windows(2) {
        assert!(
            pos(w[0]) < pos(w[1]),
            "{} (joined #{}) connected before {} (joined #{})",
            w[1],
            pos(w[1]),
            w[0],
            pos(w[0])
        );
    }
    // Every call ended and left the queue one way or another.
    for r in &recs {
        assert!(r["queue_exit"].is_string(), "{r:#}");
    }
}

#[test]
fn waiting_callers_hear_music_and_their_place_in_line() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
moh = "hold.wav"
announce_every = "20s"
"##;
    let site = acd_site(4, 1, acd);
    callbox_tests::write_tone(&site.dir.path().join("prompts/hold.wav"), 3000);
    let recs = run(
        &site,
        r##"
# a talks 60 s with the first caller; the next two wait.
[[call]]
at = "0s"
from = "1001"
to = "4001"
hangup_after = "100s"

[[call]]
at = "5s"
from = "1002"
to = "4001"
hangup_after = "200s"

[[call]]
at = "6s"
from = "1003"
to = "4001"
hangup_after = "50s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "60s"
"##,
    );
    let path = |c: &str| -> Vec<String> {
        by_caller(&recs, c)["ivr_path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| s(v).to_string())
            .collect()
    };
    let p2 = path("1002");
    let p3 = path("1003");
    assert!(
        p2.iter().filter(|e| *e == "sales@ahead:0").count() >= 2,
        "{p2:?}"
    );
    assert!(p3.contains(&"sales@ahead:1".to_string()), "{p3:?}");
    // A missing music file is a config error naming the queue's key.
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    site.write("site.toml", &cfg.replace("hold.wav", "nohold.wav"));
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = cfg.lines().position(|l| l.contains("moh = ")).unwrap() + 1;
    assert!(
        err.contains(&format!("site.toml:{line}:")) && err.contains("nohold.wav"),
        "{err}"
    );
}

#[test]
fn queues_overflowing_into_each_other_are_a_config_error() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"

[acd.queue.sales]
members = { a = 0 }

[acd.queue.support]
members = { a = 0 }
"##;
    let site = acd_site(1, 1, acd);
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    // sales -> support -> sales, nothing else.
    let bad = cfg
        .replacen("on_overflow = \"overflow\"", "on_overflow = \"support\"", 1)
        .replacen("on_overflow = \"overflow\"", "on_overflow = \"sales\"", 1)
        .replace(
            "[ivr.node.overflow]\ntype = \"hangup\"\noutcome = \"overflow\"\n",
            "",
        );
    site.write("site.toml", &bad);
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("overflows back to itself"), "{err}");
}

#[test]
fn a_caller_called_back_keeps_their_place_and_is_bridged_to_an_agent() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
callback_key = "5"
"##;
    let site = acd_site(4, 1, acd);
    let recs = run(
        &site,
        r##"
# a talks 60 s with the first caller.
[[call]]
at = "0s"
from = "1001"
to = "4001"
hangup_after = "100s"

# Asks to be called back 5 s after joining, then hangs up.
[[call]]
at = "5s"
from = "1002"
to = "4001"
script = [ { wait = "5s" }, { press = "5" }, { wait = "8s" } ]
hangup_after = "30s"

# Joins after 1002 and waits: served after the callback.
[[call]]
at = "15s"
from = "1003"
to = "4001"
hangup_after = "300s"

# 1002 answers the callback after 2 s and talks 5 s.
[[callee]]
number = "1002"
answer_after = "2s"
hangup_after = "5s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "60s"
"##,
    );
    let by = |c: &str| by_caller(&recs, c);
    let two = by("1002");
    assert_eq!(two["queue_exit"], "callback", "{two:#}");
    assert_eq!(two["outcome"], "callback:sales");
    let cb = recs
        .iter()
        .find(|r| r["direction"] == "outbound" && r["dialled"] == "1002")
        .expect("the callback call");
    assert_eq!(cb["job"], "callback");
    assert_eq!(cb["agent"], "a");
    assert_eq!(cb["outcome"], "callback:connected");
    assert_eq!(cb["ivr_vars"]["callback_for"], two["id"]);
    let talk = cb["talk_ms"].as_i64().unwrap();
    assert!((4_500..6_000).contains(&talk), "{cb:#}");
    // 1003 joined later and is served after the callback, by a.
    assert_eq!(by("1003")["agent"], "a");
    let log = table(&site, "queue_log");
    let at = |ev: &str, call: &Value| {
        log.iter()
            .position(|e| e["event"] == ev && e["call_id"] == call["id"])
            .unwrap_or_else(|| panic!("no {ev}: {log:#?}"))
    };
    assert!(at("CALLBACKDIAL", two) < at("CONNECT", by("1003")));
    assert!(log.iter().any(|e| e["event"] == "COMPLETECALLBACK"));
}

/// Listen, whisper and barge, with each talker marked by a tone: what each
/// phone heard shows whose voice reached whom.
#[test]
fn supervisors_listen_whisper_and_barge_in_with_audio_on_the_right_sides_only() {
    let acd = r##"
[acd]
supervisors = ["desk-2"]

[acd.agent.a]
number = "1001"
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
"##;
    for (code, mode) in [("*55", "listen"), ("*56", "whisper"), ("*57", "barge")] {
        let site = acd_site(1, 2, acd);
        let dir = site.dir.path();
        callbox_tests::write_tone_hz(&dir.join("caller.wav"), 600.0, 60_000);
        callbox_tests::write_tone_hz(&dir.join("sup.wav"), 1000.0, 10_000);
        callbox_tests::write_tone_hz(&dir.join("agent.wav"), 1400.0, 60_000);
        let scenario = format!(
            r##"
[[call]]
at = "0s"
from = "1001000"
to = "4001"
script = [ {{ play = "caller.wav" }} ]
hangup_after = "60s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "40s"
script = [ {{ play = "agent.wav" }} ]

# The supervisor joins at about 9 s and speaks for 8 s of it.
[[agent]]
name = "sup"
line = "desk-2"
dial = [ {{ at = "5s", digits = "{code}1001", hold = "15s", then = [ {{ play = "sup.wav" }} ] }} ]
"##
        );
        let (r, _) = site.run_heard(&scenario);
        let heard = |line: &str, hz: &str| r["probes_heard"][line][hz].as_u64().unwrap_or(0);
        // About 8 s of the supervisor's 1000 Hz overlaps the call: 400 frames.
        let lots = 200;
        // The supervisor always hears both sides.
        assert!(
            heard("desk-2", "600") > lots && heard("desk-2", "1400") > lots,
            "{mode}: {r}"
        );
        assert_eq!(
            heard("desk-2", "1000"),
            0,
            "{mode}: nobody sends them their own voice"
        );
        // The call itself, as ever.
        assert!(heard("desk-1", "600") > lots, "{mode}: {r}");
        assert!(heard("trunk-1", "1400") > lots, "{mode}: {r}");
        let (agent_hears_sup, caller_hears_sup) =
            (heard("desk-1", "1000"), heard("trunk-1", "1000"));
        match mode {
            "listen" => assert_eq!((agent_hears_sup, caller_hears_sup), (0, 0), "{r}"),
            "whisper" => {
                assert!(agent_hears_sup > lots, "{r}");
                assert_eq!(caller_hears_sup, 0, "{r}");
            }
            _ => assert!(agent_hears_sup > lots && caller_hears_sup > lots, "{r}"),
        }
        let log = table(&site, "queue_log");
        let sup = log
            .iter()
            .find(|e| e["event"] == "SUPERVISE")
            .expect("SUPERVISE logged");
        assert_eq!(sup["data"]["mode"], mode);
    }
}

#[test]
fn an_agent_picks_up_a_call_ringing_someone_else() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.agent.b]
station = "desk-2"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
ring_timeout = "60s"
"##;
    let site = acd_site(1, 2, acd);
    let dir = site.dir.path();
    callbox_tests::write_tone_hz(&dir.join("caller.wav"), 600.0, 60_000);
    callbox_tests::write_tone_hz(&dir.join("b.wav"), 1400.0, 10_000);
    let (rep, _) = site.run_heard(
        r##"
[[call]]
at = "0s"
from = "1001000"
to = "4001"
script = [ { play = "caller.wav" } ]
hangup_after = "60s"

# a's phone rings and rings.
[[agent]]
name = "a"
line = "desk-1"
answer_after = "50s"

# b picks the call up at desk-2 and talks for 10 s.
[[agent]]
name = "b"
line = "desk-2"
dial = [ { at = "5s", digits = "*8", hold = "2s", then = [ { play = "b.wav" } ] } ]
"##,
    );
    let recs = site.records();
    let r = &recs[0];
    assert_eq!(r["agent"], "b", "{r:#}");
    assert_eq!(r["connected_to"], "desk-2");
    assert_eq!(r["queue_exit"], "connected");
    let log = table(&site, "queue_log");
    assert!(
        log.iter()
            .any(|e| e["event"] == "PICKUP" && e["agent"] == "b"),
        "{log:#?}"
    );
    let heard = |line: &str, hz: &str| rep["probes_heard"][line][hz].as_u64().unwrap_or(0);
    assert!(heard("trunk-1", "1400") > 200, "the caller hears b: {rep}");
    assert!(heard("desk-2", "600") > 200, "b hears the caller: {rep}");
    assert_eq!(heard("desk-1", "600"), 0, "a never answered: {rep}");
}

/// Directed pickup: *8 and an agent's number takes the call ringing that
/// agent's phone, not the one that has waited longest elsewhere.
#[test]
fn an_agent_picks_up_the_call_ringing_a_named_colleague() {
    let acd = r##"
[acd.agent.a]
number = "1001"
station = "desk-1"
logged_in = true

[acd.agent.b]
number = "1002"
station = "desk-2"
logged_in = true

[acd.agent.c]
number = "1003"
station = "desk-3"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
ring_timeout = "60s"

[acd.queue.support]
members = { c = 0 }
ring_timeout = "60s"
"##;
    let site = acd_site(2, 3, acd);
    let (_, out) = site.run_heard(
        r##"
[[call]]
at = "0s"
from = "1001000"
to = "4001"
hangup_after = "30s"

[[call]]
at = "1s"
from = "1002000"
to = "4002"
hangup_after = "30s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "50s"

[[agent]]
name = "c"
line = "desk-3"
answer_after = "50s"

# b takes c's ringing call, then keys a number nobody has.
[[agent]]
name = "b"
line = "desk-2"
dial = [
  { at = "5s", digits = "*81003", hold = "5s" },
  { at = "20s", digits = "*81009", hold = "3s" },
]
"##,
    );
    let recs = site.records();
    let by = |c: &str| recs.iter().find(|r| r["caller"] == c).unwrap();
    assert_eq!(by("1002000")["agent"], "b", "{recs:#?}");
    assert_eq!(by("1002000")["queue"], "support");
    assert_ne!(
        by("1001000")["agent"],
        "b",
        "the sales call was not b's to take"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("supervisor code refused: no agent has number 1009"),
        "{log}"
    );
}

/// Blind transfer: a keys *2 and b's number during the call; the caller
/// ends up talking to b, and a's wrap-up still holds in every queue.
#[test]
fn an_agent_transfers_a_caller_to_another_agent_and_wrap_up_still_holds() {
    let acd = r##"
[acd.agent.a]
number = "1001"
station = "desk-1"
logged_in = true

[acd.agent.b]
number = "1002"
station = "desk-2"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
wrap_up = "30s"

[acd.queue.support]
members = { a = 0 }
"##;
    let site = acd_site(2, 2, acd);
    let dir = site.dir.path();
    callbox_tests::write_tone_hz(&dir.join("caller.wav"), 600.0, 60_000);
    callbox_tests::write_tone_hz(&dir.join("b.wav"), 1400.0, 10_000);
    let (rep, _) = site.run_heard(
        r##"
[[call]]
at = "0s"
from = "1001000"
to = "4001"
script = [ { play = "caller.wav" } ]
hangup_after = "60s"

# Asks support for a while a is still in wrap-up after the transfer.
[[call]]
at = "12s"
from = "1002000"
to = "4002"
hangup_after = "120s"

# a answers, talks 3 s, transfers to 1002.
[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "30s"
script = [ { wait = "3s" }, { press = "*21002", via = "signal" } ]

[[agent]]
name = "b"
line = "desk-2"
answer_after = "2s"
talk = "10s"
script = [ { play = "b.wav" } ]
"##,
    );
    let recs = site.records();
    let by = |c: &str| by_caller(&recs, c);
    let first = by("1001000");
    let path: Vec<&str> = first["ivr_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert!(path.contains(&"sales=transfer:a>1002"), "{path:?}");
    assert!(path.contains(&"sales=connected:b"), "{path:?}");
    assert_eq!(first["agent"], "b");
    assert_eq!(first["connected_to"], "desk-2");
    let heard = |line: &str, hz: &str| rep["probes_heard"][line][hz].as_u64().unwrap_or(0);
    assert!(heard("desk-2", "600") > 200, "b hears the caller: {rep}");
    assert!(heard("trunk-1", "1400") > 200, "the caller hears b: {rep}");
    let log = table(&site, "queue_log");
    let at_ms = |ev: &str| {
        log.iter()
            .find(|e| e["event"] == ev)
            .unwrap_or_else(|| panic!("no {ev}: {log:#?}"))["at_ms"]
            .as_i64()
            .unwrap()
    };
    let transferred = at_ms("TRANSFER");
    let _ = at_ms("TRANSFERCONNECT");
    // The support caller gets a only after a's 30 s of (sales) wrap-up.
    // (a's script transfers that call too: agents' scripts repeat.)
    let second = by("1002000");
    let connect = log
        .iter()
        .find(|e| e["event"] == "CONNECT" && e["call_id"] == second["id"])
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(connect["agent"], "a");
    let connect = connect["at_ms"].as_i64().unwrap();
    let gap = connect - transferred;
    assert!(
        (30_000..32_000).contains(&gap),
        "connected {gap} ms after the transfer"
    );
}

/// A wrong feature code is answered on the handset with "not a valid
/// option" (2.2 s), a right one with a short beep (0.4 s); neither crashes.
#[test]
fn feature_codes_are_answered_on_the_handset() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"

[acd.agent.b]
station = "desk-2"

[acd.queue.sales]
members = { a = 0, b = 0 }
"##;
    let site = acd_site(1, 2, acd);
    let (rep, out) = site.run_heard(
        r##"
[[agent]]
name = "a"
line = "desk-1"
dial = [ { at = "1s", digits = "*71", hold = "5s" } ]

[[agent]]
name = "b"
line = "desk-2"
dial = [ { at = "1s", digits = "*4444", hold = "5s" } ]
"##,
    );
    let frames = |line: &str| rep["heard_frames"][line].as_u64().unwrap_or(0);
    assert!((10..40).contains(&frames("desk-1")), "beep: {rep}");
    assert!(
        (80..140).contains(&frames("desk-2")),
        "invalid option: {rep}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a logged in at desk-1"), "{err}");
    assert!(err.contains("feature code refused"), "{err}");
}

#[test]
fn linear_follows_the_order_members_are_written_in() {
    let acd = r##"
[acd.agent.zoe]
station = "desk-1"
logged_in = true

[acd.agent.adam]
station = "desk-2"
logged_in = true

[acd.queue.sales]
strategy = "linear"
members = { zoe = 0, adam = 0 }
"##;
    let site = acd_site(1, 2, acd);
    let recs = run(
        &site,
        &(sequential(2, 30, "4001") + &agents_toml(&["zoe", "adam"], &["1s", "1s"], &["5s", "5s"])),
    );
    assert_eq!(order(&recs), ["zoe", "zoe"]);
}

#[test]
fn acd_config_errors_are_reported_with_places() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"

[acd.agent.b]
station = "trunk-1"

[acd.queue.sales]
strategy = "fastest"
members = { a = 0, ghost = 0, b = 2 }
max_length = 0

[acd.codes]
pause = "*7"
"##;
    let site = acd_site(1, 1, acd);
    let out = cmd()
        .arg("check-config")
        .arg(site.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for msg in [
        "`trunk-1` is a trunk line; agents sit at station lines",
        "unknown strategy `fastest`",
        "`ghost` is not an agent under [acd.agent]",
        "need `tier_step`",
        "max_length 0",
        "starts with `*7` (pause)",
    ] {
        assert!(err.contains(msg), "missing `{msg}`:\n{err}");
    }
    // The IVR's queue node does not pile on: the queue exists, the [acd]
    // section just has errors.
    assert!(!err.contains("is not a queue under"), "{err}");
    // Every line is FILE:LINE:COL.
    for l in err.lines() {
        assert!(l.contains("site.toml:"), "{l}");
    }
}

/// Hold: a flash puts the caller on hold with the queue's music; the next
/// flash brings them back.
#[test]
fn an_agent_puts_the_caller_on_hold_with_music_and_takes_them_back() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
moh = "hold.wav"
"##;
    let site = acd_site(1, 1, acd);
    let dir = site.dir.path();
    callbox_tests::write_tone_hz(&dir.join("prompts/hold.wav"), 1000.0, 2_000);
    callbox_tests::write_tone_hz(&dir.join("caller.wav"), 600.0, 60_000);
    // The agent flashes 5 s into the call and again 10 s later.
    let (rep, _) = site.run_heard(
        r##"
[[call]]
at = "0s"
from = "1001000"
to = "4001"
script = [ { play = "caller.wav" } ]
hangup_after = "40s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "25s"
script = [ { wait = "5s" }, { flash = true }, { wait = "10s" }, { flash = true } ]
"##,
    );
    let heard = |line: &str, hz: &str| rep["probes_heard"][line][hz].as_u64().unwrap_or(0);
    // 10 s of music on hold (from 2 s after the first flash to 2 s after
    // the second: 500 frames) plus about 1 s while waiting in the queue;
    // and the caller's voice did not reach the agent meanwhile.
    let music = heard("trunk-1", "1000");
    assert!((500..600).contains(&music), "music frames {music}: {rep}");
    let agent_heard_caller = heard("desk-1", "600");
    // 25 s of talk minus ~10 s on hold.
    assert!(
        (600..900).contains(&agent_heard_caller),
        "{agent_heard_caller}: {rep}"
    );
    assert_eq!(site.records()[0]["agent"], "a");
}

/// Attended transfer: a keys *3 and b's number; the caller holds with
/// music while a and b talk; when a hangs up, the caller is b's.
#[test]
fn an_agent_consults_another_before_handing_the_caller_over() {
    let acd = r##"
[acd.agent.a]
number = "1001"
station = "desk-1"
logged_in = true

[acd.agent.b]
number = "1002"
station = "desk-2"
logged_in = true

[acd.queue.sales]
members = { a = 0 }
moh = "hold.wav"
"##;
    let site = acd_site(1, 2, acd);
    let dir = site.dir.path();
    callbox_tests::write_tone_hz(&dir.join("prompts/hold.wav"), 1000.0, 2_000);
    callbox_tests::write_tone_hz(&dir.join("caller.wav"), 600.0, 60_000);
    callbox_tests::write_tone_hz(&dir.join("b.wav"), 1400.0, 60_000);
    let (rep, _) = site.run_heard(
        r##"
[[call]]
at = "0s"
from = "1001000"
to = "4001"
script = [ { play = "caller.wav" } ]
hangup_after = "45s"

# a consults b 3 s into the call and hangs up at 20 s.
[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "20s"
script = [ { wait = "3s" }, { press = "*31002", via = "signal" } ]

[[agent]]
name = "b"
line = "desk-2"
answer_after = "2s"
talk = "30s"
script = [ { play = "b.wav" } ]
"##,
    );
    let recs = site.records();
    let r = &recs[0];
    let path: Vec<&str> = r["ivr_path"].as_array().unwrap().iter().map(s).collect();
    assert!(path.contains(&"sales=consult:a>1002"), "{path:?}");
    assert!(path.contains(&"sales=connected:b"), "{path:?}");
    assert_eq!(r["agent"], "b");
    assert_eq!(r["connected_to"], "desk-2");
    let heard = |line: &str, hz: &str| rep["probes_heard"][line][hz].as_u64().unwrap_or(0);
    // About 14 s of music while a and b talked.
    let music = heard("trunk-1", "1000");
    assert!((600..900).contains(&music), "music {music}: {rep}");
    // a heard b during the consultation; b later heard the caller.
    assert!(heard("desk-1", "1400") > 300, "{rep}");
    assert!(heard("desk-2", "600") > 200, "{rep}");
    assert!(heard("trunk-1", "1400") > 200, "{rep}");
    let log = table(&site, "queue_log");
    let t = log
        .iter()
        .find(|e| e["event"] == "TRANSFER")
        .expect("TRANSFER");
    assert_eq!(t["data"]["attended"], true);
    assert!(
        log.iter()
            .any(|e| e["event"] == "TRANSFERCONNECT" && e["agent"] == "b")
    );
}

#[test]
fn an_agent_who_misses_offers_is_paused_automatically() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.agent.b]
station = "desk-2"
logged_in = true

[acd.queue.sales]
strategy = "linear"
members = { b = 0, a = 0 }
ring_timeout = "5s"
retry = "1s"
auto_pause = 2
"##;
    let site = acd_site(2, 2, acd);
    let recs = run(
        &site,
        r##"
[[call]]
at = "0s"
from = "1001"
to = "4001"
hangup_after = "60s"

[[call]]
at = "30s"
from = "1002"
to = "4001"
hangup_after = "60s"

# b never answers; a does.
[[agent]]
name = "b"
line = "desk-2"
answers = false

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "5s"
"##,
    );
    let log = table(&site, "queue_log");
    let missed = log
        .iter()
        .filter(|e| e["event"] == "RINGNOANSWER" && e["agent"] == "b")
        .count();
    assert_eq!(missed, 2, "{log:#?}");
    let pause = log
        .iter()
        .find(|e| e["event"] == "PAUSE" && e["agent"] == "b")
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(pause["data"]["reason"], "auto");
    // Both callers were served by a; b was not rung again once paused.
    assert!(recs.iter().all(|r| r["agent"] == "a"), "{recs:#?}");
    let offers_b = log
        .iter()
        .filter(|e| e["event"] == "OFFER" && e["agent"] == "b")
        .count();
    assert_eq!(offers_b, 2);
}

/// Queue priority: an agent serving two queues takes the higher-priority
/// queue's caller first, even one who joined later.
#[test]
fn a_higher_priority_queue_is_served_first() {
    let acd = r##"
[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { a = 0 }

[acd.queue.support]
members = { a = 0 }
priority = 5
"##;
    let site = acd_site(3, 1, acd);
    let recs = run(
        &site,
        r##"
# a is busy until about 31 s; sales joins at 5 s, support at 10 s.
[[call]]
at = "0s"
from = "1000"
to = "4001"
hangup_after = "100s"

[[call]]
at = "5s"
from = "1001"
to = "4001"
hangup_after = "200s"

[[call]]
at = "10s"
from = "1002"
to = "4002"
hangup_after = "200s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "30s"
"##,
    );
    let log = site.table("queue_log");
    let connects: Vec<&str> = log
        .iter()
        .filter(|e| e["event"] == "CONNECT")
        .map(|e| s(&e["queue"]))
        .collect();
    assert_eq!(connects, ["sales", "support", "sales"], "{log:#?}");
    assert_eq!(recs.len(), 3);
}
