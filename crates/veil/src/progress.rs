//! Drawing progress events: a progress bar on a terminal, plain periodic lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use veil_core::{ImageStatus, ProgressEvent, ProgressSink};

pub struct Progress {
    quiet: bool,
    /// What is counted: `images`, or `thumbnails` for the review page.
    unit: &'static str,
    bar: Mutex<Option<ProgressBar>>,
    plain: Mutex<PlainState>,
}

struct PlainState {
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    /// Counts in another unit than images (the per-second rate and the bar say so).
    pub fn counting(mut self, unit: &'static str) -> Self {
        self.unit = unit;
        self
    }

    pub fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Self {
            quiet,
            unit: "images",
            bar: Mutex::new(None),
            plain: Mutex::new(PlainState {
                total: 0,
                done: 0,
                started: now,
                last: now,
            }),
        }
    }

    fn line(&self, msg: &str) {
        let bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match bar.as_ref() {
            Some(b) => b.println(msg),
            // Not `eprintln!`: it panics when stderr is a closed pipe (`veil redact ... 2>&1 |
            // head`), and this runs on the pipeline's threads. A lost line must not stop a run.
            None => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr().lock(), "{msg}");
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`, ...) and nothing else changed:
/// messages and failure reasons can quote file names (a write failure names the output path).
pub(crate) fn escape_controls(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl ProgressSink for Progress {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Provision { message } => {
                self.line(&format!("veil: {}", escape_controls(&message)))
            }
            ProgressEvent::Notice { message } => {
                self.line(&format!("veil: warning: {}", escape_controls(&message)))
            }
            ProgressEvent::Started { total } => {
                let mut p = self.plain.lock().unwrap_or_else(|e| e.into_inner());
                p.total = total;
                p.started = Instant::now();
                p.last = p.started;
                if !self.quiet && std::io::stderr().is_terminal() {
                    let b =
                        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                    b.set_style(
                        ProgressStyle::with_template(&format!(
                            "{{bar:40}} {{pos}}/{{len}} {}  {{per_sec}}  ETA {{eta}}  {{msg}}",
                            self.unit
                        ))
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    b.enable_steady_tick(Duration::from_millis(200));
                    *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(b);
                }
            }
            ProgressEvent::Queued { count } => {
                if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    b.inc_length(count);
                    return;
                }
                self.plain.lock().unwrap_or_else(|e| e.into_inner()).total += count;
            }
            ProgressEvent::ImageDone {
                path,
                status,
                error,
                ..
            } => {
                if status == ImageStatus::Failed {
                    self.line(&format!(
                        "veil: failed: {}: {}",
                        path.escape_debug(),
                        escape_controls(&error.unwrap_or_default())
                    ));
                }
                if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    b.inc(1);
                    return;
                }
                let mut p = self.plain.lock().unwrap_or_else(|e| e.into_inner());
                p.done += 1;
                let now = Instant::now();
                if !self.quiet
                    && (now.duration_since(p.last) >= Duration::from_secs(5) || p.done == p.total)
                {
                    p.last = now;
                    let secs = now.duration_since(p.started).as_secs_f64().max(1e-9);
                    let rate = p.done as f64 / secs;
                    let eta = p.total.saturating_sub(p.done) as f64 / rate.max(1e-9);
                    let msg = format!(
                        "veil: {}/{} {unit} ({rate:.1} {unit}/s, ETA {eta:.0} s)",
                        p.done,
                        p.total,
                        unit = self.unit
                    );
                    drop(p);
                    self.line(&msg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn only_control_characters_are_escaped() {
        assert_eq!(
            escape_controls("a\nb\u{1b}[31m\r\t\u{7}\"q' <é> \\ ok"),
            "a\\nb\\u{1b}[31m\\r\\t\\u{7}\"q' <é> \\ ok"
        );
    }
}
