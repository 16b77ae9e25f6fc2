"""The bare baseline of `make bench`: GetEmployee answered with a constant, on the same stack.

Same protobuf messages, connectrpc under uvicorn on the HTTP port and grpc.aio on the gRPC port, the
same event loop as the service, N processes sharing both ports like the service's workers. No
interceptors, no database: what is left is the cost of the stack itself, which the service's figures
are divided by.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from typing import Any

import grpc
import uvicorn

from altalune.v1 import employee_connect, employee_pb2, employee_pb2_grpc
from internal.server.app import UvicornWithoutSignals
from internal.server.sockets import listen_http

RESPONSE = employee_pb2.GetEmployeeResponse(
    employee=employee_pb2.Employee(
        id="23456789abcdef",
        project_id="23456789abcdeg",
        name="Ada",
        email="ada@example.com",
        role="Engineer",
        department="R&D",
        status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
    )
)


class EchoConnect(employee_connect.EmployeeService):
    async def get_employee(self, request: Any, ctx: Any) -> employee_pb2.GetEmployeeResponse:
        return RESPONSE


class EchoGrpc(employee_pb2_grpc.EmployeeServiceServicer):  # type: ignore[misc]
    async def GetEmployee(self, request: Any, context: Any) -> employee_pb2.GetEmployeeResponse:
        return RESPONSE


async def serve(http_sock: socket.socket, grpc_port: int) -> None:
    server = grpc.aio.server(options=(("grpc.so_reuseport", 1),))
    employee_pb2_grpc.add_EmployeeServiceServicer_to_server(EchoGrpc(), server)
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    app = employee_connect.EmployeeServiceASGIApplication(EchoConnect())  # type: ignore[arg-type]
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False)
    http = UvicornWithoutSignals(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(http.serve(sockets=[http_sock]))
    await stop.wait()
    http.should_exit = True
    await task
    await server.stop(0)


def _run(http_sock: socket.socket, grpc_port: int, loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(http_sock, grpc_port))
    else:
        asyncio.run(serve(http_sock, grpc_port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    http_sock = listen_http("127.0.0.1", args.http_port)
    children: list[int] = []
    for _ in range(args.processes - 1):
        pid = os.fork()
        if pid == 0:
            _run(http_sock, args.grpc_port, args.loop)
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    _run(http_sock, args.grpc_port, args.loop)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)
    sys.exit(0)


if __name__ == "__main__":
    main()
