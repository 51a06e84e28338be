"""The messages of the Functions host ↔ language worker protocol, as plain Python objects.

The Functions host and the Python worker speak gRPC with the messages of
azure-functions-language-worker-protobuf (``FunctionRpc.proto``: StreamingMessage,
WorkerInitRequest, FunctionsMetadataRequest, FunctionLoadRequest, InvocationRequest
and their responses). From Python 3.13 the worker is two parts: a proxy that owns
the gRPC stream, and ``azure_functions_runtime`` (the package the app pins), which
takes each request and builds each response with the message classes the proxy
hands it (``request.properties["protos"]``). This module is that set of classes for
the local host: the fields this app's functions use, with protobuf's semantics
where the runtime relies on them (an unset field reads as its default, ``WhichOneof``
names the member of a oneof that was set, enums are class constants), and a JSON
form so the host can send a message to a worker process and read its answer.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Self

# A field's kind: a scalar type, a Message subclass, ("map", kind) or ("list", kind); "any" is kept as it is.
Kind = Any
_MISSING = object()


class Message:
    FIELDS: ClassVar[dict[str, Kind]] = {}
    ONEOFS: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        self._set = {name for name, value in values.items() if value is not None}
        for name in self._set:
            object.__setattr__(self, name, values[name])

    def __getattr__(self, name: str) -> Any:
        """An unset field reads as its default (made on first read: messages may nest themselves)."""
        kind = type(self).FIELDS.get(name, _MISSING) if not name.startswith("_") else _MISSING
        if kind is _MISSING:
            raise AttributeError(f"{type(self).__name__} has no field {name}")
        value = _default(kind)
        object.__setattr__(self, name, value)
        return value

    def WhichOneof(self, group: str) -> str | None:
        return next((name for name in self.ONEOFS[group] if name in self._set), None)

    def HasField(self, name: str) -> bool:
        return name in self._set

    def to_json(self) -> dict[str, Any]:
        return {name: _encode(self.FIELDS[name], getattr(self, name)) for name in sorted(self._set)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(**{name: _decode(cls.FIELDS[name], value) for name, value in data.items() if name in cls.FIELDS})

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self._set))
        return f"{type(self).__name__}({shown})"


def _default(kind: Kind) -> Any:
    if isinstance(kind, tuple):
        return {} if kind[0] == "map" else []
    if isinstance(kind, type) and issubclass(kind, Message):
        return kind()
    return {str: "", int: 0, float: 0.0, bool: False, bytes: b""}.get(kind)


def _encode(kind: Kind, value: Any) -> Any:
    if isinstance(kind, tuple):
        inner = kind[1]
        if kind[0] == "map":
            return {str(k): _encode(inner, v) for k, v in value.items()}
        return [_encode(inner, v) for v in value]
    if isinstance(kind, type) and issubclass(kind, Message):
        return value.to_json()
    if kind is bytes:
        return base64.b64encode(bytes(value)).decode()
    if kind is int:
        return int(value)  # enums of azure.functions (BindingDirection, DataType) are ints on the wire
    if kind is str:
        return str(value)
    if kind is timedelta:
        return value.total_seconds()
    return value


def _decode(kind: Kind, value: Any) -> Any:
    if isinstance(kind, tuple):
        inner = kind[1]
        if kind[0] == "map":
            return {k: _decode(inner, v) for k, v in value.items()}
        return [_decode(inner, v) for v in value]
    if isinstance(kind, type) and issubclass(kind, Message):
        return kind.from_json(value)
    if kind is bytes:
        return base64.b64decode(value)
    if kind is timedelta:
        return timedelta(seconds=value)
    return value


# --- data -------------------------------------------------------------------------------------------


class NullableString(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"value": str}


class NullableBool(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"value": bool}


class NullableDouble(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"value": float}


class NullableTimestamp(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"value": "any"}


class RpcHttpCookie(Message):
    class SameSite:
        # "None" is a keyword in Python; the runtime reads it with getattr.
        Lax = 1
        Strict = 2
        ExplicitNone = 3

    FIELDS: ClassVar[dict[str, Kind]] = {
        "name": str,
        "value": str,
        "domain": NullableString,
        "path": NullableString,
        "expires": NullableTimestamp,
        "secure": NullableBool,
        "http_only": NullableBool,
        "same_site": int,
        "max_age": NullableDouble,
    }


setattr(RpcHttpCookie.SameSite, "None", 0)


class TypedData(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {}  # set below: it nests RpcHttp, which nests it
    ONEOFS: ClassVar[dict[str, tuple[str, ...]]] = {
        "data": ("string", "json", "bytes", "stream", "http", "int", "double")
    }


class RpcHttp(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "method": str,
        "url": str,
        "headers": ("map", str),
        "body": TypedData,
        "params": ("map", str),
        "status_code": str,
        "query": ("map", str),
        "enable_content_negotiation": bool,
        "cookies": ("list", RpcHttpCookie),
    }


TypedData.FIELDS = {
    "string": str,
    "json": str,
    "bytes": bytes,
    "stream": bytes,
    "http": RpcHttp,
    "int": int,
    "double": float,
}


class ParameterBinding(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"name": str, "data": TypedData}
    ONEOFS: ClassVar[dict[str, tuple[str, ...]]] = {"rpc_data": ("data",)}


class RpcException(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"source": str, "stack_trace": str, "message": str}


class StatusResult(Message):
    Failure = 0
    Success = 1
    Cancelled = 2
    FIELDS: ClassVar[dict[str, Kind]] = {"status": int, "result": str, "exception": RpcException}


# --- start: WorkerInitRequest -------------------------------------------------------------------------


class WorkerInitRequest(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "host_version": str,
        "capabilities": ("map", str),
        "log_categories": ("map", int),
        "worker_directory": str,
        "function_app_directory": str,
    }


class WorkerMetadata(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "runtime_name": str,
        "runtime_version": str,
        "worker_version": str,
        "worker_bitness": str,
        "custom_properties": ("map", str),
    }


class WorkerInitResponse(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "worker_version": str,
        "capabilities": ("map", str),
        "result": StatusResult,
        "worker_metadata": WorkerMetadata,
    }


# --- indexing: FunctionsMetadataRequest, FunctionLoadRequest --------------------------------------------


class BindingInfo(Message):
    # Direction; azure.functions' BindingDirection has the same values. DataType: undefined, string, binary, stream.
    # (The runtime compares a binding's data_type with BindingInfo.undefined, so that name is a data type here.)
    out = 1
    inout = 2
    undefined = 0
    FIELDS: ClassVar[dict[str, Kind]] = {"type": str, "direction": int, "data_type": int}


setattr(BindingInfo, "in", 0)


class RpcRetryOptions(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "max_retry_count": int,
        "delay_interval": timedelta,
        "minimum_interval": timedelta,
        "maximum_interval": timedelta,
        "retry_strategy": "any",
    }


class RpcFunctionMetadata(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "name": str,
        "directory": str,
        "script_file": str,
        "entry_point": str,
        "bindings": ("map", BindingInfo),
        "is_proxy": bool,
        "status": StatusResult,
        "language": str,
        "raw_bindings": ("list", str),
        "function_id": str,
        "managed_dependency_enabled": bool,
        "retry_options": RpcRetryOptions,
        "properties": ("map", str),
    }


class FunctionsMetadataRequest(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"function_app_directory": str}


class FunctionMetadataResponse(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "function_metadata_results": ("list", RpcFunctionMetadata),
        "result": StatusResult,
        "use_default_metadata_indexing": bool,
    }


class FunctionLoadRequest(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "function_id": str,
        "metadata": RpcFunctionMetadata,
        "managed_dependency_enabled": bool,
    }


class FunctionLoadResponse(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "function_id": str,
        "result": StatusResult,
        "is_dependency_downloaded": bool,
    }


# --- invocation ---------------------------------------------------------------------------------------


class RpcTraceContext(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"trace_parent": str, "trace_state": str, "attributes": ("map", str)}


class RetryContext(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {"retry_count": int, "max_retry_count": int, "exception": RpcException}


class InvocationRequest(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "invocation_id": str,
        "function_id": str,
        "input_data": ("list", ParameterBinding),
        "trigger_metadata": ("map", TypedData),
        "trace_context": RpcTraceContext,
        "retry_context": RetryContext,
    }


class InvocationResponse(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "invocation_id": str,
        "output_data": ("list", ParameterBinding),
        "return_value": TypedData,
        "result": StatusResult,
    }


class FunctionEnvironmentReloadResponse(Message):
    FIELDS: ClassVar[dict[str, Kind]] = {
        "worker_metadata": WorkerMetadata,
        "capabilities": ("map", str),
        "result": StatusResult,
    }


class StreamingMessage(Message):
    """One message on the stream: exactly one request (the host's) or response (the worker's) is set."""

    FIELDS: ClassVar[dict[str, Kind]] = {
        "request_id": str,
        "worker_init_request": WorkerInitRequest,
        "worker_init_response": WorkerInitResponse,
        "functions_metadata_request": FunctionsMetadataRequest,
        "function_metadata_response": FunctionMetadataResponse,
        "function_load_request": FunctionLoadRequest,
        "function_load_response": FunctionLoadResponse,
        "invocation_request": InvocationRequest,
        "invocation_response": InvocationResponse,
    }
    ONEOFS: ClassVar[dict[str, tuple[str, ...]]] = {
        "content": tuple(name for name in FIELDS if name != "request_id"),
    }
