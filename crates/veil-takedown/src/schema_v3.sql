-- Schema 3: correspondence. Every letter (the requester's acknowledgement and answer, the
-- recipients' notices) is rendered once, stored with its blake3, then sent (or handed over by
-- other means); each delivery attempt is an event.
ALTER TABLE requests ADD COLUMN language TEXT;                  -- en | zh; NULL = en
ALTER TABLE notices ADD COLUMN ack_eml_blake3 TEXT;             -- the raw reply (.eml) recorded with ack
CREATE TABLE settings (
    key TEXT PRIMARY KEY,                                       -- smtp_url | smtp_from | reply_to | smtp_password_file
    value TEXT NOT NULL
);
CREATE TABLE letters (
    id INTEGER PRIMARY KEY,
    request TEXT NOT NULL REFERENCES requests(id),
    kind TEXT NOT NULL,                                         -- acknowledgement | answer | notice
    event TEXT NOT NULL,                                        -- opened | applied | rejected | closed | notice
    to_name TEXT NOT NULL,
    to_addr TEXT NOT NULL,
    language TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    html TEXT,
    blake3 TEXT NOT NULL,                                       -- of the rendered letter (letters.rs)
    message_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,                                       -- pending | sending | sent | failed | uncertain | handed | unaddressable
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT,
    sent_at TEXT,
    server_reply TEXT,
    handed_by TEXT,
    UNIQUE (request, kind, event, to_addr)
);
