//! Outbound campaigns end to end: the real daemon in virtual time on
//! simulated lines dials a contact list under the campaign's rules. Calls
//! start when the window opens, in each contact's zone; a do-not-call
//! number is never dialled; a contact who never answers gets exactly
//! `max_attempts` calls spaced by the retry wait; a busy contact is called
//! again after the busy wait; every answered contact's key is stored as
//! their answer. A progressive campaign never dials more contacts than it
//! has free agents.

use callbox_tests::{Site, assert_error_at, text};
use serde_json::Value;

/// Monday 2026-11-23, 08:00 in Shanghai: an hour before the window.
const EARLY: &str = "2026-11-23T08:00:00+08:00";
/// 09:00 that day in Shanghai, in ms since the epoch.
const WINDOW_OPENS_MS: i64 = 1_795_395_600_000;
/// An hour earlier: 09:00 in Tokyo.
const TOKYO_OPENS_MS: i64 = WINDOW_OPENS_MS - 3_600_000;

const SURVEY: &str = r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"

[ivr.node.survey]
type = "collect"
var = "score"
prompt = "system:beep"
min = 1
max = 1
first_digit_timeout = "5s"
recordable = true
next = "thanks"

[ivr.node.thanks]
type = "hangup"
outcome = "surveyed"

[campaigns]
dnc = "dnc.csv"

[campaign.renewals]
number = "4008001234"
mode = "agentless"
start = "survey"
list = "renewals.csv"
max_lines = 2
max_attempts = 3
retry = { no_answer = "10m", busy = "5m" }
success = { var = "score", in = ["1", "2", "3", "4", "5"] }

[campaign.renewals.window]
timezone = "Asia/Shanghai"
mon = ["09:00-18:00"]
"#;

const LIST: &str = "number,name,tz,plan\n\
13800000001,Wang,,gold\n\
13800000002,Li,,silver\n\
13800000003,Zhao,,gold\n\
13800000004,Qian,,gold\n\
13800000005,Sun,Asia/Tokyo,gold\n\
13800000006,Zhou,,gold\n\
13800000007,Nobody,,gold\n\
13800000008,Busy,,gold\n\
13800000009,Barred,,gold\n\
not-a-number,Bad,,gold\n\
13800000001,Twice,,gold\n";

/// Contacts 1-6 answer and key their score; 7 never answers; 8 is busy,
/// then answers and keys 5.
fn callees() -> String {
    let mut s = String::new();
    for (n, score) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 1)] {
        s += &format!(
            "[[callee]]\nnumber = \"1380000000{n}\"\nanswer_after = \"2s\"\nhangup_after = \"20s\"\nscript = [{{ wait = \"2s\" }}, {{ press = \"{score}\" }}]\n\n"
        );
    }
    s += "[[callee]]\nnumber = \"13800000007\"\nanswers = false\n\n";
    s += "[[callee]]\nnumber = \"13800000008\"\nbusy = true\n\n";
    s += "[[callee]]\nnumber = \"13800000008\"\nanswer_after = \"1s\"\nhangup_after = \"20s\"\nscript = [{ wait = \"2s\" }, { press = \"5\" }]\n\n";
    s += "[[callee]]\nnumber = \"13800000009\"\nanswer_after = \"1s\"\n\n";
    s
}

fn survey_site() -> Site {
    let site = Site::with_config(2, 0, SURVEY);
    site.write("renewals.csv", LIST);
    site.write("dnc.csv", "number\n13800000009\n");
    site
}

/// When a record's call ended, ms since the epoch (`i64::MAX` while open).
fn ended_ms(r: &Value) -> i64 {
    r["end"]
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map_or(i64::MAX, |t| t.as_millisecond())
}

fn started_ms(r: &Value) -> i64 {
    r["start"]
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .unwrap_or_else(|| panic!("no start time: {r:#}"))
}

