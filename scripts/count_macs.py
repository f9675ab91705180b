#!/usr/bin/env python3
"""Count the multiply-accumulates of an exported graph (Conv, ConvTranspose, Gemm, MatMul; shapes by ONNX shape
inference at batch 1), for a model folder or a config exported with random weights (the count does not depend on
them).

    python scripts/count_macs.py --config paper --json benchmarks/.../paper_macs.json
    python scripts/count_macs.py --model facecycle/assets/default
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere


def count_macs(onnx_path: Path, image_size: int) -> dict:
    """{"macs": total, "by_op": {op: macs}} of the graph run once at batch 1 (every tensor's shape as ONNX Runtime
    makes it: shape inference leaves the graph's reshapes unknown)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    inits = {t.name: list(numpy_helper.to_array(t).shape) for t in m.graph.initializer}
    nodes = [n for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    want = {x for n in nodes for x in list(n.input[:2]) + [n.output[0]] if x and x not in inits}
    have = {o.name for o in m.graph.output}
    for name in sorted(want - have):
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros((1, 3, image_size, image_size), np.float32) for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    shapes = {**inits, **{k: list(v.shape) for k, v in zip(names, sess.run(names, feeds), strict=True)}}
    by_op: dict = {}
    for n in nodes:
        if n.op_type in ("Conv", "ConvTranspose"):
            w = shapes[n.input[1]]
            x = shapes[n.output[0]] if n.op_type == "Conv" else shapes[n.input[0]]
            # Conv (weights Cout x Cin/group x kh x kw): each output element takes Cin/group x kh x kw;
            # ConvTranspose (Cin x Cout/group x kh x kw): each input element spreads to Cout/group x kh x kw
            macs = int(np.prod(x)) * int(np.prod(w[1:]))
        else:  # (…, M, K) x (…, K, N): the output's elements x K
            k = shapes[n.input[0]][-1]
            macs = int(np.prod(shapes[n.output[0]])) * int(k)
        by_op[n.op_type] = by_op.get(n.op_type, 0) + macs
    return {"macs": int(sum(by_op.values())), "by_op": by_op}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", help="a registered config, exported with random weights (needs torch)")
    g.add_argument("--model", type=Path, help="an exported model folder")
    ap.add_argument("--graph", default="analyze")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.config:
            import torch

            from facecycle.export import export_onnx
            from facecycle.model import FaceCycle

            torch.manual_seed(0)
            export_onnx(FaceCycle(a.config).eval(), tmp, graphs=[a.graph], validate=False,
                        source=f"random:{a.config}")
            folder = Path(tmp)
        else:
            folder = a.model
        man = json.loads((folder / "manifest.json").read_text())
        rep = count_macs(folder / man["graphs"][a.graph]["file"], int(man["config"]["image_size"]))
    rep.update({"graph": a.graph, "what": a.config or str(a.model), "gmac": round(rep["macs"] / 1e9, 3),
                "gflop": round(2 * rep["macs"] / 1e9, 3), "batch": 1,
                "counted": "Conv, ConvTranspose, Gemm, MatMul multiply-accumulates, shapes from one ONNX Runtime run"})
    text = json.dumps(rep, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
