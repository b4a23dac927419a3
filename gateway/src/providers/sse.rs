//! An incremental Server-Sent Events parser (the WHATWG event-stream format): bytes go in
//! as they arrive, complete events come out. Lines may end in LF, CRLF or CR, and a CRLF
//! may be split across two inputs.

use super::TranslateError;

/// The longest line kept while waiting for its end; longer is an error, not unbounded memory.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous input ended in CR: a leading LF belongs to that line end.
    after_cr: bool,
    event: Option<String>,
    data: Vec<u8>,
    has_data: bool,
    /// A line has been completed (a byte-order mark can only lead the first).
    started: bool,
}

type OnEvent<'a> = dyn FnMut(SseEvent) -> Result<(), TranslateError> + 'a;

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Parses `input`, calling `on_event` for each event it completes.
    pub fn push(&mut self, mut input: &[u8], on_event: &mut OnEvent<'_>) -> Result<(), TranslateError> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = input.strip_prefix(b"\n") {
                input = rest;
            }
        }
        while let Some(pos) = input.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.extend_line(&input[..pos])?;
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event)?;
            self.line = line;
            self.line.clear();
            if input[pos] == b'\r' {
                match input.get(pos + 1) {
                    Some(b'\n') => input = &input[pos + 2..],
                    Some(_) => input = &input[pos + 1..],
                    None => {
                        self.after_cr = true;
                        input = &[];
                    }
                }
            } else {
                input = &input[pos + 1..];
            }
        }
        self.extend_line(input)
    }

    /// The stream ended: an unterminated last line is processed and a pending event is
    /// dispatched.
    pub fn finish(&mut self, on_event: &mut OnEvent<'_>) -> Result<(), TranslateError> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event)?;
        }
        self.dispatch(on_event)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), TranslateError> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(TranslateError::invalid("provider stream line is too long"));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut OnEvent<'_>) -> Result<(), TranslateError> {
        let line = if self.started {
            line
        } else {
            self.started = true;
            line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line)
        };
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.data.len() + value.len() > MAX_LINE {
                    return Err(TranslateError::invalid("provider stream event is too long"));
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(utf8(value)?.to_string()),
            // id, retry and unknown fields carry nothing the translation needs.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut OnEvent<'_>) -> Result<(), TranslateError> {
        let event = self.event.take();
        if !self.has_data {
            return Ok(());
        }
        self.has_data = false;
        let data = std::mem::take(&mut self.data);
        let data = String::from_utf8(data).map_err(|_| TranslateError::invalid("provider stream is not UTF-8"))?;
        on_event(SseEvent { event, data })
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, TranslateError> {
    std::str::from_utf8(bytes).map_err(|_| TranslateError::invalid("provider stream is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            parser
                .push(chunk, &mut |e| {
                    events.push(e);
                    Ok(())
                })
                .unwrap();
        }
        parser
            .finish(&mut |e| {
                events.push(e);
                Ok(())
            })
            .unwrap();
        events
    }

    #[test]
    fn parses_events_with_any_line_ending_and_split() {
        let input = "\u{feff}event: a\n: comment\nevent: a\ndata: 1\ndata:2\n\nid: 7\r\ndata: x\r\n\r\nevent: b\rdata: y\r\rdata: last";
        let expected = vec![
            SseEvent { event: Some("a".into()), data: "1\n2".into() },
            SseEvent { event: None, data: "x".into() },
            SseEvent { event: Some("b".into()), data: "y".into() },
            SseEvent { event: None, data: "last".into() },
        ];
        for piece in [1, 2, 3, 5, 1000] {
            assert_eq!(parse_in_pieces(input.as_bytes(), piece), expected, "piece {piece}");
        }
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert!(parse_in_pieces(b"event: ping\n\n", 4).is_empty());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut parser = SseParser::new();
        let r = parser.push(b"data: \xff\xfe\n\n", &mut |_| Ok(()));
        assert!(matches!(r, Err(TranslateError::Invalid(_))));
    }

    #[test]
    fn split_utf8_character_is_joined() {
        let input = "data: é日本\n\n".as_bytes();
        let events = parse_in_pieces(input, 1);
        assert_eq!(events[0].data, "é日本");
    }
}
