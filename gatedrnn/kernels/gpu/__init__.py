"""Triton kernels of the "triton" backend (gatedrnn/kernels/triton.py launches them).

common.py   activations and the two tile products every kernel shares
forward.py  one forward step of one tile, as a per-step launch or a whole-sequence loop
backward.py one backward step of one tile, likewise
"""
