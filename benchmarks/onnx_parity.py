"""The largest differences between gatedrnn and ONNX runtimes on exported models: every
variant, 1-2 layers, uni/bidirectional, with and without lengths and initial states (T=20,
B=4, I=8, H=16, float32), against onnxruntime and ONNX's reference evaluator (which ignores
sequence_lens, so only without lengths).

    python benchmarks/onnx_parity.py
"""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort
import torch
from onnx.reference import ReferenceEvaluator

import gatedrnn

T, B, I, H = 20, 4, 8, 16


def main() -> None:
    print("| variant | onnxruntime max abs diff | onnx.reference max abs diff | configurations |")
    print("|---|---|---|---|")
    for variant in gatedrnn.VARIANTS:
        worst_ort = worst_ref = 0.0
        count = 0
        for layers, bidirectional, lengths, states in itertools.product([1, 2], [False, True],
                                                                        [False, True],
                                                                        [False, True]):
            torch.manual_seed(count)
            module = gatedrnn.for_variant(variant, I, H, num_layers=layers,
                                          bidirectional=bidirectional).eval()
            with torch.no_grad():
                for p in module.parameters():
                    p.normal_(0, 0.5)
            model = gatedrnn.export_onnx(module, lengths=lengths, initial_states=states)
            x = torch.randn(T, B, I)
            feeds, kwargs, hx = {"input": x.numpy()}, {}, None
            if lengths:
                lens = np.array([T, 3, 11, 1], dtype=np.int32)
                feeds["lengths"], kwargs["lengths"] = lens, torch.from_numpy(lens.astype(np.int64))
            if states:
                n = layers * (2 if bidirectional else 1)
                h0, c0 = torch.randn(n, B, H), torch.randn(n, B, H)
                feeds["h0"], hx = h0.numpy(), h0
                if variant.startswith("lstm"):
                    feeds["c0"], hx = c0.numpy(), (h0, c0)
            with torch.no_grad():
                out, state = module(x, hx, **kwargs)
            expected = [out] + list(state if isinstance(state, tuple) else (state,))
            got = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"]).run(None, feeds)
            worst_ort = max(worst_ort, max(float(np.abs(g - e.numpy()).max())
                                           for g, e in zip(got, expected)))
            if not lengths:
                got = ReferenceEvaluator(model).run(None, feeds)
                worst_ref = max(worst_ref, max(float(np.abs(g - e.numpy()).max())
                                               for g, e in zip(got, expected)))
            count += 1
        print(f"| {variant} | {worst_ort:.1e} | {worst_ref:.1e} | {count} |")


if __name__ == "__main__":
    main()
