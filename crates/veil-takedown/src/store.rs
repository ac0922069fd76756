//! The SQLite file: opening it safely, versioned migrations, write transactions and the
//! hash-chained event log.
//!
//! Every change to the ledger happens inside one `BEGIN IMMEDIATE` transaction that also appends
//! an event. Event `n` is stored with `prev` = hash of event `n - 1` (64 zeros for the first) and
//! `hash = blake3(line)`, where `line` is the event's canonical JSON line
//! `{"seq":n,"at":"...","kind":"...","payload":{...},"prev":"..."}` (payload keys sorted, no
//! spaces). `meta.head` holds `seq:hash` of the last event, so deleting the newest events is
//! detected as well as editing or deleting older ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use serde_json::Value;

use crate::LedgerError;

/// `meta.format` of a veil ledger.
pub const FORMAT: &str = "veil-ledger";
/// `prev` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Schema migrations, in order. The ledger's `meta.schema_version` is the number applied; a
/// ledger with a larger number was written by a newer veil and is refused.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// An open ledger.
#[derive(Debug)]
pub struct Ledger {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

/// A write transaction; every change made through it is paired with events.
pub(crate) struct Writer<'a> {
    pub tx: Transaction<'a>,
    pub now: String,
}

impl Writer<'_> {
    /// Appends an event to the chain, with the rows written since the previous event (`writes`)
    /// and the digest of the state after them (`state`).
    pub fn event(&self, kind: &str, payload: Value) -> Result<(), LedgerError> {
        self.event_with(kind, payload, None)
    }

    /// [`Writer::event`] with a `snapshot` of the whole state (a JSON array text) added.
    pub fn event_with(
        &self,
        kind: &str,
        payload: Value,
        snapshot: Option<String>,
    ) -> Result<(), LedgerError> {
        let last: Option<(i64, String)> = self
            .tx
            .query_row(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (seq, prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, GENESIS.to_string()),
        };
        let mut payload = serde_json::to_string(&payload).expect("JSON values serialise");
        // The payload's own keys (sorted), then `snapshot`, `writes` and `state` in that order.
        // Built in place (the writes of a large import are hundreds of MB): no copies.
        payload.pop();
        if payload.len() > 1 {
            payload.push(',');
        }
        if let Some(s) = snapshot {
            payload.push_str("\"snapshot\":");
            payload.push_str(&s);
            payload.push(',');
        }
        payload.push_str("\"writes\":");
        crate::replay::take_writes_into(&self.tx, &mut payload)?;
        payload.push_str(",\"state\":\"");
        payload.push_str(&crate::replay::state_digest(&self.tx)?);
        payload.push_str("\"}");
        let hash = event_hash(seq, &self.now, kind, &payload, &prev);
        self.tx.execute(
            "INSERT INTO events (seq, at, kind, payload, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![seq, self.now, kind, payload, prev, hash],
        )?;
        self.tx.execute(
            "INSERT INTO meta (key, value) VALUES ('head', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [format!("{seq}:{hash}")],
        )?;
        Ok(())
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// The canonical line of an event (what is hashed).
pub fn event_line(seq: i64, at: &str, kind: &str, payload: &str, prev: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"at\":{},\"kind\":{},\"payload\":{payload},\"prev\":{}}}",
        json_str(at),
        json_str(kind),
        json_str(prev)
    )
}

/// blake3 of [`event_line`], hex.
pub fn event_hash(seq: i64, at: &str, kind: &str, payload: &str, prev: &str) -> String {
    // The line's parts are hashed in order rather than copied into one string first.
    let line = event_line(seq, at, kind, "", prev);
    let (head, tail) = line.split_at(line.find(",\"prev\":").expect("the line has prev"));
    let mut h = blake3::Hasher::new();
    h.update(head.as_bytes());
    h.update(payload.as_bytes());
    h.update(tail.as_bytes());
    h.finalize().to_hex().to_string()
}

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub payload: String,
    pub prev: String,
    pub hash: String,
}

