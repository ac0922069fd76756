//! A small SMTP server on loopback for the correspondence tests: it speaks enough SMTP for a real
//! client (lettre), keeps every message it accepts, and can refuse a recipient (550) or drop the
//! connection after a message's data instead of answering.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-stuffing removed.
    pub data: String,
}

impl Received {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut out: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = &mut out {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    out = Some(v.trim().to_string());
                }
            }
        }
        out
    }
}

/// What the server does differently from accepting everything.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Recipients answered `550 5.1.1 no such user`.
    pub refuse: Vec<String>,
    /// The first this many messages get no answer after their data: the connection is closed.
    pub drop_after_data: usize,
}

/// A running server; it stops with the test process.
#[derive(Debug)]
pub struct Sink {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    pub fn start(b: Behaviour) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        let dropped = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, b, dropped) = (m.clone(), b.clone(), dropped.clone());
                std::thread::spawn(move || session(stream, &m, &b, &dropped));
            }
        });
        Sink { addr, messages }
    }

    /// `smtp://127.0.0.1:PORT` (no TLS: a local relay).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }
}

fn session(
    stream: TcpStream,
    messages: &Mutex<Vec<Received>>,
    b: &Behaviour,
    dropped: &AtomicUsize,
) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut say = |s: &str| out.write_all(s.as_bytes()).is_ok();
    if !say("220 sink.test ESMTP veil test sink\r\n") {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let addr = |c: &str| {
            c.split_once(':')
                .map(|(_, a)| {
                    a.trim()
                        .trim_start_matches('<')
                        .split('>')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default()
        };
        let ok = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say("250-sink.test\r\n250 8BITMIME\r\n")
        } else if upper.starts_with("MAIL FROM") {
            from = addr(&cmd);
            to.clear();
            say("250 2.1.0 ok\r\n")
        } else if upper.starts_with("RCPT TO") {
            let a = addr(&cmd);
            if b.refuse.iter().any(|r| r.eq_ignore_ascii_case(&a)) {
                say("550 5.1.1 no such user here\r\n")
            } else {
                to.push(a);
                say("250 2.1.5 ok\r\n")
            }
        } else if upper == "DATA" {
            if !say("354 end data with <CR><LF>.<CR><LF>\r\n") {
                return;
            }
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            if dropped.fetch_add(1, Ordering::SeqCst) < b.drop_after_data {
                return; // the connection closes without an answer
            }
            let mut all = messages.lock().unwrap();
            all.push(Received {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            say(&format!("250 2.0.0 ok: queued as {}\r\n", all.len()))
        } else if upper == "QUIT" {
            say("221 2.0.0 bye\r\n");
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            say("250 2.0.0 ok\r\n")
        } else {
            say("502 5.5.2 not implemented\r\n")
        };
        if !ok {
            return;
        }
    }
}
