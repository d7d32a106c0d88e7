//! The one error type: a message for stderr and the exit code it ends with.
/// A failure that ends the supervisor: one line and an exit code.
#[derive(Debug)]
pub struct Fatal {
    pub message: String,
    pub code: i32,
}

impl Fatal {
    pub fn new(code: i32, message: impl Into<String>) -> Fatal {
        Fatal { message: message.into(), code }
    }
}
