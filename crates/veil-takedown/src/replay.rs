//! The ledger's state as a function of its events: every write records the rows it changed, and
//! `verify` rebuilds every table from the events alone and compares.
//!
//! **Capture.** Each connection installs temporary triggers on the state tables ([`STATE_TABLES`])
//! that log every inserted, updated and deleted row into `temp.veil_writes` as
//! `[table, op, key, row]`: `op` is `insert`, `update` or `delete`, `key` the primary-key columns
//! of the row before the change (after, for an insert), `row` every column after the change (null
//! for a delete); each value is SQLite's `quote()` of it (`NULL`, `42`, `'text'`, `X'00FF'`), so
//! values replay exactly. [`crate::store::Writer::event`] moves the logged writes into the event's
//! payload (`writes`) and adds `state`, the blake3 of every state table after the change
//! ([`state_digest`]). A change made by anything else (an SQLite client) is in no event.
//!
//! **Snapshot.** Ledgers made before schema 2 recorded no writes: the migration to schema 2 stores
//! the whole state in its event (`snapshot`, rows as inserts), taken on trust; replay starts there
//! and says how many earlier events it could not replay (their chain is still verified).
//!
//! **Replay.** [`replay`] creates the schema in memory, applies the snapshot and every event's
//! writes in order, and lists each difference from the tables (table, key, column, value from the
//! events, value in the table).

use std::collections::BTreeMap;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use crate::LedgerError;

/// The tables whose rows are the ledger's state (everything but `meta` and `events`), in the
/// order they are digested and replayed.
pub const STATE_TABLES: &[&str] = &[
    "datasets",
    "releases",
    "items",
    "recipients",
    "policies",
    "requests",
    "matches",
    "tombstones",
    "actions",
    "notices",
    "settings",
    "letters",
];

/// Columns of a table and which of them make its primary key.
struct TableInfo {
    columns: Vec<String>,
    key: Vec<String>,
}

fn table_info(conn: &Connection, table: &str) -> Result<TableInfo, LedgerError> {
    let mut stmt = conn.prepare(&format!("PRAGMA main.table_info({table})"))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)?)))?;
    let mut columns = Vec::new();
    let mut key: Vec<(i64, String)> = Vec::new();
    for row in rows {
        let (name, pk) = row?;
        if pk > 0 {
            key.push((pk, name.clone()));
        }
        columns.push(name);
    }
    key.sort();
    Ok(TableInfo {
        columns,
        key: key.into_iter().map(|(_, n)| n).collect(),
    })
}

fn quoted_object(prefix: &str, cols: &[String]) -> String {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| format!("'{c}', quote({prefix}.\"{c}\")"))
        .collect();
    format!("json_object({})", parts.join(", "))
}

/// Installs the capture triggers on this connection (temporary: they live as long as it does),
/// replacing earlier ones (a migration may have added columns). Tables that do not exist yet (a
/// ledger being created) are skipped.
pub(crate) fn install(conn: &Connection) -> Result<(), LedgerError> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS veil_writes (id INTEGER PRIMARY KEY, j TEXT NOT NULL);",
    )?;
    for t in STATE_TABLES {
        let info = table_info(conn, t)?;
        if info.columns.is_empty() {
            continue;
        }
        let all = &info.columns;
        let key = &info.key;
        let sql = format!(
            "DROP TRIGGER IF EXISTS temp.veil_w_{t}_i;
             DROP TRIGGER IF EXISTS temp.veil_w_{t}_u;
             DROP TRIGGER IF EXISTS temp.veil_w_{t}_d;
             CREATE TEMP TRIGGER veil_w_{t}_i AFTER INSERT ON main.{t} BEGIN
               INSERT INTO veil_writes (j) VALUES (json_array('{t}', 'insert', {nk}, {nr}));
             END;
             CREATE TEMP TRIGGER veil_w_{t}_u AFTER UPDATE ON main.{t} BEGIN
               INSERT INTO veil_writes (j) VALUES (json_array('{t}', 'update', {ok}, {nr}));
             END;
             CREATE TEMP TRIGGER veil_w_{t}_d AFTER DELETE ON main.{t} BEGIN
               INSERT INTO veil_writes (j) VALUES (json_array('{t}', 'delete', {ok}, NULL));
             END;",
            nk = quoted_object("NEW", key),
            nr = quoted_object("NEW", all),
            ok = quoted_object("OLD", key),
        );
        conn.execute_batch(&sql)?;
    }
    Ok(())
}

