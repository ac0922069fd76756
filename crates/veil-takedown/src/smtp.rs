//! Sending letters over SMTP with `lettre`, every attempt recorded in the ledger.
//!
//! The server is `VEIL_SMTP_URL` in lettre's URL form (`smtps://user@host`,
//! `smtp://user@host:587?tls=required`; plain `smtp://127.0.0.1:2525` for local relays and tests),
//! the sender `VEIL_SMTP_FROM`, Reply-To `VEIL_SMTP_REPLY_TO`; each can instead be a ledger setting
//! (`smtp_url`, `smtp_from`, `reply_to`; the environment wins). The password is
//! `VEIL_SMTP_PASSWORD`, or the file named by `VEIL_SMTP_PASSWORD_FILE` or the setting
//! `smtp_password_file`, which must not be readable by group or others; it is never a flag,
//! never stored in the ledger and never printed.
//!
//! **Once only.** Before a letter is handed to the server its status becomes `sending` (committed,
//! with an event); after the server's answer it becomes `sent` (with the Message-ID and the
//! server's reply) or `failed` (with the error, retried by a later `send` after a backoff of
//! 1 min, 5 min, 30 min, 2 h, then 12 h). A letter found in `sending` was interrupted between
//! delivery and record: the server may have it, so it becomes `uncertain` and is not sent again
//! unless the maintainer asks (`send --resend-uncertain`, same Message-ID, so receivers can drop
//! a duplicate).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::json;

use crate::letters::{letter_from_row, Letter, LETTER_COLUMNS};
use crate::store::Ledger;
use crate::LedgerError;

/// Where and as whom letters are sent.
#[derive(Clone)]
pub struct SmtpConfig {
    pub url: String,
    pub from: String,
    pub reply_to: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("url", &self.url)
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// How `send` treats the letters.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Print what would go; change nothing.
    pub dry_run: bool,
    /// Mark the letters handed over by other means, by this person (and write them as `.eml`
    /// into the outbox); nothing is sent.
    pub outbox_only: Option<String>,
    /// Send letters whose delivery is uncertain again (same Message-ID).
    pub resend_uncertain: bool,
    /// Only this request's letters.
    pub request: Option<String>,
}

/// What `send` did, letter by letter: `(letter id, address, detail)`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SendReport {
    pub sent: Vec<(i64, String, String)>,
    pub failed: Vec<(i64, String, String)>,
    pub would_send: Vec<(i64, String, String)>,
    pub handed: Vec<(i64, String, String)>,
    pub uncertain: Vec<(i64, String, String)>,
    pub waiting: Vec<(i64, String, String)>,
    pub unaddressable: Vec<(i64, String, String)>,
}

/// Backoff before the next attempt after `attempts` failures.
pub fn backoff(attempts: i64) -> Duration {
    Duration::from_secs(match attempts {
        ..=1 => 60,
        2 => 300,
        3 => 1800,
        4 => 7200,
        _ => 43_200,
    })
}

