//! A publisher that speaks the NATS protocol over plain TCP, to send what no client library
//! would: header blocks with bare CRs, lines without `:`, bytes that are not UTF-8, status
//! lines. nats-server stores such messages as they are.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long the server has to answer.
const ANSWER: Duration = Duration::from_secs(5);

/// A raw protocol connection.
pub struct RawPublisher {
    stream: BufReader<TcpStream>,
}

impl RawPublisher {
    /// Connects to `port` on 127.0.0.1 (no auth), reads INFO and sends CONNECT with headers on.
    ///
    /// # Panics
    /// When the server cannot be reached or does not answer.
    pub async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("raw connection");
        let mut this = Self {
            stream: BufReader::new(stream),
        };
        let info = this.line().await;
        assert!(info.starts_with("INFO "), "expected INFO, got {info:?}");
        this.stream
            .get_mut()
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n")
            .await
            .expect("CONNECT");
        this.ping().await;
        this
    }

    /// Publishes `header_block` (sent exactly as given, `NATS/1.0…\r\n\r\n` included) and `body`
    /// to `subject`, then waits for the server to have processed it (PING/PONG).
    ///
    /// # Panics
    /// When the server refuses it (`-ERR`) or does not answer.
    pub async fn publish(&mut self, subject: &str, header_block: &[u8], body: &[u8]) {
        let total = header_block.len() + body.len();
        let mut frame = format!("HPUB {subject} {} {total}\r\n", header_block.len()).into_bytes();
        frame.extend_from_slice(header_block);
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        self.stream
            .get_mut()
            .write_all(&frame)
            .await
            .expect("HPUB written");
        self.ping().await;
    }

    async fn ping(&mut self) {
        self.stream
            .get_mut()
            .write_all(b"PING\r\n")
            .await
            .expect("PING written");
        loop {
            let line = self.line().await;
            match line.as_str() {
                "PONG" => return,
                "PING" => {
                    self.stream
                        .get_mut()
                        .write_all(b"PONG\r\n")
                        .await
                        .expect("PONG written");
                }
                other if other.starts_with("-ERR") => panic!("the server refused: {other}"),
                _ => {}
            }
        }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(ANSWER, self.stream.read_line(&mut line))
            .await
            .expect("the server answers in time")
            .expect("the connection stays open");
        line.trim_end().to_owned()
    }
}

/// A header block of the given `NAME: value` lines, framed as NATS expects. Lines are written
/// byte for byte: include whatever hostile bytes the test needs.
pub fn header_block(lines: &[&[u8]]) -> Vec<u8> {
    let mut block = b"NATS/1.0\r\n".to_vec();
    for line in lines {
        block.extend_from_slice(line);
        block.extend_from_slice(b"\r\n");
    }
    block.extend_from_slice(b"\r\n");
    block
}

/// The header lines of a valid `order.created` event for `tenant`, with id `id`.
pub fn event_lines(id: &str, tenant: &str) -> Vec<Vec<u8>> {
    [
        "ce-specversion: 1.0".to_owned(),
        format!("ce-id: {id}"),
        format!("Nats-Msg-Id: {id}"),
        "ce-source: urn:raw".to_owned(),
        "ce-type: order.created".to_owned(),
        "ce-schemaversion: 1.0.0".to_owned(),
        format!("ce-tenant: {tenant}"),
        "content-type: application/json".to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}
