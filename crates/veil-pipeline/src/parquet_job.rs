//! One Parquet image table (a Hugging Face dataset file) through the run's stages, row group by
//! row group: the image of every row goes to the same detect and finish stages as a loose file;
//! the table is written again with the same schema (and schema metadata), the same other
//! columns, one output row group per input row group, zstd compression, and the input's
//! key-value metadata (the `huggingface` features, for one).
//!
//! The image column is the first struct column with a binary `bytes` field (the Hugging Face
//! `Image` feature, `{bytes, path}`), or the column `--image-column` names (such a struct, or a
//! plain binary column). A table with binary columns but no image column found is refused
//! (its bytes may be images); a table without binary columns is an ordinary file.
//!
//! Fail closed: a row whose image cannot be redacted is **dropped** from the output table and
//! recorded as failed (`path` = `TABLE#row=N`, N counted from 0 in the input); a null image stays
//! null. Two row groups are held in memory at most: the next one is read, and its images sent
//! to the stages, while the results of the current one are awaited.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, LargeBinaryArray, RecordBatch, StructArray,
};
use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use veil_core::FailureStage;

use crate::process::{self, Admit, ImageSettings, MemberResult, Prepared};

/// Where the images of a table are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageColumn {
    /// A struct column (`{bytes, path}`) and the index of its `bytes` field.
    Struct { column: usize, bytes: usize },
    /// A plain binary column.
    Binary { column: usize },
}

impl ImageColumn {
    fn column(self) -> usize {
        match self {
            ImageColumn::Struct { column, .. } | ImageColumn::Binary { column } => column,
        }
    }
}

fn is_binary(t: &DataType) -> bool {
    matches!(t, DataType::Binary | DataType::LargeBinary)
}

/// Whether a column of type `t` can hold pictures as arrays of numbers rather than encoded
/// bytes: lists nested at least twice around 8- or 16-bit integers (an `Array2D`/`Array3D` of
/// pixels, a mask), or at least three times around floats (a `pixel_values` column of
/// normalised images, 3xHxW); looked for inside structs too. Boxes, polygons and embeddings
/// (floats nested at most twice) are not.
fn holds_pixel_arrays(t: &DataType) -> bool {
    fn walk(t: &DataType, depth: usize) -> bool {
        match t {
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::ListView(f)
            | DataType::LargeListView(f)
            | DataType::FixedSizeList(f, _) => walk(f.data_type(), depth + 1),
            DataType::Struct(fields) => fields.iter().any(|f| walk(f.data_type(), 0)),
            DataType::Dictionary(_, v) => walk(v, depth),
            DataType::UInt8 | DataType::Int8 | DataType::UInt16 | DataType::Int16 => depth >= 2,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => depth >= 3,
            _ => false,
        }
    }
    walk(t, 0)
}

fn holds_binary(t: &DataType) -> bool {
    holds_bytes(t, false)
}

/// Whether values of type `t` hold bytes anywhere (binary of any kind, and strings when `text`),
/// looking inside structs, lists, maps, dictionaries, run-end encoded and union types.
fn holds_bytes(t: &DataType, text: bool) -> bool {
    match t {
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => true,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => text,
        DataType::Struct(fields) => fields.iter().any(|f| holds_bytes(f.data_type(), text)),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => holds_bytes(f.data_type(), text),
        DataType::Dictionary(_, v) => holds_bytes(v, text),
        DataType::RunEndEncoded(_, v) => holds_bytes(v.data_type(), text),
        DataType::Union(fields, _) => fields.iter().any(|(_, f)| holds_bytes(f.data_type(), text)),
        _ => false,
    }
}

/// The image column of `schema`: the one `named`, else the first image struct.
pub fn find_image_column(
    schema: &Schema,
    named: Option<&str>,
) -> Result<Option<ImageColumn>, String> {
    let struct_bytes = |t: &DataType| match t {
        DataType::Struct(fields) => fields
            .iter()
            .position(|f| f.name() == "bytes" && is_binary(f.data_type())),
        _ => None,
    };
    if let Some(name) = named {
        let Some((column, field)) = schema
            .fields()
            .iter()
            .enumerate()
            .find(|(_, f)| f.name() == name)
        else {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(format!(
                "no column `{name}` (columns: {})",
                names.join(", ")
            ));
        };
        return match (
            struct_bytes(field.data_type()),
            is_binary(field.data_type()),
        ) {
            (Some(bytes), _) => Ok(Some(ImageColumn::Struct { column, bytes })),
            (None, true) => Ok(Some(ImageColumn::Binary { column })),
            _ => Err(format!(
                "column `{name}` is {}, not binary or a struct with a binary `bytes` field",
                field.data_type()
            )),
        };
    }
    Ok(schema.fields().iter().enumerate().find_map(|(column, f)| {
        struct_bytes(f.data_type()).map(|bytes| ImageColumn::Struct { column, bytes })
    }))
}

