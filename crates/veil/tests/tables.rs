//! Parquet image tables as Hugging Face writes them (`image` = `{bytes, path}`, `text`, `id`,
//! the `huggingface` key-value metadata, two row groups) come out as Parquet with the same schema,
//! metadata, row groups and other columns, each image redacted; a row whose image cannot be
//! redacted is dropped and recorded as failed; pyarrow reads the output. A table with a binary
//! column that is not recognised as images is refused unless `--image-column` names it.

#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use common::*;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

const HF_META: &str = r#"{"info": {"features": {"image": {"_type": "Image"}, "text": {"dtype": "string", "_type": "Value"}, "id": {"dtype": "int64", "_type": "Value"}}}}"#;

fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

/// Writes an HF-style table of `rows` (image bytes or None, path) in row groups of `group`.
fn write_table(path: &Path, rows: &[(Option<Vec<u8>>, String)], group: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("image", DataType::Struct(image_fields()), true),
        Field::new("text", DataType::Utf8, true),
        Field::new("id", DataType::Int64, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "huggingface".into(),
            HF_META.to_string(),
        )]))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    for chunk in rows.chunks(group) {
        let bytes: ArrayRef = Arc::new(BinaryArray::from_iter(
            chunk.iter().map(|(b, _)| b.as_deref()),
        ));
        let paths: ArrayRef = Arc::new(StringArray::from_iter_values(
            chunk.iter().map(|(_, p)| p.as_str()),
        ));
        let image: ArrayRef =
            Arc::new(StructArray::try_new(image_fields(), vec![bytes, paths], None).unwrap());
        let text: ArrayRef = Arc::new(StringArray::from_iter_values(
            chunk.iter().map(|(_, p)| format!("a photo: {p}")),
        ));
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(
            chunk
                .iter()
                .map(|(_, p)| p.len() as i64 * 1000 + p.as_bytes()[0] as i64),
        ));
        let batch = RecordBatch::try_new(schema.clone(), vec![image, text, ids]).unwrap();
        w.write(&batch).unwrap();
        w.flush().unwrap();
    }
    w.close().unwrap();
}

