//! The control protocol's messages: what `handover restart|stop|status`,
//! the drill and the supervisor say to each other over `--control PATH`.
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Status,
    Restart,
    Stop,
}

impl Command {
    pub const ALL: [Command; 3] = [Command::Status, Command::Restart, Command::Stop];

    pub fn name(self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Restart => "restart",
            Command::Stop => "stop",
        }
    }
}

/// The request a line holds, or the error to answer it with.
pub fn parse_request(line: &[u8]) -> Result<Command, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("request is not JSON: {e}"))?;
    let name = (value.get("command").and_then(Value::as_str))
        .ok_or_else(|| "request has no \"command\" string".to_string())?;
    (Command::ALL.into_iter().find(|c| c.name() == name))
        .ok_or_else(|| format!("unknown command {name:?}: expected status, restart or stop"))
}

pub fn to_line(value: &Value) -> Vec<u8> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}
