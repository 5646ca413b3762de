//! The model as the server sees it: its signature (declared inputs and outputs) and the
//! [`Backend`] trait that runs it. The ONNX Runtime implementation lives in [`crate::ort_backend`];
//! tests use small fakes. Checking a request against the signature is pure and lives here.

use crate::tensor::{DataType, Tensor};

/// A declared input or output. `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// name in the model
    pub name: String,
    /// element type
    pub datatype: DataType,
    /// dimensions; `-1` is dynamic
    pub shape: Vec<i64>,
}

/// The declared inputs and outputs of a model, in model order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSignature {
    /// inputs
    pub inputs: Vec<TensorSpec>,
    /// outputs
    pub outputs: Vec<TensorSpec>,
}

/// A request that does not fit the model (HTTP 400, outcome `invalid`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// An input the model does not have.
    #[error("unknown input {0:?}")]
    UnknownInput(String),
    /// A model input the request lacks.
    #[error("missing input {0:?}")]
    MissingInput(String),
    /// Wrong element type.
    #[error("input {name:?} has datatype {got}, the model expects {expected}")]
    Datatype {
        /// input
        name: String,
        /// declared
        expected: DataType,
        /// sent
        got: DataType,
    },
    /// Wrong rank or a fixed dimension differs.
    #[error("input {name:?} has shape {got:?}, the model expects {expected:?}")]
    Shape {
        /// input
        name: String,
        /// declared (-1 dynamic)
        expected: Vec<i64>,
        /// sent
        got: Vec<i64>,
    },
    /// An output the model does not have.
    #[error("unknown output {0:?}")]
    UnknownOutput(String),
}

impl SignatureError {
    /// A short stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownInput(_) => "unknown_input",
            Self::MissingInput(_) => "missing_input",
            Self::Datatype { .. } => "wrong_datatype",
            Self::Shape { .. } => "wrong_shape",
            Self::UnknownOutput(_) => "unknown_output",
        }
    }
}

impl ModelSignature {
    /// Checks the inputs against the declared ones and returns them in model order.
    pub fn check_inputs(&self, mut inputs: Vec<Tensor>) -> Result<Vec<Tensor>, SignatureError> {
        if let Some(unknown) = inputs
            .iter()
            .find(|t| !self.inputs.iter().any(|s| s.name == t.name))
        {
            return Err(SignatureError::UnknownInput(unknown.name.clone()));
        }
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let pos = inputs
                .iter()
                .position(|t| t.name == spec.name)
                .ok_or_else(|| SignatureError::MissingInput(spec.name.clone()))?;
            let t = inputs.swap_remove(pos);
            if t.datatype() != spec.datatype {
                return Err(SignatureError::Datatype {
                    got: t.datatype(),
                    name: t.name,
                    expected: spec.datatype,
                });
            }
            if !shape_matches(&spec.shape, &t.shape) {
                return Err(SignatureError::Shape {
                    name: t.name,
                    expected: spec.shape.clone(),
                    got: t.shape,
                });
            }
            ordered.push(t);
        }
        Ok(ordered)
    }

    /// Checks that every named output exists.
    pub fn check_outputs<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), SignatureError> {
        for name in names {
            if !self.outputs.iter().any(|s| s.name == name) {
                return Err(SignatureError::UnknownOutput(name.to_owned()));
            }
        }
        Ok(())
    }

    /// Whether the model takes a batch: every input and output has a dynamic first dimension.
    pub fn is_batchable(&self) -> bool {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .all(|s| s.shape.first() == Some(&-1))
    }

    /// Zero-filled warm-up inputs: the shape given in `shapes` for an input, else its declared
    /// shape with every dynamic dimension set to 1. A given shape must fit the declared one.
    pub fn warmup_inputs(
        &self,
        shapes: &[(String, Vec<i64>)],
    ) -> Result<Vec<Tensor>, SignatureError> {
        if let Some((name, _)) = shapes
            .iter()
            .find(|(n, _)| !self.inputs.iter().any(|s| &s.name == n))
        {
            return Err(SignatureError::UnknownInput(name.clone()));
        }
        self.inputs
            .iter()
            .map(|s| {
                let shape: Vec<i64> = match shapes.iter().find(|(n, _)| n == &s.name) {
                    Some((_, given))
                        if shape_matches(&s.shape, given) && given.iter().all(|&d| d >= 0) =>
                    {
                        given.clone()
                    }
                    Some((_, given)) => {
                        return Err(SignatureError::Shape {
                            name: s.name.clone(),
                            expected: s.shape.clone(),
                            got: given.clone(),
                        });
                    }
                    None => s.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect(),
                };
                let n = shape
                    .iter()
                    .map(|&d| usize::try_from(d).unwrap_or(0))
                    .product();
                Ok(Tensor {
                    name: s.name.clone(),
                    shape,
                    data: crate::tensor::TensorData::zeros(s.datatype, n),
                })
            })
            .collect()
    }
}

