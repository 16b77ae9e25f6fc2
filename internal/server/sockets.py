"""Binding the two ports: exclusively for one process, shared for a supervisor's workers."""

from __future__ import annotations

import socket


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen_http(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound exclusively (a port in use fails start-up)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it a response written in two parts (headers,
    # body) waits ~40 ms for the client's delayed ACK (Nagle).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind the HTTP port {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def reserve_grpc_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Check the gRPC port is free (resolving port 0), then hold it for this supervisor's workers.

    The reservation is bound with SO_REUSEPORT but never listens: workers' listeners join it and
    receive every connection; anyone else's bind without SO_REUSEPORT fails.
    """
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
        probe.listen(1)  # a listener on the port (ours or not) makes this fail, as for one process
        port = probe.getsockname()[1]
    except OSError as exc:
        raise OSError(f"cannot bind the gRPC port {host}:{port}: {exc.strerror}") from exc
    finally:
        probe.close()
    reservation = socket.socket(_family(host), socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind((host, port))
    return reservation, port
