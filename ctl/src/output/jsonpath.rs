//! kubectl's JSONPath templates (`-o jsonpath='{.items[*].metadata.name}'`): literal text
//! and `{…}` actions with fields, `['quoted']` fields, indexes (negative too), slices,
//! `[*]`, recursive descent `..name`, filters `[?(@.type=="Ready")]`, string literals
//! `{"\n"}` and `{range …}…{end}`. Missing keys print nothing, as with kubectl's default
//! `--allow-missing-template-keys=true`; several results of one action are joined by spaces.

use serde_json::Value;

use crate::error::{CtlError, Result};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Root,
    Field(String),
    Recursive(String),
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Wildcard,
    Filter(Vec<Step>, Option<(String, Value)>),
}

impl Template {
    /// Parses a template; errors name the template and the problem.
    pub fn parse(source: &str) -> Result<Template> {
        let bad = |msg: &str| CtlError::usage(format!("error parsing jsonpath {source}, {msg}"));
        let mut stack: Vec<(Vec<Step>, Vec<Node>)> = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                nodes.push(Node::Text(rest.to_string()));
                break;
            };
            if open > 0 {
                nodes.push(Node::Text(rest[..open].to_string()));
            }
            let close = matching_brace(&rest[open..]).ok_or_else(|| bad("unclosed action"))? + open;
            let action = rest[open + 1..close].trim();
            rest = &rest[close + 1..];
            if action == "end" {
                let (steps, outer) = stack.pop().ok_or_else(|| bad("not in range, nothing to end"))?;
                let body = std::mem::replace(&mut nodes, outer);
                nodes.push(Node::Range(steps, body));
            } else if let Some(expr) = action.strip_prefix("range ") {
                let steps = parse_path(expr.trim()).map_err(|m| bad(&m))?;
                stack.push((steps, std::mem::take(&mut nodes)));
            } else if let Some(lit) = action.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                nodes.push(Node::Text(unescape(lit)));
            } else {
                nodes.push(Node::Path(parse_path(action).map_err(|m| bad(&m))?));
            }
        }
        if !stack.is_empty() {
            return Err(bad("unclosed range"));
        }
        Ok(Template { nodes })
    }

    /// Renders the template against `root`.
    pub fn render(&self, root: &Value) -> Result<String> {
        let mut out = String::new();
        render_nodes(&self.nodes, root, root, &mut out);
        Ok(out)
    }
}

fn render_nodes(nodes: &[Node], root: &Value, current: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(steps) => {
                let values = eval(steps, root, current);
                let texts: Vec<String> = values.iter().map(value_text).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(steps, body) => {
                for item in eval(steps, root, current) {
                    render_nodes(body, root, &item, out);
                }
            }
        }
    }
}

/// How a result prints: strings raw, everything else as compact JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 0;
    let mut in_string = false;
    let mut prev = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '"' if prev != '\\' => in_string = !in_string,
            '{' if !in_string => depth += 1,
            '}' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        prev = c;
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r").replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Parses `.a.b[0]['c'][*]..d[?(@.x=="y")]` into steps.
fn parse_path(expr: &str) -> std::result::Result<Vec<Step>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    let ident = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && !matches!(chars[*i], '.' | '[') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    while i < chars.len() {
        match chars[i] {
            '$' => {
                steps.push(Step::Root);
                i += 1;
            }
            '@' => i += 1,
            '.' if chars.get(i + 1) == Some(&'.') => {
                i += 2;
                let name = ident(&mut i);
                steps.push(Step::Recursive(name));
            }
            '.' => {
                i += 1;
                let name = ident(&mut i);
                match name.as_str() {
                    "" => {}
                    "*" => steps.push(Step::Wildcard),
                    _ => steps.push(Step::Field(name)),
                }
            }
            '[' => {
                let close = find_bracket_end(&chars, i).ok_or_else(|| format!("unterminated array in {expr}"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(parse_bracket(inner.trim())?);
                i = close + 1;
            }
            c if i == 0 && (c.is_alphanumeric() || c == '_') => {
                let name = ident(&mut i);
                steps.push(Step::Field(name));
            }
            c => return Err(format!("unrecognized character in action: U+{:04X} '{c}'", c as u32)),
        }
    }
    Ok(steps)
}

fn find_bracket_end(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> std::result::Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Ok(Step::Field(q.to_string()));
    }
    if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Ok(Step::Field(q.to_string()));
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
        return parse_filter(filter.trim());
    }
    if let Some((a, b)) = inner.split_once(':') {
        let b = b.split(':').next().unwrap_or("");
        let num = |s: &str| -> std::result::Result<Option<i64>, String> {
            if s.trim().is_empty() {
                Ok(None)
            } else {
                s.trim().parse().map(Some).map_err(|_| format!("invalid array index {s}"))
            }
        };
        return Ok(Step::Slice(num(a)?, num(b)?));
    }
    inner.parse().map(Step::Index).map_err(|_| format!("invalid array index {inner}"))
}

