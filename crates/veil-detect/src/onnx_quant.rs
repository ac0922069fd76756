//! veil's own static INT8 quantiser for CenterFace (`centerface-int8-v1`, issue 18).
//!
//! It turns the pinned float model into a QDQ model that ONNX Runtime runs with its INT8
//! kernels (about 1.6x faster per pass on a CPU with VNNI), the same on every machine: the
//! output is a pure function of the float model's bytes and the pinned activation table
//! `models/centerface-int8.scales` (compiled in as [`SCALES`]), so its blake3 can be pinned in
//! `models/models.toml` and checked before every load like any other model.
//!
//! The graph it writes is the one ONNX Runtime's `quantize_static` writes for the same settings
//! (`scripts/centerface_int8_scales.py` calibrates the table with it):
//!
//! * `BatchNormalization` after a convolution is folded into its weights and bias.
//! * The convolutions the table lists as `float <weight name>` stay in float; every other
//!   `Conv` and `ConvTranspose`, and every `Add`, is quantised.
//! * A `Relu` whose input only a quantised convolution produces is removed: the convolution's
//!   output takes the `Relu`'s name and a zero point of 0, so quantising clamps at zero.
//! * Every activation a quantised operator reads or writes passes once through
//!   `QuantizeLinear` → `DequantizeLinear` (uint8, per tensor, the table's scale and zero point);
//!   every consumer reads the dequantised tensor. A graph output keeps its name on the
//!   `DequantizeLinear`.
//! * Weights are int8, symmetric, per output channel (axis 0 for `Conv`, 1 for
//!   `ConvTranspose`): `scale = max|w| / 127`, `q = round_ties_even(w / scale)` clamped to
//!   ±127. Biases are int32 with `scale = input scale × weight scale`.
//! * The heatmap's `Sigmoid` stays in float, so scores keep their full resolution.
//!
//! The model is written with opset 13 (per-axis `DequantizeLinear`) by [`crate::onnx_write`].

use std::collections::{BTreeMap, BTreeSet};

use crate::onnx_edit::{
    graph_fields, parse_fields, read_varint, Field, OnnxEditError, CENTERFACE_INPUT,
    CENTERFACE_OUTPUTS, WIRE_FIXED32, WIRE_LEN, WIRE_VARINT,
};
use crate::onnx_write::{Attr, Data, Model, Node, Tensor, ValueInfo, FLOAT};

/// The conversion's name in `models/models.toml`.
pub const CONVERTER: &str = "centerface-int8-v1";

/// The model (in `models/models.toml`) the INT8 one is built from.
pub const FLOAT_MODEL: &str = "centerface";

/// The pinned activation table the INT8 model is built from.
pub const SCALES: &str = include_str!("../../../models/centerface-int8.scales");

/// Why a model could not be quantised.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The float model is not valid protobuf.
    #[error(transparent)]
    Onnx(#[from] OnnxEditError),
    /// The float model is not the graph this quantiser knows.
    #[error("{0}")]
    Model(String),
    /// The activation table is malformed or does not fit the model.
    #[error("activation table line {line}: {reason}")]
    Scales {
        /// 1-based line, 0 for the table as a whole.
        line: usize,
        reason: String,
    },
}

fn model_err(reason: impl Into<String>) -> QuantError {
    QuantError::Model(reason.into())
}

/// The parsed activation table.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationTable {
    /// Convolutions that stay in float, by the name of their weight in the float model.
    pub float_convs: BTreeSet<String>,
    /// Tensor name → (scale, uint8 zero point).
    pub scales: BTreeMap<String, (f32, u8)>,
}

/// Parses `float <weight name>` and `tensor scale zero_point` lines; `#` starts a comment line.
pub fn parse_table(text: &str) -> Result<ActivationTable, QuantError> {
    let mut float_convs = BTreeSet::new();
    let mut scales = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| QuantError::Scales {
            line: i + 1,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["float", weight] => {
                if !float_convs.insert(weight.to_string()) {
                    return Err(bad(format!("convolution {weight} is listed twice")));
                }
            }
            [tensor, scale, zp] => {
                let scale: f32 = scale
                    .parse()
                    .map_err(|_| bad(format!("bad scale {scale:?}")))?;
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(bad(format!("scale {scale} is not a positive number")));
                }
                let zp: u8 = zp
                    .parse()
                    .map_err(|_| bad(format!("bad zero point {zp:?}")))?;
                if scales.insert(tensor.to_string(), (scale, zp)).is_some() {
                    return Err(bad(format!("tensor {tensor} is listed twice")));
                }
            }
            _ => return Err(bad("expected `tensor scale zero_point`".into())),
        }
    }
    Ok(ActivationTable {
        float_convs,
        scales,
    })
}

