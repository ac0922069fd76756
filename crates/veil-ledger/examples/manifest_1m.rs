//! Builds the manifest lines and Merkle root of 1,000,000 synthetic items in memory and times each
//! step. Run: `cargo run --release -p veil-ledger --example manifest_1m`.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use veil_ledger::merkle;
use veil_ledger::{manifest_line, ManifestItem, ManifestModel, ProvenanceRef};

const N: usize = 1_000_000;

fn main() {
    let total = Instant::now();
    let hex = |b: &[u8]| blake3::hash(b).to_hex().to_string();

    let t = Instant::now();
    let model = hex(b"model");
    let params = hex(b"params");
    let mut items: Vec<ManifestItem> = (0..N)
        .map(|i| {
            let split = ["train", "val", "test"][i % 3];
            ManifestItem {
                path: format!("{split}/{:03}/{i:08}.jpg", i % 1000),
                size: 100_000 + i as u64,
                blake3: hex(&(i as u64).to_le_bytes()),
                source_blake3: Some(hex(&(i as u64 + N as u64).to_le_bytes())),
                provenance: ProvenanceRef {
                    file: "provenance.jsonl".into(),
                    params_blake3: params.clone(),
                },
                models: vec![ManifestModel {
                    name: "centerface".into(),
                    blake3: model.clone(),
                }],
                licence: Some("CC-BY-4.0".into()),
                split: Some(split.into()),
                source_phash: Some(veil_ledger::PerceptualHashes {
                    pdq: hex(&(i as u64 * 3).to_le_bytes()),
                    pdq_quality: 100,
                    dhash: format!("{:016x}", i as u64 * 7919),
                }),
                output_phash: Some(veil_ledger::PerceptualHashes {
                    pdq: hex(&(i as u64 * 5).to_le_bytes()),
                    pdq_quality: 90,
                    dhash: format!("{:016x}", i as u64 * 104_729),
                }),
                archive: None,
            }
        })
        .collect();
    println!(
        "generate {N} items:      {:.3} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    items.sort_by(|a, b| a.path.cmp(&b.path));
    println!(
        "sort by path:                 {:.3} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut manifest = Vec::with_capacity(N * 400);
    let mut leaves = Vec::with_capacity(N);
    for item in &items {
        let line = manifest_line(item);
        leaves.push(merkle::leaf_hash(line.as_bytes()));
        manifest.extend_from_slice(line.as_bytes());
        manifest.push(b'\n');
    }
    println!(
        "serialise + leaf hashes:      {:.3} s ({} MB manifest)",
        t.elapsed().as_secs_f64(),
        manifest.len() / 1_000_000
    );

    let t = Instant::now();
    let manifest_blake3 = blake3::hash(&manifest);
    println!(
        "manifest blake3:              {:.3} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let root = merkle::root(&leaves);
    println!(
        "Merkle root:                  {:.3} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let index = N / 3 + 7;
    let proof = merkle::inclusion_proof(&leaves, index);
    println!(
        "one inclusion proof:          {:.3} s ({} hashes)",
        t.elapsed().as_secs_f64(),
        proof.len()
    );

    let t = Instant::now();
    let ok = merkle::verify_inclusion(leaves[index], index, N, &proof, root);
    println!(
        "verify it:                    {:.6} s ({ok})",
        t.elapsed().as_secs_f64()
    );
    assert!(ok);

    println!(
        "total:                        {:.3} s; root {}, manifest {}",
        total.elapsed().as_secs_f64(),
        blake3::Hash::from(root).to_hex(),
        manifest_blake3.to_hex()
    );
}
