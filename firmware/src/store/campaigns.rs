//! Outbound campaigns' contacts in the database: the list as loaded
//! (new numbers added, known ones keeping where they stand), each
//! contact's progress as the dialer moves it, and each finished attempt
//! for headquarters (`campaign_results` in the outbox).

use std::collections::BTreeMap;

use rusqlite::{Transaction, params};

use super::outbox::enqueue;
use super::{ReadOnly, StoreError};
use crate::clock::Stamp;

/// A contact as a campaign's list gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    /// The number to dial.
    pub number: String,
    /// The contact's name, for the agent and the flow (`name` variable).
    pub name: Option<String>,
    /// The contact's own time zone (IANA), if the list gives one.
    pub tz: Option<String>,
    /// The list's other columns (the flow's variables), as a JSON
    /// object's text: kept as text until the contact is dialled, since a
    /// map per contact costs half a kilobyte and a box holds lists of
    /// 100,000.
    pub vars: String,
}

impl NewContact {
    /// The list's other columns (an unreadable text gives none).
    pub fn vars(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.vars).unwrap_or_default()
    }
}

/// Where a contact stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    /// The list's part.
    pub contact: NewContact,
    /// `pending`, `in_progress`, `done`, `failed`, `exhausted`, `dnc` or
    /// `removed` (no longer on the list).
    pub state: String,
    /// Attempts in all.
    pub attempts: u32,
    /// The contact's local day the daily count is for (`2026-11-23`).
    pub day: Option<String>,
    /// Attempts on that day.
    pub attempts_day: u32,
    /// Not dialled before this moment (wall-clock ms).
    pub next_at_ms: i64,
    /// When the last attempt was dialled.
    pub last_attempt_ms: Option<i64>,
    /// How the last attempt ended.
    pub last_outcome: Option<String>,
}

/// A contact's progress, written as the dialer moves it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactUpdate {
    /// Campaign.
    pub campaign: String,
    /// Contact's number.
    pub number: String,
    /// New state.
    pub state: String,
    /// Attempts in all.
    pub attempts: u32,
    /// Local day of the daily count.
    pub day: Option<String>,
    /// Attempts that day.
    pub attempts_day: u32,
    /// Due again at.
    pub next_at_ms: i64,
    /// Last attempt dialled at.
    pub last_attempt_ms: Option<i64>,
    /// Last attempt's outcome.
    pub last_outcome: Option<String>,
    /// Last attempt's call.
    pub last_call_id: Option<String>,
    /// What the contact answered (the flow's recorded variables).
    pub answers: Option<serde_json::Value>,
    /// An attempt ended: headquarters gets it.
    pub report: bool,
}

pub(super) fn load(
    tx: &Transaction<'_>,
    campaign: &str,
    contacts: &[NewContact],
    at: &Stamp,
) -> rusqlite::Result<()> {
    // A contact the list no longer has is `removed` (never dialled
    // again); one that comes back is pending again.
    let mut stmt = tx.prepare_cached(
        "INSERT INTO campaign_contacts (campaign, number, name, tz, vars, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (campaign, number) DO UPDATE SET
           name = excluded.name, tz = excluded.tz, vars = excluded.vars, updated_ms = excluded.updated_ms,
           state = CASE WHEN state = 'removed' THEN 'pending' ELSE state END",
    )?;
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS campaign_loading (number TEXT PRIMARY KEY);
         DELETE FROM campaign_loading;",
    )?;
    let mut listed =
        tx.prepare_cached("INSERT OR IGNORE INTO campaign_loading (number) VALUES (?1)")?;
    for c in contacts {
        stmt.execute(params![
            campaign, c.number, c.name, c.tz, c.vars, at.wall_ms
        ])?;
        listed.execute(params![c.number])?;
    }
    tx.prepare_cached(
        "UPDATE campaign_contacts SET state = 'removed', updated_ms = ?2
         WHERE campaign = ?1 AND state IN ('pending', 'in_progress')
           AND number NOT IN (SELECT number FROM campaign_loading)",
    )?
    .execute(params![campaign, at.wall_ms])?;
    tx.execute_batch("DELETE FROM campaign_loading;")?;
    Ok(())
}

