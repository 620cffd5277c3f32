//! A tiny blocking HTTP/1.1 server for the examples: one thread, one request
//! per connection, GET only. Enough for a probe or a scraper, not a web
//! framework.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// What a handler returns: status code, content type, body.
pub type Response = (u16, &'static str, String);

/// Serves `handler` on `listener` until the process ends.
pub fn serve(listener: TcpListener, handler: impl Fn(&str) -> Response + Send + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // A client that never sends its request must not stall the rest.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if let Err(e) = answer(stream, &handler) {
                eprintln!("http: {e}");
            }
        }
    });
}

fn answer(stream: TcpStream, handler: &impl Fn(&str) -> Response) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers: nothing here needs them.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut words = request_line.split_whitespace();
    let (status, content_type, body) = match (words.next(), words.next()) {
        (Some("GET"), Some(path)) => handler(path),
        _ => (405, "text/plain", "only GET\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Serves for `RUN_FOR` seconds when that is set (CI), otherwise until the
/// process is killed.
pub fn run_until_told() {
    match std::env::var("RUN_FOR").ok().and_then(|s| s.parse().ok()) {
        Some(secs) => std::thread::sleep(std::time::Duration::from_secs(secs)),
        None => loop {
            std::thread::park();
        },
    }
}
