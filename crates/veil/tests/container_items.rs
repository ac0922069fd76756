//! Images inside dataset containers are release items of their own: a release of a WebDataset
//! shard or a Parquet table lists every image member (`SHARD#MEMBER`, `TABLE#row=N`), proves one,
//! verifies the containers member by member, and a takedown of one sample rewrites the shard or
//! table without it (everything else unchanged), in a new release, in the output tree and in a
//! mirror, with the member's hash and the container's old and new hashes in the withdrawals feed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::archives::*;
use common::*;

fn lv(ledger: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args.to_vec();
    all.push(&"--ledger");
    all.push(&ledger);
    run(&all)
}

fn manifest(root: &Path, version: &str) -> Vec<serde_json::Value> {
    fs::read_to_string(root.join("ds").join(version).join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn item<'a>(items: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    items
        .iter()
        .find(|i| i["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not an item"))
}

fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn verify(dir: &Path, release: &str, root: &Path) -> (i32, String, String) {
    run(&[
        &"release",
        &"verify",
        &dir,
        &"--release",
        &release,
        &"--root",
        &root,
    ])
}

/// Redacts `input`, builds release ds@1 and imports it into a new ledger.
fn release_one(t: &Path, input: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let out = t.join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let root = t.join("manifests");
    let (code, _, err) = release_build(&out, "ds", "1", &root);
    assert_eq!(code, 0, "{err}");
    let ledger = root.join("ledger.sqlite");
    let (code, _, err) = lv(&ledger, &[&"ledger", &"import", &"--root", &root]);
    assert_eq!(code, 0, "{err}");
    (out, root, ledger)
}

/// Opens, matches, confirms and applies a takedown of `path` with `--purge out`.
fn withdraw(ledger: &Path, root: &Path, out: &Path, path: &str) -> (String, String) {
    let (code, stdout, err) = lv(
        ledger,
        &[
            &"takedown",
            &"open",
            &"--dataset",
            &"ds",
            &"--path",
            &path,
            &"--requester",
            &"Jane Doe",
            &"--contact",
            &"jane@example.org",
            &"--basis",
            &"privacy",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = stdout.split('\t').next().unwrap().trim().to_string();
    let (code, stdout, err) = lv(ledger, &[&"takedown", &"match", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains(path), "{stdout}");
    let (code, _, err) = lv(ledger, &[&"takedown", &"confirm", &id, &path]);
    assert_eq!(code, 0, "{err}");
    // Without the output tree the shard cannot be rewritten: refused, nothing cut.
    let (code, _, err) = lv(ledger, &[&"takedown", &"apply", &id, &"--root", &root]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--purge DIR"), "{err}");
    assert!(!root.join("ds/2").exists());
    let (code, stdout, err) = lv(
        ledger,
        &[
            &"takedown",
            &"apply",
            &id,
            &"--root",
            &root,
            &"--purge",
            &out,
        ],
    );
    assert_eq!(code, 0, "{err}");
    (id, stdout)
}

#[test]
fn a_sample_inside_a_shard_is_an_item_proved_verified_and_withdrawn_alone() {
    let t = tempfile::tempdir().unwrap();
    let members = samples(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(input.join("shards")).unwrap();
    fs::write(input.join("shards/000000.tar"), tar_of(&members)).unwrap();
    let (out, root, ledger) = release_one(t.path(), &input);
    let shard = out.join("shards/000000.tar");
    let images: Vec<&String> = members
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with(".png") || n.ends_with(".jpg"))
        .collect();
    assert!(images.len() >= 3, "{images:?}");

    // Every image member is an item with its own hash (as read back from the shard).
    let items = manifest(&root, "1");
    let got = members_of(&shard);
    for name in &images {
        let it = item(&items, &format!("shards/000000.tar#{name}"));
        assert_eq!(it["archive"], "shards/000000.tar");
        let bytes = &got.iter().find(|(n, _)| n == *name).unwrap().1;
        assert_eq!(it["blake3"], b3(bytes), "{name}");
    }
    assert_eq!(
        item(&items, "shards/000000.tar")["blake3"],
        b3(&fs::read(&shard).unwrap())
    );
    assert!(items
        .iter()
        .all(|i| !i["path"].as_str().unwrap().ends_with(".txt")));

    // A sample inside the shard is proved against the release's root.
    let target = format!("shards/000000.tar#{}", images[1]);
    let (code, proof, err) = run(&[
        &"release", &"prove", &"ds@1", &"--item", &target, &"--root", &root,
    ]);
    assert_eq!(code, 0, "{err}");
    let proof_file = t.path().join("proof.json");
    fs::write(&proof_file, &proof).unwrap();
    let (code, _, err) = run(&[&"release", &"check-proof", &proof_file]);
    assert_eq!(code, 0, "{err}");

    // Verify reads the shard member by member: a changed member is named.
    let (code, stdout, err) = verify(&out, "ds@1", &root);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains(&format!("{} images inside", images.len())),
        "{stdout}"
    );
    let mirror = t.path().join("mirror");
    copy_dir(&out.join("shards"), &mirror.join("shards"));
    let original = fs::read(&shard).unwrap();
    let tampered: Vec<(String, Vec<u8>)> = got
        .iter()
        .map(|(n, d)| {
            let mut d = d.clone();
            if n == images[0] {
                let last = d.len() - 1;
                d[last] ^= 1;
            }
            (n.clone(), d)
        })
        .collect();
    fs::write(&shard, tar_of(&tampered)).unwrap();
    let (code, stdout, _) = verify(&out, "ds@1", &root);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("CHANGED  shards/000000.tar#{}", images[0])),
        "{stdout}"
    );
    assert!(!stdout.contains(&format!("CHANGED  {target}")), "{stdout}");
    fs::write(&shard, &original).unwrap();

    // Withdraw one sample: the new release and the output tree hold the shard without it.
    let (id, stdout) = withdraw(&ledger, &root, &out, &target);
    assert!(stdout.contains("new release ds@2"), "{stdout}");
    assert!(stdout.contains("rewrote shards/000000.tar"), "{stdout}");
    let key = images[1].split('.').next().unwrap();
    let after = members_of(&shard);
    let want: Vec<&(String, Vec<u8>)> = got
        .iter()
        .filter(|(n, _)| !n.starts_with(&format!("{key}.")))
        .collect();
    assert_eq!(
        after.len(),
        got.len() - 3,
        "the sample's image, json and txt are gone"
    );
    for ((n, d), (wn, wd)) in after.iter().zip(want) {
        assert_eq!(
            (n, d),
            (wn, wd),
            "every other member keeps its name, order and bytes"
        );
    }
    let items2 = manifest(&root, "2");
    assert!(items2.iter().all(|i| i["path"] != target.as_str()));
    assert_eq!(
        item(&items2, "shards/000000.tar")["blake3"],
        b3(&fs::read(&shard).unwrap()),
        "the new release lists the rewritten shard"
    );
    let (code, stdout, err) = verify(&out, "ds@2", &root);
    assert_eq!(code, 0, "{stdout}{err}");

    // A mirror of release 1 is purged to the same bytes.
    let (code, stdout, err) = lv(&ledger, &[&"takedown", &"purge", &id, &mirror]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains(&format!("deleted {target}")), "{stdout}");
    assert_eq!(
        fs::read(mirror.join("shards/000000.tar")).unwrap(),
        fs::read(&shard).unwrap()
    );
    let (code, stdout, _) = lv(&ledger, &[&"takedown", &"purge", &id, &mirror]);
    assert_eq!(code, 0);
    assert!(stdout.contains("already rewritten"), "{stdout}");

    // The feed lists the member's hash and the shard's hashes before and after.
    let (code, feed, err) = lv(&ledger, &[&"withdrawals", &"export"]);
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(feed.lines().next().unwrap()).unwrap();
    let withdrawn = item(&items, &target)["blake3"].clone();
    assert!(
        line["withdrawn_blake3"]
            .as_array()
            .unwrap()
            .contains(&withdrawn),
        "{line}"
    );
    let rewritten = &line["rewritten_containers"][0];
    assert_eq!(rewritten["path"], "shards/000000.tar");
    assert_eq!(rewritten["blake3"], b3(&original));
    assert_eq!(rewritten["new_blake3"], b3(&fs::read(&shard).unwrap()));
}

#[test]
fn a_row_of_a_parquet_table_is_withdrawn_and_the_rest_of_the_table_kept() {
    use arrow_array::{Array, BinaryArray, Int64Array, StructArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let t = tempfile::tempdir().unwrap();
    let members = samples(t.path());
    let images: Vec<Vec<u8>> = members
        .iter()
        .filter(|(n, _)| n.ends_with(".png") || n.ends_with(".jpg"))
        .map(|(_, d)| d.clone())
        .collect();
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    let table = input.join("train.parquet");
    tables::write_hf_table(&table, &images, 2);
    let (out, root, ledger) = release_one(t.path(), &input);
    let out_table = out.join("train.parquet");

    let read = |p: &Path| -> Vec<(i64, Option<String>)> {
        let r = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(p).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut rows = Vec::new();
        for b in r {
            let b = b.unwrap();
            let ids = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
            let img = b.column(0).as_any().downcast_ref::<StructArray>().unwrap();
            let bytes = img
                .column(0)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                rows.push((
                    ids.value(i),
                    (!bytes.is_null(i)).then(|| b3(bytes.value(i))),
                ));
            }
        }
        rows
    };
    let before = read(&out_table);
    assert_eq!(before.len(), images.len());
    let items = manifest(&root, "1");
    for (k, (_, h)) in before.iter().enumerate() {
        let it = item(&items, &format!("train.parquet#row={k}"));
        assert_eq!(it["blake3"].as_str(), h.as_deref());
    }
    let (code, stdout, err) = verify(&out, "ds@1", &root);
    assert_eq!(code, 0, "{stdout}{err}");

    let (_, stdout) = withdraw(&ledger, &root, &out, "train.parquet#row=1");
    assert!(stdout.contains("new release ds@2"), "{stdout}");
    let after = read(&out_table);
    let mut want = before.clone();
    want.remove(1);
    assert_eq!(
        after, want,
        "every other row keeps its id and image, in order"
    );
    // Items keep their source row numbers; verify pairs them with the rows in order.
    let (code, stdout, err) = verify(&out, "ds@2", &root);
    assert_eq!(code, 0, "{stdout}{err}");
    let items2 = manifest(&root, "2");
    assert!(items2.iter().any(|i| i["path"] == "train.parquet#row=2"));
    assert!(items2.iter().all(|i| i["path"] != "train.parquet#row=1"));
}

#[test]
fn the_review_page_shows_the_images_inside_shards_and_tables() {
    let t = tempfile::tempdir().unwrap();
    let members = samples(t.path());
    let images: Vec<Vec<u8>> = members
        .iter()
        .filter(|(n, _)| n.ends_with(".png") || n.ends_with(".jpg"))
        .map(|(_, d)| d.clone())
        .collect();
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    fs::write(input.join("000000.tar"), tar_of(&members)).unwrap();
    tables::write_hf_table(&input.join("train.parquet"), &images, 2);
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let (code, stdout, err) = run(&[&"report", &out, &"-q"]);
    assert_eq!(code, 0, "{stdout}{err}");
    let n = 2 * images.len();
    assert!(
        err.contains(&format!(
            "review page of {n} images: 0 failed, 0 unreadable"
        )),
        "{err}"
    );
    let thumbs = fs::read_dir(out.join("report/thumbs")).unwrap().count();
    assert!(thumbs >= images.len(), "{thumbs} thumbnails");
    let data = fs::read_to_string(out.join("report/data.js")).unwrap();
    assert!(data.contains("000000.tar#000000.png") && data.contains("train.parquet#row=0"));

    // A member changed after the run is named, not shown.
    let got = members_of(&out.join("000000.tar"));
    let changed: Vec<(String, Vec<u8>)> = got
        .iter()
        .map(|(name, d)| {
            let mut d = d.clone();
            if name == "000001.png" {
                let last = d.len() - 1;
                d[last] ^= 1;
            }
            (name.clone(), d)
        })
        .collect();
    fs::write(out.join("000000.tar"), tar_of(&changed)).unwrap();
    let (code, stdout, err) = run(&[&"report", &out, &"-q", &"--fresh"]);
    assert_eq!(code, 1, "{stdout}{err}");
    assert!(
        err.contains("000000.tar#000001.png") && err.contains("not the file its record describes"),
        "{err}"
    );
}

/// The Hugging Face table layout of tables.rs (image struct, text, id), shared through a module
/// of its own so that both tests write the same thing.
mod tables {
    use std::path::Path;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    pub fn write_hf_table(path: &Path, images: &[Vec<u8>], group: usize) {
        let fields = Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("path", DataType::Utf8, true),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("image", DataType::Struct(fields.clone()), true),
            Field::new("text", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
        ]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group))
            .build();
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(path).unwrap(),
            schema.clone(),
            Some(props),
        )
        .unwrap();
        for (g, chunk) in images.chunks(group).enumerate() {
            let bytes: ArrayRef = Arc::new(BinaryArray::from_iter_values(chunk.iter()));
            let names: ArrayRef = Arc::new(StringArray::from_iter_values(
                (0..chunk.len()).map(|i| format!("{:03}.png", g * group + i)),
            ));
            let image: ArrayRef =
                Arc::new(StructArray::try_new(fields.clone(), vec![bytes, names], None).unwrap());
            let text: ArrayRef = Arc::new(StringArray::from_iter_values(
                (0..chunk.len()).map(|i| format!("photo {}", g * group + i)),
            ));
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
                (0..chunk.len()).map(|i| 1000 + (g * group + i) as i64),
            ));
            w.write(&RecordBatch::try_new(schema.clone(), vec![image, text, ids]).unwrap())
                .unwrap();
            w.flush().unwrap();
        }
        w.close().unwrap();
    }
}
