//! CustomResourceDefinition `openAPIV3Schema`s, applied to custom objects the way
//! kube-apiserver's apiextensions-apiserver does it (Kubernetes 1.33).
//!
//! This module owns the structural-schema tree of one CRD version ([`Schema`]) and what the API
//! server does with it:
//! * [`Schema::parse`] — the CRD-side checks: the OpenAPI restrictions (`$ref`, `uniqueItems`,
//!   list/map types, ...), the structural-schema rules, and that defaults are pruned and valid;
//! * [`Schema::prune`] — dropping fields the schema does not specify ("unknown field" warnings);
//! * [`Schema::apply_defaults`] — structural defaulting;
//! * [`Schema::validate`] — go-openapi value validation, then the embedded-resource and
//!   `x-kubernetes-list-type` checks.
//!
//! Paths and messages are kube-apiserver's, because kubectl users and test suites match on them.
//! Callers run prune, then apply_defaults, then validate, as the API server does. The root
//! `apiVersion`, `kind` and `metadata` belong to the caller (checked like any object's), so
//! pruning keeps them and validation skips them. Not covered: CEL (`x-kubernetes-validations`),
//! metadata-schema enforcement, and the rarer string formats (`uri`, `isbn`, `creditcard`, ...).
//!
//! Everything is pure and never panics: schemas are client input too. Parsing refuses trees
//! nested deeper than [`MAX_DEPTH`], and every walk over an object follows either that bounded
//! schema or the object itself, whose depth the JSON decoder already limits.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine as _;
use regex::Regex;
use serde_json::{json, Map, Value};

use crate::resource::validate::json::{child, index, key, q, render};
use crate::resource::validate::{ErrorType, FieldError};

/// Deepest schema nesting [`Schema::parse`] accepts; each properties/items/additionalProperties/
/// allOf/anyOf/oneOf/not step is one level.
pub const MAX_DEPTH: usize = 64;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];
const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];
const XPRESERVE: &str = "x-kubernetes-preserve-unknown-fields";
const XEMBEDDED: &str = "x-kubernetes-embedded-resource";
const XINTSTR: &str = "x-kubernetes-int-or-string";
const XLISTTYPE: &str = "x-kubernetes-list-type";
const XLISTKEYS: &str = "x-kubernetes-list-map-keys";
const XMAPTYPE: &str = "x-kubernetes-map-type";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl SchemaType {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Object => "object",
            SchemaType::Array => "array",
            SchemaType::String => "string",
            SchemaType::Integer => "integer",
            SchemaType::Number => "number",
            SchemaType::Boolean => "boolean",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Object, Self::Array, Self::String, Self::Integer, Self::Number, Self::Boolean]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map,
}

#[derive(Debug, Clone)]
pub enum AdditionalProperties {
    Allows(bool),
    Schema(Box<Schema>),
}

impl AdditionalProperties {
    fn schema(&self) -> Option<&Schema> {
        match self {
            AdditionalProperties::Schema(s) => Some(s),
            AdditionalProperties::Allows(_) => None,
        }
    }
}

/// A `pattern`: the client's text (for messages) and its compiled form.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: Regex,
}

/// One node of a parsed schema. Junctor branches (`all_of`, `any_of`, `one_of`, `not`) are
/// nodes too, but structurally they carry only value validations (no type, default, ...).
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub ty: Option<SchemaType>,
    pub format: Option<String>,
    pub description: Option<String>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub properties: BTreeMap<String, Schema>,
    pub additional_properties: Option<AdditionalProperties>,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enum_values: Option<Vec<Value>>,
    pub pattern: Option<Pattern>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub multiple_of: Option<f64>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    pub preserve_unknown_fields: bool,
    pub int_or_string: bool,
    pub embedded_resource: bool,
    pub list_type: Option<ListType>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
    /// `x-kubernetes-validations`, compiled (`super::cel`).
    pub validations: Vec<super::cel::Rule>,
}

impl Schema {
    /// Parses and checks an `openAPIV3Schema`; `path` prefixes error fields, e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`. Errors come as kube-apiserver orders them:
    /// OpenAPI restrictions, then structural violations (sorted), and only when there are
    /// none of those, the checks of the defaults.
    pub fn parse(v: &Value, path: &str) -> Result<Schema, Vec<FieldError>> {
        let mut p = Parser::default();
        let root = Ctx { pair_ok: true, ..Ctx::default() };
        let schema = p.node(v, path, root);
        junctor_completeness(&schema, &schema, path, path, &mut p.structural);
        p.structural.sort_by_key(FieldError::message);
        let mut errs = p.generic;
        errs.append(&mut p.structural);
        if errs.is_empty() {
            check_defaults(&schema, path, &mut errs);
        }
        if errs.is_empty() {
            Ok(schema)
        } else {
            Err(errs)
        }
    }

