//! A forward HTTP proxy on loopback that records the first request line of each connection;
//! names it is told of it finds on loopback, as a corporate proxy finds hosts its clients cannot.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Proxy {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start() -> Self {
        Self::finding(&[])
    }

    /// A proxy that finds each of `names` on `127.0.0.1`.
    pub fn finding(names: &[&str]) -> Self {
        let names: Arc<Vec<String>> = Arc::new(names.iter().map(|n| (*n).to_owned()).collect());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (log, names) = (log.clone(), names.clone());
                thread::spawn(move || {
                    let _ = forward(client, &log, &names);
                });
            }
        });
        Self { url, seen }
    }

    /// The first request line of every connection the proxy carried.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn forward(client: TcpStream, log: &Mutex<Vec<String>>, names: &[String]) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(request_line.clone());
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let authority = if method == "CONNECT" {
        target.to_owned()
    } else {
        target
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let address = match authority.rsplit_once(':') {
        Some((host, port)) if names.iter().any(|n| n == host) => format!("127.0.0.1:{port}"),
        _ => authority,
    };
    let mut upstream = TcpStream::connect(&address)?;
    let mut client_out = client;
    if method == "CONNECT" {
        client_out.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    } else {
        upstream.write_all(head.as_bytes())?;
    }
    let buffered = reader.buffer().to_vec();
    upstream.write_all(&buffered)?;
    let mut upstream_in = upstream.try_clone()?;
    let mut client_in = reader.into_inner();
    let back = thread::spawn(move || std::io::copy(&mut upstream_in, &mut client_out));
    let _ = std::io::copy(&mut client_in, &mut upstream);
    let _ = upstream.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
    Ok(())
}
