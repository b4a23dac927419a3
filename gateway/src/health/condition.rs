//! The `unhealthyCondition`: a CEL expression over the upstream response.
//!
//! Variables: `response.code` (int) and `response.headers` (map of lower-case header name
//! to value). The expression must yield a bool; `true` means the provider answered badly.

use cel::objects::{Key, Map, Value};
use cel::{Context, Program};
use http::HeaderMap;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

thread_local! {
    static CEL_ROOT: Context<'static, 'static> = Context::default();
}

#[derive(Clone)]
pub struct Condition {
    source: Arc<str>,
    program: Arc<Program>,
    /// Whether the expression reads `response.headers`; if not, they are not copied per call.
    uses_headers: bool,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl Condition {
    /// Compiles the expression and checks it against a sample response, so that a typo in a
    /// variable name is a configuration error, not a silent `false` at run time.
    pub fn compile(source: &str) -> Result<Condition, String> {
        let program = Program::compile(source).map_err(|e| format!("invalid CEL expression {source:?}: {e}"))?;
        let condition =
            Condition { source: source.into(), program: Arc::new(program), uses_headers: source.contains("headers") };
        let mut sample = HeaderMap::new();
        sample.insert("content-type", http::HeaderValue::from_static("application/json"));
        match condition.try_eval(200, &sample) {
            // A header the sample lacks is fine: at run time a missing key means "no".
            Ok(_) | Err(EvalError::MissingKey) => Ok(condition),
            Err(e) => Err(format!("CEL expression {source:?} does not evaluate on a sample response: {e}")),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// `true` when the response counts as a failure. An expression that fails at run time
    /// (for example a header that is absent) counts as "not a failure".
    pub fn eval(&self, code: u16, headers: &HeaderMap) -> bool {
        self.try_eval(code, headers).unwrap_or(false)
    }

    fn try_eval(&self, code: u16, headers: &HeaderMap) -> Result<bool, EvalError> {
        let mut response: HashMap<Key, Value> = HashMap::with_capacity(2);
        response.insert(Key::from("code"), Value::Int(i64::from(code)));
        let header_map: HashMap<Key, Value> = if self.uses_headers {
            headers
                .iter()
                .filter_map(|(k, v)| {
                    let v = v.to_str().ok()?;
                    Some((Key::from(k.as_str()), Value::from(v)))
                })
                .collect()
        } else {
            HashMap::new()
        };
        response.insert(Key::from("headers"), Value::Map(Map::from(header_map)));
        // Building CEL's standard library is the expensive part of a context: build it once
        // per thread and evaluate in a child scope.
        CEL_ROOT.with(|root| {
            let mut context = root.new_inner_scope();
            context.add_variable_from_value("response", Value::Map(Map::from(response)));
            Self::verdict(self.program.execute(&context))
        })
    }

    fn verdict(result: cel::ResolveResult) -> Result<bool, EvalError> {
        match result {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::Other(format!("expression yielded {other:?}, not a bool"))),
            Err(cel::ExecutionError::NoSuchKey(_)) => Err(EvalError::MissingKey),
            Err(e) => Err(EvalError::Other(e.to_string())),
        }
    }
}

#[derive(Debug)]
enum EvalError {
    /// A map key (a header) that is not there.
    MissingKey,
    Other(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::MissingKey => f.write_str("no such key"),
            EvalError::Other(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn status_codes() {
        let c = Condition::compile("response.code == 404 || response.code == 429").unwrap();
        assert!(c.eval(404, &HeaderMap::new()));
        assert!(c.eval(429, &HeaderMap::new()));
        assert!(!c.eval(200, &HeaderMap::new()));
        assert!(!c.eval(500, &HeaderMap::new()));
    }

    #[test]
    fn ranges_and_headers() {
        let c = Condition::compile(
            "response.code >= 500 || ('x-overloaded' in response.headers && response.headers['x-overloaded'] == 'true')",
        )
        .unwrap();
        assert!(c.eval(503, &HeaderMap::new()));
        assert!(c.eval(200, &headers(&[("x-overloaded", "true")])));
        assert!(!c.eval(200, &headers(&[("x-overloaded", "false")])));
        assert!(!c.eval(200, &HeaderMap::new()));
    }

    #[test]
    fn a_missing_header_is_no_failure() {
        let c = Condition::compile("response.code >= 500 || response.headers['x-overloaded'] == 'true'").unwrap();
        assert!(!c.eval(200, &HeaderMap::new()));
        assert!(c.eval(200, &headers(&[("x-overloaded", "true")])));
    }

    #[test]
    fn rejects_bad_expressions() {
        assert!(Condition::compile("response.code ==").is_err());
        assert!(Condition::compile("respons.code == 429").is_err());
        assert!(Condition::compile("response.code").is_err(), "non-bool result");
    }
}
