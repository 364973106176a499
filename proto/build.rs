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
    kubernetes_descriptors()?;
    Ok(())
}

/// Compiles the Kubernetes schemas (`protos/k8s`) into one descriptor set, which
/// `berth_proto::protobuf` reads at run time: Kubernetes' protobuf encoding for every
/// built-in kind, without a Rust type per message.
fn kubernetes_descriptors() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new("protos/k8s");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect_protos(root, root, &mut files)?;
    files.sort();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("kubernetes.fds");
    let output = std::process::Command::new(protoc_bin_vendored::protoc_bin_path()?)
        .arg("--include_imports")
        .arg("-o")
        .arg(&out)
        .arg("-I")
        .arg(root)
        .args(&files)
        .output()?;
    if !output.status.success() {
        return Err(format!("protoc failed on protos/k8s: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(())
}

fn collect_protos(
    root: &std::path::Path,
    dir: &std::path::Path,
    out: &mut Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path.strip_prefix(root)?.to_string_lossy().into_owned());
        }
    }
    Ok(())
}
