//! Takedown requests: open, match, confirm or reject, apply (new release without the items, or
//! the whole dataset withdrawn), purge, notify recipients, acknowledge, close; deadlines and the
//! public withdrawals feed.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use veil_core::Date;

use crate::catalogue::{dhash_int, insert_release, pdq_blob, version_order};
use crate::deadline::Calendar;
use crate::store::{Ledger, Writer};
use crate::LedgerError;

mod in_containers;
pub use in_containers::ContainerRewrite;
mod matching;
mod notices;
mod withdraw;

/// PDQ matches at most this many differing bits of 256 (Meta's recommended threshold).
pub const PDQ_MAX_DISTANCE: u32 = 31;
/// PDQ hashes of lower quality (flat or tiny images) are not used for matching.
pub const PDQ_MIN_QUALITY: u8 = 50;
/// dHash matches at most this many differing bits of 64.
pub const DHASH_MAX_DISTANCE: u32 = 6;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)*
                    _ => Err(format!(
                        "unknown {} {s:?} (expected one of: {})",
                        stringify!($name).to_lowercase(),
                        [$($s),*].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// Legal basis of a request.
    Basis {
        Privacy = "privacy",
        Portrait = "portrait",
        Copyright = "copyright",
        Child = "child",
        Contract = "contract",
        Authority = "authority",
        Other = "other",
    }
);

string_enum!(
    /// Where a request is.
    Status {
        Received = "received",
        Matching = "matching",
        Confirmed = "confirmed",
        Applied = "applied",
        Notified = "notified",
        Closed = "closed",
        Rejected = "rejected",
    }
);

impl Status {
    /// Still owes the requester something (counts against the deadline).
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Notified | Status::Closed | Status::Rejected)
    }
}

/// Hashes of an evidence photo. The photo itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoEvidence {
    pub blake3: String,
    pub pdq: String,
    pub pdq_quality: u8,
    pub dhash: String,
}

/// What a request names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub paths: Vec<String>,
    pub blake3: Vec<String>,
    pub photos: Vec<PhotoEvidence>,
}

/// A request to open.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub dataset: String,
    /// `None`: every release of the dataset.
    pub releases: Option<Vec<String>>,
    pub whole_dataset: bool,
    pub scope: Scope,
    pub requester: String,
    pub contact: String,
    pub basis: Basis,
    pub note: String,
    /// `YYYY-MM-DD` or an RFC 3339 UTC time; `None`: now.
    pub received: Option<String>,
    /// Deadline policy name; `None`: `default`.
    pub policy: Option<String>,
    /// Language of the letters to the requester (`en`, `zh`); `None`: English.
    pub language: Option<String>,
}

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub id: String,
    pub dataset: String,
    pub releases: Option<Vec<String>>,
    pub whole_dataset: bool,
    pub scope: Scope,
    pub requester: String,
    pub contact: String,
    pub basis: Basis,
    pub note: String,
    pub received_at: String,
    /// Last day on time, `YYYY-MM-DD`.
    pub due: String,
    pub policy: String,
    pub status: Status,
    pub reason: Option<String>,
    pub updated_at: String,
    /// Language of the letters to the requester; `None`: English.
    pub language: Option<String>,
}

impl Request {
    pub fn due_date(&self) -> Date {
        Date::parse(&self.due).unwrap_or(Date(i64::MIN / 2))
    }

    /// Open and past its due date on `today`.
    pub fn is_overdue(&self, today: Date) -> bool {
        self.status.is_open() && self.due_date() < today
    }

    /// Order everywhere: children's data first, then by due date, then id.
    fn sort_key(&self) -> (bool, Date, String) {
        (self.basis != Basis::Child, self.due_date(), self.id.clone())
    }
}

/// An item a request matched (or that was confirmed by hand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub item: i64,
    pub dataset: String,
    pub version: String,
    pub path: String,
    pub blake3: String,
    /// `path`, `blake3:output`, `blake3:source`, `photo-blake3:*`, `pdq:source`, `pdq:output`,
    /// `dhash:source`, `dhash:output` or `manual`.
    pub how: String,
    /// Bits differing for perceptual matches, 0 for exact ones.
    pub distance: u32,
    pub state: String,
}