pub(super) fn update(tx: &Transaction<'_>, u: &ContactUpdate, at: &Stamp) -> rusqlite::Result<()> {
    let answers = u.answers.as_ref().map(|a| a.to_string());
    tx.prepare_cached(
        "UPDATE campaign_contacts SET state = ?3, attempts = ?4, day = ?5, attempts_day = ?6,
           next_at_ms = ?7, last_attempt_ms = ?8, last_outcome = ?9,
           -- A save without a call (dialling starts, outside the window)
           -- keeps the last call, so a wrap-up code keyed late still finds
           -- it; a new call's code starts empty.
           wrap_code = CASE WHEN ?10 IS NOT NULL AND ?10 IS NOT last_call_id THEN NULL ELSE wrap_code END,
           last_call_id = COALESCE(?10, last_call_id),
           answers = COALESCE(?11, answers), updated_ms = ?12
         WHERE campaign = ?1 AND number = ?2",
    )?
    .execute(params![
        u.campaign,
        u.number,
        u.state,
        u.attempts,
        u.day,
        u.attempts_day,
        u.next_at_ms,
        u.last_attempt_ms,
        u.last_outcome,
        u.last_call_id,
        answers,
        at.wall_ms
    ])?;
    if u.report {
        report(tx, &u.campaign, &u.number, at)?;
    }
    Ok(())
}

/// Sends headquarters where a contact stands now (`campaign_results`).
fn report(tx: &Transaction<'_>, campaign: &str, number: &str, at: &Stamp) -> rusqlite::Result<()> {
    let row = tx
        .prepare_cached(
            "SELECT state, attempts, last_outcome, last_call_id, answers, next_at_ms, wrap_code
             FROM campaign_contacts WHERE campaign = ?1 AND number = ?2",
        )?
        .query_row(params![campaign, number], |r| {
            let answers: Option<String> = r.get(4)?;
            Ok(serde_json::json!({
                // One id per contact: headquarters keeps the latest
                // (`export --latest`), the contact's state now.
                "id": format!("{campaign}:{number}"),
                "campaign": campaign,
                "number": number,
                "state": r.get::<_, String>(0)?,
                "attempts": r.get::<_, i64>(1)?,
                "outcome": r.get::<_, Option<String>>(2)?,
                "call_id": r.get::<_, Option<String>>(3)?,
                "answers": answers.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok()),
                "next_at_ms": r.get::<_, i64>(5)?,
                "wrap_code": r.get::<_, Option<String>>(6)?,
            }))
        })?;
    enqueue(tx, "campaign_results", at, &row)
}

/// An agent coded call `call_id`: the campaign contact it was the last
/// call of (if any) keeps the code, and headquarters hears of it.
pub(super) fn wrap_code(tx: &Transaction<'_>, call_id: &str, code: &str) -> rusqlite::Result<()> {
    // Stamped, like the call record sent again, with the call's end.
    let Some(ms) = super::outbox::ended_ms(tx, call_id)? else {
        return Ok(());
    };
    let at = Stamp {
        wall_ms: ms,
        mono_ms: 0,
        synced: true,
    };
    let contacts: Vec<(String, String)> = tx
        .prepare_cached(
            "UPDATE campaign_contacts SET wrap_code = ?2, updated_ms = ?3 WHERE last_call_id = ?1
             RETURNING campaign, number",
        )?
        .query_map(params![call_id, code, at.wall_ms], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (campaign, number) in contacts {
        report(tx, &campaign, &number, &at)?;
    }
    Ok(())
}

/// One campaign's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignTotals {
    /// The campaign.
    pub name: String,
    /// Contacts by state.
    pub states: BTreeMap<String, u64>,
    /// Contacts by their last attempt's outcome (`machine`, `abandoned`,
    /// `answered`…); contacts never dialled are left out.
    pub outcomes: BTreeMap<String, u64>,
    /// Attempts in all.
    pub attempts: u64,
}

