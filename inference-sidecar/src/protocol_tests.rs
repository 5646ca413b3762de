//! Unit tests of `protocol.rs`.

use super::*;
use crate::tensor::TensorData;

#[test]
fn json_request() {
    let body = br#"{"id":"7","inputs":[{"name":"a","shape":[1,2],"datatype":"INT32","data":[1,2]}],
        "outputs":[{"name":"o","parameters":{"binary_data":true}},{"name":"p"}]}"#;
    let r = parse_infer_request(body, None).unwrap();
    assert_eq!(r.id.as_deref(), Some("7"));
    assert_eq!(r.inputs[0].data, TensorData::Int32(vec![1, 2]));
    let outs = r.outputs.unwrap();
    assert!(outs[0].binary);
    assert!(!outs[1].binary);
    assert_eq!(r.timeout, None);
}

fn binary_request(extra: &[u8]) -> (Vec<u8>, String) {
    let header = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},
        {"name":"b","shape":[1],"datatype":"INT64","data":[5]}],"parameters":{"binary_data_output":true,"timeout":2000}}"#;
    let mut body = header.to_vec();
    body.extend_from_slice(&1.5f32.to_le_bytes());
    body.extend_from_slice(&(-2f32).to_le_bytes());
    body.extend_from_slice(extra);
    (body, header.len().to_string())
}

#[test]
fn binary_request_mixed_with_json() {
    let (body, len) = binary_request(&[]);
    let r = parse_infer_request(&body, Some(&len)).unwrap();
    assert_eq!(r.inputs[0].data, TensorData::Fp32(vec![1.5, -2.0]));
    assert_eq!(r.inputs[1].data, TensorData::Int64(vec![5]));
    assert!(r.binary_output_default);
    assert_eq!(r.timeout, Some(Duration::from_millis(2)));
}

#[test]
fn binary_length_errors() {
    let (body, len) = binary_request(&[0, 0]);
    let e = parse_infer_request(&body, Some(&len)).unwrap_err();
    assert!(matches!(e, ProtocolError::BinaryTrailing(2)), "{e}");
    let (body, len) = binary_request(&[]);
    let e = parse_infer_request(&body[..body.len() - 1], Some(&len)).unwrap_err();
    assert!(
        matches!(e, ProtocolError::BinaryOverrun { size: 8, .. }),
        "{e}"
    );
    let e = parse_infer_request(&body, Some("99999")).unwrap_err();
    assert_eq!(e.kind(), "binary_length");
    let e = parse_infer_request(&body, Some("abc")).unwrap_err();
    assert_eq!(e.kind(), "binary_length");
    let e = parse_infer_request(&body, None).unwrap_err();
    assert_eq!(e.kind(), "bad_json");
}

#[test]
fn garbage_and_empty() {
    assert_eq!(
        parse_infer_request(b"", None).unwrap_err().kind(),
        "empty_body"
    );
    assert_eq!(
        parse_infer_request(b"\x00\xff{", None).unwrap_err().kind(),
        "bad_json"
    );
    assert_eq!(
        parse_infer_request(b"{}", None).unwrap_err().kind(),
        "bad_json"
    );
    let e = parse_infer_request(
        br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32"}]}"#,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, ProtocolError::NoData(_)));
    let e = parse_infer_request(
        br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]},{"name":"a","shape":[1],"datatype":"FP32","data":[1]}]}"#,
        None,
    )
    .unwrap_err();
    assert!(matches!(e, ProtocolError::DuplicateInput(_)));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
                                    split in proptest::option::of(0usize..600)) {
        let len = split.map(|n| n.to_string());
        let _ = parse_infer_request(&body, len.as_deref());
    }

    #[test]
    fn binary_requests_round_trip(values in proptest::collection::vec(proptest::prelude::any::<i32>(), 0..64)) {
        let header = serde_json::json!({"inputs": [{"name": "x", "shape": [values.len()], "datatype": "INT32",
            "parameters": {"binary_data_size": values.len() * 4}}]});
        let mut body = header.to_string().into_bytes();
        let n = body.len().to_string();
        body.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let r = parse_infer_request(&body, Some(&n)).unwrap();
        proptest::prop_assert_eq!(&r.inputs[0].data, &TensorData::Int32(values.clone()));
        let enc = encode_infer_response("m", None, None, &[(r.inputs[0].clone(), true)]).unwrap();
        let h = enc.header_length.unwrap();
        proptest::prop_assert_eq!(enc.body[h..].to_vec(), body[n.parse::<usize>().unwrap()..].to_vec());
    }
}

#[test]
fn decompression_is_bounded() {
    use std::io::Write;
    let body = vec![b'a'; 10_000];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(decompress("gzip", &gz, 10_000).unwrap(), body);
    assert!(matches!(
        decompress("gzip", &gz, 9_999),
        Err(ProtocolError::TooLarge(9_999))
    ));
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&body).unwrap();
    assert_eq!(
        decompress("deflate", &z.finish().unwrap(), 1 << 20).unwrap(),
        body
    );
    assert_eq!(
        decompress("gzip", b"not gzip", 100).unwrap_err().kind(),
        "bad_compression"
    );
    assert_eq!(
        decompress("br", b"x", 100).unwrap_err().kind(),
        "unsupported_encoding"
    );
    assert_eq!(decompress("identity", b"x", 100).unwrap(), b"x");
}

#[test]
fn response_json_and_binary() {
    let t = Tensor::new("o".into(), vec![2], TensorData::Fp32(vec![1.0, 2.0])).unwrap();
    let r = encode_infer_response("m", Some("1"), Some("x"), &[(t.clone(), false)]).unwrap();
    assert_eq!(r.header_length, None);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["outputs"][0]["data"], serde_json::json!([1.0, 2.0]));
    assert_eq!(v["model_version"], "1");
    assert_eq!(v["id"], "x");

    let r = encode_infer_response("m", None, None, &[(t, true)]).unwrap();
    let n = r.header_length.unwrap();
    let v: Value = serde_json::from_slice(&r.body[..n]).unwrap();
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert!(v["outputs"][0].get("data").is_none());
    assert_eq!(&r.body[n..n + 4], &1.0f32.to_le_bytes());
}
