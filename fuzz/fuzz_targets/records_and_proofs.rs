//! Untrusted JSON that veil parses and checks: provenance records, manifest lines, inclusion and
//! absence proofs (what a third party runs `veil release check-proof` on). Parsing and checking
//! must never panic, and a proof built from parsed items must check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_ledger::{AbsenceProof, InclusionProof, ManifestItem, ProvenanceRecord};

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let _ = serde_json::from_slice::<ProvenanceRecord>(line);
        if let Ok(item) = serde_json::from_slice::<ManifestItem>(line) {
            let _ = veil_ledger::manifest_line(&item);
        }
    }
    if let Ok(p) = serde_json::from_slice::<InclusionProof>(data) {
        let _ = veil_ledger::check_proof(&p);
    }
    if let Ok(p) = serde_json::from_slice::<AbsenceProof>(data) {
        let _ = veil_ledger::check_absence(&p);
    }
});
