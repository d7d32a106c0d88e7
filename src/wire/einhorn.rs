//! einhorn's command messages, as workers send them to `EINHORN_SOCK_PATH`
//! and as handover answers them. Pure: the socket is the supervisor's.
//!
//! What einhorn-aware workers send: one message per line on a unix stream
//! connection, then they close it; none of them waits for an answer.
//!
//! | client | bytes |
//! |---|---|
//! | Ruby `Einhorn::Worker.ack!` (einhorn's own) | YAML with `%` and `\n` escaped: `---%0Acommand: worker:ack%0Apid: 1234%0A` + `\n` (newer versions add `keep-open: ...`) |
//! | early einhorn (JSON transport; acks marked response-less) | `{"command":"worker:ack","pid":1234}` + `\n` |
//! | Node `einhorn` | `encodeURI("---\ncommand: worker:ack\npid: 1234")` + `\n` |
//! | goji `bind`, Python (baseplate) | `{"command": "worker:ack", "pid": 1234}` + `\n` |
//! | go-einhorn | `{"comand":"worker:ack","Pid":1234}` + `\n` + `\n` (sic: its struct tag misspells `command`; einhorn itself never counted these acks) |
//!
//! einhorn answers nothing to an ack; it answers any other command with a
//! `{"message": ...}` line in the same encoding.
//!
//! - `decode` reads JSON and percent-escaped YAML flat mappings (every row
//!   above), and takes `comand` for `command` and `Pid` for `pid`; a pid
//!   that is not a positive number is no pid.
//! - `answer` says what handover replies: nothing to an ack, one line
//!   naming the problem to anything else; `encode_reply` writes that line.
//! - `ack_pid` says whose readiness an ack reports.

use serde_json::{Value, json};

/// The command a worker sends once it is ready.
pub const ACK: &str = "worker:ack";
/// Where a message names its command: einhorn's key, and go-einhorn's misspelling.
pub const COMMAND_KEYS: [&str; 2] = ["command", "comand"];
/// Where a message names the sender's pid: einhorn's key, and go-einhorn's.
pub const PID_KEYS: [&str; 2] = ["pid", "Pid"];
/// The key of a reply's text.
pub const MESSAGE_KEY: &str = "message";

/// One decoded einhorn message: the fields handover reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub command: Option<String>,
    pub pid: Option<i32>,
}

/// A message out of one line, in any dialect above; None if it is none.
pub fn decode(line: &[u8]) -> Option<Message> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if let Some(message) = from_json(text) {
        return Some(message);
    }
    let unescaped = percent_decode(text)?;
    from_json(&unescaped).or_else(|| from_yaml(&unescaped))
}

fn from_json(text: &str) -> Option<Message> {
    let Value::Object(map) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let field = |names: [&str; 2]| names.iter().find_map(|n| map.get(*n));
    let command = field(COMMAND_KEYS).and_then(Value::as_str);
    let pid = match field(PID_KEYS) {
        Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Some(Message { command: command.map(str::to_owned), pid: pid.filter(|&p| p > 0) })
}

/// A flat YAML mapping, as Ruby's `YAML.dump` writes a hash of scalars.
fn from_yaml(text: &str) -> Option<Message> {
    let mut message = Message { command: None, pid: None };
    let mut fields = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line == "---" || line == "..." || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(':')?;
        let value = unquote(value.trim());
        match key.trim() {
            key if COMMAND_KEYS.contains(&key) => message.command = Some(value.to_owned()),
            key if PID_KEYS.contains(&key) => message.pid = value.parse().ok().filter(|&p: &i32| p > 0),
            _ => {}
        }
        fields += 1;
    }
    (fields > 0).then_some(message)
}

fn unquote(value: &str) -> &str {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('\'') || quoted('"') { &value[1..value.len() - 1] } else { value }
}

/// `%XX` escapes undone (einhorn escapes `%` and `\n`, encodeURI more);
/// a `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if bytes[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whose readiness an ack reports: the kernel's peer pid, else the claim.
/// Anything that can reach the socket can claim any pid; the kernel's is
/// the process that connected. A peer in another pid namespace reads as 0,
/// and only then does the claim count.
pub fn ack_pid(peer: Option<i32>, claimed: Option<i32>) -> Option<i32> {
    peer.filter(|&p| p > 0).or(claimed.filter(|&p| p > 0))
}

