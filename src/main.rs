mod client;
mod event;
mod files;
mod listen;
mod machine;
mod protocol;

fn main() {}