/// The float graph as read from the model.
#[derive(Debug, Default)]
struct Graph {
    nodes: Vec<Node>,
    /// Float initializers by name.
    weights: BTreeMap<String, (Vec<i64>, Vec<f32>)>,
    /// Names of initializers that are not float (unused by CenterFace's nodes).
    other_initializers: BTreeSet<String>,
}

/// Builds the INT8 CenterFace from the float model (the `centerface-dynamic-v1` conversion's
/// output) and an activation table.
pub fn quantize_centerface(float_model: &[u8], table_text: &str) -> Result<Vec<u8>, QuantError> {
    let table = parse_table(table_text)?;
    let mut g = read_graph(float_model)?;
    validate(&g)?;
    fold_batch_norms(&mut g)?;
    let quantised = quantised_ops(&g, &table.float_convs)?;
    let clamped = fold_relus(&mut g, &quantised);
    let q_tensors = quantised_tensors(&g, &quantised);
    check_table(&q_tensors, &clamped, &table)?;
    let model = write_qdq(&g, &quantised, &q_tensors, &table)?;
    Ok(model.encode())
}

// ---------------------------------------------------------------------------
// Reading.

const MODEL_OPSET: u32 = 8;
const OPSET_DOMAIN: u32 = 1;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const NODE_INPUT: u32 = 1;
const NODE_OUTPUT: u32 = 2;
const NODE_NAME: u32 = 3;
const NODE_OP: u32 = 4;
const NODE_ATTRIBUTE: u32 = 5;
const NODE_DOMAIN: u32 = 7;
const ATTR_NAME: u32 = 1;
const ATTR_F: u32 = 2;
const ATTR_I: u32 = 3;
const ATTR_S: u32 = 4;
const ATTR_INTS: u32 = 8;
const ATTR_TYPE: u32 = 20;
const TENSOR_DIMS: u32 = 1;
const TENSOR_DATA_TYPE: u32 = 2;
const TENSOR_FLOAT_DATA: u32 = 4;
const TENSOR_NAME: u32 = 8;
const TENSOR_RAW_DATA: u32 = 9;
const TENSOR_DATA_LOCATION: u32 = 14;

/// Operators CenterFace is made of; anything else means another model.
const KNOWN_OPS: [&str; 6] = [
    "Conv",
    "ConvTranspose",
    "Relu",
    "Add",
    "Sigmoid",
    "BatchNormalization",
];

fn text(field: &Field<'_>, context: &'static str) -> Result<String, QuantError> {
    let bytes = field.len_payload(context)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| model_err(format!("{context} is not UTF-8")))
}

/// Varints of a field that may be packed (length-delimited) or a single varint.
fn varints(field: &Field<'_>, context: &'static str) -> Result<Vec<u64>, QuantError> {
    if field.wire_type == WIRE_VARINT {
        return Ok(vec![field.varint(context)?]);
    }
    let buf = field.len_payload(context)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let (v, next) = read_varint(buf, pos, field.payload_offset, context)?;
        out.push(v);
        pos = next;
    }
    Ok(out)
}