/// What a run does with the Parquet file at `path`: `Ok(Some)` redact its image column,
/// `Ok(None)` an ordinary file (no binary column), `Err` why it cannot be processed.
pub fn classify(path: &Path, named: Option<&str>) -> Result<Option<ImageColumn>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("unreadable ({e})"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("unreadable Parquet ({e})"))?;
    let schema = builder.schema();
    // The table is written again with its metadata: a picture there would pass unredacted.
    let file_kv = builder.metadata().file_metadata().key_value_metadata();
    let kv = (file_kv.into_iter().flatten())
        .filter(|k| k.key != "ARROW:schema")
        .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
        .chain(schema.metadata().clone())
        .chain(schema.fields().iter().flat_map(|f| {
            f.metadata()
                .iter()
                .map(|(k, v)| (format!("{}: {k}", f.name()), v.clone()))
                .collect::<Vec<_>>()
        }));
    for (key, value) in kv {
        if let Some(what) = crate::embedded::find(value.as_bytes()) {
            return Err(format!(
                "its metadata `{key}` carries {what}, which would be written again unredacted: \
                 remove it from the table's metadata and run again"
            ));
        }
    }
    if let Some(f) = schema
        .fields()
        .iter()
        .find(|f| holds_pixel_arrays(f.data_type()))
    {
        return Err(format!(
            "its column `{}` ({}) can hold pictures as arrays of pixel values, which veil cannot \
             redact and would write again as they are: drop the column (keep the images in an \
             image column) and run again",
            f.name(),
            f.data_type()
        ));
    }
    match find_image_column(schema, named)? {
        Some(c) => Ok(Some(c)),
        None if schema.fields().iter().any(|f| holds_binary(f.data_type())) => Err(
            "it has binary columns but no image column veil recognises (a struct with a binary \
             `bytes` field): name the column holding images with --image-column, or confirm \
             there are none"
                .into(),
        ),
        None => Ok(None),
    }
}

fn bytes_at(a: &dyn Array, row: usize) -> Option<&[u8]> {
    if a.is_null(row) {
        return None;
    }
    if let Some(b) = a.as_any().downcast_ref::<BinaryArray>() {
        return Some(b.value(row));
    }
    a.as_any()
        .downcast_ref::<LargeBinaryArray>()
        .map(|b| b.value(row))
}

/// The images of a column, row by row (`None` for a null).
fn images_of(col: &ArrayRef, which: ImageColumn) -> Vec<Option<Vec<u8>>> {
    let inner: &dyn Array = match which {
        ImageColumn::Struct { bytes, .. } => match col.as_any().downcast_ref::<StructArray>() {
            Some(s) => s.column(bytes).as_ref(),
            None => return vec![None; col.len()],
        },
        ImageColumn::Binary { .. } => col.as_ref(),
    };
    (0..col.len())
        .map(|r| {
            if col.is_null(r) {
                None
            } else {
                bytes_at(inner, r).map(<[u8]>::to_vec)
            }
        })
        .collect()
}

/// `like` (a binary or large binary array) rebuilt from `values`.
fn binary_like(like: &dyn Array, values: &[Option<Vec<u8>>]) -> ArrayRef {
    let it = values.iter().map(|v| v.as_deref());
    if like.as_any().downcast_ref::<LargeBinaryArray>().is_some() {
        Arc::new(LargeBinaryArray::from_iter(it))
    } else {
        Arc::new(BinaryArray::from_iter(it))
    }
}

/// The column with its images replaced by `values`.
fn replace_images(
    col: &ArrayRef,
    which: ImageColumn,
    values: &[Option<Vec<u8>>],
) -> Result<ArrayRef, String> {
    match which {
        ImageColumn::Binary { .. } => Ok(binary_like(col.as_ref(), values)),
        ImageColumn::Struct { bytes, .. } => {
            let s = col
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or("internal: the image column is not a struct")?;
            let mut children: Vec<ArrayRef> = s.columns().to_vec();
            children[bytes] = binary_like(s.column(bytes).as_ref(), values);
            let rebuilt = StructArray::try_new(s.fields().clone(), children, s.nulls().cloned())
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(rebuilt))
        }
    }
}

