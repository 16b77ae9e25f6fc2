"""The bindings of internal/auth/handlers.py hand the service what authorization set for the call."""

from __future__ import annotations

from typing import Any

import pytest

from internal.auth.handlers import AsCaller, Forward, InProject, InProjectAsCaller, ServiceHandler
from internal.auth.principal import Caller, NoCaller, Principal, set_caller
from internal.tenancy import ProjectRef

PROJECT = ProjectRef("23456789abcdef", 7)
CALLER = Caller(Principal.user(3, "3456789abcdefg"), frozenset({"x:read"}), project=PROJECT)
CTX: Any = object()  # the bindings never read the context


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    async def plain(self, request: str) -> str:
        self.calls.append((request,))
        return "plain"

    async def scoped(self, project: ProjectRef, request: str) -> str:
        self.calls.append((project, request))
        return "scoped"

    async def as_caller(self, request: str, caller: Caller) -> str:
        self.calls.append((request, caller))
        return "as caller"

    async def scoped_as_caller(self, project: ProjectRef, request: str, caller: Caller) -> str:
        self.calls.append((project, request, caller))
        return "scoped as caller"


class RecorderHandler(ServiceHandler[Recorder]):
    plain = Forward(Recorder.plain)
    scoped = InProject(Recorder.scoped)
    as_caller = AsCaller(Recorder.as_caller)
    scoped_as_caller = InProjectAsCaller(Recorder.scoped_as_caller)


async def test_each_binding_passes_what_authorization_set() -> None:
    service = Recorder()
    handler = RecorderHandler(service)
    set_caller(CALLER)
    try:
        answers = [
            await handler.plain("a", CTX),
            await handler.scoped("b", CTX),
            await handler.as_caller("c", CTX),
            await handler.scoped_as_caller("d", CTX),
        ]
    finally:
        set_caller(None)
    assert answers == ["plain", "scoped", "as caller", "scoped as caller"]
    assert service.calls == [("a",), (PROJECT, "b"), ("c", CALLER), (PROJECT, "d", CALLER)]


async def test_a_binding_that_needs_the_caller_refuses_to_run_without_one() -> None:
    handler = RecorderHandler(Recorder())
    with pytest.raises(NoCaller):
        await handler.scoped("b", CTX)
    assert await handler.plain("a", CTX) == "plain"


def test_on_the_class_a_binding_is_the_descriptor_itself() -> None:
    assert isinstance(RecorderHandler.plain, Forward)
    assert isinstance(vars(RecorderHandler)["scoped"], InProject)
