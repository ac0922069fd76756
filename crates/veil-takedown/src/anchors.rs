//! Anchors: the chain head (event count and hash) written into what veil publishes from the
//! ledger, checked later against the ledger; and Ed25519 signatures over what is published.
//!
//! A published head `N:HASH` says "the ledger's event N hashes to HASH". The current chain
//! extends it when its event N is still there with that hash (the chain links every later event
//! to it). A truncated history lacks event N; a rewritten one (hashes recomputed) has another
//! hash at N.
//!
//! **Signatures.** `veil ledger key init` makes an Ed25519 key pair: the secret key (the 32-byte
//! seed, hex) goes to a file readable by its owner only, never into the ledger; the public key is
//! recorded in the ledger (`meta.signing_key`, and in the `ledger.key_added` event). From then on
//! every feed line and notice veil writes is signed. The signed bytes are
//! [`SIGNED_PREFIX`] followed by the compact JSON of the object without its `signature` member
//! (keys sorted, as serde_json writes a map); the signature member is
//! `{"ed25519": 128 hex, "key": 64 hex}`. Test vector: `datasets-manifest/LEDGER.md`.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rusqlite::OptionalExtension;
use serde_json::{json, Value};

use crate::store::Ledger;
use crate::LedgerError;

/// What every signature covers first: names the format, so a signature cannot be replayed as
/// another kind of message.
pub const SIGNED_PREFIX: &str = "veil-ledger-signed-v1\n";

/// Environment variable naming the secret key file.
pub const KEY_ENV: &str = "VEIL_LEDGER_KEY";

/// A chain head: the number of events and the hash of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub events: i64,
    pub hash: String,
}

impl Head {
    /// Parses `N:HEX`.
    pub fn parse(s: &str) -> Result<Head, String> {
        let (n, h) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not a head (N:HASH, as a feed line's ledger_head)"))?;
        let events = n
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{n:?} is not an event count"))?;
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{h:?} is not a 64-digit hex hash"));
        }
        Ok(Head {
            events,
            hash: h.to_ascii_lowercase(),
        })
    }

    /// The head of a published JSON object (`ledger_head`), if it has one.
    pub fn of(v: &Value) -> Option<Head> {
        let h = v.get("ledger_head")?;
        Some(Head {
            events: h.get("events")?.as_i64()?,
            hash: h.get("hash")?.as_str()?.to_string(),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({"events": self.events, "hash": self.hash})
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.events, self.hash)
    }
}

/// The bytes a signature covers: [`SIGNED_PREFIX`] and the object without `signature`.
pub fn signed_bytes(v: &Value) -> Vec<u8> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("signature");
    }
    let mut out = SIGNED_PREFIX.as_bytes().to_vec();
    out.extend_from_slice(
        serde_json::to_string(&v)
            .expect("JSON values serialise")
            .as_bytes(),
    );
    out
}

/// Lowercase hex of bytes.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A loaded secret key.
#[derive(Debug)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex(self.0.verifying_key().as_bytes())
    }

    /// Adds `signature` to `v` (an object).
    pub fn sign(&self, v: &mut Value) {
        let sig = self.0.sign(&signed_bytes(v));
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "signature".into(),
                json!({"ed25519": hex(&sig.to_bytes()), "key": self.public_hex()}),
            );
        }
    }

    /// Reads a secret key file (64 hex digits).
    pub fn load(path: &Path) -> Result<SecretKey, LedgerError> {
        let text = std::fs::read_to_string(path).map_err(|e| LedgerError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let seed = unhex::<32>(&text).ok_or_else(|| {
            LedgerError::Invalid(format!(
                "{}: not a veil secret key (64 hex digits)",
                path.display()
            ))
        })?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// A new key from the operating system's randomness, written to `path` (a new file, mode
    /// 0600).
    pub fn create(path: &Path) -> Result<SecretKey, LedgerError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| LedgerError::Invalid(format!("no randomness for a key: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| LedgerError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        let io = |e| LedgerError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        use std::io::Write;
        writeln!(f, "{}", hex(&seed)).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }
}

/// Checks the signature of a published object against the public key `public` (hex).
pub fn verify_signature(v: &Value, public: &str) -> Result<(), String> {
    let key = unhex::<32>(public)
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| format!("{public:?} is not an Ed25519 public key (64 hex digits)"))?;
    let sig = v
        .get("signature")
        .ok_or("not signed")?
        .get("ed25519")
        .and_then(Value::as_str)
        .and_then(unhex::<64>)
        .ok_or("the signature is not 128 hex digits")?;
    key.verify_strict(&signed_bytes(v), &Signature::from_bytes(&sig))
        .map_err(|_| {
            "the signature does not match (the line was changed, or signed by another key)"
                .to_string()
        })
}

/// Where the secret key file is: `VEIL_LEDGER_KEY`, else `$HOME/.config/veil/ledger-signing.key`
/// (never beside the ledger: the key must not travel with it).
pub fn default_key_path() -> PathBuf {
    if let Some(p) = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".config/veil/ledger-signing.key")
}