/// The first cell outside the image column's bytes that holds an image, an archive or an image
/// data URI, or a value veil cannot look into: `(column, row, what)`. Such a cell would pass
/// through unredacted, so the table fails instead. Lists, maps and dictionaries are looked into;
/// binary, view and fixed-size binary cells are sniffed; strings are checked for images written
/// as `data:image/...` URIs or bare base64 JPEG or PNG; and every byte or string cell is searched
/// for a picture anywhere inside it ([`crate::embedded`]: a pickled JPEG, a base64 image or
/// `data:image/` URI inside JSON).
fn stray_image(batch: &RecordBatch, which: ImageColumn) -> Option<(String, usize, String)> {
    const IMAGE: &str = "an image (or an archive) outside the image column, which veil would \
                         pass through unredacted; name the column with --image-column if it is \
                         the only image column, or remove it (veil redacts one image column per \
                         table, and no images inside lists)";
    const OPAQUE: &str = "values of a type veil cannot look into (a union or run-end encoded \
                          column) outside the image column, which veil would pass through \
                          unredacted; remove the column, or name it with --image-column if it \
                          holds the images";
    fn embedded(what: String, of: &str) -> String {
        format!(
            "{what} of the {of}, outside the image column: veil would pass it through \
             unredacted; move the picture into the image column, or remove it, and run again"
        )
    }
    fn hit(b: &[u8]) -> Option<String> {
        if crate::archives::looks_like_image(b) || crate::archives::sniff(b).is_some() {
            return Some(IMAGE.into());
        }
        crate::embedded::find(b).map(|what| embedded(what, "value"))
    }
    fn text_hit(t: &str) -> Option<String> {
        let s = t.trim_start();
        if s.get(..11)
            .is_some_and(|p| p.eq_ignore_ascii_case("data:image/"))
            || s.starts_with("/9j/")
            || s.starts_with("iVBORw0KGgo")
        {
            return Some(IMAGE.into());
        }
        crate::embedded::find(t.as_bytes()).map(|what| embedded(what, "text"))
    }
    /// What a cell of `a` (a leaf) holds (`Some(None)`: nothing); `None` when `a` is not a byte
    /// or string type.
    fn leaf(a: &dyn Array, r: usize) -> Option<Option<String>> {
        if let Some(b) = bytes_at(a, r) {
            return Some(hit(b));
        }
        if let Some(v) = a.as_binary_view_opt() {
            return Some(hit(v.value(r)));
        }
        if let Some(v) = a.as_fixed_size_binary_opt() {
            return Some(hit(v.value(r)));
        }
        if let Some(v) = a.as_string_opt::<i32>() {
            return Some(text_hit(v.value(r)));
        }
        if let Some(v) = a.as_string_opt::<i64>() {
            return Some(text_hit(v.value(r)));
        }
        a.as_string_view_opt().map(|v| text_hit(v.value(r)))
    }
    /// The list-like cell `r` of `a` as an array, `None` when `a` is not list-like.
    fn cell(a: &dyn Array, r: usize) -> Option<ArrayRef> {
        if let Some(l) = a.as_list_opt::<i32>() {
            return Some(l.value(r));
        }
        if let Some(l) = a.as_list_opt::<i64>() {
            return Some(l.value(r));
        }
        if let Some(l) = a.as_list_view_opt::<i32>() {
            return Some(l.value(r));
        }
        if let Some(l) = a.as_list_view_opt::<i64>() {
            return Some(l.value(r));
        }
        if let Some(l) = a.as_fixed_size_list_opt() {
            return Some(l.value(r));
        }
        a.as_map_opt().map(|m| Arc::new(m.value(r)) as ArrayRef)
    }
    fn scan(name: &str, a: &dyn Array, skip: Option<usize>) -> Option<(String, usize, String)> {
        // Numbers, booleans, dates and lists of them (embeddings) cannot hold an image: not
        // walked cell by cell.
        if !holds_bytes(a.data_type(), true) {
            return None;
        }
        if let Some(s) = a.as_struct_opt() {
            return s.columns().iter().enumerate().find_map(|(i, c)| {
                if Some(i) == skip {
                    return None;
                }
                scan(
                    &format!("{name}.{}", s.fields()[i].name()),
                    c.as_ref(),
                    None,
                )
            });
        }
        if let Some(d) = a.as_any_dictionary_opt() {
            // A dictionary's values are shared by rows; report the first row that uses the hit.
            let (n, v, what) = scan(name, d.values().as_ref(), None)?;
            let keys = d.normalized_keys();
            let row = (0..a.len())
                .find(|&r| !a.is_null(r) && keys[r] == v)
                .unwrap_or(0);
            return Some((n, row, what));
        }
        if matches!(
            a.data_type(),
            DataType::Union(..) | DataType::RunEndEncoded(..)
        ) {
            return (!a.is_empty()).then(|| (name.to_string(), 0, OPAQUE.to_string()));
        }
        (0..a.len()).find_map(|r| {
            if a.is_null(r) {
                return None;
            }
            if let Some(c) = cell(a, r) {
                return scan(&format!("{name}[]"), c.as_ref(), None).map(|(n, _, w)| (n, r, w));
            }
            leaf(a, r)?.map(|what| (name.to_string(), r, what))
        })
    }
    let schema = batch.schema();
    batch.columns().iter().enumerate().find_map(|(i, col)| {
        let name = schema.field(i).name();
        match which {
            ImageColumn::Binary { column } if column == i => None,
            ImageColumn::Struct { column, bytes } if column == i => {
                scan(name, col.as_ref(), Some(bytes))
            }
            _ => scan(name, col.as_ref(), None),
        }
    })
}