/// The writes logged since the last call, as a JSON array text, and clears the log.
#[cfg(test)]
pub(crate) fn take_writes(conn: &Connection) -> Result<String, LedgerError> {
    let mut out = String::new();
    take_writes_into(conn, &mut out)?;
    Ok(out)
}

/// [`take_writes`] appended to `out`.
pub(crate) fn take_writes_into(conn: &Connection, out: &mut String) -> Result<(), LedgerError> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM temp.sqlite_master WHERE name = 'veil_writes'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        out.push_str("[]");
        return Ok(());
    }
    out.push('[');
    {
        let mut stmt = conn.prepare_cached("SELECT j FROM temp.veil_writes ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut first = true;
        while let Some(r) = rows.next()? {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?);
        }
    }
    out.push(']');
    conn.execute("DELETE FROM temp.veil_writes", [])?;
    Ok(())
}

/// Every row of every state table as an insert (the `snapshot` of a migration event).
pub(crate) fn snapshot(conn: &Connection) -> Result<String, LedgerError> {
    let mut out = String::from("[");
    let mut first = true;
    for t in STATE_TABLES {
        let info = table_info(conn, t)?;
        if info.columns.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT json_array('{t}', 'insert', {}, {}) FROM main.{t} AS r ORDER BY {}",
            quoted_object("r", &info.key),
            quoted_object("r", &info.columns),
            order_by(&info.key)
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?);
        }
    }
    out.push(']');
    Ok(out)
}

