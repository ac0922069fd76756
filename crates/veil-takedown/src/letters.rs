//! Letters: the requester's acknowledgement (when a request is opened) and answer (when it is
//! applied or rejected), and one notice per recipient of a withdrawn release. Each is rendered
//! once from a template, stored in the `letters` table with its blake3 and a Message-ID, and
//! sent later ([`crate::smtp`]) or handed over by other means.
//!
//! **Templates.** Built in for English (`en`) and Simplified Chinese (`zh`); a maintainer
//! overrides one with `templates/NAME.LANG.txt` beside the ledger (and optionally
//! `NAME.LANG.html` for an HTML part). NAME is `acknowledgement`, `applied`, `rejected` or
//! `notice`. The first line of a text template is `Subject: ...`, then a blank line, then the
//! body. Placeholders are `{{name}}` ([`PLACEHOLDERS`]); an unknown one is an error naming it.
//!
//! **Hash.** `blake3` of `subject || "\n\n" || text`, followed by `"\n\n--html--\n" || html` when
//! there is an HTML part.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use serde_json::json;

use crate::store::{Ledger, Writer};
use crate::LedgerError;

/// Languages with built-in templates.
pub const LANGUAGES: &[&str] = &["en", "zh"];

/// Every placeholder a template may use, by template: (name, meaning).
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("request", "the request id (TD-YYYY-NNNN)"),
    ("requester", "the requester's name"),
    ("dataset", "the dataset's name"),
    ("received", "when the request was received (RFC 3339)"),
    ("due", "the last day on time (YYYY-MM-DD)"),
    ("scope", "what was asked, one line per path, hash or photo"),
    (
        "withdrawn",
        "the withdrawn files, one line each: path and blake3",
    ),
    ("withdrawn_count", "how many files were withdrawn"),
    (
        "releases",
        "the releases withdrawn (NAME@V, comma-separated)",
    ),
    (
        "new_release",
        "the release cut without them (NAME@V), or `none`",
    ),
    ("verify", "how to check the new release"),
    ("reason", "why the request was rejected"),
    ("recipient", "the notice's recipient"),
    ("ledger_head", "the chain head of the withdrawal (N:HASH)"),
];

const BUILT_IN: &[(&str, &str, &str)] = &[
    (
        "acknowledgement",
        "en",
        "Subject: [{{request}}] We received your takedown request\n\nDear {{requester}},\n\nwe received your request {{request}} about the dataset {{dataset}} on {{received}}.\nYou asked us to remove:\n{{scope}}\n\nWe will answer by {{due}} at the latest. Please quote {{request}} in any reply.\nLedger head: {{ledger_head}}\n",
    ),
    (
        "acknowledgement",
        "zh",
        "Subject: [{{request}}] 我们已收到您的删除请求\n\n{{requester}} 您好：\n\n我们已于 {{received}} 收到您关于数据集 {{dataset}} 的请求 {{request}}。\n您要求删除：\n{{scope}}\n\n我们将在 {{due}} 之前答复。回复时请注明 {{request}}。\n账本头：{{ledger_head}}\n",
    ),
    (
        "applied",
        "en",
        "Subject: [{{request}}] Your takedown request was carried out\n\nDear {{requester}},\n\nwe withdrew {{withdrawn_count}} files from the dataset {{dataset}} (releases {{releases}}):\n{{withdrawn}}\n\nThe new release is {{new_release}}. {{verify}}\nEveryone who obtained a withdrawn release is being told to delete it.\nLedger head of the withdrawal: {{ledger_head}}\n",
    ),
    (
        "applied",
        "zh",
        "Subject: [{{request}}] 您的删除请求已执行\n\n{{requester}} 您好：\n\n我们已从数据集 {{dataset}}（版本 {{releases}}）中撤下 {{withdrawn_count}} 个文件：\n{{withdrawn}}\n\n新版本为 {{new_release}}。{{verify}}\n我们正在通知所有获取过被撤回版本的接收方删除相关数据。\n撤回记录的账本头：{{ledger_head}}\n",
    ),
    (
        "rejected",
        "en",
        "Subject: [{{request}}] Your takedown request\n\nDear {{requester}},\n\nafter review we did not withdraw anything from the dataset {{dataset}} for request {{request}}:\n{{reason}}\n\nYou may reply to this message quoting {{request}}.\nLedger head: {{ledger_head}}\n",
    ),
    (
        "rejected",
        "zh",
        "Subject: [{{request}}] 关于您的删除请求\n\n{{requester}} 您好：\n\n经审核，我们未因请求 {{request}} 从数据集 {{dataset}} 中撤下任何内容：\n{{reason}}\n\n如有异议，请回复本邮件并注明 {{request}}。\n账本头：{{ledger_head}}\n",
    ),
    (
        "notice",
        "en",
        "Subject: [{{request}}] Please delete withdrawn files of {{dataset}}\n\nDear {{recipient}},\n\nyou obtained {{releases}}. The following files were withdrawn (request {{request}}):\n{{withdrawn}}\n\nPlease delete them and every copy, switch to {{new_release}}, and confirm by replying quoting {{request}}.\nLedger head of the withdrawal: {{ledger_head}}\n",
    ),
    (
        "notice",
        "zh",
        "Subject: [{{request}}] 请删除数据集 {{dataset}} 中已撤回的文件\n\n{{recipient}} 您好：\n\n您获取过 {{releases}}。以下文件已被撤回（请求 {{request}}）：\n{{withdrawn}}\n\n请删除这些文件及其所有副本，改用 {{new_release}}，并回复本邮件（注明 {{request}}）确认。\n撤回记录的账本头：{{ledger_head}}\n",
    ),
];