impl Ledger {
    /// The head of the chain now.
    pub fn head(&self) -> Result<Option<Head>, LedgerError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(Head {
                        events: r.get(0)?,
                        hash: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Whether the current chain extends `head`: its event `head.events` is there with that
    /// hash. The error says how it does not.
    pub fn check_head(&self, head: &Head) -> Result<(), String> {
        let stored: Option<String> = self
            .conn
            .query_row(
                "SELECT hash FROM events WHERE seq = ?1",
                [head.events],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        match stored {
            None => {
                let n = self.head().map_err(|e| e.to_string())?.map_or(0, |h| h.events);
                Err(format!(
                    "event {} is gone: the chain has {n} events (history truncated)",
                    head.events
                ))
            }
            Some(h) if h == head.hash => Ok(()),
            Some(h) => Err(format!(
                "event {} hashes to {h}, the published head says {} (history rewritten at or before event {})",
                head.events, head.hash, head.events
            )),
        }
    }

    /// The head right after the event that applied request `id`.
    pub fn applied_head(&self, id: &str) -> Result<Option<Head>, LedgerError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, hash FROM events WHERE kind = 'request.applied'
                   AND json_extract(payload, '$.id') = ?1 ORDER BY seq LIMIT 1",
                [id],
                |r| {
                    Ok(Head {
                        events: r.get(0)?,
                        hash: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// The public key (hex) that signs what this ledger publishes, once one was added.
    pub fn signing_key(&self) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'signing_key'",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records `public` (hex) as the key that signs from now on.
    pub fn add_signing_key(&mut self, public: &str) -> Result<(), LedgerError> {
        self.write(|w| {
            w.tx.execute(
                "INSERT INTO meta (key, value) VALUES ('signing_key', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [public],
            )?;
            w.event("ledger.key_added", json!({"ed25519": public}))
        })
    }

    /// The secret key to sign with: none when the ledger has no signing key; the key file
    /// ([`default_key_path`]) when it has one, which must hold that key.
    pub fn signer(&self) -> Result<Option<SecretKey>, LedgerError> {
        let Some(public) = self.signing_key()? else {
            return Ok(None);
        };
        let path = default_key_path();
        let key = SecretKey::load(&path).map_err(|e| {
            LedgerError::Invalid(format!(
                "this ledger signs what it publishes (key {public}), but its secret key cannot be read ({e}); set {KEY_ENV} to the key file"
            ))
        })?;
        if key.public_hex() != public {
            return Err(LedgerError::Invalid(format!(
                "{}: holds key {}, but this ledger signs with {public}; set {KEY_ENV} to the right key file",
                path.display(),
                key.public_hex()
            )));
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of datasets-manifest/LEDGER.md; the signature was checked independently
    /// with Node.js's crypto (OpenSSL): `crypto.sign(null, bytes, key)` from the same seed.
    #[test]
    fn pinned_signature_vector() {
        let key = SecretKey(SigningKey::from_bytes(&[7u8; 32]));
        let mut line = json!({"request": "TD-2026-0001", "ledger_head": {"events": 12, "hash": "ab".repeat(32)}});
        assert_eq!(
            String::from_utf8(signed_bytes(&line)).unwrap(),
            format!(
                "veil-ledger-signed-v1\n{{\"ledger_head\":{{\"events\":12,\"hash\":\"{}\"}},\"request\":\"TD-2026-0001\"}}",
                "ab".repeat(32)
            )
        );
        key.sign(&mut line);
        let public = key.public_hex();
        assert_eq!(
            public,
            "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
        );
        assert_eq!(
            line["signature"]["ed25519"].as_str().unwrap(),
            "d6d9681d1623281c55f14d4a5acd2a165b5d112c2eb492fd81948d4416fea95e060da619f3aba205bfd448a827faa7e02f37437d0983f7ab73a85c2fa01bf90b"
        );
        verify_signature(&line, &public).unwrap();
        line["request"] = json!("TD-2026-0002");
        assert!(verify_signature(&line, &public).is_err());
    }

    #[test]
    fn heads_parse_strictly() {
        let h = Head::parse(&format!("3:{}", "A".repeat(64))).unwrap();
        assert_eq!(h.to_string(), format!("3:{}", "a".repeat(64)));
        assert!(Head::parse("3").is_err());
        assert!(Head::parse("0:aa").is_err());
        assert!(Head::parse(&format!("x:{}", "a".repeat(64))).is_err());
    }
}
