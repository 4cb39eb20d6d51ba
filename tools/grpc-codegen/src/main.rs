//! Generates the prost messages and tonic client/server of Scalekit's token service from a
//! `FileDescriptorSet` (no protoc): `grpc-codegen <in.fds> <out dir>`.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(out_dir)) = (args.next(), args.next()) else {
        return Err("usage: grpc-codegen <in.fds> <out dir>".into());
    };
    let fds = prost_types::FileDescriptorSet::decode(std::fs::read(&input)?.as_slice())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(&out_dir)
        .compile_fds(fds)?;
    Ok(())
}
