#!/usr/bin/env python3
"""Offline protobuf tooling for Altalune: ``generate``, ``check``, ``lint``, ``breaking``, ``prepare``.

Why this script exists:

* Our protos import ``buf/validate/validate.proto``. buf would fetch it from the BSR
  (``deps: [buf.build/bufbuild/protovalidate]``), which needs the network, and the file must not be
  committed. The installed protovalidate wheel embeds validate.proto's FileDescriptorProto, so
  ``prepare`` renders that descriptor back to ``.proto`` source under the gitignored
  ``build/codegen/protovalidate/`` (a second module in buf.yaml). A round-trip compile with
  grpcio-tools' protoc proves the rendered file is descriptor-identical to the embedded one; any
  mismatch stops the run instead of producing subtly different code.
* Every buf plugin (protoc inside grpcio-tools, protoc-gen-connectrpc, the grpc_python shim) must
  come from the environment of the interpreter running this script, activated or not, so PATH is
  prefixed with this interpreter's script directory before buf runs.
* ``generate`` writes into a temp dir first and then syncs into ``gen/``, so a failed run never
  leaves ``gen/`` half-deleted, and ``check`` reuses the same path to detect a stale ``gen/``.
"""

from __future__ import annotations

import argparse
import difflib
import filecmp
import importlib.metadata
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_encoding,
    text_format,
    unknown_fields,
)
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parents[2]
GEN_DIR = ROOT / "gen"
BUILD_DIR = ROOT / "build" / "codegen"
# Must match the second module path in buf.yaml.
VALIDATE_MODULE = BUILD_DIR / "protovalidate"
VALIDATE_PROTO = "buf/validate/validate.proto"
# Files under gen/ that are not generated output (bytecode caches from importing gen/).
IGNORED_PARTS = frozenset({"__pycache__"})


class CodegenError(Exception):
    """A failure with a message meant for the person running make."""


# --------------------------------------------------------------------------------------------------
# validate.proto: installed descriptor -> .proto source
# --------------------------------------------------------------------------------------------------

_SCALAR_TYPES = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}
_MAX_FIELD_NUMBER = 536_870_911
_MAX_ENUM_NUMBER = 2_147_483_647


def installed_validate_descriptor() -> tuple[descriptor_pb2.FileDescriptorProto, str]:
    """Return validate.proto's FileDescriptorProto as embedded in the installed protovalidate wheel.

    Uses only public names: ``protovalidate.ViolationsPb`` (a protobuf-py message class defined in
    validate.proto) and protobuf-py's ``desc().file.proto``.
    """
    import protovalidate

    desc_file = protovalidate.ViolationsPb.desc().file
    if desc_file.name != VALIDATE_PROTO:
        raise CodegenError(f"protovalidate's descriptor is named {desc_file.name!r}, want {VALIDATE_PROTO!r}")
    proto = descriptor_pb2.FileDescriptorProto.FromString(desc_file.proto.to_binary())
    return proto, importlib.metadata.version("protovalidate")