/// A Python with pyarrow: `VEIL_TEST_PYTHON`, else `.venv-test/bin/python` (made by
/// scripts/test.sh), else None (the pyarrow half of the test says SKIPPED).
fn pyarrow_python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("VEIL_TEST_PYTHON").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-test/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import pyarrow.parquet"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn an_hf_parquet_table_is_redacted_into_the_same_table() {
    let t = tempfile::tempdir().unwrap();
    let sample = t.path().join("sample");
    let (code, _, err) = run(&[&"sample", &sample]);
    assert_eq!(code, 0, "{err}");
    let mut names: Vec<String> = std::fs::read_dir(&sample)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut rows: Vec<(Option<Vec<u8>>, String)> = names
        .iter()
        .map(|n| (Some(std::fs::read(sample.join(n)).unwrap()), n.clone()))
        .collect();
    // A null image, and an image cut in half.
    rows.push((None, "none.png".into()));
    let astronaut = rows[0].0.clone().unwrap();
    rows.push((
        Some(astronaut[..astronaut.len() / 2].to_vec()),
        "cut.png".into(),
    ));
    let input = t.path().join("in");
    std::fs::create_dir_all(input.join("data")).unwrap();
    let table = input.join("data/train-00000-of-00001.parquet");
    write_table(&table, &rows, 4);
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 1, "the cut image fails the run: {err}");
    let records = provenance(&out);
    let rel = "data/train-00000-of-00001.parquet";
    let rec = records.iter().find(|r| r["path"] == rel).unwrap();
    assert_eq!(
        (rec["status"].as_str(), rec["format"].as_str()),
        (Some("redacted"), Some("parquet"))
    );
    let cut_row = rows.len() - 1;
    let cut = records
        .iter()
        .find(|r| r["path"] == format!("{rel}#row={cut_row}").as_str())
        .unwrap();
    assert_eq!(cut["status"], "failed");
    let astro = records
        .iter()
        .find(|r| r["path"] == format!("{rel}#row=0").as_str())
        .unwrap();
    assert_eq!(astro["archive"], rel);
    assert!(
        astro["detections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["class"] == "face"),
        "{astro}"
    );
    // The check reads the table and agrees with the records.
    let (code, _, err) = run(&[&"check", &out, &"-q"]);
    assert_eq!(code, 0, "{err}");

    let Some(python) = pyarrow_python() else {
        eprintln!(
            "SKIPPED (pyarrow half): no Python with pyarrow (scripts/test.sh makes .venv-test)"
        );
        return;
    };
    let script = r#"
import json, sys, pyarrow.parquet as pq
a, b = pq.ParquetFile(sys.argv[1]), pq.ParquetFile(sys.argv[2])
ta, tb = a.read(), b.read()
out = {
  "schema_equal": ta.schema.remove_metadata().equals(tb.schema.remove_metadata()),
  "hf_meta": (b.schema_arrow.metadata or {}).get(b"huggingface", b"").decode(),
  "groups": [a.metadata.num_row_groups, b.metadata.num_row_groups],
  "group_rows": [[a.metadata.row_group(i).num_rows for i in range(a.metadata.num_row_groups)],
                 [b.metadata.row_group(i).num_rows for i in range(b.metadata.num_row_groups)]],
  "compression": b.metadata.row_group(0).column(0).compression,
  "text": [ta.column("text").to_pylist(), tb.column("text").to_pylist()],
  "id": [ta.column("id").to_pylist(), tb.column("id").to_pylist()],
  "paths": [[r["path"] for r in ta.column("image").to_pylist()], [r["path"] for r in tb.column("image").to_pylist()]],
  "changed": [x["bytes"] != y["bytes"] for x, y in zip(ta.column("image").to_pylist(), tb.column("image").to_pylist())],
}
print(json.dumps(out))
"#;
    let o = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&table)
        .arg(out.join(rel))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!("{v}");
    assert_eq!(v["schema_equal"], true, "{v}");
    assert_eq!(v["hf_meta"], HF_META, "the huggingface metadata is kept");
    assert_eq!(v["groups"][0], v["groups"][1], "same row groups: {v}");
    assert_eq!(v["compression"], "ZSTD");
    // The cut row (last) is dropped; every other row keeps its text, id and path, in order.
    let drop_last = |k: &str| {
        let mut a = v[k][0].as_array().unwrap().clone();
        a.pop();
        serde_json::Value::Array(a)
    };
    for k in ["text", "id", "paths"] {
        assert_eq!(drop_last(k), v[k][1], "{k}");
    }
    assert_eq!(v["changed"][0], true, "the astronaut's image is redacted");
}

#[test]
fn a_table_with_an_unrecognised_binary_column_is_refused_unless_named() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let png = {
        let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    };
    let schema = Arc::new(Schema::new(vec![Field::new(
        "jpg",
        DataType::Binary,
        false,
    )]));
    let file = std::fs::File::create(input.join("t.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), None).unwrap();
    let col: ArrayRef = Arc::new(BinaryArray::from_iter_values([png.as_slice()]));
    w.write(&RecordBatch::try_new(schema, vec![col]).unwrap())
        .unwrap();
    w.close().unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q", &"--copy-other"]);
    assert_eq!(code, 1, "{err}");
    let r = &provenance(&out)[0];
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"].as_str().unwrap().contains("--image-column"),
        "{r}"
    );
    assert!(!out.join("t.parquet").exists(), "never copied");
    let out2 = t.path().join("out2");
    let (code, _, err) = run(&[&"redact", &input, &out2, &"-q", &"--image-column", &"jpg"]);
    assert_eq!(code, 0, "{err}");
    let recs = provenance(&out2);
    assert!(recs
        .iter()
        .any(|r| r["path"] == "t.parquet#row=0" && r["status"] != "failed"));
    assert!(out2.join("t.parquet").is_file());
}