impl ReadOnly {
    /// Every contact of `campaign`, in list order.
    pub fn campaign_contacts(&self, campaign: &str) -> Result<Vec<ContactRow>, StoreError> {
        self.read("campaign contacts", |c| {
            let mut stmt = c.prepare(
                "SELECT number, name, tz, vars, state, attempts, day, attempts_day, next_at_ms,
                        last_attempt_ms, last_outcome
                 FROM campaign_contacts WHERE campaign = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![campaign], |r| {
                Ok(ContactRow {
                    contact: NewContact {
                        number: r.get(0)?,
                        name: r.get(1)?,
                        tz: r.get(2)?,
                        vars: r.get(3)?,
                    },
                    state: r.get(4)?,
                    attempts: r.get(5)?,
                    day: r.get(6)?,
                    attempts_day: r.get(7)?,
                    next_at_ms: r.get(8)?,
                    last_attempt_ms: r.get(9)?,
                    last_outcome: r.get(10)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Per campaign: contacts by state and by last outcome, attempts in
    /// all.
    pub fn campaign_summary(&self) -> Result<Vec<CampaignTotals>, StoreError> {
        self.read("campaign summary", |c| {
            let mut out: BTreeMap<String, CampaignTotals> = BTreeMap::new();
            let mut stmt = c.prepare(
                "SELECT campaign, state, last_outcome, COUNT(*), SUM(attempts)
                 FROM campaign_contacts GROUP BY campaign, state, last_outcome",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            for row in rows {
                let (campaign, state, outcome, n, attempts) = row?;
                let t = out
                    .entry(campaign.clone())
                    .or_insert_with(|| CampaignTotals {
                        name: campaign,
                        ..CampaignTotals::default()
                    });
                let n = n.max(0) as u64;
                *t.states.entry(state).or_default() += n;
                if let Some(o) = outcome {
                    *t.outcomes.entry(o).or_default() += n;
                }
                t.attempts += attempts.max(0) as u64;
            }
            Ok(out.into_values().collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use crate::store::*;
    use callbox_hal::HangupCause;

    fn contact(number: &str) -> NewContact {
        NewContact {
            number: number.into(),
            name: None,
            tz: None,
            vars: "{}".into(),
        }
    }

    #[tokio::test]
    async fn a_contact_no_longer_on_the_list_is_removed_and_comes_back_pending() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        let load = |numbers: &[&str], ms| StoreMsg::CampaignContacts {
            campaign: "c".into(),
            contacts: numbers.iter().map(|n| contact(n)).collect(),
            at: stamp(ms),
        };
        h.send(load(&["1", "2", "3"], 1000)).await;
        // 3 is done before the new list: it stays done.
        let done = ContactUpdate {
            campaign: "c".into(),
            number: "3".into(),
            state: "done".into(),
            attempts: 1,
            day: None,
            attempts_day: 1,
            next_at_ms: 0,
            last_attempt_ms: Some(1500),
            last_outcome: Some("answered".into()),
            last_call_id: None,
            answers: None,
            report: false,
        };
        h.send(StoreMsg::CampaignContact(done, stamp(1500))).await;
        h.send(load(&["1"], 2000)).await;
        h.flush().await.unwrap();
        let states = || {
            ReadOnly::open(dir.path())
                .unwrap()
                .campaign_contacts("c")
                .unwrap()
                .into_iter()
                .map(|r| (r.contact.number, r.state))
                .collect::<Vec<_>>()
        };
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            states(),
            [s("1", "pending"), s("2", "removed"), s("3", "done")]
        );
        h.send(load(&["1", "2"], 3000)).await;
        h.flush().await.unwrap();
        assert_eq!(
            states(),
            [s("1", "pending"), s("2", "pending"), s("3", "done")]
        );
    }

    #[tokio::test]
    async fn a_wrap_up_code_reaches_the_contact_whose_last_call_it_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        let contact = NewContact {
            number: "13900000001".into(),
            name: None,
            tz: None,
            vars: "{}".into(),
        };
        h.send(StoreMsg::CampaignContacts {
            campaign: "winback".into(),
            contacts: vec![contact],
            at: stamp(1000),
        })
        .await;
        h.send(call("c1", 2000)).await;
        h.send(StoreMsg::CallEnded(CallEnd {
            id: "c1".into(),
            at: stamp(9000),
            disposition: Disposition::Answered,
            cause: HangupCause::Normal,
            side: Side::Caller,
        }))
        .await;
        let done = ContactUpdate {
            campaign: "winback".into(),
            number: "13900000001".into(),
            state: "done".into(),
            attempts: 1,
            day: None,
            attempts_day: 1,
            next_at_ms: 0,
            last_attempt_ms: Some(2000),
            last_outcome: Some("answered".into()),
            last_call_id: Some("c1".into()),
            answers: None,
            report: true,
        };
        h.send(StoreMsg::CampaignContact(done, stamp(9000))).await;
        h.send(StoreMsg::WrapCode {
            call_id: "c1".into(),
            code: "7".into(),
        })
        .await;
        h.flush().await.unwrap();
        let results = rows_of(dir.path(), "campaign_results");
        assert_eq!(results.len(), 2, "{results:#?}");
        let last = &results[1]["payload"];
        assert_eq!(last["id"], "winback:13900000001");
        assert_eq!(last["state"], "done");
        assert_eq!(last["wrap_code"], "7");
        assert_eq!(results[0]["payload"]["wrap_code"], serde_json::Value::Null);
        let rows = ReadOnly::open(dir.path())
            .unwrap()
            .campaign_contacts("winback")
            .unwrap();
        assert_eq!(rows[0].state, "done");
    }
}
