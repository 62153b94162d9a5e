//! A reverse relay before the fake GitHub that breaks chosen requests: it reads a request whole,
//! then resets the connection (RST) instead of forwarding it, a given number of times.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Relay {
    pub url: String,
    /// `(request-line prefix, resets left)`, e.g. `("POST /app/", 1)`.
    breaks: Arc<Mutex<Vec<(String, usize)>>>,
    done: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    pub fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let breaks: Arc<Mutex<Vec<(String, usize)>>> = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (shared, counter) = (breaks.clone(), done.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, shared, counter) =
                    (upstream.clone(), shared.clone(), counter.clone());
                thread::spawn(move || {
                    if let Ok(true) = relay(client, &upstream, &shared) {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        Self { url, breaks, done }
    }

    /// How many connections were reset so far.
    pub fn resets_done(&self) -> usize {
        self.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Reset the next `times` connections whose request line starts with `prefix`.
    pub fn reset(&self, prefix: &str, times: usize) {
        self.breaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((prefix.to_owned(), times));
    }
}

/// One request per connection: keep-alive would let a later request skip the check.
/// Says whether it reset the connection.
fn relay(
    client: TcpStream,
    upstream: &str,
    breaks: &Mutex<Vec<(String, usize)>>,
) -> std::io::Result<bool> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.push_str("connection: close\r\n\r\n");
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let broken = {
        let mut breaks = breaks.lock().unwrap_or_else(|e| e.into_inner());
        match breaks
            .iter_mut()
            .find(|(prefix, left)| *left > 0 && head.starts_with(prefix.as_str()))
        {
            Some((_, left)) => {
                *left -= 1;
                true
            }
            None => false,
        }
    };
    if broken {
        reset(&client)?;
        return Ok(true);
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(head.as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    let mut client = client;
    client.write_all(&answer)?;
    Ok(false)
}

/// Linger 0: closing sends RST, as a crashed peer or a middlebox would.
fn reset(stream: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a pointer to a correctly sized `linger` for the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
