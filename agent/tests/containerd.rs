//! The agent's own containerd, for real: started under a temporary data directory, it
//! serves CRI v1 on its socket, and pulls an image through CRI `PullImage` from a real
//! local registry (Debian's `docker-registry` on 127.0.0.1, images built offline by
//! `scripts/build-images`), and runs a pod sandbox and a container through the CRI calls
//! the agent makes. Needs root and containerd, runc, docker-registry, umoci and
//! skopeo (`scripts/prereqs` installs them); skipped with the reason otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_agent::runtime::cri::cni::{write_conflist, PodNetwork};
use berth_agent::runtime::cri::{Containerd, ContainerdLayout, ContainerdSettings, CriClient};
use berth_proto::cri::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, ImageStatusRequest, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, PullImageRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
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
        LocalRegistry::start_with(dir, "")
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt made by Python's crypt).
    fn with_password(dir: &Path, user: &str, password: &str) -> LocalRegistry {
        std::fs::create_dir_all(dir).unwrap();
        let hash = Command::new("python3")
            .args(["-c", "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))"])
            .arg(password)
            .output()
            .unwrap();
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{}", String::from_utf8_lossy(&hash.stdout).trim())).unwrap();
        LocalRegistry::start_with(
            dir,
            &format!("auth:\n  htpasswd:\n    realm: berth\n    path: {}\n", htpasswd.display()),
        )
    }

    fn start_with(dir: &Path, extra_config: &str) -> LocalRegistry {
        let address = format!("127.0.0.1:{}", free_port());
        let config = dir.join("registry.yml");
        let storage = dir.join("registry");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n{extra_config}",
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

    /// A registry holding the images of `scripts/build-images`.
    fn with_images(dir: &Path) -> LocalRegistry {
        let registry = LocalRegistry::start(dir);
        let built = Command::new(workspace().join("scripts/build-images"))
            .args(["--out", &dir.join("images").display().to_string(), "--push", &registry.address])
            .args(["--archives", &dir.join("archives").display().to_string()])
            .output()
            .unwrap();
        assert!(built.status.success(), "build-images: {}", String::from_utf8_lossy(&built.stderr));
        registry
    }

    /// Tells the containerd of `layout` that this registry speaks plain HTTP (its
    /// `certs.d/HOST/hosts.toml`).
    fn trust(&self, layout: &ContainerdLayout) {
        let hosts = layout.registry_config_dir().join(&self.address);
        std::fs::create_dir_all(&hosts).unwrap();
        let toml = format!(
            "server = \"http://{0}\"\n\n[host.\"http://{0}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            self.address
        );
        std::fs::write(hosts.join("hosts.toml"), toml).unwrap();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A local registry holding the images of `scripts/build-images` and the agent's own
/// containerd, configured to pull from it over plain HTTP.
/// With a pod network, its bridge is deleted when the node goes.
struct Node {
    containerd: Option<Containerd>,
    bridge: Option<String>,
    registry: LocalRegistry,
    dir: tempfile::TempDir,
}

impl Node {
    async fn start() -> Option<Node> {
        Node::start_with(None).await
    }

    /// A node whose pods get addresses from a /24 of 172.26.0.0/16 on a bridge of its own
    /// (172.31.0.0/16 is `berthctl up`'s node networks').
    async fn with_pod_network() -> Option<Node> {
        let n = std::process::id();
        let network = PodNetwork {
            pod_cidr: format!("172.26.{}.0/24", n % 250),
            bridge: format!("bt{}", n % 100_000),
            ipam_dir: PathBuf::new(),
            masquerade: true,
        };
        Node::start_with(Some(network)).await
    }

    async fn start_with(network: Option<PodNetwork>) -> Option<Node> {
        if let Some(why) = missing_prerequisite() {
            eprintln!("skipping: {why}");
            return None;
        }
        // Short path: containerd's socket must fit in a Unix socket address.
        let dir = tempfile::Builder::new().prefix("bctr").tempdir_in("/tmp").unwrap();
        let registry = LocalRegistry::with_images(dir.path());

        let layout = ContainerdLayout::under(&dir.path().join("agent"));
        let bridge = match network {
            Some(network) => {
                let network = PodNetwork { ipam_dir: dir.path().join("agent/cni/ipam"), ..network };
                write_conflist(&layout.cni_conf_dir, &network).unwrap();
                Some(network.bridge)
            }
            None => None,
        };
        registry.trust(&layout);
        let sandbox_image = format!("{}/berth/pause:1", registry.address);
        let settings = ContainerdSettings::for_this_process(&sandbox_image, Path::new("/usr/lib/cni"));
        let containerd = Containerd::start(Path::new("containerd"), layout.clone(), &settings, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(layout.log_file()).unwrap_or_default()));
        Some(Node { containerd: Some(containerd), bridge, registry, dir })
    }

    fn containerd(&self) -> &Containerd {
        self.containerd.as_ref().expect("containerd runs")
    }

    fn containerd_log(&self) -> String {
        std::fs::read_to_string(self.containerd().layout.log_file()).unwrap_or_default()
    }

    fn image(&self, name: &str) -> String {
        format!("{}/berth/{name}", self.registry.address)
    }

    /// Stops containerd and says whether anything is still mounted under the node's dir.
    fn stop(mut self) -> Vec<String> {
        let pid = self.containerd().pid();
        self.remove_everything();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "containerd {pid} still runs after drop");
        let prefix = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        mounts.lines().filter(|l| l.contains(&prefix)).map(str::to_string).collect()
    }
}

impl Node {
    /// Removes every sandbox (and so every container) containerd still has, then stops it:
    /// also when a test fails half-way, so no pause process, network namespace or mount
    /// outlives the test.
    fn remove_everything(&mut self) {
        let Some(containerd) = self.containerd.take() else { return };
        let client = containerd.client.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(30), remove_all_sandboxes(client)).await;
            })
        });
        drop(containerd);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.remove_everything();
        if let Some(bridge) = self.bridge.take() {
            let _ = Command::new("ip").args(["link", "del", "dev", &bridge]).stderr(Stdio::null()).status();
        }
    }
}

async fn remove_all_sandboxes(client: CriClient) {
    let mut runtime = client.runtime;
    let Ok(list) = runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await else { return };
    for sandbox in list.into_inner().items {
        let _ = runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.id.clone() }).await;
        let _ = runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox.id }).await;
    }
}

/// `GET /` of an HTTP server, as text (std only: the point is the network, not a client).
fn http_get(address: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let address = address.parse().map_err(|e| std::io::Error::other(format!("{address}: {e}")))?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_containerd_serves_cri_and_pulls_from_a_local_registry() {
    let Some(node) = Node::start().await else { return };
    let client = &node.containerd().client;
    let version = client.version(Duration::from_secs(5)).await.unwrap();
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");

    let reference = node.image("busybox:1.35");
    let mut images = client.image.clone();
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
    let missing = ImageSpec { image: node.image("nope:1"), ..Default::default() };
    let err = images
        .pull_image(PullImageRequest { image: Some(missing), auth: None, sandbox_config: None })
        .await
        .expect_err("pulling a missing image fails");
    assert!(err.message().contains("not found"), "{}", err.message());
    assert_eq!(node.stop(), Vec::<String>::new(), "mounts left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_and_a_container_run_exec_log_and_go_away() {
    let Some(node) = Node::start().await else { return };
    let client = &node.containerd().client;
    let (mut runtime, mut images) = (client.runtime.clone(), client.image.clone());
    let busybox = ImageSpec { image: node.image("busybox:1.35"), ..Default::default() };
    images
        .pull_image(PullImageRequest { image: Some(busybox.clone()), auth: None, sandbox_config: None })
        .await
        .unwrap();

    let log_directory = node.dir.path().join("pod-logs");
    std::fs::create_dir_all(&log_directory).unwrap();
    let host_network = NamespaceOption { network: NamespaceMode::Node as i32, ..Default::default() };
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "p".into(),
            uid: "uid-p".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        // No hostname: a host-network sandbox shares the node's UTS namespace, and runc
        // refuses to set a hostname there (the agent must leave it empty too).
        log_directory: log_directory.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(host_network),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox = runtime
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(sandbox_config.clone()), runtime_handler: String::new() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox (pulls berth/pause:1): {e}\n{}", node.containerd_log()))
        .into_inner()
        .pod_sandbox_id;
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "c".into(), attempt: 0 }),
        image: Some(busybox),
        command: vec!["sh".into(), "-c".into(), "echo hello from berth; exec sleep 3600".into()],
        log_path: "c/0.log".into(),
        ..Default::default()
    };
    let id = runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    runtime.start_container(StartContainerRequest { container_id: id.clone() }).await.expect("StartContainer");
    let status = |runtime: &mut berth_proto::cri::runtime_service_client::RuntimeServiceClient<_>| {
        let request = ContainerStatusRequest { container_id: id.clone(), verbose: false };
        let mut runtime = runtime.clone();
        async move { runtime.container_status(request).await.unwrap().into_inner().status.unwrap() }
    };
    assert_eq!(status(&mut runtime).await.state, ContainerState::ContainerRunning as i32);

    let exec = runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), "echo $((6*7))".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!((exec.exit_code, String::from_utf8_lossy(&exec.stdout).as_ref()), (0, "42\n"));

    // The CRI log format: `{RFC 3339 time} {stream} {F|P} {text}`.
    let log_file = log_directory.join("c/0.log");
    let log = berth_testkit::eventually(Duration::from_secs(10), "the container's first log line", async || {
        std::fs::read_to_string(&log_file).ok().filter(|t| t.contains("hello from berth"))
    })
    .await;
    let fields: Vec<&str> = log.lines().next().unwrap().splitn(4, ' ').collect();
    assert_eq!(fields[1..], ["stdout", "F", "hello from berth"], "{log}");

    runtime.stop_container(StopContainerRequest { container_id: id.clone(), timeout: 1 }).await.expect("StopContainer");
    assert_eq!(status(&mut runtime).await.state, ContainerState::ContainerExited as i32);
    runtime.remove_container(RemoveContainerRequest { container_id: id }).await.expect("RemoveContainer");
    runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.clone() }).await.expect("StopPodSandbox");
    runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox }).await.expect("RemovePodSandbox");
    let left = runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.unwrap().into_inner().items;
    assert!(left.is_empty(), "sandboxes left: {left:?}");
    assert_eq!(node.stop(), Vec::<String>::new(), "mounts left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_their_own_address_and_two_listen_on_the_same_port() {
    let Some(node) = Node::with_pod_network().await else { return };
    let client = node.containerd().client.clone();
    let (mut runtime, mut images) = (client.runtime.clone(), client.image.clone());
    let http = ImageSpec { image: node.image("http:v1"), ..Default::default() };
    images.pull_image(PullImageRequest { image: Some(http.clone()), auth: None, sandbox_config: None }).await.unwrap();

    let mut addresses = vec![];
    for i in 0..2 {
        let name = format!("web-{i}");
        let log_directory = node.dir.path().join("pod-logs").join(&name);
        std::fs::create_dir_all(&log_directory).unwrap();
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.clone(),
                uid: format!("uid-{i}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.clone(),
            log_directory: log_directory.display().to_string(),
            linux: Some(LinuxPodSandboxConfig::default()),
            ..Default::default()
        };
        let sandbox = runtime
            .run_pod_sandbox(RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", node.containerd_log()))
            .into_inner()
            .pod_sandbox_id;
        let status = runtime
            .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox.clone(), verbose: false })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        let ip = status.network.expect("a pod-network sandbox has a network status").ip;
        // The image's ENTRYPOINT runs: the container config has no command.
        let container = ContainerConfig {
            metadata: Some(ContainerMetadata { name: "http".into(), attempt: 0 }),
            image: Some(http.clone()),
            log_path: "http/0.log".into(),
            ..Default::default()
        };
        let id = runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox,
                config: Some(container),
                sandbox_config: Some(config),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        runtime.start_container(StartContainerRequest { container_id: id }).await.expect("StartContainer");
        addresses.push(ip);
    }
    let subnet_prefix = format!("172.26.{}.", std::process::id() % 250);
    assert!(addresses.iter().all(|ip| ip.starts_with(&subnet_prefix)), "{addresses:?} not in {subnet_prefix}0/24");
    assert_ne!(addresses[0], addresses[1], "two pods share an address");
    for ip in &addresses {
        let answer = berth_testkit::eventually(Duration::from_secs(10), "the pod's HTTP server", async || {
            http_get(&format!("{ip}:8080")).ok().filter(|a| a.contains("berth http v1"))
        })
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }
    assert_eq!(node.stop(), Vec::<String>::new(), "mounts left behind");
}

