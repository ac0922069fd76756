-- veil ledger schema 1. Hashes are lowercase hex unless noted; times are RFC 3339 UTC.
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'active',          -- active | withdrawn
    withdrawn_by TEXT,                              -- request id
    withdrawn_at TEXT
);
CREATE TABLE releases (
    dataset TEXT NOT NULL REFERENCES datasets(name),
    version TEXT NOT NULL,
    parent TEXT,
    created_at TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    manifest_blake3 TEXT NOT NULL,
    items INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'current',         -- current | superseded | withdrawn
    superseded_by TEXT,
    status_request TEXT,                            -- request that withdrew it
    PRIMARY KEY (dataset, version)
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL,
    version TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    blake3 TEXT NOT NULL,                           -- of the released (redacted) file
    source_blake3 TEXT,
    source_pdq BLOB,                                -- 32 bytes
    source_pdq_quality INTEGER,
    source_dhash INTEGER,                           -- 64 bits as a signed integer
    output_pdq BLOB,
    output_pdq_quality INTEGER,
    output_dhash INTEGER,
    UNIQUE (dataset, version, path),
    FOREIGN KEY (dataset, version) REFERENCES releases(dataset, version)
);
CREATE INDEX items_blake3 ON items(blake3);
CREATE INDEX items_source_blake3 ON items(source_blake3);
CREATE TABLE recipients (
    id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL,
    version TEXT NOT NULL,
    name TEXT NOT NULL,
    contact TEXT NOT NULL,
    received_at TEXT NOT NULL,
    origin TEXT NOT NULL,                           -- csv:<file> | manual
    UNIQUE (dataset, version, name, contact, received_at),
    FOREIGN KEY (dataset, version) REFERENCES releases(dataset, version)
);
CREATE TABLE policies (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,                             -- working_days | calendar_days | calendar_months
    amount INTEGER NOT NULL,
    holidays TEXT                                   -- holiday calendar file, relative to the ledger's directory
);
INSERT INTO policies (name, kind, amount, holidays) VALUES ('default', 'working_days', 15, NULL);
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL REFERENCES datasets(name),
    releases TEXT,                                  -- JSON array of versions; NULL = all releases
    whole_dataset INTEGER NOT NULL,
    scope TEXT NOT NULL,                            -- JSON: paths, blake3, photos (hashes only)
    requester TEXT NOT NULL,
    contact TEXT NOT NULL,
    basis TEXT NOT NULL,
    note TEXT NOT NULL,
    received_at TEXT NOT NULL,
    due TEXT NOT NULL,                              -- last day on time, YYYY-MM-DD
    policy TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE matches (
    request TEXT NOT NULL REFERENCES requests(id),
    item INTEGER NOT NULL REFERENCES items(id),
    how TEXT NOT NULL,
    distance INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'candidate',        -- candidate | confirmed | rejected
    PRIMARY KEY (request, item)
);
CREATE TABLE tombstones (
    request TEXT NOT NULL REFERENCES requests(id),
    dataset TEXT NOT NULL,
    version TEXT NOT NULL,                          -- newest release that held the item
    new_version TEXT,                               -- release cut without it (NULL: dataset withdrawn)
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    blake3 TEXT NOT NULL,
    source_blake3 TEXT,
    PRIMARY KEY (request, dataset, path)
);
CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    request TEXT NOT NULL REFERENCES requests(id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL                            -- JSON
);
CREATE TABLE notices (
    id INTEGER PRIMARY KEY,
    request TEXT NOT NULL REFERENCES requests(id),
    name TEXT NOT NULL,
    contact TEXT NOT NULL,
    releases TEXT NOT NULL,                         -- JSON array of NAME@V
    file TEXT NOT NULL,
    blake3 TEXT NOT NULL,                           -- of the JSON notice
    written_at TEXT NOT NULL,
    ack_at TEXT,
    ack_note TEXT
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