    /// `type`, or "" where none is given (int-or-string and preserve-unknown-fields nodes).
    pub fn type_name(&self) -> &'static str {
        self.ty.map_or("", SchemaType::as_str)
    }

    /// The schema of member `name` of an object: its property, else `additionalProperties`.
    pub fn property(&self, name: &str) -> Option<&Schema> {
        self.properties.get(name).or_else(|| self.additional_properties.as_ref()?.schema())
    }

    /// Follows a field path such as `["spec", "ports", "0", "name"]`; on arrays an index
    /// segment (`0`, `*`, `[0]`, `[*]`) steps into `items`. For printer columns and the like.
    pub fn at_path(&self, segments: &[&str]) -> Option<&Schema> {
        let mut cur = self;
        for seg in segments {
            let is_index = |s: &str| {
                let s = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s);
                s == "*" || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            };
            cur = match &cur.items {
                Some(items) if is_index(seg) => items,
                _ => cur.property(seg)?,
            };
        }
        Some(cur)
    }

    /// Validates a custom object (already pruned and defaulted) like kube-apiserver.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut walk = Walk { prefix: "", errs: Vec::new() };
        walk.value(self, obj, "", true);
        let mut errs = walk.errs;
        lists(self, obj, "", &mut errs);
        errs.extend(super::cel::validate(self, obj));
        errs
    }

    /// Removes what the schema does not specify; returns the removed fields' paths.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        prune(Some(self), obj, "", true, &mut pruned);
        pruned
    }

    /// Structural defaulting: absent members (and non-nullable nulls) of existing objects get
    /// their `default`, recursively, including inside what a default just filled in. As the
    /// API server does first, a non-nullable property's null without a default is dropped.
    pub fn apply_defaults(&self, obj: &mut Value) {
        drop_nulls(self, obj);
        default(self, obj);
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: apiextensions' ValidateCustomResourceDefinitionOpenAPISchema ("generic") and the
// structural-schema rules of ValidateStructural, collected in one walk.

#[derive(Clone, Copy, PartialEq, Default)]
enum Level {
    #[default]
    Root,
    Item,
    Field,
}

#[derive(Clone, Copy, Default)]
struct Ctx {
    level: Level,
    depth: usize,
    /// Inside allOf/anyOf/oneOf/not, where only value validations may appear.
    nested: bool,
    /// Whether this node's `anyOf` may be the int-or-string pair with types
    /// (`[{type: integer}, {type: string}]`): structural nodes and their `allOf[0]`.
    pair_ok: bool,
    /// A branch of that pair, where `type` is allowed.
    allow_type: bool,
    /// Under a resource's apiVersion/kind/metadata, at the root or in an embedded resource.
    in_meta: bool,
    /// Why `default` is forbidden here, if it is.
    no_defaults: Option<&'static str>,
}

impl Ctx {
    fn down(self, level: Level) -> Ctx {
        Ctx { level, depth: self.depth + 1, allow_type: false, pair_ok: !self.nested, ..self }
    }

    fn junctor(self) -> Ctx {
        Ctx { nested: true, pair_ok: false, ..self.down(self.level) }
    }
}

#[derive(Default)]
struct Parser {
    generic: Vec<FieldError>,
    structural: Vec<FieldError>,
}

impl Parser {
    fn bad(&mut self, field: String, v: &Value, want: &str) {
        self.generic.push(FieldError::invalid(&field, render(v), &format!("must be of type {want}")));
    }

    fn get<'a>(&mut self, m: &'a Map<String, Value>, path: &str, k: &str, want: &str) -> Option<&'a Value> {
        let v = m.get(k).filter(|v| !v.is_null())?;
        let ok = match want {
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "number" => v.is_number(),
            "integer" => v.is_u64(),
            "array" => v.is_array(),
            _ => v.is_object(),
        };
        if !ok {
            self.bad(child(path, k), v, want);
        }
        ok.then_some(v)
    }

    fn string(&mut self, m: &Map<String, Value>, path: &str, k: &str) -> Option<String> {
        self.get(m, path, k, "string").and_then(Value::as_str).map(str::to_string)
    }

    fn flag(&mut self, m: &Map<String, Value>, path: &str, k: &str) -> Option<bool> {
        self.get(m, path, k, "boolean").and_then(Value::as_bool)
    }

    fn number(&mut self, m: &Map<String, Value>, path: &str, k: &str) -> Option<f64> {
        self.get(m, path, k, "number").and_then(Value::as_f64)
    }

    fn count(&mut self, m: &Map<String, Value>, path: &str, k: &str) -> Option<u64> {
        self.get(m, path, k, "integer").and_then(Value::as_u64)
    }

    fn strings(&mut self, m: &Map<String, Value>, path: &str, k: &str) -> Vec<String> {
        let items = self.get(m, path, k, "array").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => self.bad(index(&child(path, k), i), item, "string"),
            }
        }
        out
    }

    fn node(&mut self, v: &Value, path: &str, ctx: Ctx) -> Schema {
        let mut s = Schema::default();
        if ctx.depth > MAX_DEPTH {
            self.generic
                .push(FieldError::forbidden(path, &format!("must not be nested more than {MAX_DEPTH} levels deep")));
            return s;
        }
        let Some(m) = v.as_object() else {
            self.bad(path.to_string(), v, "object");
            return s;
        };
        let f = |k: &str| child(path, k);
        let root = ctx.level == Level::Root && !ctx.nested;

        let ty = self.string(m, path, "type").unwrap_or_default();
        s.ty = SchemaType::parse(&ty);
        if !ty.is_empty() && s.ty.is_none() {
            self.generic.push(FieldError::not_supported(&f("type"), q(&ty), &TYPES));
        }
        s.default = m.get("default").filter(|d| !d.is_null()).cloned();
        if let (Some(_), Some(why)) = (&s.default, ctx.no_defaults) {
            self.generic.push(FieldError::forbidden(&f("default"), &format!("must not be set {why}")));
        }
        let present = |k: &str| m.get(k).is_some_and(|x| !x.is_null());
        let nonempty = |k: &str| m.get(k).is_some_and(|x| !is_zero(x));
        for (k, hit) in [
            ("id", nonempty("id")),
            ("additionalItems", present("additionalItems")),
            ("patternProperties", nonempty("patternProperties")),
            ("definitions", nonempty("definitions")),
            ("dependencies", present("dependencies")),
            ("$ref", present("$ref")),
        ] {
            if hit {
                self.generic.push(FieldError::forbidden(&f(k), &format!("{k} is not supported")));
            }
        }
        if ty == "null" {
            self.generic
                .push(FieldError::forbidden(&f("type"), "type cannot be set to null, use nullable as an alternative"));
        }
        if m.get("items").is_some_and(Value::is_array) {
            self.generic.push(FieldError::forbidden(&f("items"), "items must be a schema object and not an array"));
        }
        let preserve = self.flag(m, path, XPRESERVE);
        s.preserve_unknown_fields = preserve == Some(true);
        s.embedded_resource = self.flag(m, path, XEMBEDDED) == Some(true);
        s.int_or_string = self.flag(m, path, XINTSTR) == Some(true);
        s.nullable = self.flag(m, path, "nullable") == Some(true);
        if ctx.in_meta && s.embedded_resource {
            self.generic.push(FieldError::forbidden(&f(XEMBEDDED), "must not be used inside of resource meta"));
        }
        if self.flag(m, path, "uniqueItems") == Some(true) {
            let why = "uniqueItems cannot be set to true since the runtime complexity becomes quadratic";
            self.generic.push(FieldError::forbidden(&f("uniqueItems"), why));
        }

        // additionalProperties (a schema, or a bool) and properties are mutually exclusive:
        // the former is for maps, the latter for structs.
        let has_properties = m.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
        match m.get("additionalProperties") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => s.additional_properties = Some(AdditionalProperties::Allows(*b)),
            Some(x) => {
                let mut c = ctx.down(Level::Field);
                if ctx.in_meta {
                    c.no_defaults = Some("inside additionalProperties applying to object metadata");
                }
                let sub = self.node(x, &f("additionalProperties"), c);
                s.additional_properties = Some(AdditionalProperties::Schema(Box::new(sub)));
            }
        }
        if has_properties && !matches!(s.additional_properties, None | Some(AdditionalProperties::Allows(true))) {
            let why = "additionalProperties and properties are mutual exclusive";
            self.generic.push(FieldError::forbidden(&f("additionalProperties"), why));
        }
        if let Some(props) = self.get(m, path, "properties", "object").and_then(Value::as_object) {
            for (k, pv) in props {
                let mut c = ctx.down(Level::Field);
                if root || s.embedded_resource {
                    let top = match k.as_str() {
                        "apiVersion" => Some("in top-level apiVersion"),
                        "kind" => Some("in top-level kind"),
                        "metadata" => Some("in top-level metadata"),
                        _ => None,
                    };
                    c.in_meta |= top.is_some();
                    if root && top.is_some() {
                        c.no_defaults = top;
                    }
                }
                let sub = self.node(pv, &key(&f("properties"), k), c);
                s.properties.insert(k.clone(), sub);
            }
        }
        if let Some(x) = self.get(m, path, "not", "object") {
            s.not = Some(Box::new(self.node(x, &f("not"), ctx.junctor())));
        }
        for (k, allow_type) in [("allOf", false), ("oneOf", false), ("anyOf", ctx.pair_ok && int_or_string_pair(m))] {
            let list = self.get(m, path, k, "array").and_then(Value::as_array).cloned().unwrap_or_default();
            let parsed = list.iter().enumerate().map(|(i, x)| {
                let c = Ctx { allow_type, pair_ok: k == "allOf" && i == 0 && !ctx.nested, ..ctx.junctor() };
                self.node(x, &index(&f(k), i), c)
            });
            let parsed: Vec<Schema> = parsed.collect();
            match k {
                "allOf" => s.all_of = parsed,
                "oneOf" => s.one_of = parsed,
                _ => s.any_of = parsed,
            }
        }
        match m.get("items") {
            Some(x) if x.is_object() => s.items = Some(Box::new(self.node(x, &f("items"), ctx.down(Level::Item)))),
            None | Some(Value::Null | Value::Array(_)) => {}
            Some(x) => self.bad(f("items"), x, "object"),
        }

        s.format = self.string(m, path, "format").filter(|x| !x.is_empty());
        s.description = self.string(m, path, "description");
        s.validations = super::cel::parse_rules(
            m.get("x-kubernetes-validations"),
            &f("x-kubernetes-validations"),
            &mut self.generic,
        );
        let title = self.string(m, path, "title");
        s.minimum = self.number(m, path, "minimum");
        s.maximum = self.number(m, path, "maximum");
        s.exclusive_minimum = self.flag(m, path, "exclusiveMinimum") == Some(true);
        s.exclusive_maximum = self.flag(m, path, "exclusiveMaximum") == Some(true);
        s.min_length = self.count(m, path, "minLength");
        s.max_length = self.count(m, path, "maxLength");
        s.min_items = self.count(m, path, "minItems");
        s.max_items = self.count(m, path, "maxItems");
        s.min_properties = self.count(m, path, "minProperties");
        s.max_properties = self.count(m, path, "maxProperties");
        s.multiple_of = self.number(m, path, "multipleOf");
        s.required = self.strings(m, path, "required");
        s.enum_values = self.get(m, path, "enum", "array").and_then(Value::as_array).cloned();
        if let Some(src) = self.string(m, path, "pattern").filter(|p| !p.is_empty()) {
            match go_regex(&src) {
                Ok(regex) => s.pattern = Some(Pattern { source: src, regex }),
                Err(e) => {
                    let why = format!("must be a valid regular expression, but isn't: {}", regex_error(&e, &src));
                    self.structural.push(FieldError::invalid(&f("pattern"), q(&src), &why));
                }
            }
        }
        s.map_type = self.string(m, path, XMAPTYPE);
        let list_type = self.string(m, path, XLISTTYPE);
        s.list_map_keys = self.strings(m, path, XLISTKEYS);
        if preserve == Some(false) {
            self.generic.push(FieldError::invalid(&f(XPRESERVE), "false".into(), "must be true or undefined"));
        }
        if let Some(mt) = &s.map_type {
            self.type_must_be(&ty, "object", path, &format!("must be object if {XMAPTYPE} is specified"));
            if mt != "atomic" && mt != "granular" {
                self.generic.push(FieldError::not_supported(&f(XMAPTYPE), q(mt), &["atomic", "granular"]));
            }
        }
        if let Some(lt) = &list_type {
            s.list_type = match lt.as_str() {
                "atomic" => Some(ListType::Atomic),
                "set" => Some(ListType::Set),
                "map" => Some(ListType::Map),
                _ => None,
            };
            self.list_checks(&s, lt, &ty, path);
        }
        if !s.list_map_keys.is_empty() && list_type.as_deref() != Some("map") {
            let why = "must be map if x-kubernetes-list-map-keys is non-empty";
            self.generic.push(match &list_type {
                None => FieldError::required(&f(XLISTTYPE), why),
                Some(lt) => FieldError::invalid(&f(XLISTTYPE), q(lt), why),
            });
        }

        if !ctx.nested {
            self.structural_rules(&s, m, &ty, path, ctx);
        } else {
            // Junctor branches only restrict values; anything shaping the object must be
            // declared outside them, or pruning and defaulting would depend on which branch wins.
            let (empty, undefined, falsy) = (
                "must be empty to be structural",
                "must be undefined to be structural",
                "must be false to be structural",
            );
            let flags = [
                ("type", !ty.is_empty() && !ctx.allow_type, empty),
                ("additionalProperties", s.additional_properties.is_some(), undefined),
                ("default", s.default.is_some(), undefined),
                ("title", title.is_some_and(|t| !t.is_empty()), empty),
                ("description", s.description.as_ref().is_some_and(|d| !d.is_empty()), empty),
                ("nullable", s.nullable, falsy),
                (XPRESERVE, s.preserve_unknown_fields, falsy),
                (XEMBEDDED, s.embedded_resource, falsy),
                (XINTSTR, s.int_or_string, falsy),
                (XLISTKEYS, !s.list_map_keys.is_empty(), empty),
                (XLISTTYPE, list_type.is_some(), undefined),
            ];
            for (k, hit, why) in flags {
                if hit {
                    self.structural.push(FieldError::forbidden(&f(k), why));
                }
            }
            if s.properties.contains_key("metadata") {
                let field = key(&f("properties"), "metadata");
                self.structural.push(FieldError::forbidden(&field, "must not be specified in a nested context"));
            }
        }
        s
    }

    fn type_must_be(&mut self, ty: &str, want: &str, path: &str, why: &str) {
        if ty != want {
            let field = child(path, "type");
            self.generic.push(if ty.is_empty() {
                FieldError::required(&field, why)
            } else {
                FieldError::invalid(&field, q(ty), why)
            });
        }
    }

    fn list_checks(&mut self, s: &Schema, lt: &str, ty: &str, path: &str) {
        let f = |k: &str| child(path, k);
        let items = s.items.as_deref();
        if ty != "array" {
            self.type_must_be(ty, "array", path, &format!("must be array if {XLISTTYPE} is specified"));
        }
        if !["atomic", "set", "map"].contains(&lt) {
            self.generic.push(FieldError::not_supported(&f(XLISTTYPE), q(lt), &["atomic", "set", "map"]));
        }
        let keys = &s.list_map_keys;
        let shown_keys = || format!("[]string{{{}}}", keys.iter().map(|k| q(k)).collect::<Vec<_>>().join(", "));
        if lt == "map" {
            if keys.is_empty() {
                self.generic
                    .push(FieldError::required(&f(XLISTKEYS), "must not be empty if x-kubernetes-list-type is map"));
            }
            match items {
                None => self
                    .generic
                    .push(FieldError::required(&f("items"), "must have a schema if x-kubernetes-list-type is map")),
                Some(item) if item.ty != Some(SchemaType::Object) => {
                    let why = "must be object if parent array's x-kubernetes-list-type is map";
                    self.generic.push(FieldError::invalid(&child(&f("items"), "type"), q(item.type_name()), why));
                }
                Some(item) => {
                    for (i, k) in keys.iter().enumerate() {
                        match item.properties.get(k) {
                            Some(p) if matches!(p.ty, Some(SchemaType::Array | SchemaType::Object)) => {
                                let field = child(&key(&child(&f("items"), "properties"), k), "type");
                                let why = "must be a scalar type if parent array's x-kubernetes-list-type is map";
                                self.generic.push(FieldError::invalid(&field, q("object"), why));
                            }
                            Some(_) => {}
                            None => {
                                let why = "entries must all be names of item properties";
                                self.generic.push(FieldError::invalid(&f(XLISTKEYS), shown_keys(), why));
                            }
                        }
                        if keys.iter().take(i).any(|x| x == k) {
                            let why = "must not contain duplicate entries";
                            self.generic.push(FieldError::invalid(&f(XLISTKEYS), shown_keys(), why));
                        }
                    }
                }
            }
        }
        // Set and map elements are identified by value or keys, which null would not have.
        if let (Some(item), true) = (items, lt == "set" || lt == "map") {
            if item.nullable {
                let why = format!("cannot be nullable when x-kubernetes-list-type is {lt}");
                self.generic.push(FieldError::forbidden(&child(&f("items"), "nullable"), &why));
            }
            for k in keys.iter().filter(|_| lt == "map") {
                let Some(p) = item.properties.get(k) else { continue };
                let prop = key(&child(&f("items"), "properties"), k);
                if !item.required.contains(k) && p.default.is_none() {
                    let why = "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property";
                    self.generic.push(FieldError::required(&child(&prop, "default"), why));
                }
                if p.nullable {
                    let why = "this property is in x-kubernetes-list-map-keys, so it cannot be nullable";
                    self.generic.push(FieldError::forbidden(&child(&prop, "nullable"), why));
                }
            }
        }
    }

    /// ValidateStructural's invariants for a node outside junctors.
    fn structural_rules(&mut self, s: &Schema, m: &Map<String, Value>, ty: &str, path: &str, ctx: Ctx) {
        let f = |k: &str| child(path, k);
        let root = ctx.level == Level::Root;
        let errs = &mut self.structural;
        if s.ty == Some(SchemaType::Array) && s.items.is_none() {
            errs.push(FieldError::required(&f("items"), "must be specified"));
        }
        if s.int_or_string {
            let why = "must be false if x-kubernetes-int-or-string is true";
            if s.preserve_unknown_fields {
                errs.push(FieldError::invalid(&f(XPRESERVE), "true".into(), why));
            }
            if s.embedded_resource {
                errs.push(FieldError::invalid(&f(XEMBEDDED), "true".into(), why));
            }
        }
        if s.embedded_resource && ty != "object" {
            let why = "must be object if x-kubernetes-embedded-resource is true";
            errs.push(if ty.is_empty() {
                FieldError::required(&f("type"), why)
            } else {
                FieldError::invalid(&f("type"), q(ty), why)
            });
        } else if ty.is_empty() && !s.int_or_string && !s.preserve_unknown_fields {
            let why = match ctx.level {
                Level::Root => "must not be empty at the root",
                Level::Item => "must not be empty for specified array items",
                Level::Field => "must not be empty for specified object fields",
            };
            errs.push(FieldError::required(&f("type"), why));
        }
        if s.embedded_resource && s.additional_properties.is_some() {
            let why = "must not be used if x-kubernetes-embedded-resource is set";
            errs.push(FieldError::forbidden(&f("additionalProperties"), why));
        }
        if root && s.additional_properties.is_some() {
            errs.push(FieldError::forbidden(&f("additionalProperties"), "must not be used at the root"));
        }
        if root && !ty.is_empty() && ty != "object" {
            errs.push(FieldError::invalid(&f("type"), q(ty), "must be object at the root"));
        }
        if root || s.embedded_resource {
            for (k, want) in [("kind", "string"), ("apiVersion", "string"), ("metadata", "object")] {
                if let Some(p) = s.properties.get(k).filter(|p| p.type_name() != want) {
                    let field = child(&key(&f("properties"), k), "type");
                    errs.push(FieldError::invalid(&field, q(p.type_name()), &format!("must be {want}")));
                }
            }
        }
        // The root metadata is ObjectMeta; a schema may only restrict name and generateName.
        let meta = m.get("properties").and_then(|p| p.get("metadata")).and_then(Value::as_object);
        if root && meta.is_some_and(|meta| !bare_metadata(meta)) {
            let why =
                "must not specify anything other than name and generateName, but metadata is implicitly specified";
            errs.push(FieldError::forbidden(&key(&f("properties"), "metadata"), why));
        }
        if s.embedded_resource && !s.preserve_unknown_fields && s.properties.is_empty() {
            let why = "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields";
            errs.push(FieldError::required(&f("properties"), why));
        }
    }
}

