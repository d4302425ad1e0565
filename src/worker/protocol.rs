//! The frames a service and its worker processes exchange over the worker's slide
//! socket: a request in, `Accepted` at once, then one reply. A worker serves one slide: any number of
//! [`Request::Plan`] rounds (which bytes to fetch), then one [`Request::Thumbnail`],
//! after which it exits.
//!
//! Each frame is a big-endian `u32` length and that many bytes. Control frames are
//! JSON ([`Task`], [`Reply`]); a finished thumbnail's PNG follows its `Done` reply as
//! one raw frame, so pixels are never escaped. The reader bounds every length before
//! allocating: a worker runs hostile code paths, so what it writes is untrusted too.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error_kind::ErrorKind;
use crate::planning::{PlanAnswer, PlanTask};
use crate::slide::{Thumbnail, ThumbnailOptions};

/// Longest control frame: a plan answer of [`crate::planning::MAX_ANSWER_RANGES`]
/// ranges, or a plan task listing a folder's candidates, with slack.
pub const MAX_CONTROL_FRAME: usize = 8 * 1024 * 1024;
/// Longest PNG frame: a 16384 x 16384 RGB thumbnail stored uncompressed, plus slack.
pub const MAX_PNG_FRAME: usize = 16384 * 16384 * 3 + 1024 * 1024;

/// One slide to decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub path: PathBuf,
    pub options: ThumbnailOptions,
    /// Threads to decode with (at least 1): the service gives a slide the cores no other
    /// slide is using when it starts (see [`crate::worker::cores`]).
    #[serde(default = "one")]
    pub threads: usize,
}

fn one() -> usize {
    1
}

/// What the service asks of a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Which bytes of the slide's local copies the thumbnail needs (answered `Planned`).
    Plan(PlanTask),
    /// The thumbnail of the slide (answered `Done` or `Failed`); the worker's last task.
    Thumbnail(Task),
}

/// What a worker says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Sent once at start-up, after the sandbox is in place, with what the worker
    /// holds: the sandbox layers, the names of its environment variables and its open
    /// descriptors (the service checks none leaked in).
    Ready {
        /// The worker's process id (it is the zygote's child, not the service's).
        #[serde(default)]
        pid: u32,
        sandbox: String,
        #[serde(default)]
        environment: Vec<String>,
        #[serde(default)]
        open_fds: Vec<String>,
    },
    /// The request was read, before any of it is acted on: an end before this is not the
    /// slide's doing (a worker killed while it waited).
    Accepted,
    /// The thumbnail is made; its PNG (not serialised here) is the next frame.
    Done(Box<Thumbnail>),
    /// A planning round's answer.
    Planned(PlanAnswer),
    /// The engine refused the slide with a typed error.
    Failed { kind: ErrorKind, message: String },
}

/// Writes one frame.
pub fn write_frame(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)?;
    out.flush()
}

/// Reads one frame of at most `max` bytes; `Ok(None)` at a clean end of stream.
pub fn read_frame(input: &mut impl Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {max}-byte bound"),
        ));
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// Writes a JSON control frame.
pub fn write_json<T: Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_frame(out, &bytes)
}

/// Reads a JSON control frame; `Ok(None)` at a clean end of stream.
pub fn read_json<T: for<'de> Deserialize<'de>>(input: &mut impl Read) -> io::Result<Option<T>> {
    match read_frame(input, MAX_CONTROL_FRAME)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        write_json(
            &mut buf,
            &Reply::Ready {
                pid: 7,
                sandbox: "full".into(),
                environment: vec!["PATH".into()],
                open_fds: vec!["0 -> pipe:[1]".into()],
            },
        )
        .unwrap();
        write_frame(&mut buf, b"\x89PNG").unwrap();
        let mut input = buf.as_slice();
        let reply: Reply = read_json(&mut input).unwrap().unwrap();
        assert!(
            matches!(reply, Reply::Ready { sandbox, open_fds, .. } if sandbox == "full" && open_fds.len() == 1)
        );
        assert_eq!(read_frame(&mut input, 16).unwrap().unwrap(), b"\x89PNG");
        assert!(read_frame(&mut input, 16).unwrap().is_none());
    }

    #[test]
    fn a_declared_length_over_the_bound_is_refused_before_allocating() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0];
        let err = read_frame(&mut input, 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_truncated_frame_is_an_error_not_a_clean_end() {
        let mut input: &[u8] = &[0, 0, 0, 8, 1, 2];
        assert!(read_frame(&mut input, 1024).is_err());
    }
}
