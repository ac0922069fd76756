//! A minimal writer of ONNX `ModelProto` files on the protobuf wire format (no protobuf or onnx
//! crate), used by the converters that build a model from another format ([`crate::tfjs`]).
//!
//! It writes exactly what it is given, in the order given: the same [`Model`] always encodes to
//! the same bytes. Repeated numbers are written packed; tensors carry their data in `raw_data`
//! (little-endian). Field numbers are those of `onnx.proto`:
//! `ModelProto`: `ir_version = 1`, `producer_name = 2`, `producer_version = 3`, `doc_string = 6`,
//! `graph = 7`, `opset_import = 8`; `OperatorSetIdProto`: `domain = 1`, `version = 2`;
//! `GraphProto`: `node = 1`, `name = 2`, `initializer = 5`, `input = 11`, `output = 12`;
//! `NodeProto`: `input = 1`, `output = 2`, `name = 3`, `op_type = 4`, `attribute = 5`;
//! `AttributeProto`: `name = 1`, `f = 2`, `i = 3`, `s = 4`, `floats = 7`, `ints = 8`,
//! `type = 20`; `TensorProto`: `dims = 1`, `data_type = 2`, `name = 8`, `raw_data = 9`;
//! `ValueInfoProto`: `name = 1`, `type = 2`; `TypeProto.tensor_type = 1`;
//! `TypeProto.Tensor`: `elem_type = 1`, `shape = 2`; `TensorShapeProto.dim = 1`;
//! `Dimension.dim_value = 1` (left out for a dynamic dimension).

/// `TensorProto.DataType.FLOAT`.
pub const FLOAT: i32 = 1;
/// `TensorProto.DataType.UINT8`.
pub const UINT8: i32 = 2;
/// `TensorProto.DataType.INT8`.
pub const INT8: i32 = 3;
/// `TensorProto.DataType.INT32`.
pub const INT32: i32 = 6;
/// `TensorProto.DataType.INT64`.
pub const INT64: i32 = 7;

/// ONNX IR version written (ONNX 1.10+; ONNX Runtime 1.31 reads it).
pub const IR_VERSION: u64 = 8;

/// The data of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I8(Vec<i8>),
    U8(Vec<u8>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn elem_type(&self) -> i32 {
        match self {
            Data::F32(_) => FLOAT,
            Data::I64(_) => INT64,
            Data::I32(_) => INT32,
            Data::I8(_) => INT8,
            Data::U8(_) => UINT8,
        }
    }

    fn raw(&self) -> Vec<u8> {
        match self {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I8(v) => v.iter().map(|x| x.to_le_bytes()[0]).collect(),
            Data::U8(v) => v.clone(),
        }
    }
}

/// A named constant tensor (a graph initializer).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<i64>,
    pub data: Data,
}

/// A node attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Float(f32),
    Int(i64),
    Ints(Vec<i64>),
    String(String),
}

/// One operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<(String, Attr)>,
}

/// A graph input or output: a float or int64 tensor; a negative dim is written as an unknown
/// (dynamic) dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub elem_type: i32,
    pub dims: Vec<i64>,
}

/// A whole model with one graph in the default domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub producer: String,
    /// Written as `producer_version`; a converter's name and version, never the crate's, so
    /// that a converted model's bytes do not change with veil's version.
    pub producer_version: String,
    pub doc: String,
    pub opset: u64,
    pub graph_name: String,
    pub nodes: Vec<Node>,
    pub initializers: Vec<Tensor>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

impl Model {
    /// The serialized `ModelProto`.
    pub fn encode(&self) -> Vec<u8> {
        let mut graph = Vec::new();
        for n in &self.nodes {
            put_message(&mut graph, 1, &encode_node(n));
        }
        put_bytes(&mut graph, 2, self.graph_name.as_bytes());
        for t in &self.initializers {
            put_message(&mut graph, 5, &encode_tensor(t));
        }
        for v in &self.inputs {
            put_message(&mut graph, 11, &encode_value_info(v));
        }
        for v in &self.outputs {
            put_message(&mut graph, 12, &encode_value_info(v));
        }
        let mut out = Vec::new();
        put_varint_field(&mut out, 1, IR_VERSION);
        put_bytes(&mut out, 2, self.producer.as_bytes());
        put_bytes(&mut out, 3, self.producer_version.as_bytes());
        put_bytes(&mut out, 6, self.doc.as_bytes());
        put_message(&mut out, 7, &graph);
        let mut opset = Vec::new();
        put_bytes(&mut opset, 1, b"");
        put_varint_field(&mut opset, 2, self.opset);
        put_message(&mut out, 8, &opset);
        out
    }
}