impl Event {
    /// The export line: the canonical line with `"hash"` added at the end.
    pub fn export_line(&self) -> String {
        let line = event_line(self.seq, &self.at, &self.kind, &self.payload, &self.prev);
        format!(
            "{},\"hash\":{}}}",
            &line[..line.len() - 1],
            json_str(&self.hash)
        )
    }
}

/// Result of [`Ledger::verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub events: u64,
    pub head: String,
    /// The first problem found: `(seq, what)`.
    pub problem: Option<(i64, String)>,
}

/// Hamming distance SQL function: popcount of the XOR of two integers or two equal-length
/// blobs; NULL otherwise.
fn hamming(a: ValueRef<'_>, b: ValueRef<'_>) -> Option<i64> {
    match (a, b) {
        (ValueRef::Integer(x), ValueRef::Integer(y)) => Some(i64::from((x ^ y).count_ones())),
        (ValueRef::Blob(x), ValueRef::Blob(y)) if x.len() == y.len() => {
            let (xc, xr) = x.split_at(x.len() / 8 * 8);
            let (yc, yr) = y.split_at(xc.len());
            let words = xc.chunks_exact(8).zip(yc.chunks_exact(8)).map(|(p, q)| {
                let p = u64::from_le_bytes(p.try_into().expect("8 bytes"));
                let q = u64::from_le_bytes(q.try_into().expect("8 bytes"));
                i64::from((p ^ q).count_ones())
            });
            let rest = xr
                .iter()
                .zip(yr)
                .map(|(p, q)| i64::from((p ^ q).count_ones()));
            Some(words.chain(rest).sum())
        }
        _ => None,
    }
}

/// Photo matching in one SQL call per item: arguments are the item's source PDQ, its quality,
/// output PDQ, its quality, source dHash, output dHash, then the photo's PDQ (NULL when its
/// quality is too low) and dHash. Returns `side * 1000 + distance` (side 0 PDQ of the source,
/// 1 PDQ of the output, 2 dHash of the source, 3 dHash of the output; PDQ preferred, then the
/// smaller distance) or NULL when nothing is within the thresholds.
/// Creates a migrated ledger at `tmp` (a fresh file: whatever was at that name is removed, a link
/// is not followed) and closes it, so that the file alone holds it.
fn create_migrated(tmp: &Path) -> Result<(), LedgerError> {
    remove_sqlite_files(tmp);
    // An empty file is an empty SQLite database.
    veil_ledger::fsutil::create_fresh(tmp).map_err(|e| LedgerError::Io {
        path: tmp.to_path_buf(),
        source: e,
    })?;
    let conn = Connection::open_with_flags(
        tmp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let mut ledger = Ledger::configure(conn, tmp)?;
    ledger.migrate()?;
    ledger.conn.close().map_err(|(_, e)| e)?;
    // Closing the last connection checkpointed the WAL into the file and deleted it; a WAL left
    // behind would not follow the file to its name.
    let wal = sqlite_file(tmp, "-wal");
    if std::fs::symlink_metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(LedgerError::Invalid(format!(
            "{}: the new ledger's write-ahead log was not checkpointed",
            wal.display()
        )));
    }
    Ok(())
}

