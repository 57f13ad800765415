//! What a worker wrote on stdout and stderr, kept per instance and bounded in size: the
//! newest lines are kept, the oldest dropped and counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// The longest line kept, in bytes; a longer one is cut (and marked).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a worker wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where it came from.
    pub stream: Stream,
    /// The text (lossy UTF-8), without its newline.
    pub text: String,
}

#[derive(Debug, Default)]
struct Kept {
    lines: VecDeque<Line>,
    bytes: usize,
    dropped_lines: u64,
}

/// A worker instance's output, at most `max_bytes` of it. Cheap to clone; clones share.
#[derive(Debug, Clone)]
pub struct OutputLog {
    kept: Arc<Mutex<Kept>>,
    max_bytes: usize,
    /// Where each line is also sent (the host publishes them); a line that does not fit in
    /// its queue is not sent, and counted in `unforwarded_lines`.
    forward: Option<tokio::sync::mpsc::Sender<Line>>,
    /// Lines not forwarded (the queue was full).
    unforwarded: Arc<std::sync::atomic::AtomicU64>,
}

impl OutputLog {
    /// A log keeping at most `max_bytes` of text.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            kept: Arc::default(),
            max_bytes,
            forward: None,
            unforwarded: Arc::default(),
        }
    }

    /// This log, also sending each line to `to` (without waiting: a full queue drops it).
    #[must_use]
    pub fn forwarding(mut self, to: tokio::sync::mpsc::Sender<Line>) -> Self {
        self.forward = Some(to);
        self
    }

    /// Keeps `line`, dropping the oldest lines past the limit.
    pub fn push(&self, stream: Stream, mut text: String) {
        if text.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(" [cut]");
        }
        let line = Line { stream, text };
        let mut kept = self.kept.lock().expect("never poisoned");
        if let Some(forward) = &self.forward {
            if forward.try_send(line.clone()).is_err() {
                self.unforwarded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        kept.bytes += line.text.len();
        kept.lines.push_back(line);
        while kept.bytes > self.max_bytes {
            let Some(oldest) = kept.lines.pop_front() else {
                break;
            };
            kept.bytes -= oldest.text.len();
            kept.dropped_lines += 1;
        }
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<Line> {
        let kept = self.kept.lock().expect("never poisoned");
        kept.lines.iter().cloned().collect()
    }

    /// How many lines were dropped to stay within the limit.
    pub fn dropped_lines(&self) -> u64 {
        self.kept.lock().expect("never poisoned").dropped_lines
    }

    /// The count of lines not forwarded (the queue was full: the worker wrote faster than
    /// they were sent on), which stays readable apart from the log.
    pub fn unforwarded_lines(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.unforwarded)
    }

    /// Reads `from` line by line into this log until it ends.
    pub(crate) async fn follow(self, stream: Stream, from: impl AsyncRead + Unpin) {
        let mut reader = BufReader::new(from);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            // Bounded: a line without a newline is read in pieces of at most this size.
            let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64 + 1);
            match limited.read_until(b'\n', &mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if buffer.last() == Some(&b'\n') {
                        buffer.pop();
                    }
                    self.push(stream, String::from_utf8_lossy(&buffer).into_owned());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_lines_are_kept_within_the_limit() {
        let log = OutputLog::new(20);
        for n in 0..10 {
            log.push(Stream::Stdout, format!("line {n}"));
        }
        let lines = log.lines();
        assert_eq!(lines.last().unwrap().text, "line 9");
        assert!(lines.iter().map(|l| l.text.len()).sum::<usize>() <= 20);
        assert_eq!(log.dropped_lines(), 10 - lines.len() as u64);
    }

    #[test]
    fn an_overlong_line_is_cut() {
        let log = OutputLog::new(1 << 20);
        log.push(Stream::Stderr, "é".repeat(MAX_LINE_BYTES));
        let line = &log.lines()[0];
        assert!(line.text.ends_with(" [cut]"));
        assert!(line.text.len() <= MAX_LINE_BYTES + 6);
    }
}