#[test]
fn an_agentless_survey_follows_its_window_dnc_attempts_and_retries_and_stores_each_answer() {
    let site = survey_site();
    let path = site.write("calls.toml", &callees());
    let report = site.dir.path().join("report.json");
    let out = site.run_fast_with(
        &path,
        &[
            "--start-at",
            EARLY,
            "--sim-report",
            report.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    let contacts = site.table("campaign_contacts");
    let contact = |n: &str| {
        contacts
            .iter()
            .find(|c| c["number"] == n)
            .unwrap_or_else(|| panic!("no contact {n}: {contacts:#?}\n{log}"))
    };
    // The malformed row is left out (and said so), the duplicate merged.
    assert_eq!(contacts.len(), 9, "{contacts:#?}");
    assert!(log.contains("contact left out"), "{log}");
    assert_eq!(contact("13800000001")["name"], "Wang");
    for (n, score) in [(1, "1"), (2, "2"), (3, "3"), (4, "4"), (5, "5"), (6, "1")] {
        let c = contact(&format!("1380000000{n}"));
        assert_eq!(c["state"], "done", "{c:#}\n{log}");
        assert_eq!(c["attempts"], 1, "{c:#}");
        assert_eq!(c["answers"]["score"], score, "{c:#}");
    }
    let nobody = contact("13800000007");
    assert_eq!(nobody["state"], "exhausted", "{nobody:#}");
    assert_eq!(nobody["attempts"], 3);
    let busy = contact("13800000008");
    assert_eq!(busy["state"], "done", "{busy:#}");
    assert_eq!(busy["attempts"], 2);
    assert_eq!(busy["answers"]["score"], "5");
    assert_eq!(contact("13800000009")["state"], "dnc");

    let recs = site.records();
    let calls_to = |n: &str| -> Vec<&Value> { recs.iter().filter(|r| r["dialled"] == n).collect() };
    // Nobody is called before the window opens in their zone; the barred
    // number never. Sun is in Tokyo, an hour ahead: his 09:00 comes first.
    for r in &recs {
        assert_eq!(r["job"], "renewals", "{r:#}");
        if r["dialled"] == "13800000005" {
            assert!(started_ms(r) >= TOKYO_OPENS_MS, "{r:#}");
            assert!(
                started_ms(r) < WINDOW_OPENS_MS,
                "Sun waited for Shanghai: {r:#}"
            );
        } else {
            assert!(
                started_ms(r) >= WINDOW_OPENS_MS,
                "called before 09:00: {r:#}"
            );
        }
    }
    assert!(calls_to("13800000009").is_empty());
    let mut tries: Vec<i64> = calls_to("13800000007")
        .iter()
        .map(|r| started_ms(r))
        .collect();
    tries.sort_unstable();
    assert_eq!(tries.len(), 3, "{recs:#?}");
    for w in tries.windows(2) {
        assert!(w[1] - w[0] >= 10 * 60_000, "retried too soon: {tries:?}");
    }
    let mut busy_tries: Vec<i64> = calls_to("13800000008")
        .iter()
        .map(|r| started_ms(r))
        .collect();
    busy_tries.sort_unstable();
    assert!(
        busy_tries[1] - busy_tries[0] >= 5 * 60_000,
        "{busy_tries:?}"
    );
    // At most two lines at once.
    let mut spans: Vec<(i64, i64)> = recs.iter().map(|r| (started_ms(r), ended_ms(r))).collect();
    spans.sort_unstable();
    for (i, (start, _)) in spans.iter().enumerate() {
        let open = spans[..i].iter().filter(|(_, end)| end > start).count();
        assert!(open < 2, "a third line in use at {start}: {spans:?}");
    }
    // `callboxd campaigns` sums it up.
    let sum = callbox_tests::export(&site.data(), &["campaigns", "--json"]);
    assert_eq!(sum.len(), 1, "{sum:#?}");
    assert_eq!(sum[0]["campaign"], "renewals");
    assert_eq!(sum[0]["contacts"], 9);
    assert_eq!(sum[0]["states"]["done"], 7, "{sum:#?}");
    assert_eq!(sum[0]["states"]["exhausted"], 1);
    assert_eq!(sum[0]["states"]["dnc"], 1);
    assert_eq!(
        sum[0]["attempts"], 11,
        "six answered, three unanswered, two busy then answered: {sum:#?}"
    );
    // The campaign number is presented, and headquarters gets each result.
    let rep: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(rep["presented"]["13800000001"][0], "4008001234", "{rep:#}");
    let outbox = site.table("outbox");
    let results: Vec<&Value> = outbox
        .iter()
        .filter(|o| o["stream"] == "campaign_results")
        .collect();
    assert!(
        results
            .iter()
            .any(|o| o["payload"]["number"] == "13800000003"
                && o["payload"]["answers"]["score"] == "3"),
        "{results:#?}"
    );
}

#[test]
fn a_progressive_campaign_never_dials_more_contacts_than_it_has_free_agents() {
    let site = Site::with_config(
        3,
        1,
        r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"

[ivr.node.to-agent]
type = "queue"
queue = "sales"
announce = []
on_overflow = "bye"

[acd.agent.alice]
number = "1001"
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { alice = 0 }

[campaign.winback]
number = "4008001234"
mode = "progressive"
start = "to-agent"
list = "winback.csv"
max_lines = 3
"#,
    );
    site.write(
        "winback.csv",
        "number\n13900000001\n13900000002\n13900000003\n13900000004\n",
    );
    let mut sc = String::from(
        "[[agent]]\nname = \"alice\"\nline = \"desk-1\"\nanswer_after = \"1s\"\ntalk = \"10s\"\n\n",
    );
    for n in 1..=4 {
        sc += &format!(
            "[[callee]]\nnumber = \"1390000000{n}\"\nanswer_after = \"3s\"\nhangup_after = \"30s\"\n\n"
        );
    }
    let path = site.write("calls.toml", &sc);
    let out = site.run_fast_with(&path, &["--start-at", "2026-11-23T10:00:00+08:00"]);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    let mut spans: Vec<(i64, i64, &Value)> = recs
        .iter()
        .map(|r| (started_ms(r), ended_ms(r), r))
        .collect();
    spans.sort_by_key(|s| s.0);
    assert_eq!(spans.len(), 4, "{recs:#?}\n{}", text(&out));
    for (i, (start, _, r)) in spans.iter().enumerate() {
        let open = spans[..i].iter().filter(|(_, end, _)| end > start).count();
        assert_eq!(open, 0, "two contacts dialled for one agent: {r:#}");
        assert_eq!(r["agent"], "alice", "{r:#}");
    }
}

#[test]
fn campaign_mistakes_are_named_at_their_place() {
    let site = survey_site();
    let bad = site
        .config_text()
        .replace(
            "mode = \"agentless\"",
            "mode = \"robocall\"\nabandon_cap = 40",
        )
        .replace("list = \"renewals.csv\"", "list = \"missing.csv\"")
        .replace("mon = [\"09:00-18:00\"]", "mon = []")
        .replace("busy = \"5m\"", "busy = \"soon\"")
        + "\n[campaign.renewals.amd]\nmachine = \"message\"\nmax_words = 0\nunsure = \"shrug\"\n";
    site.write("site.toml", &bad);
    let err = site.refused();
    for (needle, msg) in [
        ("mode = \"robocall\"", "unknown mode `robocall`"),
        ("abandon_cap = 40", "an abandon cap of 40 %"),
        ("list = \"missing.csv\"", "missing.csv"),
        ("[campaign.renewals.window]", "never opens"),
        ("retry = ", "`soon` is not a duration"),
        ("[campaign.renewals.amd]", "needs `message`"),
        ("max_words = 0", "0 words: 1 to 20"),
        ("unsure = \"shrug\"", "unknown action `shrug`"),
    ] {
        assert_error_at(&bad, &err, needle, msg);
    }
}

#[test]
fn a_box_killed_mid_campaign_calls_nobody_again_before_the_retry_wait() {
    let site = Site::with_config(
        1,
        0,
        r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"

[ivr.node.hold]
type = "collect"
var = "key"
prompt = "system:beep"
min = 1
max = 1
first_digit_timeout = "20s"
recordable = true
next = "bye"

[campaign.notice]
number = "4008001234"
mode = "agentless"
start = "hold"
list = "notice.csv"
retry = { failed = "30m" }

[campaign.notice.window]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
"#,
    );
    site.write("notice.csv", "number\n13700000001\n13700000002\n");
    let mut sc = String::new();
    for n in 1..=2 {
        sc += &format!(
            "[[callee]]\nnumber = \"1370000000{n}\"\nanswer_after = \"1s\"\nscript = [{{ wait = \"3s\" }}, {{ press = \"1\" }}]\n\n"
        );
    }
    let path = site.write("calls.toml", &sc);
    // First run, in real time: killed (SIGKILL) while the first contact
    // is on the line.
    let log = site.dir.path().join("first.log");
    let mut first = callbox_tests::cmd()
        .args(["run", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .arg("--scenario")
        .arg(&path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("number=13700000001 attempt=1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    first.kill().unwrap();
    first.wait().unwrap();
    // Second run, in virtual time from now: the campaign resumes.
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    let mut first_contact: Vec<i64> = recs
        .iter()
        .filter(|r| r["dialled"] == "13700000001")
        .map(started_ms)
        .collect();
    first_contact.sort_unstable();
    assert_eq!(first_contact.len(), 2, "{recs:#?}\n{}", text(&out));
    // The wait counts from the attempt, stored just before the number is
    // dialled (the record starts with the dial): on a loaded machine that
    // commit can take a second or two.
    assert!(
        first_contact[1] - first_contact[0] >= 30 * 60_000 - 5_000,
        "called again {} s after the interrupted call",
        (first_contact[1] - first_contact[0]) / 1000
    );
    let second: Vec<&Value> = recs
        .iter()
        .filter(|r| r["dialled"] == "13700000002")
        .collect();
    assert_eq!(second.len(), 1, "{recs:#?}");
    let contacts = site.table("campaign_contacts");
    let c1 = contacts
        .iter()
        .find(|c| c["number"] == "13700000001")
        .unwrap();
    assert_eq!(c1["attempts"], 2, "{c1:#}");
    assert_eq!(c1["state"], "done");
    assert!(text(&out).contains("campaign finished"), "{}", text(&out));
}

#[test]
fn headquarters_pauses_a_campaign_bars_a_number_mid_campaign_and_resume_finishes_it() {
    use callbox_tests::mqtt::{Broker, Daemon, add_uplink, hq_cmd};
    use std::time::Duration;
    let broker = Broker::start();
    let all_day = "[\"00:00-24:00\"]";
    let site = Site::with_config(
        1,
        0,
        &format!(
            r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"

[campaigns]
dnc = "dnc.csv"

[campaign.notice]
number = "4008001234"
mode = "agentless"
start = "bye"
list = "notice.csv"

[campaign.notice.window]
mon = {all_day}
tue = {all_day}
wed = {all_day}
thu = {all_day}
fri = {all_day}
sat = {all_day}
sun = {all_day}
"#
        ),
    );
    add_uplink(&site, &broker.uplink("box-c", ""));
    site.write(
        "notice.csv",
        "number\n13600000001\n13600000002\n13600000003\n",
    );
    site.write("dnc.csv", "number\n");
    // Each contact's phone rings 3 s before it is answered.
    let mut sc = String::new();
    for n in 1..=3 {
        sc += &format!("[[callee]]\nnumber = \"1360000000{n}\"\nanswer_after = \"3s\"\n\n");
    }
    let path = site.write("calls.toml", &sc);
    let scenario = path.to_str().unwrap();
    let cmd = |args: &[&str]| {
        let (resp, out) = hq_cmd(&broker, "test-site", "box-c", args);
        assert_eq!(resp["ok"], true, "{resp:#}\n{}", text(&out));
        resp["result"].clone()
    };
    let mut d = Daemon::start(&site, &["--scenario", scenario]);
    d.wait_log(Duration::from_secs(20), "the first contact dialled", |l| {
        l.contains("number=13600000001 attempt=1")
    });
    let paused = cmd(&["campaign", r#"{"name":"notice","action":"pause"}"#]);
    assert_eq!(paused["control"], "paused", "{paused:#}");
    // The call in progress ends; nobody else is dialled.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(site.records().len(), 1, "{:#?}", site.records());
    // A name the box does not run, or an action it does not know, is an
    // error that names it.
    let (bad, _) = hq_cmd(
        &broker,
        "test-site",
        "box-c",
        &["campaign", r#"{"name":"nope"}"#],
    );
    assert!(
        bad["error"]
            .as_str()
            .unwrap_or("")
            .contains("no campaign `nope`"),
        "{bad:#}"
    );
    let (bad, _) = hq_cmd(
        &broker,
        "test-site",
        "box-c",
        &["campaign", r#"{"name":"notice","action":"later"}"#],
    );
    assert!(
        bad["error"].as_str().unwrap_or("").contains("`later`"),
        "{bad:#}"
    );
    d.stop();
    // Still paused after a restart.
    let mut d = Daemon::start(&site, &["--scenario", scenario]);
    let status = cmd(&["campaign", r#"{"name":"notice"}"#]);
    assert_eq!(status["control"], "paused", "{status:#}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(site.records().len(), 1);
    // Meanwhile the third contact asked not to be called: headquarters
    // adds them to the do-not-call list.
    let dnc = cmd(&[
        "lookup.update",
        r#"{"table":"dnc","mode":"merge","rows":[{"number":"13600000003"}]}"#,
    ]);
    assert_eq!(dnc["rows"], 1, "{dnc:#}");
    // Resumed, it calls the second and ends.
    let resumed = cmd(&["campaign", r#"{"name":"notice","action":"resume"}"#]);
    assert_eq!(resumed["control"], "running", "{resumed:#}");
    d.wait_log(Duration::from_secs(30), "the campaign finished", |l| {
        l.contains("campaign finished")
    });
    d.stop();
    let dialled: Vec<Value> = site
        .records()
        .iter()
        .map(|r| r["dialled"].clone())
        .collect();
    assert_eq!(dialled, ["13600000001", "13600000002"], "{dialled:?}");
    let contacts = site.table("campaign_contacts");
    let third = contacts
        .iter()
        .find(|c| c["number"] == "13600000003")
        .unwrap();
    assert_eq!(third["state"], "dnc", "{third:#}");
}

/// Runs a campaign of `mode` over 800 contacts for eight agents (20 s
/// calls), every other contact not answering (8 s of ringing), the others
/// answering after 3 s; answers (the agents' talking share of the
/// campaign's span, the abandoned share of answered contacts).
fn team_run(mode: &str) -> (f64, f64) {
    const AGENTS: usize = 8;
    let mut acd = String::new();
    let mut members = Vec::new();
    for i in 1..=AGENTS {
        acd += &format!(
            "[acd.agent.a{i}]\nnumber = \"{}\"\nstation = \"desk-{i}\"\nlogged_in = true\n\n",
            1000 + i
        );
        members.push(format!("a{i} = 0"));
    }
    let site = Site::with_config(
        24,
        AGENTS,
        &format!(
            r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"

[ivr.node.sorry]
type = "play"
prompts = "system:beep"
next = "bye"

[ivr.node.to-agent]
type = "queue"
queue = "team"
announce = []
on_overflow = "sorry"

{acd}
[acd.queue.team]
members = {{ {} }}
max_wait = "2s"

[campaign.team]
number = "4008001234"
mode = "{mode}"
start = "to-agent"
list = "team.csv"
max_lines = 24
max_attempts = 1
ring_timeout = "8s"
"#,
            members.join(", ")
        ),
    );
    let mut list = String::from("number\n");
    let mut sc = String::new();
    for i in 1..=AGENTS {
        sc += &format!(
            "[[agent]]\nname = \"a{i}\"\nline = \"desk-{i}\"\nanswer_after = \"500ms\"\ntalk = \"20s\"\n\n"
        );
    }
    for n in 0..800 {
        let number = format!("1350000{n:04}");
        list += &format!("{number}\n");
        if n % 2 == 0 {
            sc += &format!("[[callee]]\nnumber = \"{number}\"\nanswers = false\n\n");
        } else {
            sc += &format!(
                "[[callee]]\nnumber = \"{number}\"\nanswer_after = \"3s\"\nhangup_after = \"60s\"\n\n"
            );
        }
    }
    site.write("team.csv", &list);
    let path = site.write("calls.toml", &sc);
    let out = site.run_fast_with(&path, &["--start-at", "2026-11-23T10:00:00+08:00"]);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    assert_eq!(recs.len(), 800, "{}", text(&out));
    let first = recs.iter().map(started_ms).min().unwrap();
    let last = recs
        .iter()
        .map(ended_ms)
        .filter(|&e| e != i64::MAX)
        .max()
        .unwrap();
    let talk: i64 = recs.iter().filter_map(|r| r["talk_ms"].as_i64()).sum();
    let answered = recs
        .iter()
        .filter(|r| r["disposition"] == "answered")
        .count();
    let abandoned = recs
        .iter()
        .filter(|r| r["disposition"] == "answered" && r["agent"].is_null())
        .count();
    // An answered contact no agent took heard the apology before the box
    // hung up.
    for r in recs
        .iter()
        .filter(|r| r["disposition"] == "answered" && r["agent"].is_null())
    {
        assert!(
            callbox_tests::ivr_path(r).iter().any(|p| p == "sorry"),
            "{r:#}"
        );
    }
    let busy = talk as f64 / (AGENTS as f64 * (last - first) as f64);
    (busy, abandoned as f64 / answered.max(1) as f64)
}

#[test]
fn a_predictive_campaign_keeps_agents_busier_than_progressive_within_the_abandon_cap() {
    let (progressive, p_abandoned) = team_run("progressive");
    let (predictive, abandoned) = team_run("predictive");
    eprintln!(
        "agents busy: progressive {:.0} %, predictive {:.0} %; abandoned: progressive {:.1} %, predictive {:.1} % (cap 3 %)",
        progressive * 100.0,
        predictive * 100.0,
        p_abandoned * 100.0,
        abandoned * 100.0
    );
    assert_eq!(p_abandoned, 0.0, "progressive never abandons");
    assert!(abandoned <= 0.03, "abandoned {abandoned}");
    assert!(
        predictive > progressive,
        "predictive {predictive} vs progressive {progressive}"
    );
}
