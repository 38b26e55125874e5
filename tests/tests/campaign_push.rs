//! A campaign pushed from headquarters end to end: `callbox-hq campaign
//! push` sends a 2,000-contact agentless survey (a definition and a CSV
//! list) to the real daemon, running in virtual time on simulated lines,
//! through a real mosquitto; the push resumes after an interruption with
//! the chunks still missing; the box takes the list except its malformed
//! rows (reported by line) and merges a duplicate; every contact answers
//! two questions with their keys, and headquarters' collector ends with
//! each contact's answers. Pushed again it is not duplicated; a broken
//! definition is refused at its line.

use std::time::Duration;

use callbox_firmware::calls::campaign::pushed::upload_id;
use callbox_tests::mqtt::{Broker, Collector, Daemon, add_uplink, hq_net, last_json};
use callbox_tests::{Site, text};
use serde_json::{Value, json};

const SITE: &str = r#"
[ivr]
language = "en"
start = "bye"
campaign_flows = ["q1"]

[ivr.node.bye]
type = "hangup"

[ivr.node.q1]
type = "collect"
var = "q1"
prompt = "system:beep"
min = 1
max = 1
first_digit_timeout = "5s"
recordable = true
next = "q2"

[ivr.node.q2]
type = "collect"
var = "q2"
prompt = "system:beep"
min = 1
max = 1
first_digit_timeout = "5s"
recordable = true
next = "thanks"

[ivr.node.thanks]
type = "hangup"
outcome = "surveyed"
"#;

const DEFINITION: &str = r#"number = "4008001234"
mode = "agentless"
start = "q1"
max_lines = 30
max_attempts = 2
success = { var = "q2", in = ["1", "2", "3"] }

[window]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
"#;

const CONTACTS: u32 = 2000;
const CHUNK: usize = 8192;

fn number(i: u32) -> String {
    format!("137{i:08}")
}

/// Contact `i`'s keys: question 1, question 2.
fn keys(i: u32) -> (u32, u32) {
    (i % 5 + 1, i % 3 + 1)
}

/// The list cut as `callbox-hq` cuts it: whole lines, at most `max` bytes.
fn cut(list: &str, max: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in list.split_inclusive('\n') {
        let last = out.last_mut().unwrap();
        if !last.is_empty() && last.len() + line.len() > max {
            out.push(String::new());
        }
        out.last_mut().unwrap().push_str(line);
    }
    out
}