class ProtoRenderer:
    """Render a FileDescriptorProto (proto2/proto3, no editions, no groups) as .proto source.

    Options, custom ones included, are decoded against a private descriptor pool holding the file
    and its dependencies, so they print by name. Unsupported constructs raise CodegenError; the
    round-trip check in ``prepare_validate_module`` catches anything rendered imprecisely.
    """

    def __init__(
        self,
        file: descriptor_pb2.FileDescriptorProto,
        deps: Sequence[descriptor_pb2.FileDescriptorProto],
    ) -> None:
        if file.syntax not in ("", "proto2", "proto3"):
            raise CodegenError(f"{file.name}: syntax {file.syntax!r} is not supported by the renderer")
        self.file = file
        self.proto3 = file.syntax == "proto3"
        self.pool = descriptor_pool.DescriptorPool()
        files = [*deps, file]
        if all(f.name != descriptor_pb2.DESCRIPTOR.name for f in files):
            # Option messages (FileOptions, FieldOptions, ...) are decoded against this pool.
            files.insert(0, _wkt_descriptor(descriptor_pb2.DESCRIPTOR.name))
        for dep in files:
            self.pool.Add(dep)
        self.lines: list[str] = []

    # -- options ------------------------------------------------------------------------------

    def _decode_options(self, options: Message, skip: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """Decode an *Options message into (name, literal) pairs, extensions as ``(full.name)``."""
        if not options.ByteSize():
            return []
        cls = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(options.DESCRIPTOR.full_name))
        decoded = cls.FromString(options.SerializeToString())
        if len(unknown_fields.UnknownFieldSet(decoded)):
            raise CodegenError(f"{self.file.name}: option with an unknown field in {options.DESCRIPTOR.name}")
        pairs: list[tuple[str, str]] = []
        for field, value in decoded.ListFields():
            if field.name in skip and not field.is_extension:
                continue
            name = f"({field.full_name})" if field.is_extension else field.name
            values = value if field.is_repeated else [value]
            pairs.extend((name, self._literal(field, item)) for item in values)
        return pairs

    def _literal(self, field: FieldDescriptor, value: Any) -> str:
        """Format one option value in .proto syntax (aggregates use text format)."""
        if field.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            body = text_format.MessageToString(value, descriptor_pool=self.pool, indent=2).rstrip("\n")
            return "{\n" + body + "\n}" if body else "{}"
        if field.type == FieldDescriptor.TYPE_ENUM:
            enum_value = field.enum_type.values_by_number.get(value) if field.enum_type else None
            return enum_value.name if enum_value is not None else str(value)
        if field.type == FieldDescriptor.TYPE_BOOL:
            return "true" if value else "false"
        if field.type == FieldDescriptor.TYPE_STRING:
            return '"' + text_encoding.CEscape(value.encode("utf-8"), as_utf8=False) + '"'
        if field.type == FieldDescriptor.TYPE_BYTES:
            return '"' + text_encoding.CEscape(value, as_utf8=False) + '"'
        if isinstance(value, float):
            if math.isnan(value):
                return "nan"
            if math.isinf(value):
                return "inf" if value > 0 else "-inf"
            return repr(value)
        return str(value)

    def _emit(self, depth: int, text: str) -> None:
        """Append possibly multi-line text, indented by depth levels."""
        pad = "  " * depth
        self.lines.extend(pad + line if line else "" for line in text.split("\n"))

    def _option_statements(self, depth: int, options: Message, skip: frozenset[str] = frozenset()) -> None:
        for name, literal in self._decode_options(options, skip):
            self._emit(depth, f"option {name} = {literal};")

    def _bracket_options(self, pairs: list[tuple[str, str]]) -> str:
        if not pairs:
            return ""
        if all("\n" not in literal for _, literal in pairs) and len(pairs) == 1:
            return f" [{pairs[0][0]} = {pairs[0][1]}]"
        inner = ",\n".join(f"  {name} = " + literal.replace("\n", "\n  ") for name, literal in pairs)
        return " [\n" + inner + "\n]"

    # -- declarations -------------------------------------------------------------------------

    def render(self) -> str:
        """Return the whole file as .proto source."""
        f = self.file
        self.lines.append(f'syntax = "{f.syntax or "proto2"}";')
        self.lines.append("")
        if f.package:
            self.lines += [f"package {f.package};", ""]
        for i, dep in enumerate(f.dependency):
            kind = "public " if i in f.public_dependency else "weak " if i in f.weak_dependency else ""
            self.lines.append(f'import {kind}"{dep}";')
        if f.dependency:
            self.lines.append("")
        self._option_statements(0, f.options)
        if f.options.ByteSize():
            self.lines.append("")
        for ext_group in _group_extensions(f.extension):
            self._extend_block(0, ext_group)
        for msg in f.message_type:
            self._message(0, msg, f".{f.package}" if f.package else "")
        for enum in f.enum_type:
            self._enum(0, enum)
        for service in f.service:
            self._service(service)
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return "\n".join(self.lines) + "\n"

    def _field_type(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        if field.type == FieldDescriptor.TYPE_GROUP:
            raise CodegenError(f"{self.file.name}: group field {field.name} is not supported by the renderer")
        if field.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_ENUM):
            return field.type_name
        return _SCALAR_TYPES[field.type]

    def _field(
        self,
        depth: int,
        field: descriptor_pb2.FieldDescriptorProto,
        maps: dict[str, descriptor_pb2.DescriptorProto],
        in_oneof: bool,
    ) -> None:
        map_entry = maps.get(field.type_name) if field.label == FieldDescriptor.LABEL_REPEATED else None
        if map_entry is not None:
            key, value = map_entry.field
            decl = f"map<{self._field_type(key)}, {self._field_type(value)}>"
        else:
            label = ""
            if field.label == FieldDescriptor.LABEL_REPEATED:
                label = "repeated "
            elif field.label == FieldDescriptor.LABEL_REQUIRED:
                label = "required "
            elif not in_oneof and (not self.proto3 or field.proto3_optional):
                label = "optional "
            decl = label + self._field_type(field)
        pairs: list[tuple[str, str]] = []
        if field.HasField("default_value"):
            pairs.append(("default", self._default_literal(field)))
        if field.HasField("json_name") and field.json_name != _default_json_name(field.name):
            pairs.append(
                (
                    "json_name",
                    '"' + text_encoding.CEscape(field.json_name.encode("utf-8"), as_utf8=False) + '"',
                )
            )
        pairs += self._decode_options(field.options)
        self._emit(depth, f"{decl} {field.name} = {field.number}{self._bracket_options(pairs)};")

    def _default_literal(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        if field.type == FieldDescriptor.TYPE_STRING:
            return '"' + text_encoding.CEscape(field.default_value.encode("utf-8"), as_utf8=False) + '"'
        if field.type == FieldDescriptor.TYPE_BYTES:
            return '"' + field.default_value + '"'  # already C-escaped in descriptors
        return field.default_value

    def _extend_block(self, depth: int, extensions: list[descriptor_pb2.FieldDescriptorProto]) -> None:
        self._emit(depth, f"extend {extensions[0].extendee} {{")
        for ext in extensions:
            self._field(depth + 1, ext, {}, in_oneof=False)
        self._emit(depth, "}")
        self.lines.append("")

    def _message(self, depth: int, msg: descriptor_pb2.DescriptorProto, parent: str) -> None:
        """Render msg; parent is the enclosing scope's full name with a leading dot."""
        self._emit(depth, f"message {msg.name} {{")
        inner = depth + 1
        self._option_statements(inner, msg.options, skip=frozenset({"map_entry"}))
        scope = f"{parent}.{msg.name}"
        maps = {f"{scope}.{n.name}": n for n in msg.nested_type if n.options.map_entry}
        # proto3 `optional` fields sit in synthetic one-field oneofs that must not be printed.
        synthetic = {f.oneof_index for f in msg.field if f.proto3_optional}
        open_oneof: int | None = None
        for field in msg.field:
            in_real_oneof = field.HasField("oneof_index") and field.oneof_index not in synthetic
            index = field.oneof_index if in_real_oneof else None
            if index != open_oneof:
                if open_oneof is not None:
                    self._emit(inner, "}")
                if index is not None:
                    self._emit(inner, f"oneof {msg.oneof_decl[index].name} {{")
                    self._option_statements(inner + 1, msg.oneof_decl[index].options)
                open_oneof = index
            self._field(inner + (open_oneof is not None), field, maps, in_oneof=open_oneof is not None)
        if open_oneof is not None:
            self._emit(inner, "}")
        for rng in msg.extension_range:
            end = "max" if rng.end - 1 == _MAX_FIELD_NUMBER else str(rng.end - 1)
            span = str(rng.start) if rng.end - 1 == rng.start else f"{rng.start} to {end}"
            self._emit(inner, f"extensions {span}{self._bracket_options(self._decode_options(rng.options))};")
        for reserved in msg.reserved_range:  # message reserved ranges are end-exclusive
            last = reserved.end - 1
            last_text = "max" if last == _MAX_FIELD_NUMBER else str(last)
            span = str(reserved.start) if last == reserved.start else f"{reserved.start} to {last_text}"
            self._emit(inner, f"reserved {span};")
        for name in msg.reserved_name:
            self._emit(inner, f'reserved "{name}";')
        for ext_group in _group_extensions(msg.extension):
            self._extend_block(inner, ext_group)
        for nested in msg.nested_type:
            if not nested.options.map_entry:
                self._message(inner, nested, scope)
        for enum in msg.enum_type:
            self._enum(inner, enum)
        self._emit(depth, "}")
        if depth == 0:
            self.lines.append("")

    def _enum(self, depth: int, enum: descriptor_pb2.EnumDescriptorProto) -> None:
        self._emit(depth, f"enum {enum.name} {{")
        self._option_statements(depth + 1, enum.options)
        for value in enum.value:
            opts = self._bracket_options(self._decode_options(value.options))
            self._emit(depth + 1, f"{value.name} = {value.number}{opts};")
        for reserved in enum.reserved_range:  # enum reserved ranges are inclusive
            end = "max" if reserved.end == _MAX_ENUM_NUMBER else str(reserved.end)
            span = str(reserved.start) if reserved.end == reserved.start else f"{reserved.start} to {end}"
            self._emit(depth + 1, f"reserved {span};")
        for name in enum.reserved_name:
            self._emit(depth + 1, f'reserved "{name}";')
        self._emit(depth, "}")
        if depth == 0:
            self.lines.append("")

    def _service(self, service: descriptor_pb2.ServiceDescriptorProto) -> None:
        self._emit(0, f"service {service.name} {{")
        self._option_statements(1, service.options)
        for method in service.method:
            req = ("stream " if method.client_streaming else "") + method.input_type
            res = ("stream " if method.server_streaming else "") + method.output_type
            head = f"rpc {method.name}({req}) returns ({res})"
            pairs = self._decode_options(method.options)
            if not pairs:
                self._emit(1, head + ";")
                continue
            self._emit(1, head + " {")
            for name, literal in pairs:
                self._emit(2, f"option {name} = {literal};")
            self._emit(1, "}")
        self._emit(0, "}")
        self.lines.append("")


def _group_extensions(
    extensions: Sequence[descriptor_pb2.FieldDescriptorProto],
) -> Iterator[list[descriptor_pb2.FieldDescriptorProto]]:
    """Group consecutive extensions of the same extendee, keeping declaration order."""
    group: list[descriptor_pb2.FieldDescriptorProto] = []
    for ext in extensions:
        if group and group[0].extendee != ext.extendee:
            yield group
            group = []
        group.append(ext)
    if group:
        yield group


def _default_json_name(name: str) -> str:
    """protoc's default json_name: drop underscores, upper-case the letter after each."""
    out: list[str] = []
    upper_next = False
    for ch in name:
        if ch == "_":
            upper_next = True
        elif upper_next:
            out.append(ch.upper())
            upper_next = False
        else:
            out.append(ch)
    return "".join(out)


def _wkt_descriptor(name: str) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
    return proto


def render_validate_proto() -> tuple[str, descriptor_pb2.FileDescriptorProto]:
    """Render the installed validate.proto descriptor as source, with a provenance header."""
    proto, version = installed_validate_descriptor()
    from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2  # noqa: F401  (register WKTs)

    deps = [_wkt_descriptor(dep) for dep in proto.dependency]
    body = ProtoRenderer(proto, deps).render()
    header = (
        f"// {VALIDATE_PROTO} rendered from the FileDescriptorProto embedded in protovalidate {version}\n"
        "// (Copyright Buf Technologies, Inc., Apache-2.0) by tools/codegen/codegen.py.\n"
        "// Generated at codegen time, never committed, do not edit. Comments of the original are not\n"
        "// part of the descriptor and so are absent.\n\n"
    )
    return header + body, proto


def _normalized(proto: descriptor_pb2.FileDescriptorProto) -> bytes:
    """Serialize for comparison: no source info (the embedded descriptor has none)."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(proto)
    copy.ClearField("source_code_info")
    return copy.SerializeToString(deterministic=True)


def _compile_single(proto_root: Path, name: str, env: dict[str, str]) -> descriptor_pb2.FileDescriptorProto:
    """Compile one file with grpcio-tools' protoc (it adds its bundled WKT include path)."""
    out = proto_root / "roundtrip.binpb"
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}", f"--descriptor_set_out={out}", name],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise CodegenError(f"rendered {name} does not compile:\n{proc.stderr}")
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    out.unlink()
    return compiled.file[-1]


