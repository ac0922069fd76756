//! Matching one photo against 1,000,000 released items (synthetic hashes). Writes a release of
//! 1 M items to a temp dir, imports it into a new ledger (verified, as `veil ledger import`
//! does), opens a request with a photo's hashes near one planted item, and times `find_matches`
//! (the same call as `veil takedown match`). Run:
//! `cargo run --release -p veil-takedown --example match_1m`.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Instant;

use veil_ledger::{
    manifest_line, merkle, ManifestItem, PerceptualHashes, ProvenanceRef, ReleaseInfo,
};
use veil_takedown::{Basis, Ledger, NewRequest, PhotoEvidence, Scope};

const N: usize = 1_000_000;

fn hash_of(seed: u64) -> [u8; 32] {
    *blake3::hash(&seed.to_le_bytes()).as_bytes()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("manifests");
    let planted = N / 2 + 17;

    let t = Instant::now();
    let mut items: Vec<ManifestItem> = (0..N)
        .map(|i| {
            let s = hash_of(i as u64);
            let o = hash_of(i as u64 + 10 * N as u64);
            let d = u64::from_le_bytes(hash_of(i as u64 + 20 * N as u64)[..8].try_into().unwrap());
            ManifestItem {
                path: format!("train/{:03}/{i:08}.jpg", i % 1000),
                size: 100_000,
                blake3: hex(&hash_of(i as u64 + 30 * N as u64)),
                source_blake3: Some(hex(&hash_of(i as u64 + 40 * N as u64))),
                provenance: ProvenanceRef {
                    file: "provenance.jsonl".into(),
                    params_blake3: hex(&hash_of(1)),
                },
                models: vec![],
                licence: None,
                split: Some("train".into()),
                source_phash: Some(PerceptualHashes {
                    pdq: hex(&s),
                    pdq_quality: 100,
                    dhash: format!("{d:016x}"),
                }),
                output_phash: Some(PerceptualHashes {
                    pdq: hex(&o),
                    pdq_quality: 100,
                    dhash: format!("{:016x}", d.rotate_left(7)),
                }),
                archive: None,
            }
        })
        .collect();
    items.sort_by(|a, b| a.path.cmp(&b.path));
    let mut manifest = Vec::with_capacity(N * 600);
    let mut leaves = Vec::with_capacity(N);
    for it in &items {
        let line = manifest_line(it);
        leaves.push(merkle::leaf_hash(line.as_bytes()));
        manifest.extend_from_slice(line.as_bytes());
        manifest.push(b'\n');
    }
    let info = ReleaseInfo {
        schema: 1,
        dataset: "synthetic".into(),
        version: "1".into(),
        parent: None,
        created_at: "2026-11-25T00:00:00Z".into(),
        items: N as u64,
        bytes: 100_000 * N as u64,
        tool_version: veil_core::TOOL_VERSION.into(),
        policy_blake3: None,
        params_blake3: vec![hex(&hash_of(1))],
        merkle_root: hex(&merkle::root(&leaves)),
        manifest_blake3: blake3::hash(&manifest).to_hex().to_string(),
        leaf_encoding: veil_ledger::LEAF_ENCODING.into(),
        withdrawn: 0,
        withdrawn_blake3: None,
    };
    let rel = root.join("synthetic/1");
    std::fs::create_dir_all(&rel).unwrap();
    std::fs::File::create(rel.join("manifest.jsonl"))
        .unwrap()
        .write_all(&manifest)
        .unwrap();
    std::fs::write(
        rel.join("release.json"),
        serde_json::to_vec_pretty(&info).unwrap(),
    )
    .unwrap();
    println!(
        "write a 1 M item release:  {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut ledger = Ledger::open_or_create(&dir.path().join("ledger.sqlite")).unwrap();
    ledger.import_release(&root, "synthetic", "1").unwrap();
    println!(
        "verify + import into ledger: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // The evidence: the planted item's source PDQ with 20 of 256 bits flipped.
    let mut pdq = hash_of(planted as u64);
    for bit in 0..20 {
        pdq[bit * 3 % 32] ^= 1 << (bit % 8);
    }
    let req = ledger
        .open_request(NewRequest {
            dataset: "synthetic".into(),
            releases: None,
            whole_dataset: false,
            scope: Scope {
                photos: vec![PhotoEvidence {
                    blake3: hex(&hash_of(u64::MAX)),
                    pdq: hex(&pdq),
                    pdq_quality: 100,
                    dhash: "0123456789abcdef".into(),
                }],
                ..Scope::default()
            },
            requester: "bench".into(),
            contact: "bench@example.org".into(),
            basis: Basis::Privacy,
            note: String::new(),
            received: None,
            policy: None,
            language: None,
        })
        .unwrap();
    let mut times = Vec::new();
    let mut found = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        found = ledger.find_matches(&req.id).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "match one photo vs {N} items: median {:.3} s, min {:.3} s, max {:.3} s (5 runs)",
        times[2], times[0], times[4]
    );
    println!(
        "candidates: {:?}",
        found
            .iter()
            .map(|c| (&c.path, &c.how, c.distance))
            .collect::<Vec<_>>()
    );
    assert_eq!(found.len(), 1);
    assert!(found[0].path.ends_with(&format!("{planted:08}.jpg")));

    // What `veil ledger verify` costs at this size: every table rebuilt from the events.
    let t = Instant::now();
    let replay = ledger.replay().unwrap();
    println!(
        "replay every table from the events: {:.2} s, {} events replayed, {} differences",
        t.elapsed().as_secs_f64(),
        replay.replayed,
        replay.divergences.len()
    );
    assert!(replay.divergences.is_empty());
}