#[test]
fn a_survey_pushed_from_headquarters_runs_to_the_end_with_each_contacts_answers_at_headquarters() {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    let site = Site::with_config(30, 0, SITE);
    add_uplink(&site, &broker.uplink("box-p", ""));

    let mut list = String::from("number,name,region\n");
    let mut scenario = String::new();
    for i in 0..CONTACTS {
        list += &format!("{},Customer {i},r{}\n", number(i), i % 7);
        let (a, b) = keys(i);
        scenario += &format!(
            "[[callee]]\nnumber = \"{}\"\nanswer_after = \"{}s\"\nhangup_after = \"40s\"\nscript = [{{ wait = \"2s\" }}, {{ press = \"{a}\" }}, {{ wait = \"2s\" }}, {{ press = \"{b}\" }}]\n\n",
            number(i),
            1 + i % 3
        );
        if i == 10 {
            // Line 13: not a number; line 14: a field short; line 15: the
            // first contact again.
            list += "12x45,Bad,r0\n13700000999,Short\n13700000000,Again,r0\n";
        }
    }
    let def = site.write("survey.toml", DEFINITION);
    let csv = site.write("survey.csv", &list);
    let calls = site.write("callees.toml", &scenario);
    let mut d = Daemon::start(
        &site,
        &[
            "--fast",
            "--start-at",
            "2026-11-23T09:00:00+08:00",
            "--scenario",
            calls.to_str().unwrap(),
        ],
    );
    d.wait_log(Duration::from_secs(30), "the fleet link up", |l| {
        l.contains("fleet link connected")
    });

    // An earlier push broke off after its first chunk.
    let parts = cut(&list, CHUNK);
    assert!(parts.len() > 3, "{} chunks", parts.len());
    let upload = upload_id(DEFINITION, list.as_bytes());
    let first = json!({
        "name": "survey", "upload": upload, "chunks": parts.len(), "definition": DEFINITION,
        "format": "csv", "chunk": 0, "data": parts[0],
    });
    let (resp, out) = callbox_tests::mqtt::hq_cmd(
        &broker,
        "test-site",
        "box-p",
        &["campaign.push", &first.to_string()],
    );
    assert_eq!(resp["ok"], true, "{resp:#}\n{}", text(&out));
    assert_eq!(resp["result"]["complete"], false, "{resp:#}");
    assert_eq!(resp["result"]["received"], 1, "{resp:#}");

    // `callbox-hq campaign push` resumes: chunk 1 is not sent again.
    let push = |extra: &[&str]| {
        let mut args = vec!["campaign", "push", "box-p", "--site", "test-site"];
        args.extend_from_slice(extra);
        hq_net(&broker, &args)
    };
    let chunk_bytes = CHUNK.to_string();
    let out = push(&[
        "--name",
        "survey",
        "--definition",
        def.to_str().unwrap(),
        "--list",
        csv.to_str().unwrap(),
        "--chunk-bytes",
        &chunk_bytes,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains(&format!("chunk 1 of {} sent", parts.len())),
        "{err}"
    );
    assert!(
        err.contains(&format!("chunk {} of {} sent", parts.len(), parts.len())),
        "{err}"
    );
    let done = last_json(&out.stdout);
    let r = &done["result"];
    assert_eq!(r["complete"], true, "{done:#}");
    assert_eq!(r["contacts"], CONTACTS, "{done:#}");
    assert_eq!(r["merged"], 1, "{done:#}");
    assert_eq!(r["rejected_count"], 2, "{done:#}");
    assert_eq!(r["rejected"][0]["line"], 13, "{done:#}");
    assert_eq!(r["rejected"][1]["line"], 14, "{done:#}");

    d.wait_log(Duration::from_secs(300), "the survey finished", |l| {
        l.contains("campaign finished")
    });
    // Headquarters has each contact's answers.
    let end = std::time::Instant::now() + Duration::from_secs(120);
    let results = loop {
        let r = collector.export_latest("campaign_results");
        if r.len() as u32 >= CONTACTS || std::time::Instant::now() > end {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(results.len() as u32, CONTACTS, "{}", collector.output());
    let mut wrong = Vec::new();
    for res in &results {
        let n = res["number"].as_str().unwrap();
        let i: u32 = n[3..].parse().unwrap();
        let (a, b) = keys(i);
        let answers = &res["answers"];
        if res["state"] != "done"
            || res["campaign"] != "survey"
            || answers["q1"].as_str() != Some(a.to_string().as_str())
            || answers["q2"].as_str() != Some(b.to_string().as_str())
        {
            wrong.push(res.clone());
        }
    }
    assert!(
        wrong.is_empty(),
        "{} contacts wrong at headquarters, e.g. {:#}",
        wrong.len(),
        wrong[0]
    );

    // Status, pause and resume from headquarters.
    let ctl = |verb: &str| {
        let out = hq_net(
            &broker,
            &[
                "campaign",
                verb,
                "box-p",
                "--site",
                "test-site",
                "--name",
                "survey",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        last_json(&out.stdout)["result"].clone()
    };
    let status = ctl("status");
    assert_eq!(status["remaining"], 0, "{status:#}");
    assert_eq!(status["dialled"], CONTACTS, "{status:#}");
    assert_eq!(ctl("pause")["control"], "paused");
    assert_eq!(ctl("resume")["control"], "running");

    // The same push again is the campaign in force, not a second one.
    let out = push(&[
        "--name",
        "survey",
        "--definition",
        def.to_str().unwrap(),
        "--list",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(last_json(&out.stdout)["result"]["already"], true);

    // A definition naming a node the box does not have is refused at its
    // line, before the list is sent.
    let bad = site.write(
        "bad.toml",
        &DEFINITION.replace("start = \"q1\"", "start = \"nowhere\""),
    );
    let out = push(&[
        "--name",
        "survey2",
        "--definition",
        bad.to_str().unwrap(),
        "--list",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let refused: Value = last_json(&out.stdout);
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("campaign survey2:3:") && error.contains("`nowhere` is not a node"),
        "{refused:#}"
    );

    // A campaign added by a config change starts without a restart.
    site.write("extra.csv", "number\n13799999999\n");
    let all_day = "[\"00:00-24:00\"]";
    let mut cfg = site.config_text();
    cfg += &format!(
        "\n[campaign.extra]\nnumber = \"4008001234\"\nmode = \"agentless\"\nstart = \"q1\"\nlist = \"extra.csv\"\n\n[campaign.extra.window]\nmon = {all_day}\ntue = {all_day}\nwed = {all_day}\nthu = {all_day}\nfri = {all_day}\nsat = {all_day}\nsun = {all_day}\n"
    );
    let new_cfg = site.write("site-v1.toml", &cfg);
    let out = hq_net(
        &broker,
        &[
            "config",
            "push",
            "box-p",
            "--site",
            "test-site",
            new_cfg.to_str().unwrap(),
            "--version",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    d.wait_log(Duration::from_secs(30), "the added campaign's call", |l| {
        l.contains("number=13799999999 attempt=1")
    });
    d.stop();

    // Every contact was called once: nobody twice.
    let recs = site.records();
    let survey = recs.iter().filter(|r| r["job"] == "survey").count();
    assert_eq!(survey as u32, CONTACTS, "{}", recs.len());
}
