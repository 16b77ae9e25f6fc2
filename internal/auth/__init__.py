"""Authentication and authorization: one mechanism for every RPC on both ports.

Rules are declared in the contract (altalune.v1.access method options, read by policy.py);
the interceptors in interceptors.py enforce them inside the one chain both transports share.
"""
