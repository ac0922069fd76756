-- Schema 4: one tombstone per withdrawn item of each release (request, dataset, version, path),
-- so that every release's own bytes of a withdrawn item are kept, published and recognised
-- (schema 1 kept one per path, the newest release's, and lost an older release's other bytes).
CREATE TABLE tombstones_v4 (
    request TEXT NOT NULL REFERENCES requests(id),
    dataset TEXT NOT NULL,
    version TEXT NOT NULL,                          -- the release that held the item
    new_version TEXT,                               -- release cut without it (NULL: none cut)
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    blake3 TEXT NOT NULL,
    source_blake3 TEXT,
    PRIMARY KEY (request, dataset, version, path)
);
INSERT INTO tombstones_v4 (request, dataset, version, new_version, path, size, blake3, source_blake3)
    SELECT request, dataset, version, new_version, path, size, blake3, source_blake3 FROM tombstones;
DROP TABLE tombstones;
ALTER TABLE tombstones_v4 RENAME TO tombstones;
CREATE INDEX tombstones_blake3 ON tombstones(blake3);
CREATE INDEX tombstones_source_blake3 ON tombstones(source_blake3);
