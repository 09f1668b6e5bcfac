"""A V2 (Open Inference Protocol) inference request read from its REST body, for both servers:
JSON parsed with orjson, or JSON followed by binary tensors (the protocol's binary tensor data
extension, what tritonclient sends by default), into kserve's InferRequest with each input's
data as a numpy array of its shape (a list of str for BYTES).

The protocol's rules, each refused with a 400 naming what is wrong:
- `Inference-Header-Content-Length`, when present, is the length of the JSON object at the
  start of the body; the rest of the body is the inputs' binary data, in the order of the
  inputs, each `parameters.binary_data_size` bytes long, with nothing left over;
- an input with binary data has no `data`; binary data is little-endian and row major, and a
  BYTES element is a 4-byte little-endian length and then its bytes;
- every input's data holds exactly the values its `shape` says (JSON data flat or nested);
- a requested output is named once (a name asked twice is answered once).

kserve reads a binary body too, but copies every binary value into a Python list and checks
neither sizes nor shapes; JSON it reads with FastAPI's parser and pydantic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from klinecast.serving.errors import shown

HEADER = "inference-header-content-length"
#: V2 datatypes -> numpy, little-endian as the binary extension lays them out
DTYPES = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
BYTES = "BYTES"


def read(body: bytes, headers: Mapping[str, str], *, model_name: str) -> InferRequest:
    """The inference request in body (headers: the request's, lower-case names).

    Raises:
        InvalidInput: the body breaks a rule of the protocol (see the module docstring).
    """
    view = memoryview(body)
    json_length = _json_length(headers, len(body))
    try:
        document = orjson.loads(view[:json_length])
    except orjson.JSONDecodeError as exc:
        raise _invalid(str(exc)) from None
    if not isinstance(document, dict):
        raise _invalid('expected a JSON object {"inputs": [...]}')
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise _invalid("inputs: expected a list of tensors")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _invalid("id: expected a string")
    parameters = _parameters(document, "the request")
    tensors, offset = [], json_length
    for i, raw in enumerate(inputs):
        tensor, offset = _input(raw, i, view, offset)
        tensors.append(tensor)
    if offset != len(body):
        raise InvalidInput(
            f"the body holds {len(body) - offset} byte(s) after the inputs' binary data "
            "(each input's parameters.binary_data_size says how many are its own)"
        )
    return InferRequest(
        model_name,
        tensors,
        request_id=request_id,
        parameters=parameters,
        request_outputs=_outputs(document.get("outputs")),
    )


def answered_outputs(request: InferRequest, names: Sequence[str]) -> list[RequestedOutput]:
    """The outputs to answer, in order: the ones asked for (each once), else all of names;
    each marked binary or not as the protocol says: its own `binary_data`, else the request's
    `binary_data_output`."""
    default = (request.parameters or {}).get("binary_data_output") is True
    asked = request.request_outputs or [RequestedOutput(name) for name in names]
    return [
        RequestedOutput(
            output.name,
            {"binary_data": default if output.binary_data is None else output.binary_data is True},
        )
        for output in asked
    ]


def _json_length(headers: Mapping[str, str], size: int) -> int:
    """The JSON object's length: the header's, or the whole body without it."""
    raw = headers.get(HEADER)
    if raw is None:
        return size
    try:
        length = int(raw)
    except ValueError:
        length = -1
    if not 0 < length <= size:
        raise InvalidInput(
            f"Inference-Header-Content-Length {shown(raw)} is not the length of the JSON "
            f"object at the start of the {size}-byte body"
        )
    return length


def _input(raw, i: int, body: memoryview, offset: int) -> tuple[InferInput, int]:
    if not isinstance(raw, dict):
        raise _invalid(f"inputs[{i}]: expected an object with name, shape, datatype and data")
    name, shape, datatype = raw.get("name"), raw.get("shape"), raw.get("datatype")
    if not isinstance(name, str):
        raise _invalid(f"inputs[{i}].name: expected a string")
    where = f"input {shown(name)!r}"
    if not isinstance(shape, list) or any(
        type(n) is not int or n < 0 for n in shape
    ):
        raise _invalid(f"{where}: shape: expected a list of sizes (integers >= 0)")
    if not isinstance(datatype, str) or (datatype not in DTYPES and datatype != BYTES):
        raise _invalid(
            f"{where}: datatype {shown(datatype)!r} is not one of the protocol's "
            f"({', '.join([*DTYPES, BYTES])})"
        )
    parameters = _parameters(raw, where)
    count = math.prod(shape)
    size = (parameters or {}).get("binary_data_size")
    if size is None:
        if "data" not in raw:
            raise _invalid(f"{where}: no data (and no parameters.binary_data_size)")
        data = from_json(raw["data"], datatype, shape, where=where)
    else:
        if "data" in raw:
            raise InvalidInput(f"{where}: data and parameters.binary_data_size both given")
        if type(size) is not int or size < 0:
            raise InvalidInput(f"{where}: binary_data_size {shown(size)} is not a byte count")
        if offset + size > len(body):
            raise InvalidInput(
                f"{where}: binary_data_size {size} reaches past the body's end "
                f"({len(body) - offset} byte(s) of binary data left)"
            )
        data = _from_binary(body[offset : offset + size], datatype, shape, count, where)
        offset += size
    return InferInput(name, list(shape), datatype, data=data, parameters=parameters), offset


def _from_binary(chunk: memoryview, datatype: str, shape: list[int], count: int, where: str):
    if datatype == BYTES:
        values, position = [], 0
        while position < len(chunk):
            if position + 4 > len(chunk):
                break
            length = int.from_bytes(chunk[position : position + 4], "little")
            position += 4
            if position + length > len(chunk):
                break
            values.append(bytes(chunk[position : position + length]))
            position += length
        if position != len(chunk) or len(values) != count:
            raise InvalidInput(
                f"{where}: its binary data is not {count} BYTES element(s) of shape {shape} "
                "(each a 4-byte little-endian length, then that many bytes)"
            )
        return values
    dtype = DTYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise InvalidInput(
            f"{where}: binary_data_size {len(chunk)} is not the {count * dtype.itemsize} bytes "
            f"of {count} {datatype} value(s) of shape {shape}"
        )
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def from_json(data, datatype: str, shape: list[int], *, where: str):
    """JSON tensor data (flat, or nested as the shape says) -> a numpy array of the shape (a
    list of str for BYTES), each value of the datatype's kind.

    Raises:
        InvalidInput: the data does not hold the shape's values, or holds another kind.
    """
    count = math.prod(shape)
    flat = _flat(data, shape, where)
    if len(flat) != count:
        raise InvalidInput(
            f"{where}: shape {shape} holds {count} value(s), its data {len(flat)}"
        )
    kinds = set(map(type, flat))
    if datatype == BYTES:
        if not kinds <= {str}:
            raise _invalid(f"{where}: BYTES data holds strings only")
        return flat
    allowed = {bool} if datatype == "BOOL" else {int} if datatype[0] in "IU" else {int, float}
    if not kinds <= allowed:
        kind = "true or false" if bool in allowed else "numbers" if float in allowed else "integers"
        raise _invalid(f"{where}: {datatype} data holds {kind} only")
    try:
        return np.array(flat, dtype=DTYPES[datatype]).reshape(shape)
    except (OverflowError, ValueError):
        raise InvalidInput(f"{where}: a value is out of {datatype}'s range") from None


def _flat(data, shape: list[int], where: str) -> list:
    """data as one row-major list: given flat, or nested as the shape says."""
    if not isinstance(data, list):
        raise _invalid(f"{where}: data: expected a JSON array")
    if not data or not isinstance(data[0], list):
        return data
    level = data
    for depth in range(len(shape) - 1):
        size = shape[depth + 1]
        if len(level) != math.prod(shape[: depth + 1]) or any(
            type(row) is not list or len(row) != size for row in level
        ):
            raise InvalidInput(f"{where}: its data is not nested as its shape {shape}")
        level = list(chain.from_iterable(level))
    return level


def _parameters(owner: dict, where: str) -> dict | None:
    parameters = owner.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _invalid(f"{where}: parameters: expected an object")
    return parameters


def _outputs(raw) -> list[RequestedOutput] | None:
    """The requested outputs, each name once (the first asking of it counts)."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _invalid("outputs: expected a list of {\"name\": ...} objects")
    wanted: dict[str, RequestedOutput] = {}
    for i, output in enumerate(raw):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise _invalid(f"outputs[{i}]: expected an object with a name")
        parameters = _parameters(output, f"outputs[{i}]")
        wanted.setdefault(output["name"], RequestedOutput(output["name"], parameters))
    return list(wanted.values())


def _invalid(reason: str) -> InvalidInput:
    return InvalidInput(f"the body is not a valid JSON inference request: {reason}")