fn small_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Redacts a one-row table of an `image` column (a small PNG) and `other` with `values`, written
/// with `props`; returns the exit code, the table's record and the output directory (kept in `t`).
fn redact_one_row_table(
    t: &tempfile::TempDir,
    other: Field,
    values: ArrayRef,
    props: Option<WriterProperties>,
) -> (i32, serde_json::Value, PathBuf) {
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let png = small_png();
    let schema = Arc::new(Schema::new(vec![
        Field::new("image", DataType::Struct(image_fields()), true),
        other,
    ]));
    let bytes: ArrayRef = Arc::new(BinaryArray::from_iter_values([png.as_slice()]));
    let paths: ArrayRef = Arc::new(StringArray::from_iter_values(["a.png"]));
    let image: ArrayRef =
        Arc::new(StructArray::try_new(image_fields(), vec![bytes, paths], None).unwrap());
    let file = std::fs::File::create(input.join("t.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), props).unwrap();
    w.write(&RecordBatch::try_new(schema, vec![image, values]).unwrap())
        .unwrap();
    w.close().unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    let r = provenance(&out)
        .into_iter()
        .find(|r| r["path"] == "t.parquet")
        .unwrap_or_else(|| panic!("no record of the table: {err}"));
    (code, r, out)
}

/// Redacts a one-row table of an `image` column and `other`; asserts the table fails as a whole,
/// naming `expect` (column and row), and that nothing is written.
fn table_with_other_column_fails(other: Field, values: ArrayRef, expect: &str) {
    let t = tempfile::tempdir().unwrap();
    let (code, r, out) = redact_one_row_table(&t, other, values, None);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains(expect), "{r}");
    assert!(!out.join("t.parquet").exists());
}

/// An image outside the image column (a second binary column of thumbnails) would pass through
/// unredacted: the table fails as a whole, naming the column, and nothing is written.
#[test]
fn an_image_in_another_column_fails_the_table() {
    let thumb: ArrayRef = Arc::new(BinaryArray::from_iter_values([small_png().as_slice()]));
    table_with_other_column_fails(
        Field::new("thumbnail", DataType::Binary, true),
        thumb,
        "column `thumbnail` row 0",
    );
}

/// The same in a binary view column, which the first check did not look at.
#[test]
fn an_image_in_a_binary_view_column_fails_the_table() {
    let png = small_png();
    let thumb: ArrayRef = Arc::new(arrow_array::BinaryViewArray::from_iter_values([
        png.as_slice()
    ]));
    table_with_other_column_fails(
        Field::new("thumb", DataType::BinaryView, true),
        thumb,
        "column `thumb` row 0",
    );
}

/// A list of `{bytes, path}` images next to the image column (crops, extra views): each would
/// pass through unredacted.
#[test]
fn images_in_a_list_column_fail_the_table() {
    let png = small_png();
    let bytes: ArrayRef = Arc::new(BinaryArray::from_iter_values([
        b"not an image".as_slice(),
        png.as_slice(),
    ]));
    let paths: ArrayRef = Arc::new(StringArray::from_iter_values(["a.txt", "crop.png"]));
    let crops: ArrayRef =
        Arc::new(StructArray::try_new(image_fields(), vec![bytes, paths], None).unwrap());
    let item = Arc::new(Field::new("item", DataType::Struct(image_fields()), true));
    let list: ArrayRef = Arc::new(
        arrow_array::ListArray::try_new(
            item.clone(),
            arrow_buffer::OffsetBuffer::from_lengths([2]),
            crops,
            None,
        )
        .unwrap(),
    );
    table_with_other_column_fails(
        Field::new("crops", DataType::List(item), true),
        list,
        "column `crops[].bytes` row 0",
    );
}

/// An image written into a string column as a data URI.
#[test]
fn an_image_data_uri_in_a_string_column_fails_the_table() {
    let uri = format!(
        "data:image/png;base64,{}",
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    );
    let col: ArrayRef = Arc::new(StringArray::from_iter_values([uri.as_str()]));
    table_with_other_column_fails(
        Field::new("preview", DataType::Utf8, true),
        col,
        "column `preview` row 0",
    );
}

/// An image inside a JSON string (a `data:image/` URI not at the start of the cell) would pass
/// through unredacted.
#[test]
fn an_image_data_uri_inside_json_text_fails_the_table() {
    let json = "{\"thumb\": \"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf\"}";
    let col: ArrayRef = Arc::new(StringArray::from_iter_values([json]));
    table_with_other_column_fails(
        Field::new("meta", DataType::Utf8, true),
        col,
        "column `meta` row 0 holds an image as a `data:image/` URI at byte 11 of the text",
    );
}

/// A pickled image in a binary column (the bytes do not start with the image's signature).
#[test]
fn a_pickled_image_in_a_binary_column_fails_the_table() {
    let pickled = [
        &b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00C"[..],
        &small_png(),
        b"\x94.",
    ]
    .concat();
    let col: ArrayRef = Arc::new(BinaryArray::from_iter_values([pickled.as_slice()]));
    table_with_other_column_fails(
        Field::new("blob", DataType::Binary, true),
        col,
        "column `blob` row 0 holds a PNG image at byte 12 of the value",
    );
}

/// A table is written again with its key-value metadata: a picture kept there (a thumbnail as
/// base64 in the file's metadata or in a field's) would pass unredacted, so the table fails.
#[test]
fn a_picture_in_the_tables_metadata_fails_the_table() {
    const B64: &str = "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAAO0lEQVR4nGNkYPjPQAvARBNTRw0eNXjU4FGDRw0eNXjU4FGDRw0eNXjU4FGDRw0eNXjU4FGDRw0eNRgApVoB";
    for (file_meta, field_meta) in [(true, false), (false, true)] {
        let t = tempfile::tempdir().unwrap();
        let mut text = Field::new("text", DataType::Utf8, true);
        if field_meta {
            text = text.with_metadata([("preview".to_string(), B64.to_string())]);
        }
        let texts: ArrayRef = Arc::new(StringArray::from_iter_values(["a caption"]));
        let props = file_meta.then(|| {
            WriterProperties::builder()
                .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                    "thumbnail".into(),
                    format!("data:image/png;base64,{B64}"),
                )]))
                .build()
        });
        let (code, r, out) = redact_one_row_table(&t, text, texts, props);
        assert_eq!(code, 1, "{r}");
        assert_eq!(r["status"], "failed", "{r}");
        let why = r["error"].as_str().unwrap();
        let key = if file_meta {
            "`thumbnail`"
        } else {
            "`text: preview`"
        };
        assert!(why.contains("its metadata") && why.contains(key), "{r}");
        assert!(!out.join("t.parquet").exists());
    }
}

