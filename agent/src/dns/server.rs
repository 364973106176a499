//! The DNS server (hickory-server): names of the cluster domain, and reverse names of the
//! addresses it knows, are answered from the current [`Zone`] snapshot (a map lookup, no
//! I/O); everything else is forwarded to the node's upstream resolvers through
//! hickory-resolver, whose cache keeps positive and negative answers for their TTLs.
//! ExternalName aliases are followed (within the zone or upstream) as CoreDNS does.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::Resolver;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::zone::{Answer, Zone};

/// How long one upstream query may take (per attempt).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How many aliases are followed before giving up (a CNAME loop).
const MAX_ALIASES: usize = 8;
/// The longest time an upstream negative answer is cached.
const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(30);

/// What one query resolved to.
#[derive(Debug)]
pub struct Resolution {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA of a negative answer.
    pub soa: Vec<Record>,
    /// Answered from the cluster zone (authoritative).
    pub authoritative: bool,
}

/// The request handler: the zone snapshot (replaced whole on every change) and the
/// upstream resolver (None: no upstream, other names are refused).
pub struct ClusterDns {
    zone: Arc<RwLock<Arc<Zone>>>,
    upstream: Option<Resolver<TokioRuntimeProvider>>,
}

/// A resolver for `servers` (caching; no hosts file, no search list: queries are FQDNs).
fn upstream_resolver(servers: &[SocketAddr]) -> Result<Option<Resolver<TokioRuntimeProvider>>, NetError> {
    if servers.is_empty() {
        return Ok(None);
    }
    let name_servers = servers
        .iter()
        .map(|s| {
            let mut udp = ConnectionConfig::udp();
            udp.port = s.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = s.port();
            NameServerConfig::new(s.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.timeout = UPSTREAM_TIMEOUT;
    options.attempts = 2;
    options.ndots = 0;
    options.preserve_intermediates = true;
    options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    options.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
    let mut builder =
        Resolver::builder_with_config(ResolverConfig::from_name_servers(name_servers), TokioRuntimeProvider::default());
    *builder.options_mut() = options;
    builder.build().map(Some)
}

impl ClusterDns {
    pub fn new(zone: Arc<RwLock<Arc<Zone>>>, upstream: &[SocketAddr]) -> Result<ClusterDns, NetError> {
        Ok(ClusterDns { zone, upstream: upstream_resolver(upstream)? })
    }

    fn zone(&self) -> Arc<Zone> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves `name`/`rtype`: from the zone, following aliases, else upstream.
    pub async fn resolve(&self, name: &LowerName, rtype: RecordType) -> Resolution {
        let zone = self.zone();
        let mut answers = Vec::new();
        let mut name = name.clone();
        let mut authoritative = true;
        for _ in 0..MAX_ALIASES {
            let answer = match zone.lookup(&name, rtype) {
                Some(answer) => answer,
                None => {
                    let mut upstream = self.forward(&name, rtype).await;
                    answers.append(&mut upstream.answers);
                    upstream.answers = answers;
                    upstream.authoritative &= authoritative;
                    return upstream;
                }
            };
            match answer {
                Answer::Records(records) => {
                    let alias = records.iter().find_map(|r| match &r.data {
                        RData::CNAME(target) if rtype != RecordType::CNAME => Some(target.0.clone()),
                        _ => None,
                    });
                    answers.extend(records);
                    match alias {
                        Some(target) => {
                            name = LowerName::new(&target);
                            authoritative = false;
                        }
                        None => return Resolution { code: ResponseCode::NoError, answers, soa: vec![], authoritative },
                    }
                }
                Answer::NoData => {
                    return Resolution {
                        code: ResponseCode::NoError,
                        answers,
                        soa: vec![zone.soa().clone()],
                        authoritative,
                    }
                }
                Answer::NxDomain => {
                    let code = if answers.is_empty() { ResponseCode::NXDomain } else { ResponseCode::NoError };
                    return Resolution { code, answers, soa: vec![zone.soa().clone()], authoritative };
                }
            }
        }
        Resolution { code: ResponseCode::ServFail, answers: vec![], soa: vec![], authoritative: false }
    }

    /// Asks the upstream resolvers.
    async fn forward(&self, name: &LowerName, rtype: RecordType) -> Resolution {
        let refused = |code| Resolution { code, answers: vec![], soa: vec![], authoritative: false };
        let Some(resolver) = &self.upstream else { return refused(ResponseCode::Refused) };
        let name = Name::from(name.clone());
        match resolver.lookup(name.clone(), rtype).await {
            Ok(lookup) => Resolution {
                code: ResponseCode::NoError,
                answers: lookup.answers().to_vec(),
                soa: vec![],
                authoritative: false,
            },
            Err(NetError::Dns(DnsError::NoRecordsFound(none))) => Resolution {
                code: none.response_code,
                answers: vec![],
                soa: none.soa.map(|soa| vec![soa.into_record_of_rdata()]).unwrap_or_default(),
                authoritative: false,
            },
            Err(NetError::Dns(DnsError::ResponseCode(code))) => refused(code),
            Err(e) => {
                tracing::debug!(%name, %rtype, error = %e, "upstream DNS failed");
                refused(ResponseCode::ServFail)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDns {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let mut edns = None;
        if let Some(asked) = request.edns.as_ref() {
            let mut ours = Edns::new();
            ours.set_max_payload(asked.max_payload().max(512));
            edns = Some(ours);
        }
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let query = match request.request_info() {
            Ok(info)
                if request.metadata.message_type == MessageType::Query && request.metadata.op_code == OpCode::Query =>
            {
                Some(info.query.clone())
            }
            Ok(_) => None,
            Err(_) => None,
        };
        let sent = match query {
            None => {
                let code = if request.metadata.op_code == OpCode::Query {
                    ResponseCode::FormErr
                } else {
                    ResponseCode::NotImp
                };
                response.send_response(builder.error_msg(&request.metadata, code)).await
            }
            Some(query) => {
                let resolution = self.resolve(query.name(), query.query_type()).await;
                metadata.response_code = resolution.code;
                metadata.authoritative = resolution.authoritative;
                let message = builder.build(
                    metadata,
                    resolution.answers.iter(),
                    std::iter::empty(),
                    resolution.soa.iter(),
                    std::iter::empty(),
                );
                response.send_response(message).await
            }
        };
        match sent {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "DNS response not sent");
                let mut header = hickory_proto::op::Header {
                    metadata: Metadata::response_from_request(&request.metadata),
                    counts: Default::default(),
                };
                header.metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(header)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real servers on 127.0.0.1: the cluster server, and a second one standing for the
    //! node's upstream resolver (serving `upstream.test`), each asked with raw UDP queries.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use hickory_proto::op::{Message, Query};
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    use super::*;

    /// Counts the queries a handler answers.
    struct Counting(ClusterDns, Arc<AtomicUsize>);

    #[async_trait::async_trait]
    impl RequestHandler for Counting {
        async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response: R) -> ResponseInfo {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.handle_request::<R, T>(request, response).await
        }
    }

    fn zone(domain: &str, services: serde_json::Value) -> Arc<RwLock<Arc<Zone>>> {
        let services: Vec<Service> = serde_json::from_value(services).unwrap();
        let services: Vec<&Service> = services.iter().collect();
        Arc::new(RwLock::new(Arc::new(Zone::build(&Name::from_ascii(domain).unwrap(), &services, &[]))))
    }

    async fn serve(handler: impl RequestHandler) -> (SocketAddr, hickory_server::Server<impl RequestHandler>) {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let mut server = hickory_server::Server::new(handler);
        server.register_socket(udp);
        (addr, server)
    }

    async fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
        let mut query = Message::query();
        query.metadata.id = rand::random();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&query.to_vec().unwrap(), server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.unwrap().unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    fn datas(m: &Message) -> Vec<String> {
        m.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[tokio::test]
    async fn cluster_names_are_answered_and_other_names_forwarded_with_negative_caching() {
        let upstream_zone = zone(
            "upstream.test.",
            json!([{"metadata": {"name": "db", "namespace": "x"}, "spec": {"clusterIP": "192.0.2.7"}}]),
        );
        let upstream_queries = Arc::new(AtomicUsize::new(0));
        let (upstream, _upstream_server) =
            serve(Counting(ClusterDns::new(upstream_zone, &[]).unwrap(), upstream_queries.clone())).await;
        let cluster_zone = zone(
            "cluster.local.",
            json!([
                {"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.3.4"}},
                {"metadata": {"name": "ext", "namespace": "default"},
                 "spec": {"type": "ExternalName", "externalName": "db.x.svc.upstream.test"}}
            ]),
        );
        let (server, _cluster_server) = serve(ClusterDns::new(cluster_zone, &[upstream]).unwrap()).await;

        let answer = ask(server, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!((answer.metadata.response_code, datas(&answer)), (ResponseCode::NoError, vec!["10.96.3.4".into()]));
        assert!(answer.metadata.authoritative);

        let missing = ask(server, "nope.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(missing.authorities.len(), 1, "the SOA comes with a negative answer");
        assert_eq!(upstream_queries.load(Ordering::SeqCst), 0, "cluster names never go upstream");

        let forwarded = ask(server, "db.x.svc.upstream.test.", RecordType::A).await;
        assert_eq!(datas(&forwarded), vec!["192.0.2.7"]);
        assert!(!forwarded.metadata.authoritative);

        let alias = ask(server, "ext.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(datas(&alias), vec!["db.x.svc.upstream.test.", "192.0.2.7"]);

        let before = upstream_queries.load(Ordering::SeqCst);
        for _ in 0..3 {
            let gone = ask(server, "gone.x.svc.upstream.test.", RecordType::A).await;
            assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
        }
        assert_eq!(upstream_queries.load(Ordering::SeqCst), before + 1, "the negative answer is cached");

        // Garbage: a packet that is no DNS message, and odd names; the server keeps answering.
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&[0xff; 40], server).await.unwrap();
        let odd = format!("{}.x-y.default.svc.cluster.local.", "x".repeat(63));
        assert_eq!(ask(server, &odd, RecordType::A).await.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(ask(server, "cluster.local.", RecordType::TXT).await.metadata.response_code, ResponseCode::NoError);
        assert_eq!(datas(&ask(server, "web.default.svc.cluster.local.", RecordType::A).await), vec!["10.96.3.4"]);
    }
}