/// `db` with `suffix` appended to its file name (`-wal`, `-shm`, `-journal`).
fn sqlite_file(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes a database file and its journal, WAL and shared-memory files (entries, not what a link
/// points to); missing ones are fine.
fn remove_sqlite_files(db: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(sqlite_file(db, suffix));
    }
}

/// Removes the files `DIR/PREFIX<pid>[-journal|-wal|-shm]` of ledger creations that were killed:
/// those of this process id (a previous process with the same id), of a process that no longer
/// runs (where `/proc` tells), and any older than ten minutes.
fn remove_killed_creations(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let proc = Path::new("/proc/self").exists();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let tail = &rest[pid.len()..];
        if pid.is_empty() || !["", "-journal", "-wal", "-shm"].contains(&tail) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        let gone = pid == std::process::id().to_string()
            || (proc && !Path::new("/proc").join(&pid).exists());
        if !meta.is_dir() && (old || gone) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn photo_near(args: [ValueRef<'_>; 8]) -> Option<i64> {
    use crate::{DHASH_MAX_DISTANCE, PDQ_MAX_DISTANCE, PDQ_MIN_QUALITY};
    let [sp, sq, op, oq, sd, od, pdq, dhash] = args;
    let good =
        |q: ValueRef<'_>| matches!(q, ValueRef::Integer(q) if q >= i64::from(PDQ_MIN_QUALITY));
    let pdq_side = |h: ValueRef<'_>, q: ValueRef<'_>| {
        if good(q) {
            hamming(h, pdq).filter(|d| *d <= i64::from(PDQ_MAX_DISTANCE))
        } else {
            None
        }
    };
    let dhash_side =
        |h: ValueRef<'_>| hamming(h, dhash).filter(|d| *d <= i64::from(DHASH_MAX_DISTANCE));
    let best = |a: Option<i64>, b: Option<i64>, base: i64| match (a, b) {
        (Some(x), Some(y)) if y < x => Some(base + 1000 + y),
        (Some(x), _) => Some(base + x),
        (None, Some(y)) => Some(base + 1000 + y),
        (None, None) => None,
    };
    best(pdq_side(sp, sq), pdq_side(op, oq), 0)
        .or_else(|| best(dhash_side(sd), dhash_side(od), 2000))
}

impl Ledger {
    /// Opens an existing ledger for use. The file is checked before anything is written to it:
    /// a file that is not a veil ledger, one written by a newer veil, or one whose event chain
    /// does not verify (altered, deleted or truncated events) is refused and left unchanged.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        let ledger = Ledger::open_unverified(path)?;
        if let Some((seq, what)) = ledger.verify_chain()?.problem {
            return Err(LedgerError::Tampered {
                path: path.to_path_buf(),
                seq,
                what,
            });
        }
        Ok(ledger)
    }

    /// Opens an existing ledger without checking its event chain (to verify or export it).
    pub fn open_unverified(path: &Path) -> Result<Ledger, LedgerError> {
        if !path.exists() {
            return Err(LedgerError::Missing {
                path: path.to_path_buf(),
            });
        }
        let not_ledger = |reason: String| LedgerError::NotALedger {
            path: path.to_path_buf(),
            reason,
        };
        let mut head = [0u8; 16];
        {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| LedgerError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
            f.read_exact(&mut head)
                .map_err(|_| not_ledger("shorter than an SQLite header".into()))?;
        }
        if &head != b"SQLite format 3\0" {
            return Err(not_ledger("not an SQLite database".into()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let format: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| not_ledger(format!("no veil meta table ({e})")))?;
        if format.as_deref() != Some(FORMAT) {
            return Err(not_ledger(format!("meta.format is {format:?}")));
        }
        let version = schema_version(&conn)?;
        if version > SCHEMA_VERSION {
            return Err(LedgerError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let mut ledger = Ledger::configure(conn, path)?;
        // An older ledger is migrated (a write) only when its event chain verifies: one that
        // does not is left as it is, for `open` to refuse and `ledger verify` to report.
        if version < SCHEMA_VERSION && ledger.verify_chain()?.problem.is_none() {
            ledger.migrate()?;
        }
        Ok(ledger)
    }

    /// Opens the ledger, creating it (and its directory) when the file does not exist.
    ///
    /// A new ledger is created and migrated under a temporary name beside it
    /// (`.NAME.partial-PID`), closed (SQLite checkpoints its WAL into the file and deletes it), and
    /// only then linked to `NAME`, which fails rather than replace a ledger another process
    /// created meanwhile (that one is opened instead); then the directory is fsynced. A kill at any
    /// point leaves no ledger or a complete one, never a file that later commands refuse. The
    /// temporary files of creations that were killed are removed by the next creation.
    pub fn open_or_create(path: &Path) -> Result<Ledger, LedgerError> {
        if path.exists() {
            return Ledger::open(path);
        }
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| LedgerError::Io { path: p, source: e }
        };
        let name = path
            .file_name()
            .ok_or_else(|| LedgerError::Invalid(format!("{}: not a file name", path.display())))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let prefix = format!(".{}.partial-", name.to_string_lossy());
        remove_killed_creations(dir, &prefix);
        let tmp = dir.join(format!("{prefix}{}", std::process::id()));
        let created = create_migrated(&tmp).and_then(|()| {
            match std::fs::hard_link(&tmp, path) {
                // Linked, or a ledger appeared meanwhile: ours is discarded, theirs is opened.
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                // A file system without hard links: a rename, unless a ledger appeared meanwhile.
                Err(_) if path.exists() => Ok(()),
                Err(_) => std::fs::rename(&tmp, path).map_err(io(path)),
            }
        });
        remove_sqlite_files(&tmp);
        created?;
        veil_ledger::fsutil::sync_dir(dir).map_err(io(dir))?;
        Ledger::open(path)
    }

    fn configure(conn: Connection, path: &Path) -> Result<Ledger, LedgerError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A REPLACE deletes the row it replaces through the delete trigger, so replay sees it.
        conn.pragma_update(None, "recursive_triggers", "ON")?;
        crate::replay::install(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Matching scans the items table; memory-mapped reads avoid a copy per page.
        conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
        conn.create_scalar_function(
            "veil_hamming",
            2,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| Ok(hamming(ctx.get_raw(0), ctx.get_raw(1))),
        )?;
        conn.create_scalar_function(
            "veil_photo_near",
            8,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| Ok(photo_near(std::array::from_fn(|i| ctx.get_raw(i)))),
        )?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Applies pending migrations, each with an event, inside one write transaction (so two
    /// processes opening an old ledger at once migrate it once).
    fn migrate(&mut self) -> Result<(), LedgerError> {
        self.write(|w| {
            w.tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            )?;
            let from = schema_version(&w.tx)?;
            if from > SCHEMA_VERSION {
                return Ok(());
            }
            if from == 0 {
                w.tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('format', ?1)",
                    [FORMAT],
                )?;
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
                w.tx.execute_batch(sql)?;
                let to = i as u32 + 1;
                w.tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [to.to_string()],
                )?;
                crate::replay::install(&w.tx)?;
                // From schema 2 on events record their writes; the state they start from is
                // recorded whole (taken on trust from the tables).
                let snapshot = (to == 2)
                    .then(|| crate::replay::snapshot(&w.tx))
                    .transpose()?;
                w.event_with(
                    "ledger.migrated",
                    serde_json::json!({"from": to - 1, "to": to, "tool_version": veil_core::TOOL_VERSION}),
                    snapshot,
                )?;
            }
            Ok(())
        })
    }

    /// Rebuilds the state from the events and lists every difference from the tables.
    pub fn replay(&self) -> Result<crate::replay::ReplayReport, LedgerError> {
        let snapshot = self.conn.unchecked_transaction()?;
        let r = crate::replay::replay(&self.conn, &self.path, MIGRATIONS);
        snapshot.finish()?;
        r
    }

    /// Path of the ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in an immediate (write-locked) transaction, committed when `f` succeeds and
    /// rolled back otherwise.
    pub(crate) fn write<T>(
        &mut self,
        f: impl FnOnce(&Writer<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let w = Writer {
            tx,
            now: veil_core::now_rfc3339(),
        };
        // Never build on a state the events do not account for.
        let tail: Option<String> =
            w.tx.query_row(
                "SELECT substr(payload, -80) FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None);
        if let Some(recorded) = tail
            .as_deref()
            .and_then(|t| t.rsplit_once("\"state\":\""))
            .and_then(|(_, s)| s.strip_suffix("\"}"))
        {
            if crate::replay::state_digest(&w.tx)? != recorded {
                return Err(LedgerError::Diverged {
                    path: self.path.clone(),
                });
            }
        }
        let out = f(&w)?;
        // Writes made after the transaction's last event would be in no event: they get one.
        let pending: i64 =
            w.tx.query_row("SELECT count(*) FROM temp.veil_writes", [], |r| r.get(0))
                .unwrap_or(0);
        if pending > 0 {
            w.event("ledger.writes", serde_json::json!({}))?;
        }
        w.tx.commit()?;
        Ok(out)
    }

    /// All events in order.
    pub fn events(&self) -> Result<Vec<Event>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, kind, payload, prev, hash FROM events ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok(Event {
                seq: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                payload: r.get(3)?,
                prev: r.get(4)?,
                hash: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Recomputes the chain: sequence numbers without gaps from 1, each hash, each link, and the
    /// head recorded in `meta`. Reports the first problem.
    pub fn verify_chain(&self) -> Result<ChainReport, LedgerError> {
        // One read transaction: the events and the head come from the same snapshot even while
        // another process appends (WAL readers see a consistent state).
        let snapshot = self.conn.unchecked_transaction()?;
        let events = self.events()?;
        let mut prev = GENESIS.to_string();
        let mut problem = None;
        for (i, e) in events.iter().enumerate() {
            let expected_seq = i as i64 + 1;
            if e.seq != expected_seq {
                problem = Some((
                    expected_seq,
                    format!("event {expected_seq} is missing (next stored is {})", e.seq),
                ));
                break;
            }
            if e.prev != prev {
                problem = Some((
                    e.seq,
                    format!(
                        "event {} does not follow event {} (prev {} but that event hashes to {})",
                        e.seq,
                        e.seq - 1,
                        e.prev,
                        prev
                    ),
                ));
                break;
            }
            let actual = event_hash(e.seq, &e.at, &e.kind, &e.payload, &e.prev);
            if actual != e.hash {
                problem = Some((
                    e.seq,
                    format!(
                        "event {} ({}) was altered: its content hashes to {actual}, stored hash {}",
                        e.seq, e.kind, e.hash
                    ),
                ));
                break;
            }
            prev = actual;
        }
        let head: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'head'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let last = events.last().map(|e| format!("{}:{}", e.seq, e.hash));
        if problem.is_none() && head != last {
            let n = events.len() as i64;
            problem = Some((
                n + 1,
                format!(
                    "the newest events are missing: head is {}, last stored event is {}",
                    head.as_deref().unwrap_or("none"),
                    last.as_deref().unwrap_or("none")
                ),
            ));
        }
        snapshot.finish()?;
        Ok(ChainReport {
            events: events.len() as u64,
            head: prev,
            problem,
        })
    }
}

fn schema_version(conn: &Connection) -> Result<u32, LedgerError> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_4_keeps_every_tombstone_and_holds_one_per_release() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        for sql in &MIGRATIONS[..3] {
            db.execute_batch(sql).unwrap();
        }
        crate::replay::install(&db).unwrap();
        db.execute_batch(
            "INSERT INTO datasets (name) VALUES ('d');
             INSERT INTO requests (id, dataset, whole_dataset, scope, requester, contact, basis,
                 note, received_at, due, policy, status, updated_at)
             VALUES ('TD-1', 'd', 0, '{}', 'r', 'c', 'b', '', 't', 't', 'default', 'applied', 't');
             INSERT INTO tombstones VALUES ('TD-1', 'd', '2', '3', 'a.jpg', 2, 'aa', NULL);",
        )
        .unwrap();
        db.execute_batch(MIGRATIONS[3]).unwrap();
        crate::replay::install(&db).unwrap();
        let kept: (String, String) = db
            .query_row("SELECT version, blake3 FROM tombstones", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(kept, ("2".into(), "aa".into()));
        // The same path withdrawn from release 1 too, with that release's bytes.
        db.execute_batch(
            "INSERT INTO tombstones VALUES ('TD-1', 'd', '1', '3', 'a.jpg', 2, 'bb', NULL);",
        )
        .unwrap();
        let n: i64 = db
            .query_row("SELECT COUNT(*) FROM tombstones", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    /// A schema-3 ledger whose first event was altered is refused before the migration to the
    /// current schema writes anything: the file is byte-for-byte what it was.
    #[test]
    fn an_older_ledger_with_a_broken_chain_is_refused_unchanged() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("old.sqlite");
        {
            let db = Connection::open(&path).unwrap();
            db.pragma_update(None, "journal_mode", "WAL").unwrap();
            db.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                .unwrap();
            for sql in &MIGRATIONS[..3] {
                db.execute_batch(sql).unwrap();
            }
            db.execute_batch(&format!(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('format', '{FORMAT}');
                 INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '3');
                 INSERT INTO events (seq, at, kind, payload, prev, hash)
                 VALUES (1, '2026-11-25T00:00:00Z', 'ledger.migrated', '{{}}', '{GENESIS}', 'altered');"
            ))
            .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let Err(err) = Ledger::open(&path) else {
            panic!("a broken chain is refused");
        };
        assert!(matches!(err, LedgerError::Tampered { seq: 1, .. }), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was written"
        );
        let version: String = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, "3");
    }

    #[test]
    fn pinned_event_hash() {
        // The first event of a ledger created by schema 1 (payload keys sorted).
        let line = event_line(
            1,
            "2026-11-25T00:00:00Z",
            "ledger.migrated",
            r#"{"from":0,"to":1,"tool_version":"0.1.0"}"#,
            GENESIS,
        );
        assert_eq!(
            line,
            r#"{"seq":1,"at":"2026-11-25T00:00:00Z","kind":"ledger.migrated","payload":{"from":0,"to":1,"tool_version":"0.1.0"},"prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#
        );
        let pinned = "6c1988c645f7c4c082f164c544d1bde199920c65a0d8b2536a4a8a9540e42409";
        assert_eq!(blake3::hash(line.as_bytes()).to_hex().to_string(), pinned);
        assert_eq!(
            event_hash(
                1,
                "2026-11-25T00:00:00Z",
                "ledger.migrated",
                r#"{"from":0,"to":1,"tool_version":"0.1.0"}"#,
                GENESIS
            ),
            pinned
        );
    }

    #[test]
    fn hamming_of_ints_and_blobs() {
        assert_eq!(
            hamming(ValueRef::Integer(0b1011), ValueRef::Integer(0)),
            Some(3)
        );
        assert_eq!(
            hamming(ValueRef::Integer(-1), ValueRef::Integer(0)),
            Some(64)
        );
        assert_eq!(
            hamming(ValueRef::Blob(&[0xff, 0]), ValueRef::Blob(&[0, 1])),
            Some(9)
        );
        assert_eq!(hamming(ValueRef::Blob(&[1]), ValueRef::Blob(&[1, 2])), None);
        assert_eq!(hamming(ValueRef::Null, ValueRef::Integer(1)), None);
    }

    #[test]
    fn chain_detects_edits_deletions_and_truncation() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("l.sqlite");
        let mut l = Ledger::open_or_create(&p).unwrap();
        for i in 0..5 {
            l.write(|w| w.event("test.event", serde_json::json!({"i": i})))
                .unwrap();
        }
        assert_eq!(l.verify_chain().unwrap().problem, None);
        assert_eq!(
            l.verify_chain().unwrap().events,
            5 + u64::from(SCHEMA_VERSION)
        ); // one event per migration, then five

        let edit = |sql: &str| {
            let t2 = tempfile::tempdir().unwrap();
            let q = t2.path().join("l.sqlite");
            // Copy through SQLite so the WAL content is included.
            l.conn
                .execute("VACUUM INTO ?1", [q.to_str().unwrap()])
                .unwrap();
            let c = Connection::open(&q).unwrap();
            c.execute_batch(sql).unwrap();
            drop(c);
            assert!(matches!(
                Ledger::open(&q),
                Err(LedgerError::Tampered { .. })
            ));
            let r = Ledger::open_unverified(&q).unwrap().verify_chain().unwrap();
            (t2, r.problem)
        };
        let (_t, p3) = edit("UPDATE events SET payload = '{\"i\":9}' WHERE seq = 3");
        assert_eq!(p3.unwrap().0, 3);
        let (_t, p4) = edit("DELETE FROM events WHERE seq = 4");
        assert_eq!(p4.unwrap().0, 4);
        let (_t, p6) = edit("DELETE FROM events WHERE seq = 6");
        assert_eq!(p6.unwrap().0, 6);
        // Rewriting an event with a fresh hash still breaks the link to the next one.
        let seq2 = l.events().unwrap()[1].clone();
        let forged = event_hash(2, &seq2.at, &seq2.kind, "{\"i\":7}", &seq2.prev);
        let (_t, p2) = edit(&format!(
            "UPDATE events SET payload = '{{\"i\":7}}', hash = '{forged}' WHERE seq = 2"
        ));
        assert_eq!(p2.unwrap().0, 3);
    }

    #[test]
    fn a_ledger_is_created_beside_its_name_and_leftovers_of_killed_creations_go() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("l.sqlite");
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        // A link at this process's temporary name, and the files of a creation killed earlier
        // (a process id no system has).
        let own = t
            .path()
            .join(format!(".l.sqlite.partial-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &own).unwrap();
        let dead = t.path().join(".l.sqlite.partial-999999999");
        std::fs::write(&dead, b"").unwrap();
        std::fs::write(sqlite_file(&dead, "-wal"), b"").unwrap();
        let other = t.path().join(".l.sqlite.partial-x");
        std::fs::write(&other, b"not ours").unwrap();
        let l = Ledger::open_or_create(&p).unwrap();
        assert_eq!(l.verify_chain().unwrap().problem, None);
        drop(l);
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
        let mut left: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial"))
            .collect();
        left.sort();
        if Path::new("/proc/self").exists() {
            assert_eq!(left, [".l.sqlite.partial-x"]);
        }
        assert!(std::fs::symlink_metadata(&own).is_err());
        // Opened as it is the next time, in WAL mode.
        let l = Ledger::open_or_create(&p).unwrap();
        let mode: String = l
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(
            l.events().unwrap().len(),
            SCHEMA_VERSION as usize,
            "one event per migration"
        );
    }

    #[test]
    fn refuses_foreign_and_newer_files_without_touching_them() {
        let t = tempfile::tempdir().unwrap();
        let text = t.path().join("notes.sqlite");
        std::fs::write(&text, "hello, not a database at all").unwrap();
        assert!(matches!(
            Ledger::open(&text),
            Err(LedgerError::NotALedger { .. })
        ));
        let foreign = t.path().join("other.sqlite");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE x (a INTEGER); INSERT INTO x VALUES (1);")
            .unwrap();
        let before = std::fs::read(&foreign).unwrap();
        assert!(matches!(
            Ledger::open(&foreign),
            Err(LedgerError::NotALedger { .. })
        ));
        assert_eq!(std::fs::read(&foreign).unwrap(), before);

        let newer = t.path().join("newer.sqlite");
        drop(Ledger::open_or_create(&newer).unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [(SCHEMA_VERSION + 1).to_string()],
            )
            .unwrap();
        assert!(matches!(
            Ledger::open(&newer),
            Err(LedgerError::TooNew { .. })
        ));
    }
}
