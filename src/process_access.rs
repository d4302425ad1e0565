//! Who may call `POST /process`: nobody when it is turned off (`http.process_enabled =
//! false`), anyone who can reach the port when no token is configured, else only
//! callers presenting `Authorization: Bearer <token>`. The token comes from a file
//! (`http.process_token_file`, e.g. a mounted Kubernetes secret) or from the
//! environment (`WSI_THUMBNAIL_PROCESS_TOKEN`), never from the config itself, so
//! `--check` and logs cannot print it. Compared in constant time (`subtle`).

use std::path::Path;

use subtle::ConstantTimeEq;

pub const TOKEN_ENV: &str = "WSI_THUMBNAIL_PROCESS_TOKEN";

#[derive(Debug, Clone)]
pub enum ProcessAccess {
    Disabled,
    Open,
    Token(String),
}

/// What a request to `POST /process` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// 404: the endpoint is turned off.
    Disabled,
    /// 401: no token, or the wrong one.
    Unauthorized,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read http.process_token_file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the POST /process token ({0}) is empty; put a long random string in it")]
    Empty(&'static str),
}

impl ProcessAccess {
    /// From the configuration and the environment.
    pub fn load(enabled: bool, token_file: Option<&Path>) -> Result<ProcessAccess, AccessError> {
        if !enabled {
            return Ok(ProcessAccess::Disabled);
        }
        let token = match token_file {
            Some(path) => Some((
                std::fs::read_to_string(path).map_err(|source| AccessError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
                "http.process_token_file",
            )),
            None => std::env::var(TOKEN_ENV).ok().map(|t| (t, TOKEN_ENV)),
        };
        match token {
            None => Ok(ProcessAccess::Open),
            Some((t, from)) => {
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(AccessError::Empty(from));
                }
                Ok(ProcessAccess::Token(t))
            }
        }
    }

    /// Decides on a request's `Authorization` header.
    pub fn check(&self, authorization: Option<&[u8]>) -> Decision {
        match self {
            ProcessAccess::Disabled => Decision::Disabled,
            ProcessAccess::Open => Decision::Allowed,
            ProcessAccess::Token(expected) => {
                let presented = authorization
                    .and_then(|h| h.strip_prefix(b"Bearer "))
                    .unwrap_or_default();
                if bool::from(presented.ct_eq(expected.as_bytes())) {
                    Decision::Allowed
                } else {
                    Decision::Unauthorized
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_passes() {
        let access = ProcessAccess::Token("s3cret".into());
        assert_eq!(access.check(Some(b"Bearer s3cret")), Decision::Allowed);
        assert_eq!(access.check(Some(b"Bearer s3cre")), Decision::Unauthorized);
        assert_eq!(access.check(Some(b"s3cret")), Decision::Unauthorized);
        assert_eq!(access.check(None), Decision::Unauthorized);
        assert_eq!(ProcessAccess::Open.check(None), Decision::Allowed);
        assert_eq!(
            ProcessAccess::Disabled.check(Some(b"Bearer s3cret")),
            Decision::Disabled
        );
    }

    #[test]
    fn the_token_file_is_read_and_trimmed_and_an_empty_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "abc\n").unwrap();
        let access = ProcessAccess::load(true, Some(&file)).unwrap();
        assert_eq!(access.check(Some(b"Bearer abc")), Decision::Allowed);
        std::fs::write(&file, " \n").unwrap();
        assert!(ProcessAccess::load(true, Some(&file)).is_err());
        assert!(matches!(
            ProcessAccess::load(false, Some(&file)),
            Ok(ProcessAccess::Disabled)
        ));
    }
}
