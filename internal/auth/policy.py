"""Access rules, read from the contract at start-up. Deny by default: a served RPC without a rule
stops the server from starting, and so does a gRPC service that is neither ours nor declared
public below."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from altalune.v1 import access_pb2

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

# Served by grpcio outside the interceptor chain, with no credentials: health checks (load
# balancers, Kubernetes probes) and reflection (grpcurl needs it before it can send a header to
# any RPC; it exposes the schema, which is public anyway). Listed here explicitly so that nothing
# is open by omission: any other service without rules refuses start-up.
PUBLIC_GRPC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
)

# The generated stub types the extension as a plain FieldDescriptor.
ACCESS_OPTION = cast("_ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, access_pb2.Access]", access_pb2.access)
_PERMISSION = re.compile(r"^[a-z][a-z_]*:[a-z][a-z_]*$")


class PolicyError(RuntimeError):
    """The contract's access declarations are missing or inconsistent: the server must not start."""


@dataclass(frozen=True, slots=True)
class AccessRule:
    """What one RPC requires, from its (altalune.v1.access) option."""

    permission: str | None  # None only when `authenticated_only`
    project_field: str | None  # request field holding the project public id; None = global RPC
    authenticated_only: bool = False

    @property
    def project_scoped(self) -> bool:
        return self.project_field is not None


def is_string_field(message: Descriptor, name: str) -> bool:
    """True if `message` has a singular string field `name`: what an option naming a request
    field (access's project_field, the event log's id_field) may point at."""
    field = message.fields_by_name.get(name)
    return field is not None and field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated


def rule_for(method: MethodDescriptor) -> AccessRule:
    """The method's rule, or PolicyError naming the RPC when it has none or a malformed one."""
    name = f"{method.containing_service.full_name}/{method.name}"
    options = method.GetOptions()
    if not options.HasExtension(ACCESS_OPTION):
        raise PolicyError(f"{name} has no (altalune.v1.access) option; every RPC must declare who may call it")
    access: access_pb2.Access = options.Extensions[ACCESS_OPTION]
    if access.authenticated:
        if access.permission or access.project_field:
            raise PolicyError(f"{name}: `authenticated` excludes `permission` and `project_field`")
        return AccessRule(permission=None, project_field=None, authenticated_only=True)
    if not _PERMISSION.fullmatch(access.permission):
        raise PolicyError(f"{name}: permission {access.permission!r} is not a 'resource:action' name")
    project_field = access.project_field or None
    if project_field is not None and not is_string_field(method.input_type, project_field):
        raise PolicyError(f"{name}: project_field {project_field!r} is not a string field of the request")
    return AccessRule(permission=access.permission, project_field=project_field)


def access_rules(services: Sequence[ServiceDescriptor]) -> dict[str, AccessRule]:
    """Rules by route path (/pkg.Service/Method); a permission must not be both global and project-scoped."""
    rules: dict[str, AccessRule] = {}
    scope_of: dict[str, bool] = {}
    for service in services:
        for method in service.methods:
            rule = rule_for(method)
            if rule.permission is not None:
                seen = scope_of.setdefault(rule.permission, rule.project_scoped)
                if seen != rule.project_scoped:
                    raise PolicyError(
                        f"{service.full_name}/{method.name}: permission {rule.permission!r} is used both "
                        "globally and inside projects; a permission has one scope"
                    )
            rules[f"/{service.full_name}/{method.name}"] = rule
    return rules


def check_served_services(served: Iterable[str], ruled: Iterable[str]) -> None:
    """Every service a port serves is either ruled by the contract or declared public above."""
    unruled = sorted(set(served) - set(ruled) - PUBLIC_GRPC_SERVICES)
    if unruled:
        raise PolicyError(f"services without access rules would be served: {', '.join(unruled)}")


def permission_catalog(rules: Iterable[AccessRule]) -> dict[str, str]:
    """permission -> 'global' | 'project', as the contract uses them (the migrations seed the same)."""
    return {r.permission: ("project" if r.project_scoped else "global") for r in rules if r.permission is not None}
