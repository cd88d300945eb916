//! A real HTTP/1.1 server on loopback for the services that cannot run here (a model
//! provider, a trace collector): each test says how to answer, this reads the requests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// One request as it arrived.
pub(crate) struct Request {
    /// `POST /v1/traces HTTP/1.1`, without the line break.
    pub(crate) line: String,
    /// Header names in lower case, values trimmed.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How to answer: status, headers (Content-Length is added), body, a delay first. With
/// `close`, the connection ends after the answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) delay: Duration,
    pub(crate) close: bool,
}

/// Reads one request from a kept-alive connection; `None` once it closes.
fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header == "\r\n" {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        line: line.trim_end().to_string(),
        headers,
        body,
    })
}

/// Serves `listener` until the test process ends: a thread per connection (a slow
/// answer does not hold up the next request), requests on one connection in turn.
pub(crate) fn serve_http(
    listener: TcpListener,
    answer: impl Fn(Request) -> Answer + Send + Sync + 'static,
) {
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let Ok(read_half) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(read_half);
                while let Some(request) = read_request(&mut reader) {
                    let reply = answer(request);
                    std::thread::sleep(reply.delay);
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    if reply.close {
                        head.push_str("Connection: close\r\n");
                    }
                    for (k, v) in &reply.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(&reply.body).is_err()
                        || reply.close
                    {
                        return;
                    }
                }
            });
        }
    });
}
