//! Object detection: the declared pre-processing ([`preprocess`]: decode or convert a frame, colour
//! order, letterbox, scale/mean/std into an NCHW tensor) and post-processing ([`postprocess`]:
//! decode the model's output layout, confidence threshold, class-wise NMS, boxes mapped back to the
//! original image). Both are pure functions, independent of ONNX Runtime and HTTP.

pub mod postprocess;
pub mod preprocess;

#[cfg(test)]
mod postprocess_tests;
#[cfg(test)]
mod preprocess_tests;