/// One withdrawn item: hashes kept, bytes gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TombstoneRow {
    pub dataset: String,
    pub version: String,
    pub new_version: Option<String>,
    pub path: String,
    pub size: u64,
    pub blake3: String,
    pub source_blake3: Option<String>,
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub dataset: String,
    pub whole_dataset: bool,
    /// `(version, merkle_root)` of the release cut without the items.
    pub new_release: Option<(String, String)>,
    pub withdrawn_releases: Vec<String>,
    pub tombstones: Vec<TombstoneRow>,
}

/// What `purge` deleted and left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    pub dir: String,
    pub deleted: Vec<String>,
    /// `(path, why it was left)`.
    pub skipped: Vec<(String, String)>,
    /// Containers rewritten without withdrawn members (those members are in `deleted`).
    pub rewritten: Vec<in_containers::ContainerRewrite>,
}

/// A notice written for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub id: i64,
    pub request: String,
    pub name: String,
    pub contact: String,
    pub releases: Vec<String>,
    pub file: String,
    pub blake3: String,
    pub written_at: String,
    pub ack_at: Option<String>,
    pub ack_note: Option<String>,
}

/// Everything the ledger holds about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestDetail {
    pub request: Request,
    pub matches: Vec<Candidate>,
    pub tombstones: Vec<TombstoneRow>,
    pub actions: Vec<Value>,
    pub notices: Vec<Notice>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn request_from_row(r: &Row<'_>) -> rusqlite::Result<Request> {
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e),
        )
    };
    let releases: Option<String> = r.get(2)?;
    let scope: String = r.get(4)?;
    let basis: String = r.get(8)?;
    let status: String = r.get(14)?;
    Ok(Request {
        id: r.get(0)?,
        dataset: r.get(1)?,
        releases: releases
            .map(|s| serde_json::from_str(&s).map_err(|e| bad(2, e.to_string())))
            .transpose()?,
        whole_dataset: r.get(3)?,
        scope: serde_json::from_str(&scope).map_err(|e| bad(4, e.to_string()))?,
        requester: r.get(5)?,
        contact: r.get(6)?,
        note: r.get(7)?,
        basis: basis.parse().map_err(|e| bad(8, e))?,
        received_at: r.get(9)?,
        due: r.get(10)?,
        policy: r.get(11)?,
        reason: r.get(12)?,
        updated_at: r.get(13)?,
        status: status.parse().map_err(|e| bad(14, e))?,
        language: r.get(15)?,
    })
}

const REQUEST_COLUMNS: &str =
    "id, dataset, releases, whole_dataset, scope, requester, contact, note,
     basis, received_at, due, policy, reason, updated_at, status, language";

/// `N` → `N+1`, `vN` → `vN+1`.
fn next_version(v: &str) -> Option<String> {
    let digits = v.len() - v.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let (prefix, n) = v.split_at(v.len() - digits);
    Some(format!("{prefix}{}", n.parse::<u64>().ok()? + 1))
}

fn set_status(w: &Writer<'_>, id: &str, status: Status) -> Result<(), LedgerError> {
    w.tx.execute(
        "UPDATE requests SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, status.as_str(), w.now],
    )?;
    Ok(())
}

fn action(w: &Writer<'_>, id: &str, kind: &str, detail: &Value) -> Result<(), LedgerError> {
    w.tx.execute(
        "INSERT INTO actions (request, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        params![id, w.now, kind, detail.to_string()],
    )?;
    Ok(())
}

/// Reads the status inside a write transaction (another process may have moved it on).
fn status_in(w: &Writer<'_>, id: &str) -> Result<Status, LedgerError> {
    let s: String =
        w.tx.query_row("SELECT status FROM requests WHERE id = ?1", [id], |r| {
            r.get(0)
        })?;
    s.parse().map_err(LedgerError::Invalid)
}

fn json_versions(versions: &BTreeSet<String>) -> String {
    serde_json::to_string(versions).expect("strings serialise")
}

/// A file-name-safe slug of a recipient name.
fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    use std::io::Write;
    let io = |e| LedgerError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    veil_ledger::fsutil::write_file_atomic(path, &tmp, |f| f.write_all(bytes)).map_err(io)
}