enum Row {
    /// No image (null): kept as it is.
    Null,
    Waiting(Receiver<MemberResult>),
    Concluded(Box<MemberResult>),
}

/// How an output table is written: zstd, row groups no larger than the input's largest, the
/// input's key-value metadata (Arrow writes its own schema entry again).
fn writer_props(meta: &parquet::file::metadata::ParquetMetaData) -> WriterProperties {
    let max_rows = (0..meta.num_row_groups())
        .map(|g| meta.row_group(g).num_rows().max(1) as usize)
        .max()
        .unwrap_or(1);
    let kv: Vec<_> = meta
        .file_metadata()
        .key_value_metadata()
        .map(|v| {
            v.iter()
                .filter(|k| k.key != "ARROW:schema")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(max_rows))
        .set_key_value_metadata(Some(kv))
        .build()
}

/// The image column of a table veil wrote: the Hugging Face image struct, else the one binary
/// column whose cells are images (after a run, images are in no other column).
pub fn image_column_by_content(path: &Path) -> Result<ImageColumn, String> {
    let read = |e: &dyn std::fmt::Display| format!("unreadable Parquet ({e})");
    let file = std::fs::File::open(path).map_err(|e| read(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read(&e))?;
    if let Some(c) = find_image_column(builder.schema(), None)? {
        return Ok(c);
    }
    let binary: Vec<usize> = (builder.schema().fields().iter().enumerate())
        .filter(|(_, f)| is_binary(f.data_type()))
        .map(|(i, _)| i)
        .collect();
    for batch in builder.with_batch_size(256).build().map_err(|e| read(&e))? {
        let batch = batch.map_err(|e| read(&e))?;
        for &column in &binary {
            let which = ImageColumn::Binary { column };
            let images = images_of(batch.column(column), which);
            if images
                .iter()
                .flatten()
                .any(|b| crate::archives::looks_like_image(b))
            {
                return Ok(which);
            }
        }
    }
    Err("no column of the table holds images".into())
}

/// Writes to `dst` (a new file) the table `src` without the rows whose image is the k-th
/// non-null image of the column `which`, for each k in `drop`; every other row and column, the
/// schema and the metadata are kept, row group by row group. Returns `row N of the file` for
/// each row left out.
pub fn filter_rows(
    src: &Path,
    dst: &Path,
    which: ImageColumn,
    drop: &std::collections::BTreeSet<usize>,
) -> Result<Vec<String>, String> {
    let read = |e: &dyn std::fmt::Display| format!("unreadable Parquet ({e})");
    let write_err = |e: &dyn std::fmt::Display| format!("cannot write the table ({e})");
    let file = std::fs::File::open(src).map_err(|e| read(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read(&e))?;
    let schema = builder.schema().clone();
    let props = writer_props(builder.metadata());
    let groups = builder.metadata().num_row_groups();
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| write_err(&e))?;
    let mut writer =
        ArrowWriter::try_new(std::io::BufWriter::new(out), schema.clone(), Some(props))
            .map_err(|e| write_err(&e))?;
    let (mut image_k, mut row, mut dropped) = (0usize, 0usize, Vec::new());
    for g in 0..groups {
        let file = std::fs::File::open(src).map_err(|e| read(&e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_row_groups(vec![g]).build())
            .map_err(|e| read(&e))?;
        let batches: Vec<RecordBatch> = reader
            .map(|b| b.map_err(|e| read(&e)))
            .collect::<Result<_, _>>()?;
        let batch =
            arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| read(&e))?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for image in images_of(batch.column(which.column()), which) {
            let gone = image.is_some() && drop.contains(&image_k);
            if image.is_some() {
                image_k += 1;
            }
            if gone {
                dropped.push(format!("row {row} of the file"));
            }
            keep.push(!gone);
            row += 1;
        }
        let kept = arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| write_err(&e))?;
        writer.write(&kept).map_err(|e| write_err(&e))?;
        writer.flush().map_err(|e| write_err(&e))?;
    }
    writer
        .into_inner()
        .map_err(|e| write_err(&e))?
        .into_inner()
        .map_err(|e| write_err(&e.into_error()))?
        .sync_all()
        .map_err(|e| write_err(&e))?;
    Ok(dropped)
}

/// A row group whose images are in the stages.
struct Group {
    batch: RecordBatch,
    col: ArrayRef,
    rows: Vec<Row>,
    first_row: usize,
}

/// Waits for the results of a row group's images and rebuilds it: redacted images in place,
/// failed rows dropped; the rows' records go to `results`.
fn finish_group(
    group: Group,
    rel_str: &str,
    settings: &ImageSettings,
    which: ImageColumn,
    schema: &Arc<Schema>,
    results: &mut Vec<MemberResult>,
) -> Result<RecordBatch, String> {
    let mut values = Vec::with_capacity(group.rows.len());
    let mut keep = Vec::with_capacity(group.rows.len());
    for (r, row) in group.rows.into_iter().enumerate() {
        let res = match row {
            Row::Null => {
                values.push(None);
                keep.push(true);
                continue;
            }
            Row::Concluded(res) => *res,
            Row::Waiting(rx) => rx.recv().unwrap_or_else(|_| {
                process::member_failed(
                    &format!("{rel_str}#row={}", group.first_row + r),
                    settings,
                    FailureStage::Redact,
                    "internal: the row's result never came back",
                )
            }),
        };
        keep.push(res.output.is_some());
        values.push(res.output.clone());
        results.push(MemberResult {
            output: None,
            ..res
        });
    }
    let new_col = replace_images(&group.col, which, &values)?;
    let mut cols = group.batch.columns().to_vec();
    cols[which.column()] = new_col;
    let b = RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())?;
    arrow_select::filter::filter_record_batch(&b, &BooleanArray::from(keep))
        .map_err(|e| e.to_string())
}