fn shape_matches(declared: &[i64], got: &[i64]) -> bool {
    declared.len() == got.len() && declared.iter().zip(got).all(|(&d, &g)| d < 0 || d == g)
}

/// Failure while running the model: the server's fault (HTTP 500, outcome `error`).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// ONNX Runtime refused the inputs or failed while running.
    #[error("inference failed: {0}")]
    Run(String),
    /// The model produced an output this server cannot return.
    #[error("output {name:?}: {reason}")]
    Output {
        /// output
        name: String,
        /// why
        reason: String,
    },
}

impl BackendError {
    /// A short stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Run(_) => "run",
            Self::Output { .. } => "output",
        }
    }
}

/// Something that runs a model. One instance per inference thread; `infer` may block.
pub trait Backend: Send {
    /// Runs the model on inputs already checked against the signature and in model order.
    /// Returns every output, in model order.
    fn infer(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    fn sig() -> ModelSignature {
        ModelSignature {
            inputs: vec![
                TensorSpec {
                    name: "a".into(),
                    datatype: DataType::Fp32,
                    shape: vec![-1, 4],
                },
                TensorSpec {
                    name: "b".into(),
                    datatype: DataType::Int32,
                    shape: vec![-1, 4],
                },
            ],
            outputs: vec![TensorSpec {
                name: "o".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 4],
            }],
        }
    }

    fn t(name: &str, shape: Vec<i64>, data: TensorData) -> Tensor {
        Tensor::new(name.into(), shape, data).unwrap()
    }

    #[test]
    fn inputs_are_reordered_and_checked() {
        let b = t("b", vec![2, 4], TensorData::Int32(vec![0; 8]));
        let a = t("a", vec![2, 4], TensorData::Fp32(vec![0.0; 8]));
        let got = sig().check_inputs(vec![b.clone(), a.clone()]).unwrap();
        assert_eq!(got, vec![a.clone(), b.clone()]);

        let e = sig().check_inputs(vec![a.clone()]).unwrap_err();
        assert_eq!(e, SignatureError::MissingInput("b".into()));
        let c = t("c", vec![1], TensorData::Int32(vec![0]));
        let e = sig()
            .check_inputs(vec![a.clone(), b.clone(), c])
            .unwrap_err();
        assert_eq!(e.kind(), "unknown_input");
        let wrong = t("b", vec![2, 4], TensorData::Fp32(vec![0.0; 8]));
        let e = sig().check_inputs(vec![a.clone(), wrong]).unwrap_err();
        assert_eq!(e.kind(), "wrong_datatype");
        let wrong = t("b", vec![2, 2, 2], TensorData::Int32(vec![0; 8]));
        let e = sig().check_inputs(vec![a.clone(), wrong]).unwrap_err();
        assert_eq!(e.kind(), "wrong_shape");
        let wrong = t("b", vec![1, 8], TensorData::Int32(vec![0; 8]));
        let e = sig().check_inputs(vec![a, wrong]).unwrap_err();
        assert_eq!(e.kind(), "wrong_shape");
    }

    #[test]
    fn outputs_batchability_and_warmup() {
        assert!(sig().check_outputs(["o"]).is_ok());
        assert_eq!(
            sig().check_outputs(["x"]).unwrap_err().kind(),
            "unknown_output"
        );
        assert!(sig().is_batchable());
        let mut fixed = sig();
        fixed.inputs[0].shape = vec![1, 4];
        assert!(!fixed.is_batchable());
        let w = sig().warmup_inputs(&[]).unwrap();
        assert_eq!(w[0].shape, vec![1, 4]);
        assert_eq!(w[1].data, TensorData::Int32(vec![0; 4]));
        let w = sig().warmup_inputs(&[("b".into(), vec![3, 4])]).unwrap();
        assert_eq!(w[0].shape, vec![1, 4]);
        assert_eq!(w[1].shape, vec![3, 4]);
        let e = sig()
            .warmup_inputs(&[("b".into(), vec![3, 5])])
            .unwrap_err();
        assert_eq!(e.kind(), "wrong_shape");
        let e = sig().warmup_inputs(&[("c".into(), vec![1])]).unwrap_err();
        assert_eq!(e.kind(), "unknown_input");
    }
}
