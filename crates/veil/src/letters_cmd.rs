//! `veil takedown send` and `--send`: deliver the ledger's letters over SMTP (or hand them over
//! by other means), printing one line per letter.

use anyhow::Result;
use veil_takedown::smtp::{SendOptions, SendReport};
use veil_takedown::Ledger;

use crate::exit;

/// Sends the due letters (of `request` only, when given); the exit code is 1 when a letter
/// failed, is uncertain or cannot be addressed.
pub fn send(ledger: &mut Ledger, opts: &SendOptions) -> Result<i32> {
    let config = if opts.dry_run || opts.outbox_only.is_some() {
        ledger.smtp_config().ok().flatten()
    } else {
        ledger.smtp_config()?
    };
    let r = ledger.send_letters(opts, config.as_ref())?;
    print_report(&r, opts.dry_run);
    let bad = !r.failed.is_empty() || !r.uncertain.is_empty() || !r.unaddressable.is_empty();
    Ok(if bad { exit::FAILURES } else { exit::OK })
}

fn print_report(r: &SendReport, dry: bool) {
    let show = |tag: &str, rows: &[(i64, String, String)]| {
        for (id, to, what) in rows {
            println!(
                "{tag} letter {id} to {}: {}",
                to.escape_debug(),
                what.escape_debug()
            );
        }
    };
    show("sent     ", &r.sent);
    show("handed   ", &r.handed);
    show("would send", &r.would_send);
    show("FAILED   ", &r.failed);
    show("UNCERTAIN", &r.uncertain);
    show("waiting  ", &r.waiting);
    show("UNSENDABLE", &r.unaddressable);
    println!(
        "{}{} sent, {} handed over, {} failed, {} uncertain (not resent: `send --resend-uncertain`), {} waiting for a retry, {} without an e-mail address",
        if dry { "dry run: " } else { "" },
        if dry { r.would_send.len() } else { r.sent.len() },
        r.handed.len(),
        r.failed.len(),
        r.uncertain.len(),
        r.waiting.len(),
        r.unaddressable.len()
    );
}