/// Writes the redacted table to `tmp`; returns the row records (member results, outputs
/// dropped), or the failure with the records so far.
#[allow(clippy::too_many_arguments)]
pub fn rewrite_table(
    rel_str: &str,
    src: &Path,
    tmp: &Path,
    which: ImageColumn,
    settings: &ImageSettings,
    to_detect: &SyncSender<Prepared>,
    admit: Admit<'_>,
    output: &Path,
) -> Result<Vec<MemberResult>, (FailureStage, String, Vec<MemberResult>)> {
    let mut results: Vec<MemberResult> = Vec::new();
    let read = |e: &dyn std::fmt::Display| format!("unreadable Parquet ({e})");
    // The footer is parsed once; each row group reopens the file with it.
    let footer = std::fs::File::open(src)
        .map_err(|e| read(&e))
        .and_then(|f| ArrowReaderMetadata::load(&f, Default::default()).map_err(|e| read(&e)))
        .map_err(|e| (FailureStage::Decode, e, Vec::new()))?;
    let open = || -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>, String> {
        let file = std::fs::File::open(src).map_err(|e| read(&e))?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
            file,
            footer.clone(),
        ))
    };
    let builder = open().map_err(|e| (FailureStage::Decode, e, Vec::new()))?;
    let schema = builder.schema().clone();
    let meta = builder.metadata().clone();
    let groups = meta.num_row_groups();
    let props = writer_props(&meta);
    let write_err = |e: &dyn std::fmt::Display| format!("cannot write the output table ({e})");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| (FailureStage::Write, write_err(&e), Vec::new()))?;
    let mut writer =
        ArrowWriter::try_new(std::io::BufWriter::new(file), schema.clone(), Some(props))
            .map_err(|e| (FailureStage::Write, write_err(&e), Vec::new()))?;
    // Row group g+1 is read and its images sent to the stages before the results of group g are
    // waited for, so the detectors do not run dry at every row-group boundary (two row groups
    // are held at most).
    let mut first_row = 0usize;
    let mut pending: Option<Group> = None;
    for g in 0..=groups {
        let next = if g < groups {
            let rows_here = meta.row_group(g).num_rows().max(0) as usize;
            let batch = open()
                .and_then(|b| {
                    b.with_row_groups(vec![g])
                        .with_batch_size(rows_here.max(1))
                        .build()
                        .map_err(|e| read(&e))
                })
                .and_then(|reader| {
                    let batches: Result<Vec<RecordBatch>, String> =
                        reader.map(|b| b.map_err(|e| read(&e))).collect();
                    let batches = batches?;
                    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| read(&e))
                });
            let batch = match batch {
                Ok(b) => b,
                Err(e) => return Err((FailureStage::Decode, e, results)),
            };
            if let Some((column, r, what)) = stray_image(&batch, which) {
                return Err((
                    FailureStage::Decode,
                    format!("column `{column}` row {} holds {what}", first_row + r),
                    results,
                ));
            }
            let col = batch.column(which.column()).clone();
            let images = images_of(&col, which);
            let mut rows = Vec::with_capacity(images.len());
            for (r, image) in images.into_iter().enumerate() {
                let path = format!("{rel_str}#row={}", first_row + r);
                rows.push(match image {
                    None => Row::Null,
                    Some(bytes) if !crate::archives::looks_like_image(&bytes) => {
                        Row::Concluded(Box::new(process::member_failed(
                            &path,
                            settings,
                            FailureStage::Decode,
                            "the image cell is not an image (not JPEG, PNG or WebP): the row was \
                             dropped",
                        )))
                    }
                    Some(bytes) => match crate::archive_job::start_member(
                        bytes, &path, settings, admit, to_detect, output,
                    ) {
                        Err(res) => Row::Concluded(res),
                        Ok(rx) => Row::Waiting(rx),
                    },
                });
            }
            let group = Group {
                batch,
                col,
                rows,
                first_row,
            };
            first_row += rows_here;
            Some(group)
        } else {
            None
        };
        if let Some(group) = pending.take() {
            let batch = finish_group(group, rel_str, settings, which, &schema, &mut results);
            let written = batch.and_then(|b| {
                writer.write(&b).map_err(|e| write_err(&e))?;
                writer.flush().map_err(|e| write_err(&e))
            });
            if let Err(e) = written {
                return Err((FailureStage::Write, e, results));
            }
        }
        pending = next;
    }
    let closed = writer
        .into_inner()
        .map_err(|e| write_err(&e))
        .and_then(|w| w.into_inner().map_err(|e| write_err(&e.into_error())))
        .and_then(|f| f.sync_all().map_err(|e| write_err(&e)));
    match closed {
        Ok(()) => Ok(results),
        Err(e) => Err((FailureStage::Write, e, results)),
    }
}

/// Reads the image column of a table row by row, in order, handing each row's index (in this
/// file) and image bytes (`None` for a null) to `f`.
pub fn read_images(
    path: &Path,
    named: Option<&str>,
    f: &mut dyn FnMut(usize, Option<Vec<u8>>),
) -> Result<(), String> {
    let read = |e: &dyn std::fmt::Display| format!("unreadable Parquet ({e})");
    let file = std::fs::File::open(path).map_err(|e| read(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read(&e))?;
    let which = find_image_column(builder.schema(), named)?
        .ok_or_else(|| "no image column in the table".to_string())?;
    read_images_in(path, which, f)
}

/// [`read_images`] of a known image column.
pub fn read_images_in(
    path: &Path,
    which: ImageColumn,
    f: &mut dyn FnMut(usize, Option<Vec<u8>>),
) -> Result<(), String> {
    let read = |e: &dyn std::fmt::Display| format!("unreadable Parquet ({e})");
    let file = std::fs::File::open(path).map_err(|e| read(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read(&e))?;
    let reader = builder.with_batch_size(256).build().map_err(|e| read(&e))?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| read(&e))?;
        for image in images_of(batch.column(which.column()), which) {
            f(row, image);
            row += 1;
        }
    }
    Ok(())
}
