//! The few protobuf request bodies Berth reads before it speaks protobuf everywhere
//! (issue 21): kubectl sends its authorization questions (`auth can-i`, `auth whoami`) as
//! `application/vnd.kubernetes.protobuf`. The envelope is Kubernetes' — the magic `k8s\0`,
//! then a `runtime.Unknown` whose `raw` holds the object — and only the fields Berth reads
//! are declared (prost skips the rest).

use prost::Message;

/// The protobuf content type kubectl sends.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

/// The object bytes and kind of an enveloped protobuf body.
pub fn unwrap(body: &[u8]) -> Result<(String, Vec<u8>), String> {
    let rest = body.strip_prefix(MAGIC).ok_or("not a Kubernetes protobuf body (no k8s\\0 prefix)")?;
    let unknown = Unknown::decode(rest).map_err(|e| format!("decoding the protobuf envelope: {e}"))?;
    let kind = unknown.type_meta.and_then(|t| t.kind).unwrap_or_default();
    Ok((kind, unknown.raw.unwrap_or_default()))
}

/// `authorization.k8s.io/v1` ResourceAttributes.
#[derive(Clone, PartialEq, Message)]
pub struct ResourceAttributes {
    #[prost(string, optional, tag = "1")]
    pub namespace: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub verb: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub group: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub version: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub resource: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub subresource: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub name: Option<String>,
}

/// `authorization.k8s.io/v1` NonResourceAttributes.
#[derive(Clone, PartialEq, Message)]
pub struct NonResourceAttributes {
    #[prost(string, optional, tag = "1")]
    pub path: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub verb: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SelfSubjectAccessReviewSpec {
    #[prost(message, optional, tag = "1")]
    pub resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    pub non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SelfSubjectAccessReview {
    #[prost(message, optional, tag = "2")]
    pub spec: Option<SelfSubjectAccessReviewSpec>,
}

/// `SubjectAccessReviewSpec`: the question, and whom it is about.
#[derive(Clone, PartialEq, Message)]
pub struct SubjectAccessReviewSpec {
    #[prost(message, optional, tag = "1")]
    pub resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    pub non_resource_attributes: Option<NonResourceAttributes>,
    #[prost(string, optional, tag = "3")]
    pub user: Option<String>,
    #[prost(string, repeated, tag = "4")]
    pub groups: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SubjectAccessReview {
    #[prost(message, optional, tag = "2")]
    pub spec: Option<SubjectAccessReviewSpec>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SelfSubjectRulesReviewSpec {
    #[prost(string, optional, tag = "1")]
    pub namespace: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SelfSubjectRulesReview {
    #[prost(message, optional, tag = "2")]
    pub spec: Option<SelfSubjectRulesReviewSpec>,
}

/// Decodes the object of an enveloped body as `M`.
pub fn decode<M: Message + Default>(body: &[u8]) -> Result<M, String> {
    let (_, raw) = unwrap(body)?;
    M::decode(raw.as_slice()).map_err(|e| format!("decoding the protobuf object: {e}"))
}

/// `authentication.k8s.io/v1` BoundObjectReference.
#[derive(Clone, PartialEq, Message)]
pub struct BoundObjectReference {
    #[prost(string, optional, tag = "1")]
    pub kind: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub api_version: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub uid: Option<String>,
}

/// `authentication.k8s.io/v1` TokenRequestSpec (`kubectl create token`).
#[derive(Clone, PartialEq, Message)]
pub struct TokenRequestSpec {
    #[prost(string, repeated, tag = "1")]
    pub audiences: Vec<String>,
    #[prost(message, optional, tag = "3")]
    pub bound_object_ref: Option<BoundObjectReference>,
    #[prost(int64, optional, tag = "4")]
    pub expiration_seconds: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TokenRequest {
    #[prost(message, optional, tag = "2")]
    pub spec: Option<TokenRequestSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enveloped_access_review_decodes() {
        let review = SelfSubjectAccessReview {
            spec: Some(SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some("default".into()),
                    verb: Some("list".into()),
                    resource: Some("pods".into()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
        };
        let envelope = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("authorization.k8s.io/v1".into()),
                kind: Some("SelfSubjectAccessReview".into()),
            }),
            raw: Some(review.encode_to_vec()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(envelope.encode_to_vec());
        assert_eq!(unwrap(&body).unwrap().0, "SelfSubjectAccessReview");
        assert_eq!(decode::<SelfSubjectAccessReview>(&body).unwrap(), review);
        assert!(unwrap(b"{}").is_err());
        assert!(decode::<SelfSubjectAccessReview>(b"k8s\0\xff\xff").is_err());
    }
}