/// A preprocessed table keeps its images twice: encoded in the image column, and as
/// `pixel_values` (3xHxW floats, as an image processor writes them) or an `Array3D` of uint8
/// pixels, which veil cannot redact. Such a table fails; boxes (floats nested twice) do not.
#[test]
fn a_column_of_pixel_arrays_fails_the_table_and_boxes_do_not() {
    use arrow_array::builder::{Float32Builder, ListBuilder, UInt8Builder};
    let floats3 = {
        let mut b = ListBuilder::new(ListBuilder::new(ListBuilder::new(Float32Builder::new())));
        for _c in 0..3 {
            for _y in 0..16 {
                for x in 0..16 {
                    b.values().values().values().append_value(x as f32 / 16.0);
                }
                b.values().values().append(true);
            }
            b.values().append(true);
        }
        b.append(true);
        Arc::new(b.finish()) as ArrayRef
    };
    let bytes2 = {
        let mut b = ListBuilder::new(ListBuilder::new(UInt8Builder::new()));
        for _y in 0..16 {
            for x in 0..16u8 {
                b.values().values().append_value(x * 16);
            }
            b.values().append(true);
        }
        b.append(true);
        Arc::new(b.finish()) as ArrayRef
    };
    for (name, values) in [("pixel_values", floats3), ("pixels", bytes2)] {
        let field = Field::new(name, values.data_type().clone(), true);
        table_with_other_column_fails(field, values, "arrays of pixel values");
    }
    // Boxes as a list of [x, y, w, h] lists: not pictures, the table is redacted.
    let mut b = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
    for v in [1.0f32, 2.0, 30.0, 40.0] {
        b.values().values().append_value(v);
    }
    b.values().append(true);
    b.append(true);
    let boxes: ArrayRef = Arc::new(b.finish());
    let t = tempfile::tempdir().unwrap();
    let field = Field::new("objects", boxes.data_type().clone(), true);
    let (code, r, out) = redact_one_row_table(&t, field, boxes, None);
    assert_eq!(code, 0, "{r}");
    assert!(out.join("t.parquet").is_file());
}
