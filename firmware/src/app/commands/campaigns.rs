//! Campaigns in the command actor: which ones the dialer runs (the site
//! config's, then those pushed from headquarters that check against it)
//! and `campaign.push`, which receives a pushed campaign in chunks and
//! puts it in force once whole and checked.

use std::path::Path;
use std::sync::Arc;

use callbox_hal::Line;
use serde_json::{Value, json};

use super::args::{Args, clip};
use super::error::CommandError;
use super::reconfigure::Reconfigure;
use crate::calls::campaign::list::{self, Loaded};
use crate::calls::campaign::pushed::{self, Format, MAX_CHUNKS, MAX_CONTACTS, Store};
use crate::calls::campaign::{Dialer, Wanted};
use crate::config::SiteConfig;
use crate::ivr::Ivr;

/// Rows left out that an answer lists (the count is always given).
const REJECTED_SHOWN: usize = 50;
/// Missing chunks an answer lists.
const MISSING_SHOWN: usize = 100;

/// The campaigns to run under `config`, whose flows are in `ivr`: the
/// config's own, then each pushed one that checks (one that does not is
/// logged and left out).
pub(super) fn wanted(config: &SiteConfig, ivr: Option<&Arc<Ivr>>, store: &Store) -> Vec<Wanted> {
    let Some(ivr) = ivr else {
        return Vec::new();
    };
    let mut out: Vec<Wanted> = config
        .campaigns
        .list
        .iter()
        .map(|c| (Arc::clone(c), Arc::clone(ivr)))
        .collect();
    for p in store.installed() {
        match config.check_pushed(&p.name, &p.definition, &p.list) {
            Ok(c) => out.push((c, Arc::clone(ivr))),
            Err(e) => tracing::error!(
                campaign = %p.name,
                "a campaign pushed from headquarters does not fit the site config in force, not run:\n{e}"
            ),
        }
    }
    out
}

/// The actor's campaign part.
pub(super) struct CampaignDesk {
    pub(super) dialer: Dialer,
    pub(super) store: Store,
    /// The IVR campaign flows run in: replaced only when a config change
    /// touches `[ivr]`, so other changes do not restart campaigns.
    pub(super) ivr: Option<Arc<Ivr>>,
}

impl CampaignDesk {
    /// Tells the dialer what to run under `config`.
    pub(super) fn apply(&self, config: &SiteConfig) {
        self.dialer
            .set(wanted(config, self.ivr.as_ref(), &self.store));
    }
}

fn bad(why: impl Into<String>) -> CommandError {
    CommandError::Push(why.into())
}

/// What the arguments of one `campaign.push` message say.
struct Message<'a> {
    name: &'a str,
    upload: &'a str,
    chunks: u64,
    chunk: Option<(u64, &'a str)>,
    definition: &'a str,
    format: Format,
}

