import datetime

from altalune.v1 import access_pb2 as _access_pb2
from altalune.v1 import common_pb2 as _common_pb2
from altalune.v1 import event_pb2 as _event_pb2
from altalune.v1 import rules_pb2 as _rules_pb2
from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmployeeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMPLOYEE_STATUS_UNSPECIFIED: _ClassVar[EmployeeStatus]
    EMPLOYEE_STATUS_ACTIVE: _ClassVar[EmployeeStatus]
    EMPLOYEE_STATUS_INACTIVE: _ClassVar[EmployeeStatus]
EMPLOYEE_STATUS_UNSPECIFIED: EmployeeStatus
EMPLOYEE_STATUS_ACTIVE: EmployeeStatus
EMPLOYEE_STATUS_INACTIVE: EmployeeStatus

class Employee(_message.Message):
    __slots__ = ("id", "project_id", "name", "email", "role", "department", "status", "etag", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    project_id: str
    name: str
    email: str
    role: str
    department: str
    status: EmployeeStatus
    etag: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., project_id: _Optional[str] = ..., name: _Optional[str] = ..., email: _Optional[str] = ..., role: _Optional[str] = ..., department: _Optional[str] = ..., status: _Optional[_Union[EmployeeStatus, str]] = ..., etag: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateEmployeeRequest(_message.Message):
    __slots__ = ("project_id", "name", "email", "role", "department", "status", "request_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    email: str
    role: str
    department: str
    status: EmployeeStatus
    request_id: str
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ..., email: _Optional[str] = ..., role: _Optional[str] = ..., department: _Optional[str] = ..., status: _Optional[_Union[EmployeeStatus, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateEmployeeResponse(_message.Message):
    __slots__ = ("employee",)
    EMPLOYEE_FIELD_NUMBER: _ClassVar[int]
    employee: Employee
    def __init__(self, employee: _Optional[_Union[Employee, _Mapping]] = ...) -> None: ...

class GetEmployeeRequest(_message.Message):
    __slots__ = ("project_id", "id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetEmployeeResponse(_message.Message):
    __slots__ = ("employee",)
    EMPLOYEE_FIELD_NUMBER: _ClassVar[int]
    employee: Employee
    def __init__(self, employee: _Optional[_Union[Employee, _Mapping]] = ...) -> None: ...

class UpdateEmployeeRequest(_message.Message):
    __slots__ = ("project_id", "id", "name", "email", "role", "department", "status", "update_mask", "request_id", "etag")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    name: str
    email: str
    role: str
    department: str
    status: EmployeeStatus
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    etag: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., email: _Optional[str] = ..., role: _Optional[str] = ..., department: _Optional[str] = ..., status: _Optional[_Union[EmployeeStatus, str]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class UpdateEmployeeResponse(_message.Message):
    __slots__ = ("employee",)
    EMPLOYEE_FIELD_NUMBER: _ClassVar[int]
    employee: Employee
    def __init__(self, employee: _Optional[_Union[Employee, _Mapping]] = ...) -> None: ...

class DeleteEmployeeRequest(_message.Message):
    __slots__ = ("project_id", "id", "request_id", "etag")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    request_id: str
    etag: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ..., request_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteEmployeeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueryEmployeesRequest(_message.Message):
    __slots__ = ("project_id", "query")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    query: _common_pb2.QueryRequest
    def __init__(self, project_id: _Optional[str] = ..., query: _Optional[_Union[_common_pb2.QueryRequest, _Mapping]] = ...) -> None: ...

class QueryEmployeesResponse(_message.Message):
    __slots__ = ("data", "meta")
    DATA_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[Employee]
    meta: _common_pb2.QueryMeta
    def __init__(self, data: _Optional[_Iterable[_Union[Employee, _Mapping]]] = ..., meta: _Optional[_Union[_common_pb2.QueryMeta, _Mapping]] = ...) -> None: ...