fn read_graph(model: &[u8]) -> Result<Graph, QuantError> {
    let model_fields = parse_fields(model, 0, "ModelProto")?;
    for f in model_fields.iter().filter(|f| f.number == MODEL_OPSET) {
        let fields = parse_fields(f.len_payload("ModelProto")?, f.payload_offset, "opset")?;
        for d in fields.iter().filter(|d| d.number == OPSET_DOMAIN) {
            if !d.len_payload("opset")?.is_empty() {
                return Err(model_err(
                    "the model uses an operator set outside ONNX's default domain",
                ));
            }
        }
    }
    let graph_fields = graph_fields(&model_fields)?;
    let mut g = Graph::default();
    for f in &graph_fields {
        match f.number {
            GRAPH_NODE => g.nodes.push(read_node(f)?),
            GRAPH_INITIALIZER => {
                let (name, dims, data) = read_tensor(f)?;
                match data {
                    Some(values) => {
                        let count = dims
                            .iter()
                            .try_fold(1i64, |a, d| (*d >= 0).then(|| a.checked_mul(*d)).flatten());
                        if count.and_then(|c| usize::try_from(c).ok()) != Some(values.len()) {
                            return Err(model_err(format!(
                                "initializer {name} has {} values for dims {dims:?}",
                                values.len()
                            )));
                        }
                        g.weights.insert(name, (dims, values));
                    }
                    None => {
                        g.other_initializers.insert(name);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(g)
}

fn read_node(field: &Field<'_>) -> Result<Node, QuantError> {
    let fields = parse_fields(
        field.len_payload("GraphProto")?,
        field.payload_offset,
        "NodeProto",
    )?;
    let mut node = Node {
        name: String::new(),
        op_type: String::new(),
        inputs: vec![],
        outputs: vec![],
        attributes: vec![],
    };
    for f in &fields {
        match f.number {
            NODE_INPUT => node.inputs.push(text(f, "NodeProto.input")?),
            NODE_OUTPUT => node.outputs.push(text(f, "NodeProto.output")?),
            NODE_NAME => node.name = text(f, "NodeProto.name")?,
            NODE_OP => node.op_type = text(f, "NodeProto.op_type")?,
            NODE_ATTRIBUTE => node.attributes.push(read_attribute(f)?),
            NODE_DOMAIN if !f.len_payload("NodeProto.domain")?.is_empty() => {
                return Err(model_err(format!(
                    "node {} uses an operator outside ONNX's default domain",
                    node.name
                )))
            }
            _ => {}
        }
    }
    if !KNOWN_OPS.contains(&node.op_type.as_str()) {
        return Err(model_err(format!(
            "operator {} is not one of CenterFace's ({KNOWN_OPS:?})",
            node.op_type
        )));
    }
    Ok(node)
}

fn read_attribute(field: &Field<'_>) -> Result<(String, Attr), QuantError> {
    const CTX: &str = "AttributeProto";
    let fields = parse_fields(field.len_payload("NodeProto")?, field.payload_offset, CTX)?;
    let mut name = String::new();
    let (mut f, mut i, mut s, mut ints, mut kind) = (None, None, None, Vec::new(), 0);
    for a in &fields {
        match a.number {
            ATTR_NAME => name = text(a, CTX)?,
            ATTR_F if a.wire_type == WIRE_FIXED32 => {
                let b: [u8; 4] = a
                    .payload
                    .try_into()
                    .map_err(|_| model_err("bad float attribute"))?;
                f = Some(f32::from_le_bytes(b));
            }
            ATTR_I => i = Some(a.varint(CTX)? as i64),
            ATTR_S => s = Some(text(a, CTX)?),
            ATTR_INTS => ints.extend(varints(a, CTX)?.into_iter().map(|v| v as i64)),
            ATTR_TYPE => kind = a.varint(CTX)?,
            _ => {}
        }
    }
    // AttributeType: FLOAT = 1, INT = 2, STRING = 3, INTS = 7.
    let value = match kind {
        1 => Attr::Float(f.unwrap_or(0.0)),
        2 => Attr::Int(i.unwrap_or(0)),
        3 => Attr::String(s.unwrap_or_default()),
        7 => Attr::Ints(ints),
        other => {
            return Err(model_err(format!(
                "attribute {name} has type {other}, which CenterFace does not use"
            )))
        }
    };
    Ok((name, value))
}

/// Name, dims and (for float tensors) values of an initializer.
#[allow(clippy::type_complexity)]
fn read_tensor(field: &Field<'_>) -> Result<(String, Vec<i64>, Option<Vec<f32>>), QuantError> {
    const CTX: &str = "TensorProto";
    let fields = parse_fields(field.len_payload("GraphProto")?, field.payload_offset, CTX)?;
    let (mut name, mut dims, mut data_type) = (String::new(), Vec::new(), 0);
    let (mut raw, mut floats): (Option<&[u8]>, Vec<f32>) = (None, Vec::new());
    for f in &fields {
        match f.number {
            TENSOR_DIMS => dims.extend(varints(f, CTX)?.into_iter().map(|v| v as i64)),
            TENSOR_DATA_TYPE => data_type = f.varint(CTX)?,
            TENSOR_NAME => name = text(f, CTX)?,
            TENSOR_RAW_DATA => raw = Some(f.len_payload(CTX)?),
            TENSOR_FLOAT_DATA if f.wire_type == WIRE_LEN => floats.extend(
                f.payload
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            TENSOR_FLOAT_DATA if f.wire_type == WIRE_FIXED32 => {
                let b: [u8; 4] = f.payload.try_into().map_err(|_| model_err("bad float"))?;
                floats.push(f32::from_le_bytes(b));
            }
            TENSOR_DATA_LOCATION if f.varint(CTX)? != 0 => {
                return Err(model_err(format!(
                    "initializer {name} is stored outside the model"
                )))
            }
            _ => {}
        }
    }
    if data_type != FLOAT as u64 {
        return Ok((name, dims, None));
    }
    let values = match raw {
        Some(bytes) if bytes.len() % 4 == 0 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Some(_) => return Err(model_err(format!("initializer {name} has a partial float"))),
        None => floats,
    };
    Ok((name, dims, Some(values)))
}

// ---------------------------------------------------------------------------
// Graph rewrites.

/// Checks the shapes the rewrites index into, so that a malformed model is an error, not a
/// panic: operator arities, convolution weights of rank 3 or more with positive dims, biases of
/// one value per output channel, activations that are not weights, and no weight shared by two
/// convolutions (each gets its own quantised copy, named after the weight).
fn validate(g: &Graph) -> Result<(), QuantError> {
    let mut weights_used = BTreeSet::new();
    for n in &g.nodes {
        let arity_ok = match n.op_type.as_str() {
            "Conv" | "ConvTranspose" => (2..=3).contains(&n.inputs.len()),
            "Relu" | "Sigmoid" => n.inputs.len() == 1,
            "Add" => n.inputs.len() == 2,
            "BatchNormalization" => n.inputs.len() == 5,
            _ => false,
        };
        if !arity_ok || n.outputs.len() != 1 {
            return Err(model_err(format!(
                "{} node {:?} has {} inputs and {} outputs",
                n.op_type,
                n.name,
                n.inputs.len(),
                n.outputs.len()
            )));
        }
        if !is_conv(n) {
            if let Some(w) = n.inputs.iter().find(|i| g.weights.contains_key(*i)) {
                if n.op_type != "BatchNormalization" {
                    return Err(model_err(format!("{} reads the weight {w}", n.op_type)));
                }
            }
            continue;
        }
        if g.weights.contains_key(&n.inputs[0]) {
            return Err(model_err(format!(
                "convolution input {} is a weight",
                n.inputs[0]
            )));
        }
        let (dims, _) = weight(g, &n.inputs[1])?;
        if dims.len() < 3 || dims.iter().any(|d| *d <= 0) {
            return Err(model_err(format!(
                "weight {} has dims {dims:?}",
                n.inputs[1]
            )));
        }
        if n.op_type == "ConvTranspose" && attr_i64(n, "group").unwrap_or(1) != 1 {
            return Err(model_err("a grouped ConvTranspose has no per-channel axis"));
        }
        if !weights_used.insert(n.inputs[1].as_str()) {
            return Err(model_err(format!(
                "weight {} is shared by two convolutions",
                n.inputs[1]
            )));
        }
        if let Some(b) = n.inputs.get(2) {
            let (_, bias) = weight(g, b)?;
            if bias.len() as i64 != dims[out_axis(n)] {
                return Err(model_err(format!("bias {b} does not match its weight")));
            }
        }
    }
    Ok(())
}

/// Suffix of a weight with a `BatchNormalization` folded in.
const BN_FOLDED: &str = "/bn_folded";

fn consumers<'g>(g: &'g Graph, tensor: &str) -> Vec<&'g Node> {
    g.nodes
        .iter()
        .filter(|n| n.inputs.iter().any(|i| i == tensor))
        .collect()
}

fn is_conv(n: &Node) -> bool {
    n.op_type == "Conv" || n.op_type == "ConvTranspose"
}

/// The axis of a convolution's weight that indexes output channels.
fn out_axis(n: &Node) -> usize {
    usize::from(n.op_type == "ConvTranspose")
}

fn attr_f32(n: &Node, name: &str) -> Option<f32> {
    n.attributes.iter().find_map(|(k, v)| match v {
        Attr::Float(f) if k == name => Some(*f),
        _ => None,
    })
}

fn attr_i64(n: &Node, name: &str) -> Option<i64> {
    n.attributes.iter().find_map(|(k, v)| match v {
        Attr::Int(i) if k == name => Some(*i),
        _ => None,
    })
}

/// Elements per output channel, and the stride pattern for `axis` 0 or 1 of `dims`.
fn channel_of(dims: &[i64], axis: usize, index: usize) -> usize {
    let inner: i64 = dims[axis + 1..].iter().product();
    (index / inner as usize) % dims[axis] as usize
}

fn weight<'g>(g: &'g Graph, name: &str) -> Result<&'g (Vec<i64>, Vec<f32>), QuantError> {
    g.weights
        .get(name)
        .ok_or_else(|| model_err(format!("weight {name} is not a float initializer")))
}

/// Folds each `BatchNormalization` that follows a convolution (its only consumer) into the
/// convolution's weights and bias, in f64.
fn fold_batch_norms(g: &mut Graph) -> Result<(), QuantError> {
    while let Some(bn_at) = g
        .nodes
        .iter()
        .position(|n| n.op_type == "BatchNormalization")
    {
        let bn = g.nodes[bn_at].clone();
        let [x, gamma, beta, mean, var] = bn.inputs.as_slice() else {
            return Err(model_err("BatchNormalization without its five inputs"));
        };
        let conv_at = g
            .nodes
            .iter()
            .position(|n| is_conv(n) && n.outputs.first() == Some(x))
            .filter(|_| consumers(g, x).len() == 1)
            .ok_or_else(|| {
                model_err(format!(
                    "BatchNormalization {} follows no convolution",
                    bn.name
                ))
            })?;
        let eps = f64::from(attr_f32(&bn, "epsilon").unwrap_or(1e-5));
        let [gamma, beta, mean, var] =
            [gamma, beta, mean, var].map(|n| weight(g, n).map(|w| w.1.clone()));
        let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
        let conv = g.nodes[conv_at].clone();
        if conv.op_type == "ConvTranspose" && attr_i64(&conv, "group").unwrap_or(1) != 1 {
            return Err(model_err(
                "a grouped ConvTranspose cannot take a folded BatchNormalization",
            ));
        }
        let axis = out_axis(&conv);
        let w_name = conv
            .inputs
            .get(1)
            .ok_or_else(|| model_err("convolution without weight"))?;
        let (dims, w) = weight(g, w_name)?.clone();
        let channels = dims.get(axis).copied().unwrap_or(0) as usize;
        if [&gamma, &beta, &mean, &var]
            .iter()
            .any(|v| v.len() != channels)
        {
            return Err(model_err(format!(
                "BatchNormalization {} does not match its convolution",
                bn.name
            )));
        }
        let factor: Vec<f64> = (0..channels)
            .map(|c| f64::from(gamma[c]) / (f64::from(var[c]) + eps).sqrt())
            .collect();
        let new_w: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, v)| (f64::from(*v) * factor[channel_of(&dims, axis, i)]) as f32)
            .collect();
        let old_b = match conv.inputs.get(2) {
            Some(b) => weight(g, b)?.1.clone(),
            None => vec![0.0; channels],
        };
        let new_b: Vec<f32> = (0..channels)
            .map(|c| {
                ((f64::from(old_b[c]) - f64::from(mean[c])) * factor[c] + f64::from(beta[c])) as f32
            })
            .collect();
        let (w_new, b_new) = (
            format!("{w_name}{BN_FOLDED}"),
            format!("{w_name}/bn_folded_bias"),
        );
        g.weights.insert(w_new.clone(), (dims, new_w));
        g.weights
            .insert(b_new.clone(), (vec![channels as i64], new_b));
        let conv = &mut g.nodes[conv_at];
        conv.inputs.truncate(1);
        conv.inputs.push(w_new);
        conv.inputs.push(b_new);
        conv.outputs = bn.outputs.clone();
        g.nodes.remove(bn_at);
    }
    Ok(())
}

