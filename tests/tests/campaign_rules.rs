//! Campaign rules end to end in virtual time: a campaign of higher
//! priority dials before one below it on the same trunk; `[campaigns]
//! reserve_trunks` keeps trunks idle for callers (one who calls
//! mid-campaign gets through); a number not in service fails for good
//! while congestion is retried after its own wait; `max_per_day` spreads a
//! contact's attempts over their days.

use callbox_tests::{Site, text};
use serde_json::Value;

const FLOW: &str = r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"
"#;

fn started_ms(r: &Value) -> i64 {
    r["start"]
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .unwrap_or_else(|| panic!("no start time: {r:#}"))
}

fn ended_ms(r: &Value) -> i64 {
    r["end"]
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map_or(i64::MAX, |t| t.as_millisecond())
}

fn campaign(name: &str, priority: i32, max_lines: usize, opens: &str) -> String {
    format!(
        "\n[campaign.{name}]\nnumber = \"4008001234\"\nmode = \"agentless\"\nstart = \"bye\"\nlist = \"{name}.csv\"\nmax_lines = {max_lines}\npriority = {priority}\n\n[campaign.{name}.window]\ntimezone = \"Asia/Shanghai\"\nmon = [\"{opens}-18:00\"]\n"
    )
}

fn callees(numbers: &[String]) -> String {
    numbers
        .iter()
        .map(|n| {
            format!(
                "[[callee]]\nnumber = \"{n}\"\nanswer_after = \"2s\"\nhangup_after = \"8s\"\n\n"
            )
        })
        .collect()
}

#[test]
fn a_campaign_of_higher_priority_dials_first_on_a_shared_trunk() {
    // The bulk campaign has the trunk to itself until 10:00, when the
    // urgent one opens: from then on it leaves the trunk to it.
    let cfg = format!(
        "{FLOW}{}{}",
        campaign("bulk", 0, 1, "09:00"),
        campaign("urgent", 10, 1, "10:00")
    );
    let site = Site::with_config(1, 0, &cfg);
    let urgent: Vec<String> = (1..=4).map(|n| format!("1390000000{n}")).collect();
    let bulk: Vec<String> = (10..=19).map(|n| format!("137000000{n}")).collect();
    site.write("urgent.csv", &format!("number\n{}\n", urgent.join("\n")));
    site.write("bulk.csv", &format!("number\n{}\n", bulk.join("\n")));
    let all: Vec<String> = urgent.iter().chain(&bulk).cloned().collect();
    let path = site.write("calls.toml", &callees(&all));
    let out = site.run_fast_with(&path, &["--start-at", "2026-11-23T09:59:40+08:00"]);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    assert_eq!(recs.len(), 14, "{recs:#?}");
    let opens = "2026-11-23T10:00:00+08:00"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond();
    let last_urgent = recs
        .iter()
        .filter(|r| r["job"] == "urgent")
        .map(started_ms)
        .max()
        .unwrap();
    assert!(
        recs.iter()
            .any(|r| r["job"] == "bulk" && started_ms(r) < opens),
        "bulk dialled before urgent opened: {recs:#?}"
    );
    // Once urgent is due, at most the bulk call already dialled goes on.
    let bulk_meanwhile: Vec<&Value> = recs
        .iter()
        .filter(|r| r["job"] == "bulk" && (opens..last_urgent).contains(&started_ms(r)))
        .collect();
    assert!(bulk_meanwhile.len() <= 1, "{bulk_meanwhile:#?}");
}

#[test]
fn reserved_trunks_stay_idle_for_callers_during_a_campaign() {
    let cfg = format!(
        "{FLOW}\n[campaigns]\nreserve_trunks = 1\n{}",
        campaign("notice", 0, 2, "09:00")
    );
    let site = Site::with_config(2, 0, &cfg);
    let contacts: Vec<String> = (1..=4).map(|n| format!("1390000000{n}")).collect();
    site.write("notice.csv", &format!("number\n{}\n", contacts.join("\n")));
    // A caller rings in while the campaign runs.
    let mut sc = callees(&contacts);
    sc += "[[call]]\nat = \"15s\"\nfrom = \"13512345678\"\nhangup_after = \"20s\"\n";
    let path = site.write("calls.toml", &sc);
    let out = site.run_fast_with(&path, &["--start-at", "2026-11-23T10:00:00+08:00"]);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    let ours: Vec<&Value> = recs.iter().filter(|r| r["job"] == "notice").collect();
    assert_eq!(ours.len(), 4, "{recs:#?}");
    // Never two campaign calls at once: one of the two trunks stays idle.
    for a in &ours {
        let overlapping = ours
            .iter()
            .filter(|b| started_ms(b) < ended_ms(a) && started_ms(a) < ended_ms(b))
            .count();
        assert_eq!(overlapping, 1, "{a:#}\n{ours:#?}");
    }
    let caller = recs
        .iter()
        .find(|r| r["caller"] == "13512345678")
        .unwrap_or_else(|| panic!("the caller got no line: {recs:#?}"));
    assert_eq!(caller["disposition"], "answered", "{caller:#}");

    // A reserve that leaves a campaign no trunk is a config error.
    let bad = site
        .config_text()
        .replace("reserve_trunks = 1", "reserve_trunks = 2");
    site.write("site.toml", &bad);
    let err = site.refused();
    assert!(
        err.contains("leave campaign `notice` none of its 2"),
        "{err}"
    );
}