fn parse_filter(filter: &str) -> std::result::Result<Step, String> {
    for op in ["==", "!=", "<=", ">=", "<", ">"] {
        if let Some((lhs, rhs)) = filter.split_once(op) {
            let path = parse_path(lhs.trim())?;
            let rhs = rhs.trim();
            let literal = if let Some(s) = rhs
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            {
                Value::String(s.to_string())
            } else {
                serde_json::from_str(rhs).map_err(|_| format!("invalid filter value {rhs}"))?
            };
            return Ok(Step::Filter(path, Some((op.to_string(), literal))));
        }
    }
    Ok(Step::Filter(parse_path(filter)?, None))
}

fn eval(steps: &[Step], root: &Value, current: &Value) -> Vec<Value> {
    let mut values = vec![current.clone()];
    for step in steps {
        let mut next = Vec::new();
        for v in &values {
            apply(step, root, v, &mut next);
        }
        values = next;
    }
    values
}

fn apply(step: &Step, root: &Value, v: &Value, out: &mut Vec<Value>) {
    match step {
        Step::Root => out.push(root.clone()),
        Step::Field(name) => {
            if let Some(x) = v.get(name) {
                out.push(x.clone());
            }
        }
        Step::Recursive(name) => collect_recursive(v, name, out),
        Step::Wildcard => match v {
            Value::Array(items) => out.extend(items.iter().cloned()),
            Value::Object(map) => out.extend(map.values().cloned()),
            _ => {}
        },
        Step::Index(i) => {
            if let Value::Array(items) = v {
                let idx = if *i < 0 { items.len() as i64 + i } else { *i };
                if let Some(x) = usize::try_from(idx).ok().and_then(|i| items.get(i)) {
                    out.push(x.clone());
                }
            }
        }
        Step::Slice(start, end) => {
            if let Value::Array(items) = v {
                let len = items.len() as i64;
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let s = norm(start.unwrap_or(0));
                let e = norm(end.unwrap_or(len));
                if s < e {
                    out.extend(items[s as usize..e as usize].iter().cloned());
                }
            }
        }
        Step::Filter(path, cond) => {
            let items: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for item in items {
                let found = eval(path, root, item);
                let keep = match cond {
                    None => !found.is_empty(),
                    Some((op, lit)) => found.iter().any(|f| compare(f, op, lit)),
                };
                if keep {
                    out.push(item.clone());
                }
            }
        }
    }
}

fn collect_recursive(v: &Value, name: &str, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            if let Some(x) = map.get(name) {
                out.push(x.clone());
            }
            for child in map.values() {
                collect_recursive(child, name, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                collect_recursive(child, name, out);
            }
        }
        _ => {}
    }
}

fn compare(a: &Value, op: &str, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
        return match op {
            "==" => x == y,
            "!=" => x != y,
            "<" => x < y,
            ">" => x > y,
            "<=" => x <= y,
            _ => x >= y,
        };
    }
    match op {
        "==" => a == b,
        "!=" => a != b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn kubectl_cheat_sheet_templates() {
        let list = json!({"kind": "List", "items": [
            {"metadata": {"name": "a", "labels": {"app": "web"}}, "status": {"conditions": [
                {"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}]}},
            {"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
        ]});
        assert_eq!(render("{.items[*].metadata.name}", &list), "a b");
        assert_eq!(render("{.items[0].metadata.name}", &list), "a");
        assert_eq!(render("{.items[-1].metadata.name}", &list), "b");
        assert_eq!(render("{.items[0:1].metadata.name}", &list), "a");
        assert_eq!(render("{range .items[*]}{.metadata.name}{\"\\n\"}{end}", &list), "a\nb\n");
        assert_eq!(
            render("{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status};{end}", &list),
            "a=True;b=False;"
        );
        assert_eq!(render("{..app}", &list), "web");
        assert_eq!(render("{.items[0].metadata.labels['app']}", &list), "web");
        assert_eq!(render("name: {.items[1].metadata.name} missing:{.nope}", &list), "name: b missing:");
        assert_eq!(render("{.items[0].metadata.labels}", &list), "{\"app\":\"web\"}");
        assert_eq!(render("{$.kind}", &list), "List");
    }

    #[test]
    fn malformed_templates_are_errors() {
        assert!(Template::parse("{.items[*}").is_err());
        assert!(Template::parse("{range .items[*]}{.x}").is_err());
        assert!(Template::parse("{end}").is_err());
    }
}
