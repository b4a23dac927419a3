//! What the importer could not map, and why: one line per problem, naming the manifest
//! file, the object and the field path.

use std::fmt;

/// One problem found while importing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The manifest file.
    pub file: String,
    /// `Kind namespace/name`, or `document N` when the document is not a Kubernetes object.
    pub object: String,
    /// Field path inside the object (`spec.rules[0].filters[1]`); empty for the whole object.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.object)?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where a part of the output came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub object: String,
}

impl Origin {
    pub fn diagnostic(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            object: self.object.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.object, self.file)
    }
}
