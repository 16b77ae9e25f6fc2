import datetime

from altalune.v1 import access_pb2 as _access_pb2
from altalune.v1 import event_pb2 as _event_pb2
from altalune.v1 import permission_pb2 as _permission_pb2
from altalune.v1 import role_pb2 as _role_pb2
from altalune.v1 import rules_pb2 as _rules_pb2
from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProjectRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROJECT_ROLE_UNSPECIFIED: _ClassVar[ProjectRole]
    PROJECT_ROLE_OWNER: _ClassVar[ProjectRole]
    PROJECT_ROLE_ADMIN: _ClassVar[ProjectRole]
    PROJECT_ROLE_MEMBER: _ClassVar[ProjectRole]
    PROJECT_ROLE_VIEWER: _ClassVar[ProjectRole]
PROJECT_ROLE_UNSPECIFIED: ProjectRole
PROJECT_ROLE_OWNER: ProjectRole
PROJECT_ROLE_ADMIN: ProjectRole
PROJECT_ROLE_MEMBER: ProjectRole
PROJECT_ROLE_VIEWER: ProjectRole

class ProjectMember(_message.Message):
    __slots__ = ("project_id", "user_id", "email", "first_name", "last_name", "role", "etag", "created_at", "updated_at")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    user_id: str
    email: str
    first_name: str
    last_name: str
    role: ProjectRole
    etag: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., email: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., role: _Optional[_Union[ProjectRole, str]] = ..., etag: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UserProject(_message.Message):
    __slots__ = ("project_id", "project_name", "role")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    project_name: str
    role: ProjectRole
    def __init__(self, project_id: _Optional[str] = ..., project_name: _Optional[str] = ..., role: _Optional[_Union[ProjectRole, str]] = ...) -> None: ...

class AssignUserRolesRequest(_message.Message):
    __slots__ = ("user_id", "role_ids", "request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    role_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, user_id: _Optional[str] = ..., role_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AssignUserRolesResponse(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[_role_pb2.Role]
    def __init__(self, roles: _Optional[_Iterable[_Union[_role_pb2.Role, _Mapping]]] = ...) -> None: ...

class RemoveUserRolesRequest(_message.Message):
    __slots__ = ("user_id", "role_ids", "request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    role_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, user_id: _Optional[str] = ..., role_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveUserRolesResponse(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[_role_pb2.Role]
    def __init__(self, roles: _Optional[_Iterable[_Union[_role_pb2.Role, _Mapping]]] = ...) -> None: ...

class ListUserRolesRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ListUserRolesResponse(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[_role_pb2.Role]
    def __init__(self, roles: _Optional[_Iterable[_Union[_role_pb2.Role, _Mapping]]] = ...) -> None: ...

class AssignRolePermissionsRequest(_message.Message):
    __slots__ = ("role_id", "permission_ids", "request_id")
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    role_id: str
    permission_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, role_id: _Optional[str] = ..., permission_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AssignRolePermissionsResponse(_message.Message):
    __slots__ = ("permissions",)
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    permissions: _containers.RepeatedCompositeFieldContainer[_permission_pb2.Permission]
    def __init__(self, permissions: _Optional[_Iterable[_Union[_permission_pb2.Permission, _Mapping]]] = ...) -> None: ...

class RemoveRolePermissionsRequest(_message.Message):
    __slots__ = ("role_id", "permission_ids", "request_id")
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    role_id: str
    permission_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, role_id: _Optional[str] = ..., permission_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveRolePermissionsResponse(_message.Message):
    __slots__ = ("permissions",)
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    permissions: _containers.RepeatedCompositeFieldContainer[_permission_pb2.Permission]
    def __init__(self, permissions: _Optional[_Iterable[_Union[_permission_pb2.Permission, _Mapping]]] = ...) -> None: ...

class ListRolePermissionsRequest(_message.Message):
    __slots__ = ("role_id",)
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    role_id: str
    def __init__(self, role_id: _Optional[str] = ...) -> None: ...

class ListRolePermissionsResponse(_message.Message):
    __slots__ = ("permissions",)
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    permissions: _containers.RepeatedCompositeFieldContainer[_permission_pb2.Permission]
    def __init__(self, permissions: _Optional[_Iterable[_Union[_permission_pb2.Permission, _Mapping]]] = ...) -> None: ...

class NewProjectMember(_message.Message):
    __slots__ = ("user_id", "role")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    role: ProjectRole
    def __init__(self, user_id: _Optional[str] = ..., role: _Optional[_Union[ProjectRole, str]] = ...) -> None: ...

class AddProjectMembersRequest(_message.Message):
    __slots__ = ("project_id", "members", "request_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    members: _containers.RepeatedCompositeFieldContainer[NewProjectMember]
    request_id: str
    def __init__(self, project_id: _Optional[str] = ..., members: _Optional[_Iterable[_Union[NewProjectMember, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddProjectMembersResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[ProjectMember]
    def __init__(self, members: _Optional[_Iterable[_Union[ProjectMember, _Mapping]]] = ...) -> None: ...

class UpdateProjectMemberRequest(_message.Message):
    __slots__ = ("project_id", "user_id", "role", "request_id", "etag")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    user_id: str
    role: ProjectRole
    request_id: str
    etag: str
    def __init__(self, project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., role: _Optional[_Union[ProjectRole, str]] = ..., request_id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class UpdateProjectMemberResponse(_message.Message):
    __slots__ = ("member",)
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    member: ProjectMember
    def __init__(self, member: _Optional[_Union[ProjectMember, _Mapping]] = ...) -> None: ...

class RemoveProjectMembersRequest(_message.Message):
    __slots__ = ("project_id", "user_ids", "request_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, project_id: _Optional[str] = ..., user_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveProjectMembersResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProjectMembersRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ListProjectMembersResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[ProjectMember]
    def __init__(self, members: _Optional[_Iterable[_Union[ProjectMember, _Mapping]]] = ...) -> None: ...

class ListUserProjectsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ListUserProjectsResponse(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[UserProject]
    def __init__(self, projects: _Optional[_Iterable[_Union[UserProject, _Mapping]]] = ...) -> None: ...

class ListMyProjectsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMyProjectsResponse(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[UserProject]
    def __init__(self, projects: _Optional[_Iterable[_Union[UserProject, _Mapping]]] = ...) -> None: ...