fn setting(ledger: &Ledger, key: &str) -> Result<Option<String>, LedgerError> {
    Ok(ledger
        .conn
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Keys `veil ledger set` accepts.
pub const SETTINGS: &[&str] = &["smtp_url", "smtp_from", "reply_to", "smtp_password_file"];

impl Ledger {
    /// Stores a setting (one of [`SETTINGS`]).
    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<(), LedgerError> {
        if !SETTINGS.contains(&key) {
            return Err(LedgerError::Invalid(format!(
                "unknown setting {key:?} (known: {}); a password is never stored: use \
                 VEIL_SMTP_PASSWORD or a password file",
                SETTINGS.join(", ")
            )));
        }
        self.write(|w| {
            w.tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            w.event("setting.set", json!({"key": key, "value": value}))
        })
    }

    /// The SMTP configuration from the environment and the ledger's settings; `None` when no
    /// server is configured.
    pub fn smtp_config(&self) -> Result<Option<SmtpConfig>, LedgerError> {
        let pick = |env: &str, key: &str| -> Result<Option<String>, LedgerError> {
            match std::env::var(env).ok().filter(|v| !v.is_empty()) {
                Some(v) => Ok(Some(v)),
                None => setting(self, key),
            }
        };
        let Some(url) = pick("VEIL_SMTP_URL", "smtp_url")? else {
            return Ok(None);
        };
        let from = pick("VEIL_SMTP_FROM", "smtp_from")?.ok_or_else(|| {
            LedgerError::Invalid(
                "VEIL_SMTP_URL is set but no sender: set VEIL_SMTP_FROM (or `veil ledger set smtp_from ADDRESS`)".into(),
            )
        })?;
        Mailbox::from_str(&from).map_err(|e| {
            LedgerError::Invalid(format!("the sender {from:?} is not an address ({e})"))
        })?;
        let reply_to = pick("VEIL_SMTP_REPLY_TO", "reply_to")?;
        let password = match std::env::var("VEIL_SMTP_PASSWORD")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(p) => Some(p),
            None => match pick("VEIL_SMTP_PASSWORD_FILE", "smtp_password_file")? {
                None => None,
                Some(file) => Some(read_password(&PathBuf::from(file))?),
            },
        };
        Ok(Some(SmtpConfig {
            url,
            from,
            reply_to,
            password,
        }))
    }

    /// Changes a letter with `sql` and records `kind` in one transaction.
    fn set_letter(
        &mut self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<(), LedgerError> {
        self.write(|w| {
            w.tx.execute(sql, args)?;
            w.event(kind, payload)
        })
    }

    /// Delivers every letter that is due (pending, or failed and past its backoff), or marks
    /// them handed over, or (dry run) lists them. See the module documentation.
    pub fn send_letters(
        &mut self,
        opts: &SendOptions,
        config: Option<&SmtpConfig>,
    ) -> Result<SendReport, LedgerError> {
        let mut report = SendReport::default();
        let now = veil_core::now_rfc3339();
        // One sender at a time per ledger: two runs would both pick up the same pending letters
        // (and take each other's deliveries in progress for interrupted ones). Held until return.
        let _sender = if opts.dry_run {
            None
        } else {
            Some(self.sender_lock()?)
        };
        // Interrupted deliveries first: they may have reached the server.
        if !opts.dry_run {
            let stuck: Vec<(i64, String)> = {
                let mut s = self
                    .conn
                    .prepare("SELECT id, message_id FROM letters WHERE status = 'sending'")?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            for (id, mid) in stuck {
                self.set_letter(
                    "UPDATE letters SET status = 'uncertain',
                         last_error = 'interrupted between delivery and record: the server may have it' WHERE id = ?1",
                    &[&id],
                    "letter.uncertain",
                    json!({"letter": id, "message_id": mid}),
                )?;
            }
        }
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {LETTER_COLUMNS} FROM letters
             WHERE status IN ('pending', 'failed', 'uncertain', 'unaddressable')
               AND (?1 IS NULL OR request = ?1) ORDER BY id"
        ))?;
        let letters: Vec<Letter> = stmt
            .query_map([&opts.request], letter_from_row)?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        let transport = match (config, opts.dry_run || opts.outbox_only.is_some()) {
            (Some(c), false) => Some(transport(c)?),
            (None, false) if letters.iter().any(|l| l.status != "unaddressable") => {
                return Err(LedgerError::Invalid(
                    "no SMTP server is configured, so the letters wait in the ledger: set VEIL_SMTP_URL and VEIL_SMTP_FROM (or `veil ledger set \
                     smtp_url ...`), or hand the letters over yourself with `send --outbox-only --by NAME`"
                        .into(),
                ))
            }
            _ => None,
        };
        for l in letters {
            let line = (l.id, l.to_addr.clone(), l.subject.clone());
            if l.status == "unaddressable" && opts.outbox_only.is_none() {
                report.unaddressable.push((
                    l.id,
                    l.to_addr.clone(),
                    l.last_error.clone().unwrap_or_default(),
                ));
                continue;
            }
            if l.status == "uncertain" && !opts.resend_uncertain && opts.outbox_only.is_none() {
                report
                    .uncertain
                    .push((l.id, l.to_addr.clone(), l.message_id.clone()));
                continue;
            }
            if l.status == "failed"
                && opts.outbox_only.is_none()
                && l.next_attempt_at
                    .as_deref()
                    .is_some_and(|t| t > now.as_str())
            {
                report.waiting.push((
                    l.id,
                    l.to_addr.clone(),
                    format!(
                        "next attempt after {}",
                        l.next_attempt_at.clone().unwrap_or_default()
                    ),
                ));
                continue;
            }
            if opts.dry_run {
                report.would_send.push(line);
                continue;
            }
            if let Some(by) = &opts.outbox_only {
                let file = self.write_eml(&l, config)?;
                let at = veil_core::now_rfc3339();
                self.set_letter(
                    "UPDATE letters SET status = 'handed', handed_by = ?2, sent_at = ?3 WHERE id = ?1",
                    &[&l.id, by, &at],
                    "letter.handed",
                    json!({"letter": l.id, "by": by, "file": file}),
                )?;
                report.handed.push((l.id, l.to_addr.clone(), file));
                continue;
            }
            let (Some(t), Some(c)) = (&transport, config) else {
                continue;
            };
            let message = match build_message(&l, c) {
                Ok(m) => m,
                Err(why) => {
                    self.record_failure(&l, &why)?;
                    report.failed.push((l.id, l.to_addr.clone(), why));
                    continue;
                }
            };
            self.set_letter(
                "UPDATE letters SET status = 'sending', attempts = attempts + 1 WHERE id = ?1",
                &[&l.id],
                "letter.sending",
                json!({"letter": l.id, "message_id": l.message_id, "to": l.to_addr}),
            )?;
            match t.send(&message) {
                Ok(resp) => {
                    // Test hook: a crash between delivery and record.
                    if std::env::var_os("VEIL_TEST_CRASH_AFTER_SMTP").is_some() {
                        std::process::abort();
                    }
                    let reply = format!(
                        "{} {}",
                        resp.code(),
                        resp.message().collect::<Vec<_>>().join(" ")
                    );
                    let at = veil_core::now_rfc3339();
                    self.set_letter(
                        "UPDATE letters SET status = 'sent', sent_at = ?2, server_reply = ?3,
                             last_error = NULL, next_attempt_at = NULL WHERE id = ?1",
                        &[&l.id, &at, &reply],
                        "letter.sent",
                        json!({"letter": l.id, "message_id": l.message_id, "to": l.to_addr, "reply": reply}),
                    )?;
                    report.sent.push((l.id, l.to_addr.clone(), reply));
                }
                Err(e) => {
                    let why = describe(&e);
                    self.record_failure(&l, &why)?;
                    report.failed.push((l.id, l.to_addr.clone(), why));
                }
            }
        }
        Ok(report)
    }

    fn record_failure(&mut self, l: &Letter, why: &str) -> Result<(), LedgerError> {
        let attempts: i64 =
            self.conn
                .query_row("SELECT attempts FROM letters WHERE id = ?1", [l.id], |r| {
                    r.get(0)
                })?;
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let next = veil_core::rfc3339(now_secs + backoff(attempts.max(1)).as_secs() as i64);
        self.set_letter(
            "UPDATE letters SET status = 'failed', last_error = ?2, next_attempt_at = ?3,
                 attempts = MAX(attempts, 1) WHERE id = ?1",
            &[&l.id, &why, &next],
            "letter.failed",
            json!({"letter": l.id, "message_id": l.message_id, "to": l.to_addr, "error": why, "next_attempt_at": next}),
        )
    }

    /// Writes a letter as `outbox/REQUEST/letters/ID-KIND.eml`; returns the path.
    fn write_eml(&self, l: &Letter, config: Option<&SmtpConfig>) -> Result<String, LedgerError> {
        let from = config.map_or_else(
            || std::env::var("VEIL_SMTP_FROM").unwrap_or_else(|_| "veil@localhost".into()),
            |c| c.from.clone(),
        );
        let c = SmtpConfig {
            url: String::new(),
            from,
            reply_to: config.and_then(|c| c.reply_to.clone()),
            password: None,
        };
        let dir = self.dir().join("outbox").join(&l.request).join("letters");
        std::fs::create_dir_all(&dir).map_err(|e| LedgerError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let file = dir.join(format!("{:04}-{}.eml", l.id, l.kind));
        let bytes = match build_message(l, &c) {
            Ok(m) => m.formatted(),
            // An unaddressable letter: its text, for whoever sends it by other means. Its header
            // fields are untrusted text on one line each (no header can be added through them).
            Err(_) => format!(
                "To: {} <{}>\nSubject: {}\n\n{}",
                one_line(&l.to_name),
                one_line(&l.to_addr),
                one_line(&l.subject),
                l.text
            )
            .into_bytes(),
        };
        std::fs::write(&file, bytes).map_err(|e| LedgerError::Io {
            path: file.clone(),
            source: e,
        })?;
        Ok(file.display().to_string())
    }
}

fn read_password(path: &PathBuf) -> Result<String, LedgerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| LedgerError::Io {
            path: path.clone(),
            source: e,
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(LedgerError::Invalid(format!(
                "{}: the SMTP password file is readable by others; `chmod 600` it",
                path.display()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| LedgerError::Io {
        path: path.clone(),
        source: e,
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// `s` with line breaks and other control characters replaced by spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The user name of a URL `scheme://user[:pass]@host...`, percent-decoded
/// (`takedowns%40example.org` is `takedowns@example.org`).
fn url_user(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let raw = userinfo.split(':').next()?.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).and_then(|b| hex(*b)),
            raw.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whether the URL's connection is encrypted from the start or before login (`smtps://`, or
/// `tls=required`), or goes to this machine only (a local relay).
fn encrypted_or_local(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("smtps") || url.contains("tls=required") {
        return true;
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn transport(c: &SmtpConfig) -> Result<SmtpTransport, LedgerError> {
    let mut b = SmtpTransport::from_url(&c.url).map_err(|e| {
        LedgerError::Invalid(format!(
            "VEIL_SMTP_URL is not a server URL lettre accepts ({e}): use smtps://user@host, \
             smtp://user@host:587?tls=required, or smtp://127.0.0.1:2525 for a local relay"
        ))
    })?;
    if let (Some(p), Some(user)) = (&c.password, url_user(&c.url)) {
        if !encrypted_or_local(&c.url) {
            return Err(LedgerError::Invalid(
                "VEIL_SMTP_URL would send the SMTP password unencrypted: use smtps://user@host, \
                 or smtp://user@host:587?tls=required (plain smtp:// is for a relay on this \
                 machine only)"
                    .into(),
            ));
        }
        b = b.credentials(Credentials::new(user, p.clone()));
    }
    Ok(b.timeout(Some(Duration::from_secs(30))).build())
}

fn build_message(l: &Letter, c: &SmtpConfig) -> Result<Message, String> {
    let to = Mailbox::from_str(&format!(
        "{} <{}>",
        quote_name(&l.to_name),
        l.to_addr.trim()
    ))
    .or_else(|_| Mailbox::from_str(l.to_addr.trim()))
    .map_err(|e| format!("{:?} is not an e-mail address ({e})", l.to_addr))?;
    let from = Mailbox::from_str(&c.from).map_err(|e| format!("the sender: {e}"))?;
    let mut b = Message::builder()
        .from(from)
        .to(to)
        .subject(l.subject.clone())
        .message_id(Some(l.message_id.clone()));
    if let Some(r) = &c.reply_to {
        b = b.reply_to(Mailbox::from_str(r).map_err(|e| format!("Reply-To {r:?}: {e}"))?);
    }
    let m = match &l.html {
        Some(html) => b.multipart(MultiPart::alternative_plain_html(
            l.text.clone(),
            html.clone(),
        )),
        None => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(l.text.clone()),
        ),
    };
    m.map_err(|e| format!("cannot build the message ({e})"))
}

fn quote_name(name: &str) -> String {
    format!("\"{}\"", name.replace(['"', '\\', '\r', '\n'], " "))
}

/// One sentence for an SMTP error: the server's refusal with its code, or why it could not be
/// reached.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    match e.status() {
        Some(code) => format!(
            "the server refused it ({code}{}): {e}",
            if e.is_permanent() {
                ", permanent"
            } else {
                ", temporary"
            }
        ),
        None => format!("could not deliver ({e}); retried on the next send"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_percent_decoded() {
        assert_eq!(
            url_user("smtps://takedowns%40example.org@mail.example.org").as_deref(),
            Some("takedowns@example.org")
        );
        assert_eq!(url_user("smtp://bob:x@h:25").as_deref(), Some("bob"));
        assert_eq!(url_user("smtp://h:25"), None);
    }

    #[test]
    fn a_password_goes_only_over_tls_or_to_this_machine() {
        for ok in [
            "smtps://u@mail.example.org",
            "smtp://u@mail.example.org:587?tls=required",
            "smtp://u@127.0.0.1:2525",
            "smtp://u@localhost:25",
            "smtp://u@[::1]:2525",
        ] {
            assert!(encrypted_or_local(ok), "{ok}");
        }
        for plain in [
            "smtp://u@mail.example.org",
            "smtp://u@mail.example.org:587?tls=opportunistic",
            "smtp://u@10.0.0.5:25",
        ] {
            assert!(!encrypted_or_local(plain), "{plain}");
        }
        let c = SmtpConfig {
            url: "smtp://u@mail.example.org:25".into(),
            from: "a@b.example".into(),
            reply_to: None,
            password: Some("s3cret".into()),
        };
        let err = transport(&c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unencrypted"), "{err}");
    }

    #[test]
    fn header_fields_of_an_unaddressable_letter_stay_on_one_line() {
        assert_eq!(
            one_line("bob at example\r\nBcc: evil@x.example"),
            "bob at example  Bcc: evil@x.example"
        );
    }

    #[test]
    fn one_sender_at_a_time() {
        let t = tempfile::tempdir().unwrap();
        let ledger = Ledger::open_or_create(&t.path().join("ledger.sqlite")).unwrap();
        let held = ledger.sender_lock().unwrap();
        let err = ledger
            .sender_lock()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("another `veil takedown send`"), "{err}");
        drop(held);
        assert!(ledger.sender_lock().is_ok());
    }
}