/// A letter as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Letter {
    pub id: i64,
    pub request: String,
    pub kind: String,
    pub event: String,
    pub to_name: String,
    pub to_addr: String,
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub blake3: String,
    pub message_id: String,
    pub created_at: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
    pub server_reply: Option<String>,
    pub handed_by: Option<String>,
}

pub(crate) const LETTER_COLUMNS: &str = "id, request, kind, event, to_name, to_addr, language, \
     subject, text, html, blake3, message_id, created_at, status, attempts, next_attempt_at, \
     last_error, sent_at, server_reply, handed_by";

pub(crate) fn letter_from_row(r: &Row<'_>) -> rusqlite::Result<Letter> {
    Ok(Letter {
        id: r.get(0)?,
        request: r.get(1)?,
        kind: r.get(2)?,
        event: r.get(3)?,
        to_name: r.get(4)?,
        to_addr: r.get(5)?,
        language: r.get(6)?,
        subject: r.get(7)?,
        text: r.get(8)?,
        html: r.get(9)?,
        blake3: r.get(10)?,
        message_id: r.get(11)?,
        created_at: r.get(12)?,
        status: r.get(13)?,
        attempts: r.get(14)?,
        next_attempt_at: r.get(15)?,
        last_error: r.get(16)?,
        sent_at: r.get(17)?,
        server_reply: r.get(18)?,
        handed_by: r.get(19)?,
    })
}

/// Checks a request's language.
pub fn check_language(lang: &str) -> Result<(), LedgerError> {
    if LANGUAGES.contains(&lang) {
        Ok(())
    } else {
        Err(LedgerError::Invalid(format!(
            "language {lang:?} has no letters (built in: {}; templates can be overridden, not added)",
            LANGUAGES.join(", ")
        )))
    }
}

/// The template `name` in `lang`: the maintainer's file under `dir` if there is one, else the
/// built-in one. Returns the text template and the HTML one, if any.
fn template(dir: &Path, name: &str, lang: &str) -> Result<(String, Option<String>), LedgerError> {
    let read = |p: &Path| -> Result<Option<String>, LedgerError> {
        match std::fs::read_to_string(p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LedgerError::Io {
                path: p.to_path_buf(),
                source: e,
            }),
        }
    };
    let text = match read(&dir.join(format!("{name}.{lang}.txt")))? {
        Some(t) => t,
        None => BUILT_IN
            .iter()
            .find(|(n, l, _)| *n == name && *l == lang)
            .map(|(_, _, t)| t.to_string())
            .ok_or_else(|| LedgerError::Invalid(format!("no template {name}.{lang}")))?,
    };
    let html = read(&dir.join(format!("{name}.{lang}.html")))?;
    Ok((text, html))
}

