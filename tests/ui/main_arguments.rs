#[shareworker::main(flavor = "current_thread")]
async fn worker(_args: Vec<String>) {}

fn main() {}