def prepare_validate_module(env: dict[str, str]) -> Path:
    """Write build/codegen/protovalidate/buf/validate/validate.proto, verified by a round trip.

    The file is rewritten only when its content changes, so repeated runs are no-ops.
    """
    text, original = render_validate_proto()
    with tempfile.TemporaryDirectory(prefix="altalune-validate-") as tmp:
        candidate = Path(tmp) / VALIDATE_PROTO
        candidate.parent.mkdir(parents=True)
        candidate.write_text(text, "utf-8")
        compiled = _compile_single(Path(tmp), VALIDATE_PROTO, env)
    if _normalized(compiled) != _normalized(original):
        raise CodegenError(
            f"rendering {VALIDATE_PROTO} from the installed protovalidate is not faithful (the compiled "
            "descriptor differs from the embedded one); the renderer in tools/codegen/codegen.py needs "
            "to learn a new construct"
        )
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    gitignore = BUILD_DIR / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# Everything here is regenerated by tools/codegen/codegen.py.\n*\n", "utf-8")
    target = VALIDATE_MODULE / VALIDATE_PROTO
    if not target.exists() or target.read_text("utf-8") != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # atomic for concurrent runs
        partial.write_text(text, "utf-8")
        partial.replace(target)
    return target


# --------------------------------------------------------------------------------------------------
# buf
# --------------------------------------------------------------------------------------------------


