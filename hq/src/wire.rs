//! The payloads of docs/mqtt.md that the collector must take apart
//! strictly: records batches and recording chunks, and the acks it sends
//! back.
//!
//! Parsing goes field by field over raw JSON so that an error names the
//! field at fault (`records[2].seq: invalid type: string "x", expected u64`)
//! and a record's `data` is kept byte for byte as the box sent it. Unknown
//! fields are ignored: the contract adds fields, never renames them.

use std::collections::BTreeMap;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// The schema version this tool reads.
pub const VERSION: u64 = 1;

/// A JSON object whose fields are still raw.
#[derive(Debug)]
pub struct Obj<'a> {
    fields: BTreeMap<String, &'a RawValue>,
    /// Where this object is (`records[3]`), for messages; empty at the top.
    path: String,
}

impl<'a> Obj<'a> {
    /// Parses `text` as a JSON object.
    pub fn parse(text: &'a str, path: &str) -> Result<Obj<'a>, String> {
        let fields: BTreeMap<String, &'a RawValue> = serde_json::from_str(text).map_err(|e| {
            if path.is_empty() {
                format!("not a JSON object: {}", clean(&e))
            } else {
                format!("{path}: not a JSON object: {}", clean(&e))
            }
        })?;
        Ok(Obj {
            fields,
            path: path.to_string(),
        })
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A field that must be there (and not null).
    pub fn req<T: DeserializeOwned>(&self, key: &str) -> Result<T, String> {
        self.opt(key)?
            .ok_or_else(|| format!("missing field `{}`", self.name(key)))
    }

    /// A field that may be missing or null.
    pub fn opt<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.fields.get(key) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|e| format!("`{}`: {}", self.name(key), clean(&e))),
        }
    }

    /// A field holding an array, its items still raw.
    pub fn list(&self, key: &str) -> Result<Vec<&'a RawValue>, String> {
        let raw = self
            .raw(key)
            .ok_or_else(|| format!("missing field `{}`", self.name(key)))?;
        serde_json::from_str(raw.get()).map_err(|e| format!("`{}`: {}", self.name(key), clean(&e)))
    }

    /// A field's raw JSON text.
    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.get(key).copied()
    }

    /// Checks `v` is the version this tool reads.
    pub fn check_version(&self) -> Result<(), String> {
        match self.fields.get("v") {
            None => Err("missing field `v` (schema version)".into()),
            Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
                Ok(VERSION) => Ok(()),
                _ => Err(format!(
                    "unsupported schema version v={} (this tool reads v={VERSION})",
                    raw.get()
                )),
            },
        }
    }

    /// An optional string field that, when present, must equal `want`
    /// (the payload's `site` and `box` against the topic's).
    pub fn matches(&self, key: &str, want: &str) -> Result<(), String> {
        match self.opt::<String>(key)? {
            Some(got) if got != want => Err(format!(
                "`{}` is `{got}` but the topic says `{want}`",
                self.name(key)
            )),
            _ => Ok(()),
        }
    }
}

/// serde_json's message without its ` at line 1 column 9`, which points
/// into a fragment rather than the message.
fn clean(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// One record of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in its stream, from 1.
    pub seq: u64,
    /// `{epoch}/{stream}/{seq}`.
    pub id: String,
    /// When the record was written, as the box wrote it.
    pub at: Option<String>,
    /// The record's `data`, compact JSON text.
    pub data: String,
}

/// A `{b}/records/{stream}` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    /// The box's database generation.
    pub epoch: String,
    /// The stream (from the topic, checked against the payload).
    pub stream: String,
    /// The records, in the order sent.
    pub records: Vec<Record>,
}