/// A real agent (`--runtime containerd`, its own containerd) against an in-process control
/// plane: a pod from an image with no command is scheduled before its node has a podCIDR
/// (so its sandbox cannot be created yet: the agent keeps retrying, the pod stays
/// ContainerCreating); once the node gets its podCIDR the agent configures the pod network,
/// and the pod runs on an address of its own and answers HTTP there. A pod whose image is
/// missing backs off (ErrImagePull, ImagePullBackOff) and runs once the image is pushed.
/// Deleted, their sandboxes go away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_runs_a_pod_from_an_image_on_its_own_address() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};

    // Image garbage collection at any usage, for images seen for 20 s and unused.
    let gc = berth_agent::runtime::cri::image_gc::ImageGcPolicy {
        high_percent: 1,
        low_percent: 0,
        min_age: Duration::from_secs(20),
        period: Duration::from_secs(2),
    };
    let Some(node) = AgentNode::start_with("172.30", gc).await else { return };
    let (client, registry, dir, endpoint, subnet) =
        (node.client.clone(), &node.registry, node.dir.path(), node.endpoint.clone(), node.subnet.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let image = format!("{}/berth/http:v1", registry.address);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "http", "image": image}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let waiting = berth_testkit::eventually(Duration::from_secs(60), "web scheduled and waiting", async || {
        let p = pods.get("web").await.ok()?;
        let state = p.status?.container_statuses?.first()?.state.clone()?;
        state.waiting?.reason
    })
    .await;
    assert_eq!(waiting, "ContainerCreating");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = pods.get("web").await.unwrap().status.unwrap();
    assert_eq!((status.phase.as_deref(), status.pod_ip.as_deref()), (Some("Pending"), None), "no sandbox, no IP yet");
    node.assign_pod_cidr().await;
    let ip = berth_testkit::eventually(Duration::from_secs(90), "web Running with its own IP", async || {
        let p = pods.get("web").await.ok()?;
        let status = p.status?;
        (status.phase.as_deref() == Some("Running")).then_some(())?;
        status.pod_ip.filter(|ip| ip.starts_with(&subnet))
    })
    .await;
    let web = pods.get("web").await.unwrap();
    let container = &web.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0];
    assert!(container.container_id.as_deref().unwrap_or_default().starts_with("containerd://"), "{container:?}");
    assert_eq!(web.status.as_ref().unwrap().host_ip.as_deref(), Some("127.0.0.1"));
    let answer = berth_testkit::eventually(Duration::from_secs(10), "the pod's HTTP server", async || {
        http_get(&format!("{ip}:8080")).ok().filter(|a| a.contains("berth http v1"))
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    // An image the registry does not have (yet): ErrImagePull, then ImagePullBackOff with the
    // kubelet's message; once the image is pushed the next try (10 s later) pulls it.
    let late_image = format!("{}/berth/late:v1", registry.address);
    let late: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "late"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "http", "image": late_image}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &late).await.unwrap();
    let waiting = |p: &Pod| {
        let w = p.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.waiting.clone()?;
        Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
    };
    let (_, message) = berth_testkit::eventually(Duration::from_secs(60), "late in ImagePullBackOff", async || {
        pods.get("late").await.ok().as_ref().and_then(waiting).filter(|(reason, _)| reason == "ImagePullBackOff")
    })
    .await;
    assert_eq!(message, format!("Back-off pulling image \"{late_image}\""));
    let pushed = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:http-v1", dir.join("images/oci").display()))
        .arg(format!("docker://{late_image}"))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "skopeo: {}", String::from_utf8_lossy(&pushed.stderr));
    berth_testkit::eventually(Duration::from_secs(60), "late Running once its image exists", async || {
        let p = pods.get("late").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    pods.delete("late", &DeleteParams::default()).await.unwrap();

    // A registry that wants a password: no pull secret or a wrong one is ErrImagePull
    // (unauthorized); the pod's imagePullSecrets (a dockerconfigjson Secret) let it run.
    let private = LocalRegistry::with_password(&dir.join("private"), "berth", "s3cret");
    private.trust(&ContainerdLayout::under(&dir.join("agent")));
    let private_image = format!("{}/berth/private:1", private.address);
    let pushed = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", "berth:s3cret"])
        .arg(format!("oci:{}:http-v1", dir.join("images/oci").display()))
        .arg(format!("docker://{private_image}"))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "skopeo: {}", String::from_utf8_lossy(&pushed.stderr));
    let docker_config = |password: &str| {
        use base64::Engine;
        let config =
            serde_json::json!({"auths": {private.address.clone(): {"username": "berth", "password": password}}});
        base64::engine::general_purpose::STANDARD.encode(config.to_string())
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "default");
    for (name, password) in [("regcred", "s3cret"), ("wrongcred", "nope")] {
        let secret = serde_json::json!({"metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": docker_config(password)}});
        secrets.create(&PostParams::default(), &serde_json::from_value(secret).unwrap()).await.unwrap();
    }
    for (name, secret) in [("nocred", None), ("badcred", Some("wrongcred")), ("withcred", Some("regcred"))] {
        let mut spec = serde_json::json!({"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "http", "image": private_image}]});
        if let Some(secret) = secret {
            spec["imagePullSecrets"] = serde_json::json!([{"name": secret}]);
        }
        let pod = serde_json::json!({"metadata": {"name": name}, "spec": spec});
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    }
    berth_testkit::eventually(Duration::from_secs(60), "withcred Running", async || {
        let p = pods.get("withcred").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    for name in ["nocred", "badcred"] {
        let (reason, message) = berth_testkit::eventually(Duration::from_secs(60), "a pull refused", async || {
            pods.get(name)
                .await
                .ok()
                .as_ref()
                .and_then(waiting)
                .filter(|(r, _)| r == "ErrImagePull" || r == "ImagePullBackOff")
        })
        .await;
        let events = kubectl_ok(
            &node.api_url,
            &["get", "events", "--field-selector", &format!("involvedObject.name={name}")],
            None,
        );
        assert!(
            events.contains("401 Unauthorized") || events.contains("unauthorized"),
            "{name}: {reason} {message}\n{events}"
        );
    }
    for name in ["nocred", "badcred", "withcred"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }

    pods.delete("web", &DeleteParams::default()).await.unwrap();
    berth_testkit::eventually(Duration::from_secs(30), "web and late deleted", async || {
        let gone = pods.get_opt("web").await.ok()?.is_none() && pods.get_opt("late").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    let cri = berth_agent::runtime::cri::connect(&endpoint, Duration::from_secs(5)).await.unwrap();
    berth_testkit::eventually(Duration::from_secs(30), "the sandbox removed", async || {
        let mut runtime = cri.runtime.clone();
        let items = runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.ok()?.into_inner().items;
        items.is_empty().then_some(())
    })
    .await;
    // Unused images go (the filesystem is over the 1 % threshold); the sandbox image stays.
    let present = async |image: &str| {
        let mut images = cri.image.clone();
        let spec = ImageSpec { image: image.to_string(), ..Default::default() };
        images.image_status(ImageStatusRequest { image: Some(spec), verbose: false }).await.ok()?.into_inner().image
    };
    berth_testkit::eventually(Duration::from_secs(60), "the unused images collected", async || {
        (present(&late_image).await.is_none() && present(&image).await.is_none()).then_some(())
    })
    .await;
    assert!(present(&format!("{}/berth/pause:1", registry.address)).await.is_some(), "the sandbox image is kept");
    node.stop().await;
}

/// A one-server control plane and a real agent with its own containerd pulling from a local
/// registry, its pods on a bridge of their own with addresses from `{prefix}.{pid % 250}.0/24`
/// (given by the test: no node IPAM). Every sandbox is removed before the agent's
/// containerd stops, also when a test fails half-way.
struct AgentNode {
    client: kube::Client,
    api_url: String,
    registry: LocalRegistry,
    /// `{prefix}.{n}.`: the pods' addresses start with it.
    subnet: String,
    endpoint: String,
    cancel: tokio_util::sync::CancellationToken,
    agent: Option<berth_agent::Agent>,
    config: berth_agent::AgentConfig,
    _bridge: BridgeGuard,
    _cluster: berth_control::testing::Cluster,
    dir: tempfile::TempDir,
}

impl AgentNode {
    const NAME: &str = "ctr-node";

    async fn start(prefix: &str) -> Option<AgentNode> {
        AgentNode::start_with(prefix, Default::default()).await
    }

    async fn start_with(
        prefix: &str,
        image_gc: berth_agent::runtime::cri::image_gc::ImageGcPolicy,
    ) -> Option<AgentNode> {
        use berth_agent::{Agent, AgentConfig, CriOptions, Heartbeat, NodeTemplate, RuntimeKind};
        if let Some(why) = missing_prerequisite() {
            eprintln!("skipping: {why}");
            return None;
        }
        berth_testkit::init_tracing();
        let dir = tempfile::Builder::new().prefix("bctr").tempdir_in("/tmp").unwrap();
        let registry = LocalRegistry::with_images(dir.path());
        let n = std::process::id();
        let subnet = format!("{prefix}.{}.", n % 250);
        let settings = berth_control::tasks::Settings { node_cidrs: None, ..Default::default() };
        let cluster = berth_control::testing::Cluster::start_with(1, settings).await;
        let client = cluster.client();
        let data_dir = dir.path().join("agent");
        registry.trust(&ContainerdLayout::under(&data_dir));
        let bridge = format!("bb{}{}", prefix.rsplit('.').next().unwrap_or_default(), n % 10_000);
        let config = AgentConfig {
            node_name: Self::NAME.into(),
            template: NodeTemplate { heartbeat: Heartbeat::with_renew(Duration::from_secs(1)), ..Default::default() },
            runtime: RuntimeKind::Containerd(Box::new(CriOptions {
                endpoint: None,
                sandbox_image: format!("{}/berth/pause:1", registry.address),
                cni_bin_dir: PathBuf::from("/usr/lib/cni"),
                pod_bridge: bridge.clone(),
                images_dir: Some(dir.path().join("archives")),
                image_gc,
                // This node is alone, in the test's own network namespace: no routes or
                // masquerade rules of the agent's on the host.
                cluster_cidr: None,
                ..Default::default()
            })),
            data_dir: data_dir.clone(),
            listen_port: 0,
            fake_start_delay: None,
            stop_containers_on_exit: false,
            client_ca_pem: berth_control::testing::agent_client_ca(),
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let agent = Agent::start(client.clone(), config.clone(), cancel.clone())
            .await
            .expect("the agent starts its containerd");
        let endpoint = ContainerdLayout::under(&data_dir).endpoint();
        Some(AgentNode {
            client,
            api_url: cluster.servers[0].api_url.clone(),
            registry,
            subnet,
            endpoint,
            cancel,
            agent: Some(agent),
            config,
            _bridge: BridgeGuard(bridge),
            _cluster: cluster,
            dir,
        })
    }

    /// Gives the node its podCIDR (pods wait in ContainerCreating until it has one).
    async fn assign_pod_cidr(&self) {
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.client.clone());
        let cidr = format!("{}0/24", self.subnet);
        let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        berth_testkit::eventually(Duration::from_secs(30), "the node registered and given its podCIDR", async || {
            nodes.patch(Self::NAME, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.ok()
        })
        .await;
    }

    fn image(&self, name: &str) -> String {
        format!("{}/berth/{name}", self.registry.address)
    }

    /// Stops the agent (and its containerd; the containers live on in their shims) and
    /// starts a new one on the same data directory.
    async fn restart_agent(&mut self) {
        self.cancel.cancel();
        if let Some(agent) = self.agent.take() {
            agent.stopped().await;
        }
        self.cancel = tokio_util::sync::CancellationToken::new();
        let agent = berth_agent::Agent::start(self.client.clone(), self.config.clone(), self.cancel.clone())
            .await
            .expect("the agent restarts");
        self.agent = Some(agent);
    }

    async fn stop(mut self) {
        self.teardown();
    }

    /// Stops the agent (and its containerd; the containers live on in their shims), then
    /// removes every sandbox through a containerd started again on the same directories:
    /// sweeping while the agent runs would race it recreating the pods it still has.
    fn teardown(&mut self) {
        self.cancel.cancel();
        let Some(agent) = self.agent.take() else { return };
        let berth_agent::RuntimeKind::Containerd(options) = &self.config.runtime else { return };
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(60), agent.stopped()).await;
                let removed =
                    berth_agent::runtime::cri::remove_leftover_sandboxes(options, &self.config.data_dir).await;
                if let Err(e) = removed {
                    eprintln!("teardown: the sandboxes were not removed: {e}");
                }
            })
        });
    }
}

impl Drop for AgentNode {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Deletes a bridge when dropped.
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", "dev", &self.0]).stderr(Stdio::null()).status();
    }
}