impl<'a> Message<'a> {
    fn read(args: &Args<'a>) -> Result<Message<'a>, CommandError> {
        let name = args.str("name")?;
        if !pushed::valid_name(name) {
            return Err(bad(format!(
                "`{}` is not a campaign name: 1-64 letters, digits, `-` or `_`",
                clip(name)
            )));
        }
        let upload = args.str("upload")?;
        if !pushed::valid_upload(upload) {
            return Err(bad(format!(
                "`upload` `{}` is not a SHA-256 in lower-case hex",
                clip(upload)
            )));
        }
        let chunks = args.u64("chunks")?;
        if !(1..=MAX_CHUNKS).contains(&chunks) {
            return Err(bad(format!("{chunks} chunks: 1 to {MAX_CHUNKS}")));
        }
        let chunk = match (args.u64_opt("chunk")?, args.str_opt("data")?) {
            (Some(k), Some(data)) if k < chunks => Some((k, data)),
            (Some(k), Some(_)) => {
                return Err(bad(format!("chunk {k} of {chunks}: chunks count from 0")));
            }
            (None, None) => None,
            (Some(_), None) => return Err(bad("`chunk` without `data`")),
            (None, Some(_)) => return Err(bad("`data` without `chunk`")),
        };
        let definition = args.str("definition")?;
        if definition.len() > pushed::MAX_DEFINITION {
            return Err(bad(format!(
                "a definition of {} bytes: at most {}",
                definition.len(),
                pushed::MAX_DEFINITION
            )));
        }
        let format = args.str_opt("format")?.unwrap_or("csv");
        let format = Format::parse(format).ok_or_else(|| {
            bad(format!(
                "`format` must be \"csv\" or \"jsonl\", not `{}`",
                clip(format)
            ))
        })?;
        Ok(Message {
            name,
            upload,
            chunks,
            chunk,
            definition,
            format,
        })
    }
}

/// The answer for a list put in force.
fn loaded_answer(name: &str, upload: &str, loaded: &Loaded, already: bool) -> Value {
    let rejected: Vec<Value> = loaded
        .rejected
        .iter()
        .take(REJECTED_SHOWN)
        .map(|(line, why)| json!({"line": line, "why": why}))
        .collect();
    json!({
        "name": name,
        "upload": upload,
        "complete": true,
        "already": already,
        "contacts": loaded.contacts.len(),
        "merged": loaded.merged,
        "rejected_count": loaded.rejected.len(),
        "rejected": rejected,
    })
}

/// Assembles, verifies, reads and stages a whole upload; the list's path
/// and what it held.
fn stage(store: &Store, m: &Owned) -> Result<(std::path::PathBuf, Loaded), CommandError> {
    let bytes = store.assemble(&m.name, &m.upload, m.chunks).map_err(|e| {
        store.discard(&m.name, &m.upload);
        bad(format!(
            "the chunks could not be read back ({e}): push again"
        ))
    })?;
    if bytes.len() as u64 > pushed::MAX_LIST_BYTES {
        store.discard(&m.name, &m.upload);
        return Err(bad(format!(
            "a list of {} bytes: at most {}",
            bytes.len(),
            pushed::MAX_LIST_BYTES
        )));
    }
    let got = pushed::upload_id(&m.definition, &bytes);
    if got != m.upload {
        store.discard(&m.name, &m.upload);
        return Err(bad(format!(
            "the definition and the {} chunks do not add up to upload {} (they give {got}): push again",
            m.chunks, m.upload
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "the list is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let loaded = match m.format {
        Format::Csv => list::parse(&text).map_err(|e| bad(format!("the list: {e}")))?,
        Format::Jsonl => list::parse_jsonl(&text),
    };
    if loaded.contacts.len() > MAX_CONTACTS {
        store.discard(&m.name, &m.upload);
        return Err(bad(format!(
            "{} contacts: at most {MAX_CONTACTS} per campaign",
            loaded.contacts.len()
        )));
    }
    let path = store
        .stage(&m.name, &m.upload, &m.definition, m.format, text.as_bytes())
        .map_err(|e| bad(format!("the campaign could not be written: {e}")))?;
    Ok((path, loaded))
}

/// A message's fields, owned, for work off the runtime.
struct Owned {
    name: String,
    upload: String,
    chunks: u64,
    definition: String,
    format: Format,
}

impl<L: Line> Reconfigure<L> {
    /// `campaign.push`: keeps the chunk it carries; once every chunk is
    /// in, checks the whole and puts the campaign in force (started, or
    /// restarted with its new definition and list). Without a chunk it
    /// answers which are missing, for a push that resumes.
    pub(super) async fn campaign_push(&mut self, args: &Args<'_>) -> Result<Value, CommandError> {
        let m = Message::read(args)?;
        let config = Arc::clone(&self.running_config());
        let desk = &self.campaigns;
        if desk.store.current(m.name).as_deref() == Some(m.upload) {
            let p = desk
                .store
                .installed()
                .into_iter()
                .find(|p| p.name == m.name)
                .ok_or_else(|| bad("the campaign in force could not be read"))?;
            let loaded = list::read(&p.list).map_err(bad)?;
            return Ok(loaded_answer(m.name, m.upload, &loaded, true));
        }
        // The definition first: a mistake is known before the list is sent.
        config
            .check_pushed(m.name, m.definition, Path::new(""))
            .map_err(|e| bad(format!("the definition does not check:\n{e}")))?;
        if let Some((k, data)) = m.chunk {
            desk.store
                .keep_chunk(m.name, m.upload, k, data.as_bytes())
                .map_err(|e| bad(format!("chunk {k} could not be kept: {e}")))?;
        }
        let received = desk.store.received(m.name, m.upload);
        if !(0..m.chunks).all(|k| received.contains(&k)) {
            let missing: Vec<u64> = (0..m.chunks)
                .filter(|k| !received.contains(k))
                .take(MISSING_SHOWN)
                .collect();
            return Ok(json!({
                "name": m.name,
                "upload": m.upload,
                "complete": false,
                "received": received.len(),
                "chunks": m.chunks,
                "missing": missing,
            }));
        }
        let owned = Owned {
            name: m.name.to_string(),
            upload: m.upload.to_string(),
            chunks: m.chunks,
            definition: m.definition.to_string(),
            format: m.format,
        };
        let store = desk.store.clone();
        let (path, loaded, owned) =
            tokio::task::spawn_blocking(move || stage(&store, &owned).map(|(p, l)| (p, l, owned)))
                .await
                .map_err(|e| bad(format!("the list could not be read: {e}")))??;
        if let Err(e) = config.check_pushed(&owned.name, &owned.definition, &path) {
            desk.store.discard(&owned.name, &owned.upload);
            return Err(bad(format!("the campaign does not check:\n{e}")));
        }
        desk.store
            .commit(&owned.name, &owned.upload)
            .map_err(|e| bad(format!("the campaign could not be put in force: {e}")))?;
        for (line, why) in loaded.rejected.iter().take(REJECTED_SHOWN) {
            tracing::warn!(campaign = %owned.name, line, "pushed contact left out: {why}");
        }
        tracing::info!(
            campaign = %owned.name,
            upload = %owned.upload,
            contacts = loaded.contacts.len(),
            rejected = loaded.rejected.len(),
            "campaign pushed from headquarters put in force"
        );
        desk.apply(&config);
        Ok(loaded_answer(&owned.name, &owned.upload, &loaded, false))
    }
}