#[test]
fn a_number_not_in_service_fails_for_good_and_congestion_waits_its_own_retry() {
    let cfg = format!("{FLOW}{}", campaign("notice", 0, 1, "09:00")).replace(
        "priority = 0",
        "priority = 0\nmax_attempts = 3\nretry = { congestion = \"7m\", no_answer = \"1h\" }",
    );
    let site = Site::with_config(1, 0, &cfg);
    site.write("notice.csv", "number\n13900000001\n13900000002\n");
    // The first number reaches nothing; the second is not in the scenario:
    // the network is congested for it, every time.
    let sc = "[[callee]]\nnumber = \"13900000001\"\nnot_in_service = true\n";
    let path = site.write("calls.toml", sc);
    let out = site.run_fast_with(&path, &["--start-at", "2026-11-23T10:00:00+08:00"]);
    assert!(out.status.success(), "{}", text(&out));
    let contacts = site.table("campaign_contacts");
    let c = |n: &str| contacts.iter().find(|c| c["number"] == n).unwrap().clone();
    let gone = c("13900000001");
    assert_eq!(gone["state"], "failed", "{gone:#}");
    assert_eq!(gone["attempts"], 1, "{gone:#}");
    assert_eq!(gone["last_outcome"], "not_in_service");
    let congested = c("13900000002");
    assert_eq!(congested["state"], "exhausted", "{congested:#}");
    assert_eq!(congested["last_outcome"], "congestion");
    let mut tries: Vec<i64> = site
        .records()
        .iter()
        .filter(|r| r["dialled"] == "13900000002")
        .map(started_ms)
        .collect();
    tries.sort_unstable();
    assert_eq!(tries.len(), 3);
    for w in tries.windows(2) {
        let gap = w[1] - w[0];
        assert!((7 * 60_000..3_600_000).contains(&gap), "{tries:?}");
    }
}

#[test]
fn a_contact_is_called_at_most_max_per_day_times_on_each_of_their_days() {
    // Nobody answers: five attempts half an hour apart, but at most two a
    // day, so they spread over three days of the contact's own calendar.
    let mut cfg = format!(
        "{FLOW}\n[campaign.daily]\nnumber = \"4008001234\"\nmode = \"agentless\"\nstart = \"bye\"\nlist = \"daily.csv\"\nmax_lines = 1\nmax_attempts = 5\nmax_per_day = 2\nring_timeout = \"20s\"\nretry = {{ no_answer = \"30m\" }}\n\n[campaign.daily.window]\ntimezone = \"Asia/Shanghai\"\n"
    );
    for day in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
        cfg += &format!("{day} = [\"09:00-18:00\"]\n");
    }
    let site = Site::with_config(1, 0, &cfg);
    site.write("daily.csv", "number\n13900000001\n");
    let path = site.write(
        "calls.toml",
        "[[callee]]\nnumber = \"13900000001\"\nanswers = false\n",
    );
    let out = site.run_fast_with(&path, &["--start-at", "2026-11-23T08:59:00+08:00"]);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    assert_eq!(recs.len(), 5, "{recs:#?}");
    let shanghai = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let mut per_day = std::collections::BTreeMap::new();
    for r in &recs {
        let day = jiff::Timestamp::from_millisecond(started_ms(r))
            .unwrap()
            .to_zoned(shanghai.clone())
            .date()
            .to_string();
        *per_day.entry(day).or_insert(0) += 1;
    }
    let counts: Vec<(String, i32)> = per_day.into_iter().collect();
    assert_eq!(
        counts,
        [
            ("2026-11-23".to_string(), 2),
            ("2026-11-24".to_string(), 2),
            ("2026-11-25".to_string(), 1)
        ],
        "{recs:#?}"
    );
}
