//! Takedown requests: open, match, confirm or reject, apply (new release without the items, or
//! the whole dataset withdrawn), purge, notify recipients, acknowledge, close; deadlines and the
//! public withdrawals feed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use veil_core::Date;

use crate::catalogue::{dhash_int, insert_release, pdq_blob, version_order};
use crate::deadline::Calendar;
use crate::store::{Ledger, Writer};
use crate::LedgerError;

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
    })
}

const REQUEST_COLUMNS: &str =
    "id, dataset, releases, whole_dataset, scope, requester, contact, note,
     basis, received_at, due, policy, reason, updated_at, status";

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
        let (calendar, calendar_blake3) = match holidays {
            None => (Calendar::default(), None),
            Some(file) => {
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
                (
                    cal,
                    Some(blake3::hash(text.as_bytes()).to_hex().to_string()),
                )
            }
        };
        let due = if new.basis == Basis::Child {
            received
        } else {
            policy.due(received, &calendar)
        };
        let policy_desc = format!("{policy_name} ({policy})");
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
                     basis, note, received_at, due, policy, status, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'received', ?13)",
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
                    w.now
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
                }),
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

    /// Finds the items a request names (paths, blake3, photos by PDQ or dHash against source and
    /// output hashes) in its releases and records them as candidates for a human to confirm.
    /// Returns every match of the request (candidates, confirmed and rejected).
    pub fn find_matches(&mut self, id: &str) -> Result<Vec<Candidate>, LedgerError> {
        let req = self.request(id)?;
        Self::require_state(
            &req,
            &[Status::Received, Status::Matching, Status::Confirmed],
            "match",
        )?;
        let versions = json_versions(&self.scope_versions(&req)?);
        let ds = req.dataset.as_str();
        // item -> (distance, how); exact matches win, then the smallest distance.
        let mut best: BTreeMap<i64, (u32, String)> = BTreeMap::new();
        let mut offer = |item: i64, distance: u32, how: String| {
            let e = best.entry(item).or_insert((u32::MAX, String::new()));
            if (distance, &how) < (e.0, &e.1) {
                *e = (distance, how);
            }
        };
        let (exact, globs): (Vec<&String>, Vec<&String>) =
            req.scope.paths.iter().partition(|p| !is_glob(p));
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id FROM items WHERE dataset = ?1 AND path = ?2
                   AND version IN (SELECT value FROM json_each(?3))",
            )?;
            for p in exact {
                for item in stmt.query_map(params![ds, p, versions], |r| r.get(0))? {
                    offer(item?, 0, "path".into());
                }
            }
        }
        if !globs.is_empty() {
            let mut b = globset::GlobSetBuilder::new();
            for g in &globs {
                b.add(
                    globset::GlobBuilder::new(g)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| LedgerError::Invalid(format!("--path {g:?}: {e}")))?,
                );
            }
            let set = b.build().map_err(|e| LedgerError::Invalid(e.to_string()))?;
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, path FROM items WHERE dataset = ?1
                   AND version IN (SELECT value FROM json_each(?2))",
            )?;
            let rows = stmt.query_map(params![ds, versions], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (item, path) = row?;
                if set.is_match(&path) {
                    offer(item, 0, "path".into());
                }
            }
        }
        let hashes = req
            .scope
            .blake3
            .iter()
            .map(|h| (h.as_str(), "blake3"))
            .chain(
                req.scope
                    .photos
                    .iter()
                    .map(|p| (p.blake3.as_str(), "photo-blake3")),
            );
        {
            // Two index lookups; an OR over both columns would scan the table.
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, 1 FROM items INDEXED BY items_blake3 WHERE blake3 = ?2 AND dataset = ?1
                   AND version IN (SELECT value FROM json_each(?3))
                 UNION ALL
                 SELECT id, 0 FROM items INDEXED BY items_source_blake3 WHERE source_blake3 = ?2
                   AND dataset = ?1 AND version IN (SELECT value FROM json_each(?3))",
            )?;
            for (h, label) in hashes {
                let rows = stmt.query_map(params![ds, h, versions], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
                })?;
                for row in rows {
                    let (item, output) = row?;
                    let side = if output { "output" } else { "source" };
                    offer(item, 0, format!("{label}:{side}"));
                }
            }
        }
        for photo in &req.scope.photos {
            let all = req.releases.is_none();
            for (item, distance, how) in
                self.photo_matches(ds, (!all).then_some(versions.as_str()), photo)?
            {
                offer(item, distance, how);
            }
        }
        let found: Vec<(i64, u32, String)> =
            best.into_iter().map(|(i, (d, h))| (i, d, h)).collect();
        self.write(|w| {
            let status = status_in(w, id)?;
            if !matches!(
                status,
                Status::Received | Status::Matching | Status::Confirmed
            ) {
                return Err(LedgerError::State {
                    id: id.to_string(),
                    what: format!("cannot match: request is {status}"),
                });
            }
            for (item, distance, how) in &found {
                w.tx.execute(
                    "INSERT INTO matches (request, item, how, distance) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(request, item) DO UPDATE SET how = excluded.how,
                         distance = excluded.distance
                     WHERE excluded.distance < matches.distance",
                    params![id, item, how, distance],
                )?;
            }
            if status == Status::Received {
                set_status(w, id, Status::Matching)?;
            }
            w.event(
                "request.matched",
                json!({"id": id, "candidates": found.iter().map(|(i, d, h)| json!({"item": i, "distance": d, "how": h})).collect::<Vec<_>>()}),
            )
        })?;
        self.matches(id)
    }

    /// Items whose source or output perceptual hashes are near the photo's.
    fn photo_matches(
        &self,
        dataset: &str,
        versions: Option<&str>,
        photo: &PhotoEvidence,
    ) -> Result<Vec<(i64, u32, String)>, LedgerError> {
        let pdq = (photo.pdq_quality >= PDQ_MIN_QUALITY)
            .then(|| pdq_blob(&photo.pdq))
            .flatten();
        let dhash = dhash_int(&photo.dhash);
        // One SQL function call per row (see `store::photo_near`); a full scan of the table is
        // faster than walking the (dataset, version, path) index for this.
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, m FROM (
                 SELECT id, veil_photo_near(source_pdq, source_pdq_quality, output_pdq,
                            output_pdq_quality, source_dhash, output_dhash, ?1, ?2) AS m
                 FROM items NOT INDEXED
                 WHERE dataset = ?3 AND (?4 IS NULL OR version IN (SELECT value FROM json_each(?4))))
             WHERE m IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![pdq, dhash, dataset, versions], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (item, code) = row?;
            let how = ["pdq:source", "pdq:output", "dhash:source", "dhash:output"]
                [(code / 1000).clamp(0, 3) as usize];
            out.push((item, (code % 1000) as u32, how.to_string()));
        }
        Ok(out)
    }

    /// Every match of a request, by path then version.
    pub fn matches(&self, id: &str) -> Result<Vec<Candidate>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT i.id, i.dataset, i.version, i.path, i.blake3, m.how, m.distance, m.state
             FROM matches m JOIN items i ON i.id = m.item WHERE m.request = ?1",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(Candidate {
                item: r.get(0)?,
                dataset: r.get(1)?,
                version: r.get(2)?,
                path: r.get(3)?,
                blake3: r.get(4)?,
                how: r.get(5)?,
                distance: r.get(6)?,
                state: r.get(7)?,
            })
        })?;
        let mut v: Vec<Candidate> = rows.collect::<Result<_, _>>()?;
        v.sort_by(|a, b| {
            a.path
                .cmp(&b.path)
                .then(version_order(&a.version, &b.version))
        });
        Ok(v)
    }

    /// Items of the request's releases named by path, output blake3 or source blake3.
    fn items_named(&self, req: &Request, spec: &str) -> Result<Vec<i64>, LedgerError> {
        let versions = json_versions(&self.scope_versions(req)?);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM items WHERE dataset = ?1
               AND (path = ?2 OR blake3 = ?2 OR source_blake3 = ?2)
               AND version IN (SELECT value FROM json_each(?3))",
        )?;
        let rows = stmt.query_map(params![req.dataset, spec, versions], |r| r.get(0))?;
        let ids: Vec<i64> = rows.collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Err(LedgerError::Invalid(format!(
                "{spec:?} names no item of {} in the request's releases (give a path, output blake3 or source blake3)",
                req.dataset
            )));
        }
        Ok(ids)
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
        self.write(|w| {
            set_status(w, id, Status::Rejected)?;
            w.tx.execute(
                "UPDATE requests SET reason = ?2 WHERE id = ?1",
                params![id, reason],
            )?;
            w.event("request.rejected", json!({"id": id, "reason": reason}))
        })
    }

    /// Applies a request: cuts a new release of the dataset without the confirmed items (or
    /// withdraws the whole dataset), marks the releases that held them withdrawn, records
    /// tombstones. The release files are written under `root` while the ledger is locked; a
    /// release left behind by an interrupted apply of the same request is adopted.
    pub fn apply(
        &mut self,
        id: &str,
        root: &Path,
        new_version: Option<&str>,
    ) -> Result<ApplyReport, LedgerError> {
        let req = self.request(id)?;
        let allowed: &[Status] = if req.whole_dataset {
            &[Status::Received, Status::Matching, Status::Confirmed]
        } else {
            &[Status::Confirmed]
        };
        if matches!(
            req.status,
            Status::Applied | Status::Notified | Status::Closed
        ) {
            return Err(LedgerError::State {
                id: id.to_string(),
                what: format!("already applied (request is {})", req.status),
            });
        }
        Self::require_state(&req, allowed, "apply (confirm items first)")?;
        let releases = self.releases(&req.dataset)?;
        self.write(|w| {
            if status_in(w, id)? != req.status {
                return Err(LedgerError::State {
                    id: id.to_string(),
                    what: "changed by another process; run again".into(),
                });
            }
            let report = if req.whole_dataset {
                apply_whole(w, &req, &releases)?
            } else {
                apply_items(w, &req, &releases, root, new_version)?
            };
            set_status(w, id, Status::Applied)?;
            let detail = serde_json::to_value(&report).expect("report serialises");
            action(w, id, "applied", &detail)?;
            w.event("request.applied", json!({"id": id, "report": detail}))?;
            Ok(report)
        })
    }

    /// Tombstones of a request.
    pub fn tombstones(&self, id: &str) -> Result<Vec<TombstoneRow>, LedgerError> {
        tombstones_in(&self.conn, id)
    }

    /// Deletes the withdrawn files of an applied request from an output tree: only regular files
    /// (no links followed, no parent that is a link) at the tombstone's path whose blake3 is the
    /// withdrawn one. Records what it deleted and what it left.
    pub fn purge(&mut self, id: &str, dir: &Path) -> Result<PurgeReport, LedgerError> {
        let req = self.request(id)?;
        Self::require_state(
            &req,
            &[Status::Applied, Status::Notified, Status::Closed],
            "purge (apply first)",
        )?;
        let mut report = PurgeReport {
            dir: dir.display().to_string(),
            ..PurgeReport::default()
        };
        for t in self.tombstones(id)? {
            match purge_one(dir, &t) {
                Ok(()) => report.deleted.push(t.path),
                Err(why) => report.skipped.push((t.path, why)),
            }
        }
        let detail = serde_json::to_value(&report).expect("report serialises");
        self.write(|w| {
            action(w, id, "purged", &detail)?;
            w.event("request.purged", json!({"id": id, "report": detail}))
        })?;
        Ok(report)
    }

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
        let mut files = Vec::new();
        for (n, ((name, contact), got)) in groups.iter().enumerate() {
            if done.contains(&(name.clone(), contact.clone())) {
                continue;
            }
            let releases: Vec<String> = got
                .iter()
                .map(|(v, _)| format!("{}@{v}", req.dataset))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // The withdrawn items that were in a release this recipient received.
            let mut items: Vec<&TombstoneRow> = Vec::new();
            for t in &tombs {
                let mut held = false;
                for (v, _) in got {
                    held |= self
                        .conn
                        .prepare_cached(
                            "SELECT 1 FROM items WHERE dataset = ?1 AND version = ?2 AND path = ?3",
                        )?
                        .exists(params![req.dataset, v, t.path])?;
                }
                if held {
                    items.push(t);
                }
            }
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
            });
            let mut json_bytes = serde_json::to_vec_pretty(&body).expect("notice serialises");
            json_bytes.push(b'\n');
            let text = notice_text(
                &req,
                name,
                contact,
                &releases,
                &items,
                current.as_ref(),
                &now,
            );
            let stem = format!("{:03}-{}", n + 1, slug(name));
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
            set_status(w, id, Status::Notified)
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
    pub fn ack(&mut self, id: &str, who: &str, note: &str) -> Result<usize, LedgerError> {
        self.request(id)?;
        let n = self.write(|w| {
            let n = w.tx.execute(
                "UPDATE notices SET ack_at = ?3, ack_note = ?4
                 WHERE request = ?1 AND (name = ?2 OR contact = ?2)",
                params![id, who, w.now, note],
            )?;
            if n > 0 {
                w.event(
                    "notice.acknowledged",
                    json!({"id": id, "who": who, "note": note}),
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

    /// The public withdrawals feed: one JSON object per applied request, oldest first. Only
    /// blake3 hashes of withdrawn files; perceptual hashes stay private.
    pub fn withdrawals(&self) -> Result<Vec<Value>, LedgerError> {
        let mut out = Vec::new();
        let mut reqs = self.requests()?;
        reqs.sort_by(|a, b| a.id.cmp(&b.id));
        for r in reqs {
            if !matches!(
                r.status,
                Status::Applied | Status::Notified | Status::Closed
            ) {
                continue;
            }
            let applied_at: Option<String> = self
                .conn
                .query_row(
                    "SELECT at FROM actions WHERE request = ?1 AND kind = 'applied' ORDER BY id LIMIT 1",
                    [&r.id],
                    |row| row.get(0),
                )
                .optional()?;
            let mut stmt = self.conn.prepare_cached(
                "SELECT version FROM releases WHERE dataset = ?1 AND status_request = ?2",
            )?;
            let mut releases: Vec<String> = stmt
                .query_map(params![r.dataset, r.id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            releases.sort_by(|a, b| version_order(a, b));
            let tombs = self.tombstones(&r.id)?;
            let new_release = tombs.iter().find_map(|t| t.new_version.clone());
            let hashes: BTreeSet<String> = tombs.into_iter().map(|t| t.blake3).collect();
            out.push(json!({
                "request": r.id,
                "date": applied_at,
                "dataset": r.dataset,
                "whole_dataset": r.whole_dataset,
                "releases": releases,
                "new_release": new_release,
                "withdrawn_blake3": hashes,
            }));
        }
        Ok(out)
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

fn purge_one(dir: &Path, t: &TombstoneRow) -> Result<(), String> {
    if !veil_ledger::safe_rel_path(&t.path) {
        return Err("unsafe path (absolute or with ..): not touched".into());
    }
    let mut target = PathBuf::from(dir);
    let parts: Vec<&str> = t.path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        target.push(part);
        let meta = match std::fs::symlink_metadata(&target) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("absent".into()),
            Err(e) => return Err(format!("unreadable: {e}")),
        };
        let last = i + 1 == parts.len();
        if meta.file_type().is_symlink() {
            return Err("a link is on the path (links are not followed): not touched".into());
        }
        if !last && !meta.is_dir() {
            return Err("a parent is not a directory".into());
        }
        if last && !meta.is_file() {
            return Err("not a regular file: not touched".into());
        }
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(&target).map_err(|e| format!("unreadable: {e}"))?)
        .map_err(|e| format!("unreadable: {e}"))?;
    let actual = h.finalize().to_hex().to_string();
    if actual != t.blake3 {
        return Err(format!(
            "content differs (blake3 {actual}): not the withdrawn file, left in place"
        ));
    }
    std::fs::remove_file(&target).map_err(|e| format!("cannot delete: {e}"))
}

fn apply_whole(
    w: &Writer<'_>,
    req: &Request,
    releases: &[crate::ReleaseRow],
) -> Result<ApplyReport, LedgerError> {
    w.tx.execute(
        "UPDATE datasets SET status = 'withdrawn', withdrawn_by = ?2, withdrawn_at = ?3 WHERE name = ?1",
        params![req.dataset, req.id, w.now],
    )?;
    w.tx.execute(
        "UPDATE releases SET status = 'withdrawn', status_request = ?2 WHERE dataset = ?1",
        params![req.dataset, req.id],
    )?;
    // Newest release first, so each path's tombstone names the newest release that held it.
    for r in releases.iter().rev() {
        w.tx.execute(
            "INSERT OR IGNORE INTO tombstones (request, dataset, version, new_version, path, size,
                 blake3, source_blake3)
             SELECT ?1, dataset, version, NULL, path, size, blake3, source_blake3
             FROM items WHERE dataset = ?2 AND version = ?3",
            params![req.id, req.dataset, r.version],
        )?;
    }
    Ok(ApplyReport {
        dataset: req.dataset.clone(),
        whole_dataset: true,
        new_release: None,
        withdrawn_releases: releases.iter().map(|r| r.version.clone()).collect(),
        tombstones: tombstones_in(&w.tx, &req.id)?,
    })
}

fn tombstones_in(conn: &rusqlite::Connection, id: &str) -> Result<Vec<TombstoneRow>, LedgerError> {
    let mut stmt = conn.prepare(
        "SELECT dataset, version, new_version, path, size, blake3, source_blake3
         FROM tombstones WHERE request = ?1 ORDER BY dataset, path",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(TombstoneRow {
            dataset: r.get(0)?,
            version: r.get(1)?,
            new_version: r.get(2)?,
            path: r.get(3)?,
            size: r.get(4)?,
            blake3: r.get(5)?,
            source_blake3: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn apply_items(
    w: &Writer<'_>,
    req: &Request,
    releases: &[crate::ReleaseRow],
    root: &Path,
    new_version: Option<&str>,
) -> Result<ApplyReport, LedgerError> {
    let id = req.id.as_str();
    let ds = req.dataset.as_str();
    // The confirmed items, and every item of the dataset that is the same file or the same
    // source photo (a withdrawn photo is withdrawn under any path, in any release).
    w.tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed (item INTEGER PRIMARY KEY); DELETE FROM temp.doomed;",
    )?;
    w.tx.execute(
        "INSERT OR IGNORE INTO temp.doomed
         SELECT i.id FROM items i WHERE i.dataset = ?1 AND (
             i.path IN (SELECT c.path FROM matches m JOIN items c ON c.id = m.item
                        WHERE m.request = ?2 AND m.state = 'confirmed')
          OR i.blake3 IN (SELECT c.blake3 FROM matches m JOIN items c ON c.id = m.item
                        WHERE m.request = ?2 AND m.state = 'confirmed')
          OR i.source_blake3 IN (SELECT c.source_blake3 FROM matches m JOIN items c ON c.id = m.item
                        WHERE m.request = ?2 AND m.state = 'confirmed'))",
        params![ds, id],
    )?;
    let current = releases.iter().find(|r| r.status == "current");
    let mut new_release = None;
    if let Some(cur) = current {
        let paths: BTreeSet<String> = {
            let mut stmt = w.tx.prepare(
                "SELECT i.path FROM items i JOIN temp.doomed d ON d.item = i.id
                 WHERE i.dataset = ?1 AND i.version = ?2",
            )?;
            let rows = stmt.query_map(params![ds, cur.version], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if !paths.is_empty() {
            let version = match new_version {
                Some(v) => v.to_string(),
                None => next_version(&cur.version).ok_or_else(|| {
                    LedgerError::Invalid(format!(
                        "cannot derive the version after {:?}; pass --version",
                        cur.version
                    ))
                })?,
            };
            let (info, tombs) = match veil_ledger::cut_release_without(
                root,
                ds,
                &cur.version,
                &version,
                &paths,
                id,
                w.now.clone(),
            ) {
                Ok(r) => r,
                Err(veil_ledger::ReleaseError::AlreadyExists { path }) => {
                    // Left by an interrupted apply of this same request? Then adopt it.
                    let (info, _) = veil_ledger::load_release(root, ds, &version)?;
                    let tombs = veil_ledger::load_tombstones(root, ds, &version)?;
                    let same = info.parent.as_deref() == Some(cur.version.as_str())
                        && !tombs.is_empty()
                        && tombs.iter().all(|t| t.request == id)
                        && tombs
                            .iter()
                            .map(|t| t.path.clone())
                            .collect::<BTreeSet<_>>()
                            == paths;
                    if !same {
                        return Err(veil_ledger::ReleaseError::AlreadyExists { path }.into());
                    }
                    (info, tombs)
                }
                Err(e) => return Err(e.into()),
            };
            let (_, items) = veil_ledger::load_release(root, ds, &version)?;
            insert_release(w, &info, &items)?;
            for t in &tombs {
                w.tx.execute(
                    "INSERT OR IGNORE INTO tombstones (request, dataset, version, new_version, path,
                         size, blake3, source_blake3)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![id, ds, cur.version, version, t.path, t.size, t.blake3, t.source_blake3],
                )?;
            }
            new_release = Some((version, info.merkle_root));
        }
    }
    // Older releases' copies (other paths or versions), newest release first.
    for r in releases.iter().rev() {
        w.tx.execute(
            "INSERT OR IGNORE INTO tombstones (request, dataset, version, new_version, path, size,
                 blake3, source_blake3)
             SELECT ?1, i.dataset, i.version, ?4, i.path, i.size, i.blake3, i.source_blake3
             FROM items i JOIN temp.doomed d ON d.item = i.id
             WHERE i.dataset = ?2 AND i.version = ?3",
            params![id, ds, r.version, new_release.as_ref().map(|n| n.0.clone())],
        )?;
    }
    let mut withdrawn = Vec::new();
    for r in releases {
        let held: i64 = w.tx.query_row(
            "SELECT COUNT(*) FROM items i JOIN temp.doomed d ON d.item = i.id
             WHERE i.dataset = ?1 AND i.version = ?2",
            params![ds, r.version],
            |row| row.get(0),
        )?;
        if held > 0 {
            w.tx.execute(
                "UPDATE releases SET status = 'withdrawn', status_request = ?3,
                     superseded_by = COALESCE(?4, superseded_by)
                 WHERE dataset = ?1 AND version = ?2",
                params![ds, r.version, id, new_release.as_ref().map(|n| n.0.clone())],
            )?;
            withdrawn.push(r.version.clone());
        }
    }
    if withdrawn.is_empty() {
        return Err(LedgerError::State {
            id: id.to_string(),
            what: "none of the confirmed items is in a release any more".into(),
        });
    }
    Ok(ApplyReport {
        dataset: ds.to_string(),
        whole_dataset: false,
        new_release,
        withdrawn_releases: withdrawn,
        tombstones: tombstones_in(&w.tx, id)?,
    })
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

    #[test]
    fn purge_touches_only_the_withdrawn_file_inside_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(tree.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(tree.join("a/x.jpg"), b"withdrawn").unwrap();
        std::fs::write(tree.join("a/y.jpg"), b"someone else").unwrap();
        std::fs::write(outside.join("z.jpg"), b"withdrawn").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        let tomb = |path: &str| TombstoneRow {
            dataset: "d".into(),
            version: "1".into(),
            new_version: Some("2".into()),
            path: path.into(),
            size: 9,
            blake3: blake3::hash(b"withdrawn").to_hex().to_string(),
            source_blake3: None,
        };
        for (path, why) in [
            ("../outside/z.jpg", "unsafe path"),
            ("/etc/passwd", "unsafe path"),
            ("link/z.jpg", "a link is on the path"),
            ("a/y.jpg", "content differs"),
            ("a/none.jpg", "absent"),
        ] {
            let err = purge_one(&tree, &tomb(path)).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
        assert!(outside.join("z.jpg").exists());
        assert!(tree.join("a/y.jpg").exists());
        purge_one(&tree, &tomb("a/x.jpg")).unwrap();
        assert!(!tree.join("a/x.jpg").exists());
    }

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(slug("ACME Labs / Research"), "acme-labs---research");
        assert_eq!(slug("../../etc"), "etc");
        assert_eq!(slug("北京"), "recipient");
    }
}
