#!/usr/bin/env python3
"""protoc plugin ``grpc_python`` for buf, backed by the protoc inside grpcio-tools.

Why: buf runs only protoc's own built-in generators (python, pyi, ...) through ``protoc_builtin``;
grpc_python lives in grpcio-tools' protoc binary and grpcio-tools installs no
``protoc-gen-grpc_python`` executable. This shim answers buf's CodeGeneratorRequest by writing the
request's descriptors to a descriptor set and running ``python -m grpc_tools.protoc
--grpc_python_out`` on it, so the stubs come from exactly the pinned grpcio-tools.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """Run grpcio-tools' protoc on the request's files and wrap its output as a plugin response."""
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL,
    )
    with tempfile.TemporaryDirectory(prefix="protoc-gen-grpc_python-") as tmp:
        descriptor_set = Path(tmp) / "input.binpb"
        descriptor_set.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString(deterministic=True)
        )
        out = Path(tmp) / "out"
        out.mkdir()
        option = f"{request.parameter}:" if request.parameter else ""
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"--descriptor_set_in={descriptor_set}",
                f"--grpc_python_out={option}{out}",
                *request.file_to_generate,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            response.error = proc.stderr.strip() or f"grpc_tools.protoc exited with {proc.returncode}"
            return response
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            response.file.add(name=path.relative_to(out).as_posix(), content=path.read_text("utf-8"))
    return response


def main() -> None:
    """Read a CodeGeneratorRequest on stdin, write the CodeGeneratorResponse on stdout."""
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString(deterministic=True))


if __name__ == "__main__":
    main()
