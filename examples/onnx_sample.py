"""Sample from a char-LM exported by `gatedrnn export RUN --onnx model.onnx`, with onnxruntime
and NumPy alone (no gatedrnn, no torch).

    python examples/onnx_sample.py model.onnx "def " 300 0.8
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def sample(path, prime="\n", length=300, temperature=0.8, seed=0):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    vocabulary = json.loads(session.get_modelmeta().custom_metadata_map["gatedrnn.vocabulary"])
    index = {c: i for i, c in enumerate(vocabulary)}
    # Initial states: zeros of the shape the model declares, (layers·directions, 1, hidden).
    states = {i.name: np.zeros((i.shape[0], 1, i.shape[2]), np.float32)
              for i in session.get_inputs() if i.name != "ids"}
    rng = np.random.default_rng(seed)
    ids = np.array([[index[c]] for c in prime], np.int64)          # (T, B=1)
    text = prime
    for _ in range(length):
        logits, *finals = session.run(None, {"ids": ids, **states})
        states = dict(zip(states, finals))                          # h0 ← h_n, c0 ← c_n
        z = logits[-1, 0].astype(np.float64)
        if temperature == 0:
            next_id = int(z.argmax())
        else:
            p = np.exp((z - z.max()) / temperature)
            next_id = int(rng.choice(len(p), p=p / p.sum()))
        text += vocabulary[next_id]
        ids = np.array([[next_id]], np.int64)
    return text


if __name__ == "__main__":
    arguments = sys.argv[1:] + ["\n", "300", "0.8"][len(sys.argv) - 2:]
    print(sample(arguments[0], arguments[1], int(arguments[2]), float(arguments[3])))
