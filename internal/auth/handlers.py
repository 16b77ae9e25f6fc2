"""Handlers are declarations: each RPC of a generated service protocol is bound to one service
method, with what authorization established for the call (its project, its caller).

    class TeamHandler(ServiceHandler[TeamService], team_connect.TeamService):
        create_team = InProject(TeamService.create_team)

The handler subclasses the protocol connectrpc generates, so the type checker holds every binding
to the contract: a service method taking another request type, or returning another response, is
a type error, and build_routes refuses an RPC left to the protocol's placeholder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar, overload

from connectrpc.request import RequestContext

from internal.auth.principal import Caller, current_caller, current_project
from internal.tenancy import ProjectRef

S = TypeVar("S")
Q = TypeVar("Q")
R = TypeVar("R")
Q_contra = TypeVar("Q_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class ServiceHandler(Generic[S]):
    """Holds the domain service the bindings call."""

    def __init__(self, service: S) -> None:
        self.service = service


class BoundRpc(Protocol[Q_contra, R_co]):
    """What a binding is on a handler instance: the protocol's method shape."""

    def __call__(self, request: Q_contra, ctx: RequestContext[Any, Any]) -> Coroutine[Any, Any, R_co]: ...


class _Binding(Generic[S, Q, R]):
    """A descriptor: on the class it is itself; on a handler, the RPC's method."""

    @overload
    def __get__(self, handler: None, owner: type[Any]) -> _Binding[S, Q, R]: ...
    @overload
    def __get__(self, handler: ServiceHandler[S], owner: type[Any]) -> BoundRpc[Q, R]: ...
    def __get__(self, handler: ServiceHandler[S] | None, owner: type[Any]) -> _Binding[S, Q, R] | BoundRpc[Q, R]:
        if handler is None:
            return self
        service = handler.service

        async def rpc(request: Q, ctx: RequestContext[Any, Any]) -> R:
            return await self.call(service, request)

        return rpc

    async def call(self, service: S, request: Q) -> R:
        raise NotImplementedError


class Forward(_Binding[S, Q, R]):
    """The service method takes the request alone."""

    def __init__(self, method: Callable[[S, Q], Awaitable[R]]) -> None:
        self._method = method

    async def call(self, service: S, request: Q) -> R:
        return await self._method(service, request)


class InProject(_Binding[S, Q, R]):
    """The service method takes the call's project (resolved by authorization), then the request."""

    def __init__(self, method: Callable[[S, ProjectRef, Q], Awaitable[R]]) -> None:
        self._method = method

    async def call(self, service: S, request: Q) -> R:
        return await self._method(service, current_project(), request)


class AsCaller(_Binding[S, Q, R]):
    """The service method takes the request, then who calls (the creator becomes the owner, ...)."""

    def __init__(self, method: Callable[[S, Q, Caller], Awaitable[R]]) -> None:
        self._method = method

    async def call(self, service: S, request: Q) -> R:
        return await self._method(service, request, current_caller())


class InProjectAsCaller(_Binding[S, Q, R]):
    """The service method takes the call's project, the request, then who calls."""

    def __init__(self, method: Callable[[S, ProjectRef, Q, Caller], Awaitable[R]]) -> None:
        self._method = method

    async def call(self, service: S, request: Q) -> R:
        return await self._method(service, current_project(), request, current_caller())