/// Fills `{{name}}` placeholders from `vars`; an unknown name is an error naming it.
pub fn fill(
    template: &str,
    vars: &BTreeMap<&str, String>,
    escape_html: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` is not closed by `}}`".to_string())?;
        let name = after[..end].trim();
        let value = vars.get(name).ok_or_else(|| {
            format!(
                "unknown placeholder {{{{{name}}}}} (known: {})",
                PLACEHOLDERS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if escape_html {
            out.push_str(
                &value
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;"),
            );
        } else {
            out.push_str(value);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The letter's blake3 (see the module documentation).
pub fn letter_blake3(subject: &str, text: &str, html: Option<&str>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(subject.as_bytes());
    h.update(b"\n\n");
    h.update(text.as_bytes());
    if let Some(html) = html {
        h.update(b"\n\n--html--\n");
        h.update(html.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// What a new letter is: its template, what it answers, to whom, and the placeholders' values.
pub(crate) struct NewLetter<'a> {
    pub request: &'a str,
    pub template: &'a str,
    pub kind: &'a str,
    pub event: &'a str,
    pub to_name: &'a str,
    pub to_addr: &'a str,
    pub language: &'a str,
    pub vars: BTreeMap<&'static str, String>,
}

/// Renders and stores a letter (once: a letter for the same request, kind, event and address is
/// not made again), with an event. An address that is not an e-mail address gives a letter of
/// status `unaddressable`, kept for the maintainer to send by other means.
pub(crate) fn queue(
    w: &Writer<'_>,
    ledger_dir: &Path,
    new: NewLetter<'_>,
) -> Result<(), LedgerError> {
    let exists: Option<i64> = w
        .tx
        .query_row(
            "SELECT id FROM letters WHERE request = ?1 AND kind = ?2 AND event = ?3 AND to_addr = ?4",
            params![new.request, new.kind, new.event, new.to_addr],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Ok(());
    }
    let dir = ledger_dir.join("templates");
    let (text_tpl, html_tpl) = template(&dir, new.template, new.language)?;
    let mut new = new;
    if new.vars.get("ledger_head").is_none_or(|h| h == "-") {
        // The head of what the letter follows from (the event just written).
        let head: Option<(i64, String)> =
            w.tx.query_row(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((n, h)) = head {
            new.vars.insert("ledger_head", format!("{n}:{h}"));
        }
    }
    let bad = |e: String| {
        LedgerError::Invalid(format!("template {}.{}: {e}", new.template, new.language))
    };
    let filled = fill(&text_tpl, &new.vars, false).map_err(bad)?;
    let (subject, text) = match filled.split_once('\n') {
        Some((first, body)) if first.starts_with("Subject:") => (
            first["Subject:".len()..].trim().to_string(),
            body.trim_start_matches('\n').to_string(),
        ),
        _ => {
            return Err(bad(
                "the first line must be `Subject: ...`, then a blank line, then the body".into(),
            ))
        }
    };
    let html = html_tpl
        .map(|h| fill(&h, &new.vars, true))
        .transpose()
        .map_err(bad)?;
    let hash = letter_blake3(&subject, &text, html.as_deref());
    let domain: String =
        w.tx.query_row(
            "SELECT value FROM settings WHERE key = 'smtp_from'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .or_else(|| std::env::var("VEIL_SMTP_FROM").ok())
        .and_then(|f| {
            f.rsplit_once('@')
                .map(|(_, d)| d.trim_end_matches('>').to_string())
        })
        .unwrap_or_else(|| "veil.localhost".into());
    let key = blake3::hash(
        format!(
            "{}\n{}\n{}\n{}",
            new.request, new.kind, new.event, new.to_addr
        )
        .as_bytes(),
    )
    .to_hex();
    let message_id = format!("<veil.{}.{}@{domain}>", new.request, &key[..24]);
    let (status, error) = match lettre::Address::from_str(new.to_addr.trim()) {
        Ok(_) => ("pending", None),
        Err(e) => (
            "unaddressable",
            Some(format!(
                "{:?} is not an e-mail address ({e}): send it by other means",
                new.to_addr
            )),
        ),
    };
    w.tx.execute(
        "INSERT INTO letters (request, kind, event, to_name, to_addr, language, subject, text, html,
             blake3, message_id, created_at, status, last_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            new.request,
            new.kind,
            new.event,
            new.to_name,
            new.to_addr,
            new.language,
            subject,
            text,
            html,
            hash,
            message_id,
            w.now,
            status,
            error
        ],
    )?;
    w.event(
        "letter.written",
        json!({"request": new.request, "kind": new.kind, "event": new.event, "to": new.to_addr,
               "language": new.language, "blake3": hash, "message_id": message_id, "status": status}),
    )
}

/// Every placeholder, empty (`-`): a template may use any of them.
pub(crate) fn vars() -> BTreeMap<&'static str, String> {
    PLACEHOLDERS
        .iter()
        .map(|(n, _)| (*n, "-".to_string()))
        .collect()
}

/// [`vars`] with the request's own values.
pub(crate) fn request_vars(req: &crate::Request) -> BTreeMap<&'static str, String> {
    let mut v = vars();
    v.insert("request", req.id.clone());
    v.insert("requester", req.requester.clone());
    v.insert("dataset", req.dataset.clone());
    v.insert("received", req.received_at.clone());
    v.insert("due", req.due.clone());
    v.insert("scope", scope_lines(&req.scope, req.whole_dataset));
    v
}

/// What a request asks, one line each.
pub(crate) fn scope_lines(scope: &crate::Scope, whole: bool) -> String {
    let mut lines = Vec::new();
    if whole {
        lines.push("- the whole dataset".to_string());
    }
    lines.extend(scope.paths.iter().map(|p| format!("- {p}")));
    lines.extend(
        scope
            .blake3
            .iter()
            .map(|h| format!("- the file with blake3 {h}")),
    );
    lines.extend(
        scope
            .photos
            .iter()
            .map(|p| format!("- the person in your photo (blake3 {})", p.blake3)),
    );
    lines.join("\n")
}

/// The withdrawn files, one line each.
pub(crate) fn withdrawn_lines<'a>(items: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    items
        .map(|(path, hash)| format!("- {path} (blake3 {hash})"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Ledger {
    /// Letters, of one request or all, oldest first.
    pub fn letters(&self, request: Option<&str>) -> Result<Vec<Letter>, LedgerError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {LETTER_COLUMNS} FROM letters WHERE ?1 IS NULL OR request = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([request], letter_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Letters not delivered: failed, uncertain, without an e-mail address, or still pending.
    pub fn undelivered_letters(&self) -> Result<Vec<Letter>, LedgerError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {LETTER_COLUMNS} FROM letters
             WHERE status IN ('pending', 'sending', 'failed', 'uncertain', 'unaddressable') ORDER BY id"
        ))?;
        let rows = stmt.query_map([], letter_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Notices whose recipient has not confirmed `working_days` working days (weekends and the
    /// holidays of the request's deadline policy skipped) after they were written:
    /// `(request, name, contact, written_at)`.
    pub fn unconfirmed_notices(
        &self,
        today: veil_core::Date,
        working_days: u32,
    ) -> Result<Vec<(String, String, String, String)>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT request, name, contact, written_at FROM notices WHERE ack_at IS NULL ORDER BY id",
        )?;
        let rows: Vec<(String, String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let policy = crate::DuePolicy::WorkingDays(working_days);
        let holidays: std::collections::BTreeMap<String, Option<String>> = self
            .policies()?
            .into_iter()
            .map(|(name, _, h)| (name, h))
            .collect();
        let mut calendars: std::collections::BTreeMap<String, crate::Calendar> =
            std::collections::BTreeMap::new();
        let mut out = Vec::new();
        for row in rows {
            let Ok(written) = veil_core::Date::parse(&row.3) else {
                continue;
            };
            // A request records its policy as `NAME (DESCRIPTION)`.
            let recorded = self.request(&row.0)?.policy;
            let name = holidays
                .keys()
                .filter(|n| recorded.starts_with(&format!("{n} (")))
                .max_by_key(|n| n.len())
                .cloned()
                .unwrap_or_default();
            if !calendars.contains_key(&name) {
                let file = holidays.get(&name).cloned().flatten();
                calendars.insert(name.clone(), self.calendar(file.as_deref())?.0);
            }
            if policy.due(written, &calendars[&name]) < today {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// The lock that makes `send` one sender at a time for this ledger (released when dropped):
    /// a file beside the ledger, `.NAME.send-lock`.
    pub(crate) fn sender_lock(&self) -> Result<std::fs::File, LedgerError> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = self.dir().join(format!(".{name}.send-lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LedgerError::Io {
                path: path.clone(),
                source: e,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Invalid(
                "another `veil takedown send` is delivering this ledger's letters: wait for it \
                 to finish, then run again (two at once would send letters twice)"
                    .into(),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(LedgerError::Io { path, source: e }),
        }
    }

    /// The directory holding the ledger (templates and the outbox live beside it).
    pub(crate) fn dir(&self) -> std::path::PathBuf {
        self.path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_and_unknown_ones_are_named() {
        let mut v = BTreeMap::new();
        v.insert("request", "TD-1".to_string());
        v.insert("requester", "<Jane>".to_string());
        assert_eq!(
            fill("a {{request}} b {{ requester }}", &v, false).unwrap(),
            "a TD-1 b <Jane>"
        );
        assert_eq!(fill("{{requester}}", &v, true).unwrap(), "&lt;Jane&gt;");
        let e = fill("{{nope}}", &v, false).unwrap_err();
        assert!(e.contains("{{nope}}") && e.contains("request"), "{e}");
        assert!(fill("{{request", &v, false).is_err());
    }

    #[test]
    fn every_built_in_template_uses_known_placeholders_only() {
        let vars: BTreeMap<&str, String> = PLACEHOLDERS
            .iter()
            .map(|(n, _)| (*n, "x".to_string()))
            .collect();
        for (name, lang, text) in BUILT_IN {
            let filled = fill(text, &vars, false).unwrap();
            assert!(filled.starts_with("Subject: "), "{name}.{lang}");
        }
        for name in ["acknowledgement", "applied", "rejected", "notice"] {
            for lang in LANGUAGES {
                assert!(
                    BUILT_IN.iter().any(|(n, l, _)| n == &name && l == lang),
                    "{name}.{lang}"
                );
            }
        }
    }
}