/// What handover replies to a line: nothing to an ack (`None`), else the
/// text of one reply saying why the line is not one.
pub fn answer(message: Option<&Message>) -> Option<String> {
    match message {
        Some(Message { command: Some(command), .. }) if command == ACK => None,
        Some(Message { command: Some(command), .. }) => {
            Some(format!("handover does not implement the einhorn command {command:?}; it only takes {ACK}"))
        }
        Some(Message { command: None, .. }) => {
            Some(format!("no \"{}\" in the message; handover only takes {ACK}", COMMAND_KEYS[0]))
        }
        None => Some(format!("could not parse the message; handover only takes {ACK}")),
    }
}

/// One answer line in einhorn's transport: JSON (which einhorn's YAML
/// reader takes too) with `%` and `\n` escaped.
pub fn encode_reply(message: &str) -> Vec<u8> {
    let json = json!({ MESSAGE_KEY: message }).to_string();
    let mut line = json.replace('%', "%25").replace('\n', "%0A").into_bytes();
    line.push(b'\n');
    line
}

/// What each known client sends to ack for pid 1234, byte for byte.
#[cfg(test)]
pub mod sent {
    pub const GO_EINHORN: &str = "{\"comand\":\"worker:ack\",\"Pid\":1234}\n";
    pub const GOJI: &str = "{\"command\": \"worker:ack\", \"pid\": 1234}\n";
    pub const RUBY: &str = "---%0Acommand: worker:ack%0Apid: 1234%0A\n";
    pub const RUBY_KEEP_OPEN: &str = "---%0Acommand: worker:ack%0Apid: 1234%0Akeep-open: true%0A\n";
    pub const RUBY_JSON: &str = "{\"command\":\"worker:ack\",\"pid\":1234}\n";
    pub const NODE: &str = "---%0Acommand:%20worker:ack%0Apid:%201234\n";
}

#[cfg(test)]
mod tests {
    use super::sent::*;
    use super::*;

    #[test]
    fn decodes_what_every_known_client_sends() {
        let ack = Some(Message { command: Some(ACK.to_string()), pid: Some(1234) });
        for sent in [GO_EINHORN, GOJI, RUBY, RUBY_KEEP_OPEN, RUBY_JSON, NODE] {
            assert_eq!(decode(sent.trim_end().as_bytes()), ack, "{sent}");
        }
        assert_eq!(decode(b"---%0Acommand: 'worker:ack'%0Apid: \"1234\"%0A"), ack);
        assert_eq!(decode(b"{\"command\":\"worker:ack\",\"pid\":\"1234\"}"), ack);
        assert_eq!(
            decode(b"{\"command\":\"ehlo\",\"user\":\"ops\"}"),
            Some(Message { command: Some("ehlo".into()), pid: None })
        );
        assert_eq!(decode(b"{\"command\":\"worker:ack\",\"pid\":-1}").unwrap().pid, None);
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(b"[1,2]"), None);
        assert_eq!(decode(b"\xff\xfe"), None);
        assert_eq!(percent_decode("100%"), Some("100%".into()));
        assert_eq!(percent_decode("%zz%41"), Some("%zzA".into()));
    }

    #[test]
    fn the_kernels_pid_wins_over_the_claim() {
        assert_eq!(ack_pid(Some(77), Some(1234)), Some(77));
        assert_eq!(ack_pid(Some(0), Some(1234)), Some(1234));
        assert_eq!(ack_pid(None, Some(1234)), Some(1234));
        assert_eq!(ack_pid(None, None), None);
        assert_eq!(ack_pid(Some(0), None), None);
    }

    #[test]
    fn replies_in_einhorns_transport() {
        assert_eq!(encode_reply("100% \"x\"\nnext"), b"{\"message\":\"100%25 \\\"x\\\"\\nnext\"}\n".to_vec());
    }

    #[test]
    fn an_ack_gets_no_answer_anything_else_one_line() {
        let ack = decode(GOJI.trim_end().as_bytes());
        assert_eq!(answer(ack.as_ref()), None);
        let ehlo = Message { command: Some("ehlo".into()), pid: None };
        assert_eq!(
            answer(Some(&ehlo)).unwrap(),
            "handover does not implement the einhorn command \"ehlo\"; it only takes worker:ack"
        );
        let anonymous = Message { command: None, pid: Some(5) };
        assert_eq!(
            answer(Some(&anonymous)).unwrap(),
            "no \"command\" in the message; handover only takes worker:ack"
        );
        assert_eq!(answer(None).unwrap(), "could not parse the message; handover only takes worker:ack");
    }

    mod fuzz;
}
