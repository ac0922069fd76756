//! `veil ledger`, `veil recipients`, `veil takedown` and `veil withdrawals`: the takedown
//! ledger's commands (all logic is in veil-takedown; evidence photos are hashed by veil-pipeline).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use veil_core::Date;
use veil_takedown::{
    Basis, DuePolicy, ImportOutcome, Ledger, NewRequest, PhotoEvidence, Recipient, Request, Scope,
    DEFAULT_LEDGER,
};

use crate::exit;

#[derive(Args, Debug)]
pub struct LedgerArg {
    /// The ledger file (SQLite).
    #[arg(long, global = true, default_value = DEFAULT_LEDGER)]
    pub ledger: PathBuf,
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Create an empty ledger.
    Init,
    /// Import releases (verified first) from the manifests root: all of them, or NAME@V ones.
    Import {
        releases: Vec<String>,
        #[arg(long, default_value = "datasets-manifest")]
        root: PathBuf,
    },
    /// Recompute the event chain, rebuild every table from the events and compare, and check
    /// published heads; report every difference (exit 1).
    Verify {
        /// A published chain head `N:HASH` (a feed line's or notice's `ledger_head`) that the
        /// chain must extend; repeatable.
        #[arg(long)]
        head: Vec<String>,
        /// A published withdrawals feed: every line's head must be extended by the chain.
        #[arg(long)]
        feed: Option<PathBuf>,
    },
    /// Store a setting: smtp_url, smtp_from, reply_to or smtp_password_file (never a password;
    /// VEIL_SMTP_* in the environment win).
    Set { key: String, value: String },
    /// The Ed25519 key that signs what the ledger publishes.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Write every event as JSON Lines (for review in git; holds matching keys: keep it private).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add or change a deadline policy (`default` is 15 working days).
    Policy {
        name: String,
        #[arg(long, group = "len", required = true)]
        working_days: Option<u32>,
        #[arg(long, group = "len")]
        calendar_days: Option<u32>,
        #[arg(long, group = "len")]
        calendar_months: Option<u32>,
        /// Holiday calendar: one YYYY-MM-DD per line (`YYYY-MM-DD workday` for a worked weekend
        /// day); relative to the ledger's directory.
        #[arg(long)]
        holidays: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make a key pair: the secret key in a new owner-only file (`VEIL_LEDGER_KEY`, else
    /// ~/.config/veil/ledger-signing.key), never in the ledger; the public key recorded in it.
    Init {
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum RecipientsCommand {
    /// Record that someone obtained a release.
    Add {
        /// NAME@V
        #[arg(long)]
        release: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        contact: String,
        /// When (YYYY-MM-DD or RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Import a CSV download log (header: name, contact, and release=NAME@V or dataset+version,
    /// optional received_at). All rows or none.
    Import { csv: PathBuf },
    /// List recipients.
    List {
        #[arg(long)]
        dataset: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TakedownCommand {
    /// Open a request; prints its id and due date.
    Open(OpenArgs),
    /// Find the items a request names; lists candidates with distances for a human to confirm.
    Match { id: String },
    /// Confirm items (path, output blake3 or source blake3) for withdrawal.
    Confirm {
        id: String,
        #[arg(required = true)]
        items: Vec<String>,
    },
    /// Reject candidate items, or (with no items) the whole request with --reason.
    Reject {
        id: String,
        items: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
        /// Send the answer now.
        #[arg(long)]
        send: bool,
    },
    /// Cut a new release without the confirmed items (or withdraw the whole dataset).
    Apply {
        id: String,
        #[arg(long, default_value = "datasets-manifest")]
        root: PathBuf,
        /// Version of the new release (default: the next number).
        #[arg(long)]
        version: Option<String>,
        /// Also delete the withdrawn files from this output tree (only files with the withdrawn hash).
        #[arg(long)]
        purge: Option<PathBuf>,
        /// Send the answer now.
        #[arg(long)]
        send: bool,
    },
    /// Delete the withdrawn files of an applied request from an output tree or mirror.
    Purge { id: String, dir: PathBuf },
    /// Write one notice per recipient of a withdrawn release into the outbox.
    Notify {
        id: String,
        /// Default: `outbox/` beside the ledger.
        #[arg(long)]
        outbox: Option<PathBuf>,
        /// Send the notices now.
        #[arg(long)]
        send: bool,
    },
    /// Deliver every unsent letter over SMTP (VEIL_SMTP_URL, VEIL_SMTP_FROM); failed ones are
    /// retried with backoff. Exit 1 when one failed, is uncertain or has no e-mail address.
    Send {
        /// Only this request's letters.
        id: Option<String>,
        /// Print what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Mark the letters handed over by other means (written as .eml into the outbox).
        #[arg(long, requires = "by")]
        outbox_only: bool,
        /// Who handed them over (with --outbox-only).
        #[arg(long)]
        by: Option<String>,
        /// Send again the letters whose delivery was interrupted (same Message-ID).
        #[arg(long)]
        resend_uncertain: bool,
    },
    /// The ledger's letters (of one request): status, attempts, last error.
    Letters { id: Option<String> },
    /// Record a recipient's reply.
    Ack {
        id: String,
        /// The recipient's name or contact.
        #[arg(long)]
        recipient: String,
        #[arg(long, default_value = "")]
        note: String,
        /// The raw reply (.eml): its blake3 is kept with the acknowledgement.
        #[arg(long)]
        eml: Option<PathBuf>,
    },
    /// Close a notified request.
    Close { id: String },
    /// Every request: children's data first, then by due date.
    List,
    /// Everything about one request (JSON).
    Show { id: String },
    /// Open requests due within a period (e.g. 3d); exit 1 when any is overdue (for cron).
    Due {
        #[arg(long, default_value = "0d")]
        within: String,
        /// Recipients who have not confirmed a notice after this many working days are listed.
        #[arg(long, default_value_t = 10)]
        ack_days: u32,
    },
}

#[derive(Args)]
pub struct OpenArgs {
    #[arg(long)]
    dataset: String,
    /// Releases in scope (default: all releases of the dataset).
    #[arg(long = "release")]
    releases: Vec<String>,
    /// Explicitly every release (the default).
    #[arg(long, conflicts_with = "releases")]
    all_releases: bool,
    /// Item paths or globs (`train/img_01*.jpg`).
    #[arg(long = "path")]
    paths: Vec<String>,
    /// blake3 of an item (released or source file).
    #[arg(long = "blake3")]
    blake3: Vec<String>,
    /// A photo of the person or the picture (hashed; the photo is not kept).
    #[arg(long = "photo")]
    photos: Vec<PathBuf>,
    /// Withdraw the whole dataset.
    #[arg(long)]
    whole_dataset: bool,
    #[arg(long)]
    requester: String,
    #[arg(long)]
    contact: String,
    /// privacy, portrait, copyright, child, contract, authority or other.
    #[arg(long)]
    basis: String,
    #[arg(long, default_value = "")]
    note: String,
    /// When the request arrived (YYYY-MM-DD or RFC 3339); default now.
    #[arg(long)]
    received: Option<String>,
    /// Deadline policy (default: `default`, 15 working days).
    #[arg(long)]
    policy: Option<String>,
    /// Language of the letters to the requester: en (default) or zh.
    #[arg(long)]
    language: Option<String>,
    /// Send the acknowledgement now (`takedown send`).
    #[arg(long)]
    send: bool,
}

fn open_existing(path: &Path) -> Result<Ledger> {
    Ok(Ledger::open(path)?)
}

fn split_release(s: &str) -> Result<(&str, &str)> {
    match s.split_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n, v)),
        _ => bail!("release must be NAME@VERSION, got `{s}`"),
    }
}

fn timestamp(s: Option<String>) -> Result<String> {
    match s {
        None => Ok(veil_core::now_rfc3339()),
        Some(s) => {
            let d = Date::parse(&s)?;
            Ok(if s.len() == 10 {
                format!("{d}T00:00:00Z")
            } else {
                s
            })
        }
    }
}

pub fn ledger(cmd: LedgerCommand, l: &LedgerArg) -> Result<i32> {
    match cmd {
        LedgerCommand::Init => {
            let existed = l.ledger.exists();
            let ledger = Ledger::open_or_create(&l.ledger)?;
            println!(
                "{} {} (schema {})",
                if existed {
                    "ledger already at"
                } else {
                    "created ledger"
                },
                ledger.path().display(),
                veil_takedown::SCHEMA_VERSION
            );
        }
        LedgerCommand::Import { releases, root } => {
            let mut ledger = Ledger::open_or_create(&l.ledger)?;
            let results = if releases.is_empty() {
                ledger.import_all(&root)?
            } else {
                let mut v = Vec::new();
                for r in &releases {
                    let (d, ver) = split_release(r)?;
                    v.push((d.into(), ver.into(), ledger.import_release(&root, d, ver)?));
                }
                v
            };
            if results.is_empty() {
                bail!("no releases under {}", root.display());
            }
            for (d, v, outcome) in results {
                match outcome {
                    ImportOutcome::Added { items } => println!("imported {d}@{v}: {items} items"),
                    ImportOutcome::AlreadyPresent => println!("{d}@{v}: already in the ledger"),
                }
            }
            // The head that records these imports: keep it to check the ledger later
            // (`veil ledger verify --head`).
            if let Some(h) = ledger.head()? {
                println!("ledger head {h}");
            }
        }
        LedgerCommand::Verify { head, feed } => {
            return crate::ledger_cmd::verify(l, &head, feed.as_deref())
        }
        LedgerCommand::Key {
            command: KeyCommand::Init { key_file },
        } => return crate::ledger_cmd::key_init(l, key_file.as_deref()),
        LedgerCommand::Set { key, value } => {
            let mut ledger = open_existing(&l.ledger)?;
            ledger.set_setting(&key, &value)?;
            println!("{key} = {value}");
        }
        LedgerCommand::Export { out } => {
            let ledger = Ledger::open_unverified(&l.ledger)?;
            let mut text = String::new();
            for e in ledger.events()? {
                text.push_str(&e.export_line());
                text.push('\n');
            }
            write_out(out.as_deref(), &text)?;
        }
        LedgerCommand::Policy {
            name,
            working_days,
            calendar_days,
            calendar_months,
            holidays,
        } => {
            let policy = match (working_days, calendar_days, calendar_months) {
                (Some(n), _, _) => DuePolicy::WorkingDays(n),
                (_, Some(n), _) => DuePolicy::CalendarDays(n),
                (_, _, Some(n)) => DuePolicy::CalendarMonths(n),
                _ => bail!("give --working-days, --calendar-days or --calendar-months"),
            };
            let mut ledger = open_existing(&l.ledger)?;
            ledger.set_policy(&name, policy, holidays.as_deref())?;
            println!("policy {name}: {policy}");
        }
    }
    Ok(exit::OK)
}

/// `--send` after a command: the request's letters.
fn send_for(ledger: &mut Ledger, id: &str) -> Result<i32> {
    crate::letters_cmd::send(
        ledger,
        &veil_takedown::smtp::SendOptions {
            request: Some(id.to_string()),
            ..Default::default()
        },
    )
}

pub(crate) fn write_out(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

pub fn recipients(cmd: RecipientsCommand, l: &LedgerArg) -> Result<i32> {
    let mut ledger = open_existing(&l.ledger)?;
    match cmd {
        RecipientsCommand::Add {
            release,
            name,
            contact,
            at,
        } => {
            let (d, v) = split_release(&release)?;
            let r = Recipient {
                dataset: d.into(),
                version: v.into(),
                name,
                contact,
                received_at: timestamp(at)?,
                origin: "manual".into(),
            };
            if ledger.add_recipient(&r)? {
                println!("recorded: {} received {release}", r.name.escape_debug());
            } else {
                println!("already recorded");
            }
        }
        RecipientsCommand::Import { csv } => {
            let (added, dup) = ledger.import_recipients_csv(&csv)?;
            println!("{added} recipients added, {dup} already recorded");
        }
        RecipientsCommand::List { dataset } => {
            for r in ledger.recipients(dataset.as_deref())? {
                println!(
                    "{}@{}\t{}\t{}\t{}",
                    r.dataset,
                    r.version,
                    r.received_at,
                    r.name.escape_debug(),
                    r.contact.escape_debug()
                );
            }
        }
    }
    Ok(exit::OK)
}

fn evidence(photo: &Path) -> Result<PhotoEvidence> {
    let (blake3, h) =
        veil_pipeline::process::photo_hashes(photo, veil_pipeline::DEFAULT_MAX_PIXELS)
            .map_err(|e| anyhow::anyhow!("{}: cannot decode the photo: {e}", photo.display()))?;
    Ok(PhotoEvidence {
        blake3,
        pdq: h.pdq,
        pdq_quality: h.pdq_quality,
        dhash: h.dhash,
    })
}

fn parse_within(s: &str) -> Result<i64> {
    let (n, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: i64 = n
        .parse()
        .with_context(|| format!("--within {s:?}: expected e.g. 3d or 2w"))?;
    Ok(match unit {
        "d" | "" => n,
        "w" => n * 7,
        _ => bail!("--within {s:?}: unit must be d (days) or w (weeks)"),
    })
}

fn line(r: &Request, today: Date) -> String {
    let flag = if r.is_overdue(today) {
        "OVERDUE"
    } else if r.status.is_open() {
        "open"
    } else {
        ""
    };
    format!(
        "{}\t{}\t{}\tdue {}\t{}\t{}\t{}",
        r.id,
        r.status,
        r.basis,
        r.due,
        flag,
        r.dataset.escape_debug(),
        r.requester.escape_debug()
    )
}

pub fn takedown(cmd: TakedownCommand, l: &LedgerArg) -> Result<i32> {
    let mut ledger = open_existing(&l.ledger)?;
    let today = Date::today();
    match cmd {
        TakedownCommand::Open(a) => {
            let basis: Basis = a.basis.parse().map_err(anyhow::Error::msg)?;
            let photos = a
                .photos
                .iter()
                .map(|p| evidence(p))
                .collect::<Result<_>>()?;
            let req = ledger.open_request(NewRequest {
                dataset: a.dataset,
                releases: (!a.releases.is_empty() && !a.all_releases).then_some(a.releases),
                whole_dataset: a.whole_dataset,
                scope: Scope {
                    paths: a.paths,
                    blake3: a.blake3.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    photos,
                },
                requester: a.requester,
                contact: a.contact,
                basis,
                note: a.note,
                received: a.received,
                policy: a.policy,
                language: a.language,
            })?;
            println!(
                "{}\treceived {}\tdue {} ({})",
                req.id, req.received_at, req.due, req.policy
            );
            if req.basis == Basis::Child {
                eprintln!("veil: basis child: due immediately; delete at once");
            }
            if a.send {
                return send_for(&mut ledger, &req.id);
            }
        }
        TakedownCommand::Match { id } => {
            let found = ledger.find_matches(&id)?;
            if found.is_empty() {
                println!("{id}: no items match");
            }
            for c in &found {
                println!(
                    "{}\t{}@{}\t{}\t{}\tdistance {}\t{}",
                    c.state,
                    c.dataset,
                    c.version,
                    c.path.escape_debug(),
                    c.how,
                    c.distance,
                    c.blake3.escape_debug()
                );
            }
            eprintln!(
                "veil: confirm with `veil takedown confirm {id} PATH...` or reject with `veil takedown reject {id} PATH...`"
            );
        }
        TakedownCommand::Confirm { id, items } => {
            let n = ledger.decide(&id, &items, true)?;
            println!("{id}: {n} item rows confirmed");
        }
        TakedownCommand::Reject {
            id,
            items,
            reason,
            send,
        } => {
            if items.is_empty() {
                let Some(reason) = reason else {
                    bail!("rejecting a whole request needs --reason");
                };
                ledger.reject_request(&id, &reason)?;
                println!("{id}: rejected");
                if send {
                    return send_for(&mut ledger, &id);
                }
            } else {
                let n = ledger.decide(&id, &items, false)?;
                println!("{id}: {n} item rows rejected");
            }
        }
        TakedownCommand::Apply {
            id,
            root,
            version,
            purge,
            send,
        } => {
            let access = veil_pipeline::dataset_containers::DatasetContainers::default();
            let tree = purge
                .as_deref()
                .map(|d| (d, &access as &dyn veil_ledger::Containers));
            let r = ledger.apply(&id, &root, version.as_deref(), tree)?;
            if r.whole_dataset {
                println!("{id}: dataset {} withdrawn", r.dataset);
            }
            if let Some((v, rootv)) = &r.new_release {
                println!("{id}: new release {}@{v} (Merkle root {rootv})", r.dataset);
            }
            // One tombstone per release that held an item: count the paths once.
            let paths: std::collections::BTreeSet<&str> =
                r.tombstones.iter().map(|t| t.path.as_str()).collect();
            println!(
                "{id}: {} items withdrawn ({} release copies tombstoned); releases withdrawn: {}",
                paths.len(),
                r.tombstones.len(),
                r.withdrawn_releases.join(", ")
            );
            if let Some(dir) = purge {
                print_purge(&id, &ledger.purge(&id, &dir, Some(&access))?);
            }
            if send {
                return send_for(&mut ledger, &id);
            }
        }
        TakedownCommand::Purge { id, dir } => {
            let access = veil_pipeline::dataset_containers::DatasetContainers::default();
            print_purge(&id, &ledger.purge(&id, &dir, Some(&access))?)
        }
        TakedownCommand::Notify { id, outbox, send } => {
            let outbox = outbox
                .unwrap_or_else(|| l.ledger.parent().unwrap_or(Path::new(".")).join("outbox"));
            let notices = ledger.notify(&id, &outbox)?;
            for n in &notices {
                println!(
                    "notice for {} <{}>: {}",
                    n.name.escape_debug(),
                    n.contact.escape_debug(),
                    n.file
                );
            }
            println!("{id}: {} notices written", notices.len());
            if send {
                return send_for(&mut ledger, &id);
            }
        }
        TakedownCommand::Send {
            id,
            dry_run,
            outbox_only,
            by,
            resend_uncertain,
        } => {
            let opts = veil_takedown::smtp::SendOptions {
                dry_run,
                outbox_only: if outbox_only { by } else { None },
                resend_uncertain,
                request: id,
            };
            return crate::letters_cmd::send(&mut ledger, &opts);
        }
        TakedownCommand::Letters { id } => {
            for x in ledger.letters(id.as_deref())? {
                println!(
                    "{}\t{}\t{} ({})\t{}\t{}\tattempts {}\t{}\t{}",
                    x.id,
                    x.request,
                    x.kind,
                    x.event,
                    x.to_addr.escape_debug(),
                    x.status,
                    x.attempts,
                    x.message_id,
                    x.last_error.as_deref().unwrap_or("").escape_debug()
                );
            }
        }
        TakedownCommand::Ack {
            id,
            recipient,
            note,
            eml,
        } => {
            let eml = eml
                .map(|p| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display())))
                .transpose()?;
            ledger.ack(&id, &recipient, &note, eml.as_deref())?;
            println!("{id}: reply from {} recorded", recipient.escape_debug());
        }
        TakedownCommand::Close { id } => {
            ledger.close(&id)?;
            println!("{id}: closed");
        }
        TakedownCommand::List => {
            for r in ledger.requests()? {
                println!("{}", line(&r, today));
            }
        }
        TakedownCommand::Show { id } => {
            println!("{}", serde_json::to_string_pretty(&ledger.detail(&id)?)?);
        }
        TakedownCommand::Due { within, ack_days } => {
            let due = ledger.due(today, parse_within(&within)?)?;
            let overdue = due.iter().filter(|r| r.is_overdue(today)).count();
            for r in &due {
                println!("{}", line(r, today));
            }
            // Overdue correspondence: letters not delivered, recipients who have not confirmed.
            let letters = ledger.undelivered_letters()?;
            for x in &letters {
                println!(
                    "LETTER   {}\t{} to {}\t{}\t{}",
                    x.request,
                    x.kind,
                    x.to_addr.escape_debug(),
                    x.status,
                    x.last_error
                        .as_deref()
                        .unwrap_or("not sent yet: `veil takedown send`")
                        .escape_debug()
                );
            }
            let silent = ledger.unconfirmed_notices(today, ack_days)?;
            for (req, name, contact, at) in &silent {
                println!(
                    "NO REPLY {req}\t{} <{}>\tnotified {at}, no confirmation after {ack_days} working days",
                    name.escape_debug(),
                    contact.escape_debug()
                );
            }
            if overdue > 0 || !letters.is_empty() || !silent.is_empty() {
                eprintln!(
                    "veil: {overdue} requests overdue, {} letters undelivered, {} recipients silent",
                    letters.len(),
                    silent.len()
                );
                return Ok(exit::FAILURES);
            }
        }
    }
    Ok(exit::OK)
}

fn print_purge(id: &str, p: &veil_takedown::PurgeReport) {
    for d in &p.deleted {
        println!("deleted {}", d.escape_debug());
    }
    for r in &p.rewritten {
        println!(
            "rewrote {} without {} ({} -> {})",
            r.path.escape_debug(),
            r.dropped.join(", ").escape_debug(),
            r.from_blake3,
            r.to_blake3
        );
    }
    for (path, why) in &p.skipped {
        println!("left {}: {}", path.escape_debug(), why.escape_debug());
    }
    println!(
        "{id}: purge of {}: {} deleted, {} left",
        p.dir.escape_debug(),
        p.deleted.len(),
        p.skipped.len()
    );
}
