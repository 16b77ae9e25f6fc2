from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor

class Access(_message.Message):
    __slots__ = ("permission", "project_field", "authenticated")
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    permission: str
    project_field: str
    authenticated: bool
    def __init__(self, permission: _Optional[str] = ..., project_field: _Optional[str] = ..., authenticated: _Optional[bool] = ...) -> None: ...
