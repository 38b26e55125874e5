//! Callers' names, end to end: the site's contacts table names a caller on
//! the ringing agent's phone and in the call record; an agent's own call
//! shows the agent's number and name on the colleague's phone.

use callbox_tests::{Site, by_caller};
use serde_json::Value;

const SITE: &str = r#"
[ivr]
start = "sales"

[ivr.lookups]
contacts = "contacts.csv"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd.agent.alice]
name = "Alice Wang"
number = "1001"
station = "desk-1"
logged_in = true

[acd.agent.bob]
number = "1002"
station = "desk-2"
logged_in = false

[acd.queue.sales]
members = { alice = 0 }

[dialplan]
"#;

#[test]
fn the_contacts_name_callers_on_agents_phones_and_in_records() {
    let site = Site::with_config(1, 2, SITE);
    site.write(
        "contacts.csv",
        "number,name\n# the shop's regular customers\n13800138000,王经理\n+8613900000000,Li Lei\n",
    );
    let (rep, _) = site.run_heard(
        r#"
[[call]]
at = "1s"
from = "13800138000"
to = "4001"
hangup_after = "5s"

[[call]]
at = "10s"
from = "13700000000"
to = "4001"
hangup_after = "5s"

[[agent]]
name = "alice"
line = "desk-1"
answer_after = "1s"
dial = [{ at = "20s", digits = "1002", hold = "6s" }]

[[agent]]
name = "bob"
line = "desk-2"
answer_after = "1s"
talk = "2s"
"#,
    );
    let recs = site.records();
    assert_eq!(by_caller(&recs, "13800138000")["caller_name"], "王经理");
    assert_eq!(by_caller(&recs, "13700000000")["caller_name"], Value::Null);
    assert_eq!(by_caller(&recs, "1001")["caller_name"], "Alice Wang");
    assert_eq!(
        rep["caller_ids"]["desk-1"],
        serde_json::json!(["13800138000 王经理", "13700000000"]),
        "{rep:#}"
    );
    assert_eq!(
        rep["caller_ids"]["desk-2"],
        serde_json::json!(["1001 Alice Wang"]),
        "{rep:#}"
    );
}

#[test]
fn a_bad_contacts_row_is_named_in_its_file() {
    let site = Site::with_config(1, 2, SITE);
    site.write(
        "contacts.csv",
        "number,name\n13800138000,王经理\nabc,Nobody\n13800138000,Again\n",
    );
    let err = site.refused();
    assert!(
        err.contains("contacts.csv:3:1: number `abc` must be digits"),
        "{err}"
    );
    assert!(
        err.contains("contacts.csv:4:1: number `13800138000` appears twice"),
        "{err}"
    );
}
