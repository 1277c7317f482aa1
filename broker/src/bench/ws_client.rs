//! The bench's tab: a WebSocket to `/ws/<id>` speaking the variable protocol (JSON frames of
//! `{"type", "data"}` messages), with a deadline on every wait.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long the bench waits for any one expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes read from the socket at a time. tungstenite's default (128 KiB) zero-fills that much
/// before every read: 12 % of the bench's own CPU in a round trip, inside the time it measures,
/// and 1.2 GiB of client memory for `live`'s 10,000 tabs. Larger frames still arrive whole.
const READ_BUFFER: usize = 8 * 1024;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Tab {
    pub ws: Socket,
}

pub fn msg(kind: &str, data: Json) -> Json {
    json!({"type": kind, "data": data})
}

impl Tab {
    pub async fn connect(addr: &str, id: &str) -> Result<Tab, String> {
        let url = format!("ws://{addr}/ws/{id}");
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| format!("WebSocket /ws/{id}: {e}"))?;
        Ok(Tab { ws })
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    pub async fn send(&mut self, messages: Json) -> Result<(), String> {
        self.send_text(messages.to_string()).await
    }

    /// The next text frame, raw.
    pub async fn recv_text(&mut self) -> Result<String, String> {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| format!("no frame within {FRAME_TIMEOUT:?}"))?;
            match next {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("socket: {e}")),
                None => return Err("socket ended".into()),
            }
        }
    }

    /// The next frame's messages.
    pub async fn recv(&mut self) -> Result<Vec<Json>, String> {
        let text = self.recv_text().await?;
        match serde_json::from_str::<Json>(&text).map_err(|e| format!("not JSON: {e}"))? {
            Json::Array(items) => Ok(items),
            one => Ok(vec![one]),
        }
    }

    /// Reads until a message satisfies `pred`; an `error` message on the way fails.
    pub async fn recv_until(
        &mut self,
        mut pred: impl FnMut(&Json) -> bool,
    ) -> Result<Json, String> {
        loop {
            for m in self.recv().await? {
                if m["type"] == "error" {
                    return Err(format!("the server answered an error: {m}"));
                }
                if pred(&m) {
                    return Ok(m);
                }
            }
        }
    }
}

/// Whether `m` is an update of variable `id` carrying a value.
pub fn is_value_of(m: &Json, id: i64) -> bool {
    m["type"] == "update" && m["data"]["varId"] == id && m["data"].get("value").is_some()
}