/// Runs the real kubectl against `api_url` (bounded by `timeout`), feeding `stdin`.
fn kubectl(api_url: &str, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    use std::io::Write;
    let kubeconfig = berth_control::testing::kubeconfig_file(api_url);
    let mut child = Command::new("timeout")
        .args(["60", "kubectl", "-s", api_url])
        .args(args)
        .env("KUBECONFIG", kubeconfig.path())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn kubectl_ok(api_url: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = tokio::task::block_in_place(|| kubectl(api_url, args, stdin));
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// kubectl 1.32 against a containerd node: exec (WebSocket v5, stdin closed at its end),
/// exec -it through a pty, cp both ways, attach, port-forward (WebSocket-tunnelled SPDY),
/// and logs (tail, follow, timestamps) from containerd's CRI log files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_execs_copies_attaches_forwards_and_reads_logs() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};

    let Some(node) = AgentNode::start("172.29").await else { return };
    node.assign_pod_cidr().await;
    let api = node.api_url.clone();
    let admin_kubeconfig = berth_control::testing::kubeconfig_file(&api);
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "box"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "shell", "image": node.image("busybox:1.35"),
             "command": ["sh", "-c", "echo hello from box; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]},
            {"name": "web", "image": node.image("http:v1")}
        ]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    berth_testkit::eventually(Duration::from_secs(90), "box Running", async || {
        let p = pods.get("box").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;

    // exec, with stdout and the exit code.
    assert_eq!(kubectl_ok(&api, &["exec", "box", "-c", "shell", "--", "cat", "/etc/hostname"], None).trim(), "box");
    let failed = tokio::task::block_in_place(|| {
        kubectl(&api, &["exec", "box", "-c", "shell", "--", "sh", "-c", "exit 3"], None)
    });
    assert_eq!(failed.status.code(), Some(3), "{}", String::from_utf8_lossy(&failed.stderr));
    // exec -i: 200 KB in, and the end of stdin reaches the command (v5's close channel).
    let input = vec![b'x'; 200_000];
    let counted = kubectl_ok(
        &api,
        &["exec", "-i", "box", "-c", "shell", "--", "sh", "-c", "cat > /tmp/in; wc -c < /tmp/in"],
        Some(&input),
    );
    assert_eq!(counted.trim(), "200000");
    // exec -it through a pseudo-terminal (`script` gives kubectl one).
    let tty = tokio::task::block_in_place(|| {
        Command::new("timeout")
            .args(["60", "script", "-qec"])
            .arg(format!("kubectl -s {api} exec -it box -c shell -- sh -c 'tty; echo tty-done'"))
            .arg("/dev/null")
            .env("KUBECONFIG", admin_kubeconfig.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(shown.contains("/dev/pts/") && shown.contains("tty-done"), "exec -it: {shown}");

    // berthctl exec: the same session through kube-rs's client; the exit code carries over.
    let berthctl = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("berthctl");
    assert!(berthctl.exists(), "{} is missing: build the workspace's binaries first", berthctl.display());
    let berthctl_exec = |args: &[&str], stdin: Option<&[u8]>| {
        use std::io::Write;
        let mut child = Command::new(&berthctl)
            .args(["-s", &api, "exec", "box", "-c", "shell"])
            .args(args)
            .env("BERTH_HOME", node.dir.path())
            .env("KUBECONFIG", admin_kubeconfig.path())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        tokio::task::block_in_place(|| child.wait_with_output().unwrap())
    };
    let hostname = berthctl_exec(&["--", "cat", "/etc/hostname"], None);
    assert_eq!(String::from_utf8_lossy(&hostname.stdout), "box\n", "{}", String::from_utf8_lossy(&hostname.stderr));
    assert_eq!(berthctl_exec(&["--", "sh", "-c", "exit 7"], None).status.code(), Some(7));
    let counted = berthctl_exec(&["-i", "--", "wc", "-c"], Some(&[b'y'; 5000]));
    assert_eq!(String::from_utf8_lossy(&counted.stdout).trim(), "5000", "{}", String::from_utf8_lossy(&counted.stderr));

    // cp both ways (tar in the container, stdin closed at the end of the archive).
    let local = node.dir.path().join("payload.txt");
    std::fs::write(&local, "payload line\n".repeat(1000)).unwrap();
    kubectl_ok(&api, &["cp", &local.display().to_string(), "box:/tmp/payload.txt", "-c", "shell"], None);
    let back = node.dir.path().join("back.txt");
    kubectl_ok(&api, &["cp", "box:/tmp/payload.txt", &back.display().to_string(), "-c", "shell"], None);
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&local).unwrap());

    // attach: the running container's output as it comes.
    let attached = tokio::task::block_in_place(|| {
        Command::new("timeout")
            .args(["4", "kubectl", "-s", &api, "attach", "box", "-c", "shell"])
            .env("KUBECONFIG", admin_kubeconfig.path())
            .output()
            .unwrap()
    });
    assert!(String::from_utf8_lossy(&attached.stdout).contains("tick"), "attach: {attached:?}");

    // port-forward: a local port reaching the pod's port 8080.
    let port = free_port();
    let mut forward = KillOnDrop(
        Command::new("kubectl")
            .args(["-s", &api, "port-forward", "pod/box", &format!("{port}:8080")])
            .env("KUBECONFIG", admin_kubeconfig.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let answer = berth_testkit::eventually(Duration::from_secs(20), "an answer through port-forward", async || {
        http_get(&format!("127.0.0.1:{port}")).ok().filter(|a| a.contains("berth http v1"))
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(forward.0.try_wait().unwrap().is_none(), "port-forward still runs");
    drop(forward);

    // berthctl port-forward: kube-rs's WebSocket port-forward (channel protocol), which the
    // agent bridges to SPDY streams.
    let mut forward = KillOnDrop(
        Command::new(&berthctl)
            .args(["-s", &api, "port-forward", "pod/box", ":8080"])
            .env("BERTH_HOME", node.dir.path())
            .env("KUBECONFIG", admin_kubeconfig.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let first_line = tokio::task::block_in_place(|| {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(forward.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
        line
    });
    let local = first_line.trim().strip_prefix("Forwarding from 127.0.0.1:").and_then(|r| r.split(' ').next()).unwrap();
    for _ in 0..2 {
        let answer = http_get(&format!("127.0.0.1:{local}")).unwrap_or_default();
        assert!(answer.contains("berth http v1"), "berthctl port-forward ({first_line}): {answer}");
    }
    drop(forward);

    // logs: all, --tail, --timestamps, -f (bounded), from containerd's CRI log file.
    let logs = kubectl_ok(&api, &["logs", "box", "-c", "shell"], None);
    assert!(logs.starts_with("hello from box\ntick 1\n"), "{logs}");
    assert_eq!(kubectl_ok(&api, &["logs", "box", "-c", "shell", "--tail=1"], None).lines().count(), 1);
    let stamped = kubectl_ok(&api, &["logs", "box", "-c", "shell", "--timestamps", "--tail=1"], None);
    let (time, text) = stamped.trim().split_once(' ').unwrap();
    assert!(time.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && text.starts_with("tick"), "{stamped}");
    let followed = tokio::task::block_in_place(|| {
        Command::new("timeout")
            .args(["3", "kubectl", "-s", &api, "logs", "-f", "--tail=1", "box", "-c", "shell"])
            .env("KUBECONFIG", admin_kubeconfig.path())
            .output()
            .unwrap()
    });
    let followed = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.lines().filter(|l| l.starts_with("tick")).count() >= 2, "logs -f: {followed}");

    // kubectl run of an image imported from the node's air-gap archives (no registry), and
    // a Deployment of an image without a command: two replicas on one port, two addresses.
    kubectl_ok(&api, &["run", "offline", "--image=berth/busybox:1.35", "--", "sleep", "600"], None);
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers: [{{name: http, image: {}, ports: [{{containerPort: 8080}}]}}]\n",
        node.image("http:v1")
    );
    kubectl_ok(&api, &["apply", "-f", "-"], Some(deployment.as_bytes()));
    let ips = berth_testkit::eventually(Duration::from_secs(90), "offline and both web replicas Running", async || {
        let running = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        running(&pods.get("offline").await.ok()?).then_some(())?;
        let list = pods.list(&kube::api::ListParams::default().labels("app=web")).await.ok()?;
        let ips: Vec<String> =
            list.items.iter().filter(|p| running(p)).filter_map(|p| p.status.as_ref()?.pod_ip.clone()).collect();
        (ips.len() == 2).then_some(ips)
    })
    .await;
    assert_ne!(ips[0], ips[1]);
    for ip in &ips {
        let answer = berth_testkit::eventually(Duration::from_secs(10), "a replica's HTTP server", async || {
            http_get(&format!("{ip}:8080")).ok().filter(|a| a.contains("berth http v1"))
        })
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"));
    }

    // A container the pod does not have: the API server's error.
    let wrong = tokio::task::block_in_place(|| kubectl(&api, &["exec", "box", "-c", "nope", "--", "true"], None));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("container nope is not valid for pod box"), "{wrong:?}");
    node.stop().await;
}

/// Inside real containers: init containers, ConfigMap/Secret/fieldRef/resourceFieldRef
/// env, configMap/secret/projected volumes (updated in place), resource limits in the
/// container's cgroup, runAsUser, startup/readiness/liveness probes (tcp, http on the pod
/// IP, exec through ExecSync); then an agent restart adopts the running containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_their_config_probes_and_limits_and_survive_an_agent_restart() {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use kube::api::{Api, Patch, PatchParams};

    let Some(mut node) = AgentNode::start("172.28").await else { return };
    node.assign_pod_cidr().await;
    let api = node.api_url.clone();
    let client = node.client.clone();
    let apply = |yaml: String| {
        let out = tokio::task::block_in_place(|| kubectl(&api, &["apply", "-f", "-"], Some(yaml.as_bytes())));
        assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    };
    apply(format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{greeting: hello}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec}}
stringData: {{token: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: full, labels: {{app: full}}}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init
    image: {busybox}
    command: [sh, -c, "echo init-ran > /work/init.txt"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: main
    image: {http}
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}
    - {{name: TOKEN, valueFrom: {{secretKeyRef: {{name: sec, key: token}}}}}}
    - {{name: MY_POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: MEM_MI, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}
    securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
    volumeMounts:
    - {{name: work, mountPath: /work}}
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: proj, mountPath: /etc/proj}}
    startupProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
    readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
    livenessProbe: {{exec: {{command: [cat, /etc/cfg/greeting]}}, periodSeconds: 2}}
  volumes:
  - {{name: work, emptyDir: {{}}}}
  - {{name: cfg, configMap: {{name: cfg}}}}
  - {{name: sec, secret: {{secretName: sec}}}}
  - name: proj
    projected:
      sources:
      - configMap: {{name: cfg, items: [{{key: greeting, path: cm/greeting}}]}}
      - secret: {{name: sec}}
      - downwardAPI: {{items: [{{path: namespace, fieldRef: {{fieldPath: metadata.namespace}}}}, {{path: app, fieldRef: {{fieldPath: "metadata.labels['app']"}}}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: sick}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {busybox}
    command: [sh, -c, "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 600"]
    livenessProbe: {{exec: {{command: [cat, /tmp/healthy]}}, periodSeconds: 1, failureThreshold: 1}}
"#,
        busybox = node.image("busybox:1.35"),
        http = node.image("http:v1")
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ready = |p: &Pod| {
        p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status == "True")
    };
    berth_testkit::eventually(
        Duration::from_secs(90),
        "full Ready (startup, then readiness on the pod IP)",
        async || pods.get("full").await.ok().as_ref().and_then(ready).filter(|r| *r),
    )
    .await;
    let inside = kubectl_ok(
        &api,
        &["exec", "full", "-c", "main", "--", "sh", "-c",
          "echo $GREETING $TOKEN $MY_POD $MEM_MI; id -u; cat /work/init.txt /etc/cfg/greeting /etc/sec/token /etc/proj/cm/greeting /etc/proj/token /etc/proj/namespace; echo; cat /etc/proj/app; echo; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us"],
        None,
    );
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(
        lines,
        vec!["hello s3cret full 64", "1000", "init-ran", "hellos3crethellos3cretdefault", "full", "67108864", "50000"],
        "{inside}"
    );
    let full = pods.get("full").await.unwrap();
    let status = full.status.as_ref().unwrap();
    let my_ip = kubectl_ok(&api, &["exec", "full", "-c", "main", "--", "sh", "-c", "echo $MY_IP"], None);
    assert_eq!(Some(my_ip.trim()), status.pod_ip.as_deref(), "status.podIP in the env is the pod's own address");
    let main = &status.container_statuses.as_ref().unwrap()[0];
    assert!(main.image_id.contains("sha256:"), "imageID {:?}", main.image_id);
    let init = &status.init_container_statuses.as_ref().unwrap()[0];
    let init_done = init.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| (t.exit_code, t.reason.clone()));
    assert_eq!(init_done, Some((0, Some("Completed".into()))));

    // A ConfigMap update reaches the mounted file.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.patch("cfg", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"greeting": "bonjour"}})))
        .await
        .unwrap();
    berth_testkit::eventually(Duration::from_secs(90), "the new greeting in the volume", async || {
        let out = tokio::task::block_in_place(|| {
            kubectl(&api, &["exec", "full", "-c", "main", "--", "cat", "/etc/cfg/greeting"], None)
        });
        (String::from_utf8_lossy(&out.stdout) == "bonjour").then_some(())
    })
    .await;

    // A failing liveness probe (exec through ExecSync) restarts the container.
    berth_testkit::eventually(Duration::from_secs(60), "sick restarted by its liveness probe", async || {
        let p = pods.get("sick").await.ok()?;
        let restarts = p.status?.container_statuses?.first()?.restart_count;
        (restarts >= 1).then_some(())
    })
    .await;

    // The agent's events, as the kubelet writes them.
    let events = kubectl_ok(&api, &["get", "events", "-o", "json"], None);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let reasons = |pod: &str| -> Vec<String> {
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["involvedObject"]["name"] == pod)
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    };
    for reason in ["Pulling", "Pulled", "Created", "Started"] {
        assert!(reasons("full").iter().any(|r| r == reason), "{reason} for full: {:?}", reasons("full"));
    }
    for reason in ["Unhealthy", "Killing"] {
        assert!(reasons("sick").iter().any(|r| r == reason), "{reason} for sick: {:?}", reasons("sick"));
    }

    // An agent restart adopts the running containers: same container, no restart.
    let before = pods.get("full").await.unwrap().status.unwrap().container_statuses.unwrap()[0].clone();
    node.restart_agent().await;
    // A pod created now runs only once the new agent has listed (and so synced) the node's
    // pods: after that, `full`'s status is the new agent's view.
    kubectl_ok(
        &api,
        &["run", "after-restart", &format!("--image={}", node.image("busybox:1.35")), "--", "sleep", "600"],
        None,
    );
    berth_testkit::eventually(Duration::from_secs(60), "after-restart Running", async || {
        let p = pods.get("after-restart").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let after = berth_testkit::eventually(Duration::from_secs(30), "full Ready after the agent restart", async || {
        let p = pods.get("full").await.ok()?;
        ready(&p).filter(|r| *r)?;
        Some(p.status?.container_statuses?[0].clone())
    })
    .await;
    assert_eq!((after.container_id.clone(), after.restart_count), (before.container_id.clone(), before.restart_count));
    let answer = kubectl_ok(&api, &["exec", "full", "-c", "main", "--", "cat", "/work/init.txt"], None);
    assert_eq!(answer.trim(), "init-ran");

    // containerd killed under the agent: the agent starts it again, the running container
    // lives on (its shim), and new pods start.
    let killed = node.agent.as_ref().unwrap().containerd_pid().unwrap();
    // SAFETY: kill(2) on the containerd this test's agent started.
    unsafe { libc::kill(killed as i32, libc::SIGKILL) };
    berth_testkit::eventually(Duration::from_secs(30), "containerd started again", async || {
        node.agent.as_ref().unwrap().containerd_pid().filter(|pid| *pid != killed)
    })
    .await;
    kubectl_ok(
        &api,
        &["run", "after-crash", &format!("--image={}", node.image("busybox:1.35")), "--", "sleep", "600"],
        None,
    );
    berth_testkit::eventually(Duration::from_secs(60), "a new pod Running after the restart", async || {
        let p = pods.get("after-crash").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let full = pods.get("full").await.unwrap().status.unwrap().container_statuses.unwrap()[0].clone();
    assert_eq!((full.container_id, full.restart_count), (before.container_id, before.restart_count));
    node.stop().await;
}

/// A local cluster started with `berthctl up`, stopped and deleted (`down --purge`) on drop.
struct LocalCluster {
    berthctl: PathBuf,
    dir: PathBuf,
}

impl LocalCluster {
    fn berthctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("timeout")
            .arg("240")
            .arg(&self.berthctl)
            .args(args)
            .args(["--data-dir", &self.dir.display().to_string()])
            .env("NO_COLOR", "1")
            .output()
            .expect("berthctl")
    }

    /// The node network's X (`172.31.X.0/24`) and the first server's API URL.
    fn subnet_and_api(&self) -> (u64, String) {
        let state = self.state();
        let subnet = state["network"]["subnet"].as_u64().expect("a node network is recorded");
        (subnet, state["servers"][0]["apiUrl"].as_str().expect("an API URL").to_string())
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("cluster.json")).unwrap()).unwrap()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.berthctl(&["down", "--purge"]);
    }
}

/// What of the local cluster in `dir` on node network `subnet` is still on this machine:
/// processes running from it, mounts under it, its namespaces, its host link.
fn leftovers(dir: &Path, subnet: u64) -> Vec<String> {
    let marker = dir.display().to_string();
    let mut left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&marker).then(|| format!("process {pid}: {cmdline}"))
        })
        .collect();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    left.extend(mounts.lines().filter(|l| l.contains(&marker)).map(|l| format!("mount {l}")));
    let prefix = format!("berth-{subnet}-");
    left.extend(
        std::fs::read_dir("/var/run/netns")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with(&prefix))
            .map(|name| format!("netns {name}")),
    );
    let link = format!("/sys/class/net/berth-net-{subnet}");
    if Path::new(&link).exists() {
        left.push(link);
    }
    left
}

/// `berthctl up --agents 2` with containerd gives two nodes, each agent (with its
/// containerd) in a network namespace of its own with an address of its own, and their
/// pods distinct addresses that answer from the host; `down` after an agent was killed
/// (its containers still running) leaves no process, mount, namespace or link behind.
#[test]
fn a_local_cluster_gives_each_node_its_own_namespace_and_address() {
    let Some((_tmp, cluster, base)) = two_node_cluster() else { return };
    let state = cluster.state();
    let (subnet, api) = cluster.subnet_and_api();
    assert_eq!(api, format!("https://172.31.{subnet}.1:{base}"), "the server listens on the network's host address");
    // ... and on loopback, which the host's kubeconfig uses.
    let kubeconfig = std::fs::read_to_string(cluster.dir.join("admin.kubeconfig")).unwrap();
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{base}")), "{kubeconfig}");
    assert!(kubectl(&format!("https://127.0.0.1:{base}"), &["get", "nodes"], None).status.success());

    // Two nodes, two addresses, two namespaces (neither the host's).
    let addresses = kubectl_blocking(
        &api,
        &["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.metadata.name}={.status.addresses[0].address} {end}"#],
    );
    assert_eq!(addresses.trim(), format!("node-1=172.31.{subnet}.11 node-2=172.31.{subnet}.12"));
    let netns_of = |pid: u64| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let agents: Vec<u64> = (0..2).map(|j| state["agents"][j]["pid"].as_u64().unwrap()).collect();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(netns_of(agents[0]) != host && netns_of(agents[1]) != host && netns_of(agents[0]) != netns_of(agents[1]));

    // One pod per node, from an image with no command: distinct addresses, each answering.
    let daemonset = r#"{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "http", "image": "berth/http:v1"}]}}}}"#;
    let applied = kubectl(&api, &["apply", "-f", "-"], Some(daemonset.as_bytes()));
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let pods = berth_testkit::blocking::eventually(Duration::from_secs(120), "a web pod Running on each node", || {
        let out = kubectl_blocking(
            &api,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                r#"jsonpath={range .items[*]}{.spec.nodeName}={.status.phase}={.status.podIP} {end}"#,
            ],
        );
        let pods: Vec<(String, String)> = out
            .split_whitespace()
            .filter_map(|p| match p.split('=').collect::<Vec<_>>()[..] {
                [node, "Running", ip] if !ip.is_empty() => Some((node.to_string(), ip.to_string())),
                _ => None,
            })
            .collect();
        (pods.len() == 2 && pods[0].0 != pods[1].0).then_some(pods)
    });
    assert_ne!(pods[0].1, pods[1].1, "{pods:?}");
    for (node, ip) in &pods {
        assert_routed_to_cluster(ip, subnet);
        let answer =
            berth_testkit::blocking::eventually(Duration::from_secs(30), "the pod to answer from the host", || {
                http_get(&format!("{ip}:8080")).ok()
            });
        assert!(answer.contains("berth http v1"), "{node} {ip}: {answer}");
    }

    // Across nodes, by pod IP and without NAT: node-1's pod reaches node-2's, which sees
    // node-1's pod's own address (host-gw routes, masquerade only out of the cluster CIDR).
    let names = kubectl_blocking(
        &api,
        &["get", "pods", "-l", "app=web", "-o", r#"jsonpath={range .items[*]}{.spec.nodeName}={.metadata.name} {end}"#],
    );
    let pod_on =
        |node: &str| names.split_whitespace().find_map(|p| p.strip_prefix(&format!("{node}="))).unwrap().to_string();
    let ip_on = |node: &str| pods.iter().find(|(n, _)| n == node).unwrap().1.clone();
    let (from, to) = (pod_on("node-1"), pod_on("node-2"));
    let fetched =
        kubectl_blocking(&api, &["exec", &from, "--", "wget", "-qO-", &format!("http://{}:8080/", ip_on("node-2"))]);
    assert!(fetched.contains("berth http v1"), "node-1's pod → node-2's pod: {fetched:?}");
    let logs = kubectl_blocking(&api, &["logs", &to]);
    assert!(logs.contains(&format!("{}]", ip_on("node-1"))), "node-2's pod saw node-1's pod's address: {logs}");
    let in_node = |node: &str, args: &[&str]| {
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/berth-{subnet}-{node}"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let routes = in_node("node-1", &["ip", "route", "show", "proto", "66"]);
    assert!(routes.contains(&format!("via 172.31.{subnet}.12")), "{routes}");
    assert!(in_node("node-1", &["nft", "list", "tables"]).contains("table ip berth-podnet"));
    assert!(in_node("node-1", &["nft", "list", "tables"]).contains("table ip berth-proxy"));
    // `berth-agent --cleanup` removes exactly the agent's routes and tables.
    let cleaned = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/berth-{subnet}-node-1"))
        .arg(env!("CARGO_BIN_EXE_berth-agent"))
        .arg("--cleanup")
        .output()
        .unwrap();
    assert!(cleaned.status.success(), "{}", String::from_utf8_lossy(&cleaned.stderr));
    assert_eq!(in_node("node-1", &["ip", "route", "show", "proto", "66"]), "");
    let tables = in_node("node-1", &["nft", "list", "tables"]);
    assert!(!tables.contains("berth-podnet") && !tables.contains("berth-proxy"), "{tables}");
    assert!(in_node("node-1", &["ip", "route", "show"]).contains("default via"), "other routes stay");

    // An agent killed with its containers running: `down` still removes everything.
    // SAFETY: kill(2) on the agent process this test's cluster started.
    unsafe { libc::kill(agents[1] as i32, libc::SIGKILL) };
    let down = cluster.berthctl(&["down"]);
    assert!(down.status.success(), "down: {}", String::from_utf8_lossy(&down.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = leftovers(&cluster.dir, subnet);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left = leftovers(&cluster.dir, subnet);
    }
    assert!(left.is_empty(), "left after down: {left:#?}");
    assert!(cluster.dir.join("agent-node-2").is_dir(), "down keeps the data");
}

/// Fails unless the host sends `ip` into the cluster's node network `subnet` (the host's
/// request must never leave for an address of the machine's own network).
fn assert_routed_to_cluster(ip: &str, subnet: u64) {
    let out = Command::new("ip").args(["-o", "route", "get", ip]).output().unwrap();
    let route = String::from_utf8_lossy(&out.stdout);
    assert!(route.contains(&format!("dev berth-net-{subnet} ")), "{ip} is not routed into the cluster: {route}");
}

/// `berthctl up --agents 2` with containerd and the demo images, under a temporary
/// directory (the cluster is deleted when the returned handle drops, before the
/// directory); None when the machine cannot run it. Also returns the base port.
fn two_node_cluster() -> Option<(tempfile::TempDir, LocalCluster, u16)> {
    two_node_cluster_with_images(&[])
}

/// [`two_node_cluster`] with more of `scripts/build-images`' images (its flags, such as
/// `--kubectl`).
fn two_node_cluster_with_images(build_flags: &[&str]) -> Option<(tempfile::TempDir, LocalCluster, u16)> {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipping: {why}");
        return None;
    }
    let tmp = tempfile::Builder::new().prefix("bup").tempdir_in("/tmp").unwrap();
    let archives = tmp.path().join("archives");
    let built = Command::new(workspace().join("scripts/build-images"))
        .args(["--out", &tmp.path().join("images").display().to_string()])
        .args(["--archives", &archives.display().to_string()])
        .args(build_flags)
        .output()
        .unwrap();
    assert!(built.status.success(), "build-images: {}", String::from_utf8_lossy(&built.stderr));
    let berthctl = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("berthctl");
    assert!(berthctl.exists(), "{} is missing: build the workspace's binaries first", berthctl.display());
    let cluster = LocalCluster { berthctl, dir: tmp.path().join("cluster") };
    // Another test may take a port of the block between our pick and `up`'s check: pick
    // again then (a few times; `up` checks every port before it starts anything).
    for attempt in 1..=5 {
        let base = free_port();
        // The cluster's CA is the test process's, so the tests' kubectl reaches it.
        berth_control::testing::seed_ca(&cluster.dir);
        let up = cluster.berthctl(&[
            "up",
            "--base-port",
            &base.to_string(),
            "--agents",
            "2",
            "--runtime",
            "containerd",
            "--images-dir",
            &archives.display().to_string(),
            "--pod-infra-container-image",
            "berth/pause:1",
        ]);
        let stderr = String::from_utf8_lossy(&up.stderr);
        if up.status.success() {
            return Some((tmp, cluster, base));
        }
        assert!(attempt < 5 && stderr.contains("is not free"), "up: {stderr}{}", String::from_utf8_lossy(&up.stdout));
        eprintln!("up, attempt {attempt}: {stderr}");
        // Whatever the failed `up` recorded goes, so the next one starts afresh.
        let _ = cluster.berthctl(&["down", "--purge"]);
    }
    unreachable!("the loop returns or fails")
}

/// Services carry traffic on a two-node cluster: a ClusterIP spreads a client's requests
/// over every ready pod on both nodes, a NodePort answers on every node's address from the
/// host, a LoadBalancer gets the nodes' addresses and answers there, ClientIP affinity
/// keeps a client on one pod, a Service without endpoints refuses at once, and scaling
/// down moves the rules.
#[test]
fn services_carry_traffic_across_nodes() {
    let Some((_tmp, cluster, _)) = two_node_cluster() else { return };
    let (subnet, api) = cluster.subnet_and_api();
    let manifests = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: http
        image: berth/http:v1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8081, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{name: http, port: 80, targetPort: http}]
"#;
    apply_with_client(&api, manifests, "web", 3);
    let nodes = kubectl_blocking(&api, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    assert!(nodes.contains("node-1") && nodes.contains("node-2"), "web pods on both nodes: {nodes}");
    let cluster_ip = kubectl_blocking(&api, &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let node_port = kubectl_blocking(&api, &["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let empty_ip = kubectl_blocking(&api, &["get", "svc", "empty", "-o", "jsonpath={.spec.clusterIP}"]);

    // 60 requests through the ClusterIP reach all three pods: each logs the address of every
    // client it served (the client's own: pod-to-Service traffic is not masqueraded; the
    // readiness probes come from the node).
    let client_ip = kubectl_blocking(&api, &["get", "pod", "client", "-o", "jsonpath={.status.podIP}"]);
    let served = |pod: &str| kubectl_blocking(&api, &["logs", pod]).matches(&format!("{client_ip}]")).count();
    let pods: Vec<String> =
        kubectl_blocking(&api, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"])
            .split_whitespace()
            .map(String::from)
            .collect();
    // The rules follow the slices a moment after the pods are ready.
    berth_testkit::blocking::eventually(Duration::from_secs(30), "the ClusterIP answers", || {
        let out = kubectl(&api, &["exec", "client", "--", "wget", "-qO-", &format!("http://{cluster_ip}/")], None);
        String::from_utf8_lossy(&out.stdout).contains("berth http v1").then_some(())
    });
    let before: Vec<usize> = pods.iter().map(|p| served(p)).collect();
    let script = format!(
        "ok=0; for i in $(seq 60); do wget -qO- http://{cluster_ip}/ >/dev/null && ok=$((ok+1)); done; echo $ok"
    );
    let ok = kubectl_blocking(&api, &["exec", "client", "--", "sh", "-c", &script]);
    assert_eq!(ok.trim(), "60", "every request through the ClusterIP answered");
    let after: Vec<usize> = pods.iter().map(|p| served(p)).collect();
    let per_pod: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(per_pod.iter().all(|n| *n > 0), "60 requests reached every pod: {per_pod:?}");
    assert!(per_pod.iter().sum::<usize>() >= 60, "{per_pod:?}");

    // The NodePort answers on both nodes' addresses, from the host.
    for node in [11, 12] {
        let answer = berth_testkit::blocking::eventually(Duration::from_secs(10), "the NodePort", || {
            http_get(&format!("172.31.{subnet}.{node}:{node_port}")).ok()
        });
        assert!(answer.contains("berth http v1"), "node .{node}: {answer}");
    }

    // The `kubernetes` Service reaches the API servers from a pod.
    // A TCP connection through the ClusterIP to the API's TLS port (busybox's wget cannot
    // talk TLS to it: its TLS 1.2 ClientHello lacks signature_algorithms, which rustls
    // requires).
    let reach = ["exec", "client", "--", "sh", "-c", "nc -w 3 10.96.0.1 443 </dev/null && echo connected"];
    let reached = kubectl(&api, &reach, None);
    let (stdout, stderr) = (String::from_utf8_lossy(&reached.stdout), String::from_utf8_lossy(&reached.stderr));
    assert!(stdout.contains("connected"), "the API through the kubernetes Service: {stdout}{stderr}");

    // A LoadBalancer Service gets the nodes' addresses, and answers on them.
    let external =
        berth_testkit::blocking::eventually(Duration::from_secs(30), "the load balancer's addresses", || {
            let ips =
                kubectl_blocking(&api, &["get", "svc", "lb", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"]);
            (!ips.is_empty()).then_some(ips)
        });
    assert_eq!(external, format!("172.31.{subnet}.11 172.31.{subnet}.12"));
    let shown = kubectl_blocking(&api, &["get", "svc", "lb", "--no-headers"]);
    assert!(shown.contains(&format!("172.31.{subnet}.11,172.31.{subnet}.12")), "EXTERNAL-IP: {shown}");
    for ip in external.split_whitespace() {
        let answer = berth_testkit::blocking::eventually(Duration::from_secs(10), "the load balancer address", || {
            http_get(&format!("{ip}:8081")).ok()
        });
        assert!(answer.contains("berth http v1"), "{ip}: {answer}");
    }

    // sessionAffinity: ClientIP sends one client's requests to one pod.
    let sticky_ip = kubectl_blocking(&api, &["get", "svc", "sticky", "-o", "jsonpath={.spec.clusterIP}"]);
    let before: Vec<usize> = pods.iter().map(|p| served(p)).collect();
    let sticky = format!(
        "ok=0; for i in $(seq 20); do wget -qO- http://{sticky_ip}/ >/dev/null && ok=$((ok+1)); done; echo $ok"
    );
    assert_eq!(kubectl_blocking(&api, &["exec", "client", "--", "sh", "-c", &sticky]).trim(), "20");
    let per_pod: Vec<usize> = pods.iter().map(|p| served(p)).zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(per_pod.iter().filter(|n| **n > 0).count(), 1, "one pod served the sticky client: {per_pod:?}");

    // No endpoints: refused at once, not a hang.
    let started = std::time::Instant::now();
    let refused = kubectl(&api, &["exec", "client", "--", "wget", "-qO-", &format!("http://{empty_ip}/")], None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("refused"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused in {:?}", started.elapsed());

    // Scaled to one pod: the rules follow, every request still answers.
    assert!(kubectl(&api, &["scale", "deploy", "web", "--replicas=1"], None).status.success());
    berth_testkit::blocking::eventually(Duration::from_secs(60), "one web pod left", || {
        let names =
            kubectl_blocking(&api, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"]);
        (names.split_whitespace().count() == 1).then_some(())
    });
    let ok = kubectl_blocking(&api, &["exec", "client", "--", "sh", "-c", &script]);
    assert_eq!(ok.trim(), "60", "after scaling down");

    // Hairpin: the one pod left reaches itself through its Service.
    let last = kubectl_blocking(&api, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    let itself = kubectl_blocking(&api, &["exec", &last, "--", "wget", "-qO-", &format!("http://{cluster_ip}/")]);
    assert!(itself.contains("berth http v1"), "hairpin: {itself}");
}

/// A busybox pod on node-1 that requests are sent from (`kubectl exec client`).
const CLIENT_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: berth/busybox:1.35, command: [sleep, "3600"]}
"#;

/// Applies `manifests` and [`CLIENT_POD`], then waits until Deployment `deployment` has
/// `replicas` ready pods and the client runs.
fn apply_with_client(api: &str, manifests: &str, deployment: &str, replicas: u32) {
    let all = format!("{manifests}---{CLIENT_POD}");
    let applied = kubectl(api, &["apply", "-f", "-"], Some(all.as_bytes()));
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let what = format!("{replicas} {deployment} pods ready and the client running");
    berth_testkit::blocking::eventually(Duration::from_secs(120), &what, || {
        let jsonpath = "jsonpath={.status.readyReplicas}";
        let ready = kubectl_blocking(api, &["get", "deploy", deployment, "-o", jsonpath]);
        let client = kubectl_blocking(api, &["get", "pod", "client", "-o", "jsonpath={.status.phase}"]);
        (ready == replicas.to_string() && client == "Running").then_some(())
    });
}

fn kubectl_blocking(api_url: &str, args: &[&str]) -> String {
    let out = kubectl(api_url, args, None);
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Lifecycle hooks on containerd, as the kubelet runs them: a postStart exec runs inside
/// the container before it counts as Running; postStart and preStop httpGet hooks reach
/// their server; a failing postStart is a FailedPostStartHook event and a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_run_in_the_container_and_over_http() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};

    let Some(node) = AgentNode::start("172.27").await else { return };
    node.assign_pod_cidr().await;
    // The HTTP hooks' server: records each request line (the agent runs in this process's
    // network namespace, so loopback reaches it).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 2048];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string();
            let _ = seen_tx.send(line);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let busybox = node.image("busybox:1.35");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hooked"},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [
            {"name": "exec", "image": busybox, "command": ["sleep", "3600"],
             "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "sleep 2; echo ran > /tmp/post-start"]}}}},
            {"name": "http", "image": busybox, "command": ["sleep", "3600"],
             "lifecycle": {
                "postStart": {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/started"}},
                "preStop": {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/stopping",
                            "httpHeaders": [{"name": "X-Hook", "value": "preStop"}]}}}}
        ]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // While the exec hook sleeps its 2 s, the container is still being created.
    let creating = berth_testkit::eventually(Duration::from_secs(90), "exec's container created", async || {
        let p = pods.get("hooked").await.ok()?;
        let exec = p.status?.container_statuses?.into_iter().find(|c| c.name == "exec")?;
        exec.container_id.as_ref()?;
        Some(exec.state?.waiting.is_some())
    })
    .await;
    assert!(creating, "a container whose postStart hook runs is not Running yet");
    berth_testkit::eventually(Duration::from_secs(60), "hooked Running and Ready", async || {
        let p = pods.get("hooked").await.ok()?;
        let ready = p.status?.conditions?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(())
    })
    .await;
    let file = kubectl_ok(&node.api_url, &["exec", "hooked", "-c", "exec", "--", "cat", "/tmp/post-start"], None);
    assert_eq!(file.trim(), "ran", "the postStart exec ran inside the container");
    let first = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await.unwrap().unwrap();
    assert_eq!(first, "GET /started HTTP/1.1");

    pods.delete("hooked", &DeleteParams::default()).await.unwrap();
    let stopping = tokio::time::timeout(Duration::from_secs(30), seen.recv()).await.unwrap().unwrap();
    assert_eq!(stopping, "GET /stopping HTTP/1.1");

    // A postStart that fails: the event, then the container killed and started again.
    let failing: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "badhook"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": node.image("busybox:1.35"), "command": ["sleep", "3600"],
             "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo no >&2; exit 3"]}}}}
        ]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &failing).await.unwrap();
    let restarts = berth_testkit::eventually(Duration::from_secs(90), "badhook restarted", async || {
        let p = pods.get("badhook").await.ok()?;
        let restarts = p.status?.container_statuses?.first()?.restart_count;
        (restarts >= 1).then_some(restarts)
    })
    .await;
    assert!(restarts >= 1);
    let events = kubectl_ok(
        &node.api_url,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=badhook,reason=FailedPostStartHook",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        None,
    );
    assert!(
        events.contains("Exec lifecycle hook ([\"sh\", \"-c\", \"echo no >&2; exit 3\"]) for Container \"main\" in Pod \"badhook_default("),
        "{events}"
    );
    pods.delete("badhook", &DeleteParams::default()).await.unwrap();
    server.abort();
    node.stop().await;
}

/// Cluster DNS on a two-node cluster, from pods, with the real kubectl: `kubectl expose`d
/// Deployment answers as `web` and `web.default.svc.cluster.local`; a StatefulSet's pods
/// resolve by their stable names under their headless Service, which returns the pods'
/// addresses; an ExternalName Service is an alias; pods get the kubelet's resolv.conf and
/// Service environment variables; unknown names fail at once.
#[test]
fn cluster_dns_names_services_and_statefulset_pods() {
    let Some((_tmp, cluster, _)) = two_node_cluster() else { return };
    let (_, api) = cluster.subnet_and_api();
    let manifests = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: http
        image: berth/http:v1
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: store, labels: {app: store}}
spec:
  clusterIP: None
  selector: {app: store}
  ports: [{name: web, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: store}
spec:
  serviceName: store
  replicas: 2
  selector: {matchLabels: {app: store}}
  template:
    metadata: {labels: {app: store}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: store}}, topologyKey: kubernetes.io/hostname}
      containers:
      - name: http
        image: berth/http:v1
        ports: [{name: web, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
"#;
    let applied = kubectl(&api, &["apply", "-f", "-"], Some(manifests.as_bytes()));
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let exposed = kubectl(&api, &["expose", "deployment", "web", "--port=80", "--target-port=8080"], None);
    assert!(exposed.status.success(), "expose: {}", String::from_utf8_lossy(&exposed.stderr));
    // The client starts after the Service exists, so it gets its variables.
    assert!(kubectl(&api, &["apply", "-f", "-"], Some(CLIENT_POD.as_bytes())).status.success());
    berth_testkit::blocking::eventually(Duration::from_secs(180), "web, store and the client ready", || {
        let web = kubectl_blocking(&api, &["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}"]);
        let store = kubectl_blocking(&api, &["get", "sts", "store", "-o", "jsonpath={.status.readyReplicas}"]);
        let client = kubectl_blocking(&api, &["get", "pod", "client", "-o", "jsonpath={.status.phase}"]);
        (web == "2" && store == "2" && client == "Running").then_some(())
    });
    let exec = |pod: &str, script: &str| {
        let out = kubectl(&api, &["exec", pod, "--", "sh", "-c", script], None);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };

    let dns =
        kubectl_blocking(&api, &["get", "svc", "-n", "kube-system", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(dns, "10.96.0.10");
    let resolv = exec("client", "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.contains("options ndots:5"), "{resolv}");

    let web_ip = kubectl_blocking(&api, &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let env = exec("client", "env");
    assert!(env.contains(&format!("WEB_SERVICE_HOST={web_ip}")), "{env}");
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.96.0.1"), "{env}");

    // The short name (through the search path) and the full name answer over HTTP.
    for name in ["web", "web.default.svc.cluster.local"] {
        berth_testkit::blocking::eventually(Duration::from_secs(30), "the Service by name", || {
            exec("client", &format!("wget -qO- http://{name}/")).contains("berth http v1").then_some(())
        });
    }
    let looked_up = exec("client", "nslookup web.default.svc.cluster.local");
    assert!(looked_up.contains(&web_ip), "{looked_up}");

    // StatefulSet pods by their stable names; the headless Service returns both pods.
    let pod_ip = |pod: &str| kubectl_blocking(&api, &["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
    let (ip0, ip1) = (pod_ip("store-0"), pod_ip("store-1"));
    let named = exec("client", "nslookup store-0.store.default.svc.cluster.local");
    assert!(named.contains(&ip0), "store-0: {named}");
    let answered = exec("client", "wget -qO- http://store-1.store:8080/");
    assert!(answered.contains("berth http v1"), "store-1 by name: {answered}");
    // A pod on node-1 reaches the pod on node-2 by its pod IP.
    let on_node_2 = if kubectl_blocking(&api, &["get", "pod", "store-0", "-o", "jsonpath={.spec.nodeName}"]) == "node-2"
    {
        &ip0
    } else {
        &ip1
    };
    let direct = exec("client", &format!("wget -qO- http://{on_node_2}:8080/"));
    assert!(direct.contains("berth http v1"), "pod IP {on_node_2} on node-2: {direct}");
    let headless = exec("client", "nslookup store.default.svc.cluster.local");
    assert!(headless.contains(&ip0) && headless.contains(&ip1), "headless: {headless}");
    // The other node's DNS server answers its own pods.
    let other = kubectl_blocking(&api, &["get", "pod", "store-1", "-o", "jsonpath={.spec.nodeName}"]);
    let from = if other == "node-2" { "store-1" } else { "store-0" };
    let answered = exec(from, "nslookup web.default.svc.cluster.local");
    assert!(answered.contains(&web_ip), "from the other node: {answered}");

    // ExternalName: an alias.
    let alias = exec("client", "nslookup alias.default.svc.cluster.local");
    assert!(alias.contains(&web_ip), "alias: {alias}");

    // Unknown names fail at once.
    let started = std::time::Instant::now();
    let unknown = exec("client", "nslookup nope.default.svc.cluster.local; echo rc=$?");
    assert!(unknown.contains("NXDOMAIN") || unknown.contains("can't find"), "{unknown}");
    assert!(started.elapsed() < Duration::from_secs(5), "NXDOMAIN in {:?}", started.elapsed());
}

/// The pids of the processes whose command line contains `marker` (this test's cluster's
/// own, by their data directory).
fn pids_with(marker: &str, program: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && cmdline.split_whitespace().next().is_some_and(|p| p.ends_with(program)) {
            pids.push(pid);
        }
    }
    pids
}

/// The seeds' story on a two-node cluster: a client pod sends ~10 requests/s through a
/// Service while `kubectl set image` rolls its Deployment (readiness probe, preStop): no
/// request fails and afterwards only the new version answers. Then one node dies (its agent
/// and containerd killed, its link cut): once its pods are evicted, the Service answers
/// from the other node.
#[test]
fn rollouts_lose_no_requests_and_a_dead_node_is_routed_around() {
    let Some((_tmp, cluster, _)) = two_node_cluster() else { return };
    let (subnet, api) = cluster.subnet_and_api();
    let manifests = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: http
        image: berth/http:v1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
        lifecycle: {preStop: {exec: {command: [sleep, "2"]}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"#;
    apply_with_client(&api, manifests, "web", 3);
    let exec = |script: &str| kubectl_blocking(&api, &["exec", "client", "--", "sh", "-c", script]);
    berth_testkit::blocking::eventually(Duration::from_secs(30), "the Service answers", || {
        exec("wget -qO- http://web/").contains("berth http v1").then_some(())
    });

    // ~10 requests/s until told to stop; each outcome is logged.
    let load = "rm -f /tmp/stop /tmp/outcomes; while [ ! -f /tmp/stop ]; do \
                if wget -qO- http://web/ >/dev/null 2>&1; then echo ok; else echo FAIL; fi >> /tmp/outcomes; \
                sleep 0.1; done";
    let admin_kubeconfig = berth_control::testing::kubeconfig_file(&api);
    let mut client_load = Command::new("kubectl")
        .args(["--server", &api, "exec", "client", "--", "sh", "-c", load])
        .env("KUBECONFIG", admin_kubeconfig.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let set = kubectl(&api, &["set", "image", "deployment/web", "http=berth/http:v2"], None);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let rolled = kubectl(&api, &["rollout", "status", "deployment/web", "--timeout=180s"], None);
    assert!(rolled.status.success(), "rollout: {}", String::from_utf8_lossy(&rolled.stderr));
    // Pods of the old version still draining after the rollout: wait for them to go.
    berth_testkit::blocking::eventually(Duration::from_secs(60), "only the 3 new pods left", || {
        let names =
            kubectl_blocking(&api, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"]);
        (names.split_whitespace().count() == 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    exec("touch /tmp/stop");
    let _ = client_load.wait();
    let outcomes = exec("cat /tmp/outcomes");
    let ok = outcomes.lines().filter(|l| *l == "ok").count();
    let failed = outcomes.lines().filter(|l| *l == "FAIL").count();
    eprintln!("during the rollout: {ok} requests answered, {failed} failed");
    assert!(ok >= 50, "the client kept sending through the rollout: {ok} answered");
    assert_eq!(failed, 0, "no request failed during the rollout ({ok} answered)");
    let versions = exec("for i in $(seq 30); do wget -qO- http://web/; echo; done");
    assert_eq!(versions.matches("berth http v2").count(), 30, "only v2 answers: {versions}");

    // Node 2 dies: its agent and containerd are killed and its link goes down.
    let agent2 = cluster.state()["agents"][1]["pid"].as_u64().unwrap() as i32;
    let containerd_config = cluster.dir.join("agent-node-2").join("containerd").join("config.toml");
    let containerds = pids_with(&containerd_config.display().to_string(), "containerd");
    assert_eq!(containerds.len(), 1, "node-2's containerd");
    for pid in [agent2, containerds[0]] {
        // SAFETY: kill(2) on node-2's agent and containerd, processes of this test's cluster.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let down = Command::new("ip")
        .args(["-n", &format!("berth-{subnet}-node-2"), "link", "set", "eth0", "down"])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    // After eviction every web pod runs on node 1, and the Service answers from there. (As
    // in Kubernetes, the evicted pods stay Terminating while their node cannot confirm.)
    berth_testkit::blocking::eventually(Duration::from_secs(150), "3 ready web pods, all on node-1", || {
        let pods = kubectl_blocking(
            &api,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.spec.nodeName} {.metadata.deletionTimestamp}{'\\n'}{end}",
            ],
        );
        let live: Vec<&str> = pods.lines().map(str::trim).filter(|l| !l.contains(' ')).collect();
        let ready = kubectl_blocking(&api, &["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}"]);
        (ready == "3" && live.len() == 3 && live.iter().all(|l| *l == "node-1")).then_some(())
    });
    berth_testkit::blocking::eventually(Duration::from_secs(30), "20 requests in a row answered", || {
        let script = "ok=0; for i in $(seq 20); do wget -qO- http://web/ >/dev/null && ok=$((ok+1)); done; echo $ok";
        (exec(script).trim() == "20").then_some(())
    });
}

/// One HTTP/1.1 request with a Host header to `address`; the whole answer.
fn http_get_host(address: &str, host: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let address = address.parse().map_err(|e| std::io::Error::other(format!("{address}: {e}")))?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Ingress on a two-node cluster with the real kubectl: the built-in `berth` class is the
/// default, an Ingress gets the nodes' addresses, and every node routes by host and path to
/// the right Service — 404 for what no rule matches, 503 for a backend without endpoints.
#[test]
fn ingress_routes_hosts_and_paths_to_services() {
    let Some((_tmp, cluster, _)) = two_node_cluster() else { return };
    let (subnet, api) = cluster.subnet_and_api();
    let manifests = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: v1}
spec:
  replicas: 2
  selector: {matchLabels: {app: v1}}
  template:
    metadata: {labels: {app: v1}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: http, image: berth/http:v1, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: v2}
spec:
  replicas: 1
  selector: {matchLabels: {app: v2}}
  template:
    metadata: {labels: {app: v2}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: http, image: berth/http:v2, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: v1}
spec: {selector: {app: v1}, ports: [{name: web, port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: v2}
spec: {selector: {app: v2}, ports: [{port: 8000, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: nothing}
spec: {selector: {app: nothing}, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: demo}
spec:
  rules:
  - host: v1.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: v1, port: {name: web}}}}
  - host: "*.example"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: v2, port: {number: 8000}}}}
  - http:
      paths:
      - {path: /index.html, pathType: Exact, backend: {service: {name: v2, port: {number: 8000}}}}
      - {path: /empty, pathType: Prefix, backend: {service: {name: nothing, port: {number: 80}}}}
"#;
    let applied = kubectl(&api, &["apply", "-f", "-"], Some(manifests.as_bytes()));
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let class = kubectl_blocking(&api, &["get", "ingressclass", "berth", "-o", "jsonpath={.spec.controller}"]);
    assert_eq!(class, "berth.dev/ingress");
    berth_testkit::blocking::eventually(Duration::from_secs(120), "both versions ready", || {
        let v1 = kubectl_blocking(&api, &["get", "deploy", "v1", "-o", "jsonpath={.status.readyReplicas}"]);
        let v2 = kubectl_blocking(&api, &["get", "deploy", "v2", "-o", "jsonpath={.status.readyReplicas}"]);
        (v1 == "2" && v2 == "1").then_some(())
    });
    let address = berth_testkit::blocking::eventually(Duration::from_secs(30), "the Ingress's addresses", || {
        let ips =
            kubectl_blocking(&api, &["get", "ingress", "demo", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"]);
        (!ips.is_empty()).then_some(ips)
    });
    assert_eq!(address, format!("172.31.{subnet}.11 172.31.{subnet}.12"));
    let listed = kubectl_blocking(&api, &["get", "ingress", "demo", "--no-headers"]);
    assert!(listed.contains("v1.example,*.example") && listed.contains("172.31."), "kubectl get ingress: {listed}");
    // Invalid Ingresses are refused with the field named.
    let bad = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bad"},
                  "spec": {"rules": [{"http": {"paths": [{"path": "relative", "pathType": "Prefix",
                  "backend": {"service": {"name": "v1"}}}]}}]}}"#;
    let refused = kubectl(&api, &["apply", "-f", "-"], Some(bad.as_bytes()));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && why.contains("spec.rules[0].http.paths[0].path"), "{why}");
    assert!(why.contains("spec.rules[0].http.paths[0].backend.service.port"), "{why}");

    for node in [11, 12] {
        let at = format!("172.31.{subnet}.{node}:80");
        let answer = berth_testkit::blocking::eventually(Duration::from_secs(30), "the ingress proxy", || {
            http_get_host(&at, "v1.example", "/").ok().filter(|a| a.contains("berth http v1"))
        });
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let wild = http_get_host(&at, "shop.example", "/").unwrap();
        assert!(wild.contains("berth http v2"), "wildcard host: {wild}");
        let exact = http_get_host(&at, "10.0.0.1", "/index.html").unwrap();
        assert!(exact.contains("berth http v2"), "exact path without host: {exact}");
        let unmatched = http_get_host(&at, "10.0.0.1", "/").unwrap();
        assert!(unmatched.starts_with("HTTP/1.1 404"), "no rule: {unmatched}");
        let empty = http_get_host(&at, "10.0.0.1", "/empty/x").unwrap();
        assert!(empty.starts_with("HTTP/1.1 503") && empty.contains("default/nothing"), "no endpoints: {empty}");
    }
    // Both v1 pods get traffic through the ingress.
    let at = format!("172.31.{subnet}.11:80");
    let before = kubectl_blocking(&api, &["logs", "-l", "app=v1", "--prefix"]);
    for _ in 0..20 {
        assert!(http_get_host(&at, "v1.example", "/").unwrap().contains("berth http v1"));
    }
    let after = kubectl_blocking(&api, &["logs", "-l", "app=v1", "--prefix"]);
    let pods: std::collections::BTreeSet<&str> =
        after.lines().filter(|l| !before.contains(*l)).filter_map(|l| l.split(']').next()).collect();
    assert_eq!(pods.len(), 2, "requests spread over both v1 pods: {pods:?}");
}

/// An in-cluster client authenticates with its pod's service-account token (issue 20): a
/// pod with kubectl and no kubeconfig reaches the API through the `kubernetes` Service
/// with the projected token and CA, is `system:serviceaccount:default:default`, is refused
/// what RBAC does not grant, and gets what a RoleBinding grants.
#[test]
fn a_pod_reaches_the_api_with_its_service_account_token() {
    let Some((_tmp, cluster, _)) = two_node_cluster_with_images(&["--kubectl"]) else { return };
    let (_, api) = cluster.subnet_and_api();
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: incluster}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: kubectl, image: berth/kubectl:1, command: [sleep, "3600"]}
"#;
    let applied = kubectl(&api, &["apply", "-f", "-"], Some(pod.as_bytes()));
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    berth_testkit::blocking::eventually(Duration::from_secs(120), "the in-cluster pod running", || {
        (kubectl_blocking(&api, &["get", "pod", "incluster", "-o", "jsonpath={.status.phase}"]) == "Running")
            .then_some(())
    });
    let inside = |script: &str| {
        let out = kubectl(&api, &["exec", "incluster", "--", "sh", "-c", script], None);
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (_, files) = inside("cd /var/run/secrets/kubernetes.io/serviceaccount && ls && cat namespace");
    assert!(files.contains("ca.crt") && files.contains("token") && files.ends_with("default"), "{files}");
    // kubectl without a kubeconfig uses the in-cluster configuration: the token, ca.crt
    // and KUBERNETES_SERVICE_HOST (the ClusterIP, which the serving certificate names).
    let (ok, whoami) = inside("kubectl auth whoami -o jsonpath='{.status.userInfo.username}'");
    assert!(ok, "{whoami}");
    assert_eq!(whoami, "system:serviceaccount:default:default");
    let (ok, denied) = inside("kubectl get pods");
    assert!(!ok, "{denied}");
    assert!(
        denied.contains(r#"User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{denied}"
    );
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: default-view}\n\
                   roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n\
                   subjects:\n- {kind: ServiceAccount, name: default, namespace: default}\n";
    assert!(kubectl(&api, &["apply", "-f", "-"], Some(binding.as_bytes())).status.success());
    berth_testkit::blocking::eventually(Duration::from_secs(30), "the pod lists pods", || {
        let (ok, pods) = inside("kubectl get pods -o name");
        (ok && pods.contains("pod/incluster")).then_some(())
    });
}