/// Parses a records batch published on `{site}/{box}/records/{stream}`.
pub fn parse_records(
    payload: &[u8],
    site: &str,
    box_id: &str,
    stream: &str,
) -> Result<Records, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "not UTF-8".to_string())?;
    let top = Obj::parse(text, "")?;
    top.check_version()?;
    top.matches("site", site)?;
    top.matches("box", box_id)?;
    top.matches("stream", stream)?;
    let epoch: String = top.req("epoch")?;
    if epoch.is_empty()
        || epoch.contains('/')
        || epoch.len() > 128
        || epoch.contains(char::is_control)
    {
        return Err(format!(
            "`epoch` `{}` is empty, too long, or has a `/` or a control character",
            epoch.escape_debug()
        ));
    }
    let raws = top.list("records")?;
    let mut records = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let r = Obj::parse(raw.get(), &format!("records[{i}]"))?;
        let seq: u64 = r.req("seq")?;
        if seq == 0 {
            return Err(format!("`records[{i}].seq` is 0; sequences start at 1"));
        }
        if i64::try_from(seq).is_err() {
            return Err(format!("`records[{i}].seq` {seq} is too large"));
        }
        let id: String = r.req("id")?;
        let want = format!("{epoch}/{stream}/{seq}");
        if id != want {
            return Err(format!(
                "`records[{i}].id` is `{id}`, expected `{want}` (epoch/stream/seq)"
            ));
        }
        let at: Option<String> = r.opt("at")?;
        // A database refuses control characters in text: such a time is
        // no time.
        if at
            .as_deref()
            .is_some_and(|a| a.len() > 64 || a.contains(char::is_control))
        {
            return Err(format!("`records[{i}].at` is not a time"));
        }
        let data = r
            .raw("data")
            .ok_or_else(|| format!("missing field `records[{i}].data`"))?;
        records.push(Record {
            seq,
            id,
            at,
            data: compact(data),
        });
    }
    Ok(Records {
        epoch,
        stream: stream.to_string(),
        records,
    })
}

/// The raw text when it is already on one line (kept byte for byte),
/// else re-serialized compactly so an export stays one record per line.
fn compact(raw: &RawValue) -> String {
    let text = raw.get();
    if !text.contains(['\n', '\r']) {
        return text.to_string();
    }
    serde_json::from_str::<serde_json::Value>(text)
        .map_or_else(|_| text.replace(['\n', '\r'], " "), |v| v.to_string())
}

/// What a recording is, from a chunk's `meta`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// The call recorded.
    pub call_id: Option<String>,
    /// `call`, `voicemail`…
    pub kind: Option<String>,
    /// Audio format (`alaw`, `pcm16`…).
    pub format: Option<String>,
    /// The file's path on the box.
    pub file: Option<String>,
    /// Sealed with age (`.wav.age`).
    pub encrypted: bool,
}

impl Meta {
    /// As stored in `uploads.meta`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "call_id": self.call_id, "kind": self.kind, "format": self.format,
            "file": self.file, "encrypted": self.encrypted,
        })
        .to_string()
    }

    /// Back from `uploads.meta`; a damaged column reads as no meta.
    pub fn from_json(text: &str) -> Meta {
        Obj::parse(text, "meta")
            .and_then(|o| parse_meta(&o))
            .unwrap_or_default()
    }
}

fn parse_meta(o: &Obj<'_>) -> Result<Meta, String> {
    Ok(Meta {
        call_id: o.opt("call_id")?,
        kind: o.opt("kind")?,
        format: o.opt("format")?,
        file: o.opt("file")?,
        encrypted: o.opt("encrypted")?.unwrap_or(false),
    })
}

/// A `{b}/upload/{recording}` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The recording's id (topic and payload agree).
    pub id: String,
    /// Where `data` goes in the file.
    pub offset: u64,
    /// The whole file's size.
    pub size: u64,
    /// The bytes, decoded.
    pub data: Vec<u8>,
    /// The last chunk.
    pub last: bool,
    /// The whole file's SHA-256, lower-case hex (the last chunk has it).
    pub sha256: Option<String>,
    /// The recording's description, when the chunk carries it.
    pub meta: Option<Meta>,
}

/// The largest recording accepted: a WAV file is under 4 GiB (RIFF sizes
/// are 32-bit) and age adds 16 bytes per 64 KiB plus its header.
pub const MAX_RECORDING: u64 = (4 << 30) + (16 << 20);

