//! `callbox-hq campaign`: pushes a campaign (definition and contact list)
//! to a box with `campaign.push`, in chunks of whole lines, resuming
//! where an earlier push stopped; pauses, resumes, stops it and shows how
//! it is doing with `campaign` (docs/mqtt.md, "Commands").

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cmd::{Answer, Target, check, command_payload, print, request};
use crate::mqtt::Broker;

/// Tries per chunk before the push gives up (it resumes when run again).
const TRIES: u32 = 3;

/// The upload id the box checks: SHA-256 of the definition, a line `--`
/// and the list.
pub fn upload_id(definition: &str, list: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(definition.as_bytes());
    h.update(b"\n--\n");
    h.update(list);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `list` cut into chunks of whole lines, each at most `max` bytes (a
/// longer line is a chunk of its own).
pub fn chunks(list: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for line in list.split_inclusive('\n') {
        if end > start && end - start + line.len() > max {
            out.push(&list[start..end]);
            start = end;
        }
        end += line.len();
    }
    if end > start {
        out.push(&list[start..end]);
    }
    out
}

/// The request id for message `n` of a push: `--id` with the number, or
/// a fresh one.
fn target_for(t: &Target, n: usize) -> Target {
    Target {
        id: t.id.as_ref().map(|id| format!("{id}-{n}")),
        ..t.clone()
    }
}

/// `campaign push`.
pub async fn push(
    broker: &Broker,
    t: &Target,
    name: &str,
    definition: &Path,
    list: &Path,
    chunk_bytes: usize,
) -> Result<ExitCode> {
    check(t)?;
    let def = std::fs::read_to_string(definition)
        .with_context(|| format!("{}: cannot read it", definition.display()))?;
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("{}: cannot read it (a UTF-8 text file)", list.display()))?;
    if text.is_empty() {
        bail!("{}: the list is empty", list.display());
    }
    let format = if list.extension().is_some_and(|e| e == "jsonl") {
        "jsonl"
    } else {
        "csv"
    };
    let upload = upload_id(&def, text.as_bytes());
    let parts = chunks(&text, chunk_bytes.max(1024));
    let base = json!({
        "name": name,
        "upload": upload,
        "chunks": parts.len(),
        "definition": def,
        "format": format,
    });
    let mut sent = 0;
    let mut ask = |args: Value| {
        sent += 1;
        let t = target_for(t, sent);
        let payload = command_payload("campaign.push", &t.box_id, args);
        async move {
            for _ in 0..TRIES {
                match request(broker, &t, payload.clone()).await? {
                    Answer::Timeout => continue,
                    a => return Ok::<_, anyhow::Error>((t, a)),
                }
            }
            Ok((t, Answer::Timeout))
        }
    };
    // Once something was sent, a failure is "no answer" (2), not a bad
    // invocation: the push resumes when run again.
    let lost = |e: anyhow::Error| {
        eprintln!("callbox-hq: {e:#}; run the push again to resume it");
        ExitCode::from(2)
    };
    // Which chunks the box still needs (all, or what an earlier push left).
    let (mut at, mut answer) = match ask(base.clone()).await {
        Ok(a) => a,
        Err(e) => return Ok(lost(e)),
    };
    loop {
        let Answer::Reply { value: Some(v), .. } = &answer else {
            return Ok(print(&at, &answer));
        };
        if v["ok"] != true || v["result"]["complete"] == true {
            return Ok(print(&at, &answer));
        }
        let missing: Vec<u64> = v["result"]["missing"]
            .as_array()
            .map(|m| m.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if missing.is_empty() {
            eprintln!("callbox-hq: the box reports the push incomplete with no chunk missing");
            print(&at, &answer);
            return Ok(ExitCode::from(1));
        }
        for k in missing {
            let Some(part) = parts.get(k as usize) else {
                eprintln!("callbox-hq: the box asks for chunk {k} of {}", parts.len());
                return Ok(ExitCode::from(1));
            };
            let mut args = base.clone();
            args["chunk"] = json!(k);
            args["data"] = json!(part);
            (at, answer) = match ask(args).await {
                Ok(a) => a,
                Err(e) => return Ok(lost(e)),
            };
            eprintln!("callbox-hq: chunk {} of {} sent", k + 1, parts.len());
            match &answer {
                Answer::Reply { value: Some(v), .. }
                    if v["ok"] == true && v["result"]["complete"] != true => {}
                _ => break,
            }
        }
    }
}

/// `campaign status|pause|resume|stop`.
pub async fn control(
    broker: &Broker,
    t: &Target,
    name: &str,
    action: Option<&str>,
) -> Result<ExitCode> {
    check(t)?;
    let mut args = json!({"name": name});
    if let Some(a) = action {
        args["action"] = json!(a);
    }
    let answer = request(broker, t, command_payload("campaign", &t.box_id, args)).await?;
    Ok(print(t, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_cut_at_line_ends() {
        let list = "number\n1\n22\n333\n";
        assert_eq!(chunks(list, 9), ["number\n1\n", "22\n333\n"]);
        assert_eq!(chunks(list, 3), ["number\n", "1\n", "22\n", "333\n"]);
        assert_eq!(chunks("a\nb", 100), ["a\nb"]);
        assert_eq!(chunks(list, 100).concat(), list);
    }

    #[test]
    fn the_upload_id_is_the_boxes() {
        // SHA-256 of the definition, "\n--\n" and the list, as the box
        // hashes them (firmware/src/calls/campaign/pushed.rs).
        assert_eq!(
            upload_id("number = \"1\"\n", b"number\n1\n"),
            "c2d7f7ff49492ad4f35fe763367b0c7b5a5f9097c2448756788b10b7cfcfab78"
        );
    }
}
