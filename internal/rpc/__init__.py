"""The call layer both transports share: the endpoint table and the one interceptor chain.

It knows RPCs, not sockets: internal/server adapts HTTP and gRPC onto it, internal/auth adds its
two links to the chain, and the container builds it from the service table.
"""