/// `anyOf: [{type: integer}, {type: string}]`, the one place junctors may name types.
fn int_or_string_pair(m: &Map<String, Value>) -> bool {
    m.get("anyOf") == Some(&json!([{"type": "integer"}, {"type": "string"}]))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

fn bare_metadata(m: &Map<String, Value>) -> bool {
    const NOT_STRUCTURAL: [&str; 4] = ["$schema", "example", "externalDocs", "id"];
    m.iter().all(|(k, v)| match k.as_str() {
        "type" | "default" => true,
        "properties" => v.as_object().is_none_or(|p| p.keys().all(|k| k == "name" || k == "generateName")),
        k => is_zero(v) || NOT_STRUCTURAL.contains(&k),
    })
}

/// Every property or items a root-level junctor speaks about must exist structurally
/// (kube-apiserver checks this from the root's junctors only).
fn junctor_completeness(v: &Schema, s: &Schema, sp: &str, vp: &str, errs: &mut Vec<FieldError>) {
    let branches = v.all_of.iter().enumerate().map(|(i, b)| (index(&child(vp, "allOf"), i), b));
    let branches = branches
        .chain(v.any_of.iter().enumerate().map(|(i, b)| (index(&child(vp, "anyOf"), i), b)))
        .chain(v.one_of.iter().enumerate().map(|(i, b)| (index(&child(vp, "oneOf"), i), b)))
        .chain(v.not.iter().map(|b| (child(vp, "not"), &**b)));
    for (bp, b) in branches {
        nested_completeness(b, Some(s), sp, &bp, errs);
    }
}

fn nested_completeness(v: &Schema, s: Option<&Schema>, sp: &str, vp: &str, errs: &mut Vec<FieldError>) {
    let Some(s) = s else {
        errs.push(FieldError::required(sp, &format!("because it is defined in {vp}")));
        return;
    };
    junctor_completeness(v, s, sp, vp, errs);
    if let Some(items) = &v.items {
        nested_completeness(items, s.items.as_deref(), &child(sp, "items"), &child(vp, "items"), errs);
    }
    for (k, vf) in &v.properties {
        let vk = key(&child(vp, "properties"), k);
        match (s.properties.get(k), s.additional_properties.as_ref().and_then(AdditionalProperties::schema)) {
            (Some(sf), _) => nested_completeness(vf, Some(sf), &key(&child(sp, "properties"), k), &vk, errs),
            (None, Some(ap)) => nested_completeness(vf, Some(ap), &child(sp, "additionalProperties"), &vk, errs),
            (None, None) => errs.push(FieldError::required(
                &key(&child(sp, "properties"), k),
                &format!("because it is defined in {vk}"),
            )),
        }
    }
}

/// Defaults must survive pruning unchanged and validate against their own schema
/// (kube-apiserver walks properties and items only).
fn check_defaults(s: &Schema, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(d) = &s.default {
        let field = child(path, "default");
        let (mut pruned, mut removed) = (d.clone(), Vec::new());
        prune(Some(s), &mut pruned, "", s.embedded_resource, &mut removed);
        if !removed.is_empty() {
            errs.push(FieldError::invalid(&field, go_value(d, true), "must not have unknown fields"));
        }
        let mut walk = Walk { prefix: &field, errs: Vec::new() };
        walk.value(s, d, "", false);
        errs.append(&mut walk.errs);
    }
    for (k, p) in &s.properties {
        check_defaults(p, &key(&child(path, "properties"), k), errs);
    }
    if let Some(items) = &s.items {
        check_defaults(items, &child(path, "items"), errs);
    }
}

/// Go's RE2 Perl classes and word boundaries are ASCII-only while the regex crate's are
/// Unicode; rewrite them so `^\d+$` rejects "٣" as kube-apiserver does.
fn go_regex(src: &str) -> Result<Regex, regex::Error> {
    let mut out = String::with_capacity(src.len() + 16);
    let mut chars = src.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let next = chars.next();
        out.push_str(match next {
            Some('d') => "[0-9]",
            Some('D') => "[^0-9]",
            Some('s') => r"[\t\n\f\r ]",
            Some('S') => r"[^\t\n\f\r ]",
            Some('w') => "[0-9A-Za-z_]",
            Some('W') => "[^0-9A-Za-z_]",
            Some('b') => r"(?-u:\b)",
            Some('B') => r"(?-u:\B)",
            _ => "\\",
        });
        if let Some(n) = next.filter(|n| !"dDsSwWbB".contains(*n)) {
            out.push(n);
        }
    }
    // Patterns are client input: bound what one may cost (Go's RE2 bounds repetitions instead).
    regex::RegexBuilder::new(&out).size_limit(4 << 20).dfa_size_limit(1 << 20).build()
}