/// Indices of the nodes that are quantised: every convolution whose weight is not listed in
/// `float_convs`, and every `Add`.
fn quantised_ops(g: &Graph, float_convs: &BTreeSet<String>) -> Result<BTreeSet<usize>, QuantError> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if is_conv(n) {
            let weight = n
                .inputs
                .get(1)
                .map(|w| w.trim_end_matches(BN_FOLDED))
                .unwrap_or("");
            if float_convs.contains(weight) {
                seen.insert(weight);
            } else {
                out.insert(i);
            }
        } else if n.op_type == "Add" {
            out.insert(i);
        }
    }
    if let Some(unknown) = float_convs.iter().find(|w| !seen.contains(w.as_str())) {
        return Err(QuantError::Scales {
            line: 0,
            reason: format!("{unknown} is the weight of no convolution in this model"),
        });
    }
    Ok(out)
}

/// Removes each `Relu` that directly follows a quantised convolution (its only consumer) and
/// returns the tensors that now rely on quantisation to clamp at zero. Node indices in
/// `quantised` stay valid because the removed `Relu`s are never in it.
fn fold_relus(g: &mut Graph, quantised: &BTreeSet<usize>) -> BTreeSet<String> {
    let mut remove = BTreeSet::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type != "Relu" {
            continue;
        }
        let x = &n.inputs[0];
        let producer = g.nodes.iter().position(|p| p.outputs.first() == Some(x));
        if let Some(p) = producer.filter(|p| quantised.contains(p) && is_conv(&g.nodes[*p])) {
            if consumers(g, x).len() == 1 && !CENTERFACE_OUTPUTS.contains(&x.as_str()) {
                remove.insert((i, p));
            }
        }
    }
    let mut clamped = BTreeSet::new();
    for &(relu, conv) in &remove {
        g.nodes[conv].outputs = g.nodes[relu].outputs.clone();
        clamped.extend(g.nodes[relu].outputs.iter().cloned());
        // Left in place with no operator (so that node indices stay valid); not written.
        g.nodes[relu].op_type = String::new();
    }
    clamped
}

