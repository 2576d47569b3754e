//! A small HTTP proxy between custodian and a real S3 server that injects faults: dropped
//! connections, 5xx and 403 answers, slow answers, an upload that stalls half way, and a store
//! that ignores create-if-absent (it strips `If-None-Match`). One request per connection
//! (`Connection: close` both ways) keeps it simple; it logs every request line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do to one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Pass,
    /// Close the connection without an answer.
    Drop,
    /// Answer with this status and an S3 error body, without asking the server.
    Status(u16),
    /// Forward, but hold the answer back this long.
    Slow(Duration),
    /// Forward half of the body, then stop reading for this long and close.
    Stall(Duration),
    /// Forward without `If-None-Match`, as stores that ignore create-if-absent behave.
    StripConditional,
    /// Forward to this path instead (`/bucket/key`): the answer a reader gets from a store that
    /// still shows an older write. Only for servers that do not check signatures (moto).
    Redirect(String),
}

/// One request as the fault plan sees it.
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query.
    pub target: &'a str,
}

type Plan = dyn Fn(&Request) -> Fault + Send + Sync;

/// A running proxy; it lives as long as the test process.
pub struct FaultProxy {
    pub endpoint: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    /// Start a proxy to `upstream` (`http://127.0.0.1:PORT`) that applies `plan` to each request.
    pub fn start(upstream: &str, plan: impl Fn(&Request) -> Fault + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let plan: Arc<Plan> = Arc::new(plan);
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, plan, log) = (upstream.clone(), plan.clone(), thread_log.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, plan.as_ref(), &log);
                });
            }
        });
        FaultProxy { endpoint, log }
    }

    /// Every request line seen so far, with the fault applied: `PUT /bucket/key?x=1 -> Drop`.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The head with `Connection: close` and without the headers named in `drop`.
fn rewrite(lines: &[String], drop: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let name = l.split(':').next().unwrap_or("").trim();
        let skip = i > 0
            && (name.eq_ignore_ascii_case("connection")
                || drop.iter().any(|d| name.eq_ignore_ascii_case(d)));
        if !skip {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn serve(
    client: TcpStream,
    upstream: &str,
    plan: &Plan,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let head = read_head(&mut reader)?;
    let mut parts = head[0].split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let fault = plan(&Request { method, target });
    log.lock()
        .unwrap()
        .push(format!("{method} {target} -> {fault:?}"));
    let body_len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        header(&head, "transfer-encoding").is_none(),
        "the fault proxy handles only Content-Length bodies"
    );
    match fault {
        Fault::Drop => return Ok(()),
        Fault::Status(code) => {
            let mut body = vec![0u8; body_len];
            reader.read_exact(&mut body)?;
            let (reason, s3_code) = match code {
                403 => ("Forbidden", "AccessDenied"),
                500 => ("Internal Server Error", "InternalError"),
                _ => ("Service Unavailable", "SlowDown"),
            };
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3_code}</Code>\
                 <Message>{reason} (fault proxy)</Message></Error>"
            );
            write!(
                client,
                "HTTP/1.1 {code} {reason}\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            )?;
            return Ok(());
        }
        _ => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    let strip: &[&str] = if fault == Fault::StripConditional {
        &["if-none-match"]
    } else {
        &[]
    };
    let mut forwarded = head.clone();
    if let Fault::Redirect(path) = &fault {
        forwarded[0] = format!("{method} {path} HTTP/1.1");
    }
    server.write_all(&rewrite(&forwarded, strip))?;
    let mut body = vec![0u8; body_len];
    if let Fault::Stall(pause) = fault {
        let half = body_len / 2;
        reader.read_exact(&mut body[..half])?;
        server.write_all(&body[..half])?;
        std::thread::sleep(pause);
        return Ok(());
    }
    reader.read_exact(&mut body)?;
    server.write_all(&body)?;
    let mut answer = BufReader::new(server);
    let answer_head = read_head(&mut answer)?;
    if let Fault::Slow(pause) = fault {
        std::thread::sleep(pause);
    }
    client.write_all(&rewrite(&answer_head, &[]))?;
    let status = answer_head[0].split_whitespace().nth(1).unwrap_or("");
    let bodyless = method == "HEAD" || status == "204" || status == "304";
    match header(&answer_head, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        _ if bodyless => {}
        Some(len) => {
            std::io::copy(&mut answer.take(len), &mut client)?;
        }
        // Chunked or close-delimited: the server closes after the answer (Connection: close).
        None => {
            std::io::copy(&mut answer, &mut client)?;
        }
    }
    client.flush()
}
