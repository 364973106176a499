//! The agent's own containerd, for real: started under a temporary data directory, it
//! serves CRI v1 on its socket, and pulls an image through CRI `PullImage` from a real
//! local registry (Debian's `docker-registry` on 127.0.0.1, images built offline by
//! `scripts/build-images`). Needs root and containerd, runc, docker-registry, umoci and
//! skopeo (`scripts/prereqs` installs them); skipped with the reason otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_agent::runtime::cri::{Containerd, ContainerdLayout, ContainerdSettings};
use berth_proto::cri::{ImageSpec, ImageStatusRequest, PullImageRequest};
use berth_testkit::free_port;
use berth_testkit::KillOnDrop;

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let missing: Vec<&str> = ["containerd", "runc", "docker-registry", "umoci", "skopeo"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

/// A `docker-registry` (distribution 2.8) on 127.0.0.1, storing under `dir`; killed on drop.
struct LocalRegistry {
    _process: KillOnDrop,
    address: String,
}

impl LocalRegistry {
    fn start(dir: &Path) -> LocalRegistry {
        let address = format!("127.0.0.1:{}", free_port());
        let config = dir.join("registry.yml");
        let storage = dir.join("registry");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let process = KillOnDrop(child);
        berth_testkit::blocking::eventually(Duration::from_secs(20), "the registry to answer", || {
            std::net::TcpStream::connect(&address).ok()
        });
        LocalRegistry { _process: process, address }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_containerd_serves_cri_and_pulls_from_a_local_registry() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipping: {why}");
        return;
    }
    // Short path: containerd's socket must fit in a Unix socket address.
    let dir = tempfile::Builder::new().prefix("bctr").tempdir_in("/tmp").unwrap();
    let registry = LocalRegistry::start(dir.path());
    let built = Command::new(workspace().join("scripts/build-images"))
        .args(["--out", &dir.path().join("images").display().to_string(), "--push", &registry.address])
        .output()
        .unwrap();
    assert!(built.status.success(), "build-images: {}", String::from_utf8_lossy(&built.stderr));

    let layout = ContainerdLayout::under(&dir.path().join("agent"));
    // The registry speaks plain HTTP: say so in containerd's hosts.toml for it.
    let hosts = layout.registry_config_dir().join(&registry.address);
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"http://{0}\"\n\n[host.\"http://{0}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            registry.address
        ),
    )
    .unwrap();
    let settings = ContainerdSettings {
        sandbox_image: format!("{}/berth/pause:1", registry.address),
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
    };
    let containerd = Containerd::start(Path::new("containerd"), layout.clone(), &settings, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(layout.log_file()).unwrap_or_default()));

    let version = containerd.client.version(Duration::from_secs(5)).await.unwrap();
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");

    let reference = format!("{}/berth/busybox:1.35", registry.address);
    let mut images = containerd.client.image.clone();
    let spec = ImageSpec { image: reference.clone(), ..Default::default() };
    let pulled = tokio::time::timeout(
        Duration::from_secs(60),
        images.pull_image(PullImageRequest { image: Some(spec.clone()), auth: None, sandbox_config: None }),
    )
    .await
    .expect("PullImage within 60 s")
    .expect("PullImage")
    .into_inner();
    assert!(pulled.image_ref.starts_with("sha256:"), "image ref {:?}", pulled.image_ref);
    let status = images
        .image_status(ImageStatusRequest { image: Some(spec), verbose: false })
        .await
        .expect("ImageStatus")
        .into_inner();
    let image = status.image.expect("the pulled image is present");
    assert!(image.repo_tags.contains(&reference), "tags {:?}", image.repo_tags);
    assert!(image.size > 1_000_000, "size {}", image.size);

    // An image that does not exist: the registry's answer, as the runtime reports it.
    let missing = ImageSpec { image: format!("{}/berth/nope:1", registry.address), ..Default::default() };
    let err = images
        .pull_image(PullImageRequest { image: Some(missing), auth: None, sandbox_config: None })
        .await
        .expect_err("pulling a missing image fails");
    assert!(err.message().contains("not found"), "{}", err.message());

    let pid = containerd.pid();
    drop(containerd);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "containerd {pid} still runs after drop");
}
