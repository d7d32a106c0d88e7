mod listen;
mod protocol;
mod files;
mod client;

fn main() {}
