//! Generates Rust code for the etcd v3 API, Berth's internal Raft protocol and the CRI v1
//! API (clients only: the agent calls containerd, nothing in Berth serves CRI).
//! protoc comes vendored so a fresh machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; PROTOC tells prost-build which
    // compiler to run.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let protos = ["protos/etcd/kv.proto", "protos/etcd/rpc.proto", "protos/berth/raft.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().build_server(true).build_client(true).compile_protos(&protos, &["protos"])?;
    let cri = ["protos/cri/v1/api.proto"];
    println!("cargo:rerun-if-changed={}", cri[0]);
    tonic_prost_build::configure().build_server(false).build_client(true).compile_protos(&cri, &["protos"])?;
    Ok(())
}
