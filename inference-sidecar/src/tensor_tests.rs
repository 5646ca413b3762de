//! Unit tests of `tensor.rs`.

use super::*;
use serde_json::json;

#[test]
fn datatype_names_round_trip() {
    for dt in DataType::ALL {
        assert_eq!(DataType::parse(dt.as_str()), Ok(*dt));
    }
    assert_eq!(
        DataType::parse("FP16"),
        Err(TensorError::UnsupportedDatatype("FP16"))
    );
    assert_eq!(
        DataType::parse("float"),
        Err(TensorError::UnknownDatatype("float".into()))
    );
}

#[test]
fn json_nested_and_flat_give_the_same_tensor() {
    let flat = Tensor::from_json(
        "x".into(),
        DataType::Fp32,
        vec![2, 2],
        &json!([1, 2.5, 3, 4]),
    )
    .unwrap();
    let nested = Tensor::from_json(
        "x".into(),
        DataType::Fp32,
        vec![2, 2],
        &json!([[1, 2.5], [3, 4]]),
    )
    .unwrap();
    assert_eq!(flat, nested);
    assert_eq!(flat.data, TensorData::Fp32(vec![1.0, 2.5, 3.0, 4.0]));
    assert_eq!(flat.data.to_json(), json!([1.0, 2.5, 3.0, 4.0]));
}

#[test]
fn json_element_count_and_range_are_checked() {
    let e = Tensor::from_json("x".into(), DataType::Int32, vec![3], &json!([1, 2])).unwrap_err();
    assert_eq!(e.kind(), "length_mismatch");
    let e = Tensor::from_json("x".into(), DataType::Uint8, vec![1], &json!([300])).unwrap_err();
    assert!(matches!(e, TensorError::BadElement { index: 0, .. }), "{e}");
    let e = Tensor::from_json("x".into(), DataType::Int64, vec![1], &json!(["7"])).unwrap_err();
    assert_eq!(e.kind(), "bad_element");
    let e = Tensor::from_json("x".into(), DataType::Int64, vec![1], &json!([1.5])).unwrap_err();
    assert_eq!(e.kind(), "bad_element");
    let e = Tensor::from_json("x".into(), DataType::Bool, vec![-1], &json!([])).unwrap_err();
    assert_eq!(e.kind(), "bad_shape");
}

#[test]
fn binary_round_trip_every_datatype() {
    for &dt in DataType::ALL {
        let n = 6;
        let mut data = TensorData::zeros(dt, n);
        if let TensorData::Bool(v) = &mut data {
            v[1] = true;
        }
        let mut bytes = Vec::new();
        data.write_le_bytes(&mut bytes);
        assert_eq!(bytes.len(), n * dt.byte_size());
        let t = Tensor::from_le_bytes("t".into(), dt, vec![2, 3], &bytes).unwrap();
        assert_eq!(t.data, data, "{dt}");
    }
}

#[test]
fn binary_is_little_endian_and_length_checked() {
    let bytes = [1u8, 0, 0, 0, 0, 0, 0x80, 0x3f];
    let t = Tensor::from_le_bytes("t".into(), DataType::Fp32, vec![2], &bytes).unwrap();
    assert_eq!(t.data, TensorData::Fp32(vec![f32::from_bits(1), 1.0]));
    let e = Tensor::from_le_bytes("t".into(), DataType::Fp32, vec![3], &bytes).unwrap_err();
    assert_eq!(
        e,
        TensorError::ByteLength {
            shape: vec![3],
            expected: 12,
            got: 8
        }
    );
    let e = Tensor::from_le_bytes("t".into(), DataType::Bool, vec![1], &[2]).unwrap_err();
    assert_eq!(e, TensorError::BadBool(2));
}

#[test]
fn huge_shapes_do_not_overflow() {
    let e = element_count(&[i64::MAX, i64::MAX]).unwrap_err();
    assert_eq!(e.kind(), "bad_shape");
    let e = Tensor::from_le_bytes("t".into(), DataType::Fp64, vec![i64::MAX / 2], &[]).unwrap_err();
    assert_eq!(e.kind(), "bad_shape");
}

#[test]
fn a_huge_claimed_shape_with_little_data_is_an_error_not_an_allocation() {
    let e = Tensor::from_json(
        "t".into(),
        DataType::Fp32,
        vec![1 << 40, 1 << 20],
        &json!([1]),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "length_mismatch");
}

#[test]
fn slice_and_extend() {
    let mut a = TensorData::Int32(vec![1, 2]);
    assert!(a.extend_from(&TensorData::Int32(vec![3])));
    assert!(!a.extend_from(&TensorData::Fp32(vec![3.0])));
    assert_eq!(a.slice(1..3), Some(TensorData::Int32(vec![2, 3])));
    assert_eq!(a.slice(2..4), None);
}