impl Ledger {
    /// The holiday calendar of a deadline policy (`holidays`: its file, relative to the ledger's
    /// directory; `None`: weekends only) and the blake3 of that file.
    pub(crate) fn calendar(
        &self,
        holidays: Option<&str>,
    ) -> Result<(Calendar, Option<String>), LedgerError> {
        let Some(file) = holidays else {
            return Ok((Calendar::default(), None));
        };
        let base = self.path.parent().unwrap_or(Path::new("."));
        let path = base.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| LedgerError::Io {
            path: path.clone(),
            source: e,
        })?;
        let cal = Calendar::parse(&text).map_err(|(line, reason)| LedgerError::Parse {
            path: path.clone(),
            line,
            reason,
        })?;
        Ok((
            cal,
            Some(blake3::hash(text.as_bytes()).to_hex().to_string()),
        ))
    }

    /// Opens a request: validates the scope, computes the due date and assigns an id
    /// (`TD-YYYY-NNNN`).
    pub fn open_request(&mut self, new: NewRequest) -> Result<Request, LedgerError> {
        self.require_dataset(&new.dataset)?;
        if let Some(rels) = &new.releases {
            if rels.is_empty() {
                return Err(LedgerError::Invalid("--release names no release".into()));
            }
            for v in rels {
                self.require_release(&new.dataset, v)?;
            }
        }
        let s = &new.scope;
        if !new.whole_dataset && s.paths.is_empty() && s.blake3.is_empty() && s.photos.is_empty() {
            return Err(LedgerError::Invalid(
                "the request has no scope: give --path, --blake3, --photo or --whole-dataset"
                    .into(),
            ));
        }
        for h in &s.blake3 {
            if !is_hex64(h) {
                return Err(LedgerError::Invalid(format!(
                    "--blake3 {h:?} is not 64 lowercase hex digits"
                )));
            }
        }
        for p in &s.paths {
            globset::Glob::new(p)
                .map_err(|e| LedgerError::Invalid(format!("--path {p:?}: {e}")))?;
        }
        if let Some(l) = &new.language {
            crate::letters::check_language(l)?;
        }
        for field in [&new.requester, &new.contact] {
            if field.trim().is_empty() {
                return Err(LedgerError::Invalid(
                    "--requester and --contact must not be empty".into(),
                ));
            }
        }
        let received_at = match &new.received {
            None => veil_core::now_rfc3339(),
            Some(s) => {
                let d = Date::parse(s).map_err(|e| LedgerError::Invalid(e.to_string()))?;
                if s.len() == 10 {
                    format!("{d}T00:00:00Z")
                } else {
                    s.clone()
                }
            }
        };
        let received =
            Date::parse(&received_at).map_err(|e| LedgerError::Invalid(e.to_string()))?;
        let policy_name = new.policy.clone().unwrap_or_else(|| "default".into());
        let policies = self.policies()?;
        let Some((_, policy, holidays)) = policies.iter().find(|(n, _, _)| *n == policy_name)
        else {
            return Err(LedgerError::Invalid(format!(
                "unknown deadline policy {policy_name:?} (known: {})",
                crate::known(policies.iter().map(|p| p.0.clone()))
            )));
        };
        let (calendar, calendar_blake3) = self.calendar(holidays.as_deref())?;
        let due = if new.basis == Basis::Child {
            received
        } else {
            policy.due(received, &calendar)
        };
        let policy_desc = format!("{policy_name} ({policy})");
        let ledger_dir = self.dir();
        self.write(|w| {
            let year = &w.now[..4];
            let n: i64 = w.tx.query_row(
                "SELECT COUNT(*) FROM requests WHERE id LIKE ?1",
                [format!("TD-{year}-%")],
                |r| r.get(0),
            )?;
            let id = format!("TD-{year}-{:04}", n + 1);
            let releases = new
                .releases
                .as_ref()
                .map(|r| serde_json::to_string(r).expect("strings serialise"));
            let scope = serde_json::to_string(&new.scope).expect("scope serialises");
            w.tx.execute(
                "INSERT INTO requests (id, dataset, releases, whole_dataset, scope, requester, contact,
                     basis, note, received_at, due, policy, status, updated_at, language)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'received', ?13, ?14)",
                params![
                    id,
                    new.dataset,
                    releases,
                    new.whole_dataset,
                    scope,
                    new.requester,
                    new.contact,
                    new.basis.as_str(),
                    new.note,
                    received_at,
                    due.to_string(),
                    policy_desc,
                    w.now,
                    new.language
                ],
            )?;
            w.event(
                "request.opened",
                json!({
                    "id": id, "dataset": new.dataset, "releases": new.releases,
                    "whole_dataset": new.whole_dataset, "scope": new.scope,
                    "requester": new.requester, "contact": new.contact, "basis": new.basis,
                    "note": new.note, "received_at": received_at, "due": due.to_string(),
                    "policy": policy_desc, "holidays_blake3": calendar_blake3,
                    "language": new.language,
                }),
            )?;
            let mut vars = crate::letters::vars();
            vars.insert("request", id.clone());
            vars.insert("requester", new.requester.clone());
            vars.insert("dataset", new.dataset.clone());
            vars.insert("received", received_at.clone());
            vars.insert("due", due.to_string());
            vars.insert("scope", crate::letters::scope_lines(&new.scope, new.whole_dataset));
            crate::letters::queue(
                w,
                &ledger_dir,
                crate::letters::NewLetter {
                    request: &id,
                    template: "acknowledgement",
                    kind: "acknowledgement",
                    event: "opened",
                    to_name: &new.requester,
                    to_addr: &new.contact,
                    language: new.language.as_deref().unwrap_or("en"),
                    vars,
                },
            )?;
            Ok(id)
        })
        .and_then(|id| self.request(&id))
    }

    /// One request.
    pub fn request(&self, id: &str) -> Result<Request, LedgerError> {
        self.conn
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
                [id],
                request_from_row,
            )
            .optional()?
            .ok_or_else(|| LedgerError::UnknownRequest { id: id.to_string() })
    }

    /// All requests, children's first, then by due date.
    pub fn requests(&self) -> Result<Vec<Request>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {REQUEST_COLUMNS} FROM requests"))?;
        let rows = stmt.query_map([], request_from_row)?;
        let mut v: Vec<Request> = rows.collect::<Result<_, _>>()?;
        v.sort_by_key(Request::sort_key);
        Ok(v)
    }

    /// Open requests due on or before `today + within_days`, children's first, then by due date.
    pub fn due(&self, today: Date, within_days: i64) -> Result<Vec<Request>, LedgerError> {
        let limit = today.add_days(within_days);
        Ok(self
            .requests()?
            .into_iter()
            .filter(|r| r.status.is_open() && r.due_date() <= limit)
            .collect())
    }

    fn scope_versions(&self, req: &Request) -> Result<BTreeSet<String>, LedgerError> {
        Ok(match &req.releases {
            Some(v) => v.iter().cloned().collect(),
            None => self.versions(&req.dataset)?,
        })
    }

    fn require_state(req: &Request, allowed: &[Status], doing: &str) -> Result<(), LedgerError> {
        if allowed.contains(&req.status) {
            Ok(())
        } else {
            Err(LedgerError::State {
                id: req.id.clone(),
                what: format!("cannot {doing}: request is {}", req.status),
            })
        }
    }

    /// Marks items (path, output or source blake3; matched or named by hand) as confirmed or
    /// rejected for this request. Returns how many item rows changed.
    pub fn decide(
        &mut self,
        id: &str,
        specs: &[String],
        confirm: bool,
    ) -> Result<usize, LedgerError> {
        let req = self.request(id)?;
        Self::require_state(
            &req,
            &[Status::Received, Status::Matching, Status::Confirmed],
            if confirm {
                "confirm items"
            } else {
                "reject items"
            },
        )?;
        if specs.is_empty() {
            return Err(LedgerError::Invalid("name at least one item".into()));
        }
        let mut items = BTreeSet::new();
        for s in specs {
            items.extend(self.items_named(&req, s)?);
        }
        let state = if confirm { "confirmed" } else { "rejected" };
        self.write(|w| {
            let status = status_in(w, id)?;
            if !matches!(
                status,
                Status::Received | Status::Matching | Status::Confirmed
            ) {
                return Err(LedgerError::State {
                    id: id.to_string(),
                    what: format!("request is {status}"),
                });
            }
            for item in &items {
                w.tx.execute(
                    "INSERT INTO matches (request, item, how, distance, state)
                     VALUES (?1, ?2, 'manual', 0, ?3)
                     ON CONFLICT(request, item) DO UPDATE SET state = excluded.state",
                    params![id, item, state],
                )?;
            }
            let confirmed: i64 = w.tx.query_row(
                "SELECT COUNT(*) FROM matches WHERE request = ?1 AND state = 'confirmed'",
                [id],
                |r| r.get(0),
            )?;
            set_status(
                w,
                id,
                if confirmed > 0 {
                    Status::Confirmed
                } else {
                    Status::Matching
                },
            )?;
            w.event(
                if confirm {
                    "items.confirmed"
                } else {
                    "items.rejected"
                },
                json!({"id": id, "items": items, "named": specs}),
            )?;
            Ok(items.len())
        })
    }

    /// Rejects the whole request, with a reason.
    pub fn reject_request(&mut self, id: &str, reason: &str) -> Result<(), LedgerError> {
        let req = self.request(id)?;
        Self::require_state(
            &req,
            &[Status::Received, Status::Matching, Status::Confirmed],
            "reject",
        )?;
        if reason.trim().is_empty() {
            return Err(LedgerError::Invalid("a rejection needs --reason".into()));
        }
        let ledger_dir = self.dir();
        self.write(|w| {
            set_status(w, id, Status::Rejected)?;
            w.tx.execute(
                "UPDATE requests SET reason = ?2 WHERE id = ?1",
                params![id, reason],
            )?;
            w.event("request.rejected", json!({"id": id, "reason": reason}))?;
            let mut vars = crate::letters::request_vars(&req);
            vars.insert("reason", reason.to_string());
            crate::letters::queue(
                w,
                &ledger_dir,
                crate::letters::NewLetter {
                    request: id,
                    template: "rejected",
                    kind: "answer",
                    event: "rejected",
                    to_name: &req.requester,
                    to_addr: &req.contact,
                    language: req.language.as_deref().unwrap_or("en"),
                    vars,
                },
            )
        })
    }

    /// Closes a notified (or applied) request.
    pub fn close(&mut self, id: &str) -> Result<(), LedgerError> {
        let req = self.request(id)?;
        Self::require_state(
            &req,
            &[Status::Applied, Status::Notified],
            "close (apply and notify first)",
        )?;
        self.write(|w| {
            set_status(w, id, Status::Closed)?;
            w.event("request.closed", json!({"id": id}))
        })
    }

    /// Everything about one request.
    pub fn detail(&self, id: &str) -> Result<RequestDetail, LedgerError> {
        let request = self.request(id)?;
        let mut stmt = self
            .conn
            .prepare("SELECT at, kind, detail FROM actions WHERE request = ?1 ORDER BY id")?;
        let actions = stmt
            .query_map([id], |r| {
                let detail: String = r.get(2)?;
                Ok(
                    json!({"at": r.get::<_, String>(0)?, "kind": r.get::<_, String>(1)?,
                          "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::Null)}),
                )
            })?
            .collect::<Result<_, _>>()?;
        Ok(RequestDetail {
            matches: self.matches(id)?,
            tombstones: self.tombstones(id)?,
            notices: self.notices(id)?,
            actions,
            request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_advance() {
        assert_eq!(next_version("1").as_deref(), Some("2"));
        assert_eq!(next_version("v9").as_deref(), Some("v10"));
        assert_eq!(next_version("2026.11").as_deref(), Some("2026.12"));
        assert_eq!(next_version("beta"), None);
    }

    #[test]
    fn enums_round_trip() {
        for b in Basis::ALL {
            assert_eq!(b.as_str().parse::<Basis>().unwrap(), *b);
        }
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), *s);
        }
        assert!("gdpr".parse::<Basis>().unwrap_err().contains("privacy"));
    }
}
