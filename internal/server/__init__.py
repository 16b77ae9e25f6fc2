"""The two transports (gRPC on grpc.aio, Connect on ASGI) over one set of endpoints and one interceptor chain."""