/// Go's `regexp` error shape: "error parsing regexp: <what>: `<pattern>`".
fn regex_error(e: &regex::Error, pattern: &str) -> String {
    let text = e.to_string();
    let what = text.lines().rev().find_map(|l| l.trim().strip_prefix("error: ")).unwrap_or(text.trim());
    format!("error parsing regexp: {what}: `{pattern}`")
}

// ---------------------------------------------------------------------------------------------
// Validation: go-openapi's SchemaValidator as apiextensions' ValidateCustomResource reports it.

struct Walk<'a> {
    /// Where the validated value sits, "" for a custom object (messages name fields relative
    /// to the value; the error's field is prefix + name, as kube-apiserver builds them).
    prefix: &'a str,
    errs: Vec<FieldError>,
}

impl Walk<'_> {
    fn field(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            // kube-apiserver validates custom objects with a nil base path, printed "<nil>".
            (true, true) => "<nil>".to_string(),
            (true, false) => name.to_string(),
            (false, true) => self.prefix.to_string(),
            (false, false) => child(self.prefix, name),
        }
    }

    fn invalid(&mut self, name: &str, value: String, rest: &str) {
        let detail = format!("{name} in body {rest}");
        self.errs.push(FieldError::invalid(&self.field(name), value, detail.trim_start()));
    }

    /// Junctor failures are not field errors in go-openapi, so kube-apiserver reports them at
    /// the base path with an empty value.
    fn composite(&mut self, detail: String) {
        let field = self.field("");
        self.errs.push(FieldError::invalid(&field, q(""), &detail));
    }

    fn value(&mut self, s: &Schema, v: &Value, name: &str, root: bool) {
        let want = if s.int_or_string { Some("integer,string") } else { s.ty.map(SchemaType::as_str) };
        if let Some(want) = want.filter(|_| !(type_ok(s, v) || v.is_null() && s.nullable)) {
            let got = q(json_type(v));
            self.invalid(name, got.clone(), &format!("must be of type {want}: {got}"));
            if !v.is_null() {
                // go-openapi goes on, but what follows would only restate the type error.
                return;
            }
        }
        if v.is_null() {
            self.enumeration(s, v, name);
            return;
        }
        self.junctors(s, v, name);
        match v {
            Value::String(st) => self.string(s, st, name),
            Value::Number(n) => self.number(s, n.as_f64().unwrap_or(0.0), v, name),
            Value::Array(a) => {
                if let Some(items) = &s.items {
                    for (i, x) in a.iter().enumerate() {
                        self.value(items, x, &format!("{name}[{i}]"), false);
                    }
                }
                let n = a.len();
                if let Some(min) = s.min_items.filter(|min| (n as u64) < *min) {
                    self.invalid(name, n.to_string(), &format!("should have at least {min} items"));
                }
                if let Some(max) = s.max_items.filter(|max| n as u64 > *max) {
                    self.errs.push(FieldError::too_many(
                        &self.field(name),
                        n,
                        usize::try_from(max).unwrap_or(usize::MAX),
                    ));
                }
            }
            _ => {}
        }
        self.enumeration(s, v, name);
        if let Value::Object(m) = v {
            self.object(s, m, name, root);
        }
    }

    fn string(&mut self, s: &Schema, st: &str, name: &str) {
        let len = st.chars().count() as u64;
        if let Some(max) = s.max_length.filter(|max| len > *max) {
            let detail = format!("may not be more than {max} bytes");
            self.errs.push(FieldError::new(ErrorType::TooLong, &self.field(name), None, &detail));
        }
        if let Some(min) = s.min_length.filter(|min| len < *min) {
            self.invalid(name, q(st), &format!("should be at least {min} chars long"));
        }
        if let Some(p) = s.pattern.as_ref().filter(|p| !p.regex.is_match(st)) {
            self.invalid(name, q(st), &format!("should match '{}'", p.source));
        }
        if let Some(format) = s.format.as_deref().filter(|f| !format_ok(f, st)) {
            self.invalid(name, q(st), &format!("must be of type {format}: {}", q(st)));
        }
    }

    fn number(&mut self, s: &Schema, x: f64, v: &Value, name: &str) {
        if let Some(factor) = s.multiple_of.filter(|f| *f > 0.0) {
            let mult = if factor < 1.0 { 1.0 / factor * x } else { x / factor };
            if !(mult.is_finite() && (mult - mult.round()).abs() < 1e-9) {
                self.invalid(name, go_value(v, true), &format!("should be a multiple of {}", go_float(factor)));
            }
        }
        if let Some(max) = s.maximum {
            if s.exclusive_maximum && x >= max {
                self.invalid(name, go_value(v, true), &format!("should be less than {}", go_float(max)));
            } else if x > max {
                self.invalid(name, go_value(v, true), &format!("should be less than or equal to {}", go_float(max)));
            }
        }
        if let Some(min) = s.minimum {
            if s.exclusive_minimum && x <= min {
                self.invalid(name, go_value(v, true), &format!("should be greater than {}", go_float(min)));
            } else if x < min {
                self.invalid(name, go_value(v, true), &format!("should be greater than or equal to {}", go_float(min)));
            }
        }
    }

    fn enumeration(&mut self, s: &Schema, v: &Value, name: &str) {
        let Some(allowed) = s.enum_values.as_ref().filter(|a| !a.is_empty()) else { return };
        let this = canon(v);
        if allowed.iter().any(|a| canon(a) == this) {
            return;
        }
        let shown: Vec<String> = allowed.iter().map(|a| a.as_str().map_or_else(|| canon(a), str::to_string)).collect();
        let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        self.errs.push(FieldError::not_supported(&self.field(name), go_value(v, true), &shown));
    }

    fn object(&mut self, s: &Schema, m: &Map<String, Value>, name: &str, root: bool) {
        let skip = |k: &str| root && META_FIELDS.contains(&k);
        let n = m.len();
        if let Some(max) = s.max_properties.filter(|max| n as u64 > *max) {
            self.errs.push(FieldError::too_many(&self.field(name), n, usize::try_from(max).unwrap_or(usize::MAX)));
        }
        if let Some(min) = s.min_properties.filter(|min| (n as u64) < *min) {
            self.invalid(name, n.to_string(), &format!("should have at least {min} properties"));
        }
        for r in s.required.iter().filter(|r| !skip(r.as_str()) && !m.contains_key(r.as_str())) {
            self.errs.push(FieldError::required(&self.field(&child(name, r)), ""));
        }
        for (k, x) in m.iter().filter(|(k, _)| !skip(k.as_str())) {
            let member = child(name, k);
            match (s.properties.get(k), &s.additional_properties) {
                (Some(p), _) => self.value(p, x, &member, false),
                (None, Some(AdditionalProperties::Schema(ap))) => self.value(ap, x, &member, false),
                (None, Some(AdditionalProperties::Allows(false))) => {
                    let detail = format!("{member} in body is a forbidden property");
                    self.errs.push(FieldError::invalid(&self.field(name), q(k), &detail));
                }
                _ => {}
            }
        }
        if s.embedded_resource {
            self.embedded(m, name);
        }
    }

    /// An embedded resource needs apiVersion and kind like a top-level object.
    fn embedded(&mut self, m: &Map<String, Value>, name: &str) {
        for k in ["apiVersion", "kind"] {
            let field = self.field(&child(name, k));
            let bad = |value: String, why: &str| FieldError::invalid(&field, value, why);
            let err = match m.get(k) {
                None => Some(FieldError::required(&field, "must not be empty")),
                Some(Value::String(s)) if s.is_empty() => Some(bad(q(""), "must not be empty")),
                Some(Value::String(s)) if k == "apiVersion" && s.matches('/').count() > 1 => {
                    Some(bad(q(s), &format!("unexpected GroupVersion string: {s}")))
                }
                Some(Value::String(s)) if k == "kind" => {
                    let errs = dns1035_errors(&s.to_lowercase());
                    let why = format!("may have mixed case, but should otherwise match: {errs}");
                    (!errs.is_empty()).then(|| bad(q(s), &why))
                }
                Some(Value::String(_)) => None,
                Some(other) => Some(bad(go_value(other, true), "must be a string")),
            };
            self.errs.extend(err);
        }
    }

    fn junctors(&mut self, s: &Schema, v: &Value, name: &str) {
        let qn = q(name);
        if !s.any_of.is_empty() {
            let results: Vec<Vec<FieldError>> = s.any_of.iter().map(|b| self.branch(b, v, name)).collect();
            if !results.iter().any(Vec::is_empty) {
                self.composite(format!("{qn} must validate at least one schema (anyOf)"));
                // go-openapi adds the errors of the branch that came closest.
                self.errs.extend(results.into_iter().min_by_key(Vec::len).unwrap_or_default());
            }
        }
        if !s.one_of.is_empty() {
            let results: Vec<Vec<FieldError>> = s.one_of.iter().map(|b| self.branch(b, v, name)).collect();
            match results.iter().filter(|r| r.is_empty()).count() {
                1 => {}
                0 => {
                    self.composite(format!("{qn} must validate one and only one schema (oneOf). Found none valid"));
                    self.errs.extend(results.into_iter().min_by_key(Vec::len).unwrap_or_default());
                }
                n => self.composite(format!(
                    "{qn} must validate one and only one schema (oneOf). Found {n} valid alternatives"
                )),
            }
        }
        if !s.all_of.is_empty() {
            let mut passed = 0;
            for b in &s.all_of {
                let mut errs = self.branch(b, v, name);
                passed += usize::from(errs.is_empty());
                self.errs.append(&mut errs);
            }
            if passed != s.all_of.len() {
                let none = if passed == 0 { ". None validated" } else { "" };
                self.composite(format!("{qn} must validate all the schemas (allOf){none}"));
            }
        }
        if s.not.as_ref().is_some_and(|b| self.branch(b, v, name).is_empty()) {
            self.composite(format!("{qn} must not validate the schema (not)"));
        }
    }

    fn branch(&self, s: &Schema, v: &Value, name: &str) -> Vec<FieldError> {
        let mut walk = Walk { prefix: self.prefix, errs: Vec::new() };
        walk.value(s, v, name, false);
        walk.errs
    }
}

