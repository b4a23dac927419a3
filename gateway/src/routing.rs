//! Route table: longest path prefix wins; path rewrite; Gateway API header modifiers.

use crate::config::{HeaderModifier, Rewrite, Route};
use http::HeaderMap;
use std::borrow::Cow;

/// Routes sorted for longest-prefix matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Indices into the config's routes, longest prefix first.
    order: Vec<usize>,
    prefixes: Vec<String>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> RouteTable {
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by(|&a, &b| routes[b].path_prefix.len().cmp(&routes[a].path_prefix.len()));
        RouteTable { order, prefixes: routes.iter().map(|r| r.path_prefix.clone()).collect() }
    }

    /// The index of the route for `path`. A prefix matches whole path segments: `/model`
    /// matches `/model` and `/model/x`, not `/models`.
    pub fn find(&self, path: &str) -> Option<usize> {
        self.order.iter().copied().find(|&i| prefix_matches(&self.prefixes[i], path))
    }
}

/// Whether a route prefix matches a path on whole segments (see [`RouteTable::find`]).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

/// The path (and query) `route` sends a request for `path_and_query` to: unchanged,
/// replaced (`fullPath`), or with the matched prefix replaced (`prefix`, the query kept).
pub fn rewrite_path<'a>(route: &'a Route, path_and_query: &'a str) -> Cow<'a, str> {
    match &route.rewrite {
        None => Cow::Borrowed(path_and_query),
        Some(Rewrite::FullPath(p)) => Cow::Borrowed(p.as_str()),
        Some(Rewrite::Prefix(new)) => {
            let old = route.path_prefix.trim_end_matches('/');
            let new = new.trim_end_matches('/');
            match path_and_query.strip_prefix(old) {
                Some(rest) if rest.is_empty() || rest.starts_with('?') => Cow::Owned(format!("{}{rest}", or_root(new))),
                Some(rest) if rest.starts_with('/') => Cow::Owned(format!("{new}{rest}")),
                // The route matched on a segment boundary, so this does not happen.
                _ => Cow::Borrowed(path_and_query),
            }
        }
    }
}

fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Applies a Gateway API header modifier: remove, then set (replace), then add (append).
pub fn apply_header_modifier(m: &HeaderModifier, headers: &mut HeaderMap) {
    for name in &m.remove {
        headers.remove(name);
    }
    for (name, value) in &m.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &m.add {
        headers.append(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn table(prefixes: &[&str]) -> RouteTable {
        let routes: String = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| format!("  - {{name: r{i}, match: {{pathPrefix: \"{p}\"}}, backend: b}}\n"))
            .collect();
        let yaml = format!(
            "listen: [\"127.0.0.1:1\"]\nroutes:\n{routes}backends:\n  b:\n    groups:\n      - providers:\n          - {{name: p, openai: {{}}, host: 127.0.0.1, port: 9}}\n"
        );
        let config = load_str(&yaml).unwrap();
        RouteTable::new(&config.routes)
    }

    #[test]
    fn prefix_rewrites_replace_the_matched_prefix() {
        let yaml = "listen: [\"127.0.0.1:1\"]\nroutes:\n  - {name: a, match: {pathPrefix: /team-b/v1}, rewrite: {prefix: /v1}, backend: b}\n  - {name: c, match: {pathPrefix: /}, rewrite: {prefix: /api/}, backend: b}\n  - {name: d, match: {pathPrefix: /x}, rewrite: {fullPath: /y}, backend: b}\nbackends:\n  b:\n    groups:\n      - providers:\n          - {name: p, openai: {}, host: 127.0.0.1, port: 9}\n";
        let config = load_str(yaml).unwrap();
        let [a, c, d] = [&config.routes[0], &config.routes[1], &config.routes[2]];
        assert_eq!(rewrite_path(a, "/team-b/v1/messages"), "/v1/messages");
        assert_eq!(rewrite_path(a, "/team-b/v1/messages?beta=true"), "/v1/messages?beta=true");
        assert_eq!(rewrite_path(a, "/team-b/v1"), "/v1");
        assert_eq!(rewrite_path(c, "/v1/chat"), "/api/v1/chat");
        assert_eq!(rewrite_path(d, "/x/z"), "/y");
        let both = yaml.replace("rewrite: {prefix: /v1}", "rewrite: {prefix: /v1, fullPath: /z}");
        let e = load_str(&both).unwrap_err().to_string();
        assert!(e.contains("routes[0].rewrite: give exactly one of fullPath, prefix"), "{e}");
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let t = table(&["/", "/v1", "/v1/chat", "/model"]);
        assert_eq!(t.find("/v1/chat/completions"), Some(2));
        assert_eq!(t.find("/v1/models"), Some(1));
        assert_eq!(t.find("/model"), Some(3));
        assert_eq!(t.find("/models"), Some(0), "not a segment match for /model");
        assert_eq!(t.find("/other"), Some(0));
        let t = table(&["/model"]);
        assert_eq!(t.find("/nope"), None);
        assert_eq!(t.find("/model/x"), Some(0));
    }

    #[test]
    fn header_modifier_order() {
        let mut m = HeaderModifier::default();
        m.remove.push(http::HeaderName::from_static("x-drop"));
        m.set.push((http::HeaderName::from_static("x-set"), http::HeaderValue::from_static("new")));
        m.add.push((http::HeaderName::from_static("x-add"), http::HeaderValue::from_static("2")));
        let mut h = HeaderMap::new();
        h.insert("x-drop", http::HeaderValue::from_static("1"));
        h.insert("x-set", http::HeaderValue::from_static("old"));
        h.insert("x-add", http::HeaderValue::from_static("1"));
        apply_header_modifier(&m, &mut h);
        assert!(h.get("x-drop").is_none());
        assert_eq!(h.get("x-set").unwrap(), "new");
        assert_eq!(h.get_all("x-add").iter().count(), 2);
    }
}
