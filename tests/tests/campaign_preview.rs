//! A preview campaign end to end: the real daemon in virtual time offers
//! each contact to a free agent of the campaign's queue — their phone
//! rings showing the contact's name and the campaign — and dials the
//! contact only once the agent answers, presenting the campaign's number,
//! then connects the two. An agent who lets the preview ring skips the
//! contact: nobody is dialled and no attempt counts.

use callbox_tests::{Site, text};
use serde_json::Value;

const CONFIG: &str = r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"

[ivr.node.callers]
type = "queue"
queue = "sales"
announce = []
on_overflow = "bye"

[acd.agent.alice]
number = "1001"
station = "desk-1"
logged_in = true

[acd.agent.bob]
number = "1002"
station = "desk-2"
logged_in = true

[acd.queue.sales]
members = { alice = 0, bob = 0 }

[campaign.followup]
number = "4008001234"
mode = "preview"
start = "callers"
list = "followup.csv"
max_lines = 2
preview_ring = "5s"

[campaign.followup.window]
timezone = "Asia/Shanghai"
mon = ["09:00-18:00"]
"#;

#[test]
fn a_preview_campaign_dials_a_contact_only_once_an_agent_took_it() {
    let site = Site::with_config(2, 2, CONFIG);
    site.write(
        "followup.csv",
        "number,name\n13900000001,Wang\n13900000002,Li\n13900000003,Zhao\n",
    );
    // Alice takes every preview after a second and talks 10 s; Bob never
    // picks up.
    let mut sc = String::from(
        "[[agent]]\nname = \"alice\"\nline = \"desk-1\"\nanswer_after = \"1s\"\ntalk = \"10s\"\n\n\
         [[agent]]\nname = \"bob\"\nline = \"desk-2\"\nanswers = false\n\n",
    );
    for n in 1..=3 {
        sc += &format!(
            "[[callee]]\nnumber = \"1390000000{n}\"\nanswer_after = \"2s\"\nhangup_after = \"60s\"\n\n"
        );
    }
    let path = site.write("calls.toml", &sc);
    let report = site.dir.path().join("report.json");
    let out = site.run_fast_with(
        &path,
        &[
            "--start-at",
            "2026-11-23T10:00:00+08:00",
            "--sim-report",
            report.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);

    let contacts = site.table("campaign_contacts");
    assert_eq!(contacts.len(), 3);
    for c in &contacts {
        assert_eq!(c["state"], "done", "{c:#}\n{log}");
        assert_eq!(c["attempts"], 1, "skipped previews do not count: {c:#}");
        assert_eq!(c["last_outcome"], "answered", "{c:#}");
    }
    // One call per contact, each Alice's, connected, with the campaign.
    let recs = site.records();
    assert_eq!(recs.len(), 3, "{recs:#?}");
    for r in &recs {
        assert_eq!(r["job"], "followup", "{r:#}");
        assert_eq!(r["station"], "desk-1", "{r:#}");
        assert_eq!(r["disposition"], "answered", "{r:#}");
        assert!(
            r["connected_to"]
                .as_str()
                .is_some_and(|t| t.starts_with("trunk-")),
            "{r:#}"
        );
    }
    let rep: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // Alice's phone showed each contact with the campaign; Bob's was
    // offered some and let them go.
    let shown: Vec<&str> = rep["caller_ids"]["desk-1"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (n, name) in [(1, "Wang"), (2, "Li"), (3, "Zhao")] {
        let want = format!("1390000000{n} {name} · followup");
        assert!(shown.contains(&want.as_str()), "{shown:?}");
    }
    assert!(
        rep["caller_ids"]["desk-2"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{rep:#}"
    );
    assert!(
        log.contains("preview: the agent did not take the contact"),
        "{log}"
    );
    // The contacts saw the campaign's number, once each.
    for n in 1..=3 {
        let p = &rep["presented"][format!("1390000000{n}")];
        assert_eq!(p.as_array().map(Vec::len), Some(1), "{rep:#}");
        assert_eq!(p[0], "4008001234", "{rep:#}");
    }
}
