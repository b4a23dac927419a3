//! Just enough HTTP/1.1 to time one response on a blocking keep-alive connection.
//!
//! The reader records when the response head was complete, when the first byte after the
//! head arrived (the first body byte, or the first chunk-size line of a chunked body, which
//! servers send in the same write as the chunk's data), and when the body was complete.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One timed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Time from `start` until the whole head had arrived.
    pub head_at: Duration,
    /// Time from `start` until the first byte after the head arrived (`head_at` when the
    /// body is empty or came with the head).
    pub first_body_at: Duration,
    /// Time from `start` until the body was complete.
    pub done_at: Duration,
    /// False when the server announced or performed a close.
    pub keep_alive: bool,
}

/// A POST request with a JSON body, as one buffer (sent with a single write).
pub fn post_request(host: &str, path: &str, body: &[u8], extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: switchyard-bench\r\nContent-Type: application/json\r\nAuthorization: Bearer sk-bench\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    req
}

pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Sends `req` and reads one response; times are measured from just before the write.
pub fn roundtrip(stream: &mut TcpStream, buf: &mut Vec<u8>, req: &[u8]) -> Result<Response> {
    let start = Instant::now();
    stream.write_all(req).context("write request")?;
    read_response(stream, buf, start)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize> {
    let mut chunk = [0u8; 64 * 1024];
    let n = stream.read(&mut chunk).context("read response")?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

enum Step {
    NeedMore,
    /// Index in the buffer just past the end of the body.
    Done(usize),
}

/// Decodes complete chunks from `buf[*pos..]` into `out`.
fn decode_chunked(buf: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Result<Step> {
    loop {
        let Some(line_len) = find(&buf[*pos..], b"\r\n") else {
            return Ok(Step::NeedMore);
        };
        let line = &buf[*pos..*pos + line_len];
        let size_text = line.split(|&b| b == b';').next().unwrap_or(line);
        let size_text = std::str::from_utf8(size_text).context("chunk size")?.trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("chunk size {size_text:?}"))?;
        let data_start = *pos + line_len + 2;
        if size == 0 {
            let rest = &buf[data_start.min(buf.len())..];
            if rest.starts_with(b"\r\n") {
                return Ok(Step::Done(data_start + 2));
            }
            return Ok(match find(rest, b"\r\n\r\n") {
                Some(t) => Step::Done(data_start + t + 4),
                None => Step::NeedMore,
            });
        }
        if buf.len() < data_start + size + 2 {
            return Ok(Step::NeedMore);
        }
        out.extend_from_slice(&buf[data_start..data_start + size]);
        *pos = data_start + size + 2;
    }
}

/// Reads one response. `buf` may hold bytes left over from the previous response and keeps
/// the bytes after this one.
pub fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, start: Instant) -> Result<Response> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if fill(stream, buf)? == 0 {
            bail!("connection closed before the response head");
        }
    };
    let head_at = start.elapsed();
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 =
        parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut framing = Framing::UntilClose;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if chunked {
        framing = Framing::Chunked;
    } else if let Some(n) = length {
        framing = Framing::Length(n);
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    if matches!(framing, Framing::UntilClose) {
        keep_alive = false;
    }

    let mut first_body_at = (buf.len() > head_end).then_some(head_at);
    let mut body = Vec::new();
    let end = match framing {
        Framing::Length(n) => {
            while buf.len() < head_end + n {
                if fill(stream, buf)? == 0 {
                    bail!("connection closed in the body");
                }
                first_body_at.get_or_insert_with(|| start.elapsed());
            }
            body.extend_from_slice(&buf[head_end..head_end + n]);
            head_end + n
        }
        Framing::Chunked => {
            let mut pos = head_end;
            loop {
                if let Step::Done(end) = decode_chunked(buf, &mut pos, &mut body)? {
                    break end;
                }
                if fill(stream, buf)? == 0 {
                    bail!("connection closed in a chunked body");
                }
                first_body_at.get_or_insert_with(|| start.elapsed());
            }
        }
        Framing::UntilClose => {
            while fill(stream, buf)? > 0 {
                first_body_at.get_or_insert_with(|| start.elapsed());
            }
            body.extend_from_slice(&buf[head_end..]);
            buf.len()
        }
    };
    let done_at = start.elapsed();
    buf.drain(..end);
    Ok(Response { status, body, head_at, first_body_at: first_body_at.unwrap_or(head_at), done_at, keep_alive })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoding() {
        let buf = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\nNEXT";
        let mut pos = 0;
        let mut out = Vec::new();
        let step = decode_chunked(buf, &mut pos, &mut out);
        assert!(matches!(step, Ok(Step::Done(end)) if &buf[end..] == b"NEXT"));
        assert_eq!(out, b"hello world");
        let mut pos = 0;
        let mut out = Vec::new();
        assert!(matches!(decode_chunked(&buf[..12], &mut pos, &mut out), Ok(Step::NeedMore)));
    }
}