/// go-openapi's JSON type of a value as the API server decoded it (whole numbers are int64).
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) if is_integer(v) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
}

fn type_ok(s: &Schema, v: &Value) -> bool {
    if s.int_or_string {
        return is_integer(v) || v.is_string();
    }
    match s.ty {
        None => true,
        Some(SchemaType::Object) => v.is_object(),
        Some(SchemaType::Array) => v.is_array(),
        Some(SchemaType::String) => v.is_string(),
        Some(SchemaType::Integer) => is_integer(v),
        Some(SchemaType::Number) => v.is_number(),
        Some(SchemaType::Boolean) => v.is_boolean(),
    }
}

fn dns1035_errors(s: &str) -> String {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters");
    }
    let b = s.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_lowercase)
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.last() != Some(&b'-');
    if !ok {
        errs.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')");
    }
    errs.join(",")
}

/// structurallisttype.ValidateListSetsAndMaps: duplicates in `set` and `map` lists. Its paths
/// differ from go-openapi's: map (additionalProperties) members are `[key]`.
fn lists(s: &Schema, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match v {
        Value::Array(a) => {
            match s.list_type {
                Some(ListType::Set) => duplicates(a.iter().enumerate().map(|(i, x)| (i, x.clone())), path, errs),
                Some(ListType::Map) => {
                    if let Some((i, x)) = a.iter().enumerate().find(|(_, x)| !x.is_null() && !x.is_object()) {
                        let why = "must be an object for an array of list-type map";
                        errs.push(FieldError::invalid(&index(path, i), go_value(x, true), why));
                        return;
                    }
                    let keys = a.iter().enumerate().filter_map(|(i, x)| Some((i, map_keys(s, x.as_object()?))));
                    duplicates(keys, path, errs);
                }
                _ => {}
            }
            if let Some(items) = &s.items {
                for (i, x) in a.iter().enumerate() {
                    lists(items, x, &index(path, i), errs);
                }
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                if let Some(p) = s.properties.get(k) {
                    lists(p, x, &child(path, k), errs);
                } else if let Some(AdditionalProperties::Schema(ap)) = &s.additional_properties {
                    lists(ap, x, &key(path, k), errs);
                }
            }
        }
        _ => {}
    }
}