/// Parses a recording chunk published on `{site}/{box}/upload/{id}`.
pub fn parse_chunk(payload: &[u8], site: &str, box_id: &str, id: &str) -> Result<Chunk, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "not UTF-8".to_string())?;
    let top = Obj::parse(text, "")?;
    top.check_version()?;
    top.matches("site", site)?;
    top.matches("box", box_id)?;
    let pid: String = top.req("id")?;
    if pid != id {
        return Err(format!("`id` is `{pid}` but the topic says `{id}`"));
    }
    let offset: u64 = top.req("offset")?;
    let size: u64 = top.req("size")?;
    if size > MAX_RECORDING {
        return Err(format!(
            "`size` {size} is over the {MAX_RECORDING}-byte limit for a recording"
        ));
    }
    let b64: String = top.req("data")?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("`data` is not base64: {e}"))?;
    let end = offset.checked_add(data.len() as u64);
    if end.is_none_or(|end| end > size) {
        return Err(format!(
            "chunk at offset {offset} of {} bytes ends beyond the file's size {size}",
            data.len()
        ));
    }
    let last: bool = top.opt("last")?.unwrap_or(false);
    let sha256: Option<String> = top.opt("sha256")?;
    let sha256 = match sha256 {
        Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(s.to_ascii_lowercase())
        }
        Some(s) => return Err(format!("`sha256` `{s}` is not 64 hex digits")),
        None if last => return Err("the last chunk has no `sha256`".into()),
        None => None,
    };
    if last && end != Some(size) {
        return Err(format!(
            "the last chunk ends at {}, not at the file's size {size}",
            offset + data.len() as u64
        ));
    }
    let meta = match top.raw("meta") {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(parse_meta(&Obj::parse(raw.get(), "meta")?)?),
    };
    Ok(Chunk {
        id: pid,
        offset,
        size,
        data,
        last,
        sha256,
        meta,
    })
}

/// The end-to-end ack of records: `{"v":1,"epoch","stream","seqs"}`.
pub fn records_ack(epoch: &str, stream: &str, seqs: &[u64]) -> Vec<u8> {
    serde_json::json!({"v": VERSION, "epoch": epoch, "stream": stream, "seqs": seqs})
        .to_string()
        .into_bytes()
}