fn order_by(key: &[String]) -> String {
    key.iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// blake3 (hex) of the state: for each table of [`STATE_TABLES`] in order, its name and `\n`,
/// then every row in primary-key order, each column as a type byte and its bytes: `N` (null),
/// `I` + 8 bytes little-endian, `R` + 8 bytes of the IEEE double, `T` or `B` + 8-byte
/// little-endian length + the text's UTF-8 or the blob's bytes.
pub fn state_digest(conn: &Connection) -> Result<String, LedgerError> {
    use rusqlite::types::ValueRef;
    let mut h = blake3::Hasher::new();
    for t in STATE_TABLES {
        let info = table_info(conn, t)?;
        if info.columns.is_empty() {
            continue;
        }
        h.update(t.as_bytes());
        h.update(b"\n");
        let cols: Vec<String> = info.columns.iter().map(|c| format!("\"{c}\"")).collect();
        let sql = format!(
            "SELECT {} FROM main.{t} ORDER BY {}",
            cols.join(", "),
            order_by(&info.key)
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([])?;
        // Hashed in 64 KiB pieces: blake3 is fast on long inputs, slow on many tiny ones.
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        while let Some(r) = rows.next()? {
            for i in 0..cols.len() {
                match r.get_ref(i)? {
                    ValueRef::Null => buf.push(b'N'),
                    ValueRef::Integer(v) => {
                        buf.push(b'I');
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        buf.push(b'R');
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                    ValueRef::Text(b) => {
                        buf.push(b'T');
                        buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
                        buf.extend_from_slice(b);
                    }
                    ValueRef::Blob(b) => {
                        buf.push(b'B');
                        buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
                        buf.extend_from_slice(b);
                    }
                }
            }
            if buf.len() >= 1 << 16 {
                h.update(&buf);
                buf.clear();
            }
        }
        h.update(&buf);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// A value as `quote()` wrote it, back to an SQLite value. Anything else is refused (the
/// events are data, never SQL).
fn unquote(s: &str) -> Result<SqlValue, String> {
    if s == "NULL" {
        return Ok(SqlValue::Null);
    }
    if let Some(hex) = s.strip_prefix("X'").and_then(|h| h.strip_suffix('\'')) {
        if hex.len() % 2 != 0 {
            return Err(format!("bad blob literal {s:?}"));
        }
        let bytes: Result<Vec<u8>, _> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect();
        return bytes
            .map(SqlValue::Blob)
            .map_err(|_| format!("bad blob literal {s:?}"));
    }
    if let Some(body) = s.strip_prefix('\'').and_then(|b| b.strip_suffix('\'')) {
        return Ok(SqlValue::Text(body.replace("''", "'")));
    }
    if let Ok(i) = s.parse::<i64>() {
        return Ok(SqlValue::Integer(i));
    }
    s.parse::<f64>()
        .map(SqlValue::Real)
        .map_err(|_| format!("bad literal {s:?}"))
}

/// One difference between the replayed state and the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub table: String,
    /// The row's primary key, `col=value` joined by `, `.
    pub key: String,
    /// The column that differs, or `(row)` when the row exists on one side only.
    pub column: String,
    /// The value from the events (`absent` for a row only in the table).
    pub from_events: String,
    /// The value in the table (`absent` for a row only the events hold).
    pub in_table: String,
}

/// What [`replay`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events whose writes were applied (the snapshot's event included).
    pub replayed: u64,
    /// Events before the first that records its writes (made before schema 2): chained, not
    /// replayed; their outcome is taken from the snapshot.
    pub not_replayable: u64,
    /// The event holding the snapshot the replay started from, if any.
    pub snapshot_event: Option<i64>,
    pub divergences: Vec<Divergence>,
}

type Row = BTreeMap<String, SqlValue>;

fn parse_row(v: &Value, seq: i64) -> Result<Row, LedgerError> {
    let bad = |what: &str| {
        LedgerError::Invalid(format!("event {seq}: {what}; the event cannot be replayed"))
    };
    let obj = v.as_object().ok_or_else(|| bad("a row is not an object"))?;
    let mut row = Row::new();
    for (k, lit) in obj {
        let s = lit
            .as_str()
            .ok_or_else(|| bad("a value is not a literal"))?;
        row.insert(k.clone(), unquote(s).map_err(|e| bad(&e))?);
    }
    Ok(row)
}

/// The columns of every state table of `conn`.
type Columns = BTreeMap<&'static str, Vec<String>>;

fn columns_of(conn: &Connection) -> Result<Columns, LedgerError> {
    STATE_TABLES
        .iter()
        .map(|t| Ok((*t, table_info(conn, t)?.columns)))
        .collect()
}

fn apply_write(mem: &Connection, cols: &Columns, w: &Value, seq: i64) -> Result<(), LedgerError> {
    let bad = |what: String| LedgerError::Invalid(format!("event {seq}: {what}"));
    let arr = w
        .as_array()
        .filter(|a| a.len() == 4)
        .ok_or_else(|| bad("a write is not [table, op, key, row]".into()))?;
    let table = arr[0].as_str().unwrap_or_default();
    if !STATE_TABLES.contains(&table) {
        return Err(bad(format!("a write to an unknown table {table:?}")));
    }
    let op = arr[1].as_str().unwrap_or_default();
    let key = parse_row(&arr[2], seq)?;
    // Column names go into SQL: only the table's own are accepted.
    let columns: &[String] = cols.get(table).map_or(&[], Vec::as_slice);
    let known = |row: &Row| -> Result<(), LedgerError> {
        match row.keys().find(|k| !columns.contains(k)) {
            Some(k) => Err(bad(format!("a write names no column of {table}: {k:?}"))),
            None => Ok(()),
        }
    };
    known(&key)?;
    if key.is_empty() {
        return Err(bad(format!("a write to {table} without a key")));
    }
    let where_ = |start: usize| {
        key.keys()
            .enumerate()
            .map(|(i, k)| format!("\"{k}\" IS ?{}", start + i))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    match op {
        "insert" => {
            let row = parse_row(&arr[3], seq)?;
            known(&row)?;
            let cols: Vec<String> = row.keys().map(|k| format!("\"{k}\"")).collect();
            let marks: Vec<String> = (1..=row.len()).map(|i| format!("?{i}")).collect();
            mem.prepare_cached(&format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                cols.join(", "),
                marks.join(", ")
            ))?
            .execute(params_from_iter(row.values()))?;
        }
        "update" => {
            let row = parse_row(&arr[3], seq)?;
            known(&row)?;
            let sets: Vec<String> = row
                .keys()
                .enumerate()
                .map(|(i, k)| format!("\"{k}\" = ?{}", i + 1))
                .collect();
            let sql = format!(
                "UPDATE {table} SET {} WHERE {}",
                sets.join(", "),
                where_(row.len() + 1)
            );
            mem.prepare_cached(&sql)?
                .execute(params_from_iter(row.values().chain(key.values())))?;
        }
        "delete" => {
            mem.execute(
                &format!("DELETE FROM {table} WHERE {}", where_(1)),
                params_from_iter(key.values()),
            )?;
        }
        other => return Err(bad(format!("unknown write {other:?}"))),
    }
    Ok(())
}

fn show(v: &SqlValue) -> String {
    match v {
        SqlValue::Null => "null".into(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(s) => format!("{s:?}"),
        SqlValue::Blob(b) => format!("x'{}'", crate::anchors::hex(b)),
    }
}

/// Applies the `snapshot` and `writes` of one event's payload while it is parsed.
struct Applier<'a> {
    mem: &'a Connection,
    cols: &'a Columns,
    seq: i64,
    err: Option<LedgerError>,
    writes: bool,
    snapshot: bool,
}

struct PayloadSeed<'a, 'b>(&'b mut Applier<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for PayloadSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PayloadSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event payload object")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "snapshot" => {
                    for t in STATE_TABLES {
                        if let Err(e) = self.0.mem.execute(&format!("DELETE FROM {t}"), []) {
                            self.0.err = Some(e.into());
                            return Err(serde::de::Error::custom("replay failed"));
                        }
                    }
                    map.next_value_seed(WritesSeed(self.0))?;
                    self.0.snapshot = true;
                }
                "writes" => {
                    map.next_value_seed(WritesSeed(self.0))?;
                    self.0.writes = true;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct WritesSeed<'a, 'b>(&'b mut Applier<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for WritesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for WritesSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of writes")
    }
    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while let Some(w) = seq.next_element::<Value>()? {
            if let Err(e) = apply_write(self.0.mem, self.0.cols, &w, self.0.seq) {
                self.0.err = Some(e);
                return Err(serde::de::Error::custom("replay failed"));
            }
        }
        Ok(())
    }
}

/// The row of `table` in `schema` whose key is `key` (column to value), if any.
fn row_by_key(
    conn: &Connection,
    schema: &str,
    table: &str,
    columns: &[String],
    key: &Row,
) -> Result<Option<Row>, LedgerError> {
    let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let cond: Vec<String> = key
        .keys()
        .enumerate()
        .map(|(i, k)| format!("\"{k}\" IS ?{}", i + 1))
        .collect();
    let sql = format!(
        "SELECT {} FROM {schema}.{table} WHERE {}",
        cols.join(", "),
        cond.join(" AND ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(key.values()))?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let mut row = Row::new();
    for (i, c) in columns.iter().enumerate() {
        row.insert(c.clone(), r.get::<_, SqlValue>(i)?);
    }
    Ok(Some(row))
}

/// The rows of `a.table` that `b.table` does not hold identically (SQLite's EXCEPT, so only the
/// differences are ever in memory), as their keys.
fn rows_not_in(
    conn: &Connection,
    table: &str,
    info: &TableInfo,
    a: &str,
    b: &str,
) -> Result<Vec<Row>, LedgerError> {
    let cols: Vec<String> = info.columns.iter().map(|c| format!("\"{c}\"")).collect();
    let list = cols.join(", ");
    let keys: Vec<String> = info.key.iter().map(|c| format!("\"{c}\"")).collect();
    let sql = format!(
        "SELECT {} FROM (SELECT {list} FROM {a}.{table} EXCEPT SELECT {list} FROM {b}.{table})",
        keys.join(", ")
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut key = Row::new();
        for (i, k) in info.key.iter().enumerate() {
            key.insert(k.clone(), r.get::<_, SqlValue>(i)?);
        }
        out.push(key);
    }
    Ok(out)
}

fn key_text(key: &Row, order: &[String]) -> String {
    order
        .iter()
        .map(|k| format!("{k}={}", show(key.get(k).unwrap_or(&SqlValue::Null))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rebuilds the state from the events of `conn`'s ledger in a database in memory, created with
/// `schema` (the migrations' SQL, in order), and lists every difference from `conn`'s tables.
pub(crate) fn replay(
    conn: &Connection,
    ledger_file: &std::path::Path,
    schema: &[&str],
) -> Result<ReplayReport, LedgerError> {
    let mem = Connection::open_in_memory()?;
    for sql in schema {
        mem.execute_batch(sql)?;
    }
    for t in STATE_TABLES {
        mem.execute(&format!("DELETE FROM {t}"), [])?;
    }
    let cols = columns_of(&mem)?;
    // One transaction for the whole replay: a million autocommitted inserts take minutes.
    mem.execute_batch("BEGIN")?;
    let mut report = ReplayReport::default();
    let mut stmt = conn.prepare("SELECT seq, kind, payload FROM events ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut started = false;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let kind: String = r.get(1)?;
        let payload: String = r.get(2)?;
        // Streamed: each write is applied as it is parsed, so a large import's event (hundreds
        // of MB) is never held as a JSON tree.
        let mut a = Applier {
            mem: &mem,
            cols: &cols,
            seq,
            err: None,
            writes: false,
            snapshot: false,
        };
        let parsed = {
            use serde::de::DeserializeSeed;
            let mut de = serde_json::Deserializer::from_str(&payload);
            PayloadSeed(&mut a).deserialize(&mut de)
        };
        if let Some(e) = a.err.take() {
            return Err(e);
        }
        parsed
            .map_err(|e| LedgerError::Invalid(format!("event {seq}: payload is not JSON ({e})")))?;
        if a.snapshot {
            report.snapshot_event = Some(seq);
            report.not_replayable += report.replayed;
            report.replayed = 0;
            started = true;
        }
        match a.writes {
            true => {
                started = true;
                report.replayed += 1;
            }
            false if started => report.replayed += 1,
            // A migration changes the schema, not the state (schema 1 adds the default policy,
            // which the snapshot holds).
            false if kind == "ledger.migrated" => {}
            false => report.not_replayable += 1,
        }
    }
    mem.execute_batch("COMMIT")?;
    // Compared inside SQLite: the ledger attached to the replayed database, EXCEPT both ways.
    mem.execute(
        "ATTACH DATABASE ?1 AS ledger",
        [ledger_file.to_string_lossy().as_ref()],
    )?;
    for t in STATE_TABLES {
        let info = table_info(&mem, t)?;
        if info.columns.is_empty() {
            continue;
        }
        for key in rows_not_in(&mem, t, &info, "main", "ledger")? {
            let want = row_by_key(&mem, "main", t, &info.columns, &key)?.unwrap_or_default();
            match row_by_key(&mem, "ledger", t, &info.columns, &key)? {
                None => report.divergences.push(Divergence {
                    table: t.to_string(),
                    key: key_text(&key, &info.key),
                    column: "(row)".into(),
                    from_events: "present".into(),
                    in_table: "absent".into(),
                }),
                Some(actual) => {
                    for (col, v) in &want {
                        let a = actual.get(col).cloned().unwrap_or(SqlValue::Null);
                        if a != *v {
                            report.divergences.push(Divergence {
                                table: t.to_string(),
                                key: key_text(&key, &info.key),
                                column: col.clone(),
                                from_events: show(v),
                                in_table: show(&a),
                            });
                        }
                    }
                }
            }
        }
        for key in rows_not_in(&mem, t, &info, "ledger", "main")? {
            if row_by_key(&mem, "main", t, &info.columns, &key)?.is_none() {
                report.divergences.push(Divergence {
                    table: t.to_string(),
                    key: key_text(&key, &info.key),
                    column: "(row)".into(),
                    from_events: "absent".into(),
                    in_table: "present".into(),
                });
            }
        }
    }
    mem.execute("DETACH DATABASE ledger", [])?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_come_back_exactly_and_nothing_else_is_accepted() {
        assert_eq!(unquote("NULL").unwrap(), SqlValue::Null);
        assert_eq!(unquote("-42").unwrap(), SqlValue::Integer(-42));
        assert_eq!(unquote("'it''s'").unwrap(), SqlValue::Text("it's".into()));
        assert_eq!(unquote("X'00FF'").unwrap(), SqlValue::Blob(vec![0, 255]));
        assert!(unquote("1); DROP TABLE items; --").is_err());
        assert!(unquote("X'0'").is_err());
    }

    #[test]
    fn writes_captured_by_the_triggers_replay_to_the_same_tables() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(include_str!("schema_v1.sql")).unwrap();
        install(&db).unwrap();
        db.execute_batch(
            "INSERT INTO datasets (name) VALUES ('faces');
             INSERT INTO policies (name, kind, amount) VALUES ('p''x', 'calendar_days', 3);
             UPDATE policies SET amount = 30 WHERE name = 'default';
             DELETE FROM policies WHERE name = 'p''x';",
        )
        .unwrap();
        let writes = take_writes(&db).unwrap();
        assert_eq!(take_writes(&db).unwrap(), "[]", "the log is emptied");
        let mem = Connection::open_in_memory().unwrap();
        mem.execute_batch(include_str!("schema_v1.sql")).unwrap();
        let v: Value = serde_json::from_str(&writes).unwrap();
        let cols = columns_of(&mem).unwrap();
        for w in v.as_array().unwrap() {
            apply_write(&mem, &cols, w, 1).unwrap();
        }
        assert_eq!(state_digest(&mem).unwrap(), state_digest(&db).unwrap());
        // A write naming a column the table does not have is refused, never run.
        let evil: Value = serde_json::json!(["datasets", "insert", {"name": "'x'"},
            {"name\") VALUES (1); --": "'x'"}]);
        let e = apply_write(&mem, &cols, &evil, 9).unwrap_err().to_string();
        assert!(e.contains("names no column of datasets"), "{e}");
        db.execute("UPDATE datasets SET status = 'withdrawn'", [])
            .unwrap();
        assert_ne!(state_digest(&mem).unwrap(), state_digest(&db).unwrap());
    }
}
