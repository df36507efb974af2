"""The judge of `tensor-trace gguf dequantize`: gguf-py, llama.cpp's own Python package.

    python gguf_judge.py compare IN.gguf OUT.gguf   one JSON report on stdout
    python gguf_judge.py make PATH                  a GGUF written by gguf-py, alignment 64

`compare` reads both files with gguf-py's GGUFReader, dequantizes every tensor of IN with
`gguf.quants.dequantize` and compares it bit for bit with OUT's F32 tensor of the same index.
"""

import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import dequantize, quantize


def metadata(reader):
    """Key -> (value types, contents) in file order, without the reader's GGUF.* pseudo-keys."""
    out = []
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        types = [int(t) for t in field.types]
        value = field.contents()
        if isinstance(value, (np.ndarray, np.generic)):
            value = value.tolist()
        out.append([name, types, value])
    return out


def compare(in_path, out_path):
    src, dst = GGUFReader(in_path), GGUFReader(out_path)
    alignment = int(dst.alignment)
    tensors = []
    for a, b in zip(src.tensors, dst.tensors, strict=True):
        want = dequantize(a.data, a.tensor_type).astype(np.float32).reshape(-1)
        got = np.asarray(b.data).reshape(-1)
        diff = np.abs(want.astype(np.float64) - got.astype(np.float64))
        tensors.append({
            "name": a.name,
            "out_name": b.name,
            "in_type": a.tensor_type.name,
            "out_type": b.tensor_type.name,
            "in_shape": a.shape.tolist(),
            "out_shape": b.shape.tolist(),
            "elements": int(want.size),
            "bit_exact": bool(
                want.size == got.size and np.array_equal(want.view(np.uint32), got.view(np.uint32))
            ),
            "max_abs_diff": float(diff.max()) if diff.size and want.size == got.size else None,
            "aligned": int(b.data_offset) % alignment == 0,
        })
    return {
        "in_metadata": metadata(src),
        "out_metadata": metadata(dst),
        "out_alignment": alignment,
        "tensors": tensors,
    }


def make(path):
    """Q8_0, Q4_0 and F16 tensors by gguf-py's own quantizer, in a file aligned to 64 bytes."""
    rng = np.random.default_rng(7)
    writer = GGUFWriter(path, "llama")
    writer.add_custom_alignment(64)
    writer.add_array("test.tokens", ["a", "b", "<0x0A>"])
    writer.add_float64("test.f64", -1.25)
    for name, qtype, shape in [
        ("q8", GGMLQuantizationType.Q8_0, (3, 64)),
        ("q4", GGMLQuantizationType.Q4_0, (2, 32)),
        ("h", GGMLQuantizationType.F16, (5,)),
    ]:
        x = rng.standard_normal(shape).astype(np.float32)
        q = quantize(x, qtype)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        print(json.dumps(compare(sys.argv[2], sys.argv[3])))
    elif sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")