fn encode_node(n: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    for i in &n.inputs {
        put_bytes(&mut out, 1, i.as_bytes());
    }
    for o in &n.outputs {
        put_bytes(&mut out, 2, o.as_bytes());
    }
    put_bytes(&mut out, 3, n.name.as_bytes());
    put_bytes(&mut out, 4, n.op_type.as_bytes());
    for (name, a) in &n.attributes {
        let mut attr = Vec::new();
        put_bytes(&mut attr, 1, name.as_bytes());
        // AttributeType: FLOAT = 1, INT = 2, STRING = 3, INTS = 7.
        let kind = match a {
            Attr::Float(f) => {
                put_tag(&mut attr, 2, 5);
                attr.extend_from_slice(&f.to_le_bytes());
                1
            }
            Attr::Int(i) => {
                put_varint_field(&mut attr, 3, *i as u64);
                2
            }
            Attr::String(s) => {
                put_bytes(&mut attr, 4, s.as_bytes());
                3
            }
            Attr::Ints(v) => {
                let mut packed = Vec::new();
                for i in v {
                    put_varint(&mut packed, *i as u64);
                }
                put_bytes(&mut attr, 8, &packed);
                7
            }
        };
        put_varint_field(&mut attr, 20, kind);
        put_message(&mut out, 5, &attr);
    }
    out
}

fn encode_tensor(t: &Tensor) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dims = Vec::new();
    for d in &t.dims {
        put_varint(&mut dims, *d as u64);
    }
    put_bytes(&mut out, 1, &dims);
    put_varint_field(&mut out, 2, t.data.elem_type() as u64);
    put_bytes(&mut out, 8, t.name.as_bytes());
    put_bytes(&mut out, 9, &t.data.raw());
    out
}

fn encode_value_info(v: &ValueInfo) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in &v.dims {
        let mut dim = Vec::new();
        if *d >= 0 {
            put_varint_field(&mut dim, 1, *d as u64);
        }
        put_message(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    put_varint_field(&mut tensor, 1, v.elem_type as u64);
    put_message(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    put_message(&mut ty, 1, &tensor);
    let mut out = Vec::new();
    put_bytes(&mut out, 1, v.name.as_bytes());
    put_message(&mut out, 2, &ty);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, ((number as u64) << 3) | wire_type as u64);
}

fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_tag(out, number, 0);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_tag(out, number, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_message(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_bytes(out, number, bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_negative_ints_use_ten_bytes() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut v = Vec::new();
        put_varint(&mut v, -1i64 as u64);
        assert_eq!(v.len(), 10);
    }

    /// Pinned bytes of a one-node model: a change to the encoding shows up here first.
    #[test]
    fn a_small_model_encodes_to_pinned_bytes() {
        let m = Model {
            producer: "t".into(),
            producer_version: "1".into(),
            doc: String::new(),
            opset: 13,
            graph_name: "g".into(),
            nodes: vec![Node {
                name: "n".into(),
                op_type: "Relu".into(),
                inputs: vec!["x".into()],
                outputs: vec!["y".into()],
                attributes: vec![("a".into(), Attr::Int(-2))],
            }],
            initializers: vec![Tensor {
                name: "w".into(),
                dims: vec![1],
                data: Data::F32(vec![1.0]),
            }],
            inputs: vec![ValueInfo {
                name: "x".into(),
                elem_type: FLOAT,
                dims: vec![1],
            }],
            outputs: vec![],
        };
        let bytes = m.encode();
        assert_eq!(bytes, m.encode(), "deterministic");
        assert_eq!(
            &bytes[..4],
            &[0x08, 0x08, 0x12, 0x01],
            "ir_version 8, producer"
        );
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            hex.contains("0a01781201791a016e220452656c75"),
            "node: input x, output y, name n, op Relu: {hex}"
        );
        assert!(
            hex.ends_with("42040a00100d"),
            "opset_import: domain \"\", version 13: {hex}"
        );
    }
}
