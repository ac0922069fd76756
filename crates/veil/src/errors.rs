//! The one place an error chain becomes the message the user reads: every cause once.
//!
//! Library errors often quote their source in their own message and also return it as their
//! `source()`, and an `anyhow` context can repeat what it wraps, so `{:#}` printed the same cause
//! two or three times ("No such file or directory (os error 2): No such file or directory (os
//! error 2)"). Here a cause that an earlier part already says is left out, a cause that repeats
//! the part before it and says more replaces it, and within the result a run of `: `-separated
//! segments repeated right after itself, or a segment the previous one ends with, is said once.

/// The message of `e` and its causes, each said once.
pub fn message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string().trim().to_string();
        if s.is_empty() || parts.iter().any(|p| p.contains(&s)) {
            continue;
        }
        match parts.last_mut() {
            Some(last) if s.starts_with(last.as_str()) => *last = s,
            _ => parts.push(s),
        }
    }
    said_once(&parts.join(": "))
}

/// `text` with repeated runs of `: `-separated segments, and segments that the segment before
/// already ends with, removed.
fn said_once(text: &str) -> String {
    let mut segs: Vec<&str> = text.split(": ").collect();
    'again: loop {
        for k in 1..=segs.len() / 2 {
            for i in 0..=segs.len() - 2 * k {
                if segs[i..i + k] == segs[i + k..i + 2 * k] {
                    segs.drain(i + k..i + 2 * k);
                    continue 'again;
                }
            }
        }
        for j in 1..segs.len() {
            if segs[j].len() >= 12 && segs[j - 1].ends_with(segs[j]) {
                segs.remove(j);
                continue 'again;
            }
        }
        break;
    }
    segs.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that quotes its source in its message and returns it as its source too.
    #[derive(Debug, thiserror::Error)]
    #[error("{what}: {source}")]
    struct Quoting {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Plain(String);

    #[test]
    fn a_missing_file_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        let e = anyhow::Error::new(io).context(text.clone());
        assert_eq!(
            format!("{e:#}"),
            format!("{text}: {text}"),
            "the old message"
        );
        assert_eq!(message(&e), text);
    }

    #[test]
    fn a_ledger_conversion_error_is_said_once() {
        // rusqlite's FromSqlConversionFailure quotes its source; the ledger error quotes both.
        let status = Plain("unknown status `archived`".into());
        let conversion = Quoting {
            what: "Conversion error from type Text at index",
            source: Box::new(Quoting {
                what: "14, unknown status `archived`",
                source: Box::new(status),
            }),
        };
        // What was printed: the chain of a wrapper that quoted everything below it.
        let inner = conversion.to_string();
        let e = anyhow::Error::new(Quoting {
            what: "ledger database",
            source: Box::new(Plain(format!("{inner}: unknown status `archived`"))),
        });
        let old = format!("{e:#}");
        assert!(old.matches("unknown status").count() >= 3, "{old}");
        assert_eq!(
            message(&e),
            "ledger database: Conversion error from type Text at index: 14, unknown status `archived`"
        );
    }

    #[test]
    fn an_onnx_runtime_error_names_onnx_runtime_once() {
        let e = anyhow::Error::new(Plain(
            "ONNX Runtime: ONNX Runtime: Load model failed".into(),
        ))
        .context("ONNX Runtime");
        assert_eq!(message(&e), "ONNX Runtime: Load model failed");
    }

    #[test]
    fn different_causes_are_all_kept() {
        let e = anyhow::Error::new(Plain("permission denied".into()))
            .context("cannot write out/a.jpg")
            .context("redacting photos");
        assert_eq!(
            message(&e),
            "redacting photos: cannot write out/a.jpg: permission denied"
        );
    }
}