def tool_env() -> dict[str, str]:
    """Environment whose PATH finds this interpreter's python, buf and plugins first."""
    env = dict(os.environ)
    dirs = dict.fromkeys([str(Path(sys.executable).parent), sysconfig.get_path("scripts")])
    env["PATH"] = os.pathsep.join([*dirs, env.get("PATH", "")])
    return env


def run_buf(args: Sequence[str], env: dict[str, str], cwd: Path = ROOT, *, filter_stderr: bool = False) -> int:
    """Run buf from this environment; its output goes to the terminal (stderr through
    ``_keep_stderr_line`` when filter_stderr is set, which holds it back until buf exits)."""
    buf = shutil.which("buf", path=env["PATH"])
    if buf is None:
        raise CodegenError("buf not found; install the dev extras (buf-bin) into this environment")
    if not filter_stderr:
        return subprocess.run([buf, *args], cwd=cwd, env=env, check=False).returncode
    proc = subprocess.run([buf, *args], cwd=cwd, env=env, check=False, stderr=subprocess.PIPE, text=True)
    sys.stderr.writelines(line for line in proc.stderr.splitlines(keepends=True) if _keep_stderr_line(line))
    return proc.returncode


_UNUSED_IMPORT = re.compile(r"^\S+\.proto: warning: Import (\S+\.proto) is unused\.$")


