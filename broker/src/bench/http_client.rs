//! The bench's HTTP client: one keep-alive HTTP/1.1 connection (hyper's connection API, no
//! pool), reconnected when the server closes it, so a measured request is one request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, LOCATION};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one request may take before it counts as hung.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct HttpClient {
    addr: String,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

/// One answer: its status, `Location`, headers and how long it took.
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub headers: hyper::HeaderMap,
    pub took: Duration,
}

impl HttpClient {
    pub fn new(addr: &str) -> HttpClient {
        HttpClient {
            addr: addr.to_string(),
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// `GET path`, timed from sending the request to the end of the body. A connection the
    /// server closed since the last request is replaced first (outside the timing).
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let req = Request::get(path)
            .header(HOST, &self.addr)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let headers = resp.headers().clone();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, location, headers))
        })
        .await
        .map_err(|_| format!("GET {path}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("GET {path}: {e}"))?;
        let took = start.elapsed();
        self.sender = Some(sender);
        Ok(Answer {
            status: resp.0,
            location: resp.1,
            headers: resp.2,
            took,
        })
    }

    /// `GET /` that must answer 302: the new session's id.
    pub async fn create(&mut self) -> Result<(String, Duration), Created> {
        let a = self.get("/").await.map_err(Created::Failed)?;
        match (a.status, a.location) {
            (302, Some(loc)) => Ok((loc.trim_start_matches('/').to_string(), a.took)),
            (503, _) => Err(Created::Refused),
            (status, _) => Err(Created::Failed(format!("GET / answered {status}"))),
        }
    }
}

/// Why a `GET /` made no session.
pub enum Created {
    /// 503: the server said "not now" (counted, not an error).
    Refused,
    Failed(String),
}