/// The identity of a map-list element: its key fields, a missing one taking its default.
fn map_keys(s: &Schema, m: &Map<String, Value>) -> Value {
    let item = s.items.as_deref();
    let mut keys = Map::new();
    for k in &s.list_map_keys {
        let default = item.and_then(|i| i.properties.get(k)).and_then(|p| p.default.as_ref());
        if let Some(v) = m.get(k).or(default) {
            keys.insert(k.clone(), v.clone());
        }
    }
    Value::Object(keys)
}

/// Reports the second occurrence of each repeated value, as kube-apiserver does.
fn duplicates(values: impl Iterator<Item = (usize, Value)>, path: &str, errs: &mut Vec<FieldError>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, v) in values {
        let n = seen.entry(canon(&v)).or_insert(0);
        *n += 1;
        if *n == 2 {
            errs.push(FieldError::duplicate(&index(path, i), go_value(&v, true)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pruning and defaulting (apiextensions' structural pruning and defaulting algorithms).

fn prune(s: Option<&Schema>, v: &mut Value, path: &str, resource: bool, out: &mut Vec<String>) {
    match s {
        Some(s) if s.preserve_unknown_fields => skip_prune(s, v, path, resource, out),
        _ => match v {
            Value::Object(m) => {
                let Some(s) = s else {
                    // No schema (a value under `additionalProperties: true`): nothing inside it is specified.
                    out.extend(m.keys().map(|k| child(path, k)));
                    m.clear();
                    return;
                };
                m.retain(|k, x| {
                    let member = child(path, k);
                    if (resource || s.embedded_resource) && META_FIELDS.contains(&k.as_str()) {
                        true
                    } else if let Some(p) = s.properties.get(k) {
                        prune(Some(p), x, &member, false, out);
                        true
                    } else if let Some(ap) = &s.additional_properties {
                        prune(ap.schema(), x, &member, false, out);
                        true
                    } else {
                        out.push(member);
                        false
                    }
                });
            }
            Value::Array(a) => {
                let items = s.and_then(|s| s.items.as_deref());
                for (i, x) in a.iter_mut().enumerate() {
                    prune(items, x, &index(path, i), false, out);
                }
            }
            _ => {}
        },
    }
}

/// Under `x-kubernetes-preserve-unknown-fields` unknown members stay, but specified ones are
/// still pruned inside.
fn skip_prune(s: &Schema, v: &mut Value, path: &str, resource: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if (resource || s.embedded_resource) && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(p) = s.properties.get(k) {
                    prune(Some(p), x, &child(path, k), false, out);
                } else if let Some(ap) = &s.additional_properties {
                    prune(ap.schema(), x, &child(path, k), false, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &s.items {
                for (i, x) in a.iter_mut().enumerate() {
                    skip_prune(items, x, &index(path, i), false, out);
                }
            }
        }
        _ => {}
    }
}

fn drop_nulls(s: &Schema, v: &mut Value) {
    match v {
        Value::Object(m) => m.retain(|k, x| match s.properties.get(k) {
            Some(p) if x.is_null() => p.nullable || p.default.is_some(),
            Some(p) => {
                drop_nulls(p, x);
                true
            }
            None => {
                if let Some(AdditionalProperties::Schema(ap)) = &s.additional_properties {
                    drop_nulls(ap, x);
                }
                true
            }
        }),
        Value::Array(a) => {
            if let Some(items) = &s.items {
                a.iter_mut().for_each(|x| drop_nulls(items, x));
            }
        }
        _ => {}
    }
}

fn default(s: &Schema, v: &mut Value) {
    let fill = |s: &Schema, x: &mut Value| {
        if let (true, false, Some(d)) = (x.is_null(), s.nullable, &s.default) {
            *x = d.clone();
        }
    };
    match v {
        Value::Object(m) => {
            for (k, p) in &s.properties {
                if let Some(d) = &p.default {
                    let x = m.entry(k.clone()).or_insert_with(|| d.clone());
                    fill(p, x);
                }
            }
            for (k, x) in m.iter_mut() {
                if let Some(p) = s.properties.get(k) {
                    default(p, x);
                } else if let Some(AdditionalProperties::Schema(ap)) = &s.additional_properties {
                    fill(ap, x);
                    default(ap, x);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &s.items {
                for x in a.iter_mut() {
                    fill(items, x);
                    default(items, x);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering values the way Go prints them in kube-apiserver's messages.

/// Go's `%v` of a decoded JSON value (`%#v` inside containers): whole numbers are int64.
fn go_value(v: &Value, top: bool) -> String {
    let join = |parts: Vec<String>| parts.join(", ");
    match v {
        Value::Null if top => "null".to_string(),
        Value::Null => "interface {}(nil)".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64().unwrap_or(0.0)) {
            (Some(i), _) => i.to_string(),
            // The API server's JSON decoding turns whole floats into int64 where they fit.
            (None, f) if f.fract() == 0.0 && f.abs() < 9.2e18 => (f as i64).to_string(),
            (None, f) => go_float(f),
        },
        Value::String(s) => q(s),
        Value::Array(a) => format!("[]interface {{}}{{{}}}", join(a.iter().map(|x| go_value(x, false)).collect())),
        Value::Object(m) => {
            let members = m.iter().map(|(k, x)| format!("{}:{}", q(k), go_value(x, false))).collect();
            format!("map[string]interface {{}}{{{}}}", join(members))
        }
    }
}

/// Go's `%v` of a float64 (`%g`, shortest): `1`, `0.5`, `1e+06`, `2.5e-05`.
fn go_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// A canonical text for equality the way kube-apiserver compares decoded values (1.0 == 1).
fn canon(v: &Value) -> String {
    match v {
        Value::Number(_) => go_value(v, true),
        Value::Array(a) => format!("[{}]", a.iter().map(canon).collect::<Vec<_>>().join(",")),
        Value::Object(m) => {
            let members: Vec<String> = m.iter().map(|(k, x)| format!("{}:{}", q(k), canon(x))).collect();
            format!("{{{}}}", members.join(","))
        }
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// String formats: the ones kube-apiserver's registry knows; unknown formats always pass.

fn format_ok(format: &str, s: &str) -> bool {
    match format.to_ascii_lowercase().replace('-', "").as_str() {
        "datetime" => is_date_time(s),
        "date" => is_date(s),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s.replace(['\r', '\n'], "")).is_ok(),
        "uuid" => is_uuid(s),
        "hostname" => is_hostname(s),
        "ipv4" => s.parse::<IpAddr>().is_ok() && s.contains('.'),
        "ipv6" => s.parse::<IpAddr>().is_ok() && s.contains(':'),
        "cidr" => is_cidr(s),
        "email" => is_email(s),
        "duration" => is_duration(s),
        _ => true,
    }
}

/// RFC 3339 full-date, exactly `2006-01-02`.
fn is_date(s: &str) -> bool {
    let num = |r: std::ops::Range<usize>| s.get(r).filter(|t| t.bytes().all(|b| b.is_ascii_digit()))?.parse().ok();
    let dashes = s.get(4..5) == Some("-") && s.get(7..8) == Some("-");
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) if s.len() == 10 && dashes => {
            chrono::NaiveDate::from_ymd_opt(i32::try_from(y).unwrap_or(0), m, d).is_some()
        }
        _ => false,
    }
}

/// strfmt's IsDateTime: a full-date, `t`, then `HH:MM:SS[.frac](z|±HH:MM)`, case-insensitive.
fn is_date_time(s: &str) -> bool {
    static TIME: OnceLock<Option<Regex>> = OnceLock::new();
    let lower = s.to_ascii_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else { return false };
    let re = TIME
        .get_or_init(|| Regex::new(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$").ok());
    let Some(c) = re.as_ref().and_then(|re| re.captures(time)) else { return false };
    let part = |i: usize| c.get(i).map_or("", |m| m.as_str());
    s.len() >= 4 && is_date(date) && part(1) <= "23" && part(2) <= "59" && part(3) <= "59"
}

/// `(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$`
fn is_uuid(s: &str) -> bool {
    let mut rest = s.as_bytes();
    for (g, len) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if g > 0 {
            rest = rest.strip_prefix(b"-").unwrap_or(rest);
        }
        match (rest.get(..len), rest.get(len..)) {
            (Some(chunk), Some(tail)) if chunk.iter().all(u8::is_ascii_hexdigit) => rest = tail,
            _ => return false,
        }
    }
    rest.is_empty()
}

/// RFC 1034 host names as strfmt accepts them (letters may be non-ASCII), at most 255 bytes.
fn is_hostname(s: &str) -> bool {
    let labels = s.strip_suffix('.').unwrap_or(s);
    let word = |c: char| c.is_alphanumeric() || !c.is_ascii();
    s.len() <= 255
        && labels.split('.').all(|l| {
            let n = l.chars().count();
            (1..=63).contains(&n) && l.starts_with(word) && l.ends_with(word) && l.chars().all(|c| word(c) || c == '-')
        })
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    let Ok(ip) = ip.parse::<IpAddr>() else { return false };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (1..=3).contains(&bits.len())
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|n| n <= max)
}

/// A lenient net/mail.ParseAddress: `local@domain`, optionally as `Name <local@domain>`.
fn is_email(s: &str) -> bool {
    let addr = match (s.find('<'), s.strip_suffix('>')) {
        (Some(i), Some(rest)) => rest.get(i + 1..).unwrap_or(""),
        _ => s,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && !addr.chars().any(char::is_whitespace)
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// Go's time.ParseDuration (`1h30m`, `-1.5s`), plus the day and week units and spaces
/// (`3 days`, `2w`) that strfmt's duration format also takes.
fn is_duration(s: &str) -> bool {
    const UNITS: [&str; 20] = [
        "ns", "us", "µs", "μs", "ms", "s", "m", "h", "d", "w", "sec", "second", "min", "minute", "hr", "hour", "day",
        "wk", "week", "nano",
    ];
    let unit_ok =
        |u: &str| UNITS.contains(&u) || (u.len() > 3 && u.strip_suffix('s').is_some_and(|u| UNITS.contains(&u)));
    let mut rest = s.trim().strip_prefix(['-', '+']).unwrap_or(s.trim());
    if rest == "0" {
        return true;
    }
    let mut terms = 0;
    while !rest.is_empty() {
        let (num, tail) = rest.split_at(rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len()));
        let tail = tail.trim_start();
        let (unit, tail) = tail.split_at(tail.find(|c: char| !c.is_alphabetic()).unwrap_or(tail.len()));
        if !num.bytes().any(|b| b.is_ascii_digit()) || num.matches('.').count() > 1 || !unit_ok(&unit.to_lowercase()) {
            return false;
        }
        terms += 1;
        rest = tail.trim_start();
    }
    terms > 0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const P: &str = "spec.versions[0].schema.openAPIV3Schema";

    fn schema(v: Value) -> Schema {
        Schema::parse(&v, P).unwrap_or_else(|e| panic!("{:?}", msgs(&e)))
    }

    fn refused(v: Value) -> Vec<String> {
        msgs(&Schema::parse(&v, P).err().unwrap_or_default())
    }

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn check(s: &Schema, obj: Value) -> Vec<String> {
        msgs(&s.validate(&obj))
    }

    /// The CronTab example of the Kubernetes documentation.
    fn crontab() -> Schema {
        schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "required": ["image"], "properties": {
                "cronSpec": {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
                "image": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
            }}},
        }))
    }

    fn cron(spec: Value) -> Value {
        json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"}, "spec": spec})
    }

    #[test]
    fn crontab_accepts_and_rejects_like_kube_apiserver() {
        let s = crontab();
        assert!(check(&s, cron(json!({"cronSpec": "* * * * */5", "image": "my-image", "replicas": 5}))).is_empty());
        assert_eq!(
            check(&s, cron(json!({"cronSpec": "* * * *", "image": "i", "replicas": 0}))),
            [
                r"spec.cronSpec: Invalid value: ${q}* * * *${q}: spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"
                    .replace("${q}", "\""),
                "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1".into(),
            ]
        );
        assert_eq!(
            check(&s, cron(json!({"replicas": "3"}))),
            [
                "spec.image: Required value",
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            ]
        );
        assert_eq!(
            check(&s, cron(json!({"image": "i", "replicas": 11}))),
            ["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"]
        );
        // 2.0 decodes as an integer in kube-apiserver; 2.5 does not.
        assert!(check(&s, cron(json!({"image": "i", "replicas": 2.0}))).is_empty());
        assert_eq!(
            check(&s, cron(json!({"image": "i", "replicas": 2.5}))),
            [r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#]
        );
        // Go's RE2 `\d` is ASCII-only.
        assert_eq!(check(&s, cron(json!({"image": "i", "cronSpec": "١ * * * *"}))).len(), 1);
        assert_eq!(s.at_path(&["spec", "replicas"]).map(Schema::type_name), Some("integer"));
        assert!(s.at_path(&["spec", "nope"]).is_none());
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_resource_meta_and_preserved_subtrees() {
        let s = schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "pod": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object", "properties": {}}}},
        }}}}));
        let mut obj = json!({
            "apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "status": {"x": 1},
            "spec": {
                "bogus": 1,
                "ports": [{"name": "http", "extra": true}],
                "free": {"anything": {"deep": 1}, "known": {"a": "x", "b": "y"}},
                "labels": {"any": "thing"},
                "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"c": 1}, "other": 2},
            },
        });
        assert_eq!(
            s.prune(&mut obj),
            ["spec.bogus", "spec.free.known.b", "spec.pod.other", "spec.pod.spec.c", "spec.ports[0].extra", "status"]
        );
        assert_eq!(
            obj,
            json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {
                "ports": [{"name": "http"}],
                "free": {"anything": {"deep": 1}, "known": {"a": "x"}},
                "labels": {"any": "thing"},
                "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
            }})
        );
        let mut bad_pod = json!({"spec": {"pod": {"metadata": {}, "kind": "a_b"}}});
        s.prune(&mut bad_pod);
        assert_eq!(
            check(&s, bad_pod),
            [
                "spec.pod.apiVersion: Required value: must not be empty",
                r#"spec.pod.kind: Invalid value: "a_b": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
            ]
        );
    }

    #[test]
    fn defaults_fill_absent_and_null_members_recursively() {
        let s = schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "mode": {"type": "string", "default": "auto"},
            "opt": {"type": "string"},
            "keep": {"type": "string", "nullable": true, "default": "k"},
            "ports": {"type": "array", "items": {"type": "object", "properties": {
                "protocol": {"type": "string", "default": "TCP"},
                "port": {"type": "integer"},
            }}},
            "tls": {"type": "object", "default": {}, "properties": {"enabled": {"type": "boolean", "default": false}}},
            "byName": {"type": "object", "additionalProperties": {"type": "object",
                "properties": {"weight": {"type": "integer", "default": 1}}}},
        }}}}));
        let mut obj = json!({"spec": {"mode": null, "opt": null, "keep": null, "ports": [{"port": 80}, {"protocol": "UDP"}],
            "byName": {"a": {}}}});
        s.apply_defaults(&mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"mode": "auto", "keep": null, "ports": [{"port": 80, "protocol": "TCP"}, {"protocol": "UDP"}],
                "tls": {"enabled": false}, "byName": {"a": {"weight": 1}}}})
        );
        // No parent object, no defaults below it.
        let mut empty = json!({});
        s.apply_defaults(&mut empty);
        assert_eq!(empty, json!({}));
    }

    #[test]
    fn int_or_string_preserve_unknown_and_nullable() {
        let s = schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "port": {"x-kubernetes-int-or-string": true},
            "any": {"x-kubernetes-preserve-unknown-fields": true},
            "name": {"type": "string"},
            "maybe": {"type": "string", "nullable": true},
            "pair": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        }}}}));
        for port in [json!(80), json!("http"), json!(8.0)] {
            assert!(
                check(&s, json!({"spec": {"port": port, "pair": port, "any": {"x": [1]}, "maybe": null}})).is_empty()
            );
        }
        assert_eq!(
            check(&s, json!({"spec": {"port": true, "name": null}})),
            [
                r#"spec.name: Invalid value: "null": spec.name in body must be of type string: "null""#,
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
            ]
        );
        assert_eq!(s.at_path(&["spec", "port"]).map(Schema::type_name), Some(""));
    }

    #[test]
    fn list_types_report_duplicates() {
        let s = schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "port": {"type": "integer"}}}},
            "byKey": {"type": "object", "additionalProperties": {"type": "array", "x-kubernetes-list-type": "set",
                "items": {"type": "integer"}}},
        }}}}));
        assert_eq!(
            check(
                &s,
                json!({"spec": {
                    "tags": ["a", "b", "a", "a"],
                    "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}],
                    "byKey": {"k": [1, 1.0]},
                }})
            ),
            [
                "spec.byKey[k][1]: Duplicate value: 1",
                r#"spec.ports[1]: Duplicate value: map[string]interface {}{"name":"http"}"#,
                r#"spec.tags[2]: Duplicate value: "a""#,
            ]
        );
    }

    #[test]
    fn enums_lengths_counts_and_junctors() {
        let s = schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["a", "b"]},
            "level": {"type": "integer", "enum": [1, 2]},
            "name": {"type": "string", "minLength": 1, "maxLength": 5},
            "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string"}},
            "size": {"type": "number", "multipleOf": 0.5, "exclusiveMaximum": true, "maximum": 1000000},
            "one": {"type": "string", "oneOf": [{"pattern": "^a"}, {"pattern": "b$"}]},
            "not": {"type": "string", "not": {"enum": ["x"]}},
            "word": {"type": "string", "pattern": r"\bab\B"},
        }}}}));
        assert!(check(&s, json!({"spec": {"word": "x abc"}})).is_empty());
        assert_eq!(check(&s, json!({"spec": {"word": "éabc"}})).len(), 0, "Go's \\b is ASCII-only");
        assert_eq!(check(&s, json!({"spec": {"word": "xabc"}})).len(), 1);
        assert!(check(&s, json!({"spec": {"mode": "a", "level": 2.0, "name": "abc", "items": ["x"], "size": 2.5}}))
            .is_empty());
        assert_eq!(
            check(
                &s,
                json!({"spec": {"mode": "x", "level": 3, "name": "abcdef", "items": ["1", "2", "3", "4"],
                "size": 1.25, "one": "ab", "not": "x"}})
            ),
            [
                r#"spec.items: Too many: 4: must have at most 3 items"#,
                r#"spec.level: Unsupported value: 3: supported values: "1", "2""#,
                r#"spec.mode: Unsupported value: "x": supported values: "a", "b""#,
                r#"spec.name: Too long: may not be more than 5 bytes"#,
                r#"<nil>: Invalid value: "": "spec.not" must not validate the schema (not)"#,
                r#"<nil>: Invalid value: "": "spec.one" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
                r#"spec.size: Invalid value: 1.25: spec.size in body should be a multiple of 0.5"#,
            ]
        );
        assert_eq!(
            check(&s, json!({"spec": {"name": "", "items": [], "size": 1e6}})),
            [
                r#"spec.items: Invalid value: 0: spec.items in body should have at least 1 items"#,
                r#"spec.name: Invalid value: "": spec.name in body should be at least 1 chars long"#,
                r#"spec.size: Invalid value: 1000000: spec.size in body should be less than 1e+06"#,
            ]
        );
    }

    #[test]
    fn formats() {
        let cases = [
            ("date-time", "2024-02-29T10:00:00.5+01:00", "2024-02-30T10:00:00Z"),
            ("date", "2024-02-29", "2023-02-29"),
            ("byte", "aGVsbG8=", "aGVsbG8"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456"),
            ("uuid", "123E4567E89B12D3A456426614174000", "123e4567-e89b-12d3-a456-4266141740001"),
            ("hostname", "my-host.example.com.", "-bad.example"),
            ("ipv4", "10.0.0.1", "10.0.0.256"),
            ("ipv6", "fe80::1", "10.0.0.1"),
            ("cidr", "10.0.0.0/8", "10.0.0.0/33"),
            ("email", "Jo <jo@example.com>", "jo@"),
            ("duration", "1h30m", "an hour"),
            ("duration", "3 days", "1x"),
        ];
        for (format, good, bad) in cases {
            let s = schema(json!({"type": "object", "properties": {"when": {"type": "string", "format": format}}}));
            assert!(check(&s, json!({"when": good})).is_empty(), "{format} {good}");
            assert_eq!(
                check(&s, json!({"when": bad})),
                [format!(r#"when: Invalid value: {bad:?}: when in body must be of type {format}: {bad:?}"#)]
            );
        }
        let s = schema(json!({"type": "object", "properties": {"n": {"type": "integer", "format": "int32"},
            "x": {"type": "string", "format": "no-such-format"}}}));
        assert!(check(&s, json!({"n": 1, "x": "anything"})).is_empty());
    }

    #[test]
    fn non_structural_schemas_are_refused_with_kube_paths() {
        assert_eq!(
            refused(json!({"type": "object", "properties": {
                "spec": {"properties": {"a": {"type": "string"}}},
                "list": {"type": "array"},
                "ref": {"$ref": "#/definitions/x"},
                "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
                "uniq": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
                "re": {"type": "string", "pattern": "(a"},
                "junct": {"type": "string", "anyOf": [{"type": "string", "default": "x"}, {"nullable": true}]},
            }})),
            [
                format!("{P}.properties[both].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"),
                format!("{P}.properties[ref].$ref: Forbidden: $ref is not supported"),
                format!("{P}.properties[uniq].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"),
                format!("{P}.properties[junct].anyOf[0].default: Forbidden: must be undefined to be structural"),
                format!("{P}.properties[junct].anyOf[0].type: Forbidden: must be empty to be structural"),
                format!("{P}.properties[junct].anyOf[1].nullable: Forbidden: must be false to be structural"),
                format!("{P}.properties[list].items: Required value: must be specified"),
                format!("{P}.properties[re].pattern: Invalid value: \"(a\": must be a valid regular expression, but isn't: error parsing regexp: unclosed group: `(a`"),
                format!("{P}.properties[ref].type: Required value: must not be empty for specified object fields"),
                format!("{P}.properties[spec].type: Required value: must not be empty for specified object fields"),
            ]
        );
        assert_eq!(
            refused(json!({"type": "string"})),
            [format!("{P}.type: Invalid value: \"string\": must be object at the root")]
        );
        assert_eq!(
            refused(json!({"type": "object", "properties": {"a": {"type": "string", "default": 5}, "b": {"type": "object",
                "properties": {"c": {"type": "string"}}, "default": {"c": "x", "d": 1}}}})),
            [
                format!("{P}.properties[a].default: Invalid value: \"integer\": in body must be of type string: \"integer\""),
                format!("{P}.properties[b].default: Invalid value: map[string]interface {{}}{{\"c\":\"x\", \"d\":1}}: must not have unknown fields"),
            ]
        );
        assert_eq!(
            refused(json!({"type": "object", "anyOf": [{"properties": {"x": {"minLength": 1}}}]})),
            [format!("{P}.properties[x]: Required value: because it is defined in {P}.anyOf[0].properties[x]")]
        );
    }

    #[test]
    fn deep_and_garbage_schemas_are_refused_without_panicking() {
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "object", "properties": {"a": deep}});
        }
        let errs = refused(deep);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].ends_with("Forbidden: must not be nested more than 64 levels deep"));
        for garbage in
            [json!(null), json!([1]), json!({"type": 5, "properties": [], "items": "x", "enum": {}, "minLength": -1})]
        {
            assert!(!refused(garbage).is_empty());
        }
    }
}