/// A recording's ack: `ok:true`, or `ok:false` with the bytes held and why.
pub fn recording_ack(id: &str, result: Result<(), (u64, &str)>) -> Vec<u8> {
    match result {
        Ok(()) => serde_json::json!({"v": VERSION, "recording": id, "ok": true}),
        Err((have, error)) => serde_json::json!({
            "v": VERSION, "recording": id, "ok": false, "have": have, "error": error
        }),
    }
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &str) -> String {
        format!(
            r#"{{"v":1,"site":"s1","box":"b1","epoch":"E","stream":"cdr","records":[{records}]}}"#
        )
    }

    #[test]
    fn records_keep_data_byte_for_byte() {
        let msg = batch(r#"{"seq":1,"id":"E/cdr/1","at":"t","data":{"z":1,"a":[1, 2]}}"#);
        let r = parse_records(msg.as_bytes(), "s1", "b1", "cdr").unwrap();
        assert_eq!(r.epoch, "E");
        assert_eq!(r.records[0].data, r#"{"z":1,"a":[1, 2]}"#);
        assert_eq!(r.records[0].at.as_deref(), Some("t"));
    }

    #[test]
    fn bad_records_are_refused_naming_the_field() {
        let cases = [
            (
                batch(r#"{"seq":"x","id":"E/cdr/1","data":{}}"#),
                "records[0].seq",
            ),
            (batch(r#"{"seq":0,"id":"E/cdr/0","data":{}}"#), "start at 1"),
            (
                batch(r#"{"seq":2,"id":"E/cdr/3","data":{}}"#),
                "records[0].id",
            ),
            (batch(r#"{"seq":2,"id":"E/cdr/2"}"#), "records[0].data"),
            (batch("7"), "records[0]: not a JSON object"),
            ("{".into(), "not a JSON object"),
            (batch("").replace("\"v\":1", "\"v\":2"), "v=2"),
            (batch("").replace("\"v\":1,", ""), "missing field `v`"),
            (batch("").replace("\"b1\"", "\"b2\""), "`box` is `b2`"),
            (
                batch("").replace("\"cdr\"", "\"alarm\""),
                "`stream` is `alarm`",
            ),
            (batch("").replace("\"E\"", "5"), "`epoch`"),
            // What a database would refuse on every try.
            (
                batch("").replace("\"E\"", "\"E\\u0000\""),
                "control character",
            ),
            (
                batch(r#"{"seq":1,"id":"E/cdr/1","at":"2026\u0000","data":{}}"#),
                "records[0].at",
            ),
        ];
        for (msg, want) in cases {
            let e = parse_records(msg.as_bytes(), "s1", "b1", "cdr").unwrap_err();
            assert!(e.contains(want), "{msg}: {e} (wanted {want})");
        }
    }

    fn chunk(offset: u64, size: u64, data: &[u8], extra: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        format!(
            r#"{{"v":1,"site":"s1","box":"b1","id":"R1","offset":{offset},"size":{size},"data":"{b64}"{extra}}}"#
        )
    }

    #[test]
    fn chunks_parse_with_meta_and_checksum() {
        let sha = "AB".repeat(32);
        let msg = chunk(
            4,
            8,
            b"abcd",
            &format!(r#","last":true,"sha256":"{sha}","meta":{{"call_id":"c","encrypted":true}}"#),
        );
        let c = parse_chunk(msg.as_bytes(), "s1", "b1", "R1").unwrap();
        assert_eq!(c.data, b"abcd");
        assert!(c.last);
        assert_eq!(c.sha256, Some("ab".repeat(32)));
        let meta = c.meta.unwrap();
        assert!(meta.encrypted);
        assert_eq!(Meta::from_json(&meta.to_json()), meta);
    }

    #[test]
    fn bad_chunks_are_refused() {
        let cases = [
            (chunk(6, 8, b"abcd", ""), "beyond the file's size"),
            (chunk(u64::MAX, 8, b"abcd", ""), "beyond the file's size"),
            (
                chunk(0, 8, b"abcd", r#","last":true,"sha256":"00""#),
                "64 hex",
            ),
            (chunk(0, 8, b"abcd", r#","last":true"#), "no `sha256`"),
            (
                chunk(
                    0,
                    8,
                    b"abcd",
                    &format!(r#","last":true,"sha256":"{}""#, "0".repeat(64)),
                ),
                "not at the file's size",
            ),
            (chunk(0, MAX_RECORDING + 1, b"", ""), "limit"),
            (
                chunk(0, 8, b"", "").replace("\"data\":\"\"", "\"data\":\"!!\""),
                "base64",
            ),
            (
                chunk(0, 8, b"", "").replace("\"R1\"", "\"R2\""),
                "topic says `R1`",
            ),
            (
                chunk(0, 8, b"", r#","meta":{"encrypted":"yes"}"#),
                "meta.encrypted",
            ),
        ];
        for (msg, want) in cases {
            let e = parse_chunk(msg.as_bytes(), "s1", "b1", "R1").unwrap_err();
            assert!(e.contains(want), "{msg}: {e} (wanted {want})");
        }
    }

    #[test]
    fn acks_follow_the_contract() {
        let ack: serde_json::Value =
            serde_json::from_slice(&records_ack("E", "cdr", &[15, 16])).unwrap();
        assert_eq!(
            ack,
            serde_json::json!({"v":1,"epoch":"E","stream":"cdr","seqs":[15,16]})
        );
        let nack: serde_json::Value =
            serde_json::from_slice(&recording_ack("R", Err((0, "checksum mismatch")))).unwrap();
        assert_eq!(nack["ok"], false);
        assert_eq!(nack["have"], 0);
        assert_eq!(nack["recording"], "R");
    }
}