def _keep_stderr_line(line: str) -> bool:
    """False for protoc's false "Import X is unused" warning about a file of predefined rules.

    Under ``buf generate`` the protoc builtins (python, pyi) get already-compiled descriptors, and
    protoc then counts an import as used only through types and top-level option extensions: a
    predefined rule such as ``(buf.validate.field).string.(altalune.v1.public_id)`` sits inside
    buf.validate's own option, so protoc warns although the import is needed (compiling from source,
    protoc does not warn). ``buf lint`` (IMPORT_USED, in STANDARD) sees such uses and still reports a
    really unused import, so only imports of our own predefined-rule files are dropped here.
    """
    match = _UNUSED_IMPORT.match(line.rstrip("\n"))
    if match is None:
        return True
    imported = ROOT / "proto" / match.group(1)
    return not (imported.is_file() and "(buf.validate.predefined)" in imported.read_text("utf-8"))


def generate_into(base: Path, env: dict[str, str]) -> Path:
    """Run ``buf generate`` with outputs under base; return base/gen."""
    prepare_validate_module(env)
    rc = run_buf(["generate", "--template", "buf.gen.yaml", "--output", str(base)], env, filter_stderr=True)
    if rc != 0:
        raise CodegenError(f"buf generate failed (exit {rc})")
    return base / "gen"


