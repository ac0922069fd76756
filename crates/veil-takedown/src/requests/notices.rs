//! Notices: one letter per recipient of a withdrawn release, written to the outbox, and their
//! acknowledgements.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rusqlite::params;
use serde_json::json;

use super::*;

impl Ledger {
    /// Writes one notice (text and JSON) per recipient of a release the request withdrew, into
    /// `outbox/<id>/`. Recipients already notified for this request are skipped.
    pub fn notify(&mut self, id: &str, outbox: &Path) -> Result<Vec<Notice>, LedgerError> {
        let req = self.request(id)?;
        Self::require_state(
            &req,
            &[Status::Applied, Status::Notified],
            "notify (apply first)",
        )?;
        let withdrawn: Vec<ReleaseRowLite> = {
            let mut stmt = self.conn.prepare(
                "SELECT version, merkle_root FROM releases WHERE dataset = ?1 AND status_request = ?2",
            )?;
            let rows = stmt.query_map(params![req.dataset, id], |r| {
                Ok(ReleaseRowLite { version: r.get(0)? })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let current = self
            .releases(&req.dataset)?
            .into_iter()
            .find(|r| r.status == "current");
        let tombs = self.tombstones(id)?;
        let versions: BTreeSet<&str> = withdrawn.iter().map(|r| r.version.as_str()).collect();
        let mut groups: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
        for r in self.recipients(Some(&req.dataset))? {
            if versions.contains(r.version.as_str()) {
                groups
                    .entry((r.name, r.contact))
                    .or_default()
                    .push((r.version, r.received_at));
            }
        }
        let done: BTreeSet<(String, String)> = self
            .notices(id)?
            .into_iter()
            .map(|n| (n.name, n.contact))
            .collect();
        let dir = outbox.join(id);
        std::fs::create_dir_all(&dir).map_err(|e| LedgerError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let now = veil_core::now_rfc3339();
        // The chain head of the withdrawal, so a recipient can check it against the ledger
        // (`veil ledger verify --head`); signed when the ledger has a signing key.
        let head = self.applied_head(id)?;
        let signer = self.signer()?;
        let mut files = Vec::new();
        let mut letters = Vec::new();
        let ledger_dir = self.dir();
        let mut seq = done.len();
        for ((name, contact), got) in &groups {
            if done.contains(&(name.clone(), contact.clone())) {
                continue;
            }
            let releases: Vec<String> = got
                .iter()
                .map(|(v, _)| format!("{}@{v}", req.dataset))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // The withdrawn items of the releases this recipient received, with those releases'
            // bytes (the same bytes once, however many of them held it).
            let mut seen = BTreeSet::new();
            let items: Vec<&TombstoneRow> = tombs
                .iter()
                .filter(|t| got.iter().any(|(v, _)| *v == t.version))
                .filter(|t| seen.insert((t.path.as_str(), t.blake3.as_str())))
                .collect();
            let body = json!({
                "schema": 1,
                "kind": "veil.takedown.notice",
                "request": id,
                "dataset": req.dataset,
                "whole_dataset": req.whole_dataset,
                "recipient": {"name": name, "contact": contact},
                "releases_received": got.iter().map(|(v, at)| json!({"release": format!("{}@{v}", req.dataset), "received_at": at})).collect::<Vec<_>>(),
                "withdrawn": items.iter().map(|t| json!({"path": t.path, "blake3": t.blake3, "size": t.size})).collect::<Vec<_>>(),
                "current_release": current.as_ref().map(|c| json!({"release": format!("{}@{}", c.dataset, c.version), "merkle_root": c.merkle_root})),
                "written_at": now,
                "ledger_head": head.as_ref().map(crate::anchors::Head::to_json),
            });
            let mut body = body;
            if let Some(k) = &signer {
                k.sign(&mut body);
            }
            let mut json_bytes = serde_json::to_vec_pretty(&body).expect("notice serialises");
            json_bytes.push(b'\n');
            let mut text = notice_text(
                &req,
                name,
                contact,
                &releases,
                &items,
                current.as_ref(),
                &now,
            );
            if let Some(h) = &head {
                text.push_str(&format!("\nLedger head of the withdrawal: {h}"));
                if let Some(k) = &signer {
                    text.push_str(&format!(
                        " (the JSON notice is signed with Ed25519 key {})",
                        k.public_hex()
                    ));
                }
                text.push('\n');
            }
            let mut vars = crate::letters::request_vars(&req);
            vars.insert("recipient", name.clone());
            vars.insert("releases", releases.join(", "));
            vars.insert(
                "withdrawn",
                crate::letters::withdrawn_lines(
                    items.iter().map(|t| (t.path.as_str(), t.blake3.as_str())),
                ),
            );
            vars.insert("withdrawn_count", items.len().to_string());
            vars.insert(
                "new_release",
                current
                    .as_ref()
                    .map_or("none (the dataset is withdrawn)".into(), |c| {
                        format!("{}@{}", c.dataset, c.version)
                    }),
            );
            if let Some(h) = &head {
                vars.insert("ledger_head", h.to_string());
            }
            letters.push((name.clone(), contact.clone(), vars));
            // Numbered after every notice of the request so far (earlier runs included), and
            // never a name already in the outbox: an earlier notice is never overwritten.
            let stem = loop {
                seq += 1;
                let stem = format!("{seq:03}-{}", slug(name));
                let taken = ["txt", "json"]
                    .iter()
                    .any(|x| std::fs::symlink_metadata(dir.join(format!("{stem}.{x}"))).is_ok());
                if !taken {
                    break stem;
                }
            };
            let json_path = dir.join(format!("{stem}.json"));
            write_file_atomic(&dir.join(format!("{stem}.txt")), text.as_bytes())?;
            write_file_atomic(&json_path, &json_bytes)?;
            files.push((
                name.clone(),
                contact.clone(),
                releases,
                json_path,
                blake3::hash(&json_bytes).to_hex().to_string(),
            ));
        }
        self.write(|w| {
            // The status first, so that its change is recorded by the notice events that follow
            // (with no notice to write, by an event of its own).
            set_status(w, id, Status::Notified)?;
            for (name, contact, vars) in &letters {
                crate::letters::queue(
                    w,
                    &ledger_dir,
                    crate::letters::NewLetter {
                        request: id,
                        template: "notice",
                        kind: "notice",
                        event: "notice",
                        to_name: name,
                        to_addr: contact,
                        // Recipients are addressed in the request's language too.
                        language: req.language.as_deref().unwrap_or("en"),
                        vars: vars.clone(),
                    },
                )?;
            }
            for (name, contact, releases, file, hash) in &files {
                w.tx.execute(
                    "INSERT INTO notices (request, name, contact, releases, file, blake3, written_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id,
                        name,
                        contact,
                        serde_json::to_string(releases).expect("strings serialise"),
                        file.display().to_string(),
                        hash,
                        w.now
                    ],
                )?;
                w.event(
                    "notice.written",
                    json!({"id": id, "name": name, "contact": contact, "releases": releases,
                           "file": file.display().to_string(), "blake3": hash}),
                )?;
            }
            Ok(())
        })?;
        let written: BTreeSet<String> = files.iter().map(|f| f.3.display().to_string()).collect();
        Ok(self
            .notices(id)?
            .into_iter()
            .filter(|n| written.contains(&n.file))
            .collect())
    }

    /// Notices of a request.
    pub fn notices(&self, id: &str) -> Result<Vec<Notice>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, request, name, contact, releases, file, blake3, written_at, ack_at, ack_note
             FROM notices WHERE request = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |r| {
            let releases: String = r.get(4)?;
            Ok(Notice {
                id: r.get(0)?,
                request: r.get(1)?,
                name: r.get(2)?,
                contact: r.get(3)?,
                releases: serde_json::from_str(&releases).unwrap_or_default(),
                file: r.get(5)?,
                blake3: r.get(6)?,
                written_at: r.get(7)?,
                ack_at: r.get(8)?,
                ack_note: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a recipient's reply; `who` is the recipient's name or contact.
    ///
    /// With `eml`, the raw reply: its blake3 is kept (the message itself is not).
    pub fn ack(
        &mut self,
        id: &str,
        who: &str,
        note: &str,
        eml: Option<&[u8]>,
    ) -> Result<usize, LedgerError> {
        self.request(id)?;
        let eml_blake3 = eml.map(|b| blake3::hash(b).to_hex().to_string());
        let n = self.write(|w| {
            let n = w.tx.execute(
                "UPDATE notices SET ack_at = ?3, ack_note = ?4, ack_eml_blake3 = ?5
                 WHERE request = ?1 AND (name = ?2 OR contact = ?2)",
                params![id, who, w.now, note, eml_blake3],
            )?;
            if n > 0 {
                w.event(
                    "notice.acknowledged",
                    json!({"id": id, "who": who, "note": note, "eml_blake3": eml_blake3}),
                )?;
            }
            Ok(n)
        })?;
        if n == 0 {
            return Err(LedgerError::Invalid(format!(
                "no notice of {id} was sent to {who:?} (give the recipient's name or contact)"
            )));
        }
        Ok(n)
    }
}

#[derive(Debug)]
struct ReleaseRowLite {
    version: String,
}

fn notice_text(
    req: &Request,
    name: &str,
    contact: &str,
    releases: &[String],
    items: &[&TombstoneRow],
    current: Option<&crate::ReleaseRow>,
    now: &str,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Subject: data withdrawn from dataset {:?} ({})\n",
        req.dataset, req.id
    );
    let _ = writeln!(
        s,
        "To: {} <{}>\n",
        name.escape_debug(),
        contact.escape_debug()
    );
    let _ = writeln!(
        s,
        "You obtained {} of dataset {:?}.",
        releases.join(", "),
        req.dataset
    );
    if req.whole_dataset {
        let _ = writeln!(
            s,
            "The whole dataset has been withdrawn. Please delete every copy you hold, including\n\
             copies shared within your organisation and data derived from it, and stop using it."
        );
    } else {
        let _ = writeln!(
            s,
            "The items below have been withdrawn because they may infringe someone's rights.\n\
             Please delete every copy of them you hold, including copies shared within your\n\
             organisation and data derived from them, and stop using them."
        );
    }
    let _ = writeln!(
        s,
        "\nWithdrawn items ({}), path and blake3 of the file you received:",
        items.len()
    );
    for t in items {
        let _ = writeln!(s, "  {}  {}", t.blake3, t.path.escape_debug());
    }
    if let Some(c) = current {
        let _ = writeln!(
            s,
            "\nThe current release is {}@{} (Merkle root {}). Check a copy with:\n  veil release verify DIR --release {}@{}",
            c.dataset, c.version, c.merkle_root, c.dataset, c.version
        );
    }
    let _ = writeln!(
        s,
        "\nPlease confirm the deletion by replying to this notice, quoting {}.\nWritten {now}.",
        req.id
    );
    s
}

fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(40);
    let t = out.trim_matches('-').to_string();
    if t.is_empty() {
        "recipient".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(slug("ACME Labs / Research"), "acme-labs---research");
        assert_eq!(slug("../../etc"), "etc");
        assert_eq!(slug("北京"), "recipient");
    }
}