/// Activations read or written by quantised operators.
fn quantised_tensors(g: &Graph, quantised: &BTreeSet<usize>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for &i in quantised {
        let n = &g.nodes[i];
        let activations = if is_conv(n) {
            &n.inputs[..1]
        } else {
            &n.inputs[..]
        };
        for t in activations.iter().chain(&n.outputs) {
            if !g.weights.contains_key(t) {
                out.insert(t.clone());
            }
        }
    }
    out
}

fn check_table(
    q_tensors: &BTreeSet<String>,
    clamped: &BTreeSet<String>,
    table: &ActivationTable,
) -> Result<(), QuantError> {
    // A removed Relu clamps only if zero maps to the lowest uint8 value.
    if let Some(t) = clamped
        .iter()
        .find(|t| table.scales.get(*t).is_some_and(|s| s.1 != 0))
    {
        return Err(QuantError::Scales {
            line: 0,
            reason: format!("activation {t} follows a Relu, so its zero point must be 0"),
        });
    }
    let listed: BTreeSet<String> = table.scales.keys().cloned().collect();
    if let Some(missing) = q_tensors.difference(&listed).next() {
        return Err(QuantError::Scales {
            line: 0,
            reason: format!("no scale for activation {missing}, which the model quantises"),
        });
    }
    if let Some(extra) = listed.difference(q_tensors).next() {
        return Err(QuantError::Scales {
            line: 0,
            reason: format!("activation {extra} is not quantised in this model"),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Writing.

/// Per-channel symmetric int8: the quantised values and one scale per output channel.
fn quantise_weight(dims: &[i64], w: &[f32], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = dims[axis] as usize;
    let mut absmax = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        let c = channel_of(dims, axis, i);
        absmax[c] = absmax[c].max(v.abs());
    }
    let scales: Vec<f32> = absmax
        .iter()
        .map(|m| if *m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (v / scales[channel_of(dims, axis, i)])
                .round_ties_even()
                .clamp(-127.0, 127.0) as i8
        })
        .collect();
    (q, scales)
}

struct Writer {
    nodes: Vec<Node>,
    inits: Vec<Tensor>,
}

impl Writer {
    fn init(&mut self, name: String, dims: Vec<i64>, data: Data) -> String {
        self.inits.push(Tensor {
            name: name.clone(),
            dims,
            data,
        });
        name
    }

    fn node(
        &mut self,
        op: &str,
        name: String,
        inputs: Vec<String>,
        output: String,
        axis: Option<i64>,
    ) {
        self.nodes.push(Node {
            name,
            op_type: op.into(),
            inputs,
            outputs: vec![output],
            attributes: axis
                .map(|a| vec![("axis".to_string(), Attr::Int(a))])
                .unwrap_or_default(),
        });
    }

    /// `QuantizeLinear` → `DequantizeLinear` of an activation: `from` is the float tensor, `to`
    /// the dequantised one.
    fn qdq(&mut self, tensor: &str, from: &str, to: &str, (scale, zp): (f32, u8)) {
        let s = self.init(format!("{tensor}/scale"), vec![], Data::F32(vec![scale]));
        let z = self.init(format!("{tensor}/zero_point"), vec![], Data::U8(vec![zp]));
        let q = format!("{tensor}/q");
        self.node(
            "QuantizeLinear",
            format!("{tensor}/quantize"),
            vec![from.into(), s.clone(), z.clone()],
            q.clone(),
            None,
        );
        self.node(
            "DequantizeLinear",
            format!("{tensor}/dequantize"),
            vec![q, s, z],
            to.into(),
            None,
        );
    }
}

fn write_qdq(
    g: &Graph,
    quantised: &BTreeSet<usize>,
    q_tensors: &BTreeSet<String>,
    table: &ActivationTable,
) -> Result<Model, QuantError> {
    let is_output = |t: &str| CENTERFACE_OUTPUTS.contains(&t);
    // What consumers read for each quantised tensor.
    let read_as = |t: &str| -> String {
        if q_tensors.contains(t) && !is_output(t) {
            format!("{t}/dq")
        } else {
            t.to_string()
        }
    };
    let scale_of = |t: &str| table.scales[t];
    let mut w = Writer {
        nodes: vec![],
        inits: vec![],
    };
    let mut used_weights = BTreeSet::new();
    if q_tensors.contains(CENTERFACE_INPUT) {
        w.qdq(
            CENTERFACE_INPUT,
            CENTERFACE_INPUT,
            &read_as(CENTERFACE_INPUT),
            scale_of(CENTERFACE_INPUT),
        );
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if n.op_type.is_empty() {
            continue; // a folded Relu
        }
        let mut node = n.clone();
        node.inputs = n.inputs.iter().map(|t| read_as(t)).collect();
        if quantised.contains(&i) && is_conv(n) {
            let axis = out_axis(n);
            let w_name = &n.inputs[1];
            let (dims, values) = weight(g, w_name)?;
            let (q, scales) = quantise_weight(dims, values, axis);
            let channels = scales.len();
            let qn = w.init(format!("{w_name}/int8"), dims.clone(), Data::I8(q));
            let sn = w.init(
                format!("{w_name}/int8_scale"),
                vec![channels as i64],
                Data::F32(scales.clone()),
            );
            let zn = w.init(
                format!("{w_name}/int8_zero_point"),
                vec![channels as i64],
                Data::I8(vec![0; channels]),
            );
            let wdq = format!("{w_name}/dq");
            w.node(
                "DequantizeLinear",
                format!("{w_name}/dequantize"),
                vec![qn, sn, zn],
                wdq.clone(),
                Some(axis as i64),
            );
            node.inputs[1] = wdq;
            if let Some(b_name) = n.inputs.get(2) {
                let (_, bias) = weight(g, b_name)?;
                if bias.len() != channels {
                    return Err(model_err(format!(
                        "bias {b_name} does not match its weight"
                    )));
                }
                let input_scale = scale_of(&n.inputs[0]).0;
                let b_scales: Vec<f32> = scales.iter().map(|s| input_scale * s).collect();
                let bq: Vec<i32> = bias
                    .iter()
                    .zip(&b_scales)
                    .map(|(b, s)| {
                        (b / s)
                            .round_ties_even()
                            .clamp(i32::MIN as f32, i32::MAX as f32) as i32
                    })
                    .collect();
                let qn = w.init(
                    format!("{b_name}/int32"),
                    vec![channels as i64],
                    Data::I32(bq),
                );
                let sn = w.init(
                    format!("{b_name}/int32_scale"),
                    vec![channels as i64],
                    Data::F32(b_scales),
                );
                let zn = w.init(
                    format!("{b_name}/int32_zero_point"),
                    vec![channels as i64],
                    Data::I32(vec![0; channels]),
                );
                let bdq = format!("{b_name}/dq");
                w.node(
                    "DequantizeLinear",
                    format!("{b_name}/dequantize"),
                    vec![qn, sn, zn],
                    bdq.clone(),
                    Some(0),
                );
                node.inputs[2] = bdq;
            }
        } else {
            used_weights.extend(
                n.inputs
                    .iter()
                    .filter(|t| g.weights.contains_key(*t))
                    .cloned(),
            );
        }
        let outs: Vec<String> = n.outputs.clone();
        node.outputs = outs
            .iter()
            .map(|t| {
                if q_tensors.contains(t) && is_output(t) {
                    format!("{t}/float")
                } else {
                    t.clone()
                }
            })
            .collect();
        if node.name.is_empty() {
            node.name = format!("{}_{i}", n.op_type);
        }
        w.nodes.push(node.clone());
        for (t, written) in outs.iter().zip(&node.outputs) {
            if q_tensors.contains(t) {
                let zp = scale_of(t);
                w.qdq(t, written, &read_as(t), zp);
            }
        }
    }
    // Float weights of float operators, in name order.
    for name in &used_weights {
        let (dims, values) = weight(g, name)?;
        w.inits.push(Tensor {
            name: name.clone(),
            dims: dims.clone(),
            data: Data::F32(values.clone()),
        });
    }
    if let Some(t) = g
        .nodes
        .iter()
        .flat_map(|n| &n.inputs)
        .find(|t| g.other_initializers.contains(*t))
    {
        return Err(model_err(format!(
            "operator input {t} is not a float tensor"
        )));
    }
    let output_channels = [1, 2, 2, 10];
    Ok(Model {
        producer: "veil".into(),
        producer_version: CONVERTER.into(),
        doc: "CenterFace with INT8 weights and activations (QDQ), built by veil from the float \
              model and models/centerface-int8.scales"
            .into(),
        opset: 13,
        graph_name: "centerface-int8".into(),
        nodes: w.nodes,
        initializers: w.inits,
        inputs: vec![ValueInfo {
            name: CENTERFACE_INPUT.into(),
            elem_type: FLOAT,
            dims: vec![-1, 3, -1, -1],
        }],
        outputs: CENTERFACE_OUTPUTS
            .iter()
            .zip(output_channels)
            .map(|(name, c)| ValueInfo {
                name: (*name).into(),
                elem_type: FLOAT,
                dims: vec![-1, c, -1, -1],
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_table_keeps_the_early_backbone_and_the_head_in_float() {
        let t = parse_table(SCALES).unwrap();
        // The first 11 backbone convolutions (half and quarter resolution), the lateral 1x1 on
        // the quarter-resolution features, the 3x3 head convolution and the 4 output ones.
        let backbone = [
            "542", "546", "550", "554", "558", "562", "566", "570", "574", "578", "582",
        ];
        let head = ["758", "762", "head.lm_conv.weight", "head.off_conv.weight"];
        for w in backbone
            .iter()
            .chain(&head)
            .chain(&["head.reg_conv.weight", "head.pos_conv.weight"])
        {
            assert!(t.float_convs.contains(*w), "{w}");
        }
        assert_eq!(t.float_convs.len(), 17);
        assert_eq!(t.scales.len(), 63);
    }

    #[test]
    fn malformed_tables_name_their_line() {
        let e = parse_table("float 1\n377 0.1\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_table("377 -0.1 3\n").unwrap_err().to_string();
        assert!(e.contains("positive"), "{e}");
        let e = parse_table("377 0.1 300\n").unwrap_err().to_string();
        assert!(e.contains("zero point"), "{e}");
        let e = parse_table("a 0.1 3\na 0.2 3\n").unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = parse_table("float w\nfloat w\n").unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
    }

    fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<(String, Attr)>) -> Node {
        Node {
            name: String::new(),
            op_type: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attributes,
        }
    }

    /// A batch norm folds into its convolution along the output-channel axis: 0 for `Conv`
    /// (`[out, in, kh, kw]`), 1 for `ConvTranspose` (`[in, out, kh, kw]`).
    #[test]
    fn batch_norms_fold_along_the_output_channel_axis() {
        for (op, dims) in [
            ("Conv", vec![2, 1, 1, 1]),
            ("ConvTranspose", vec![1, 2, 1, 1]),
        ] {
            let mut g = Graph::default();
            let w = |d: Vec<i64>, v: Vec<f32>| (d, v);
            g.weights
                .insert("w".into(), w(dims.clone(), vec![1.0, 1.0]));
            for (name, v) in [
                ("g", [2.0, 3.0]),
                ("b", [0.5, 0.0]),
                ("m", [0.0, 1.0]),
                ("v", [1.0, 4.0]),
            ] {
                g.weights.insert(name.into(), w(vec![2], v.to_vec()));
            }
            let eps = vec![("epsilon".to_string(), Attr::Float(0.0))];
            g.nodes = vec![
                node(op, &["x", "w"], "y", vec![]),
                node("BatchNormalization", &["y", "g", "b", "m", "v"], "z", eps),
            ];
            validate(&g).unwrap();
            fold_batch_norms(&mut g).unwrap();
            assert_eq!(g.nodes.len(), 1, "{op}");
            let conv = &g.nodes[0];
            assert_eq!(conv.outputs, vec!["z".to_string()]);
            // Factors gamma / sqrt(var): 2 and 1.5; bias (0 - mean) * factor + beta.
            assert_eq!(g.weights[&conv.inputs[1]], (dims, vec![2.0, 1.5]), "{op}");
            assert_eq!(g.weights[&conv.inputs[2]].1, vec![0.5, -1.5], "{op}");
        }
    }

    #[test]
    fn malformed_graphs_are_errors_not_panics() {
        let mut g = Graph::default();
        g.weights.insert("w".into(), (vec![2], vec![1.0, 1.0]));
        g.nodes = vec![node("Conv", &["x", "w"], "y", vec![])];
        assert!(validate(&g).unwrap_err().to_string().contains("dims [2]"));
        g.weights
            .insert("w".into(), (vec![2, 1, 1], vec![1.0, 1.0]));
        g.nodes = vec![node("Relu", &[], "y", vec![])];
        assert!(validate(&g).unwrap_err().to_string().contains("0 inputs"));
        g.nodes = vec![
            node("Conv", &["x", "w"], "y", vec![]),
            node("Conv", &["y", "w"], "z", vec![]),
        ];
        assert!(validate(&g).unwrap_err().to_string().contains("shared"));
        g.nodes = vec![node("Conv", &["w", "w"], "y", vec![])];
        assert!(validate(&g)
            .unwrap_err()
            .to_string()
            .contains("is a weight"));
    }

    #[test]
    fn weights_are_symmetric_per_output_channel() {
        // Conv weight [2, 1, 1, 2]: channel 0 = [1, -0.25], channel 1 = [-127, 2.5].
        let (q, s) = quantise_weight(&[2, 1, 1, 2], &[1.0, -0.25, -127.0, 2.5], 0);
        assert_eq!(s, vec![1.0 / 127.0, 1.0]);
        assert_eq!(q, vec![127, -32, -127, 2]); // 2.5 rounds to even
                                                // ConvTranspose weight [1, 2, 1, 1]: output channels on axis 1.
        let (q, s) = quantise_weight(&[1, 2, 1, 1], &[0.5, -2.0], 1);
        assert_eq!(s, vec![0.5 / 127.0, 2.0 / 127.0]);
        assert_eq!(q, vec![127, -127]);
        // An all-zero channel gets scale 1 rather than a division by zero.
        let (q, s) = quantise_weight(&[1, 1, 1, 1], &[0.0], 0);
        assert_eq!((q, s), (vec![0], vec![1.0]));
    }
}