def _tree(root: Path) -> dict[str, Path]:
    """Generated files under root by relative path, ignoring bytecode caches."""
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): p
        for p in root.rglob("*")
        if p.is_file() and not IGNORED_PARTS.intersection(p.relative_to(root).parts)
    }


def _prune_empty_dirs(root: Path) -> None:
    """Remove directories left with nothing but bytecode caches."""
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if d.name in IGNORED_PARTS or not d.exists():
            continue
        if all(child.name in IGNORED_PARTS for child in d.iterdir()):
            shutil.rmtree(d)


def cmd_generate(env: dict[str, str]) -> int:
    """Regenerate gen/ and touch only the files whose content changed."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="altalune-gen-") as tmp:
        fresh = _tree(generate_into(Path(tmp), env))
        current = _tree(GEN_DIR)
        removed = sorted(set(current) - set(fresh))
        for rel in removed:
            current[rel].unlink()
        written = 0
        for rel, src in sorted(fresh.items()):
            dst = GEN_DIR / rel
            if rel in current and filecmp.cmp(src, dst, shallow=False):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written += 1
    _prune_empty_dirs(GEN_DIR)
    print(f"gen/: {len(fresh)} files, {written} written, {len(removed)} removed ({time.monotonic() - started:.1f}s)")
    return _error_table("write")


def _error_table(command: str) -> int:
    """README's table of the services' errors, from the error classes (a fresh interpreter: they import gen/)."""
    return subprocess.run([sys.executable, str(ROOT / "tools" / "codegen" / "error_table.py"), command]).returncode


def cmd_check(env: dict[str, str]) -> int:
    """Fail (exit 1) with a diff summary when gen/ differs from what generate would write."""
    with tempfile.TemporaryDirectory(prefix="altalune-gen-check-") as tmp:
        fresh = _tree(generate_into(Path(tmp), env))
        current = _tree(GEN_DIR)
        missing = sorted(set(fresh) - set(current))
        extra = sorted(set(current) - set(fresh))
        common = set(fresh) & set(current)
        changed = sorted(rel for rel in common if not filecmp.cmp(fresh[rel], current[rel], shallow=False))
        if not (missing or extra or changed):
            print(f"gen/ is up to date ({len(fresh)} files)")
            return _error_table("check")
        print("gen/ is stale: run `make generate` and commit the result.", file=sys.stderr)
        for label, items in (("missing", missing), ("not generated", extra), ("changed", changed)):
            for rel in items:
                print(f"  {label}: gen/{rel}", file=sys.stderr)
        budget = 200
        for rel in changed:
            diff = difflib.unified_diff(
                current[rel].read_text("utf-8", errors="replace").splitlines(),
                fresh[rel].read_text("utf-8", errors="replace").splitlines(),
                f"gen/{rel} (committed)",
                f"gen/{rel} (generated)",
                lineterm="",
            )
            for line in diff:
                if len(line) > 160:
                    line = line[:160] + f"... (+{len(line) - 160} chars)"
                if budget == 0:
                    print("  ... (diff truncated)", file=sys.stderr)
                    return 1
                print(line, file=sys.stderr)
                budget -= 1
    return 1


def cmd_lint(env: dict[str, str]) -> int:
    """buf lint (rules in buf.yaml) over the workspace, validate.proto materialized first."""
    prepare_validate_module(env)
    rc = run_buf(["lint"], env)
    if rc == 0:
        print("buf lint: OK")
    return rc


def _git(args: Sequence[str], git_dir: Path | None) -> subprocess.CompletedProcess[bytes]:
    prefix = ["git", f"--git-dir={git_dir}"] if git_dir else ["git", "-C", str(ROOT)]
    return subprocess.run([*prefix, *args], capture_output=True, check=False)


def _parse_against(against: str) -> tuple[Path | None, str]:
    """Split buf's ``<repo>.git#branch=X`` (or tag=/ref=/commit=) syntax into (git dir, rev)."""
    if "#" not in against:
        return None, against
    repo, _, query = against.partition("#")
    rev = ""
    for part in query.split(","):
        key, _, value = part.partition("=")
        if key in ("branch", "tag", "ref", "commit"):
            rev = value
    if not rev:
        raise CodegenError(f"--against {against!r}: expected #branch=, #tag=, #ref= or #commit=")
    return (Path(repo).resolve() if repo else None), rev


