#!/usr/bin/env python3
"""Runs the stock PyPI tritonclient HTTP client against inference-sidecar serving add_mul.onnx.

usage: tritonclient_interop.py HOST:PORT MODEL
Exits non-zero (with the reason) on any mismatch. JSON and binary modes must give identical outputs.
"""
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def infer(client, model, a, b, binary, outputs=True, compression=None):
    in0 = httpclient.InferInput("INPUT0", list(a.shape), "FP32")
    in0.set_data_from_numpy(a, binary_data=binary)
    in1 = httpclient.InferInput("INPUT1", list(b.shape), "INT32")
    in1.set_data_from_numpy(b, binary_data=binary)
    requested = None
    if outputs:
        requested = [
            httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary),
            httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary),
        ]
    result = client.infer(
        model,
        [in0, in1],
        outputs=requested,
        request_id=f"binary={binary}",
        request_compression_algorithm=compression,
        response_compression_algorithm=compression,
    )
    assert result.get_response()["id"] == f"binary={binary}", result.get_response()
    return result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")


def main():
    url, model = sys.argv[1], sys.argv[2]
    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(model)
    meta = client.get_model_metadata(model)
    assert [i["name"] for i in meta["inputs"]] == ["INPUT0", "INPUT1"], meta
    assert client.get_server_metadata()["name"] == "inference-sidecar"

    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.integers(-1000, 1000, size=(3, 4)).astype(np.int32)
    json_out = infer(client, model, a, b, binary=False)
    bin_out = infer(client, model, a, b, binary=True)
    default_out = infer(client, model, a, b, binary=False, outputs=False)  # binary_data_output
    gzip_out = infer(client, model, a, b, binary=True, compression="gzip")
    deflate_out = infer(client, model, a, b, binary=False, compression="deflate")
    expected = (a + b.astype(np.float32), b * 2)
    runs = (("json", json_out), ("binary", bin_out), ("default", default_out), ("gzip", gzip_out), ("deflate", deflate_out))
    for name, got in runs:
        for want, have in zip(expected, got):
            assert have.dtype == want.dtype, (name, have.dtype, want.dtype)
            np.testing.assert_array_equal(have, want, err_msg=name)
    for x, y in zip(json_out, bin_out):
        assert x.tobytes() == y.tobytes(), "JSON and binary outputs differ"

    # a bad request comes back as InferenceServerException with the server's message
    bad = httpclient.InferInput("INPUT0", [3, 4], "FP64")
    bad.set_data_from_numpy(a.astype(np.float64))
    try:
        client.infer(model, [bad])
    except InferenceServerException as e:
        assert e.status() == "400" and "datatype" in e.message(), (e.status(), e.message())
    else:
        raise AssertionError("a wrong datatype was accepted")
    print("tritonclient interop: ok")


if __name__ == "__main__":
    main()
