"""Writes a FileDescriptorSet of Scalekit's token service, taken from the official Python SDK.

Each generated `*_pb2` module of `scalekit-sdk-python` embeds the exact `FileDescriptorProto`
Scalekit compiled (`DESCRIPTOR.serialized_pb`). This script collects the token service and the
error details, strips everything the Rust code does not need (field/method/file options such
as `google.api.http`, `buf.validate`, openapiv2 and Scalekit's auth option, and the imports
that only served them), keeps the well-known types they use, and writes the set in dependency
order. No protoc involved.

Usage: python grpc_descriptors.py OUT.fds
"""
import sys

from google.protobuf import descriptor_pb2

from scalekit.v1.errdetails import errdetails_pb2
from scalekit.v1.tokens import tokens_pb2

KEEP_PREFIX = ("scalekit/v1/tokens/", "scalekit/v1/errdetails/", "google/protobuf/")


def strip(proto: descriptor_pb2.FileDescriptorProto) -> None:
    proto.ClearField("options")
    proto.ClearField("source_code_info")

    def strip_message(msg):
        # `map_entry` is what makes a nested `*Entry` message a map: keep that option only.
        map_entry = msg.options.map_entry
        msg.ClearField("options")
        if map_entry:
            msg.options.map_entry = True
        for field in msg.field:
            field.ClearField("options")
        for nested in msg.nested_type:
            strip_message(nested)
        for enum in msg.enum_type:
            enum.ClearField("options")
            for value in enum.value:
                value.ClearField("options")

    for msg in proto.message_type:
        strip_message(msg)
    for enum in proto.enum_type:
        enum.ClearField("options")
        for value in enum.value:
            value.ClearField("options")
    if not proto.name.startswith("scalekit/v1/tokens/"):
        # errdetails.proto declares a placeholder service; only the token service is wanted.
        del proto.service[:]
    for service in proto.service:
        service.ClearField("options")
        for method in service.method:
            method.ClearField("options")
    kept = [d for d in proto.dependency if d.startswith(KEEP_PREFIX)]
    del proto.dependency[:]
    proto.dependency.extend(kept)
    del proto.public_dependency[:]
    del proto.weak_dependency[:]
    # Extensions defined here (none in the kept files) would pull their extendees in.
    del proto.extension[:]


def main() -> None:
    out = sys.argv[1]
    ordered = []
    seen = set()

    def visit(file_descriptor):
        if file_descriptor.name in seen or not file_descriptor.name.startswith(KEEP_PREFIX):
            return
        seen.add(file_descriptor.name)
        for dep in file_descriptor.dependencies:
            visit(dep)
        proto = descriptor_pb2.FileDescriptorProto.FromString(file_descriptor.serialized_pb)
        strip(proto)
        ordered.append(proto)

    visit(errdetails_pb2.DESCRIPTOR)
    visit(tokens_pb2.DESCRIPTOR)
    fds = descriptor_pb2.FileDescriptorSet(file=ordered)
    with open(out, "wb") as f:
        f.write(fds.SerializeToString(deterministic=True))
    print(f"wrote {out}: " + ", ".join(p.name for p in ordered))


if __name__ == "__main__":
    main()