def _export_against(against: str, dest: Path) -> bool:
    """Copy the protos of a dir or git rev into dest/proto; False when there is nothing to compare."""
    as_dir = Path(against)
    if "#" not in against and as_dir.is_dir():
        source = as_dir / "proto" if (as_dir / "proto").is_dir() else as_dir
        shutil.copytree(source, dest / "proto", ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
        print(f"buf breaking: against directory {source}")
        return True
    git_dir, rev = _parse_against(against)
    commit = ""
    for candidate in (rev, f"origin/{rev}"):
        proc = _git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], git_dir)
        if proc.returncode == 0:
            commit = proc.stdout.decode().strip()
            print(f"buf breaking: against {candidate} ({commit[:12]})")
            break
    if not commit:
        print(f"buf breaking: git ref {rev!r} does not exist yet; nothing to compare against, skipping.")
        return False
    if not _git(["ls-tree", "-d", commit, "proto"], git_dir).stdout.strip():
        print(f"buf breaking: {rev} has no proto/ directory yet; nothing to compare against, skipping.")
        return False
    archive = _git(["archive", "--format=tar", commit, "proto"], git_dir)
    if archive.returncode != 0:
        raise CodegenError(f"git archive {commit} proto failed: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return True


def cmd_breaking(env: dict[str, str], against: str) -> int:
    """buf breaking against the protos of a git ref or directory, offline.

    buf's own ``.git#branch=...`` input would read buf.yaml at that ref, whose validate.proto module
    is gitignored and absent. So the old protos are exported next to the current buf.yaml and the
    current rendered validate.proto, and buf compares against that directory.
    """
    prepare_validate_module(env)
    with tempfile.TemporaryDirectory(prefix="altalune-breaking-") as tmp:
        base = Path(tmp)
        if not _export_against(against, base):
            return 0
        shutil.copyfile(ROOT / "buf.yaml", base / "buf.yaml")
        shutil.copytree(VALIDATE_MODULE, base / VALIDATE_MODULE.relative_to(ROOT))
        rc = run_buf(["breaking", "--against", str(base)], env)
    if rc == 0:
        print("buf breaking: OK")
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the subcommand and run it; CodegenError becomes a one-line message and exit 2."""
    summary = __doc__.splitlines()[0] if __doc__ else None
    parser = argparse.ArgumentParser(prog="codegen.py", description=summary)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="regenerate gen/ (buf generate, local plugins only)")
    sub.add_parser("check", help="exit 1 if gen/ is stale")
    sub.add_parser("lint", help="buf lint")
    breaking = sub.add_parser("breaking", help="buf breaking against a git ref or a directory")
    breaking.add_argument("--against", required=True, help="git ref (main, .git#branch=main) or directory")
    sub.add_parser("prepare", help="only materialize build/codegen/protovalidate (for running buf by hand)")
    args = parser.parse_args(argv)
    env = tool_env()
    try:
        if args.command == "generate":
            return cmd_generate(env)
        if args.command == "check":
            return cmd_check(env)
        if args.command == "lint":
            return cmd_lint(env)
        if args.command == "breaking":
            return cmd_breaking(env, args.against)
        print(prepare_validate_module(env).relative_to(ROOT))
        return 0
    except CodegenError as exc:
        print(f"codegen: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
