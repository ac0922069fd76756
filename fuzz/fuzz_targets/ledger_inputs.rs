//! Untrusted text the takedown ledger reads: holiday calendar files and dates (deadline
//! arithmetic must stay bounded), and the CSV download logs of recipients imported into a ledger
//! (all rows or none; never a panic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_takedown::{Calendar, DuePolicy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cal) = Calendar::parse(text) {
        let start = veil_core::Date::parse("2026-11-25").unwrap();
        // Even a calendar of holidays cannot make the count run forever: at most as many
        // days as the file has lines are skipped.
        if cal.holidays.len() < 2000 {
            let due = DuePolicy::WorkingDays(15).due(start, &cal);
            assert!(due > start);
        }
    }
    for word in text.split_whitespace().take(16) {
        if let Ok(d) = veil_core::Date::parse(word) {
            assert_eq!(veil_core::Date::parse(&d.to_string()), Ok(d));
            let _ = d.add_months(13);
        }
    }
    thread_local! {
        static LEDGER: std::cell::RefCell<Option<(tempfile_dir::Dir, veil_takedown::Ledger)>> =
            const { std::cell::RefCell::new(None) };
    }
    LEDGER.with(|l| {
        let mut l = l.borrow_mut();
        if l.is_none() {
            let dir = tempfile_dir::Dir::new();
            let ledger = veil_takedown::Ledger::open_or_create(&dir.0.join("l.sqlite")).unwrap();
            *l = Some((dir, ledger));
        }
        let (dir, ledger) = l.as_mut().unwrap();
        let csv = dir.0.join("log.csv");
        std::fs::write(&csv, data).unwrap();
        // No release is in this ledger, so every well-formed row names an unknown release: the
        // import must fail as a whole and add nothing.
        let before = ledger.recipients(None).unwrap().len();
        let _ = ledger.import_recipients_csv(&csv);
        assert_eq!(ledger.recipients(None).unwrap().len(), before);
    });
});

mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!("veil-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
