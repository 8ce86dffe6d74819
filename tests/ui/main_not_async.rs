#[shareworker::main]
fn main() {}
