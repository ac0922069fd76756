//! `veil ledger verify` (chain, replay, published heads), `veil ledger key init`, and the
//! withdrawals feed (`export`, signed when the ledger has a key; `verify` with a public key).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use veil_takedown::anchors::{self, Head, SecretKey};
use veil_takedown::Ledger;

use crate::exit;
use crate::takedown_cmd::LedgerArg;

/// The heads of a published feed (one JSON object per line with `ledger_head`), in file order.
fn feed_heads(feed: &Path) -> Result<Vec<(usize, Head)>> {
    let text = std::fs::read_to_string(feed)
        .with_context(|| format!("cannot read the feed {}", feed.display()))?;
    let mut heads = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", feed.display(), i + 1))?;
        match Head::of(&v) {
            Some(h) => heads.push((i + 1, h)),
            None => bail!(
                "{}:{}: no ledger_head (a feed written before veil anchored its lines)",
                feed.display(),
                i + 1
            ),
        }
    }
    Ok(heads)
}

/// `veil ledger verify`: the chain, the state replayed from the events, and published heads.
pub fn verify(l: &LedgerArg, heads: &[String], feed: Option<&Path>) -> Result<i32> {
    let ledger = Ledger::open_unverified(&l.ledger)?;
    let mut failed = false;
    let r = ledger.verify_chain()?;
    if let Some((seq, what)) = &r.problem {
        println!("BROKEN   chain at event {seq}: {what}");
        failed = true;
    } else {
        println!("ok       chain: {} events, head {}", r.events, r.head);
    }
    if r.problem.is_none() {
        let replay = ledger.replay()?;
        for d in &replay.divergences {
            println!(
                "DIFFERS  {} [{}] {}: from the events {}, in the table {}",
                d.table, d.key, d.column, d.from_events, d.in_table
            );
        }
        let from = match replay.snapshot_event {
            Some(s) if replay.not_replayable > 0 => format!(
                "from the snapshot in event {s} ({} earlier events were written before veil \
                 recorded writes: chained, not replayed)",
                replay.not_replayable
            ),
            Some(s) => format!("from the snapshot in event {s}"),
            None => "no event records its writes".to_string(),
        };
        if replay.divergences.is_empty() {
            println!(
                "ok       state: every table rebuilt from the events ({} replayed, {from})",
                replay.replayed
            );
        } else {
            println!(
                "DIFFERS  state: {} differences between the tables and the events ({from})",
                replay.divergences.len()
            );
            failed = true;
        }
    }
    let mut published: Vec<(String, Head)> = Vec::new();
    for h in heads {
        published.push((
            format!("--head {h}"),
            Head::parse(h).map_err(anyhow::Error::msg)?,
        ));
    }
    if let Some(f) = feed {
        for (line, h) in feed_heads(f)? {
            published.push((format!("{}:{line}", f.display()), h));
        }
    }
    published.sort_by_key(|(_, h)| h.events);
    for (from, h) in &published {
        match ledger.check_head(h) {
            Ok(()) => println!("ok       head {h} ({from}): the chain extends it"),
            Err(why) => {
                println!("BROKEN   head {h} ({from}): {why}");
                failed = true;
            }
        }
    }
    Ok(if failed { exit::FAILURES } else { exit::OK })
}

/// `veil ledger key init`: a new Ed25519 key pair; the public key recorded in the ledger.
pub fn key_init(l: &LedgerArg, key_file: Option<&Path>) -> Result<i32> {
    let mut ledger = Ledger::open(&l.ledger)?;
    if let Some(k) = ledger.signing_key()? {
        bail!("this ledger already signs with key {k}; keep using its key file");
    }
    let path = key_file.map_or_else(anchors::default_key_path, Path::to_path_buf);
    let key = SecretKey::create(&path)?;
    let public = key.public_hex();
    ledger.add_signing_key(&public)?;
    let pub_file = PathBuf::from(format!("{}.pub", path.display()));
    std::fs::write(&pub_file, format!("{public}\n"))
        .with_context(|| format!("cannot write {}", pub_file.display()))?;
    println!(
        "secret key: {} (owner-only; never in the ledger: back it up)",
        path.display()
    );
    println!("public key: {public} (also in {})", pub_file.display());
    if key_file.is_some() && std::env::var_os(anchors::KEY_ENV).is_none() {
        println!(
            "set {}={} for the commands that sign",
            anchors::KEY_ENV,
            path.display()
        );
    }
    Ok(exit::OK)
}

/// `veil withdrawals export`: one JSON object per applied request, signed when the ledger has a
/// signing key.
pub fn withdrawals_export(out: Option<&Path>, l: &LedgerArg) -> Result<i32> {
    let ledger = Ledger::open(&l.ledger)?;
    let signer = ledger.signer()?;
    let mut text = String::new();
    for mut w in ledger.withdrawals()? {
        if let Some(k) = &signer {
            k.sign(&mut w);
        }
        text.push_str(&w.to_string());
        text.push('\n');
    }
    crate::takedown_cmd::write_out(out, &text)?;
    Ok(exit::OK)
}

/// `veil withdrawals verify FEED --key PUBLIC`: every line signed by that key, and no two lines
/// claiming different hashes for the same event.
pub fn withdrawals_verify(feed: &Path, key: &str) -> Result<i32> {
    let public = match std::fs::read_to_string(key) {
        Ok(text) => text.trim().to_string(),
        Err(_) => key.trim().to_string(),
    };
    let text = std::fs::read_to_string(feed)
        .with_context(|| format!("cannot read the feed {}", feed.display()))?;
    let mut bad = 0;
    let mut seen: std::collections::BTreeMap<i64, (usize, String)> = Default::default();
    let mut n = 0;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        n += 1;
        let at = format!("{}:{}", feed.display(), i + 1);
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                println!("BAD      {at}: not JSON ({e})");
                bad += 1;
                continue;
            }
        };
        if let Err(why) = anchors::verify_signature(&v, &public) {
            println!("BAD      {at}: {why}");
            bad += 1;
            continue;
        }
        let Some(h) = Head::of(&v) else {
            println!("BAD      {at}: no ledger_head");
            bad += 1;
            continue;
        };
        if let Some((other, hash)) = seen.get(&h.events) {
            if *hash != h.hash {
                println!(
                    "BAD      {at}: event {} has hash {} here but {hash} on line {other}: two histories",
                    h.events, h.hash
                );
                bad += 1;
                continue;
            }
        }
        seen.insert(h.events, (i + 1, h.hash));
    }
    if bad > 0 {
        println!("{bad} of {n} lines fail");
        return Ok(exit::FAILURES);
    }
    println!(
        "{n} lines signed by {public}; heads consistent (that the ledger extends them: `veil ledger verify --feed`)"
    );
    Ok(exit::OK)
}
